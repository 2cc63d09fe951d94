package suites

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/iothub"
)

// Boundary specs for the CONN area (issue 15): the first-connect specs of
// connect.go prove one example of each rule; these repeat the checks where
// clients have been seen to break them — on every CONNECT of a session
// (token renewal, reconnect after a hub-side close), with an X.509 device,
// with IDs that are long or need encoding, on a link the hub keeps busy,
// with an empty Will, and for the twin and method publishes.
var _ = Describe("connect boundaries", func() {
	Conformance("every CONNECT of a SAS session — first, token renewal, reconnect after a hub-side close — is MQTT 3.1.1 in TLS with the documented ClientId, Username and a fresh SharedAccessSignature, never overlapping, resubscribing only documented filters",
		[]string{"CONN-001", "CONN-002", "CONN-005", "CONN-006", "CONN-007", "CONN-008", "CONN-009", "CONN-010", "CONN-011", "CONN-016", "CONN-018", "CONN-019", "CONN-023"}, func(ctx SpecContext) {
			// 3 s tokens make the device renew by a new connection
			// (RECON-006); the hub then closes an established connection
			// (unclean), the other way a connection ends and comes back.
			s := NewSession(ctx, fixtures.SessionOptions{TokenTTL: 3 * time.Second, NoOpen: true}, agentproto.CapSAS)
			// A lost session makes reconnects resubscribe (CONN-018/019 on
			// reconnects); a board that always keeps its session is judged
			// on whatever it subscribes.
			clean := preferCleanSession(ctx, s)
			// Judged on the wire: the board need not report connected (a
			// client that mishandles the short token is RECON-006's matter).
			must(0, s.Call(ctx, agentproto.OpOpen, nil, nil))
			// Two renewals in a row: the second reuses whatever state the
			// first left behind.
			renewed := waitAcceptedOrRefused(ctx, s, 3, "a third CONNACK 0 (two reconnects in a row that renew the 3 s token)")
			ctxC, cancel := context.WithTimeout(ctx, s.Env.Timing.Connect)
			defer cancel()
			if renewed {
				must(0, s.Env.Hub.WaitConnected(ctxC, s.ID))
				n := len(acceptedConns(s.Trace(s.Start())))
				must(0, s.Env.Hub.Drop(s.ID, true, "spec CONN boundaries: hub-side close"))
				if waitAcceptedOrRefused(ctx, s, n+1, "a CONNACK 0 on the reconnect after the hub closed the connection") && clean {
					// Without a session the reconnect must subscribe again:
					// wait for it (or the connection's end) to judge it.
					acc := acceptedConns(s.Trace(s.Start()))
					last := acc[len(acc)-1]
					must(s.WaitTrace(ctx, s.Start(), "the SUBSCRIBE of the reconnect after the hub-side close (CleanSession 1: no session kept), or its close", func(e hub.Entry) bool {
						return e.ConnID == last && ((e.Dir == hub.DirIn && e.Type == "SUBSCRIBE") || e.Type == hub.EventConnClosed)
					}))
				}
			}
			tr := s.Trace(s.Start())
			connects := packets(tr, hub.DirIn, "CONNECT")
			// CONN-011 first: a key sent as the password would otherwise
			// be reported as a malformed token.
			expectNoKeyOnWire(s, tr)
			for i, c := range connects {
				which := connectLabel(i)
				expectTransport(tr, c, which)
				expectIdentityFields(s, tr, c, s.ID.DeviceID, which)
				expectSASToken(tr, c, s.ID.DeviceID, which)
				Expect(c.KeepAlive).To(BeNumerically(">", 0), "CONN-023 (002 L35842): the %s must declare a non-zero keep-alive; seen 0\n%s", which, traceText(tr))
				expectVerdictOK(tr, c, which)
			}
			// Reached only when the hub accepted every CONNECT: the
			// renewal (and the reconnect) were then judged above.
			Expect(len(connects)).To(BeNumerically(">=", 3), "rig: expected the first CONNECT and two renewals; seen %d\n%s", len(connects), traceText(tr))
			expectNoOverlap(tr, connects)
			expectDocumentedSubscriptions(s, tr)
			// CONN-002 on every connection of the session: no plaintext
			// attempt (the rig's stand-in for port 1883 records any) and no
			// plaintext MQTT to the TLS port (a failed handshake).
			for _, e := range hubSince(s, s.Start()) {
				Expect(e.Type == hub.EventPlaintext || e.Type == hub.EventTLSFailed).To(BeFalse(),
					"CONN-002 (002 L13724–13727, L12839): the session's connections must all be TLS; expected no plaintext attempt, seen %s (%s)\n%s", e.Type, e.Reason, traceText(hubSince(s, s.Start())))
			}
		})

	Conformance("every CONNECT of a CA-signed X.509 device — first and after a hub-side close — is MQTT 3.1.1 in TLS with the device ID as ClientId, the documented Username, the full chain and no SAS token, subscribing only documented filters",
		[]string{"CONN-001", "CONN-002", "CONN-005", "CONN-006", "CONN-012", "CONN-013", "CONN-018", "CONN-019"}, func(ctx SpecContext) {
			s := NewSession(ctx, fixtures.SessionOptions{Auth: fixtures.AuthX509CA, NoOpen: true})
			m, first := openForConnect(ctx, s)
			expectAccepted(ctx, s, m, first)
			waitBoardConnected(ctx, s, m)
			ctxC, cancel := context.WithTimeout(ctx, s.Env.Timing.Connect)
			defer cancel()
			must(0, s.Env.Hub.WaitConnected(ctxC, s.ID))
			must(0, s.Env.Hub.Drop(s.ID, false, "spec CONN boundaries (X.509): hub-side close"))
			waitAcceptedOrRefused(ctx, s, 2, "a CONNACK 0 on the reconnect after the hub closed the connection")
			for _, e := range hubSince(s, m) {
				Expect(e.Type).NotTo(Equal(hub.EventPlaintext),
					"CONN-002 (002 L13724–13727, L12839): the X.509 device's connections must all be TLS; expected no plaintext attempt, seen one (%s)\n%s", e.Reason, traceText(hubSince(s, m)))
				Expect(e.Type).NotTo(Equal(hub.EventTLSFailed),
					"CONN-013 (002 L14520, L14644–14648): a TLS handshake of the session failed (%s); expected every connection to present the leaf and its intermediates\n%s", e.Reason, traceText(hubSince(s, m)))
			}
			tr := s.Trace(s.Start())
			connects := packets(tr, hub.DirIn, "CONNECT")
			for i, c := range connects {
				which := connectLabel(i)
				expectTransport(tr, c, which)
				expectIdentityFields(s, tr, c, s.ID.DeviceID, which)
				t := tlsOf(tr, c.ConnID)
				Expect(t != nil && t.TLS.ClientCertSubject != "").To(BeTrue(),
					"CONN-012 (002 L13791, L11656): the %s must present a client certificate in the TLS handshake; expected a certificate, seen none\n%s", which, traceText(tr))
				Expect(t.TLS.ClientCertSubject).To(ContainSubstring(s.ID.DeviceID),
					"CONN-013 (002 L14520): the %s's certificate must be the device's (subject naming %s); seen %q\n%s", which, s.ID.DeviceID, t.TLS.ClientCertSubject, traceText(tr))
				Expect(strings.HasPrefix(c.Password, "SharedAccessSignature") || strings.Contains(c.Password, "sig=")).To(BeFalse(),
					"CONN-012 (002 L11656): the %s must not authenticate with a SAS token as well; seen password %q\n%s", which, c.Password, traceText(tr))
				// CONN-013 (002 L14644–14648): the hub accepts only a chain
				// that leads to the registered root; the fixtures' device CA
				// is an intermediate, so a leaf alone is refused.
				expectVerdictOK(tr, c, which)
			}
			Expect(len(connects)).To(BeNumerically(">=", 2), "rig: expected the first CONNECT and the reconnect's; seen %d\n%s", len(connects), traceText(tr))
			expectDocumentedSubscriptions(s, tr)
		})

	Conformance("over MQTT on a WebSocket (port 443) every CONNECT — first and after a hub-side close — is MQTT 3.1.1 inside TLS with the documented ClientId, Username and SharedAccessSignature",
		[]string{"CONN-001", "CONN-005", "CONN-006", "CONN-007"}, func(ctx SpecContext) {
			// 002 L13724–13727, L10887–10891: MQTT 3.1.1 directly on 8883
			// or tunnelled in a WebSocket on 443; the rest of the CONNECT
			// is the same on both.
			s := NewSession(ctx, fixtures.SessionOptions{NoOpen: true}, agentproto.CapWebSockets, agentproto.CapSAS)
			host, _ := splitHost(s.Env.Hub.HTTPSAddr())
			if s.Env.Options.Advertise != "" {
				host = s.Env.Options.Advertise
			}
			_, port := splitHost(s.Env.Hub.HTTPSAddr())
			hc := &agentproto.HubConfig{Host: fixtures.HubHost, Port: 443, Transport: "wss", Address: net.JoinHostPort(host, port)}
			err := s.Call(ctx, agentproto.OpConfigure, agentproto.Config{Hub: hc}, nil)
			if isUnsupported(err) {
				Fail(fmt.Sprintf("the board declares capability %s but answered %v to hub.transport wss", agentproto.CapWebSockets, err))
			}
			Expect(err).NotTo(HaveOccurred(), "rig: configure hub.transport wss")
			m, first := openForConnect(ctx, s)
			expectAccepted(ctx, s, m, first)
			waitBoardConnected(ctx, s, m)
			ctxC, cancel := context.WithTimeout(ctx, s.Env.Timing.Connect)
			defer cancel()
			must(0, s.Env.Hub.WaitConnected(ctxC, s.ID))
			must(0, s.Env.Hub.Drop(s.ID, false, "spec CONN boundaries (WebSocket): hub-side close"))
			waitAcceptedOrRefused(ctx, s, 2, "a CONNACK 0 on the reconnect after the hub closed the WebSocket connection")
			tr := s.Trace(s.Start())
			connects := packets(tr, hub.DirIn, "CONNECT")
			for i, c := range connects {
				which := connectLabel(i) + " (WebSocket)"
				t := tlsOf(tr, c.ConnID)
				Expect(t != nil && isWebSocket(t)).To(BeTrue(),
					"CONN-001 (002 L10887–10891): the %s was configured for MQTT over WebSocket on 443; expected transport wss, seen %v\n%s", which, transportOf(t), traceText(tr))
				expectTransport(tr, c, which)
				expectIdentityFields(s, tr, c, s.ID.DeviceID, which)
				expectSASToken(tr, c, s.ID.DeviceID, which)
				expectVerdictOK(tr, c, which)
			}
		})

	Conformance("device IDs of every documented shape — lower-case, 128 characters, special characters — appear verbatim in ClientId and Username, URL-encoded once in sr, and their tokens verify",
		[]string{"CONN-005", "CONN-006", "CONN-008", "CONN-009"}, func(ctx SpecContext) {
			// 002 L11217, L11237: IDs are case-sensitive, up to 128
			// characters of ASCII alphanumerics and - . % _ * ? ! ( ) , = @ $ '
			// (+ and # left out: an implementation may declare them
			// unsupported, CONN-024).
			n := time.Now().UnixNano() % 1_000_000_000
			cases := []struct{ shape, id string }{
				{"lower-case", fmt.Sprintf("hil-lower-%d-%d", n, specialIDs.Add(1))},
				{"128 characters, alphanumeric", pad128(fmt.Sprintf("HIL-long-%d-%d-", n, specialIDs.Add(1)))},
				{"128 characters with special characters", specialDeviceID()},
			}
			for _, c := range cases {
				By(c.shape + ": " + c.id)
				s := NewSession(ctx, fixtures.SessionOptions{NoOpen: true, DeviceID: c.id}, agentproto.CapSAS)
				m, connect := openForConnect(ctx, s)
				tr := hubSince(s, m)
				which := "CONNECT of the " + c.shape + " ID"
				expectIdentityFields(s, tr, connect, c.id, which)
				expectSASToken(tr, connect, c.id, which)
				v := connectVerdict(ctx, s, m, connect)
				tr = hubSince(s, m)
				expectVerdictOK(tr, v, which)
				// End this identity's connection before the next case.
				must(0, s.Call(ctx, agentproto.OpClose, agentproto.CloseArgs{Graceful: true}, nil))
			}
		})

	Conformance("twin requests and direct method responses are never published at QoS 2",
		[]string{"CONN-020"}, func(ctx SpecContext) {
			s := NewSession(ctx, fixtures.SessionOptions{})
			m := s.Mark()
			kinds := map[string]string{}
			if boardHas(agentproto.CapTwin) {
				_ = s.Call(ctx, agentproto.OpTwinGet, nil, nil)
				_ = s.Call(ctx, agentproto.OpTwinReport, agentproto.ReportArgs{Patch: map[string]any{"bounds": "conn-020"}}, nil)
				kinds["$iothub/twin/"] = "twin request"
			}
			if boardHas(agentproto.CapMethods) {
				defineMethod(ctx, s, agentproto.MethodBehaviour{Name: "boundsQoS", Status: 200, Payload: `{"qos":"le1"}`})
				_, _ = invokeMethod(ctx, s, hub.MethodRequest{Name: "boundsQoS"})
				kinds["$iothub/methods/res/"] = "method response"
			}
			if len(kinds) == 0 {
				NotApplicable("the board declares neither twin nor methods")
			}
			tr := s.Trace(m)
			seen := map[string]int{}
			for _, p := range packets(tr, hub.DirIn, "PUBLISH") {
				for prefix, kind := range kinds {
					if strings.HasPrefix(p.Topic, prefix) {
						seen[kind]++
						Expect(p.QoS).To(BeNumerically("<=", 1),
							"CONN-020 (002 L13917): a %s must be published at QoS 0 or 1; PUBLISH #%d on %q has QoS %d\n%s", kind, p.Seq, p.Topic, p.QoS, traceText(tr))
					}
				}
			}
			for _, v := range s.Violations(m) {
				Expect(v.Requirement).NotTo(Equal("CONN-020"), "CONN-020 (002 L13917): the hub closed the connection: %s\n%s", v.Reason, traceText(tr))
			}
			for _, kind := range kinds {
				Expect(seen[kind]).To(BeNumerically(">", 0), "CONN-020: expected at least one %s PUBLISH on the wire; seen none\n%s", kind, traceText(tr))
			}
		})

	Conformance("an empty Will is declared on every CONNECT and delivered as a Will message after a hub-side drop and after a network cut; a graceful close delivers no Will",
		[]string{"CONN-021"}, func(ctx SpecContext) {
			will := &agentproto.Will{Payload: ""}
			s := NewSession(ctx, fixtures.SessionOptions{NoOpen: true, Will: will})
			m, connect := openForConnect(ctx, s)
			tr := hubSince(s, m)
			Expect(connect.WillTopic).NotTo(BeEmpty(),
				"CONN-021 (002 L13826): the configured Will (empty payload, legal in MQTT 3.1.1 §3.1.3.3) must be declared in CONNECT; expected a Will topic, seen none\n%s", traceText(tr))
			t, err := iothub.CheckDevicePublish(s.ID, connect.WillTopic)
			Expect(err == nil && t.Kind == iothub.TopicTelemetry).To(BeTrue(),
				"CONN-021 (002 L13826): Will topic %q must be this device's telemetry topic (%v)\n%s", connect.WillTopic, err, traceText(tr))
			expectAccepted(ctx, s, m, connect)
			waitBoardConnected(ctx, s, m)
			ctxC, cancel := context.WithTimeout(ctx, s.Env.Timing.Connect)
			defer cancel()
			must(0, s.Env.Hub.WaitConnected(ctxC, s.ID))
			mDrop := s.Mark()
			must(0, s.Env.Hub.Drop(s.ID, true, "spec CONN-021: unclean loss"))
			msg := must(s.WaitTelemetry(ctx, m, func(msg hub.Message) bool { return msg.Will }))
			Expect(msg.Properties.Map()).To(HaveKeyWithValue(iothub.PropMessageType, "Will"), "CONN-021 (002 L13828): the Will is tagged iothub-MessageType=Will\n%s", traceText(s.Trace(m)))
			Expect(msg.Payload).To(BeEmpty(), "CONN-021 (002 L13827): the Will payload as declared (empty); seen %d bytes\n%s", len(msg.Payload), traceText(s.Trace(m)))

			if !waitAcceptedOrRefused(ctx, s, 2, "a CONNACK 0 on the reconnect after the unclean loss") {
				Fail(fmt.Sprintf("the hub refused the reconnect after the unclean loss\n%s", traceText(s.Trace(s.Start()))))
			}
			waitBoardConnected(ctx, s, mDrop)
			acc := acceptedConns(s.Trace(s.Start()))
			up := acc[len(acc)-1]
			// Every CONNECT of the session declares the Will: a client
			// that keeps it for the first connection only loses it on the
			// losses that matter most.
			everyConnectHasWill := func() {
				for i, c := range packets(s.Trace(s.Start()), hub.DirIn, "CONNECT") {
					Expect(c.WillTopic).NotTo(BeEmpty(), "CONN-021 (002 L13826): the %s must declare the configured Will too; expected a Will topic, seen none\n%s", connectLabel(i), traceText(s.Trace(s.Start())))
				}
			}
			everyConnectHasWill()

			// A network cut under the reconnected connection: the hub
			// sees the TCP die, the Will of that connection arrives.
			mCut := s.Mark()
			Expect(s.Env.Net.Cut()).To(BeNumerically(">=", 1), "rig: no live connection to cut")
			cutWill := must(s.WaitTelemetry(ctx, mCut, func(msg hub.Message) bool { return msg.Will && msg.ConnID == up }))
			Expect(cutWill.Payload).To(BeEmpty(), "CONN-021 (002 L13827): the Will after the network cut, as declared (empty); seen %d bytes\n%s", len(cutWill.Payload), traceText(s.Trace(mCut)))
			if !waitAcceptedOrRefused(ctx, s, 3, "a CONNACK 0 on the reconnect after the network cut") {
				Fail(fmt.Sprintf("the hub refused the reconnect after the network cut\n%s", traceText(s.Trace(s.Start()))))
			}
			waitBoardConnected(ctx, s, mCut)
			acc = acceptedConns(s.Trace(s.Start()))
			up = acc[len(acc)-1]
			everyConnectHasWill()

			// Graceful close of the reconnected client: DISCONNECT
			// discards the Will (MQTT 3.1.1 §3.14), so no Will arrives.
			m2 := s.Mark()
			must(0, s.Call(ctx, agentproto.OpClose, agentproto.CloseArgs{Graceful: true}, nil))
			must(s.WaitTrace(ctx, m2, "the reconnected connection closing", func(e hub.Entry) bool {
				return e.Type == hub.EventConnClosed && e.ConnID == up
			}))
			// The hub stores a Will before it records the close (rig/hub
			// OnDisconnect), so the store is complete here.
			// Judged per connection: the unclean loss's Will may be stored
			// late, but it belongs to the first connection.
			for _, w := range s.Env.Hub.AllTelemetry(m.Telemetry) {
				Expect(w.Will && w.Identity == s.ID && w.ConnID == up).To(BeFalse(),
					"CONN-021 (002 L13826–13828): a graceful close (client.close) must not deliver the Will; expected no Will, seen Will message %d\n%s", w.Seq, traceText(s.Trace(m2)))
			}
		})

	Conformance("on a link the hub keeps busy the device still sends a packet within every keep-alive interval",
		[]string{"CONN-023"}, func(ctx SpecContext) {
			// 002 L35842: the device implements keep-alive; MQTT 3.1.1
			// §3.1.2.10: the client's own packets count, not the server's.
			// The hub pushes desired-property patches (QoS 0, no PUBACK)
			// while the device has nothing to send.
			s := NewSession(ctx, fixtures.SessionOptions{KeepAliveS: 2}, agentproto.CapTwin)
			connect := must(s.WaitTrace(ctx, s.Start(), "CONNECT", func(e hub.Entry) bool { return e.Dir == hub.DirIn && e.Type == "CONNECT" }))
			Expect(connect.KeepAlive).To(BeNumerically(">", 0), "CONN-023 (002 L35842): CONNECT keep-alive must be > 0\n%s", traceText(s.Trace(s.Start())))
			waitBoardConnected(ctx, s, s.Start())
			ka := time.Duration(connect.KeepAlive) * time.Second
			m := s.Mark()
			begin := time.Now()
			window := 3 * ka
			tick := time.NewTicker(ka / 5)
			defer tick.Stop()
			pushed := 0
		busy:
			for time.Since(begin) < window {
				if _, err := s.Env.Hub.UpdateDesired(s.ID, map[string]any{"busy": pushed}); err == nil {
					pushed++
				}
				select {
				case <-ctx.Done():
					break busy
				case <-tick.C:
				}
				if closedConn(s.Trace(m), connect.ConnID) != nil {
					break
				}
			}
			end := time.Now()
			tr := s.Trace(s.Start())
			if c := closedConn(tr, connect.ConnID); c != nil && c.Requirement == "CONN-023" {
				Fail(fmt.Sprintf("CONN-023 (002 L35842): the hub closed the connection for keep-alive while it kept the link busy: %s; expected a device packet within every %s\n%s", c.Reason, ka, traceText(tr)))
			}
			out := 0
			last := connect.Time
			for _, e := range tr {
				if e.ConnID != connect.ConnID {
					continue
				}
				if e.Dir == hub.DirOut && e.Type == "PUBLISH" && e.Seq > m.Trace {
					out++
				}
				if e.Dir != hub.DirIn {
					continue
				}
				Expect(e.Time.Sub(last)).To(BeNumerically("<=", ka*3/2),
					"CONN-023 (002 L35842): %s #%d came %s after the previous device packet; keep-alive is %s (at most 1.5 × allowed)\n%s", e.Type, e.Seq, e.Time.Sub(last), ka, traceText(tr))
				last = e.Time
			}
			if c := closedConn(tr, connect.ConnID); c == nil {
				Expect(end.Sub(last)).To(BeNumerically("<=", ka*3/2),
					"CONN-023 (002 L35842): no device packet in the last %s of the busy window; keep-alive is %s\n%s", end.Sub(last), ka, traceText(tr))
			}
			if out < 3 {
				PreconditionUnmet(fmt.Sprintf("the hub delivered only %d desired patches on the connection (pushed %d): the link was not busy", out, pushed))
			}
		})
})

