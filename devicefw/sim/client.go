package sim

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/rig/iothub"
)

// Defaults where the configuration leaves a value open. They follow the
// Azure IoT C SDK (device-sdk-behaviours.md §4) unless noted.
const (
	defaultTokenTTL      = time.Hour
	defaultRenewFraction = 0.8
	defaultKeepAlive     = 60 * time.Second
	defaultRetryInitial  = 100 * time.Millisecond // RECON-002: the SDK reference, 002 L16737-16738
	defaultRetryMax      = 10 * time.Second
	defaultJitterPct     = 20
	defaultTwinTimeout   = 20 * time.Second
	connectTimeout       = 10 * time.Second
	subackTimeout        = 10 * time.Second
	telemetryAckTimeout  = 4 * time.Minute  // RECON-005: the SDK operation timeout
	throttledMinBackoff  = 10 * time.Second // RECON-003
	resyncAttempts       = 3

	// reconnect-no-backoff: the tight loop is still bounded.
	noBackoffDelay       = 50 * time.Millisecond
	noBackoffMaxAttempts = 40

	// deviceClientType goes into the Username (CONN-006, like the SDKs).
	deviceClientType = FirmwareName + "/" + FirmwareVersion + " (paho.mqtt.golang v1.5.1)"
	// unknownMethodStatus answers methods with no behaviour defined and no
	// "*" fallback (METH-010). The official SDKs differ: the C# SDK answers
	// 501, the azure-sdk-for-c sample 404 with "{}", nanoFramework nothing.
	// The firmware follows azure-sdk-for-c, the SDK embedded devices build on.
	unknownMethodStatus = 404
	maxSeenC2D          = 512
)

// errLost completes operations whose connection went away.
var errLost = errors.New("connection lost")

// connConfig is a snapshot of what one connection attempt needs.
type connConfig struct {
	host, addr, transport string
	plainAddr             string // the rig's stand-in for the hub host's port 1883 (tls-fallback-1883)
	dnsServer             string // resolve host through this name server at each attempt (dns.go, RECON-012)
	id                    iothub.Identity
	authType, key         string
	ttl                   time.Duration
	renewFraction         float64
	cert                  *tls.Certificate
	trust                 []*x509.Certificate
	keepAlive             time.Duration
	clean                 bool
	qos                   byte
	will                  *agentproto.Will
	retryInitial          time.Duration
	retryMax              time.Duration
	jitterPct             int
	defaultRetry          bool // no retry initialMs / maxMs configured: the default policy (RECON-002)
	modelID               string
	twinTimeout           time.Duration
	opTimeout             time.Duration // RECON-005: overall limit of one telemetry send
}

// session is one client.open … client.close lifetime: the reconnect loop.
type session struct {
	ctx      context.Context
	cancel   context.CancelFunc
	graceful bool          // how to end the connection when ctx ends
	kick     chan string   // reconnect now with new credentials (reason)
	done     chan struct{} // closed when the loop has ended
	store    paho.Store    // kept across connections for CleanSession 0 (TEL-004)
	acks     *ackWatch     // PUBACKs of stored messages across connections (RECON-005)
	connects int           // successful connections in this session
	renewing bool          // the connection being set up replaces one for a token renewal (RECON-006)
	// subAcked: the SUBACK of the start-up SUBSCRIBE came on a connection of
	// this MQTT session. A "session present" from the hub keeps only what
	// the hub acknowledged: a SUBSCRIBE lost before its SUBACK is not in it
	// (MQTT 3.1.1 re-sends only PUBLISH and PUBREL, §4.4), so it is sent
	// again (RECON-008, RECON-010).
	subAcked bool
	rses     reconSessionState
}

// conn is one established MQTT connection.
type conn struct {
	// twinReady is closed once the connection's start-up twin resync has
	// ended, however it ended (method-dispatch-after-twin).
	twinReady chan struct{}
	readyOnce sync.Once
	gen       uint64
	cli       paho.Client
	netConn   net.Conn
	lost      chan struct{} // closed when the connection is gone
	once      sync.Once
	acks      *ackWatch // set when the session store re-sends its QoS 1 messages (RECON-005)

	c2dTaken int // C2D deliveries received on this connection (guarded by deviceClient.mu)
}

func (c *conn) markLost() { c.once.Do(func() { close(c.lost) }) }

type twinResp struct {
	status  int
	version int64
	hasVer  bool
	body    []byte
	err     error
}

type pendingTwin struct {
	rid  string
	gen  uint64
	sent time.Time
	ch   chan twinResp
}

