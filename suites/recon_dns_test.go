package suites

import (
	"net/netip"
	"testing"
	"time"

	"github.com/hilrun/hilrun/rig/dns"
)

// The RECON-012 judgement accepts every device that honours the TTL
// (resolving at each attempt, or caching within the TTL) and refuses one
// that dials an answer past it.
func TestFreshAnswer(t *testing.T) {
	const host = "hub.example"
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	lo := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	at := func(d time.Duration) dns.Query {
		return dns.Query{Time: t0.Add(d), Name: host, Type: "A", RCode: "NOERROR", Addrs: lo, TTL: 1}
	}
	ttl := time.Second
	tests := []struct {
		name    string
		qs      []dns.Query
		connect time.Duration
		want    bool
	}{
		{"resolved just before the connect", []dns.Query{at(0), at(4900 * time.Millisecond)}, 5 * time.Second, true},
		{"cached within the TTL", []dns.Query{at(0), at(3 * time.Second)}, 3*time.Second + 900*time.Millisecond, true},
		{"cached within TTL + slack", []dns.Query{at(3 * time.Second)}, 4*time.Second + 900*time.Millisecond, true},
		{"boot answer only", []dns.Query{at(0)}, 5 * time.Second, false},
		{"answer past TTL + slack", []dns.Query{at(0), at(2 * time.Second)}, 4*time.Second + 100*time.Millisecond, false},
		{"query after the connect does not count", []dns.Query{at(0), at(5100 * time.Millisecond)}, 5 * time.Second, false},
		{"AAAA does not count", []dns.Query{at(0), {Time: t0.Add(4900 * time.Millisecond), Name: host, Type: "AAAA", RCode: "NOERROR"}}, 5 * time.Second, false},
		{"NXDOMAIN does not count", []dns.Query{at(0), {Time: t0.Add(4900 * time.Millisecond), Name: host, Type: "A", RCode: "NXDOMAIN"}}, 5 * time.Second, false},
		{"other name does not count", []dns.Query{at(0), {Time: t0.Add(4900 * time.Millisecond), Name: "other.example", Type: "A", RCode: "NOERROR", Addrs: lo}}, 5 * time.Second, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, got := freshAnswer(tt.qs, host, t0.Add(tt.connect), ttl); got != tt.want {
				t.Fatalf("freshAnswer = %v, want %v", got, tt.want)
			}
		})
	}
	if q, ok := lastAnswerBefore([]dns.Query{at(0), at(2 * time.Second), at(3 * time.Second)}, host, t0.Add(2500*time.Millisecond)); !ok || !q.Time.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("lastAnswerBefore = %v %v", q, ok)
	}
}
