package suites

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/rig/agent"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/iothub"
	"github.com/hilrun/hilrun/rig/iothub/twin"
)

// Boundary specs for MUSTs that rested on a single example spec (issue
// 15): each takes its requirement past the one case its first spec
// visited, along the dimensions of fixtures/catalog/dimensions.yaml —
// several messages in flight (TEL-003), system properties in the size
// count (TEL-005), a response body of the full 128 KB (METH-005), a
// redelivery after a network cut with a message ID that needs encoding
// (C2D-004), the twin filter after session-less reconnects (TWIN-001) and
// a module's token after reconnects (MOD-003).
var _ = Describe("boundaries: past the single example", func() {
	for _, auth := range bothAuths {
		Conformance(auth.article+" "+auth.name+" device's five QoS 1 messages in flight carry distinct packet ids and none is confirmed without its own PUBACK, not even when a later message is acknowledged", []string{"TEL-003"}, func(ctx SpecContext) {
			s := NewSession(ctx, fixtures.SessionOptions{Auth: auth.auth}, auth.cap)
			s.Env.Hub.SetSilent(s.ID, true) // every PUBACK withheld
			DeferCleanup(func() { s.Env.Hub.SetSilent(s.ID, false) })
			m := s.Mark()
			one := 1
			const n = 5
			payloads := map[uint64]string{}
			for i := range n {
				var res agentproto.TelemetryResult
				p := fmt.Sprintf(`{"inflight":%d}`, i)
				must(0, s.Call(ctx, agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: p, QoS: &one}, &res))
				Expect(res.Acked).To(BeFalse(), "TEL-003: message %d of %d reported delivered at once, before any PUBACK (002 L13746, L13917; 000 L217-224)", i+1, n)
				payloads[res.Ref] = p
			}
			ids := map[uint16]string{}
			for _, p := range payloads {
				pub := must(s.WaitTrace(ctx, m, "the QoS 1 PUBLISH "+p, func(e hub.Entry) bool {
					return e.Dir == hub.DirIn && e.Type == "PUBLISH" && string(e.Payload) == p
				}))
				Expect(pub.QoS).To(BeEquivalentTo(1), "TEL-003: expected %s at QoS 1; seen QoS %d\n%s", p, pub.QoS, traceText(s.Trace(m)))
				Expect(pub.PacketID).NotTo(BeZero(), "TEL-003: a QoS 1 PUBLISH needs a non-zero packet id (MQTT 3.1.1 §2.3.1)\n%s", traceText(s.Trace(m)))
				Expect(ids).NotTo(HaveKey(uint16(pub.PacketID)), "TEL-003: %s and %s are in flight together with the same packet id %d: one PUBACK could not tell them apart (MQTT 3.1.1 §2.3.1)\n%s", ids[uint16(pub.PacketID)], p, pub.PacketID, traceText(s.Trace(m)))
				ids[uint16(pub.PacketID)] = p
			}

			// The hub answers again: a sixth message is acknowledged. Its
			// PUBACK names its own packet id only.
			s.Env.Hub.SetSilent(s.ID, false)
			var last agentproto.TelemetryResult
			must(0, s.Call(ctx, agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: `{"inflight":"last"}`, QoS: &one, Wait: true}, &last))
			Expect(last.Acked).To(BeTrue(), "TEL-003: with the hub answering, a QoS 1 send must be confirmed (%s)\n%s", last.Error, traceText(s.Trace(m)))

			// acked tells whether a payload's PUBLISH (any copy) got a PUBACK.
			acked := func(p string) bool {
				tr := s.Trace(m)
				for _, e := range tr {
					if e.Dir == hub.DirIn && e.Type == "PUBLISH" && string(e.Payload) == p && pubackFor(tr, e) != nil {
						return true
					}
				}
				return false
			}
			// Watch Timing.Quiet for a confirmation without a PUBACK; the
			// wait is expected to time out.
			qctx, cancel := context.WithTimeout(ctx, s.Env.Timing.Quiet)
			defer cancel()
			ev, err := s.WaitEvent(qctx, m, agentproto.EvTelemetry, func(e agent.Event) bool {
				var r agentproto.TelemetryResult
				p, ok := "", false
				if e.Decode(&r) == nil {
					p, ok = payloads[r.Ref]
				}
				return ok && r.Acked && !acked(p)
			})
			if err == nil {
				var r agentproto.TelemetryResult
				_ = ev.Decode(&r)
				Fail(fmt.Sprintf("TEL-003: message %d (%s) was reported delivered, but the hub never sent a PUBACK for it: only the later message's packet was acknowledged (002 L13746, L13917; 000 L324-332: QoS 1 delivery is confirmed; MQTT 3.1.1 §2.3.1: a PUBACK carries the packet id of the PUBLISH it answers)\n%s",
					r.Ref, payloads[r.Ref], traceText(s.Trace(m))))
			}
		})
	}

	Conformance("a message at 256 KB by the documented count that carries a message ID goes out: system properties count by their values only", []string{"TEL-005"}, func(ctx SpecContext) {
		// 002 L10256-10264: the size is the body, plus the values of the
		// system properties, plus names and values of the application
		// properties. A message ID (system property $.mid) counts by its
		// value; a client counting "$.mid" too refuses a message the
		// docs allow.
		s := NewSession(ctx, fixtures.SessionOptions{})
		m := s.Mark()
		mid := "tel005-" + strings.Repeat("m", 40)
		props := map[string]string{"pad": "p"}
		bag := append(bagOf(props), iothub.Property{Name: iothub.PropMessageID, Value: mid})
		body := agentproto.Gen{Size: iothub.MaxTelemetryBytes - iothub.MessageSize(nil, bag), Seed: 15}
		payload := agentproto.Generate(body.Size, body.Seed)
		one := 1
		var res agentproto.TelemetryResult
		err := s.Call(ctx, agentproto.OpTelemetry, agentproto.TelemetryArgs{Gen: &body, Properties: props, MessageID: mid, QoS: &one, Wait: true}, &res)
		if _, refused := fixtures.IsDeviceError(err); refused {
			Fail(fmt.Sprintf("TEL-005: a message of exactly %d bytes by the documented count (%d body bytes, the %d-character value of $.mid, the application property pad=p) was refused on the device: %v; 002 L10256-10264 allow it (body bytes, system-property values — not their names — and application-property names and values count, nothing else)\n%s",
				iothub.MaxTelemetryBytes, body.Size, len(mid), err, traceText(s.Trace(m))))
		}
		must(0, err)
		for _, v := range s.Violations(m) {
			Expect(v.Requirement).NotTo(Equal("TEL-005"), "TEL-005: the hub refused the message at the limit: %s (what the client added pushed it past 256 KB by the documented count)\n%s", v.Reason, traceText(s.Trace(m)))
		}
		Expect(res.Acked).To(BeTrue(), "TEL-005: the message at the limit was not acknowledged (%s)\n%s", res.Error, traceText(s.Trace(m)))
		msg := must(s.WaitTelemetry(ctx, m, func(msg hub.Message) bool {
			return len(msg.Payload) == len(payload) && string(msg.Payload) == string(payload)
		}))
		got, _ := msg.Properties.Get(iothub.PropMessageID)
		Expect(got).To(Equal(mid), "TEL-005: the message at the limit arrived, but its $.mid is %q, not %q", got, mid)
	})

	Conformance("a method response body of exactly 128 KB goes out whole and valid JSON; an empty one stays empty", []string{"METH-005"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		gen := agentproto.Gen{Size: iothub.MaxMethodPayloadBytes, Seed: 128}
		want := append(append([]byte{'"'}, agentproto.Generate(gen.Size-2, gen.Seed)...), '"')
		defineMethod(ctx, s, agentproto.MethodBehaviour{Name: "body128K", Status: 200, Gen: &gen})
		defineMethod(ctx, s, agentproto.MethodBehaviour{Name: "bodyNone", Status: 200})
		m := s.Mark()
		res, err := invokeMethod(ctx, s, hub.MethodRequest{Name: "body128K"})
		Expect(err).NotTo(HaveOccurred(), "METH-005: a handler answering a %d-byte JSON body was not answered: %v\n%s", len(want), err, traceText(s.Trace(m)))
		resp := methodResponse(s, m, res.RID)
		Expect(resp.PayloadLen).To(BeNumerically("<=", iothub.MaxMethodPayloadBytes), "METH-005: the response body is at most 128 KB (002 L12490, L13465); seen %d bytes", resp.PayloadLen)
		Expect(json.Valid(res.Raw)).To(BeTrue(), "METH-005: the response body must be JSON (002 L14037); the handler's %d-byte JSON string arrived as %d bytes ending %q\n%s",
			len(want), len(res.Raw), tail(res.Raw, 40), traceText(s.Trace(m)))
		Expect(string(res.Raw)).To(Equal(string(want)), "METH-005: the handler's body of exactly %d bytes is within the limit (002 L12490) and must reach the caller whole; %d bytes arrived", len(want), len(res.Raw))
		Expect(warnings(s.Trace(m), "METH-005")).To(BeEmpty(), "METH-005: hub warnings\n%s", traceText(s.Trace(m)))

		m2 := s.Mark()
		res, err = invokeMethod(ctx, s, hub.MethodRequest{Name: "bodyNone"})
		Expect(err).NotTo(HaveOccurred(), "METH-005: %v\n%s", err, traceText(s.Trace(m2)))
		Expect(len(res.Raw) == 0 || json.Valid(res.Raw)).To(BeTrue(), "METH-005: a handler with no body must answer an empty body or JSON (002 L14037); seen %q", tail(res.Raw, 80))
	})

	for _, auth := range bothAuths {
		Conformance("a C2D message to "+auth.article+" "+auth.name+" device whose ID needs encoding, redelivered after a network cut and sent twice more, is acknowledged every time and flagged as a repeat", []string{"C2D-004"}, func(ctx SpecContext) {
			s := NewSession(ctx, fixtures.SessionOptions{Auth: auth.auth}, auth.cap)
			// Every character past the first is one 002 L10241 allows in a
			// message ID and one the topic must percent-encode.
			mid := "c:+%#?!()=@;$," + strings.ReplaceAll(s.ID.DeviceID, "-", "")
			if len(mid) > 128 {
				mid = mid[:128]
			}
			old := liveConn(s)
			m := s.Mark()
			s.Env.Hub.SetSilent(s.ID, true) // the first PUBACK is lost
			sendC2D(s, hub.C2DMessage{Payload: []byte("at least once, cut"), MessageID: mid})
			s.Env.Hub.SetSilent(s.ID, false)
			Expect(s.Env.Net.Cut()).To(BeNumerically(">=", 1), "rig: no live connection to cut")
			backAfterLoss(ctx, s, m, old, "C2D-004", "network cut")
			d := c2dDelivery(ctx, s, m, mid)
			c2dPuback(ctx, s, m, d, "C2D-004")
			c2dCompleted(ctx, s, mid)
			first := c2dEvent(ctx, s, m, mid)
			Expect(first.Duplicate).To(BeFalse(), "C2D-004: the first copy the board saw is not a repeat")
			for i := range 2 {
				mi := s.Mark()
				again := sendC2D(s, hub.C2DMessage{Payload: []byte("at least once, cut"), MessageID: mid})
				di := c2dDelivery(ctx, s, mi, again)
				c2dPuback(ctx, s, mi, di, "C2D-004")
				ev := c2dEvent(ctx, s, mi, mid)
				Expect(ev.Duplicate).To(BeTrue(), "C2D-004: $.mid %q (on the wire %s) arrived again (repeat %d) and was processed as new; at-least-once delivery needs the repeat recognised (002 L10745, L10758-10760)\n%s",
					mid, di.Topic, i+1, traceText(s.Trace(mi)))
			}
		})
	}

	// TWIN-001 after reconnects, in both authentication modes: the
	// connect paths of SAS and X.509 differ in clients (x509 options,
	// no token), and so may their restore of subscriptions.
	for _, auth := range bothAuths {
		Conformance(auth.article+" "+auth.name+" device, after a hub-side close and after a network cut with no session kept, sends its first twin request on the new connection after a SUBACK of $iothub/twin/res/#", []string{"TWIN-001"}, func(ctx SpecContext) {
			clean := true
			s := NewSession(ctx, fixtures.SessionOptions{CleanSession: &clean, Auth: auth.auth}, auth.cap)
			_ = firstTwinRequest(ctx, s, "TWIN-001")
			for _, loss := range closeAndCut(s, "TWIN-001") {
				old := liveConn(s)
				m := s.Mark()
				loss.do()
				backAfterLoss(ctx, s, m, old, "TWIN-001", loss.name)
				up := reconnected(ctx, s, m, old, "TWIN-001: after a "+loss.name)
				isReq := func(e hub.Entry) bool {
					return e.ConnID == up.ConnID && (twinPublishTo(twinGetPrefix)(e) || twinPublishTo(twinReportedPrefix)(e))
				}
				qctx, cancel := context.WithTimeout(ctx, s.Env.Timing.Quiet)
				req, err := s.WaitTrace(qctx, m, "", isReq)
				cancel()
				if err != nil {
					_ = s.Call(ctx, agentproto.OpTwinGet, nil, nil)
					req = must(s.WaitTrace(ctx, m, "TWIN-001: a twin request on the new connection", isReq))
				}
				tr := s.Trace(m)
				if up.Session {
					// The hub kept the subscriptions: nothing to order.
					GinkgoWriter.Printf("%s: CONNACK session-present 1 although CleanSession 1 was asked; order not judged\n", loss.name)
					continue
				}
				Expect(twinSubackedBefore(tr, req, iothub.TwinResponseFilter)).To(BeTrue(),
					"TWIN-001 (%s, %s): CONNACK said session-present 0, so the hub holds no subscription; expected a SUBACK granting %s on connection %d before its first twin request %s (002 L13936, L13971); seen none before it\n%s",
					auth.name, loss.name, iothub.TwinResponseFilter, up.ConnID, req.Topic, traceText(tr))
			}
		})
	}

	Conformance("a module's tokens after a hub-side close and after a network cut are still scoped to the module and accepted", []string{"MOD-003"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{ModuleID: "SasModAgain", NoOpen: true}, agentproto.CapSAS)
		m0, first := openForConnect(ctx, s)
		moduleTokenScoped(s, first, "first connection", m0)
		expectAccepted(ctx, s, m0, first)
		waitBoardConnected(ctx, s, m0)
		for _, loss := range closeAndCut(s, "MOD-003") {
			old := liveConn(s)
			m := s.Mark()
			loss.do()
			connect := backAfterLoss(ctx, s, m, old, "MOD-003", loss.name)
			moduleTokenScoped(s, connect, "reconnect after a "+loss.name, m)
			expectAccepted(ctx, s, m, connect)
			reconnected(ctx, s, m, old, "MOD-003: after a "+loss.name)
		}
	})

	Conformance("one reported patch that brings the section to just under 8 KB by the documented count is accepted whole; a patch pushing the section past 8 KB is not applied and is reported failed", []string{"TWIN-015"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		twinResynced(ctx, s, s.Start())
		held, _ := s.Env.Hub.ReportedOf(s.ID)
		sp := twinSpreadToSize(held, twin.MaxSectionBytes-16, 75)
		patch := sp.Build()
		merged := twin.Clone(held)
		twin.Merge(merged, patch)
		size := twin.Size(merged)
		Expect(size).To(BeNumerically("<=", twin.MaxSectionBytes), "spec bug: section size %d", size)
		m := s.Mark()
		err := s.Call(ctx, agentproto.OpTwinReport, agentproto.ReportArgs{Patch: map[string]any{}, Spread: &sp}, nil)
		Expect(err).NotTo(HaveOccurred(), "TWIN-015: one patch of %d members leaving the reported section at %d bytes by the documented count (every character except whitespace outside strings, 002 L12025-12031) is within 8 KB and must be sent and accepted; the device answered %v\n%s",
			len(patch), size, err, traceText(s.Trace(m)))
		rep, _ := s.Env.Hub.ReportedOf(s.ID)
		for k, v := range patch {
			Expect(rep).To(HaveKeyWithValue(k, v), "TWIN-015: the accepted patch's member %s is not in the hub's reported section", k)
		}

		m2 := s.Mark()
		_, err = twinReport(ctx, s, map[string]any{"over": strings.Repeat("y", 100)})
		Expect(err).To(HaveOccurred(), "TWIN-015: a patch that grows the reported section past 8 KB is refused (002 L12031: IoT Hub rejects operations that would increase the size above the limit); the device reported it applied\n%s", traceText(s.Trace(m2)))
		rep, _ = s.Env.Hub.ReportedOf(s.ID)
		Expect(rep).NotTo(HaveKey("over"), "TWIN-015: the hub's reported section must stay within 8 KB")
	})

	Conformance("a twin GET answer whose sections carry $metadata trees is taken without them: the device holds configuration only and echoes no metadata", []string{"TWIN-017"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		twinResynced(ctx, s, s.Start())
		v := must(s.Env.Hub.UpdateDesired(s.ID, twin.Section{"rate": 9, "cfg": map[string]any{"mode": "eco", "level": map[string]any{"n": 3}}}))
		s.Env.Hub.SetTwinGetMetadata(s.ID, true)
		DeferCleanup(func() { s.Env.Hub.SetTwinGetMetadata(s.ID, false) })
		m := s.Mark()
		var tw agentproto.TwinResult
		must(0, s.Call(ctx, agentproto.OpTwinGet, nil, &tw))
		ans := must(s.WaitTrace(ctx, m, "the hub's 200 answer to the twin GET", func(e hub.Entry) bool {
			return e.Dir == hub.DirOut && e.Type == "PUBLISH" && strings.HasPrefix(e.Topic, twinResPrefix+"200/")
		}))
		Expect(string(ans.Payload)).To(ContainSubstring(`"$metadata"`), "precondition: the GET answer carries $metadata\n%s", traceText(s.Trace(m)))
		Expect(tw.DesiredVersion).To(Equal(v), "TWIN-017: the GET answer's desired $version is %d; the device read %d", v, tw.DesiredVersion)
		Expect(tw.Desired).To(Equal(map[string]any{"rate": float64(9), "cfg": map[string]any{"mode": "eco", "level": map[string]any{"n": float64(3)}}}),
			"TWIN-017: hub metadata in a GET answer ($metadata with $lastUpdated at each level, 002 L11850-11860, L12033-12086) must not become configuration; the device holds %v\n%s", tw.Desired, traceText(s.Trace(m)))
		must(twinReport(ctx, s, map[string]any{"rate": 9}))
		for _, p := range publishes(s.Trace(m), twinReportedPrefix) {
			Expect(twinDollarKeys(p.Payload)).To(BeEmpty(), "TWIN-017: metadata of the GET answer echoed back in %s", p.Payload)
		}
	})

	Conformance("a module renewing its SAS token while its parent device is online never holds two connections at once", []string{"MOD-007"}, func(ctx SpecContext) {
		ttl := tokenLife(4*time.Second, 4*time.Second, 30*time.Second, "a module's token renewal")
		s := NewSession(ctx, fixtures.SessionOptions{ModuleID: "RenewMod", TokenTTL: ttl}, agentproto.CapSAS)
		parent := iothub.Identity{DeviceID: s.ID.DeviceID}
		DeferCleanup(must(connectParent(ctx, s)))
		first := liveConn(s)
		m := s.Mark()
		renewed := must(s.WaitTrace(ctx, m, "MOD-007: the module's renewal connection (CONNACK 0)", func(e hub.Entry) bool { return isConnack(0)(e) && e.ConnID != first }))
		// The old connection must be gone by now, or go within the quiet
		// period: wait for its end, then judge the order.
		qctx, cancel := context.WithTimeout(ctx, s.Env.Timing.Quiet)
		defer cancel()
		_ = s.Env.Hub.Wait(qctx, func() bool { return connEnd(s.Trace(s.Start()), first) != nil })
		tr := s.Trace(s.Start())
		connects := packets(tr, hub.DirIn, "CONNECT")
		for i := 1; i < len(connects); i++ {
			end := connEnd(tr, connects[i-1].ConnID)
			Expect(end != nil && end.Seq < connects[i].Seq).To(BeTrue(),
				"MOD-007: each module identity holds one connection of its own (002 L12140, L13920); the renewal CONNECT (connection %d) for %s came while connection %d of the same module was still up\n%s",
				connects[i].ConnID, s.ID.ClientID(), connects[i-1].ConnID, traceText(tr))
		}
		for _, e := range tr {
			Expect(e.Type == hub.EventConnClosed && e.Requirement == "CONN-016").To(BeFalse(),
				"MOD-007: the hub closed module connection %d because another of the same module took over: %s\n%s", e.ConnID, e.Reason, traceText(tr))
		}
		Expect(s.Env.Hub.Connected(parent)).To(BeTrue(), "precondition: the parent device stays connected next to its module")
		Expect(s.Env.Hub.Connected(s.ID)).To(BeTrue(), "MOD-007: after the renewal (connection %d) the module is connected", renewed.ConnID)
	})
})

