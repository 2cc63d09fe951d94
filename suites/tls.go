package suites

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/certs"
	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/rig/agent"
	"github.com/hilrun/hilrun/rig/hub"
)

// certRefusalAttempts is how many attempts in a row CERT-004 presents an
// unknown root for.
const certRefusalAttempts = 5

var _ = Describe("tls", func() {
	// CONN-003 / CLOCK-003: each bad server certificate must end the
	// handshake; the device never sends CONNECT (so never its credentials).
	for _, tc := range []struct {
		what string // "the board abandons the handshake with <what>"
		fact string // the FactRoot name
		reqs []string
		cert func(*certs.Scenario) (tls.Certificate, error)
	}{
		{"a chain under a root the board does not trust", "chain under an untrusted root", []string{"CONN-003"},
			func(sc *certs.Scenario) (tls.Certificate, error) { return sc.Server(sc.NewRoot, 1, certs.Valid) }},
		{"a leaf for another host name under the trusted root", "leaf for another host name (wrong host)", []string{"CONN-003"},
			func(sc *certs.Scenario) (tls.Certificate, error) { return sc.Server(sc.OldRoot, 1, certs.WrongHost) }},
		{"an expired leaf under the trusted root", "expired server leaf", []string{"CONN-003", "CLOCK-003"},
			func(sc *certs.Scenario) (tls.Certificate, error) { return sc.Server(sc.OldRoot, 1, certs.Expired) }},
		{"a not-yet-valid leaf under the trusted root", "not-yet-valid server leaf", []string{"CONN-003", "CLOCK-003"},
			func(sc *certs.Scenario) (tls.Certificate, error) { return sc.Server(sc.OldRoot, 1, certs.NotYetValid) }},
	} {
		Conformance("the board abandons the handshake with "+tc.what+": no CONNECT, no credentials reach the hub", tc.reqs, func(ctx SpecContext) {
			s := NewSession(ctx, fixtures.SessionOptions{NoOpen: true})
			tlsServe(s, must(tc.cert(tlsScenario(s))))
			m, ev := tlsAttempt(ctx, s)
			tr := tlsObserveQuiet(ctx, s, m)
			seen := tlsOutcome(tr, ev)
			fixtures.NoteFact(fixtures.FactRoot, tc.fact, seen, !strings.HasPrefix(seen, "accepted"))
			tlsExpectRefused(tr, tc.reqs[0], tc.what)
		})
	}

	Conformance("an unknown root presented many times in a row never leads to a completed handshake, a CONNECT or a plaintext attempt", []string{"CERT-004", "CONN-002"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{NoOpen: true})
		sc := tlsScenario(s)
		tlsServe(s, must(sc.Server(sc.NewRoot, 1, certs.Valid)))
		m0 := s.Mark()
		for i := 0; i < certRefusalAttempts; i++ {
			tlsAttempt(ctx, s)
			must(0, s.Call(ctx, agentproto.OpClose, agentproto.CloseArgs{Graceful: true}, nil))
		}
		tr := tlsObserveQuiet(ctx, s, m0)
		failed := len(tlsEvents(tr, hub.EventTLSFailed))
		fixtures.NoteFact(fixtures.FactRoot, fmt.Sprintf("unknown root, %d attempts in a row", certRefusalAttempts),
			fmt.Sprintf("%d handshakes refused, %d completed, %d plaintext attempts", failed, len(tlsEvents(tr, hub.EventTLS)), len(tlsEvents(tr, hub.EventPlaintext))),
			len(tlsEvents(tr, hub.EventTLS)) == 0 && len(tlsEvents(tr, hub.EventPlaintext)) == 0)
		tlsExpectRefused(tr, "CERT-004", fmt.Sprintf("an unknown root (attempts 1..%d)", certRefusalAttempts))
		Expect(failed).To(BeNumerically(">=", certRefusalAttempts),
			"CERT-004: every one of the %d attempts must reach the hub as a refused TLS handshake\n%s", certRefusalAttempts, traceText(tr))
	})

	Conformance("the ClientHello offers only TLS 1.2 or later and names the hub host in SNI; a hub restricted to TLS 1.2 still completes", []string{"CONN-004"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{NoOpen: true})
		m, _ := tlsAttempt(ctx, s)
		tr := hubSince(s, m)
		t := tlsFirst(tr, hub.EventTLS)
		Expect(t).NotTo(BeNil(), "CONN-004: the clean handshake must complete\n%s", traceText(tr))
		f := t.TLS
		fixtures.NoteFact(fixtures.FactTLS, "negotiated version", f.Version, f.Version == "TLS 1.2" || f.Version == "TLS 1.3")
		fixtures.NoteFact(fixtures.FactTLS, "negotiated cipher suite", f.CipherSuite, true)
		fixtures.NoteFact(fixtures.FactTLS, "SNI", tlsOrNone(f.ServerName), f.ServerName == fixtures.HubHost)
		fixtures.NoteFact(fixtures.FactTLS, "versions offered", strings.Join(f.OfferedVersions, ", "), len(tlsLegacyVersions(offeredVersions(f.OfferedVersions))) == 0)
		fixtures.NoteFact(fixtures.FactTLS, "cipher suites offered", strings.Join(f.OfferedCiphers, ", "), true)
		Expect(tlsLegacyVersions(offeredVersions(f.OfferedVersions))).To(BeEmpty(), "CONN-004: the ClientHello must not offer TLS below 1.2; offered %v\n%s", f.OfferedVersions, traceText(tr))
		Expect(f.Version).To(Or(Equal("TLS 1.2"), Equal("TLS 1.3")), "CONN-004: negotiated version\n%s", traceText(tr))
		// The catalog (CONN-004) makes a missing SNI a warning only (noted
		// above as a fact); an SNI naming anything but the hub host fails.
		if f.ServerName != "" {
			Expect(f.ServerName).To(Equal(fixtures.HubHost), "CONN-004: the ClientHello's SNI must be the hub host name %q; it carried %s\n%s",
				fixtures.HubHost, tlsOrNone(f.ServerName), traceText(tr))
		}

		must(0, s.Call(ctx, agentproto.OpClose, agentproto.CloseArgs{Graceful: true}, nil))
		tlsRestrictVersions(s, tls.VersionTLS12, tls.VersionTLS12)
		m, _ = tlsAttempt(ctx, s)
		tr = hubSince(s, m)
		t = tlsFirst(tr, hub.EventTLS)
		seen := "refused"
		if t != nil {
			seen = "completed: " + t.TLS.Version + ", " + t.TLS.CipherSuite
		}
		fixtures.NoteFact(fixtures.FactTLS, "hub restricted to TLS 1.2", seen, t != nil && t.TLS.Version == "TLS 1.2")
		Expect(t).NotTo(BeNil(), "CONN-004: a hub accepting only TLS 1.2 must still be reached\n%s", traceText(tr))
		Expect(t.TLS.Version).To(Equal("TLS 1.2"), "CONN-004\n%s", traceText(tr))
		waitBoardConnected(ctx, s, m)
	})

	Conformance("a hub offering only TLS 1.0/1.1 is refused: no handshake completes, no CONNECT", []string{"CONN-004"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{NoOpen: true})
		tlsRestrictVersions(s, tls.VersionTLS10, tls.VersionTLS11)
		m, ev := tlsAttempt(ctx, s)
		tr := tlsObserveQuiet(ctx, s, m)
		fixtures.NoteFact(fixtures.FactTLS, "hub offering only TLS 1.0/1.1", tlsOutcome(tr, ev), tlsFirst(tr, hub.EventTLS) == nil)
		tlsExpectRefused(tr, "CONN-004", "a hub that speaks only TLS 1.0/1.1")
	})

	Conformance("the trust store holds DigiCert Global Root G2 (ready for the real cloud), Baltimore at most beside it", []string{"CERT-001", "CERT-002"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{NoOpen: true})
		// Ask only about the roots judged (a full factory bundle does not fit
		// one frame); a firmware that does not take the filter is asked for
		// everything, and one that ignores it answers everything: the
		// answer is judged whatever it holds.
		var tl agentproto.TrustList
		filter := agentproto.TrustListArgs{SHA256: []string{certs.DigiCertGlobalRootG2SHA256, certs.BaltimoreCyberTrustRootSHA256}}
		err := s.Call(ctx, agentproto.OpTrustList, filter, &tl)
		var pe *agentproto.Error
		if err != nil && errors.As(err, &pe) && (pe.Code == agentproto.ErrBadArgs || pe.Code == agentproto.ErrUnknownOp) {
			tl = agentproto.TrustList{}
			err = s.Call(ctx, agentproto.OpTrustList, nil, &tl)
		}
		if err != nil {
			if errors.As(err, &pe) && (pe.Code == agentproto.ErrUnknownOp || pe.Code == agentproto.ErrUnsupported) {
				// CERT-001/002 are about the trust store, not about listing
				// it: the spec needs trust.list, the requirements do not.
				PreconditionUnmet("the firmware cannot list its trust store (trust.list answered " + err.Error() + ")")
			}
			Fail("trust.list: " + err.Error())
		}
		var fps, listed []string
		for _, r := range tl.Roots {
			fps = append(fps, r.SHA256)
			name := certs.IsPublicCloudRoot(r.SHA256)
			if name == "" {
				name = r.Subject
			}
			listed = append(listed, fmt.Sprintf("%s (%s)", name, r.Source))
		}
		rd := certs.CheckCloudReadiness(fps)
		fixtures.NoteFact(fixtures.FactTrustStore, "DigiCert Global Root G2", tlsPresence(rd.HasG2), rd.HasG2)
		fixtures.NoteFact(fixtures.FactTrustStore, "Baltimore CyberTrust Root", tlsPresence(rd.HasBaltimore), rd.HasG2 || !rd.HasBaltimore)
		fixtures.NoteFact(fixtures.FactTrustStore, "ready for the real cloud", rd.Summary(), rd.Ready)
		Expect(rd.HasG2).To(BeTrue(), "CERT-001: DigiCert Global Root G2 (SHA-256 %s) must be a trust anchor; the board lists: %s",
			certs.DigiCertGlobalRootG2SHA256, strings.Join(listed, "; "))
		Expect(rd.HasBaltimore && !rd.HasG2).To(BeFalse(), "CERT-002: Baltimore CyberTrust Root must not be the only public anchor; the board lists: %s", strings.Join(listed, "; "))
	})
})

