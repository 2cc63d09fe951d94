// Package hub is hilrun's reference IoT Hub: the device-facing MQTT endpoint
// of Azure IoT Hub (CONNECT rules, SAS and X.509 authentication, telemetry,
// cloud-to-device queues, twins, direct methods, limits and throttling) plus a
// service API to drive it, built on mochi-mqtt hooks.
//
// It is the cloud side of every conformance spec, so it aims to do what IoT
// Hub does, no more and no less: a client that works against the real hub
// works here unmodified, and a client that breaks a documented rule is
// refused the way IoT Hub refuses it (usually by closing the connection),
// with the reason and the requirement ID written to the wire trace. Rules
// cite requirement IDs from fixtures' catalog (CONN-*, TEL-*, C2D-*, TWIN-*,
// METH-*, LIMITS-*, RECON-*).
//
// Inside a test, start one with hubtest.Start; standalone, `hilrun hub`.
package hub

import (
	"context"
	"crypto/tls"
	"crypto/x509"
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

	"github.com/hilrun/hilrun/certs"
	"github.com/hilrun/hilrun/rig/iothub"
)

// Version of the reference hub, reported in ready files and reports.
const Version = "0.1.0"

// DefaultHost is the hub FQDN used when Config.Host is empty.
const DefaultHost = "hilrun-hub.azure-devices.net"

// Config configures a hub. The zero value plus addresses is usable.
type Config struct {
	// Host is the hub's FQDN: it must appear in the Username and in SAS `sr`
	// (CONN-006, CONN-008), and the generated server certificate covers it.
	Host string
	// MQTTAddr is the MQTT-over-TLS listener (IoT Hub: 8883). Default ":8883".
	MQTTAddr string
	// HTTPSAddr serves MQTT over WebSocket at /$iothub/websocket and the
	// service REST API on one TLS port (IoT Hub: 443). Default ":443";
	// "off" disables it.
	HTTPSAddr string
	// PlainMQTTAddr, when set, adds a plaintext MQTT listener. IoT Hub has
	// none (CONN-002); this exists only for debugging and logs a warning.
	PlainMQTTAddr string
	// Certificate is the server chain. When nil, Start generates a test PKI
	// for Host (see PKI()).
	Certificate *tls.Certificate
	// PKI, when set, is the hub PKI that Certificate came from (reported by PKI()).
	PKI *certs.HubPKI
	// DeviceCAs are CA certificates trusted for certificateAuthority identities
	// in addition to those registered at run time.
	DeviceCAs []*x509.Certificate
	// StateDir keeps the registry and twins across restarts when set.
	StateDir string
	// SASGrace is how long after `se` a connection is dropped (RECON-006).
	// IoT Hub has been seen to drop a few minutes late; 0 drops at `se`.
	SASGrace time.Duration
	// APIVersions accepted without a warning (CONN-006); default iothub.KnownAPIVersions.
	APIVersions []string
	// HandshakeTimeout bounds the TLS handshake plus the wait for CONNECT. Default 10 s.
	HandshakeTimeout time.Duration
	// MaxTraceEntries bounds the wire trace (oldest dropped). Default 200000.
	MaxTraceEntries int
	// MaxStoredTelemetry bounds the telemetry store. Default 100000.
	MaxStoredTelemetry int
	// MaxTraceEntriesPerClient bounds one client ID's entries in the trace
	// (its oldest are dropped and counted in Trace.Dropped), so that one
	// chatty device cannot push every other device's records out of
	// MaxTraceEntries. Default 20000; negative: no per-client bound.
	MaxTraceEntriesPerClient int
	// MaxTelemetryPerDevice bounds one identity's messages in the
	// telemetry store likewise (Hub.TelemetryDropped). Default 10000;
	// negative: no per-device bound.
	MaxTelemetryPerDevice int
	// FaultInjection enables IoT Hub's fault injection through telemetry
	// properties (AzIoTHub_FaultOperationType ...). Off by default, as on IoT Hub.
	FaultInjection bool
	// Limits are per-identity throttles; zero values mean unlimited.
	Limits Limits
	// Quota is the tier, units and fleet the hub meters each device
	// against (metering.go, LIMITS-*); zero: DefaultProfile.
	Quota Profile
	// BlobAddr is the storage endpoint's listener (rig/blob: OTA files and
	// file upload, fileupload.go); default "127.0.0.1:0", "off" disables.
	BlobAddr string
	// BlobHost is the storage account's host name; default blob.DefaultHost.
	BlobHost string
	// Logger receives operational logs (never secrets). Default: discard.
	Logger *slog.Logger
	// Now is the hub's clock for SAS expiry checks. Default time.Now.
	Now func() time.Time
}