// preferCleanSession asks the board for CleanSession 1 (so every reconnect
// starts without a session and resubscribes); a board that cannot is left
// with its default, and a board declaring clean-session-1 must do it.
func preferCleanSession(ctx context.Context, s *fixtures.Session) bool {
	GinkgoHelper()
	clean := true
	err := s.Call(ctx, agentproto.OpConfigure, agentproto.Config{MQTT: &agentproto.MQTTConfig{CleanSession: &clean}}, nil)
	if ae, ok := fixtures.IsDeviceError(err); ok && ae.Code == agentproto.ErrUnsupported {
		Expect(boardHas(agentproto.CapCleanSession1)).To(BeFalse(), "the board declares clean-session-1 but answered %v to mqtt.cleanSession true", err)
		return false
	}
	Expect(err).NotTo(HaveOccurred(), "rig: configure mqtt.cleanSession")
	return true
}

// waitAcceptedOrRefused waits until the session's trace holds n accepted
// connections (true) or the hub refused a CONNECT or handshake of it
// (false: the caller's checks name the broken rule). A device that does
// not come back within the deadline is not judged here (reconnecting is
// RECON-001's): the spec ends as precondition-unmet when what asks for
// the reconnect is all it would judge.
func waitAcceptedOrRefused(ctx context.Context, s *fixtures.Session, n int, what string) bool {
	GinkgoHelper()
	var accepted, refused bool
	_, err := s.WaitTrace(ctx, s.Start(), what+", or the hub refusing a CONNECT", func(hub.Entry) bool {
		tr := s.Trace(s.Start())
		if len(acceptedConns(tr)) >= n {
			accepted = true
			return true
		}
		for _, e := range tr {
			if e.Type == hub.EventConnRejected || (e.Dir == hub.DirOut && e.Type == "CONNACK" && e.ReturnCode != 0) {
				refused = true
				return true
			}
		}
		// A handshake the hub refused (no client identity yet).
		for _, e := range hubSince(s, s.Start()) {
			if e.Type == hub.EventTLSFailed {
				refused = true
				return true
			}
		}
		return false
	})
	if err != nil && !refused {
		PreconditionUnmet(fmt.Sprintf("%s: not seen within the deadline (reconnecting is RECON-001's matter; this spec judges the CONNECTs it gets)\n%s", what, traceText(s.Trace(s.Start()))))
	}
	return accepted
}

