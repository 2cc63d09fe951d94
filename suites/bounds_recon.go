package suites

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/url"
	"slices"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/iothub"
)

// Boundary specs for RECON-008 and RECON-006 (issue 15): the restore after
// a reconnect judged past the one hub drop of reconnect.go — a network
// reset, a clean close, a persistent session the hub no longer holds
// (CleanSession 0, CONNACK session-present 0) and the reconnect of a SAS
// token renewal, with the session kept and lost.
var _ = Describe("reconnect: restore after every kind of loss", func() {
	Conformance("after a TCP reset, a clean close and a loss in which the hub discarded the kept session, the device subscribes again whenever CONNACK says session-present 0 and resyncs its twin", []string{"RECON-008"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		before := subscribedFilters(s.Trace(s.Start()))
		Expect(before).NotTo(BeEmpty(), "the device subscribed nothing on its first connection\n%s", traceText(s.Trace(s.Start())))
		net := s.Env.Net
		for _, c := range []struct {
			name string
			loss func() fixtures.Marks // the mark from which the device's comeback is looked for
		}{
			{"TCP reset (RST) of the link", func() fixtures.Marks {
				m := s.Mark()
				Expect(net.Cut()).To(BeNumerically(">=", 1), "rig: no live connection to cut")
				return m
			}},
			{"clean TCP close (FIN) of the link", func() fixtures.Marks {
				m := s.Mark()
				Expect(net.CloseAll()).To(BeNumerically(">=", 1), "rig: no live connection to close")
				return m
			}},
			{"link reset while the hub discards the session (a CleanSession 1 connection of the identity meanwhile)", func() fixtures.Marks {
				// The board is kept off the hub (every new link refused), and a
				// connection of its identity with CleanSession 1 ends whatever
				// session the hub kept (MQTT 3.1.1 §3.1.2.4); then the board
				// may come back, to a hub that holds no session for it.
				net.RefuseNew(true)
				defer net.RefuseNew(false)
				Expect(net.Cut()).To(BeNumerically(">=", 1), "rig: no live connection to cut")
				must(0, s.Env.Hub.Wait(ctx, func() bool { return !s.Env.Hub.Connected(s.ID) }))
				must(0, cleanSessionConnect(ctx, s))
				// The clean connection is not the device's comeback.
				return s.Mark()
			}},
		} {
			live := liveConn(s)
			m := c.loss()
			up := reconnected(ctx, s, m, live, "RECON-008: after a "+c.name)
			onNew := func() []hub.Entry {
				var out []hub.Entry
				for _, e := range s.Trace(m) {
					if e.ConnID == up.ConnID {
						out = append(out, e)
					}
				}
				return out
			}
			connect, _ := connectOf(s.Trace(m), up.ConnID)
			GinkgoWriter.Printf("%s: CleanSession %v, session present %v\n", c.name, connect.CleanSession, up.Session)
			if !up.Session {
				_ = waitCond(ctx, s, m, "RECON-008: the first connection's filters subscribed again on the new one", func([]hub.Entry) bool {
					return containsAll(subscribedFilters(onNew()), before)
				})
				Expect(containsAll(subscribedFilters(onNew()), before)).To(BeTrue(), "RECON-008 (%s): expected the new connection %d to subscribe again to %v: its CONNACK said session-present 0 (CleanSession %v), so the hub holds no subscription (002 L13928: subscriptions are restored unless the session is present); seen %v\n%s",
					c.name, up.ConnID, before, connect.CleanSession, subscribedFilters(onNew()), traceText(s.Trace(m)))
			}
			if s.Env.Has("twin") {
				err := waitCond(ctx, s, m, "RECON-008: a twin GET on the new connection", func([]hub.Entry) bool {
					return len(publishes(onNew(), "$iothub/twin/GET/")) > 0
				})
				Expect(err).NotTo(HaveOccurred(), "RECON-008 (%s): expected the twin resync of TWIN-010 (a PUBLISH to $iothub/twin/GET/) on the new connection %d (002 L12100-12104); none seen\n%s", c.name, up.ConnID, traceText(s.Trace(m)))
				get := publishes(onNew(), "$iothub/twin/GET/")[0]
				for _, p := range publishes(onNew(), "$iothub/twin/PATCH/properties/reported/") {
					Expect(p.Seq).To(BeNumerically(">", get.Seq), "RECON-008 (%s): a reported PATCH went out on the new connection before the twin GET (acting on desired state before the resync)\n%s", c.name, traceText(s.Trace(m)))
				}
			}
		}
	})

	Conformance("the reconnect of a SAS token renewal subscribes again when the session was lost and resyncs the twin, with the session kept and with CleanSession 1", []string{"RECON-006", "RECON-008"}, func(ctx SpecContext) {
		ttl := tokenLife(4*time.Second, 4*time.Second, 30*time.Second, "a renewal reconnect")
		s := NewSession(ctx, fixtures.SessionOptions{TokenTTL: ttl, NoOpen: true}, agentproto.CapSAS)
		for i, clean := range []bool{false, true} {
			name := "default session"
			if clean {
				must(0, s.Call(ctx, agentproto.OpClose, nil, nil))
				cs := true
				err := s.Call(ctx, agentproto.OpConfigure, agentproto.Config{MQTT: &agentproto.MQTTConfig{CleanSession: &cs}}, nil)
				if ae, ok := fixtures.IsDeviceError(err); ok && ae.Code == agentproto.ErrUnsupported {
					GinkgoWriter.Printf("CleanSession 1 unsupported (%s): the session-lost renewal is not judged\n", ae.Msg)
					break
				}
				must(0, err)
				name = "CleanSession 1"
			}
			m := s.Mark()
			must(0, s.Open(ctx))
			first := must(s.WaitTrace(ctx, m, "CONNECT", isConnect))
			up0 := must(s.WaitTrace(ctx, m, "CONNACK 0", isConnack(0)))
			before := subscribedFilters(connTrace(s.Trace(m), up0.ConnID))
			se := tokenExpiry(first)
			Expect(se).NotTo(BeZero(), "no se in the first token")
			wctx, cancel := context.WithDeadline(ctx, se.Add(2*time.Second))
			renewed, err := s.WaitTrace(wctx, fixtures.Marks{Trace: first.Seq}, "RECON-006: a new CONNECT with a fresh token before se", isConnect)
			cancel()
			Expect(err).NotTo(HaveOccurred(), "RECON-006 (%s, round %d): expected a reconnect with a fresh token before the token's se %s (002 L11725, L11387-11390)\n%s", name, i+1, se.Format(time.TimeOnly), traceText(s.Trace(m)))
			rm := fixtures.Marks{Trace: renewed.Seq - 1}
			up := reconnected(ctx, s, rm, up0.ConnID, "RECON-006: after the renewal reconnect")
			onNew := func() []hub.Entry { return connTrace(s.Trace(rm), up.ConnID) }
			GinkgoWriter.Printf("%s: renewal reconnect CleanSession %v, session present %v\n", name, renewed.CleanSession, up.Session)
			if !up.Session {
				_ = waitCond(ctx, s, rm, "the subscriptions again on the renewal's connection", func([]hub.Entry) bool {
					return containsAll(subscribedFilters(onNew()), before)
				})
				Expect(containsAll(subscribedFilters(onNew()), before)).To(BeTrue(), "RECON-006/RECON-008 (%s): the renewal's connection %d got CONNACK session-present 0, so it must subscribe again to %v like any reconnect (002 L13928: subscriptions are restored unless the session is present); seen %v\n%s",
					name, up.ConnID, before, subscribedFilters(onNew()), traceText(s.Trace(rm)))
			}
			if s.Env.Has("twin") {
				err := waitCond(ctx, s, rm, "a twin GET on the renewal's connection", func([]hub.Entry) bool {
					return len(publishes(onNew(), "$iothub/twin/GET/")) > 0
				})
				Expect(err).NotTo(HaveOccurred(), "RECON-008 (%s): the renewal is a reconnect; expected the twin resync (a PUBLISH to $iothub/twin/GET/) on its connection %d (002 L12100-12104); none seen\n%s", name, up.ConnID, traceText(s.Trace(rm)))
			}
		}
	})

	Conformance("a clean close (FIN) during TLS, after CONNECT before CONNACK and in the middle of a PUBLISH is survived: the device reconnects and sends", []string{"RECON-010"}, func(ctx SpecContext) {
		// The close points of resilience_net.go's RECON-010 spec, each ended
		// with a FIN (the proxy's CloseAfter) where that spec resets.
		s := NewSession(ctx, fixtures.SessionOptions{Retry: &agentproto.RetryConfig{InitialMS: 100, MaxMS: 400, JitterPct: 20}})
		net, h := s.Env.Net, s.Env.Hub
		m, nm0 := s.Mark(), net.Mark()
		DeferCleanup(net.Restore)
		evidence := func() string { return netText(net.Events(), nm0) + traceText(s.Trace(m)) }
		// Calibration: the bytes up to the end of a CONNECT, from one attempt
		// the hub refuses (CONNACK 3) after a clean close of the live link.
		nm, cm := net.Mark(), s.Mark()
		h.RefuseConnects(s.ID, 3, s.Env.Timing.Event)
		Expect(net.CloseAll()).To(BeNumerically(">=", 1), "rig: no live connection to close")
		if _, err := s.WaitTrace(ctx, cm, "the calibration attempt refused with CONNACK 3", isConnack(3)); err != nil {
			Fail(fmt.Sprintf("RECON-010: after a clean close (FIN) of its live connection the device made no reconnect attempt within %s (its state: %s): an abrupt close at any moment must be survived (002 L13767, L16694-16698)\n%s", s.Env.Timing.Event, deviceState(ctx, s), evidence()))
		}
		h.RefuseConnects(s.ID, 3, 0)
		abruptEnds(ctx, s, m, abruptClose, calibratedConnectBytes(ctx, net, nm, evidence), 11, evidence, func() {})
	})
})