var (
	tlsScenarioMu sync.Mutex
	tlsScenarios  = map[*hub.Hub]*certs.Scenario{}
)

// tlsScenario is the run's scenario PKI: the old root is the hub's own root
// (which every session's board trusts, intermediate 1 is the hub's), the
// new root is one the board has never seen. Server leaves are RSA, so
// refusals are exercised with RSA as well as the hub's ECDSA chain.
func tlsScenario(s *fixtures.Session) *certs.Scenario {
	GinkgoHelper()
	tlsScenarioMu.Lock()
	defer tlsScenarioMu.Unlock()
	if sc := tlsScenarios[s.Env.Hub]; sc != nil {
		return sc
	}
	sc := must(certs.NewScenarioFromHub(s.Env.Hub.PKI(), certs.RSA2048))
	tlsScenarios[s.Env.Hub] = sc
	return sc
}

// tlsServe makes the hub present cert to new handshakes until the spec ends.
func tlsServe(s *fixtures.Session, cert tls.Certificate) {
	h := s.Env.Hub
	prev := h.ServerCertificate()
	DeferCleanup(func() { h.SetServerCertificate(prev) })
	h.SetServerCertificate(cert)
}

// tlsRestrictVersions limits the hub's TLS versions until the spec ends.
func tlsRestrictVersions(s *fixtures.Session, min, max uint16) {
	h := s.Env.Hub
	pmin, pmax := h.TLSVersions()
	DeferCleanup(func() { h.SetTLSVersions(pmin, pmax) })
	h.SetTLSVersions(min, max)
}