func connectLabel(i int) string {
	if i == 0 {
		return "first CONNECT"
	}
	return fmt.Sprintf("CONNECT #%d of the session (reconnect %d)", i+1, i)
}

func pad128(prefix string) string { return prefix + strings.Repeat("x", 128-len(prefix)) }

// expectTransport judges CONN-001/002 on one CONNECT: TLS first, level 4.
func expectTransport(tr []hub.Entry, c hub.Entry, which string) {
	GinkgoHelper()
	t := tlsOf(tr, c.ConnID)
	Expect(t != nil && t.Seq < c.Seq).To(BeTrue(), "CONN-001 (002 L13724–13727): the %s must come inside TLS; expected a handshake before it, seen none\n%s", which, traceText(tr))
	Expect(wsOrMQTTS(t)).To(BeTrue(), "CONN-001 (002 L13724–13727): the %s must be MQTT over TLS on 8883 or WebSocket on 443; seen transport %q\n%s", which, t.TLS.Transport, traceText(tr))
	Expect(c.ProtoLevel).To(BeEquivalentTo(4), "CONN-001 (002 L13724): the %s must name MQTT 3.1.1 (protocol level 4); seen level %d\n%s", which, c.ProtoLevel, traceText(tr))
}

// expectIdentityFields judges CONN-005/006 on one CONNECT.
func expectIdentityFields(s *fixtures.Session, tr []hub.Entry, c hub.Entry, id, which string) {
	GinkgoHelper()
	Expect(c.ClientID).To(Equal(id), "CONN-005 (002 L13774, L11373): the %s's ClientId must be the device ID byte for byte; expected %q, seen %q\n%s", which, id, c.ClientID, traceText(tr))
	// 002 L13775–13780, L11356: {hub FQDN}/{deviceId}/ then, when there
	// is a query (api-version), one "/?" before it.
	Expect(c.Username).To(HavePrefix(fixtures.HubHost+"/"+id+"/"),
		"CONN-006 (002 L13775–13780): the %s's Username must be {hub FQDN}/{deviceId}/?api-version=…; expected prefix %q, seen %q\n%s", which, fixtures.HubHost+"/"+id+"/", c.Username, traceText(tr))
	rest := strings.TrimPrefix(c.Username, fixtures.HubHost+"/"+id+"/")
	Expect(rest == "" || strings.HasPrefix(rest, "?")).To(BeTrue(),
		"CONN-006 (002 L13775): the %s's Username continues after the ID with %q; expected nothing or ?api-version=…\n%s", which, rest, traceText(tr))
	if t := tlsOf(tr, c.ConnID); t != nil && t.TLS.ServerName != "" {
		host, _, _ := strings.Cut(c.Username, "/")
		Expect(strings.EqualFold(host, t.TLS.ServerName)).To(BeTrue(), "CONN-006 (002 L13775): the %s's Username host %q must equal the SNI %q\n%s", which, host, t.TLS.ServerName, traceText(tr))
	}
}