// connTrace is the part of tr on hub connection id.
func connTrace(tr []hub.Entry, id uint64) []hub.Entry {
	var out []hub.Entry
	for _, e := range tr {
		if e.ConnID == id {
			out = append(out, e)
		}
	}
	return out
}

// containsAll says whether every filter of want is in got.
func containsAll(got, want []string) bool {
	for _, f := range want {
		if !slices.Contains(got, f) {
			return false
		}
	}
	return true
}

// cleanSessionConnect connects once with the session's device identity and
// CleanSession 1, directly to the hub, then disconnects: whatever
// persistent session the hub kept for the identity ends (MQTT 3.1.1
// §3.1.2.4). The token is signed from the registry key and never printed.
func cleanSessionConnect(ctx context.Context, s *fixtures.Session) error {
	tok, err := iothub.NewSASToken(iothub.DeviceResourceURI(fixtures.HubHost, s.ID), s.Key(), time.Now().Add(time.Hour), "")
	if err != nil {
		return fmt.Errorf("SAS token for the clean connection: %v", err) // names no key material
	}
	tlsc := &tls.Config{ServerName: fixtures.HubHost, RootCAs: s.Env.Hub.RootCAs(), MinVersion: tls.VersionTLS12}
	user := iothub.FormatUsername(fixtures.HubHost, s.ID, iothub.DefaultAPIVersion, url.Values{"DeviceClientType": {duplicateClientType}})
	o := paho.NewClientOptions().AddBroker("ssl://" + s.Env.Hub.MQTTAddr()).SetClientID(s.ID.ClientID()).
		SetUsername(user).SetPassword(tok).SetProtocolVersion(4).SetTLSConfig(tlsc).SetCleanSession(true).
		SetAutoReconnect(false).SetConnectRetry(false).SetKeepAlive(60 * time.Second).
		SetConnectTimeout(s.Env.Timing.Connect).SetWriteTimeout(s.Env.Timing.Connect)
	cli := paho.NewClient(o)
	ct := cli.Connect()
	if !ct.WaitTimeout(s.Env.Timing.Connect) || ct.Error() != nil {
		cli.Disconnect(0)
		return fmt.Errorf("the clean connection of %s could not connect: %v", s.ID, ct.Error())
	}
	cli.Disconnect(50)
	wctx, cancel := context.WithTimeout(ctx, s.Env.Timing.Connect)
	defer cancel()
	return s.Env.Hub.Wait(wctx, func() bool { return !s.Env.Hub.Connected(s.ID) })
}
