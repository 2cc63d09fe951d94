package suites

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/rig/agent"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/iothub"
)

var _ = Describe("telemetry", func() {
	Conformance("telemetry goes to devices/{id}/messages/events/ without RETAIN and reaches the hub", []string{"TEL-001", "TEL-006"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		m := s.Mark()
		payload := `{"temp":21.5}`
		_ = s.Call(ctx, agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: payload, Properties: map[string]string{"unit": "C"}, Wait: true}, nil)
		pub := waitTelemetryPublish(ctx, s, m)
		tr := s.Trace(m)
		re := regexp.MustCompile(`^devices/` + regexp.QuoteMeta(s.ID.DeviceID) + `/messages/events/[^/]*$`)
		Expect(pub.Topic).To(MatchRegexp(re.String()), "TEL-001: telemetry topic must be devices/{deviceId}/messages/events/{bag}\n%s", traceText(tr))
		_, err := iothub.CheckDevicePublish(s.ID, pub.Topic)
		Expect(err).NotTo(HaveOccurred(), "TEL-001\n%s", traceText(tr))
		Expect(pub.Retain).To(BeFalse(), "TEL-006: RETAIN must be 0 on telemetry\n%s", traceText(tr))
		msg := must(s.WaitTelemetry(ctx, m, func(msg hub.Message) bool { return string(msg.Payload) == payload }))
		Expect(msg.Properties.Has(iothub.PropRetain)).To(BeFalse(), "TEL-006: the hub marked the message %s\n%s", iothub.PropRetain, traceText(tr))
	})

	Conformance("property names and values are percent-encoded in the topic", []string{"TEL-002"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		m := s.Mark()
		props := map[string]string{"note": "a b&c=d/e", "load pct": "50%"}
		_ = s.Call(ctx, agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: "{}", Properties: props, Wait: true}, nil)
		pub := waitTelemetryPublish(ctx, s, m)
		tr := s.Trace(m)
		_, bag, ok := strings.Cut(pub.Topic, "/messages/events/")
		Expect(ok).To(BeTrue(), "TEL-001 topic\n%s", traceText(tr))
		got := map[string]string{}
		for _, piece := range strings.Split(bag, "&") {
			name, value, _ := strings.Cut(piece, "=")
			for _, raw := range []string{name, value} {
				Expect(raw).NotTo(ContainSubstring("="), "TEL-002: raw '=' inside %q of bag %q\n%s", piece, bag, traceText(tr))
				Expect(strings.ContainsAny(raw, " /#+")).To(BeFalse(), "TEL-002: unencoded ' ', '/', '#' or '+' in %q of bag %q\n%s", raw, bag, traceText(tr))
			}
			n, errN := url.PathUnescape(name)
			v, errV := url.PathUnescape(value)
			Expect(errN == nil && errV == nil).To(BeTrue(), "TEL-002: %q does not percent-decode cleanly (bag %q)\n%s", piece, bag, traceText(tr))
			got[n] = v
		}
		for k, v := range props {
			Expect(got).To(HaveKeyWithValue(k, v), "TEL-002: bag %q on the wire must decode to the properties sent\n%s", bag, traceText(tr))
		}
		Expect(got).To(HaveLen(len(props)), "TEL-002: bag %q on the wire must hold exactly the properties sent\n%s", bag, traceText(tr))
	})

	Conformance("a QoS 1 send is confirmed only by its PUBACK; a QoS 0 send completes without one", []string{"TEL-003"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		// The hub withholds every PUBACK (and any other answer).
		s.Env.Hub.SetSilent(s.ID, true)
		DeferCleanup(func() { s.Env.Hub.SetSilent(s.ID, false) })
		m := s.Mark()
		one, zero := 1, 0
		var res agentproto.TelemetryResult
		must(0, s.Call(ctx, agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: `{"qos":1}`, QoS: &one}, &res))
		pub := waitTelemetryPublish(ctx, s, m)
		tr := s.Trace(m)
		Expect(pub.QoS).To(BeEquivalentTo(1), "TEL-003: a QoS 1 send must go out at QoS 1\n%s", traceText(tr))
		Expect(res.Acked).To(BeFalse(), "TEL-003: reported delivered before any PUBACK\n%s", traceText(tr))
		// Nothing may confirm it while the PUBACK is withheld: watch for
		// Timing.Quiet, expecting the wait to time out.
		ctxQ, cancel := context.WithTimeout(ctx, s.Env.Timing.Quiet)
		defer cancel()
		_, err := s.WaitEvent(ctxQ, m, agentproto.EvTelemetry, func(e agent.Event) bool {
			var r agentproto.TelemetryResult
			return e.Decode(&r) == nil && r.Ref == res.Ref && r.Acked
		})
		Expect(err).To(HaveOccurred(), "TEL-003: message %d reported acknowledged, but the hub sent no PUBACK\n%s", res.Ref, traceText(s.Trace(m)))
		Expect(packets(s.Trace(m), hub.DirOut, "PUBACK")).To(BeEmpty(), "the hub was silent; a PUBACK went out\n%s", traceText(s.Trace(m)))

		// QoS 0 completes without waiting for anything, even from a silent
		// hub. Sending at QoS 0 is the client's choice ("QoS 0 or QoS 1",
		// 002 L13746, L13917): a board without telemetry-qos0 may answer
		// unsupported, and only the QoS 1 half is judged.
		var res0 agentproto.TelemetryResult
		err0 := s.Call(ctx, agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: `{"qos":0}`, QoS: &zero, Wait: true}, &res0)
		if optional(agentproto.CapTelemetryQoS0, "telemetry.send qos 0", err0) {
			must(0, err0)
			Expect(res0.Error).To(BeEmpty(), "TEL-003: expected a QoS 0 send to complete without an acknowledgement; seen %q\n%s", res0.Error, traceText(s.Trace(m)))
			p0 := must(s.WaitTrace(ctx, m, "the QoS 0 PUBLISH", func(e hub.Entry) bool {
				return e.Dir == hub.DirIn && e.Type == "PUBLISH" && string(e.Payload) == `{"qos":0}`
			}))
			Expect(p0.QoS).To(BeEquivalentTo(0), "TEL-003: expected the QoS 0 send at QoS 0 on the wire; seen QoS %d\n%s", p0.QoS, traceText(s.Trace(m)))
		} else {
			AddReportEntry("TEL-003", "QoS 0 half not judged: the board sends telemetry at QoS 1 only ("+err0.Error()+")")
		}

		// With the hub answering again, a QoS 1 send is confirmed by its PUBACK.
		s.Env.Hub.SetSilent(s.ID, false)
		m1 := s.Mark()
		var res1 agentproto.TelemetryResult
		must(0, s.Call(ctx, agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: `{"qos":"1 again"}`, QoS: &one, Wait: true}, &res1))
		tr = s.Trace(m1)
		Expect(res1.Acked).To(BeTrue(), "TEL-003: QoS 1 send with the hub answering must be confirmed (%s)\n%s", res1.Error, traceText(tr))
		p1 := publishes(tr, "devices/")
		Expect(p1).NotTo(BeEmpty(), "the QoS 1 PUBLISH\n%s", traceText(tr))
		Expect(pubackFor(tr, p1[0])).NotTo(BeNil(), "TEL-003: confirmed, but the hub's PUBACK for packet %d is not in the trace\n%s", p1[0].PacketID, traceText(tr))
	})

	Conformance("a message of 256 KB by the documented count goes out and arrives; the hub alone refuses a larger one", []string{"TEL-005"}, func(ctx SpecContext) {
		// 002 L10229, L10256-10264: a message is at most 256 KB, counted as
		// body bytes plus system-property values plus application-property
		// names and values. That is a rule of the message the hub enforces
		// (it closes the connection on a larger one, rig/hub); the docs
		// give the client no duty to refuse a larger one itself, so what
		// the client owes is to count as the docs do: a message at the
		// limit must not be refused on the device (nor grow past the limit
		// by what the client adds on its own).
		s := NewSession(ctx, fixtures.SessionOptions{})
		m := s.Mark()
		props := map[string]string{"pad": strings.Repeat("p", 20)}
		body := agentproto.Gen{Size: iothub.MaxTelemetryBytes - iothub.MessageSize(nil, bagOf(props)), Seed: 6}
		payload := agentproto.Generate(body.Size, body.Seed)
		one := 1
		var res agentproto.TelemetryResult
		err := s.Call(ctx, agentproto.OpTelemetry, agentproto.TelemetryArgs{Gen: &body, Properties: props, QoS: &one, Wait: true}, &res)
		if _, refused := fixtures.IsDeviceError(err); refused {
			Fail(fmt.Sprintf("TEL-005: a message of exactly %d bytes by the documented count (%d body bytes and the application property pad) was refused on the device: %v; 002 L10229, L10256-10264 allow it (the client must count body, system-property values and application-property names and values, nothing else)\n%s",
				iothub.MaxTelemetryBytes, body.Size, err, traceText(s.Trace(m))))
		}
		must(0, err)
		for _, v := range s.Violations(m) {
			Expect(v.Requirement).NotTo(Equal("TEL-005"), "TEL-005: the hub refused the message at the limit: %s (the client's own additions pushed it past 256 KB by the documented count)\n%s", v.Reason, traceText(s.Trace(m)))
		}
		Expect(res.Acked).To(BeTrue(), "TEL-005: the message at the limit was not acknowledged (%s)\n%s", res.Error, traceText(s.Trace(m)))
		must(s.WaitTelemetry(ctx, m, func(msg hub.Message) bool { return bytes.Equal(msg.Payload, payload) }))
	})

	Conformance("a message ID goes out as $.mid, unchanged and within TEL-009's length and characters", []string{"TEL-009"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		m := s.Mark()
		const mid = "mid-1:a.b_c(2)!@x"
		_ = s.Call(ctx, agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: "{}", MessageID: mid, Wait: true}, nil)
		pub := waitTelemetryPublish(ctx, s, m)
		tr := s.Trace(m)
		_, bag, _ := strings.Cut(pub.Topic, "/messages/events/")
		var got []string
		for _, piece := range strings.Split(bag, "&") {
			name, value, _ := strings.Cut(piece, "=")
			if name == "$.mid" || strings.EqualFold(name, "%24.mid") {
				v, err := url.PathUnescape(value)
				Expect(err).NotTo(HaveOccurred(), "TEL-009: $.mid value %q does not decode\n%s", value, traceText(tr))
				got = append(got, v)
			}
		}
		Expect(got).To(HaveLen(1), "TEL-009: exactly one $.mid in bag %q\n%s", bag, traceText(tr))
		Expect(len(got[0])).To(BeNumerically("<=", 128), "TEL-009: message ID longer than 128 characters\n%s", traceText(tr))
		Expect(got[0]).To(MatchRegexp(`^[A-Za-z0-9\-:.+%_#*?!(),=@;$']*$`), "TEL-009: message ID %q has characters outside the allowed set\n%s", got[0], traceText(tr))
		Expect(got[0]).To(Equal(mid), "TEL-009: the message ID must go out as given\n%s", traceText(tr))
	})
})

// waitTelemetryPublish waits for the session's first device PUBLISH to a
// devices/… topic after m (the telemetry, whatever its exact topic).
func waitTelemetryPublish(ctx SpecContext, s *fixtures.Session, m fixtures.Marks) hub.Entry {
	GinkgoHelper()
	return must(s.WaitTrace(ctx, m, "a telemetry PUBLISH", func(e hub.Entry) bool {
		return e.Dir == hub.DirIn && e.Type == "PUBLISH" && strings.HasPrefix(e.Topic, "devices/")
	}))
}

// pubackFor returns the hub's PUBACK for pub, nil if none.
func pubackFor(tr []hub.Entry, pub hub.Entry) *hub.Entry {
	for i, e := range tr {
		if e.Dir == hub.DirOut && e.Type == "PUBACK" && e.ConnID == pub.ConnID && e.PacketID == pub.PacketID && e.Seq > pub.Seq {
			return &tr[i]
		}
	}
	return nil
}

// bagOf builds a property bag from a map (for size computations).
func bagOf(props map[string]string) iothub.PropertyBag {
	var b iothub.PropertyBag
	for k, v := range props {
		b = append(b, iothub.Property{Name: k, Value: v})
	}
	return b
}