// deviceClient is the IoT Hub device client: paho.mqtt.golang with an own
// reconnect loop, so that backoff, credentials and the stop rules are the
// firmware's (RECON-001..008).
type deviceClient struct {
	fw *Firmware

	mu       sync.Mutex
	state    string
	reason   string
	connects int
	sess     *session
	cur      *conn
	gen      uint64
	tokenExp int64
	quiet    bool // shutting down: no more events

	desired     map[string]any
	desiredVer  int64
	reportedVer int64

	ridSeq   uint64
	pending  map[string]*pendingTwin
	order    []string // pending rids, oldest first (twin-any-rid)
	telRef   uint64
	seenC2D  map[string]bool
	seenList []string

	lastMethodRID string            // method-reply-last-rid
	methodByName  map[string]string // method-rid-by-name (defects_bounds_more.go)

	cert certClientState // defects_cert.go
	tls  tlsClientState  // defects_tls.go
	toks tokenCache      // defects_tokens.go
	mods moduleState     // defects_modules.go
	ota  otaState        // ota.go
	dns  dnsState        // dns.go
	app  appState        // heartbeat.go
}

func newDeviceClient(fw *Firmware) *deviceClient {
	return &deviceClient{fw: fw, state: agentproto.StateIdle, pending: map[string]*pendingTwin{}, seenC2D: map[string]bool{}}
}

// on reports whether a defect switch is active. It must not be called with dc.mu held.
func (dc *deviceClient) on(name string) bool {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	return dc.fw.defects.on(name)
}

func (dc *deviceClient) status() agentproto.Status {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	return agentproto.Status{State: dc.state, Reason: dc.reason, Connects: dc.connects, DesiredVer: dc.desiredVer,
		ClockUnixMS: dc.fw.rtc.Now().UnixMilli(), ClockSynced: dc.fw.rtc.Synced(), TokenExpires: dc.tokenExp}
}

// setStateLocked records a state change and emits the conn event.
func (dc *deviceClient) setStateLocked(ev agentproto.ConnEvent) {
	dc.state, dc.reason = ev.State, ev.Reason
	if !dc.quiet {
		dc.fw.emit(agentproto.EvConn, ev)
	}
}

func (dc *deviceClient) setState(ev agentproto.ConnEvent) {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	dc.setStateLocked(ev)
}

func (dc *deviceClient) emit(name string, data any) {
	dc.mu.Lock()
	quiet := dc.quiet
	dc.mu.Unlock()
	if !quiet {
		dc.fw.emit(name, data)
	}
}

// snapshot reads the configuration for one attempt.
func (dc *deviceClient) snapshot() (connConfig, *agentproto.Error) {
	moduleID := dc.moduleIDOf() // before the NVS lock (lock order: client, then NVS)
	deviceID := dc.deviceIDOf() // likewise (CONN-024)
	n := dc.fw.nvs
	n.mu.Lock()
	defer n.mu.Unlock()
	c := n.Config
	var cc connConfig
	if c.Hub == nil || c.Hub.Host == "" {
		return cc, agentproto.Errorf(agentproto.ErrBadArgs, "no hub configured (configure {\"hub\":{\"host\":...}})")
	}
	if c.Identity == nil || c.Identity.DeviceID == "" {
		return cc, agentproto.Errorf(agentproto.ErrBadArgs, "no identity configured")
	}
	if c.Auth == nil {
		return cc, agentproto.Errorf(agentproto.ErrBadArgs, "no auth configured")
	}
	cc.host = c.Hub.Host
	cc.transport = c.Hub.Transport
	if cc.transport == "" {
		cc.transport = "mqtts"
	}
	port := c.Hub.Port
	if port == 0 {
		port = 8883
		if cc.transport == "wss" {
			port = 443
		}
	}
	cc.addr = c.Hub.Address
	if cc.addr == "" {
		cc.addr = net.JoinHostPort(cc.host, strconv.Itoa(port))
	}
	cc.plainAddr = c.Hub.PlainAddress
	cc.dnsServer = c.Hub.DNSServer
	if cc.plainAddr == "" {
		cc.plainAddr = net.JoinHostPort(cc.host, "1883")
	}
	cc.id = iothub.Identity{DeviceID: deviceID(c.Identity.DeviceID), ModuleID: moduleID(c.Identity.ModuleID)}
	cc.authType, cc.key = c.Auth.Type, c.Auth.Key
	cc.ttl = time.Duration(c.Auth.TokenTTL) * time.Second
	if cc.ttl <= 0 {
		cc.ttl = defaultTokenTTL
	}
	cc.renewFraction = c.Auth.RenewFraction
	if cc.renewFraction <= 0 {
		cc.renewFraction = defaultRenewFraction
	}
	if cc.authType == "x509" {
		if n.Cert == nil {
			return cc, agentproto.Errorf(agentproto.ErrBadArgs, "auth x509 needs a device certificate (cert.set)")
		}
		cc.cert = n.Cert
	}
	cc.trust = append([]*x509.Certificate(nil), n.Trust...)
	cc.keepAlive, cc.clean, cc.qos = defaultKeepAlive, false, 1
	if m := c.MQTT; m != nil {
		if m.KeepAlive > 0 {
			cc.keepAlive = time.Duration(m.KeepAlive) * time.Second
		}
		if m.CleanSession != nil {
			cc.clean = *m.CleanSession
		}
		if m.QoS != nil && (*m.QoS == 0 || *m.QoS == 1) {
			cc.qos = byte(*m.QoS)
		}
		cc.will = m.Will
	}
	cc.retryInitial, cc.retryMax, cc.jitterPct = defaultRetryInitial, defaultRetryMax, defaultJitterPct
	cc.defaultRetry = c.Retry == nil || (c.Retry.InitialMS <= 0 && c.Retry.MaxMS <= 0)
	if r := c.Retry; r != nil {
		if r.InitialMS > 0 {
			cc.retryInitial = time.Duration(r.InitialMS) * time.Millisecond
		}
		if r.MaxMS > 0 {
			cc.retryMax = time.Duration(r.MaxMS) * time.Millisecond
		}
		if r.JitterPct > 0 && r.JitterPct <= 100 {
			cc.jitterPct = r.JitterPct
		}
	}
	cc.opTimeout = opTimeoutOf(c.Retry)
	if cc.retryMax < cc.retryInitial {
		cc.retryMax = cc.retryInitial
	}
	cc.modelID = c.ModelID
	cc.twinTimeout = defaultTwinTimeout
	if c.Twin != nil && c.Twin.TimeoutMS > 0 {
		cc.twinTimeout = time.Duration(c.Twin.TimeoutMS) * time.Millisecond
	}
	return cc, nil
}