// tlsAttempt opens the client and waits until one connection attempt has
// ended on both sides: the hub recorded its TLS outcome (handshake done or
// failed, or plaintext) and the board reported connected, backoff or
// stopped. It returns the mark taken before and the board's event.
func tlsAttempt(ctx context.Context, s *fixtures.Session) (fixtures.Marks, agentproto.ConnEvent) {
	GinkgoHelper()
	m := s.Mark()
	must(0, s.Call(ctx, agentproto.OpOpen, nil, nil))
	must(waitHub(ctx, s, m, "the board's TLS handshake (completed or failed)", func(e hub.Entry) bool {
		return e.Type == hub.EventTLS || e.Type == hub.EventTLSFailed || e.Type == hub.EventPlaintext
	}))
	var ce agentproto.ConnEvent
	must(s.WaitEvent(ctx, m, agentproto.EvConn, func(e agent.Event) bool {
		var c agentproto.ConnEvent
		if e.Decode(&c) != nil {
			return false
		}
		switch c.State {
		case agentproto.StateConnected, agentproto.StateBackoff, agentproto.StateStopped:
			ce = c
			return true
		}
		return false
	}))
	return m, ce
}

// tlsObserveQuiet observes the hub for Timing.Quiet after the attempt and
// returns the board's wire since m. The wait is expected to time out: a
// CONNECT arriving meanwhile (after a handshake the board should have
// abandoned) ends it early and lands in the returned trace.
func tlsObserveQuiet(ctx context.Context, s *fixtures.Session, m fixtures.Marks) []hub.Entry {
	qctx, cancel := context.WithTimeout(ctx, s.Env.Timing.Quiet)
	defer cancel()
	_ = s.Env.Hub.Wait(qctx, func() bool {
		for _, e := range hubSince(s, m) {
			if e.Dir == hub.DirIn && e.Type == "CONNECT" {
				return true
			}
		}
		return false
	})
	return hubSince(s, m)
}