// Limits are per-identity throttling thresholds (LIMITS-001/002). Zero disables.
type Limits struct {
	// TwinOpsPerSecond: twin GET/PATCH above this rate are answered 429 (TWIN-005).
	TwinOpsPerSecond float64
	TwinBurst        int
	// TelemetryPerSecond: a device publishing faster than this is disconnected.
	TelemetryPerSecond float64
	TelemetryBurst     int
}

// Hub is a running reference hub.
type Hub struct {
	cfg    Config
	log    *slog.Logger
	srv    *mqtt.Server
	reg    *Registry
	trace  *Trace
	pki    *certs.HubPKI
	cert   atomic.Pointer[tls.Certificate]
	tlsMin atomic.Uint32
	tlsMax atomic.Uint32

	mqttLn  net.Listener
	plainLn net.Listener
	httpsLn net.Listener
	httpSrv *http.Server
	httpT   httpTimeouts
	wsLn    *ChanListener

	infoByConn sync.Map // net.Conn handed to mochi → *connInfo

	conns sync.Map // *mqtt.Client → *conn, read by every hook without h.mu

	modelIDs sync.Map // ClientID → PnP model ID of the latest accepted connection (pnp.go)

	mu       sync.Mutex
	active   map[string]*conn // live connection per ClientID (CONN-016)
	sessions map[string]*session
	twins    map[string]*twinState
	queues   map[string]*c2dQueue
	methods  map[string]*pendingMethod // by rid
	faults   faultState
	c2dSeq   uint64 // guarded by mu
	connSeq  atomic.Uint64
	ridSeq   atomic.Uint64
	telem    *telemetryStore
	files    fileState         // file upload and the storage endpoint (fileupload.go)
	idLimits map[string]Limits // per-identity throttles (metering.go); guarded by mu

	changedMu sync.Mutex
	changedCh chan struct{}
	// watched: someone holds changedCh; otherwise notify has nothing to
	// wake. Written under changedMu, read without it by notify's fast path.
	watched atomic.Bool

	closeOnce sync.Once
	// attach holds Close until mochi read every connection it was handed
	// (rig/hub/attach.go).
	attach AttachGate
	// getMetadata: the client IDs whose twin GET answers carry $metadata
	// (SetTwinGetMetadata, TWIN-017).
	getMetadata sync.Map
	closed      chan struct{}
	saveMu      sync.Mutex
	saveCh      chan struct{}
	wg          sync.WaitGroup
}

// Start builds a hub, binds its listeners and starts serving.
func Start(cfg Config) (*Hub, error) { return start(cfg, defaultHTTPTimeouts) }