// open starts the reconnect loop. While a loop runs (connecting,
// connected or in backoff) it starts nothing and reports already
// (PROTOCOL.md §4: client.open on an open client); after idle or stopped a
// new loop starts.
func (dc *deviceClient) open() (already bool, _ *agentproto.Error) {
	if _, err := dc.snapshot(); err != nil {
		return false, err
	}
	dc.mu.Lock()
	defer dc.mu.Unlock()
	if dc.sess != nil {
		select {
		case <-dc.sess.done:
		default:
			return true, nil
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &session{ctx: ctx, cancel: cancel, kick: make(chan string, 1), done: make(chan struct{}), store: paho.NewOrderedMemoryStore(), acks: newAckWatch()}
	dc.sess = s
	// The held twin is the previous session's (possibly another
	// identity's): this session's resync GET is the only source (TWIN-010).
	dc.desired, dc.desiredVer, dc.reportedVer = nil, 0, 0
	go dc.loop(s)
	return false, nil
}

// close stops the loop; graceful sends DISCONNECT (CONN-022).
func (dc *deviceClient) close(graceful bool) {
	dc.mu.Lock()
	s := dc.sess
	dc.sess = nil
	if s != nil {
		s.graceful = graceful
	}
	dc.mu.Unlock()
	if s == nil {
		return
	}
	s.cancel()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		dc.fw.logf("W", "client loop did not stop within 10 s")
	}
	dc.mu.Lock()
	defer dc.mu.Unlock()
	reason := "client.close"
	if !graceful {
		reason = "client.close (no DISCONNECT)"
	}
	dc.setStateLocked(agentproto.ConnEvent{State: agentproto.StateIdle, Reason: reason})
}

// shutdown ends everything when the firmware stops (reset, power off): the
// TCP connection just dies, as on a rebooting board.
func (dc *deviceClient) shutdown() {
	dc.mu.Lock()
	dc.quiet = true
	s := dc.sess
	dc.sess = nil
	dc.mu.Unlock()
	if s == nil {
		return
	}
	s.graceful = false
	s.cancel()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
	}
}

// current returns the live connection, if any.
func (dc *deviceClient) current() *conn {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	return dc.cur
}

// backoff is the delay before attempt n (1-based): exponential from the
// initial delay, capped, minus up to jitterPct percent so that the gaps
// never line up exactly (RECON-001).
func backoff(cc connConfig, n int) time.Duration {
	d := cc.retryInitial
	for i := 1; i < n && d < cc.retryMax; i++ {
		d *= 2
	}
	d = min(d, cc.retryMax)
	if cc.jitterPct > 0 {
		d -= time.Duration(rand.Float64() * float64(cc.jitterPct) / 100 * float64(d))
	}
	return max(d, time.Millisecond)
}

// unrecoverable classifies a failed attempt (RECON-004): refused
// credentials or identity, and a server that fails TLS verification.
func unrecoverable(rc byte, err error) bool {
	switch rc {
	case 1, 2, 4, 5:
		return true
	}
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	return errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci)
}

