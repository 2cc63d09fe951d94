package suites

import (
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/rig/dns"
	"github.com/hilrun/hilrun/rig/netem"
)

// RECON-012 (002 L10896): a hub keeps its IP address for its lifetime
// unless it is moved to another scale unit, and then it gets a new one; so
// a device that reconnects must find the hub by its host name again rather
// than dial the address it learnt once. The docs name no cache lifetime;
// the spec reads "again" the way DNS does: an answer may be used for its
// TTL (RFC 1035 §3.2.1) and no longer, so a device that caches within the
// TTL passes and one that keeps the address past it fails.
//
// The rig binds 127.0.0.1 only, so the hub cannot really move: every answer
// is the same address and a device that dials a stale one still gets in.
// What the rig can see is the lookup itself: the board resolves through the
// rig's name server (capability dns, hub.dnsServer), every query is in the
// trace, and the reconnect's TCP connect (the proxy's accept) must come
// while an answer given for it is still within its TTL.

// dnsSlack is what a resolver may keep an answer beyond its TTL: one that
// counts TTLs in whole seconds on a one-second tick (lwIP's DNS table, for
// instance) drops an entry up to a second late, and the answer reaches the
// device a moment after the server stamps the query.
const dnsSlack = time.Second

// freshAnswer returns the newest A query for host that was answered with
// addresses no earlier than ttl + dnsSlack before connect, and not after
// it: the answer a device honouring the TTL may have dialled at connect.
func freshAnswer(qs []dns.Query, host string, connect time.Time, ttl time.Duration) (dns.Query, bool) {
	var best dns.Query
	found := false
	for _, q := range qs {
		if !q.IsA(host) || len(q.Addrs) == 0 || q.Time.After(connect) || q.Time.Before(connect.Add(-ttl-dnsSlack)) {
			continue
		}
		best, found = q, true
	}
	return best, found
}

// lastAnswerBefore returns the newest answered A query for host at or
// before t.
func lastAnswerBefore(qs []dns.Query, host string, t time.Time) (dns.Query, bool) {
	var last dns.Query
	found := false
	for _, q := range qs {
		if q.IsA(host) && len(q.Addrs) > 0 && !q.Time.After(t) {
			last, found = q, true
		}
	}
	return last, found
}

// dnsText renders the name server's queries for failure messages (the last
// 20, times relative to the first shown).
func dnsText(qs []dns.Query, from time.Time) string {
	var b strings.Builder
	b.WriteString("rig name server queries:\n")
	var sel []dns.Query
	for _, q := range qs {
		if !q.Time.Before(from) {
			sel = append(sel, q)
		}
	}
	if len(sel) > 20 {
		sel = sel[len(sel)-20:]
	}
	if len(sel) == 0 {
		b.WriteString("  (none)\n")
	}
	for _, q := range sel {
		fmt.Fprintf(&b, "  %s %s\n", q.Time.Format("15:04:05.000"), q)
	}
	return b.String()
}

