// Package hubtest starts a reference hub inside a test, in the spirit of
// net/http/httptest: real TLS on 127.0.0.1 ephemeral ports, a generated
// PKI, cleanup registered with the test. It also builds the golden device
// client — paho.mqtt.golang configured as the official SDKs configure it —
// that the hub's own tests and benchmarks use.
package hubtest

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/hilrun/hilrun/certs"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/iothub"
)

// Host is the hub FQDN hubtest hubs use.
const Host = "hilrun-test.azure-devices.net"

// Hub is a reference hub bound to 127.0.0.1 for one test.
type Hub struct {
	*hub.Hub
	t testing.TB
}

// Start starts a hub on 127.0.0.1 ephemeral ports and closes it when the test ends.
// opts adjust the configuration before start.
func Start(t testing.TB, opts ...func(*hub.Config)) *Hub {
	t.Helper()
	cfg := hub.Config{Host: Host, MQTTAddr: "127.0.0.1:0", HTTPSAddr: "127.0.0.1:0", HandshakeTimeout: 5 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	h, err := hub.Start(cfg)
	if err != nil {
		t.Fatalf("start hub: %v", err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return &Hub{Hub: h, t: t}
}

// AddSASDevice registers a device (or "dev/mod" module) with generated keys.
func (h *Hub) AddSASDevice(clientID string) hub.Device {
	h.t.Helper()
	id, err := iothub.ParseClientID(clientID)
	if err != nil {
		h.t.Fatalf("client id %q: %v", clientID, err)
	}
	if id.ModuleID != "" {
		if _, err := h.Registry().Get(iothub.Identity{DeviceID: id.DeviceID}); err != nil {
			h.AddSASDevice(id.DeviceID)
		}
	}
	d, err := h.Registry().Add(hub.Device{DeviceID: id.DeviceID, ModuleID: id.ModuleID})
	if err != nil {
		h.t.Fatalf("add %s: %v", clientID, err)
	}
	return d
}

// TLSConfig is what a device trusting the hub's root uses.
func (h *Hub) TLSConfig() *tls.Config {
	return &tls.Config{RootCAs: h.RootCAs(), ServerName: h.Host(), MinVersion: tls.VersionTLS12}
}

// deviceTLS is the TLS configuration of device d: the hub root, plus its
// client certificate when it has one.
func (h *Hub) deviceTLS(d Device) *tls.Config {
	tc := h.TLSConfig()
	if d.Cert != nil {
		cert := d.Cert.TLSCertificate()
		// Send the certificate whatever CAs the server lists (self-signed
		// thumbprint certificates would otherwise be withheld).
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	}
	return tc
}

// Device describes how the golden client connects.
type Device struct {
	Identity     iothub.Identity
	Key          string        // SAS key (base64); empty for X.509
	TokenTTL     time.Duration // default 1 h
	TokenExpiry  time.Time     // overrides TokenTTL when set
	Cert         *certs.Leaf   // X.509 client certificate
	CleanSession bool
	KeepAlive    time.Duration // default 60 s
	Username     string        // overrides the generated Username
	Password     string        // overrides the generated SAS token
	Will         *Will
	WebSocket    bool
	OnLost       func(error)
}

// Will is an MQTT Will for the golden client.
type Will struct {
	Topic   string
	Payload []byte
	QoS     byte
}

// Token builds a SAS token for d as a device SDK would.
func (h *Hub) Token(d Device) string {
	h.t.Helper()
	exp := d.TokenExpiry
	if exp.IsZero() {
		ttl := d.TokenTTL
		if ttl == 0 {
			ttl = time.Hour
		}
		exp = time.Now().Add(ttl)
	}
	tok, err := iothub.NewSASToken(iothub.DeviceResourceURI(h.Host(), d.Identity), d.Key, exp, "")
	if err != nil {
		h.t.Fatalf("token: %v", err)
	}
	return tok
}

// ClientOptions returns paho options for d against this hub.
func (h *Hub) ClientOptions(d Device) *paho.ClientOptions {
	h.t.Helper()
	broker := "ssl://" + h.MQTTAddr()
	if d.WebSocket {
		broker = "wss://" + h.HTTPSAddr() + hub.WebSocketPath
	}
	tc := h.deviceTLS(d)
	username := d.Username
	if username == "" {
		username = iothub.FormatUsername(h.Host(), d.Identity, "2021-04-12", url.Values{"DeviceClientType": {"hilrun-golden/1.0"}})
	}
	ka := d.KeepAlive
	if ka == 0 {
		ka = 60 * time.Second
	}
	o := paho.NewClientOptions().AddBroker(broker).SetClientID(d.Identity.ClientID()).
		SetUsername(username).SetProtocolVersion(4).SetTLSConfig(tc).SetCleanSession(d.CleanSession).
		SetAutoReconnect(false).SetConnectRetry(false).SetKeepAlive(ka).SetPingTimeout(10 * time.Second).
		SetConnectTimeout(5 * time.Second).SetWriteTimeout(5 * time.Second).SetOrderMatters(false)
	switch {
	case d.Password != "":
		o.SetPassword(d.Password)
	case d.Key != "":
		o.SetPassword(h.Token(d))
	}
	if d.Will != nil {
		o.SetBinaryWill(d.Will.Topic, d.Will.Payload, d.Will.QoS, false)
	}
	if d.OnLost != nil {
		o.SetConnectionLostHandler(func(_ paho.Client, err error) { d.OnLost(err) })
	}
	if d.WebSocket {
		o.SetHTTPHeaders(map[string][]string{"Sec-WebSocket-Protocol": {"mqtt"}})
	}
	return o
}

// Connect connects the golden client and disconnects it at test end. It
// fails the test if the connection is refused; use Dial to inspect errors.
func (h *Hub) Connect(d Device) paho.Client {
	h.t.Helper()
	c, err := h.Dial(d)
	if err != nil {
		h.t.Fatalf("connect %s: %v\n%s", d.Identity, err, h.TraceSummary(d.Identity.ClientID()))
	}
	return c
}

// Dial connects and returns the CONNECT error, if any.
func (h *Hub) Dial(d Device) (paho.Client, error) {
	since := h.Trace().LastSeq()
	c := paho.NewClient(h.ClientOptions(d))
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return c, fmt.Errorf("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return c, err
	}
	h.t.Cleanup(func() { c.Disconnect(50) })
	h.waitOpened(d.Identity.ClientID(), since)
	return c, nil
}

// waitOpened waits until the hub has registered the connection that the
// CONNACK just accepted (the hub finishes its bookkeeping right after
// sending CONNACK).
func (h *Hub) waitOpened(clientID string, since uint64) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := h.WaitEntry(ctx, clientID, func(e hub.Entry) bool { return e.Seq > since && e.Type == hub.EventConnOpened }); err != nil {
		h.t.Fatalf("hub did not register the connection of %s: %v", clientID, err)
	}
}

// Wait waits for a paho token with a deadline, failing the test on error.
func Wait(t testing.TB, tok paho.Token, what string) {
	t.Helper()
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatalf("%s: timed out", what)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// Context returns a context bounded by d and the test's lifetime.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TraceSummary renders the identity's trace compactly, for failure messages.
func (h *Hub) TraceSummary(clientID string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "wire trace for %s:\n", clientID)
	for _, e := range h.Trace().ForClient(clientID) {
		fmt.Fprintf(&b, "  #%d conn%d %-5s %-14s", e.Seq, e.ConnID, e.Dir, e.Type)
		if e.Topic != "" {
			fmt.Fprintf(&b, " topic=%s qos=%d", e.Topic, e.QoS)
		}
		if e.Type == "CONNACK" {
			fmt.Fprintf(&b, " rc=%d session=%v", e.ReturnCode, e.Session)
		}
		if e.Reason != "" {
			fmt.Fprintf(&b, " reason=%q", e.Reason)
		}
		if e.Requirement != "" {
			fmt.Fprintf(&b, " [%s]", e.Requirement)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// WaitEntry waits for a trace entry of clientID matching match.
func (h *Hub) WaitEntry(ctx context.Context, clientID string, match func(hub.Entry) bool) (hub.Entry, error) {
	var found hub.Entry
	err := h.Wait(ctx, func() bool {
		for _, e := range h.Trace().ForClient(clientID) {
			if match(e) {
				found = e
				return true
			}
		}
		return false
	})
	if err != nil {
		return hub.Entry{}, fmt.Errorf("%w\n%s", err, h.TraceSummary(clientID))
	}
	return found, nil
}