// loop connects, keeps the connection and reconnects until the session ends.
func (dc *deviceClient) loop(s *session) {
	defer close(s.done)
	attempt := 0
	renewKind := ""
	var overlap *conn // reconnect-overlap: the old connection, closed after the next CONNACK
	defer func() {
		if overlap != nil {
			dc.drop(overlap, false)
		}
	}()
	for {
		if s.ctx.Err() != nil {
			return
		}
		select {
		case <-s.kick: // this attempt uses the new credentials anyway
		default:
		}
		cc, cerr := dc.snapshot()
		if cerr != nil {
			dc.setState(agentproto.ConnEvent{State: agentproto.StateStopped, Reason: cerr.Msg})
			return
		}
		cc = dc.connConfigFor(s, cc)
		if !dc.awaitClock(s, cc) { // CLOCK-001: UTC before TLS and tokens
			return
		}
		attempt++
		dc.setState(agentproto.ConnEvent{State: agentproto.StateConnecting, Attempt: attempt})
		tried := time.Now()
		c, session, exp, rc, err := dc.connect(s, cc)
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			reason := err.Error()
			if rc != 0 && rc != packets.ErrNetworkError { // 0xFE: no CONNACK came (paho)
				reason = fmt.Sprintf("CONNACK %d: %v", rc, err)
			}
			noBackoff := dc.on(DefNoBackoff)
			if (unrecoverable(rc, err) && !dc.useSecondaryCert(cc, rc) && !dc.on(DefRetryAfterAuth) && !dc.authRetried(cc, rc)) || dc.stopOnEarlyLoss(rc) || dc.boundsStopOnEarlyFIN(rc, err) {
				ev := agentproto.ConnEvent{State: agentproto.StateStopped, Reason: reason, Attempt: attempt}
				if dc.on(DefStopUnreported) {
					ev = agentproto.ConnEvent{State: agentproto.StateIdle} // defect: stops without saying why
				}
				dc.setState(ev)
				return
			}
			delay := dc.retryBackoff(cc, attempt)
			delay = dc.instantFailureFloor(cc, rc, tried, delay) // RECON-002
			if rc == 3 && !dc.on(DefIgnoreThrottling) {
				delay = max(delay, min(throttledMinBackoff, cc.retryMax))
			}
			if noBackoff {
				if attempt >= noBackoffMaxAttempts {
					dc.setState(agentproto.ConnEvent{State: agentproto.StateStopped, Attempt: attempt,
						Reason: fmt.Sprintf("gave up after %d attempts: %s", attempt, reason)})
					return
				}
				delay = noBackoffDelay
			}
			//mutate:agent report: the agent's conn.state backoff event; dc.state feeds only the agent's status
			dc.setState(agentproto.ConnEvent{State: agentproto.StateBackoff, Reason: reason, Attempt: attempt, NextMS: int(delay.Milliseconds())})
			if !sleepCtx(s.ctx, delay) {
				return
			}
			continue
		}
		attempt = 0
		s.connects++
		s.rses.connected()
		if overlap != nil {
			dc.drop(overlap, true)
			overlap = nil
		}
		// Subscriptions and the resync GET go out before "connected" is
		// reported and before operations may use the connection, so no
		// twin request precedes the SUBSCRIBE (TWIN-001).
		s.renewing = renewKind != ""
		get := dc.afterConnect(s, c, cc, session)
		dc.moduleSecondConnection(s, cc) // MOD-007
		dc.mu.Lock()
		dc.connects++
		dc.cur = c
		if !exp.IsZero() {
			dc.tokenExp = exp.Unix()
		}
		dc.setStateLocked(agentproto.ConnEvent{State: agentproto.StateConnected, Session: session})
		dc.mu.Unlock()
		if get != nil {
			go func() {
				dc.resync(s, c, cc, get)
				c.markTwinReady()
			}()
		} else {
			c.markTwinReady()
		}
		if renewKind != "" {
			ev := agentproto.CredsEvent{Kind: renewKind}
			if !exp.IsZero() {
				ev.Expiry = exp.Unix()
			}
			//mutate:agent report: the agent's creds event after a renewal; the renewal itself is on the wire
			dc.emit(agentproto.EvCreds, ev)
			renewKind = ""
		}
		// Renewal timer (RECON-006): reconnect with a fresh token at the
		// configured fraction of its lifetime, or (defect) only after it
		// has expired.
		var renew <-chan time.Time
		renewTimer := time.NewTimer(time.Hour)
		renewTimer.Stop()
		if !exp.IsZero() {
			// Renew when (1 - renewFraction) of the TTL is left.
			life := exp.Sub(dc.fw.rtc.Now())
			at := life - time.Duration((1-cc.renewFraction)*float64(cc.ttl))
			if dc.on(DefRenewLate) {
				at = life + time.Second
			}
			renewTimer.Reset(max(at, 0))
			renew = renewTimer.C
		}

		reason := ""
		select {
		case <-c.lost:
			reason = "connection lost"
		case <-s.ctx.Done():
			renewTimer.Stop()
			dc.drop(c, s.graceful && !dc.on(DefNoDisconnect))
			return
		case <-renew:
			renewKind = "sas-renewal"
			reason = "SAS token renewal"
		case k := <-s.kick:
			reason = "credentials rotated (" + k + ")"
		}
		renewTimer.Stop()
		dc.mu.Lock()
		if dc.cur == c {
			dc.cur = nil
		}
		dc.mu.Unlock()
		dc.failPending(c.gen)
		select {
		case <-c.lost:
			// Lost: back off before the next attempt (RECON-001).
			c.cli.Disconnect(0)
			if dc.stopAfterLoss(s, reason) {
				return
			}
			attempt = s.rses.lossAttempt(cc) // RECON-009: short-lived connections escalate
			delay := dc.retryBackoff(cc, attempt)
			if dc.on(DefNoBackoff) {
				delay = noBackoffDelay
			}
			delay, goOn := dc.afterLoss(s, delay)
			if !goOn {
				return
			}
			//mutate:agent report: the agent's conn.state backoff event; dc.state feeds only the agent's status
			dc.setState(agentproto.ConnEvent{State: agentproto.StateBackoff, Reason: reason, Attempt: attempt, NextMS: int(delay.Milliseconds())})
			if !sleepCtx(s.ctx, delay) {
				return
			}
		default:
			// Deliberate reconnect: DISCONNECT, then connect at once.
			if dc.on(DefReconnectOverlap) || renewKind != "" && cc.id.IsModule() && dc.on(DefModuleRenewOverlap) {
				overlap = c
			} else {
				dc.drop(c, !dc.on(DefNoDisconnect))
			}
			dc.setState(agentproto.ConnEvent{State: agentproto.StateConnecting, Reason: reason})
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// drop ends a connection: with DISCONNECT, or by closing TCP under paho.
func (dc *deviceClient) drop(c *conn, graceful bool) {
	c.markLost()
	if graceful {
		c.cli.Disconnect(250)
		return
	}
	if c.netConn != nil {
		_ = c.netConn.Close()
	}
	c.cli.Disconnect(0)
}

// username builds the CONNECT Username (CONN-006, PNP-001).
func (dc *deviceClient) username(cc connConfig) string {
	extra := url.Values{"DeviceClientType": {deviceClientType}}
	if cc.modelID != "" {
		extra.Set("model-id", cc.modelID)
	}
	u := iothub.FormatUsername(cc.host, cc.id, iothub.DefaultAPIVersion, extra)
	u = dc.moduleUsername(cc, u, extra) // MOD-002
	if dc.on(DefUsernameNoHost) {
		u = strings.TrimPrefix(u, cc.host+"/")
	}
	return u
}

// token builds a fresh SAS token from the firmware's RTC (CONN-007..010).
func (dc *deviceClient) token(cc connConfig) (string, time.Time, error) {
	now := dc.tokenClock()
	exp := now.Add(cc.ttl)
	if dc.on(DefTokenExpired) {
		exp = now.Add(-time.Hour)
		if exp.Unix() < 1 {
			exp = time.Unix(1, 0)
		}
	}
	key := cc.key
	if dc.on(DefTokenWrongKey) {
		key = wrongKey(key)
	}
	tok, err := iothub.NewSASToken(dc.moduleResource(cc, dc.resourceURI(cc)), key, exp, "")
	return tok, time.Unix(exp.Unix(), 0), err
}

// wrongKey derives a valid-looking key that is not the device key.
func wrongKey(key string) string {
	b, err := base64.StdEncoding.DecodeString(key)
	if err != nil || len(b) == 0 {
		b = []byte("hilrun")
	}
	out := make([]byte, len(b))
	for i := range b {
		out[i] = b[i] ^ 0x5a
	}
	return base64.StdEncoding.EncodeToString(out)
}

func (dc *deviceClient) willTopic(cc connConfig) string {
	if dc.on(DefWillWrongTopic) {
		return "devices/" + cc.id.DeviceID + "/messages/will"
	}
	var bag iothub.PropertyBag
	if cc.will != nil {
		for _, k := range sortedKeys(cc.will.Properties) {
			bag = append(bag, iothub.Property{Name: k, Value: cc.will.Properties[k]})
		}
	}
	return iothub.TelemetryTopic(cc.id, bag)
}

// connect makes one connection attempt.
func (dc *deviceClient) connect(s *session, cc connConfig) (c *conn, session bool, exp time.Time, rc byte, err error) {
	cc.modelID = dc.pnpModelID(s, cc.modelID)                // PNP-001
	username := dc.reconnectUsername(s, cc, dc.username(cc)) // defects_bounds_conn.go
	dc.reconnectPlainProbe(s, cc, []byte{0x10, 0x00})        // reconnect-tries-1883: a CONNECT header; the trap reads nothing
	password := ""
	if cc.authType == "sas" {
		password, exp, err = dc.token(cc)
		if err != nil {
			return nil, false, time.Time{}, 0, fmt.Errorf("SAS token: %w", err)
		}
		password = dc.moduleReconnectToken(s, cc, password) // defects_bounds_single.go
		password, exp = dc.reuseToken(s, cc, password, exp) // token-reuse-* defects
		password = dc.renewalToken(s, cc, password, exp)    // renewal-se-milliseconds
	}
	token := password
	password = dc.passwordDefects(cc, password)
	clientID := cc.id.ClientID()
	if dc.on(DefClientIDLowercase) {
		clientID = strings.ToLower(clientID)
	}
	clientID = dc.moduleClientID(cc, clientID)
	clientID = dc.boundsModuleClientID(cc, clientID) // MOD-001 with X.509
	tlsc := &tls.Config{ServerName: cc.host, MinVersion: tls.VersionTLS12, RootCAs: x509.NewCertPool()}
	for _, r := range cc.trust {
		tlsc.RootCAs.AddCert(r)
	}
	dc.clockTLS(tlsc, cc) // certificates are checked at the RTC's time
	dc.certTLS(tlsc, cc)
	dc.tlsDefects(tlsc, cc) // factory bundle; TLS defect switches
	if cc.cert != nil {
		cert := dc.reconnectCert(s, dc.moduleDeviceCert(cc, dc.factoryCert(dc.clientCert(cc.cert))))
		// Present the certificate whatever CAs the hub lists (thumbprint certificates are self-signed).
		tlsc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	dc.mu.Lock()
	dc.gen++
	c = &conn{gen: dc.gen, lost: make(chan struct{}), twinReady: make(chan struct{})}
	dc.mu.Unlock()
	var nmu sync.Mutex
	broker := &url.URL{Scheme: "ssl", Host: cc.addr}
	if cc.transport == "wss" {
		broker = &url.URL{Scheme: "wss", Host: cc.addr, Path: "/$iothub/websocket"}
	}
	// The callbacks outlive this call when it gives up (timeout, cancel):
	// they must not see the named result, which the error returns set to nil.
	cur := c
	o := paho.NewClientOptions().AddBroker(broker.String()).SetClientID(clientID).SetProtocolVersion(dc.wsProtocolVersion(cc, dc.protocolVersion())).
		SetCleanSession(cc.clean).SetAutoReconnect(false).SetConnectRetry(false).
		SetKeepAlive(dc.reconnectKeepAlive(s, dc.keepAlive(cc))).SetPingTimeout(dc.boundsPingTimeout(cc, dc.pingTimeout(cc))).
		SetConnectTimeout(connectTimeout).SetWriteTimeout(connectTimeout).SetOrderMatters(false).
		SetAutoAckDisabled(true).SetTLSConfig(tlsc).
		SetCredentialsProvider(func() (string, string) { return username, password }).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { dc.onMessage(cur, m) }).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			dc.fw.logf("W", "connection lost: %v", err)
			dc.noteTokenLost(s)
			cur.markLost()
		}).
		SetCustomOpenConnectionFn(func(u *url.URL, _ paho.ClientOptions) (net.Conn, error) {
			var nc net.Conn
			var err error
			if u.Scheme == "wss" {
				nc, err = paho.NewWebsocket(u.String(), tlsc, connectTimeout, nil, nil)
			} else {
				var addr string
				if addr, err = dc.hubDialAddr(s.ctx, cc, u.Host); err != nil {
					return nil, err
				}
				nc, err = dc.dial(addr, tlsc, cc.plainAddr)
			}
			if err == nil {
				nc = dc.keepAliveConn(nc, cc) // ping-skipped-when-receiving
				nmu.Lock()
				cur.netConn = nc
				nmu.Unlock()
			}
			return nc, err
		})
	if !cc.clean {
		o.SetStore(s.sessionStore())
		c.acks = s.acks
	}
	if dc.willDeclared(s, cc) {
		o.SetBinaryWill(dc.willTopic(cc), []byte(cc.will.Payload), 1, false)
	}
	cli := paho.NewClient(o)
	c.cli = cli
	tok := cli.Connect()
	select {
	case <-tok.Done():
	case <-time.After(connectTimeout + 5*time.Second):
		cli.Disconnect(0)
		return nil, false, exp, 0, errors.New("connect timed out")
	case <-s.ctx.Done():
		go func() { <-tok.Done(); cli.Disconnect(0) }()
		return nil, false, exp, 0, s.ctx.Err()
	}
	ct := tok.(*paho.ConnectToken)
	dc.noteToken(s, cc, token, exp, ct.ReturnCode())
	if err := tok.Error(); err != nil {
		return nil, false, exp, ct.ReturnCode(), err
	}
	nmu.Lock()
	defer nmu.Unlock()
	return c, ct.SessionPresent(), exp, 0, nil
}

