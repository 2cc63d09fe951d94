// Package dps is hilrun's reference Device Provisioning Service: the
// device-facing MQTT endpoint of Azure IoT Hub DPS (registration with
// individual and group enrollments, symmetric keys and X.509), its own
// listener and host name, assigning devices to the reference hub (rig/hub)
// where they are created, with fault switches and a service API (Go and
// HTTPS REST).
//
// It records into the hub's wire trace (same sequence, same connection
// numbers), so a spec sees the DPS exchange ordered with the hub
// connection that follows it. The wire shapes live in rig/dpsproto, shared
// with the reference firmware. Rules cite requirement IDs (DPS-*, PNP-006).
package dps

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/hilrun/hilrun/certs"
	"github.com/hilrun/hilrun/rig/dpsproto"
	"github.com/hilrun/hilrun/rig/hub"
)

// DefaultIDScope is the ID scope when Config.IDScope is empty (the shape
// of real scopes, 000 L366).
const DefaultIDScope = "0ne00HILRUN"

// Config configures an endpoint.
type Config struct {
	// Host is the DPS global device endpoint name (SNI, server
	// certificate); default dpsproto.DefaultHost (DPS-001).
	Host string
	// Addr is the MQTT-over-TLS listener (DPS: 8883); default 127.0.0.1:0.
	Addr string
	// RESTAddr, when set, serves the service REST API over HTTPS.
	RESTAddr string
	// IDScope of this DPS instance; default DefaultIDScope.
	IDScope string
	// Hub is the IoT hub devices are assigned to: they are created in its
	// registry, the DPS traffic goes into its wire trace and its PKI's
	// intermediate issues the DPS server certificate (one root of trust,
	// as DPS and IoT Hub share theirs).
	Hub *hub.Hub
	// Names are extra DNS names or IPs for the server certificate.
	Names []string
	// RetryAfter is the retry-after (seconds) of 202 and 429 answers;
	// default 1 (negative: 0).
	RetryAfter int
	// HandshakeTimeout bounds TLS plus CONNECT; default 10 s.
	HandshakeTimeout time.Duration
	// AttemptTimeout bounds one registration operation: polls arriving
	// after it are answered 404 (operation gone); default 60 s (000 L373).
	AttemptTimeout time.Duration
	Logger         *slog.Logger
	Now            func() time.Time
}

// Endpoint is a running reference DPS.
type Endpoint struct {
	cfg   Config
	hub   *hub.Hub
	trace *hub.Trace
	srv   *mqtt.Server
	ln    net.Listener
	cert  atomic.Pointer[tls.Certificate]
	own   *tls.Certificate // the endpoint's own chain (ChainOwn)
	scMu  sync.Mutex
	sc    *certs.Scenario // the bad chains of PresentChain (CERT-005), made on first use
	conns *hub.ChanListener
	// attach holds Close until mochi read every connection it was handed.
	attach hub.AttachGate
	infos  sync.Map // net.Conn → *connInfo
	dcs    sync.Map // *mqtt.Client → *dconn

	restLn  net.Listener
	restSrv *http.Server
	svcKey  string

	mu         sync.Mutex
	individual map[string]*Enrollment
	groups     map[string]*Enrollment
	regs       map[string]*Registration
	ops        map[string]*operation
	faults     map[string]*Faults
	opSeq      uint64

	closeOnce sync.Once
	wg        sync.WaitGroup
}

// Start builds an endpoint and starts serving.
func Start(cfg Config) (*Endpoint, error) {
	if cfg.Hub == nil {
		return nil, errors.New("dps: Config.Hub is required")
	}
	if cfg.Host == "" {
		cfg.Host = dpsproto.DefaultHost
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.IDScope == "" {
		cfg.IDScope = DefaultIDScope
	}
	if err := dpsproto.CheckIDScope(cfg.IDScope); err != nil {
		return nil, err
	}
	if cfg.RetryAfter == 0 {
		cfg.RetryAfter = 1
	}
	if cfg.RetryAfter < 0 {
		cfg.RetryAfter = 0
	}
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.AttemptTimeout == 0 {
		cfg.AttemptTimeout = 60 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	pki := cfg.Hub.PKI()
	if pki == nil || pki.Intermediate == nil {
		return nil, errors.New("dps: the hub has no PKI to issue the DPS server certificate from")
	}
	opts, err := certs.HubServerOptions(cfg.Host, certs.ECDSAP256)
	if err != nil {
		return nil, err
	}
	if err := certs.AddServerNames(&opts, cfg.Names...); err != nil {
		return nil, err
	}
	leaf, err := pki.Intermediate.IssueServer(opts)
	if err != nil {
		return nil, fmt.Errorf("dps: server certificate: %w", err)
	}
	e := &Endpoint{cfg: cfg, hub: cfg.Hub, trace: cfg.Hub.Trace(),
		individual: map[string]*Enrollment{}, groups: map[string]*Enrollment{}, regs: map[string]*Registration{},
		ops: map[string]*operation{}, faults: map[string]*Faults{}}
	c := leaf.TLSCertificate()
	e.own = &c
	e.cert.Store(&c)
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumQos = 1
	caps.MinimumProtocolVersion = 4
	caps.MaximumPacketSize = 64 * 1024 // bodies above dpsproto.MaxRequestBytes are refused with 400, larger packets closed
	caps.Compatibilities.ObscureNotAuthorized = false
	e.srv = mqtt.New(&mqtt.Options{Capabilities: caps, Logger: cfg.Logger.With("component", "dps-mochi")})
	if err := e.srv.AddHook(&hooks{e: e}, nil); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("dps listener %s: %w", cfg.Addr, err)
	}
	e.ln = ln
	e.conns = hub.NewChanListener(ln.Addr())
	if err := e.srv.AddListener(listeners.NewNet("dps-mqtts", e.conns)); err != nil {
		_ = ln.Close()
		return nil, err
	}
	e.wg.Add(1)
	go e.accept()
	if err := e.srv.Serve(); err != nil {
		_ = ln.Close()
		return nil, err
	}
	if cfg.RESTAddr != "" {
		if err := e.startREST(cfg.RESTAddr); err != nil {
			e.Close()
			return nil, err
		}
	}
	return e, nil
}

// Close stops the endpoint.
func (e *Endpoint) Close() {
	e.closeOnce.Do(func() {
		if e.restSrv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = e.restSrv.Shutdown(ctx)
			cancel()
		}
		// Stop delivering, let mochi take in what it was handed, then stop
		// mochi (hub.AttachGate: its Close must not race an attach).
		_ = e.ln.Close()
		_ = e.conns.Close()
		e.attach.CloseAndWait(2 * time.Second)
		_ = e.srv.Close()
		e.wg.Wait()
	})
}