// twinSpreadToSize describes a reported patch of n generated string
// members (agentproto.Spread, so it need not fit one frame) that brings
// section held to size bytes by the documented count (twin.Size).
func twinSpreadToSize(held twin.Section, size, n int) agentproto.Spread {
	GinkgoHelper()
	sp := agentproto.Spread{Prefix: "m", Members: n}
	merged := twin.Clone(held)
	if merged == nil {
		merged = twin.Section{}
	}
	twin.Merge(merged, sp.Build())
	deficit := size - twin.Size(merged)
	Expect(deficit).To(BeNumerically(">=", 0), "spec bug: the held section is already %d bytes", twin.Size(merged))
	sp.Len, sp.Extra = deficit/n, deficit%n
	return sp
}

// backAfterLoss waits for the device's CONNECT on a connection other than
// old after a loss. A device that does not come back is RECON-001's
// failure, judged by its own specs: here the spec is not judged
// (precondition unmet) rather than blaming req for it.
func backAfterLoss(ctx context.Context, s *fixtures.Session, m fixtures.Marks, old uint64, req, loss string) hub.Entry {
	GinkgoHelper()
	e, err := s.WaitTrace(ctx, m, req+": the device's CONNECT after a "+loss, func(e hub.Entry) bool {
		return isConnect(e) && e.ConnID != old && e.ClientID == s.ID.ClientID()
	})
	if err != nil {
		PreconditionUnmet(fmt.Sprintf("after a %s the device did not connect again within the deadline (RECON-001's matter); %s is judged on the reconnect", loss, req))
	}
	return e
}