// afterConnect restores subscriptions where the session is gone and sends
// the twin GET of the resync flow (CONN-017, TWIN-001, TWIN-010, RECON-008);
// it returns the pending GET, nil when none was sent.
func (dc *deviceClient) afterConnect(s *session, c *conn, cc connConfig, sessionPresent bool) *pendingTwin {
	if !sessionPresent {
		s.subAcked = false
	}
	needSub := !sessionPresent || !s.subAcked
	if dc.on(DefTrustSessionPresent) && sessionPresent {
		needSub = false // defect: an unacknowledged SUBSCRIBE taken as part of the session
	}
	if dc.on(DefNoResubscribe) && s.connects > 1 {
		needSub = false
	}
	if dc.on(DefCleanNoResubscribe) && cc.clean && s.connects > 1 {
		needSub = false // defect: subscriptions taken as client state (CONN-017)
	}
	needSub = dc.boundsNeedSub(s, cc, needSub)
	doResync := !(dc.on(DefNoTwinResync) && s.connects > 1)
	if s.renewing && dc.on(DefTwinNoResyncRenewal) {
		doResync = false // defect: the renewal path skips the twin resync
	}
	doResync = dc.boundsResync(s, doResync)
	var get *pendingTwin
	subLate := false
	if doResync && (dc.on(DefTwinGetBeforeSub) || needSub && s.connects > 1 && dc.on(DefTwinGetFirstReconnect)) {
		get, _ = dc.twinPublish(c, iothub.TwinGetTopic, nil)
		doResync = false
	}
	if needSub {
		filters := map[string]byte{iothub.TwinResponseFilter: 0, iothub.TwinDesiredFilter: 0}
		if dc.on(DefSubscribeWildcard) {
			filters["$iothub/methods/POST/+"] = 0
		} else if dc.on(DefMethodSubPerName) {
			dc.fw.nvs.mu.Lock()
			for name := range dc.fw.nvs.Methods {
				filters["$iothub/methods/POST/"+name+"/#"] = 0
			}
			dc.fw.nvs.mu.Unlock()
		} else {
			filters[iothub.MethodsFilter] = 0
		}
		if !cc.id.IsModule() && !dc.on(DefNoC2DSubscribe) {
			filters[iothub.C2DFilter(cc.id.DeviceID)] = 1 // modules have none (MOD-010)
		}
		dc.extraFilters(filters)
		dc.moduleFilters(cc, filters) // MOD-005, MOD-009, MOD-010
		if dc.on(DefX509TwinOnly) {
			x509TwinOnly(cc, filters) // defects_bounds_more.go
		}
		if _, ok := filters[iothub.TwinDesiredFilter]; ok && dc.on(DefTwinDesiredSubLate) {
			delete(filters, iothub.TwinDesiredFilter)
			subLate = true
		}
		tok := c.cli.SubscribeMultiple(filters, nil)
		// A connection lost before its SUBACK must not hold the client for
		// the whole SUBACK timeout (close and reconnect wait on this).
		t := time.NewTimer(subackTimeout)
		select {
		case <-tok.Done():
			if err := tok.Error(); err != nil {
				dc.fw.logf("W", "subscribe: %v", err)
			} else {
				s.subAcked = true
			}
		case <-c.lost:
			dc.fw.logf("W", "connection lost before SUBACK")
		case <-t.C:
			dc.fw.logf("W", "no SUBACK within %s", subackTimeout)
		}
		t.Stop()
	}
	if doResync {
		get, _ = dc.twinPublish(c, iothub.TwinGetTopic, nil)
	}
	if subLate { // twin-desired-subscribe-late: after the GET (TWIN-010)
		c.cli.Subscribe(iothub.TwinDesiredFilter, 0, nil)
	}
	return get
}

