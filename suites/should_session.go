package suites

import (
	"context"
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/rig/hub"
)

// Session SHOULD requirements: subscriptions after a session-less CONNACK
// (CONN-017), acknowledging C2D payloads the application cannot use
// (C2D-005) and the bounded twin response wait (TWIN-019).
var _ = Describe("session SHOULDs", func() {
	Conformance("without a session (CleanSession 1) every connection subscribes before it sends anything that needs an answer", []string{"CONN-017"}, func(ctx SpecContext) {
		// CONN-017's duty binds "a device that connects with CleanSession =
		// 1" (CleanSession 0 is the preferred branch, 002 L13746): a board
		// that cannot use CleanSession 1 (no clean-session-1, configure
		// answered unsupported) cannot break it.
		clean := true
		s := NewSession(ctx, fixtures.SessionOptions{NoOpen: true})
		if err := s.Call(ctx, agentproto.OpConfigure, agentproto.Config{MQTT: &agentproto.MQTTConfig{CleanSession: &clean}}, nil); !optional(agentproto.CapCleanSession1, "configure mqtt.cleanSession true", err) {
			NotApplicable("the board cannot connect with CleanSession 1 (" + err.Error() + "); CONN-017's resubscription duty binds CleanSession 1 connections")
		}
		must(0, s.Open(ctx))
		m := s.Mark()
		Expect(s.Env.Hub.Drop(s.ID, false, "CONN-017: connection lost")).To(Succeed())
		up := must(s.WaitTrace(ctx, m, "the reconnect's CONNACK 0", isConnack(0)))
		// The reconnect's first SUBSCRIBE or PUBLISH: the reference firmware
		// sends its twin GET right after subscribing, so a device that skips
		// the SUBSCRIBE shows its PUBLISH here.
		must(s.WaitTrace(ctx, m, "a SUBSCRIBE or PUBLISH on the new connection", func(e hub.Entry) bool {
			return e.ConnID == up.ConnID && isSubscribeOrPublish(e)
		}))
		tr := s.Trace(s.Start())
		n := 0
		for _, ack := range tr {
			if !isConnack(0)(ack) {
				continue
			}
			n++
			connect := entryOn(tr, ack.ConnID, isConnect)
			Expect(connect).NotTo(BeNil(), "no CONNECT recorded for connection %d\n%s", ack.ConnID, traceText(tr))
			if !connect.CleanSession && ack.Session {
				continue // a resumed session keeps its subscriptions
			}
			first := entryOn(tr, ack.ConnID, isSubscribeOrPublish)
			Expect(first).NotTo(BeNil(), "CONN-017: connection %d (CleanSession %v, session-present %v) sent neither SUBSCRIBE nor PUBLISH\n%s",
				ack.ConnID, connect.CleanSession, ack.Session, traceText(tr))
			Expect(first.Type).To(Equal("SUBSCRIBE"),
				"CONN-017: after CONNACK with CleanSession %v and session-present %v, connection %d must SUBSCRIBE before it depends on inbound traffic; its first packet was PUBLISH %s\n%s",
				connect.CleanSession, ack.Session, ack.ConnID, first.Topic, traceText(tr))
		}
		Expect(n).To(BeNumerically(">=", 2), "expected the first connection and the reconnect\n%s", traceText(tr))
	})

	Conformance("a C2D payload the application cannot parse is still PUBACKed and completed, not redelivered", []string{"C2D-005"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		m := s.Mark()
		bad := sendC2D(s, hub.C2DMessage{Payload: []byte(`{"cmd":"reboot","delay":`)}) // truncated JSON
		good := sendC2D(s, hub.C2DMessage{Payload: []byte(`{"cmd":"noop"}`)})
		dBad := c2dDelivery(ctx, s, m, bad)
		c2dPuback(ctx, s, m, c2dDelivery(ctx, s, m, good), "C2D-005")
		// The later message is acknowledged, so the earlier one's PUBACK
		// (handled first on the same connection) is already on the wire;
		// Quiet only bounds the wait when it is missing.
		qctx, cancel := context.WithTimeout(ctx, s.Env.Timing.Quiet)
		defer cancel()
		_, err := s.WaitTrace(qctx, m, "PUBACK of the malformed message", func(e hub.Entry) bool {
			return e.Dir == hub.DirIn && e.Type == "PUBACK" && e.ConnID == dBad.ConnID && e.PacketID == dBad.PacketID
		})
		Expect(err).NotTo(HaveOccurred(), "C2D-005: the malformed payload (packet id %d, $.mid %s) must be PUBACKed like the well-formed one that followed it\n%s",
			dBad.PacketID, bad, traceText(s.Trace(m)))
		// Completed after one delivery: the hub will not redeliver it.
		st, _ := s.Env.Hub.C2DState(s.ID.DeviceID, bad)
		Expect(st.State).To(Equal(hub.C2DCompleted), "C2D-005: message %s is %s on the hub\n%s", bad, st.State, traceText(s.Trace(m)))
		Expect(st.DeliveryCount).To(Equal(1), "C2D-005: message %s was delivered %d times\n%s", bad, st.DeliveryCount, traceText(s.Trace(m)))
	})

	Conformance("an unanswered twin GET ends inside the configured limit while telemetry keeps flowing", []string{"TWIN-019"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		limit := 500 * time.Millisecond
		bound := fmt.Sprintf("configured limit %s", limit)
		must(0, s.Call(ctx, agentproto.OpConfigure, agentproto.Config{Twin: &agentproto.TwinConfig{TimeoutMS: int(limit / time.Millisecond)}}, nil))
		if fixed := Env().Hello.TwinTimeoutFixedMS; fixed != 0 {
			// The board declares that its library's bound cannot be set.
			// 000 L185: without a bound the wait blocks "up to the point the
			// twin is received"; the seed's own example bounds it at 20 s
			// (L174). A fixed bound of the library's own is judged when the
			// spec can wait that long; a library with none, on the
			// example's 20 s.
			const budget = 20 * time.Second
			d := time.Duration(fixed) * time.Millisecond
			switch {
			case fixed < 0:
				limit, bound = budget, "the 20 s of the seed's example, 000 L174; the board declares that its library's twin wait has no bound and cannot be given one"
			case d > budget:
				PreconditionUnmet(fmt.Sprintf("TWIN-019: the board declares that its library's twin wait cannot be configured and ends after a fixed %s, longer than the %s this spec waits (the 20 s of 000 L174); not judged", d, budget))
			default:
				limit, bound = d, fmt.Sprintf("the library's own fixed bound %s; it cannot be configured", d)
			}
		}
		m := s.Mark()
		s.Env.Hub.SetSilent(s.ID, true)
		DeferCleanup(func() { s.Env.Hub.SetSilent(s.ID, false) })
		// The device's verdict (a failure or a retry) is due within the
		// limit; slack covers the serial line and scheduling.
		deadline := limit + time.Second
		done := make(chan error, 1)
		go func() {
			cctx, cancel := context.WithTimeout(ctx, deadline)
			defer cancel()
			done <- s.Call(cctx, agentproto.OpTwinGet, nil, nil)
		}()
		get := must(s.WaitTrace(ctx, m, "the twin GET", isTwinGet))
		// Still responsive while the GET is pending: telemetry goes out.
		must(0, s.Call(ctx, agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: `{"probe":"twin-019"}`}, nil))
		must(s.WaitTrace(ctx, m, "telemetry while the twin GET is pending", func(e hub.Entry) bool {
			return e.Dir == hub.DirIn && e.Type == "PUBLISH" && strings.Contains(e.Topic, "/messages/events/")
		}))
		err := <-done
		tr := s.Trace(m)
		if _, ok := fixtures.IsDeviceError(err); ok {
			return // the device abandoned the request and reported the failure
		}
		Expect(err).To(HaveOccurred(), "the hub was silent, yet twin.get succeeded\n%s", traceText(tr))
		// No verdict from the device: it may still be retrying with a fresh $rid.
		for _, e := range tr {
			if isTwinGet(e) && twinRID(e.Topic) != twinRID(get.Topic) && e.Time.Sub(get.Time) <= deadline {
				return
			}
		}
		Fail(fmt.Sprintf("TWIN-019: the twin GET $rid=%s was not answered; within %s (%s) the device neither reported a failure nor retried with a fresh $rid (the board did not answer twin.get; 000 L174-185: a twin wait is bounded)\n%s",
			twinRID(get.Topic), deadline, bound, traceText(tr)))
	})
})

func isSubscribeOrPublish(e hub.Entry) bool {
	return e.Dir == hub.DirIn && (e.Type == "SUBSCRIBE" || e.Type == "PUBLISH")
}

// entryOn returns the first entry of connection conn that matches.
func entryOn(tr []hub.Entry, conn uint64, match func(hub.Entry) bool) *hub.Entry {
	for i := range tr {
		if tr[i].ConnID == conn && match(tr[i]) {
			return &tr[i]
		}
	}
	return nil
}

func isTwinGet(e hub.Entry) bool {
	return e.Dir == hub.DirIn && e.Type == "PUBLISH" && strings.HasPrefix(e.Topic, "$iothub/twin/GET/")
}