// expectSASToken judges CONN-007/008/010 on one CONNECT's password facts.
func expectSASToken(tr []hub.Entry, c hub.Entry, id, which string) {
	GinkgoHelper()
	pw := c.Password
	Expect(pw).To(HavePrefix("SharedAccessSignature "), "CONN-007 (002 L13783–13786): the %s's Password must start with \"SharedAccessSignature \"; seen %q\n%s", which, pw, traceText(tr))
	fields := map[string]string{}
	var names []string
	for _, f := range strings.Split(strings.TrimPrefix(pw, "SharedAccessSignature "), "&") {
		k, v, _ := strings.Cut(f, "=")
		fields[k] = v
		names = append(names, k)
	}
	sort.Strings(names)
	Expect(names).To(Equal([]string{"se", "sig", "sr"}), "CONN-007 (002 L11413–11417): the %s's token holds sr, sig and se (skn only with a policy key)\n%s", which, traceText(tr))
	sr, err := url.QueryUnescape(fields["sr"])
	Expect(err).NotTo(HaveOccurred(), "CONN-008 (002 L11426): the %s's sr %q must be URL-encoded\n%s", which, fields["sr"], traceText(tr))
	host, path, _ := strings.Cut(sr, "/")
	Expect(strings.EqualFold(host, fixtures.HubHost) && path == "devices/"+id).To(BeTrue(),
		"CONN-008 (002 L11426, L11431): the %s's sr must decode once to {hub FQDN}/devices/%s; seen %q (on the wire %q)\n%s", which, id, sr, fields["sr"], traceText(tr))
	se, err := strconv.ParseInt(fields["se"], 10, 64)
	Expect(err).NotTo(HaveOccurred(), "CONN-010 (002 L11427): the %s's se must be decimal seconds since 1970; seen %q\n%s", which, fields["se"], traceText(tr))
	// Seconds, not milliseconds (002 L11427, L11440–11441): a value read
	// as milliseconds would lie past the year 5000.
	Expect(se).To(BeNumerically("<", int64(1e11)), "CONN-010 (002 L11427): the %s's se %d is not seconds since 1970 (milliseconds?)\n%s", which, se, traceText(tr))
	Expect(time.Unix(se, 0).After(c.Time)).To(BeTrue(), "CONN-010 (002 L11440–11441): the %s's se %s must lie after the CONNECT (%s)\n%s",
		which, time.Unix(se, 0).UTC().Format(time.RFC3339), c.Time.UTC().Format(time.RFC3339), traceText(tr))
}