// tlsExpectRefused fails unless tr shows only refused handshakes:
// none completed, no CONNECT (the credentials never left the board over
// TLS) and no plaintext MQTT (nor in the clear).
func tlsExpectRefused(tr []hub.Entry, req, what string) {
	GinkgoHelper()
	if p := tlsFirst(tr, hub.EventPlaintext); p != nil {
		Fail(fmt.Sprintf("%s/CONN-002: after the TLS handshake with %s failed, the board tried plaintext MQTT (credentials in the clear): %s\n%s", req, what, p.Reason, traceText(tr)))
	}
	Expect(tlsFirst(tr, hub.EventTLS)).To(BeNil(),
		"%s: the board completed the TLS handshake with %s; it must abandon it\n%s", req, what, traceText(tr))
	Expect(packets(tr, hub.DirIn, "CONNECT")).To(BeEmpty(),
		"%s: the board sent CONNECT (with its credentials) to a hub presenting %s\n%s", req, what, traceText(tr))
	Expect(tlsFirst(tr, hub.EventTLSFailed)).NotTo(BeNil(), "%s: expected a refused handshake on the wire\n%s", req, traceText(tr))
}

// tlsOutcome describes for the report what the board did.
func tlsOutcome(tr []hub.Entry, ev agentproto.ConnEvent) string {
	switch {
	case tlsFirst(tr, hub.EventPlaintext) != nil:
		return "refused, then plaintext MQTT sent"
	case len(packets(tr, hub.DirIn, "CONNECT")) > 0:
		return "accepted: CONNECT sent"
	case tlsFirst(tr, hub.EventTLS) != nil:
		return "accepted: handshake completed"
	}
	out := "refused"
	if r := ev.Reason; r != "" {
		out += " (board " + ev.State + ": " + tlsReason(r) + ")"
	}
	return out
}

// tlsReason is a board's failure reason from its TLS error on ("x509:
// certificate signed by unknown authority", "remote error: tls: protocol
// …"), cut to 120 bytes.
func tlsReason(r string) string {
	if i := strings.Index(r, "x509: "); i >= 0 {
		r = r[i:]
	} else if i := strings.Index(r, "tls: "); i >= 0 {
		r = r[i:]
	}
	if len(r) > 120 {
		r = r[:120] + "…"
	}
	return r
}

// tlsEvents returns the event entries of one kind.
func tlsEvents(tr []hub.Entry, typ string) []hub.Entry { return packets(tr, hub.DirEvent, typ) }

// tlsFirst returns the first event entry of one kind, nil if none.
func tlsFirst(tr []hub.Entry, typ string) *hub.Entry {
	if es := tlsEvents(tr, typ); len(es) > 0 {
		return &es[0]
	}
	return nil
}

// offeredVersions returns the versions a ClientHello really offered. A
// ClientHello without the supported_versions extension names only its
// maximum (legacy_version 0x0303 = "up to TLS 1.2"); Go's crypto/tls, and
// so the hub's trace, then lists [TLS 1.2, TLS 1.1, TLS 1.0] of its own
// making. That list is taken as "TLS 1.2" here: whether such a client
// would accept less is judged by the spec with a hub that offers only
// TLS 1.0/1.1. (A real extension listing exactly those three is rare and
// is caught by that spec too.)
func offeredVersions(vs []string) []string {
	if slices.Equal(vs, []string{"TLS 1.2", "TLS 1.1", "TLS 1.0"}) {
		return []string{"TLS 1.2"}
	}
	return vs
}

// tlsLegacyVersions returns the offered versions below TLS 1.2.
func tlsLegacyVersions(vs []string) []string {
	var out []string
	for _, v := range vs {
		if v != "TLS 1.2" && v != "TLS 1.3" {
			out = append(out, v)
		}
	}
	return out
}

func tlsOrNone(s string) string {
	if s == "" {
		return "(none sent)"
	}
	return s
}

func tlsPresence(ok bool) string {
	if ok {
		return "present"
	}
	return "absent"
}