var _ = Describe("name resolution on reconnect", func() {
	Conformance("after a loss the device reconnects with the hub host name resolved again once the earlier answer's TTL has run out", []string{"RECON-012"}, func(ctx SpecContext) {
		e := Env()
		if !boardHas(agentproto.CapDNS) {
			// The requirement holds for every device; only this rig's
			// view of it needs the board to take the rig's name server.
			PreconditionUnmet("RECON-012 needs the board to resolve the hub host through the rig's name server (capability dns, hub.dnsServer) so that the rig sees its lookups; this board resolves through its own resolver (devicefw/PROTOCOL.md, capability dns, says how a firmware takes the server)")
		}
		ip, ok := e.HubIP()
		if e.DNS == nil || !ok {
			PreconditionUnmet("RECON-012: the rig's name server cannot answer for the hub host here (the board reaches the hub by name or over IPv6)")
		}
		// A short TTL, so that the reconnect comes after the boot-time
		// answer has run out without making the spec long.
		ttl := time.Second
		e.DNS.SetA(fixtures.HubHost, ttl, ip)
		DeferCleanup(func() { e.DNS.SetA(fixtures.HubHost, fixtures.DefaultDNSTTL, ip) })
		started := time.Now()
		// Retries capped at 500 ms keep the hold and the reconnect short;
		// the spec does not judge the retry policy.
		s := NewSession(ctx, fixtures.SessionOptions{DNS: true, Retry: &agentproto.RetryConfig{InitialMS: 100, MaxMS: 500, JitterPct: 20}})
		net := s.Env.Net
		live := liveConn(s)
		if _, ok := lastAnswerBefore(e.DNS.Queries(), fixtures.HubHost, time.Now()); !ok {
			Fail(fmt.Sprintf("RECON-012: the board declares capability dns but connected without ever asking the configured name server %s for %s (002 L10896: the hub is found by its host name)\n%s",
				e.DNS.Addr(), fixtures.HubHost, dnsText(e.DNS.Queries(), started)))
		}

		// The loss: the link is reset and new connections are refused
		// until the device tries again after the answer it holds has run
		// out (an event: its refused attempt, not a sleep).
		m, nm := s.Mark(), net.Mark()
		net.RefuseNew(true)
		DeferCleanup(func() { net.RefuseNew(false) })
		Expect(net.Cut()).To(BeNumerically(">=", 1), "rig: no live connection to cut")
		cut := must(waitNet(ctx, net, nm, "the cut", func(ev netem.Event) bool { return ev.Kind == netem.EvCut }))
		held, _ := lastAnswerBefore(e.DNS.Queries(), fixtures.HubHost, cut.At)
		expired := held.Time.Add(ttl + dnsSlack)
		budget := e.Timing.Event + ttl + dnsSlack
		late, err := waitNetFor(ctx, net, nm, budget, func(ev netem.Event) bool {
			return ev.Kind == netem.EvRefused && ev.At.After(expired)
		})
		net.RefuseNew(false)
		if err != nil {
			PreconditionUnmet(fmt.Sprintf("RECON-012 cannot be judged: after the cut at %s the device made no connection attempt after %s (when the answer of %s had run out) within %s; not trying again is RECON-001's matter, not a lookup\n%s",
				cut.At.Format("15:04:05.000"), expired.Format("15:04:05.000"), held.Time.Format("15:04:05.000"), budget, netText(net.Events(), nm)))
		}

		// The reconnect, and the TCP connect that carried it.
		up := reconnected(ctx, s, m, live, "RECON-012: after the link was cut")
		link := proxyConnOf(s, net, up.ConnID)
		var accept netem.Event
		for _, ev := range net.Events() {
			if ev.Kind == netem.EvAccept && ev.Conn == link && link != 0 {
				accept = ev
			}
		}
		Expect(accept.At.IsZero()).To(BeFalse(), "rig: no proxy accept for hub connection %d\n%s", up.ConnID, netText(net.Events(), nm))
		evidence := dnsText(e.DNS.Queries(), started) + netText(net.Events(), nm) + traceText(s.Trace(m))
		q, ok := freshAnswer(e.DNS.Queries(), fixtures.HubHost, accept.At, ttl)
		Expect(ok).To(BeTrue(), "RECON-012: the reconnect's TCP connect at %s (after the device's attempt at %s, when the answer of %s with TTL %s had run out) came without a fresh lookup of %s: expected an A query at the configured name server no earlier than %s (TTL + %s), saw none since %s; the device dialled a cached address (002 L10896: a hub moved to another scale unit gets a new IP address)\n%s",
			accept.At.Format("15:04:05.000"), late.At.Format("15:04:05.000"), held.Time.Format("15:04:05.000"), ttl, fixtures.HubHost,
			accept.At.Add(-ttl-dnsSlack).Format("15:04:05.000"), dnsSlack, held.Time.Format("15:04:05.000"), evidence)
		GinkgoWriter.Printf("RECON-012: the reconnect's TCP connect at %s followed %s\n", accept.At.Format("15:04:05.000"), q)
	})
})