// resync fetches the whole twin after a connect (TWIN-010), retrying 429
// and 5xx answers with backoff (TWIN-005).
func (dc *deviceClient) resync(s *session, c *conn, cc connConfig, first *pendingTwin) {
	for try := 1; try <= resyncAttempts; try++ {
		p := first
		first = nil
		if p == nil {
			var err *agentproto.Error
			if p, err = dc.twinPublish(c, iothub.TwinGetTopic, nil); err != nil {
				return
			}
		}
		r, aerr := dc.twinAwait(s.ctx, p, cc.twinTimeout)
		if aerr == nil && r.status >= 200 && r.status < 300 {
			res, err := dc.applyTwinDocument(r)
			if err != nil {
				dc.fw.logf("E", "twin resync: %v", err)
				return
			}
			dc.otaAfterResync(s, cc) // every start or wake (OTA-001)
			//mutate:agent report: the agent's resync event, and its order against the OTA check
			dc.emit(agentproto.EvResync, agentproto.ResyncEvent{DesiredVersion: res.DesiredVersion, ReportedVersion: res.ReportedVersion})
			return
		}
		if aerr != nil && errors.Is(r.err, errLost) || s.ctx.Err() != nil {
			return
		}
		d := backoff(cc, try) // no answer in time (TWIN-019)
		if aerr == nil {
			var retry bool
			if d, retry = dc.twinRetryDelay(cc, r.status, try); !retry || dc.get429Final(r.status) {
				dc.fw.logf("E", "twin resync answered %d; not retried", r.status)
				return
			}
		}
		select {
		case <-c.lost:
			return
		case <-s.ctx.Done():
			return
		case <-time.After(d):
		}
	}
}

