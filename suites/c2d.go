package suites

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/rig/agent"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/iothub"
)

var _ = Describe("cloud-to-device messages", func() {
	Conformance("the device subscribes to exactly devices/{id}/messages/devicebound/# and receives on it", []string{"C2D-001"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		want := iothub.C2DFilter(s.ID.DeviceID)
		sub := must(s.WaitTrace(ctx, s.Start(), "C2D-001: SUBSCRIBE to "+want, func(e hub.Entry) bool {
			return e.Dir == hub.DirIn && e.Type == "SUBSCRIBE" && len(c2dFilters(e)) > 0
		}))
		// Exactly that filter: a repeated SUBSCRIBE of it replaces the
		// subscription (MQTT 3.1.1 §3.8.4); any other devicebound filter fails.
		var got []string
		for _, e := range packets(s.Trace(s.Start()), hub.DirIn, "SUBSCRIBE") {
			got = append(got, c2dFilters(e)...)
		}
		for _, f := range got {
			Expect(f).To(Equal(want), "C2D-001: expected only the devicebound filter %q (002 L13926-13928); the device subscribed %q\n%s", want, got, traceText(s.Trace(s.Start())))
		}
		m := s.Mark()
		mid := sendC2D(s, hub.C2DMessage{Payload: []byte("c2d-001")})
		d := c2dDelivery(ctx, s, m, mid)
		Expect(d.Seq).To(BeNumerically(">", sub.Seq), "C2D-001: expected the delivery after the SUBSCRIBE\n%s", traceText(s.Trace(s.Start())))
		c2dPuback(ctx, s, m, d, "C2D-001")
		c2dEvent(ctx, s, m, mid)
	})

	Conformance("deliveries are parsed: $-keys as system properties, the rest as decoded application properties", []string{"C2D-002"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		msgs := []hub.C2DMessage{
			{Payload: []byte("plain")},
			{Payload: []byte(`{"v":2}`), CorrelationID: "corr 1/2", Properties: iothub.PropertyBag{
				{Name: "k&ey", Value: "a=b&c/d e"}, {Name: "unicode", Value: "grüße €"}, {Name: "empty", Value: ""}}},
		}
		for _, msg := range msgs {
			m := s.Mark()
			mid := sendC2D(s, msg)
			d := c2dDelivery(ctx, s, m, mid)
			c2dPuback(ctx, s, m, d, "C2D-002")
			ev := c2dEvent(ctx, s, m, mid)
			// The board must read back the bag the hub put on the wire:
			// every application property (the non-$ keys) decoded, and
			// nothing the hub did not send. A client library need not hand
			// every system property to the application (one may not expose
			// $.to, say), so $-keys missing from the report are allowed;
			// those reported must be the wire's, $.mid included.
			want := d.Properties.Map()
			app := map[string]string{}
			for k, v := range want {
				if !iothub.IsSystemProperty(k) {
					app[k] = v
				}
			}
			gotApp := map[string]string{}
			for k, v := range ev.Properties {
				w, sent := want[k]
				Expect(sent && w == v).To(BeTrue(), "C2D-002: the board read %q=%q from the bag of %q; the hub sent %v (002 L13930: $-keys are system properties, the rest decoded application properties)\n%s",
					k, v, d.Topic, want, traceText(s.Trace(m)))
				if !iothub.IsSystemProperty(k) {
					gotApp[k] = v
				}
			}
			Expect(gotApp).To(Equal(app), "C2D-002: expected the application properties %v of %q; the board read %v\n%s", app, d.Topic, gotApp, traceText(s.Trace(m)))
			Expect(ev.Properties).To(HaveKeyWithValue(iothub.PropMessageID, mid), "C2D-002: expected the system property $.mid=%s; the board read %v", mid, ev.Properties)
			for _, p := range msg.Properties {
				Expect(ev.Properties).To(HaveKeyWithValue(p.Name, p.Value), "C2D-002: application property %q", p.Name)
			}
			Expect(ev.Payload).To(Equal(string(msg.Payload)))
		}
	})

	Conformance("every delivery is PUBACKed and the PUBACK completes the message", []string{"C2D-003"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		m := s.Mark()
		var mids []string
		for i := range 3 {
			mids = append(mids, sendC2D(s, hub.C2DMessage{Payload: fmt.Appendf(nil, "c2d-003 #%d", i)}))
		}
		for _, mid := range mids {
			d := c2dDelivery(ctx, s, m, mid)
			Expect(d.QoS).To(Equal(byte(1)), "deliveries to a QoS 1 subscription go out at QoS 1")
			c2dPuback(ctx, s, m, d, "C2D-003")
			c2dCompleted(ctx, s, mid)
		}
	})

	Conformance("a redelivery (DUP after a lost link) and a repeated $.mid are acknowledged again and flagged", []string{"C2D-004"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		// The first delivery is lost on the way (the hub goes silent for it),
		// so IoT Hub redelivers it with DUP = 1 after the reconnect.
		m := s.Mark()
		s.Env.Hub.SetSilent(s.ID, true)
		mid := sendC2D(s, hub.C2DMessage{Payload: []byte("at least once")})
		s.Env.Hub.SetSilent(s.ID, false)
		Expect(s.Env.Hub.Drop(s.ID, false, "C2D-004: link lost before the PUBACK")).To(Succeed())
		d := c2dDelivery(ctx, s, m, mid)
		Expect(d.Dup).To(BeTrue(), "the hub redelivers with DUP\n%s", traceText(s.Trace(m)))
		c2dPuback(ctx, s, m, d, "C2D-004")
		c2dCompleted(ctx, s, mid)
		first := c2dEvent(ctx, s, m, mid)
		Expect(first.Duplicate).To(BeFalse(), "C2D-004: the first copy the board saw is not a repeat")
		// The same message id again: acknowledged, and recognised as seen.
		m2 := s.Mark()
		again := sendC2D(s, hub.C2DMessage{Payload: []byte("at least once"), MessageID: mid})
		d2 := c2dDelivery(ctx, s, m2, again)
		c2dPuback(ctx, s, m2, d2, "C2D-004")
		ev := c2dEvent(ctx, s, m2, mid)
		Expect(ev.Duplicate).To(BeTrue(), "C2D-004: $.mid %q arrived a second time and was processed as a new message (no duplicate flag)\n%s", mid, traceText(s.Trace(m)))
	})

	Conformance("the backlog queued while offline arrives in a burst into the persistent session and is PUBACKed", []string{"C2D-006"}, func(ctx SpecContext) {
		persistent := false
		s := NewSession(ctx, fixtures.SessionOptions{CleanSession: &persistent})
		Expect(s.Call(ctx, agentproto.OpClose, agentproto.CloseArgs{Graceful: true}, nil)).To(Succeed())
		Expect(s.WaitDisconnected(ctx)).To(Succeed())
		m := s.Mark()
		var mids []string
		for i := range iothub.MaxC2DQueue {
			mids = append(mids, sendC2D(s, hub.C2DMessage{Payload: fmt.Appendf(nil, "backlog %02d", i)}))
		}
		Expect(s.Open(ctx)).To(Succeed())
		connack := must(s.WaitTrace(ctx, m, "CONNACK 0", func(e hub.Entry) bool { return e.Dir == hub.DirOut && e.Type == "CONNACK" && e.ReturnCode == 0 }))
		Expect(connack.Session).To(BeTrue(), "C2D-006: the reconnect must resume the persistent session (CleanSession 0)\n%s", traceText(s.Trace(m)))
		for _, mid := range mids {
			d := c2dDelivery(ctx, s, m, mid)
			Expect(d.ConnID).To(Equal(connack.ConnID))
			c2dPuback(ctx, s, m, d, "C2D-006")
		}
		for _, mid := range mids {
			c2dCompleted(ctx, s, mid)
		}
	})

	Conformance("a 64 KB payload with a long property bag arrives intact", []string{"C2D-007"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		payload := agentproto.Generate(iothub.MaxC2DBytes, 7)
		long := strings.Repeat("long value/", 40)
		m := s.Mark()
		mid := sendC2D(s, hub.C2DMessage{Payload: payload, Properties: iothub.PropertyBag{{Name: "note", Value: long}}})
		d := c2dDelivery(ctx, s, m, mid)
		Expect(d.PayloadLen).To(Equal(len(payload)))
		c2dPuback(ctx, s, m, d, "C2D-007")
		ev := c2dEvent(ctx, s, m, mid)
		sum := sha256.Sum256(payload)
		Expect([]any{ev.Size, ev.SHA256}).To(Equal([]any{len(payload), hex.EncodeToString(sum[:])}),
			"C2D-007: the board received %d bytes with SHA-256 %s; the hub sent %d bytes with %s", ev.Size, ev.SHA256, len(payload), hex.EncodeToString(sum[:]))
		Expect(ev.Properties).To(HaveKeyWithValue("note", long), "C2D-007: the long property bag")
	})
})