// start is Start with the HTTPS server's bounds, which tests shorten.
func start(cfg Config, ht httpTimeouts) (*Hub, error) {
	if cfg.Host == "" {
		cfg.Host = DefaultHost
	}
	if cfg.MQTTAddr == "" {
		cfg.MQTTAddr = ":8883"
	}
	if cfg.HTTPSAddr == "" {
		cfg.HTTPSAddr = ":443"
	}
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.MaxTraceEntries == 0 {
		cfg.MaxTraceEntries = 200000
	}
	if cfg.MaxStoredTelemetry == 0 {
		cfg.MaxStoredTelemetry = 100000
	}
	if cfg.MaxTraceEntriesPerClient == 0 {
		cfg.MaxTraceEntriesPerClient = 20000
	}
	if cfg.MaxTelemetryPerDevice == 0 {
		cfg.MaxTelemetryPerDevice = 10000
	}
	if len(cfg.APIVersions) == 0 {
		cfg.APIVersions = iothub.KnownAPIVersions
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	h := &Hub{
		cfg:       cfg,
		httpT:     ht,
		log:       log,
		reg:       newRegistry(),
		active:    map[string]*conn{},
		sessions:  map[string]*session{},
		twins:     map[string]*twinState{},
		queues:    map[string]*c2dQueue{},
		methods:   map[string]*pendingMethod{},
		changedCh: make(chan struct{}),
		closed:    make(chan struct{}),
		saveCh:    make(chan struct{}, 1),
	}
	h.trace = newTrace(cfg.MaxTraceEntries, h.notify)
	h.trace.perClient.limit = cfg.MaxTraceEntriesPerClient
	h.trace.observe = h.logRefusal // every refusal logged with reason and rule (refusallog.go)
	h.telem = newTelemetryStore(cfg.MaxStoredTelemetry)
	h.telem.perDevice.limit = cfg.MaxTelemetryPerDevice
	h.reg.onRevoke = h.revoke
	h.tlsMin.Store(tls.VersionTLS12)
	h.tlsMax.Store(tls.VersionTLS13)
	for _, ca := range cfg.DeviceCAs {
		h.reg.cas = append(h.reg.cas, ca)
	}

	switch {
	case cfg.Certificate != nil:
		c := *cfg.Certificate
		h.cert.Store(&c)
		h.pki = cfg.PKI
	default:
		pki, err := certs.NewHubPKI(cfg.Host, certs.ECDSAP256)
		if err != nil {
			return nil, fmt.Errorf("generate hub PKI: %w", err)
		}
		h.pki = pki
		c := pki.ServerTLSCertificate()
		h.cert.Store(&c)
	}

	if cfg.StateDir != "" {
		if err := h.loadState(); err != nil {
			return nil, err
		}
		h.reg.onChange = h.scheduleSave
	}
	h.ensureDefaultPolicies()

	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumQos = 1                                                 // QoS 2 SUBSCRIBE granted QoS 1 (CONN-020)
	caps.MinimumProtocolVersion = 4                                     // MQTT 3.1.1 only (CONN-001)
	caps.MaximumPacketSize = uint32(iothub.MaxTelemetryBytes + 64*1024) // headroom for topic + bag; TEL-005 is checked exactly later
	// mochi's per-client outbound queue carries only packets mochi routes
	// between clients; the hub consumes every PUBLISH (CodeSuccessIgnore)
	// and writes its own packets with WritePacket, so the queue stays
	// empty. Its buffer is allocated per connection up front (8 bytes a
	// slot), so a small one keeps 7.5 KB per connection off the heap.
	caps.MaximumClientWritesPending = 64
	caps.MaximumSessionExpiryInterval = uint32((48 * time.Hour).Seconds()) // C2D retention (Appendix A)
	caps.WildcardSubAvailable = 1
	caps.Compatibilities.ObscureNotAuthorized = false
	// A 1 KB read buffer per connection instead of mochi's 2 KB: TLS
	// already holds each decrypted record, and device packets are small.
	h.srv = mqtt.New(&mqtt.Options{Capabilities: caps, Logger: mochiLogger(log), ClientNetReadBufferSize: 1024})
	if err := h.srv.AddHook(&hooks{h: h}, nil); err != nil {
		return nil, err
	}
	// After the hub's hooks: close-after-CONNECT faults (rig/hub/faults.go).
	if err := h.srv.AddHook(&faultHooks{h: h}, nil); err != nil {
		return nil, err
	}

	if err := h.listen(); err != nil {
		h.closeListeners()
		return nil, err
	}
	if err := h.startBlob(); err != nil {
		h.closeListeners()
		return nil, fmt.Errorf("start the storage endpoint: %w", err)
	}
	if err := h.srv.Serve(); err != nil {
		h.closeListeners()
		h.closeBlob()
		return nil, err
	}
	h.wg.Add(1)
	go h.saveLoop()
	return h, nil
}

func (h *Hub) ensureDefaultPolicies() {
	// The policies every IoT Hub is created with.
	defaults := []Policy{
		{KeyName: "iothubowner", Rights: []string{RightRegistryRead, RightRegistryWrite, RightServiceConnect, RightDeviceConnect}},
		{KeyName: "service", Rights: []string{RightServiceConnect}},
		{KeyName: "device", Rights: []string{RightDeviceConnect}},
		{KeyName: "registryRead", Rights: []string{RightRegistryRead}},
		{KeyName: "registryReadWrite", Rights: []string{RightRegistryRead, RightRegistryWrite}},
	}
	for _, p := range defaults {
		if _, err := h.reg.Policy(p.KeyName); err != nil {
			h.reg.AddPolicy(p)
		}
	}
}

// Close stops the hub, closing every connection and listener.
func (h *Hub) Close() error {
	h.closeOnce.Do(func() {
		close(h.closed)
		if h.httpSrv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = h.httpSrv.Shutdown(ctx)
			cancel()
		}
		// Stop accepting first, let mochi take in what it was handed, then
		// stop mochi: its Close must not race a connection still attaching.
		h.closeListeners()
		h.attach.CloseAndWait(2 * time.Second)
		_ = h.srv.Close()
		h.closeBlob()
		h.mu.Lock()
		for _, m := range h.methods {
			m.finish(methodResult{err: ErrHubClosed})
		}
		h.mu.Unlock()
		h.wg.Wait()
		if h.cfg.StateDir != "" {
			_ = h.saveState()
		}
	})
	return nil
}

