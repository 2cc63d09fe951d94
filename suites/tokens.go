package suites

import (
	"context"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/netem"
)

// RECON-007: a SAS token that has expired or has been refused is never
// presented again. The wire trace redacts sig; what it keeps of a token
// (sr, skn, se) determines it as long as the key does not change, which
// these specs guarantee: two CONNECTs with the same sr, skn and se under
// the same key present the same signature, hence the same token.
var _ = Describe("reconnect: SAS tokens", func() {
	Conformance("a token refused with CONNACK 5 is never presented again: the attempts after the refusal carry a freshly signed token", []string{"RECON-007"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		m := s.Mark()
		// The hub refuses the identity as not authorized (its key stays as
		// it is) until the refusal has been seen; the device loses its
		// connection and comes back into the refusal.
		s.Env.Hub.RefuseConnects(s.ID, 5, s.Env.Timing.Event)
		DeferCleanup(func() { s.Env.Hub.RefuseConnects(s.ID, 5, 0) })
		Expect(s.Env.Hub.Drop(s.ID, false, "RECON-007: connection lost")).To(Succeed())
		refused := must(s.WaitTrace(ctx, m, "a reconnect refused with CONNACK 5 not authorized", isConnack(5)))
		s.Env.Hub.RefuseConnects(s.ID, 5, 0) // a refusal of 0 s lifts it
		refusedConnect, ok := connectOf(s.Trace(m), refused.ConnID)
		Expect(ok).To(BeTrue(), "no CONNECT on the refused connection\n%s", traceText(s.Trace(m)))
		Expect(tokenExpiry(refusedConnect)).NotTo(BeZero(), "the refused CONNECT carries no SAS se\n%s", traceText(s.Trace(m)))
		// se counts whole seconds: a token signed afresh within the second
		// of the refused one is, byte for byte, the refused token. So the
		// host reopens the client (the device stopped, RECON-004) only once
		// a second has passed since the refused CONNECT, when a fresh token
		// necessarily differs. This waits on the clock alone, not on the
		// device; any attempt the device makes meanwhile is judged below.
		waitClockPast(ctx, refusedConnect.Time.Add(time.Second+50*time.Millisecond))
		// The verdict is the tokens on the wire, not what the board
		// reports: a device that came back by itself is judged on those
		// CONNECTs; one that did not is reopened by the host (the re-open
		// may fail or be unsupported: its attempts, if any, are judged
		// all the same).
		after := fixtures.Marks{Trace: refused.Seq}
		if !traceHas(s.Trace(after), isConnack(0)) {
			err := s.Open(ctx)
			if ae, ok := fixtures.IsDeviceError(err); ok && ae.Code == agentproto.ErrUnsupported {
				GinkgoWriter.Printf("client.open after the refusal answered unsupported (%s); judging the device's own attempts\n", ae.Msg)
			} else if err != nil {
				GinkgoWriter.Printf("client.open after the refusal: %v; judging the CONNECTs on the wire\n", err)
			}
		}
		wctx, cancel := context.WithTimeout(ctx, s.Env.Timing.Connect)
		_, err := s.WaitTrace(wctx, after, "a CONNECT after the refusal", isConnect)
		cancel()
		if err != nil {
			PreconditionUnmet(fmt.Sprintf("RECON-007 cannot be judged: after the CONNACK 5 at %s the device presented no further CONNECT within %s, neither by itself nor after the host reopened the client (not connecting again is RECON-001/RECON-004's matter, not a token reuse)",
				refused.Time.Format(time.TimeOnly+".000"), s.Env.Timing.Connect))
		}
		expectNoRefusedTokenAgain(s.Trace(m))
	})

	Conformance("after an outage longer than the token's life the reconnect presents an unexpired token, never the lost connection's", []string{"RECON-007"}, func(ctx SpecContext) {
		// 3 s, not 2: se is whole seconds, so a token signed late in a
		// second lives up to 1 s less than asked, and a loaded host may
		// need more than a second from signing to the hub reading CONNECT.
		ttl := tokenLife(3*time.Second, 2*time.Second, 30*time.Second, "an outage longer than the token's life")
		// A short retry ceiling: the device tries again soon after the
		// outage ends.
		s := NewSession(ctx, fixtures.SessionOptions{TokenTTL: ttl, Retry: &agentproto.RetryConfig{InitialMS: 100, MaxMS: 300, JitterPct: 20}})
		m, nm := s.Mark(), s.Env.Net.Mark()
		// Cut the link and keep the device away.
		s.Env.Net.RefuseNew(true)
		DeferCleanup(func() { s.Env.Net.RefuseNew(false) })
		s.Env.Net.Cut()
		// The latest se any CONNECT so far presented (a renewal may have
		// come before the cut; none can come after it).
		var latest time.Time
		for _, e := range packets(s.Trace(s.Start()), hub.DirIn, "CONNECT") {
			if se := tokenExpiry(e); se.After(latest) {
				latest = se
			}
		}
		Expect(latest).NotTo(BeZero(), "no SAS se in the session's CONNECTs\n%s", traceText(s.Trace(s.Start())))
		// The outage lasts until the proxy has refused an attempt after
		// that se: every token the device held has expired by then.
		wctx, cancel := context.WithTimeout(ctx, ttl+s.Env.Timing.Event)
		_, err := s.Env.Net.WaitEventAfter(wctx, nm, func(e netem.Event) bool { return e.Kind == netem.EvRefused && e.At.After(latest) })
		cancel()
		if err != nil {
			// No attempt, so no token on the wire to judge: not coming
			// back after a lost link is RECON-001's failure, not a reuse.
			PreconditionUnmet(fmt.Sprintf("RECON-007 cannot be judged: the device made no reconnect attempt after %s, when its tokens had expired (after the link cut it did not try again: a RECON-001 matter; its state: %s)",
				latest.Format(time.TimeOnly), deviceState(ctx, s)))
		}
		lift := s.Mark()
		s.Env.Net.RefuseNew(false)
		answered, err := s.WaitTrace(ctx, m, "the CONNACK to the reconnect after the outage", func(e hub.Entry) bool { return e.Dir == hub.DirOut && e.Type == "CONNACK" })
		if err != nil && len(packets(s.Trace(lift), hub.DirIn, "CONNECT")) == 0 {
			// No CONNECT of this device once the outage ended: again no
			// token to judge (a library that gives up on a reset
			// connection fails RECON-001 for it). The proxy's accepts do
			// not count: other clients may dial it too (an SDK may keep
			// reconnecting an earlier session's client).
			PreconditionUnmet(fmt.Sprintf("RECON-007 cannot be judged: no CONNECT of the device reached the hub once the outage ended (it gave up while the network refused it: a RECON-001 matter; its state: %s)", deviceState(ctx, s)))
		}
		Expect(err).NotTo(HaveOccurred(), "RECON-007: the device sent CONNECT again after the outage, but no CONNACK followed")
		tr := s.Trace(s.Start())
		for _, e := range packets(tr, hub.DirIn, "CONNECT") {
			se := tokenExpiry(e)
			Expect(se.After(e.Time)).To(BeTrue(), "RECON-007: the CONNECT at %s presents a token whose se %s is not after the hub's time (expired; tokens of the session expired at %s at the latest; token: %s)\n%s",
				e.Time.Format(time.TimeOnly+".000"), se.Format(time.TimeOnly), latest.Format(time.TimeOnly), tokenFingerprint(e), traceText(tr))
		}
		Expect(answered.ReturnCode).To(BeZero(), "the reconnect after the outage was refused with CONNACK %d\n%s", answered.ReturnCode, traceText(tr))
	})
})

