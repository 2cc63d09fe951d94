// Package awsiot is hilrun's reference AWS IoT Core endpoint: the device
// side of AWS IoT's message broker (mutual-TLS thing certificates, ClientId
// = thing name, per-thing policies, QoS 0/1, retained messages, the
// documented limits and keep-alive range) and the Device Shadow service
// (classic and named shadows: get, update, delete, accepted / rejected,
// update/delta, update/documents), with a service API in Go and REST.
//
// It is the second cloud personality next to rig/hub (Azure IoT Hub) and
// shares its machinery rather than copying it: the wire trace and its
// entry format (hub.NewTrace, hub.PacketEntry), so fixtures, specs and
// reports read one trace whatever cloud a run plays; mochi-mqtt as the
// broker; rig/netem in front of it for network faults; certs for the PKI.
// The AWS protocol knowledge itself (topics, documents, limits) lives in
// rig/awsproto, which the reference firmware uses too.
//
// Like the hub it aims to do what the real service does, no more and no
// less: each rule names the AWS-* requirement it serves, and a refusal is
// the one AWS IoT gives (a failed handshake, a closed connection, or a
// `…/rejected` document) with the reason in the trace.
package awsiot

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/hilrun/hilrun/certs"
	"github.com/hilrun/hilrun/rig/awsproto"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/secrets"
)

// Version of the reference endpoint.
const Version = "0.1.0"

// Config configures an endpoint.
type Config struct {
	// Host is the ATS endpoint name the endpoint answers as (SNI, server
	// certificate); default awsproto.DefaultEndpoint.
	Host string
	// ExtraNames are further names the server certificate covers and SNI
	// may carry (e.g. "localhost" for an SDK dialled at 127.0.0.1).
	ExtraNames []string
	// MQTTAddr is the MQTT-over-TLS listener (AWS: 8883). Default ":8883".
	MQTTAddr string
	// HTTPSAddr serves the REST API (AWS's data plane: /things/…/shadow,
	// /topics/…) plus hilrun's registry and trace; "off" disables it.
	// Default ":8443".
	HTTPSAddr string
	// Certificate and PKI: the server chain; generated for Host when nil.
	Certificate *tls.Certificate
	PKI         *certs.HubPKI
	// HandshakeTimeout bounds the TLS handshake plus the wait for CONNECT.
	HandshakeTimeout time.Duration
	MaxTraceEntries  int
	Logger           *slog.Logger
	Now              func() time.Time
	// ServiceKey is the bearer token of the REST API; generated when empty.
	ServiceKey string
}

// Endpoint is a running reference AWS IoT endpoint.
type Endpoint struct {
	cfg   Config
	log   *slog.Logger
	srv   *mqtt.Server
	reg   *Registry
	trace *hub.Trace
	pki   *certs.HubPKI
	cert  atomic.Pointer[tls.Certificate]
	names []string

	mqttLn  net.Listener
	httpsLn net.Listener
	httpSrv *http.Server

	infoByConn sync.Map // net.Conn → *connInfo
	conns      sync.Map // *mqtt.Client → *conn
	connSeq    atomic.Uint64

	mu      sync.Mutex
	active  map[string]*conn // by ClientId
	shadows map[shadowKey]*awsproto.Shadow
	faults  map[string]*shadowFault // by thing

	changedMu sync.Mutex
	changedCh chan struct{}

	closeOnce sync.Once
	// attach holds Close until mochi read every connection it was handed.
	attach hub.AttachGate
	closed chan struct{}
	wg     sync.WaitGroup
}

type shadowKey struct{ thing, name string }

// shadowFault is rig-side fault injection on the shadow service of one
// thing (AWS-007 bounded wait, AWS-008 and AWS-012 rejections).
type shadowFault struct {
	silent     bool // shadow requests get no answer at all
	rejectCode int  // next updates answered …/rejected with this code
	rejectLeft int
}

type connInfo struct {
	id    uint64
	facts *hub.TLSFacts
	cert  *Certificate
}

type conn struct {
	id       uint64
	cl       *mqtt.Client
	clientID string
	thing    string
	certID   string
	remote   string
	subs     map[string]bool
	closing  atomic.Pointer[string]
}