// expectVerdictOK fails when the hub refused c (its answer names the
// broken requirement, CONN-009 for a signature that does not verify).
func expectVerdictOK(tr []hub.Entry, c hub.Entry, which string) {
	GinkgoHelper()
	for _, e := range tr {
		if e.ConnID != c.ConnID {
			continue
		}
		if e.Type == hub.EventConnRejected {
			Fail(fmt.Sprintf("%s: the hub refused the %s (return code %d): %s\n%s", orReq(e.Requirement, "CONN-009"), which, e.ReturnCode, e.Reason, traceText(tr)))
		}
		if e.Dir == hub.DirOut && e.Type == "CONNACK" {
			Expect(e.ReturnCode).To(BeZero(), "CONN-009 (002 L11442–11447): the hub's CONNACK to the %s; expected 0\n%s", which, traceText(tr))
		}
	}
}

func orReq(req, def string) string {
	if req == "" {
		return def
	}
	return req
}

// expectNoOverlap judges CONN-016 over every pair of consecutive CONNECTs.
func expectNoOverlap(tr []hub.Entry, connects []hub.Entry) {
	GinkgoHelper()
	for i := 1; i < len(connects); i++ {
		prev, next := connects[i-1], connects[i]
		end := connEnd(tr, prev.ConnID)
		Expect(end != nil && end.Seq < next.Seq).To(BeTrue(),
			"CONN-016 (002 L13920): %s (connection %d) came while connection %d was still up; expected a DISCONNECT or close before it\n%s",
			connectLabel(i), next.ConnID, prev.ConnID, traceText(tr))
	}
	for _, e := range tr {
		Expect(e.Type == hub.EventConnClosed && e.Requirement == "CONN-016").To(BeFalse(),
			"CONN-016 (002 L13920): the hub closed connection %d because another took over: %s\n%s", e.ConnID, e.Reason, traceText(tr))
	}
}