// twinRetryAttempts bounds the tries of one twin request answered 429 or
// 5xx (TWIN-005).
const twinRetryAttempts = 6

// twinRetryDelay says whether a twin request answered with status is tried
// again and after how long (TWIN-005): the status segment is an integer;
// 429 and every 5xx are retried with the backoff of attempt try, after 429
// no sooner than the throttled minimum (RECON-003, capped at the retry
// maximum); any other status is final.
func (dc *deviceClient) twinRetryDelay(cc connConfig, status, try int) (time.Duration, bool) {
	throttled, server := status == 429, status >= 500 && status <= 599
	if dc.on(DefTwinStatusAsText) {
		// Defect: the segment is classified as text by its first character.
		throttled, server = false, strconv.Itoa(status)[0] == '5'
	}
	if dc.on(DefTwin5xxGivesUp) {
		server = false
	}
	if dc.on(DefTwin5xxListed) {
		server = twinRetriedServerError(status) // defect: a fixed list of codes
	}
	if cc.id.IsModule() && dc.on(DefModuleTwinErrorFinal) {
		throttled, server = false, false // defect module-twin-error-final
	}
	if !throttled && !server {
		return 0, false
	}
	if dc.on(DefTwinRetryImmediately) {
		return 0, true
	}
	d := backoff(cc, try)
	if throttled && !dc.on(DefTwin429NormalBackoff) {
		d = max(d, min(throttledMinBackoff, cc.retryMax))
	}
	return d, true
}