// tokenFingerprint is what the wire trace keeps of a CONNECT's SAS token:
// the password with sig redacted (sr, skn, se). Under one key it
// determines the token; it is safe to print.
func tokenFingerprint(connect hub.Entry) string { return connect.Password }

// connectOf returns the CONNECT of connection conn in tr.
func connectOf(tr []hub.Entry, conn uint64) (hub.Entry, bool) {
	for _, e := range tr {
		if isConnect(e) && e.ConnID == conn {
			return e, true
		}
	}
	return hub.Entry{}, false
}

// expectNoRefusedTokenAgain checks that no CONNECT in tr presents a token
// (by fingerprint, the key unchanged) that the hub refused earlier in tr
// with CONNACK 4 or 5.
func expectNoRefusedTokenAgain(tr []hub.Entry) {
	GinkgoHelper()
	connects := map[uint64]hub.Entry{}
	refused := map[string]hub.Entry{}
	for _, e := range tr {
		switch {
		case isConnect(e):
			fp := tokenFingerprint(e)
			if tokenExpiry(e).IsZero() {
				continue
			}
			if r, ok := refused[fp]; ok {
				Fail(fmt.Sprintf("RECON-007: the CONNECT at %s presents the token refused with CONNACK %d at %s again (same sr, skn and se under an unchanged key, so the same signature: %s); after a refusal every attempt must use a different token\n%s",
					e.Time.Format(time.TimeOnly+".000"), r.ReturnCode, r.Time.Format(time.TimeOnly+".000"), fp, traceText(tr)))
			}
			connects[e.ConnID] = e
		case e.Dir == hub.DirOut && e.Type == "CONNACK" && (e.ReturnCode == 4 || e.ReturnCode == 5):
			if c, ok := connects[e.ConnID]; ok {
				refused[tokenFingerprint(c)] = e
			}
		}
	}
	Expect(refused).NotTo(BeEmpty(), "no CONNECT was refused with CONNACK 4 or 5 (precondition)\n%s", traceText(tr))
}

// waitClockPast returns once the wall clock has passed t (or ctx ends).
func waitClockPast(ctx context.Context, t time.Time) {
	wctx, cancel := context.WithDeadline(ctx, t)
	defer cancel()
	<-wctx.Done()
}

// traceHas reports whether some entry of tr matches.
func traceHas(tr []hub.Entry, match func(hub.Entry) bool) bool {
	for _, e := range tr {
		if match(e) {
			return true
		}
	}
	return false
}

// tokenLife is the SAS token life a spec configures: want, unless the
// board declares a longer floor (hello minTokenTtlS: a library renewing a
// fixed margin before se renews a shorter token at once, forever, so no
// stable session can be had with it). Then the floor plus margin is used,
// and when that does not fit the spec's time budget the spec's
// precondition (a stable session with a token that expires within the
// spec) cannot be met on this board.
func tokenLife(want, margin, budget time.Duration, what string) time.Duration {
	GinkgoHelper()
	floor := time.Duration(Env().Hello.MinTokenTTLS) * time.Second
	if floor < want {
		return want
	}
	ttl := floor + margin
	if ttl > budget {
		PreconditionUnmet(fmt.Sprintf("the spec needs a SAS token life of about %s (%s) within its %s budget; the board declares minTokenTtlS %d (its library renews the token a fixed %s before se, so a shorter token is renewed at once, again and again), and %s + %s margin exceeds the budget",
			want, what, budget, Env().Hello.MinTokenTTLS, floor, floor, margin))
	}
	GinkgoWriter.Printf("token life %s: the board's floor %s (minTokenTtlS) + %s\n", ttl, floor, margin)
	return ttl
}