// Start builds an endpoint, binds its listeners and starts serving.
func Start(cfg Config) (*Endpoint, error) {
	if cfg.Host == "" {
		cfg.Host = awsproto.DefaultEndpoint
	}
	if cfg.MQTTAddr == "" {
		cfg.MQTTAddr = ":8883"
	}
	if cfg.HTTPSAddr == "" {
		cfg.HTTPSAddr = ":8443"
	}
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.MaxTraceEntries == 0 {
		cfg.MaxTraceEntries = 200000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ServiceKey == "" {
		cfg.ServiceKey = hub.NewKey()
	}
	secrets.AddText("AWS endpoint service key", cfg.ServiceKey)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	e := &Endpoint{cfg: cfg, log: log, reg: newRegistry(), active: map[string]*conn{}, shadows: map[shadowKey]*awsproto.Shadow{},
		faults: map[string]*shadowFault{}, changedCh: make(chan struct{}), closed: make(chan struct{})}
	e.trace = hub.NewTrace(cfg.MaxTraceEntries, e.notify)
	e.reg.onRevoke = e.revoke
	e.names = append([]string{strings.ToLower(cfg.Host)}, cfg.ExtraNames...)
	if cfg.Certificate != nil {
		c := *cfg.Certificate
		e.cert.Store(&c)
		e.pki = cfg.PKI
	} else {
		pki, err := certs.NewHubPKIWithNames(cfg.Host, certs.ECDSAP256, cfg.ExtraNames...)
		if err != nil {
			return nil, fmt.Errorf("generate endpoint PKI: %w", err)
		}
		e.pki = pki
		c := pki.ServerTLSCertificate()
		e.cert.Store(&c)
	}
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumQos = 1 // AWS-006: QoS 0 and 1 only; a QoS 2 SUBSCRIBE is granted 1
	caps.MaximumPacketSize = uint32(awsproto.MaxPayloadBytes + 64*1024)
	caps.MaximumSessionExpiryInterval = 3600 // persistent sessions expire 1 h after disconnect (AWS quota)
	caps.RetainAvailable = 1                 // AWS IoT keeps retained messages (not on reserved topics)
	caps.WildcardSubAvailable = 1
	caps.MaximumClientWritesPending = 1024
	caps.Compatibilities.ObscureNotAuthorized = false
	e.srv = mqtt.New(&mqtt.Options{Capabilities: caps, InlineClient: true, Logger: log.With("component", "mochi")})
	if err := e.srv.AddHook(&hooks{e: e}, nil); err != nil {
		return nil, err
	}
	if err := e.listen(); err != nil {
		e.closeListeners()
		return nil, err
	}
	if err := e.srv.Serve(); err != nil {
		e.closeListeners()
		return nil, err
	}
	return e, nil
}

// Close stops the endpoint.
func (e *Endpoint) Close() error {
	e.closeOnce.Do(func() {
		close(e.closed)
		e.closeListeners()
		e.attach.CloseAndWait(2 * time.Second) // hub.AttachGate: mochi's Close must not race an attach
		_ = e.srv.Close()
		if e.httpSrv != nil {
			_ = e.httpSrv.Close()
		}
	})
	e.wg.Wait()
	return nil
}

func (e *Endpoint) closeListeners() {
	if e.mqttLn != nil {
		_ = e.mqttLn.Close()
	}
	if e.httpsLn != nil {
		_ = e.httpsLn.Close()
	}
}

// Host is the endpoint name.
func (e *Endpoint) Host() string { return e.cfg.Host }

// MQTTAddr is the bound MQTT-over-TLS address.
func (e *Endpoint) MQTTAddr() string { return e.mqttLn.Addr().String() }

// HTTPSAddr is the bound REST address ("" when off).
func (e *Endpoint) HTTPSAddr() string {
	if e.httpsLn == nil {
		return ""
	}
	return e.httpsLn.Addr().String()
}

// ServiceKey is the REST API's bearer token (a registered secret).
func (e *Endpoint) ServiceKey() string { return e.cfg.ServiceKey }

// Registry is the thing and certificate registry.
func (e *Endpoint) Registry() *Registry { return e.reg }

// Trace is the wire trace (the hub's format).
func (e *Endpoint) Trace() *hub.Trace { return e.trace }

// PKI is the server PKI (its root is what devices must trust).
func (e *Endpoint) PKI() *certs.HubPKI { return e.pki }

// RootCAs is a pool with the endpoint's root.
func (e *Endpoint) RootCAs() *x509.CertPool { return e.pki.RootPool() }

// SetServerCertificate replaces the chain served to new connections
// (AWS-003: a chain leading to another root).
func (e *Endpoint) SetServerCertificate(c tls.Certificate) { e.cert.Store(&c) }

// ServerCertificate is the chain served now.
func (e *Endpoint) ServerCertificate() tls.Certificate { return *e.cert.Load() }

func (e *Endpoint) notify() {
	e.changedMu.Lock()
	close(e.changedCh)
	e.changedCh = make(chan struct{})
	e.changedMu.Unlock()
}

func (e *Endpoint) changed() <-chan struct{} {
	e.changedMu.Lock()
	defer e.changedMu.Unlock()
	return e.changedCh
}

// Wait blocks until cond holds (re-checked after every trace entry and
// state change) or ctx ends.
func (e *Endpoint) Wait(ctx context.Context, cond func() bool) error {
	for {
		ch := e.changed()
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-e.closed:
			return errors.New("endpoint closed")
		case <-ch:
		}
	}
}