// expectDocumentedSubscriptions judges CONN-018/019 over every
// connection: the active set resets when a CONNACK says no session.
func expectDocumentedSubscriptions(s *fixtures.Session, tr []hub.Entry) {
	GinkgoHelper()
	documented := map[string]bool{iothub.C2DFilter(s.ID.DeviceID): true, iothub.TwinResponseFilter: true,
		iothub.TwinDesiredFilter: true, iothub.MethodsFilter: true}
	active := map[string]bool{}
	for _, e := range tr {
		switch {
		case e.Dir == hub.DirOut && e.Type == "CONNACK" && e.ReturnCode == 0 && !e.Session:
			active = map[string]bool{}
		case e.Dir == hub.DirIn && e.Type == "SUBSCRIBE":
			for _, f := range e.Filters {
				active[f.Filter] = true
				Expect(documented[f.Filter]).To(BeTrue(), "CONN-018 (002 L13926): SUBSCRIBE #%d on connection %d asks for %q, not a documented IoT Hub filter\n%s", e.Seq, e.ConnID, f.Filter, traceText(tr))
			}
			Expect(len(active)).To(BeNumerically("<=", iothub.MaxSubscriptions),
				"CONN-019 (002 L12577): %d active subscriptions after SUBSCRIBE #%d, at most %d allowed\n%s", len(active), e.Seq, iothub.MaxSubscriptions, traceText(tr))
		case e.Dir == hub.DirIn && e.Type == "UNSUBSCRIBE":
			for _, f := range e.Filters {
				delete(active, f.Filter)
			}
		case e.Type == hub.EventViolation && (e.Requirement == "CONN-018" || e.Requirement == "CONN-019"):
			Fail(fmt.Sprintf("%s: hub closed the connection: %s\n%s", e.Requirement, e.Reason, traceText(tr)))
		}
	}
}