func sendC2D(s *fixtures.Session, msg hub.C2DMessage) string {
	GinkgoHelper()
	return must(s.Env.Hub.SendC2D(s.ID.DeviceID, msg))
}

// c2dFilters returns the devicebound filters of a SUBSCRIBE.
func c2dFilters(e hub.Entry) []string {
	var out []string
	for _, f := range e.Filters {
		if strings.Contains(f.Filter, "/messages/devicebound") {
			out = append(out, f.Filter)
		}
	}
	return out
}

// c2dDelivery waits for the hub's PUBLISH of message mid after m.
func c2dDelivery(ctx context.Context, s *fixtures.Session, m fixtures.Marks, mid string) hub.Entry {
	GinkgoHelper()
	return must(s.WaitTrace(ctx, m, "the hub's C2D delivery of $.mid "+mid, func(e hub.Entry) bool {
		v, ok := e.Properties.Get(iothub.PropMessageID)
		return e.Dir == hub.DirOut && e.Type == "PUBLISH" && strings.Contains(e.Topic, "/messages/devicebound/") && ok && v == mid
	}))
}

// c2dPuback waits for the device's PUBACK of delivery d (C2D-003) after
// m; req names the requirement the spec checks.
func c2dPuback(ctx context.Context, s *fixtures.Session, m fixtures.Marks, d hub.Entry, req string) hub.Entry {
	GinkgoHelper()
	// From m (taken before the send), not from d: the hub records an
	// outbound packet once written, so a fast PUBACK can precede it in the trace.
	ack, err := s.WaitTrace(ctx, m, fmt.Sprintf("PUBACK for packet id %d", d.PacketID), func(e hub.Entry) bool {
		return e.Dir == hub.DirIn && e.Type == "PUBACK" && e.ConnID == d.ConnID && e.PacketID == d.PacketID
	})
	if err != nil {
		Fail(fmt.Sprintf("%s: the QoS %d delivery %s (packet id %d) was not PUBACKed. %v", req, d.QoS, d.Topic, d.PacketID, err))
	}
	return ack
}