// Connected reports whether a client with this ClientId is connected.
func (e *Endpoint) Connected(clientID string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.active[clientID]
	return ok
}

// WaitConnected waits until clientID is connected.
func (e *Endpoint) WaitConnected(ctx context.Context, clientID string) error {
	return e.Wait(ctx, func() bool { return e.Connected(clientID) })
}

// Drop closes clientID's connection (a network-side fault, no DISCONNECT).
func (e *Endpoint) Drop(clientID, reason string) error {
	e.mu.Lock()
	c := e.active[clientID]
	e.mu.Unlock()
	if c == nil {
		return fmt.Errorf("%s is not connected", clientID)
	}
	e.closeConn(c, "", reason)
	return nil
}

func (e *Endpoint) listen() error {
	ln, err := net.Listen("tcp", e.cfg.MQTTAddr)
	if err != nil {
		return fmt.Errorf("mqtt listener %s: %w", e.cfg.MQTTAddr, err)
	}
	e.mqttLn = ln
	out := hub.NewChanListener(ln.Addr())
	e.wg.Add(1)
	go e.accept(ln, out)
	if err := e.srv.AddListener(listeners.NewNet("aws-mqtts", out)); err != nil {
		return err
	}
	if e.cfg.HTTPSAddr != "off" {
		hl, err := net.Listen("tcp", e.cfg.HTTPSAddr)
		if err != nil {
			return fmt.Errorf("https listener %s: %w", e.cfg.HTTPSAddr, err)
		}
		e.httpsLn = hl
		e.httpSrv = &http.Server{Handler: e.restHandler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: 60 * time.Second, IdleTimeout: 60 * time.Second}
		tl := tls.NewListener(hl, &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return e.cert.Load(), nil }})
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			_ = e.httpSrv.Serve(tl)
		}()
	}
	return nil
}

func (e *Endpoint) accept(ln net.Listener, out *hub.ChanListener) {
	defer e.wg.Done()
	defer out.Close()
	for {
		raw, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		go e.handshake(raw, out)
	}
}

// tlsConfig: TLS 1.2 and 1.3 (AWS IoT's data endpoints), SNI required and
// naming this endpoint (AWS-004), a client certificate required and
// verified against the registry (AWS-002).
func (e *Endpoint) tlsConfig(info *connInfo) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return e.cert.Load(), nil
		},
		ClientAuth: tls.RequireAnyClientCert,
		GetConfigForClient: func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
			info.facts.ServerName = chi.ServerName
			for _, v := range chi.SupportedVersions {
				info.facts.OfferedVersions = append(info.facts.OfferedVersions, tls.VersionName(v))
			}
			for _, c := range chi.CipherSuites {
				info.facts.OfferedCiphers = append(info.facts.OfferedCiphers, tls.CipherSuiteName(c))
			}
			if chi.ServerName == "" {
				return nil, errors.New("AWS-004: no SNI; AWS IoT refuses connections without server name indication")
			}
			if !slices.Contains(e.names, strings.ToLower(chi.ServerName)) {
				return nil, fmt.Errorf("AWS-004: SNI %q is not this endpoint (%s)", chi.ServerName, e.cfg.Host)
			}
			return nil, nil
		},
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			var chain []*x509.Certificate
			for _, der := range raw {
				c, err := x509.ParseCertificate(der)
				if err != nil {
					return fmt.Errorf("AWS-002: client certificate does not parse: %v", err)
				}
				chain = append(chain, c)
			}
			if len(chain) > 0 {
				info.facts.ClientCertSubject = chain[0].Subject.String()
				info.facts.ClientCertThumbprint = certs.Thumbprint(chain[0])
				info.facts.ClientCertChainLen = len(chain)
			}
			c, err := e.reg.verifyPeer(chain, e.cfg.Now())
			if err != nil {
				return err
			}
			info.cert = c
			return nil
		},
	}
}