func splitHost(addr string) (string, string) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, ""
	}
	return h, p
}

// isWebSocket reports whether the handshake t was on the hub's 443
// listener: the trace records it as "https" (the handshake comes before the
// upgrade) or "wss"; a CONNECT on that listener came through the WebSocket.
func isWebSocket(t *hub.Entry) bool {
	return t.TLS != nil && (t.TLS.Transport == "wss" || t.TLS.Transport == "https")
}

func wsOrMQTTS(t *hub.Entry) bool {
	return t.TLS != nil && (t.TLS.Transport == "mqtts" || isWebSocket(t))
}

func transportOf(t *hub.Entry) string {
	if t == nil || t.TLS == nil {
		return "no TLS handshake"
	}
	return t.TLS.Transport
}

// expectNoKeyOnWire judges CONN-011 over every device packet of tr: the
// hub masks every registered secret and names it (Entry.Secrets), and the
// Base64, URL-encoded and raw forms of the key are searched for as well
// (the message names where, never the key).
func expectNoKeyOnWire(s *fixtures.Session, tr []hub.Entry) {
	GinkgoHelper()
	keyB64 := s.Key()
	raw, _ := base64.StdEncoding.DecodeString(keyB64)
	forms := map[string][]byte{"the Base64 key": []byte(keyB64), "the URL-encoded key": []byte(url.QueryEscape(keyB64)), "the decoded key bytes": raw}
	own := map[string]bool{hub.KeyLabel(s.ID, "primary"): true, hub.KeyLabel(s.ID, "secondary"): true}
	var leaks []string
	for _, e := range tr {
		if e.Dir != hub.DirIn {
			continue
		}
		where := fmt.Sprintf("%s #%d (connection %d)", e.Type, e.Seq, e.ConnID)
		for _, sec := range e.Secrets {
			if own[sec.Secret] {
				leaks = append(leaks, fmt.Sprintf("the device key (%s) in %s %s", sec.Form, where, sec.Field))
			}
		}
		for _, b := range [][]byte{[]byte(e.ClientID), []byte(e.Username), []byte(e.Password), []byte(e.Topic), e.Payload} {
			for name, f := range forms {
				if len(b) > 0 && len(f) > 0 && bytes.Contains(b, f) {
					leaks = append(leaks, name+" in "+where)
				}
			}
		}
	}
	Expect(leaks).To(BeEmpty(), "CONN-011 (002 L11344, L11400): the device key must never be transmitted, on any connection; found %s\n%s",
		strings.Join(leaks, ", "), strings.ReplaceAll(traceText(tr), keyB64, "<device key>"))
}

// closedConn returns the close entry of connection id, nil if none.
func closedConn(tr []hub.Entry, id uint64) *hub.Entry {
	for i, e := range tr {
		if e.ConnID == id && e.Type == hub.EventConnClosed {
			return &tr[i]
		}
	}
	return nil
}