// twinAwaitRetrying waits for the answer to p and, while it is 429 or 5xx,
// sends the request again (fresh $rid, current connection) after
// twinRetryDelay, at most twinRetryAttempts tries in all (TWIN-005). It
// returns the last answer.
func (dc *deviceClient) twinAwaitRetrying(ctx context.Context, cc connConfig, p *pendingTwin, topicOf func(string) string, body []byte) (twinResp, *agentproto.Error) {
	for try := 1; ; try++ {
		r, err := dc.twinAwait(ctx, p, cc.twinTimeout)
		if err != nil || try >= twinRetryAttempts {
			return r, err
		}
		d, retry := dc.twinRetryDelay(cc, r.status, try)
		if !retry || body == nil && dc.get429Final(r.status) { // a GET has no body
			return r, nil
		}
		dc.fw.logf("W", "twin request $rid=%s answered %d; retrying in %s", p.rid, r.status, d.Round(time.Millisecond))
		if !sleepCtx(ctx, d) {
			return r, nil
		}
		c := dc.current()
		if c == nil {
			return r, agentproto.Errorf(agentproto.ErrNotConnected, "no hub connection for the retry of $rid=%s", p.rid)
		}
		if p, err = dc.twinPublish(c, topicOf, body); err != nil {
			return r, err
		}
	}
}

// twinPublish sends a twin request with a fresh $rid (TWIN-002, TWIN-003, TWIN-006).
func (dc *deviceClient) twinPublish(c *conn, topicOf func(string) string, body []byte) (*pendingTwin, *agentproto.Error) {
	dc.mu.Lock()
	dc.ridSeq++
	seq := dc.ridSeq
	rid := strconv.FormatUint(dc.ridSeq, 10)
	p := &pendingTwin{rid: rid, gen: c.gen, sent: time.Now(), ch: make(chan twinResp, 1)}
	dc.pending[rid] = p
	dc.order = append(dc.order, rid)
	dc.mu.Unlock()
	topic := topicOf(rid)
	if dc.on(DefTwinRIDZeroNone) {
		topic = ridOmitted(topic, seq, rid) // defects_bounds_more.go
	}
	if body == nil && strings.HasPrefix(topic, "$iothub/twin/GET/") && dc.on(DefTwinGetWithBody) {
		body = []byte("{}")
	}
	tok := c.cli.Publish(topic, 0, false, body)
	// A connection lost before the request is written must not hold the
	// caller (the reconnect loop sends the resync GET) for connectTimeout.
	t := time.NewTimer(connectTimeout)
	defer t.Stop()
	sent := false
	select {
	case <-tok.Done():
		sent = tok.Error() == nil
	case <-c.lost:
	case <-t.C:
	}
	if !sent {
		dc.forget(rid)
		return nil, agentproto.Errorf(agentproto.ErrNotConnected, "twin request not sent: %v", tok.Error())
	}
	return p, nil
}

func (dc *deviceClient) forget(rid string) {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	dc.forgetLocked(rid)
}

func (dc *deviceClient) forgetLocked(rid string) {
	delete(dc.pending, rid)
	for i, r := range dc.order {
		if r == rid {
			dc.order = append(dc.order[:i], dc.order[i+1:]...)
			break
		}
	}
}

// twinAwait waits for the response to p, bounded (TWIN-019).
func (dc *deviceClient) twinAwait(ctx context.Context, p *pendingTwin, timeout time.Duration) (twinResp, *agentproto.Error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	expired := t.C
	if dc.on(DefTwinWaitForever) {
		expired = nil // defect: no limit on the wait (TWIN-019)
	}
	select {
	case r := <-p.ch:
		if r.err != nil {
			return r, agentproto.Errorf(agentproto.ErrNotConnected, "twin request $rid=%s: %v", p.rid, r.err)
		}
		return r, nil
	case <-expired:
		dc.forget(p.rid)
		return twinResp{}, agentproto.Errorf(agentproto.ErrTimeout, "no twin response for $rid=%s within %s", p.rid, timeout)
	case <-ctx.Done():
		dc.forget(p.rid)
		return twinResp{err: ctx.Err()}, agentproto.Errorf(agentproto.ErrTimeout, "twin request $rid=%s: %v", p.rid, ctx.Err())
	}
}

// failPending completes requests sent on a connection that is gone.
func (dc *deviceClient) failPending(gen uint64) {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	for rid, p := range dc.pending {
		if p.gen == gen {
			p.ch <- twinResp{err: errLost}
			dc.forgetLocked(rid)
		}
	}
}

// sortedKeys returns map keys in order (deterministic property bags).
func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}