func (e *Endpoint) handshake(raw net.Conn, out *hub.ChanListener) {
	info := &connInfo{id: e.connSeq.Add(1), facts: &hub.TLSFacts{Transport: "mqtts"}}
	remote := raw.RemoteAddr().String()
	_ = raw.SetDeadline(time.Now().Add(e.cfg.HandshakeTimeout))
	br := bufio.NewReaderSize(raw, 512)
	if first, err := br.Peek(1); err == nil && first[0] == 0x10 {
		// MQTT CONNECT in plaintext on the TLS port (AWS-001): recorded
		// without its bytes; the handshake below then fails.
		e.trace.AddExternal(hub.Entry{ConnID: info.id, Remote: remote, Dir: hub.DirEvent, Type: hub.EventPlaintext, Requirement: "AWS-001",
			Reason: "plaintext MQTT CONNECT on the TLS port; AWS IoT accepts MQTT only over TLS"})
	}
	tc := tls.Server(&peeked{Conn: raw, r: br}, e.tlsConfig(info))
	if err := tc.Handshake(); err != nil {
		reason := err.Error()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			reason = fmt.Sprintf("TLS handshake did not finish within %s", e.cfg.HandshakeTimeout)
		}
		e.trace.AddExternal(hub.Entry{ConnID: info.id, Remote: remote, Dir: hub.DirEvent, Type: hub.EventTLSFailed, Reason: reason, TLS: info.facts, Requirement: reqIn(reason)})
		_ = raw.Close()
		return
	}
	st := tc.ConnectionState()
	info.facts.Version = tls.VersionName(st.Version)
	info.facts.CipherSuite = tls.CipherSuiteName(st.CipherSuite)
	e.trace.AddExternal(hub.Entry{ConnID: info.id, Remote: remote, Dir: hub.DirEvent, Type: hub.EventTLS, TLS: info.facts})
	_ = tc.SetDeadline(time.Now().Add(e.cfg.HandshakeTimeout)) // CONNECT must follow; mochi then applies the keep-alive
	ac := hub.NewAttachedConn(tc)
	e.infoByConn.Store(net.Conn(ac), info)
	if !e.attach.Deliver(out, ac) {
		e.infoByConn.Delete(net.Conn(ac))
		_ = tc.Close()
	}
}

func reqIn(reason string) string {
	for _, r := range []string{"AWS-002", "AWS-004", "AWS-003"} {
		if strings.Contains(reason, r) {
			return r
		}
	}
	return ""
}

type peeked struct {
	net.Conn
	r *bufio.Reader
}

func (p *peeked) Read(b []byte) (int, error) { return p.r.Read(b) }

// revoke ends every connection that authenticated with certificate id.
func (e *Endpoint) revoke(id, why string) {
	e.mu.Lock()
	var victims []*conn
	for _, c := range e.active {
		if c.certID == id {
			victims = append(victims, c)
		}
	}
	e.mu.Unlock()
	for _, c := range victims {
		e.closeConn(c, "AWS-002", why)
	}
}

// closeConn closes a connection without DISCONNECT, tracing why.
func (e *Endpoint) closeConn(c *conn, req, reason string) {
	r := reason
	c.closing.Store(&r)
	typ := hub.EventFault // a rig-side drop
	if req != "" {
		typ = hub.EventConnClosed // the service ended it (a revoked certificate)
	}
	e.trace.AddExternal(hub.Entry{ConnID: c.id, ClientID: c.clientID, Remote: c.remote, Dir: hub.DirEvent, Type: typ, Requirement: req, Reason: reason})
	c.cl.Stop(errors.New(reason))
	_ = c.cl.Net.Conn.Close()
}