// Host is the DPS host name (SNI, DPS-001).
func (e *Endpoint) Host() string { return e.cfg.Host }

// Addr is the bound MQTT-over-TLS address.
func (e *Endpoint) Addr() string { return e.ln.Addr().String() }

// IDScope is the endpoint's ID scope.
func (e *Endpoint) IDScope() string { return e.cfg.IDScope }

// RetryAfter is the retry-after the endpoint advertises by default.
func (e *Endpoint) RetryAfter() int { return e.cfg.RetryAfter }

// SetServerCertificate swaps the chain new handshakes get (DPS-001 specs
// present a bad one and put the old back).
func (e *Endpoint) SetServerCertificate(c tls.Certificate) {
	e.cert.Store(&c)
	e.trace.AddExternal(hub.Entry{Dir: hub.DirEvent, Type: hub.EventFault, Reason: "DPS: server certificate chain replaced"})
}

// ServerCertificate is the chain new handshakes get.
func (e *Endpoint) ServerCertificate() tls.Certificate { return *e.cert.Load() }

// Hub is the hub devices are assigned to.
func (e *Endpoint) Hub() *hub.Hub { return e.hub }

// Wait blocks until cond holds or ctx ends; it is re-checked on every
// change of the shared trace (the endpoint records every step there).
func (e *Endpoint) Wait(ctx context.Context, cond func() bool) error { return e.hub.Wait(ctx, cond) }

// connInfo is what is known of a transport connection before CONNECT.
type connInfo struct {
	id    uint64
	facts *hub.TLSFacts
}

func (e *Endpoint) accept() {
	defer e.wg.Done()
	for {
		raw, err := e.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		go e.handshake(raw)
	}
}

// handshake runs TLS with the DPS server certificate and records the
// facts (DPS-001: the TLS rules of CONN-002..004 apply; the SNI is kept).
// A client certificate is requested and judged at CONNECT (DPS-007).
func (e *Endpoint) handshake(raw net.Conn) {
	info := &connInfo{id: e.hub.NewConnID(), facts: &hub.TLSFacts{Transport: "dps-mqtts"}}
	remote := raw.RemoteAddr().String()
	_ = raw.SetDeadline(time.Now().Add(e.cfg.HandshakeTimeout))
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ClientAuth: tls.RequestClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return e.cert.Load(), nil },
		GetConfigForClient: func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
			info.facts.ServerName = chi.ServerName
			for _, v := range chi.SupportedVersions {
				info.facts.OfferedVersions = append(info.facts.OfferedVersions, tls.VersionName(v))
			}
			return nil, nil
		}}
	tc := tls.Server(raw, cfg)
	if err := tc.Handshake(); err != nil {
		e.trace.AddExternal(hub.Entry{ConnID: info.id, Remote: remote, Dir: hub.DirEvent, Type: hub.EventTLSFailed,
			Reason: "DPS: " + err.Error(), Requirement: "DPS-001", TLS: info.facts})
		_ = raw.Close()
		return
	}
	st := tc.ConnectionState()
	info.facts.Version = tls.VersionName(st.Version)
	info.facts.CipherSuite = tls.CipherSuiteName(st.CipherSuite)
	if len(st.PeerCertificates) > 0 {
		leaf := st.PeerCertificates[0]
		info.facts.ClientCertSubject = leaf.Subject.String()
		info.facts.ClientCertThumbprint = certs.Thumbprint(leaf)
		info.facts.ClientCertChainLen = len(st.PeerCertificates)
	}
	e.trace.AddExternal(hub.Entry{ConnID: info.id, Remote: remote, Dir: hub.DirEvent, Type: hub.EventTLS, TLS: info.facts, Extra: "dps"})
	_ = tc.SetDeadline(time.Now().Add(e.cfg.HandshakeTimeout))
	ac := hub.NewAttachedConn(tc)
	e.infos.Store(net.Conn(ac), info)
	if !e.attach.Deliver(e.conns, ac) {
		e.infos.Delete(net.Conn(ac))
		_ = tc.Close()
	}
}