// c2dCompleted checks that the hub completed message mid (its PUBACK arrived).
func c2dCompleted(ctx context.Context, s *fixtures.Session, mid string) {
	GinkgoHelper()
	var st hub.C2DStatus
	wctx, cancel := context.WithTimeout(ctx, s.Env.Timing.Event)
	defer cancel()
	err := s.Env.Hub.Wait(wctx, func() bool {
		st, _ = s.Env.Hub.C2DState(s.ID.DeviceID, mid)
		return st.State == hub.C2DCompleted
	})
	Expect(err).NotTo(HaveOccurred(), "C2D-003: message %s is %s on the hub, not %s\n%s", mid, st.State, hub.C2DCompleted, traceText(s.Trace(s.Start())))
}

// c2dEvent waits for the board's c2d event of message mid after m.
func c2dEvent(ctx context.Context, s *fixtures.Session, m fixtures.Marks, mid string) agentproto.C2DEvent {
	GinkgoHelper()
	var ev agentproto.C2DEvent
	_, err := s.WaitEvent(ctx, m, agentproto.EvC2D, func(e agent.Event) bool {
		var c agentproto.C2DEvent
		if e.Decode(&c) != nil {
			return false
		}
		// By the topic when the board reports it (C2D-002 checks the
		// props). A client library may not expose the topic of a message
		// (devicefw/PROTOCOL.md §3): then by the $.mid it parsed.
		if c.Topic == "" {
			if c.Properties[iothub.PropMessageID] != mid {
				return false
			}
			ev = c
			return true
		}
		t, err := iothub.ParseTopic(c.Topic)
		if v, ok := t.Properties.Get(iothub.PropMessageID); err != nil || !ok || v != mid {
			return false
		}
		ev = c
		return true
	})
	Expect(err).NotTo(HaveOccurred(), "the board reported no c2d event for $.mid %s\n%s", mid, traceText(s.Trace(m)))
	return ev
}
