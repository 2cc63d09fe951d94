package hub_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/hilrun/hilrun/certs"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/hub/hubtest"
)

// waitEntries waits until match finds an entry after since.
func waitEntries(t *testing.T, h *hubtest.Hub, since uint64, what string, match func(*hub.Entry) bool) []hub.Entry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got []hub.Entry
	sel := func(e *hub.Entry) bool { return e.Seq > since && match(e) }
	if err := h.Wait(ctx, func() bool { got = h.Trace().Entries(sel); return len(got) > 0 }); err != nil {
		t.Fatalf("no %s in the trace: %v", what, err)
	}
	return got
}

// TestPlaintextMQTTOnTLSPort: a plaintext CONNECT on the TLS port is
// recorded as such (CONN-002), the handshake fails, and no byte of the
// packet (Username, password) reaches the trace.
func TestPlaintextMQTTOnTLSPort(t *testing.T) {
	h := hubtest.Start(t)
	since := h.Trace().LastSeq()
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4}
	pk.Connect.ProtocolName = []byte("MQTT")
	pk.Connect.ClientIdentifier = "plain-dev"
	pk.Connect.UsernameFlag, pk.Connect.Username = true, []byte(h.Host()+"/plain-dev/?api-version=2021-04-12")
	pk.Connect.PasswordFlag, pk.Connect.Password = true, []byte("SharedAccessSignature sr=x&sig=TOPSECRETSIG&se=1")
	var buf bytes.Buffer
	if err := pk.ConnectEncode(&buf); err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", h.MQTTAddr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	plain := waitEntries(t, h, since, "plaintext event", func(e *hub.Entry) bool { return e.Type == hub.EventPlaintext })
	if plain[0].Requirement != "CONN-002" || !strings.Contains(plain[0].Reason, "MQTT") {
		t.Errorf("plaintext event: %+v", plain[0])
	}
	waitEntries(t, h, since, "failed handshake", func(e *hub.Entry) bool { return e.Type == hub.EventTLSFailed })
	all := h.Trace().Entries(func(e *hub.Entry) bool { return e.Seq > since })
	b, _ := json.Marshal(all)
	for _, secret := range []string{"TOPSECRETSIG", "plain-dev", "SharedAccessSignature"} {
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("trace holds %q from the plaintext packet: %s", secret, b)
		}
	}
	for _, e := range all {
		if e.Type == "CONNECT" {
			t.Errorf("plaintext CONNECT reached MQTT: %+v", e)
		}
	}
}

// TestTLSClientHelloNotPlaintext: a normal handshake raises no plaintext event.
func TestTLSClientHelloNotPlaintext(t *testing.T) {
	h := hubtest.Start(t)
	since := h.Trace().LastSeq()
	h.Connect(sasDevice(h, "tls-plain-check"))
	waitEntries(t, h, since, "TLS event", func(e *hub.Entry) bool { return e.Type == hub.EventTLS })
	if p := h.Trace().Entries(func(e *hub.Entry) bool { return e.Seq > since && e.Type == hub.EventPlaintext }); len(p) > 0 {
		t.Fatalf("plaintext event for a TLS client: %+v", p)
	}
}

// TestFailedHandshakeRecordsClientHello: when the client refuses the
// server (unknown root), the hub still records SNI, offered versions and
// cipher suites of its ClientHello (CONN-003/004 evidence).
func TestFailedHandshakeRecordsClientHello(t *testing.T) {
	h := hubtest.Start(t)
	s, err := certs.NewScenario(h.Host(), certs.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	since := h.Trace().LastSeq()
	cfg := &tls.Config{ServerName: h.Host(), RootCAs: certs.PoolOf(s.NewRoot.Cert), MinVersion: tls.VersionTLS12}
	if c, err := tlsDial(h.MQTTAddr(), cfg); err == nil {
		c.Close()
		t.Fatal("handshake against an unknown root succeeded")
	}
	failed := waitEntries(t, h, since, "failed handshake", func(e *hub.Entry) bool { return e.Type == hub.EventTLSFailed })
	f := failed[0].TLS
	if f == nil || f.ServerName != h.Host() || len(f.OfferedVersions) == 0 || len(f.OfferedCiphers) == 0 {
		t.Fatalf("ClientHello facts missing on the failed handshake: %+v", f)
	}
	if f.Version != "" {
		t.Errorf("failed handshake has a negotiated version %q", f.Version)
	}
}

// TestServedChainAndLegacyVersions: SetServerCertificate serves a chosen
// chain to new handshakes, and SetTLSVersions can restrict the hub to
// TLS 1.0/1.1 (which Go's server does when asked explicitly), refusing a
// TLS 1.2+ client while recording what it offered.
func TestServedChainAndLegacyVersions(t *testing.T) {
	t.Parallel() // a hub of its own; waits on the hub's timers
	h := hubtest.Start(t)
	s, err := certs.NewScenario(h.Host(), certs.RSA2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		kind certs.ServerLeafKind
		ok   bool
	}{{certs.Valid, true}, {certs.Expired, false}, {certs.NotYetValid, false}, {certs.WrongHost, false}} {
		cert, err := s.Server(s.NewRoot, 1, tc.kind)
		if err != nil {
			t.Fatal(err)
		}
		h.SetServerCertificate(cert)
		c, err := tlsDial(h.MQTTAddr(), &tls.Config{ServerName: h.Host(), RootCAs: certs.PoolOf(s.NewRoot.Cert), MinVersion: tls.VersionTLS12})
		if (err == nil) != tc.ok {
			t.Errorf("%s leaf under the new root: handshake error %v, want ok=%v", tc.kind, err, tc.ok)
		}
		if err == nil {
			c.Close()
		}
	}
	h.SetServerCertificate(h.PKI().ServerTLSCertificate())

	h.SetTLSVersions(tls.VersionTLS10, tls.VersionTLS11)
	since := h.Trace().LastSeq()
	legacy := h.TLSConfig()
	legacy.MinVersion = tls.VersionTLS10
	c, err := tlsDial(h.MQTTAddr(), legacy)
	if err != nil {
		t.Fatalf("TLS 1.0/1.1 client against a legacy-only hub: %v", err)
	}
	if v := c.(*tls.Conn).ConnectionState().Version; v != tls.VersionTLS11 {
		t.Errorf("negotiated %s, want TLS 1.1", tls.VersionName(v))
	}
	c.Close()
	ok := waitEntries(t, h, since, "TLS event", func(e *hub.Entry) bool { return e.Type == hub.EventTLS })
	if ok[0].TLS.Version != "TLS 1.1" {
		t.Errorf("recorded version %q", ok[0].TLS.Version)
	}
	since = h.Trace().LastSeq()
	if c, err := tlsDial(h.MQTTAddr(), h.TLSConfig()); err == nil {
		c.Close()
		t.Fatal("TLS 1.2+ client completed against a TLS 1.0/1.1-only hub")
	}
	failed := waitEntries(t, h, since, "failed handshake", func(e *hub.Entry) bool { return e.Type == hub.EventTLSFailed })
	if f := failed[0].TLS; f == nil || strings.Contains(strings.Join(f.OfferedVersions, ","), "TLS 1.1") || len(f.OfferedVersions) == 0 {
		t.Errorf("offered versions of the refused client: %+v", f)
	}
	h.SetTLSVersions(tls.VersionTLS12, tls.VersionTLS13)
}