// ErrHubClosed is returned by calls that were pending when the hub closed.
var ErrHubClosed = errors.New("hub closed")

func (h *Hub) closeListeners() {
	for _, l := range []net.Listener{h.mqttLn, h.plainLn, h.httpsLn} {
		if l != nil {
			_ = l.Close()
		}
	}
	if h.wsLn != nil {
		_ = h.wsLn.Close()
	}
}

// Host is the hub FQDN.
func (h *Hub) Host() string { return h.cfg.Host }

// MQTTAddr is the bound MQTT-over-TLS address (host:port).
func (h *Hub) MQTTAddr() string { return h.mqttLn.Addr().String() }

// HTTPSAddr is the bound HTTPS (WebSocket + REST) address, "" when disabled.
func (h *Hub) HTTPSAddr() string {
	if h.httpsLn == nil {
		return ""
	}
	return h.httpsLn.Addr().String()
}

// PlainMQTTAddr is the bound plaintext MQTT address, "" when disabled.
func (h *Hub) PlainMQTTAddr() string {
	if h.plainLn == nil {
		return ""
	}
	return h.plainLn.Addr().String()
}

// Registry is the identity registry.
func (h *Hub) Registry() *Registry { return h.reg }

// Trace is the wire trace.
func (h *Hub) Trace() *Trace { return h.trace }

// PKI is the hub's PKI when the hub generated it or was given it; nil otherwise.
func (h *Hub) PKI() *certs.HubPKI { return h.pki }

// RootCAs returns a pool with the root that signs the current server chain,
// when known.
func (h *Hub) RootCAs() *x509.CertPool {
	if h.pki == nil {
		return nil
	}
	return h.pki.RootPool()
}

// SetServerCertificate swaps the server chain; new handshakes use it at once
// (later specs rotate the hub's root, CERT-*).
func (h *Hub) SetServerCertificate(c tls.Certificate) {
	h.cert.Store(&c)
	h.trace.add(Entry{Dir: DirEvent, Type: EventFault, Reason: "server certificate chain replaced"})
}

// ServerCertificate is the chain new handshakes get, so a spec that swaps
// it can put it back.
func (h *Hub) ServerCertificate() tls.Certificate { return *h.cert.Load() }

// TLSVersions is the range of TLS versions the hub accepts.
func (h *Hub) TLSVersions() (min, max uint16) {
	return uint16(h.tlsMin.Load()), uint16(h.tlsMax.Load())
}