// bothAuths are the authentication modes the specs that walk both run
// in: SAS and X.509 (CA-signed), each needing its capability.
var bothAuths = []struct{ name, article, auth, cap string }{
	{"SAS", "a", fixtures.AuthSAS, agentproto.CapSAS},
	{"X.509", "an", fixtures.AuthX509CA, agentproto.CapX509},
}

// moduleTokenScoped checks the SAS token of a module's CONNECT: sr names
// the module's resource (MOD-003, 002 L13835, L11710, L11718).
func moduleTokenScoped(s *fixtures.Session, connect hub.Entry, which string, m fixtures.Marks) {
	GinkgoHelper()
	tr := hubSince(s, m)
	fields := sasFields(connect.Password)
	Expect(fields).To(HaveKey("sr"), "MOD-003 (%s): the Password must be a SharedAccessSignature with sr\n%s", which, traceText(tr))
	sr, err := url.QueryUnescape(fields["sr"])
	Expect(err).NotTo(HaveOccurred(), "MOD-003 (%s): sr must be URL-encoded\n%s", which, traceText(tr))
	host, path, _ := strings.Cut(sr, "/")
	want := "devices/" + s.ID.DeviceID + "/modules/" + s.ID.ModuleID
	Expect(strings.EqualFold(host, fixtures.HubHost) && path == want).To(BeTrue(),
		"MOD-003 (%s): a module's token is produced for the module itself (002 L13835, L11718): expected sr {hub FQDN}/%s, seen %q\n%s", which, want, sr, traceText(tr))
}

// tail is the last n bytes of b as text, for failure messages.
func tail(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return "…" + string(b[len(b)-n:])
}

// connectionLoss is one way the rig ends the device's live connection.
type connectionLoss struct {
	name string
	do   func()
}

// closeAndCut: a hub-side close, then a network cut (TCP reset), the two
// losses the reconnect specs of req go through in turn.
func closeAndCut(s *fixtures.Session, req string) []connectionLoss {
	return []connectionLoss{
		{"hub-side close", func() { Expect(s.Env.Hub.Drop(s.ID, false, req+": reconnect")).To(Succeed()) }},
		{"network cut (TCP reset)", func() { Expect(s.Env.Net.Cut()).To(BeNumerically(">=", 1), "rig: no live connection to cut") }},
	}
}
