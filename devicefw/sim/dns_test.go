package sim

import (
	"net/netip"
	"testing"
	"time"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/rig/dns"
	"github.com/hilrun/hilrun/rig/hub"
)

// With hub.dnsServer the firmware asks the name server for the hub host at
// every connection attempt (RECON-012); with dns-cache-forever only once.
func TestResolveHubEachConnect(t *testing.T) {
	for _, tc := range []struct {
		name    string
		defects []string
		want    func(before, after int) bool
	}{
		{"clean", nil, func(before, after int) bool { return after > before }},
		{DefDNSCacheForever, []string{DefDNSCacheForever}, func(before, after int) bool { return after == before }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, err := dns.Start(dns.Config{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = srv.Close() })
			r := newRig(t, "dns-"+tc.name, tc.defects, func(c *agentproto.Config) { c.Hub.DNSServer = srv.Addr() })
			srv.SetA(r.hub.Host(), time.Second, netip.MustParseAddr("127.0.0.1"))
			aQueries := func() int {
				n := 0
				for _, q := range srv.Queries() {
					if q.IsA(r.hub.Host()) {
						n++
					}
				}
				return n
			}
			r.open()
			before := aQueries()
			if before == 0 {
				t.Fatalf("connected without asking the name server:\n%s", r.fw.dump())
			}
			opened := func() int {
				return len(r.entries(func(e hub.Entry) bool { return e.Type == hub.EventConnOpened }))
			}
			if err := r.hub.Drop(r.id, true, "test"); err != nil {
				t.Fatal(err)
			}
			r.fw.wait("the reconnect", func() bool { return opened() >= 2 })
			if after := aQueries(); !tc.want(before, after) {
				t.Fatalf("A queries: %d before the loss, %d after the reconnect", before, after)
			}
		})
	}
}
