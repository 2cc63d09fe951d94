package certs

import (
	"net"
	"slices"
	"testing"
)

func TestNewHubPKIWithNames(t *testing.T) {
	p, err := NewHubPKIWithNames("hilrun-hil.azure-devices.net", ECDSAP256, "hil-bench-1.lan", "192.168.1.20", "HIL-BENCH-1.lan", "[fd00::1]", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	leaf := p.Server.Cert
	if got := leaf.DNSNames; !slices.Equal(got, []string{"hilrun-hil.azure-devices.net", "localhost", "hil-bench-1.lan"}) {
		t.Errorf("DNS SANs %q", got)
	}
	for _, ip := range []string{"192.168.1.20", "fd00::1", "127.0.0.1"} {
		if !slices.ContainsFunc(leaf.IPAddresses, net.ParseIP(ip).Equal) {
			t.Errorf("IP SANs %v lack %s", leaf.IPAddresses, ip)
		}
	}
	for _, n := range []string{"hil-bench-1.lan", "192.168.1.20", "hilrun-hil.azure-devices.net"} {
		if err := leaf.VerifyHostname(n); err != nil {
			t.Errorf("VerifyHostname(%s): %v", n, err)
		}
	}
	if _, err := NewHubPKIWithNames("h.example", ECDSAP256, "host:8883"); err == nil {
		t.Error("a name with a port was accepted")
	}
}