// SetTLSVersions limits the TLS versions the hub accepts (default 1.2–1.3).
// Specs use it to offer only old versions and prove a device refuses them.
func (h *Hub) SetTLSVersions(min, max uint16) {
	h.tlsMin.Store(uint32(min))
	h.tlsMax.Store(uint32(max))
}

// notify wakes everyone waiting for hub state to change.
// Every traced packet notifies, so the common case (nobody waiting) must
// neither allocate nor take a lock that every connection contends for.
// The unlocked check cannot miss a waiter: waitFor sets watched before it
// evaluates its condition, and the state change that precedes notify is
// made under the lock the condition reads it with, so either the
// condition sees the change or this load sees watched set.
func (h *Hub) notify() {
	if !h.watched.Load() {
		return
	}
	h.changedMu.Lock()
	if h.watched.Load() {
		close(h.changedCh)
		h.changedCh = make(chan struct{})
		h.watched.Store(false)
	}
	h.changedMu.Unlock()
}

func (h *Hub) changed() <-chan struct{} {
	h.changedMu.Lock()
	defer h.changedMu.Unlock()
	h.watched.Store(true)
	return h.changedCh
}

// waitFor polls cond each time hub state changes until it returns true or
// ctx ends. It is how the service API offers waits without sleeps.
func (h *Hub) waitFor(ctx context.Context, cond func() bool) error {
	for {
		ch := h.changed()
		if cond() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-h.closed:
			if cond() {
				return nil
			}
			return ErrHubClosed
		}
	}
}

// Connected reports whether the identity has a live connection: one whose
// CONNACK has gone out, or is going out (see activeConn).
func (h *Hub) Connected(id iothub.Identity) bool {
	return h.activeConn(context.Background(), id) != nil
}

// activeConn is the identity's active connection, nil when it has none.
// A connection is registered as active before its CONNACK is written (see
// OnSessionEstablish) and finishes its bookkeeping just after; one found in
// between is waited for, so a call made the moment a device has its
// CONNACK finds that connection and never writes to it before the CONNACK.
// The wait is bounded by ctx and by the handshake budget: a connection that
// cannot get its CONNACK out in that time is not one a device could be
// using, and counts as offline.
func (h *Hub) activeConn(ctx context.Context, id iothub.Identity) *conn {
	key := id.ClientID()
	var bound <-chan time.Time
	for {
		h.mu.Lock()
		c := h.active[key]
		h.mu.Unlock()
		if c != nil && c.revoked.Load() {
			return nil // closing: its identity was disabled or deleted (Hub.revoke)
		}
		if c == nil || c.established.Load() {
			return c
		}
		if bound == nil {
			t := time.NewTimer(h.cfg.HandshakeTimeout)
			defer t.Stop()
			bound = t.C
		}
		// ready closes when c is established or abandoned; either way the
		// registration is looked up again (a takeover may have replaced it).
		select {
		case <-c.ready:
		case <-bound:
			return nil
		case <-ctx.Done():
			return nil
		case <-h.closed:
			return nil
		}
	}
}

// WaitConnected waits until the identity has a live, authenticated connection.
func (h *Hub) WaitConnected(ctx context.Context, id iothub.Identity) error {
	err := h.waitFor(ctx, func() bool { return h.Connected(id) })
	if err != nil {
		return fmt.Errorf("waiting for %s to connect: %w (trace: %d entries for this identity)", id, err, len(h.trace.ForClient(id.ClientID())))
	}
	return nil
}

// WaitDisconnected waits until the identity has no live connection.
func (h *Hub) WaitDisconnected(ctx context.Context, id iothub.Identity) error {
	return h.waitFor(ctx, func() bool { return !h.Connected(id) })
}

// Wait blocks until cond returns true or ctx ends. cond is re-checked
// whenever hub state changes (trace entry, telemetry, twin, C2D), so
// callers never poll with sleeps.
func (h *Hub) Wait(ctx context.Context, cond func() bool) error { return h.waitFor(ctx, cond) }
