package sim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
)

// Name resolution of the hub host (RECON-012, 002 L10896: a hub keeps its
// IP address only until it is moved to another scale unit, so a device
// must not stick to the address it learnt once).
//
// Without hub.dnsServer the firmware dials hub.address (or host:port) and
// leaves any lookup to the system, as before. With it (capability dns),
// every connection attempt to the hub asks that server for the hub host's
// A record through Go's own stub resolver and dials the answer at the
// configured port. The resolver keeps no cache, so no answer is used past
// its TTL; caching within the TTL would be allowed too. MQTT over
// WebSocket (transport wss) still dials hub.address: its Host header would
// otherwise name the IP address, and RECON-012's spec uses MQTT over TLS.

// dnsState is what defect dns-cache-forever keeps: the first answer since
// boot.
type dnsState struct {
	mu     sync.Mutex
	pinned netip.Addr
}

// hubDialAddr is the address one connection attempt dials: addr as
// configured, or with a name server configured the hub host's address
// from a fresh lookup at addr's port.
func (dc *deviceClient) hubDialAddr(ctx context.Context, cc connConfig, addr string) (string, error) {
	if cc.dnsServer == "" {
		return addr, nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("hub address %q: %w", addr, err)
	}
	ip, err := dc.lookupHub(ctx, cc)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(ip.String(), port), nil
}

// lookupHub resolves the hub host through the configured name server.
func (dc *deviceClient) lookupHub(ctx context.Context, cc connConfig) (netip.Addr, error) {
	forever := dc.on(DefDNSCacheForever)
	if forever {
		dc.dns.mu.Lock()
		ip := dc.dns.pinned
		dc.dns.mu.Unlock()
		if ip.IsValid() {
			return ip, nil // defect: the boot-time answer, whatever its TTL
		}
	}
	server := cc.dnsServer
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", server)
	}}
	lctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	// Rooted, so that no search domain of the host's resolv.conf is tried
	// first.
	ips, err := r.LookupNetIP(lctx, "ip4", strings.TrimSuffix(cc.host, ".")+".")
	if err == nil && len(ips) == 0 {
		err = errors.New("no address")
	}
	if err != nil {
		return netip.Addr{}, fmt.Errorf("resolve %s via %s: %w", cc.host, server, err)
	}
	ip := ips[0].Unmap()
	dc.fw.logf("I", "resolved %s via %s: %s", cc.host, server, ip)
	if forever {
		dc.dns.mu.Lock()
		dc.dns.pinned = ip
		dc.dns.mu.Unlock()
	}
	return ip, nil
}
