package hub

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/hilrun/hilrun/rig/iothub"
)

// IoT Hub fault injection over telemetry (device-sdk-behaviours §5): an
// allow-listed hub reads these application properties on D2C messages.
const (
	FaultPropType     = "AzIoTHub_FaultOperationType"
	FaultPropReason   = "AzIoTHub_FaultOperationCloseReason"
	FaultPropDelay    = "AzIoTHub_FaultOperationDelayInSecs"
	FaultPropDuration = "AzIoTHub_FaultOperationDurationInSecs"
)

// Fault operation types IoT Hub accepts over MQTT.
const (
	FaultKillTcp               = "KillTcp"
	FaultShutDownMqtt          = "ShutDownMqtt"
	FaultInvokeThrottling      = "InvokeThrottling"
	FaultInvokeMaxMessageQuota = "InvokeMaxMessageQuota"
	FaultInvokeAuthError       = "InvokeAuthError"
)

type refusal struct {
	code   packets.Code
	until  time.Time
	reason string
}

type faultState struct {
	mu     sync.Mutex
	refuse map[string]refusal // by ClientID; "" applies to every identity
	// closeAfter: close-after-CONNECT faults (KillTcp, ShutDownMqtt for
	// their duration), by ClientID.
	closeAfter map[string]closeFault
	silent     map[string]bool // by ClientID
	// twinFail: the next twin requests of an identity answered with an
	// error status (TWIN-005), by ClientID.
	twinFail map[string]twinFailure
	// cutAtSubscribe: identities whose next SUBSCRIBE is answered by a
	// TCP reset instead of a SUBACK (RECON-010), by ClientID.
	cutAtSubscribe map[string]bool
	// twinDelay: identities whose next twin answer is held back for the
	// given time (TWIN-008), by ClientID.
	twinDelay map[string]time.Duration
	// twinHold: identities whose next twin answers are held back until
	// a number of them is ready, then sent together (TWIN-003), by ClientID.
	twinHold map[string]*twinHold
	timers   []*time.Timer
}

// twinHold is a pending HoldTwinAnswers fault.
type twinHold struct {
	n       int
	reverse bool
	conn    *conn // the connection the held answers belong to
	held    []packets.Packet
}

// twinFailure is a pending FailTwinRequests fault.
type twinFailure struct {
	status int
	left   int
}

// RefuseConnects makes the hub answer CONNECTs from id (or everyone, when
// id is the zero Identity) with the given CONNACK return code for d
// (RECON-001..004 specs: 3 server unavailable, 5 not authorized, ...).
// d <= 0 lifts every connect fault of id, a close-after-CONNECT fault
// (KillTcp, ShutDownMqtt) included.
func (h *Hub) RefuseConnects(id iothub.Identity, returnCode byte, d time.Duration) {
	code := packets.Code{Code: returnCode, Reason: "refused by fault injection"}
	switch returnCode {
	case 1:
		code = packets.ErrUnsupportedProtocolVersion
	case 2:
		code = packets.ErrClientIdentifierNotValid
	case 3:
		code = packets.ErrServerUnavailable
	case 4:
		code = packets.ErrMalformedUsername
	case 5:
		code = packets.ErrBadUsernameOrPassword
	}
	h.faults.mu.Lock()
	if h.faults.refuse == nil {
		h.faults.refuse = map[string]refusal{}
	}
	h.faults.refuse[id.ClientID()] = refusal{code: code, until: time.Now().Add(d),
		reason: fmt.Sprintf("CONNACK %d by fault injection for %s", returnCode, d)}
	if d <= 0 {
		delete(h.faults.closeAfter, id.ClientID())
	}
	h.faults.mu.Unlock()
	h.trace.add(Entry{ClientID: id.ClientID(), Dir: DirEvent, Type: EventFault,
		Reason: fmt.Sprintf("refusing CONNECT with return code %d for %s", returnCode, d)})
}

// FailTwinRequests makes the hub answer the next n twin requests of id (GET
// and reported PATCH alike, on any connection) with status on
// $iothub/twin/res/{status}/?$rid={rid}, as IoT Hub does when it throttles
// (429) or fails internally (500, 503): the twin is not changed and the
// body is an IoT Hub error object. Status must be 4xx or 5xx; n <= 0 clears
// the fault. TWIN-005 specs (and RECON-003 for 429) use it: the reference
// hub's throttling (Limits.TwinOpsPerSecond) cannot be switched on for one
// identity at run time.
func (h *Hub) FailTwinRequests(id iothub.Identity, status int, n int) error {
	if status < 400 || status > 599 {
		return fmt.Errorf("FailTwinRequests: status %d is not an error status (4xx or 5xx)", status)
	}
	h.faults.mu.Lock()
	if h.faults.twinFail == nil {
		h.faults.twinFail = map[string]twinFailure{}
	}
	if n > 0 {
		h.faults.twinFail[id.ClientID()] = twinFailure{status: status, left: n}
	} else {
		delete(h.faults.twinFail, id.ClientID())
	}
	h.faults.mu.Unlock()
	h.trace.add(Entry{ClientID: id.ClientID(), Dir: DirEvent, Type: EventFault, Requirement: "TWIN-005",
		Reason: fmt.Sprintf("answering the next %d twin requests with status %d", max(n, 0), status)})
	return nil
}

// twinFault takes one pending FailTwinRequests answer for c's identity: the
// status and how many remain after this one.
func (h *Hub) twinFault(c *conn) (status, left int, ok bool) {
	key := c.identity.ClientID()
	h.faults.mu.Lock()
	defer h.faults.mu.Unlock()
	f, ok := h.faults.twinFail[key]
	if !ok {
		return 0, 0, false
	}
	f.left--
	if f.left <= 0 {
		delete(h.faults.twinFail, key)
	} else {
		h.faults.twinFail[key] = f
	}
	return f.status, f.left, true
}

// connectFault reports an active refusal for id.
func (h *Hub) connectFault(id iothub.Identity) (packets.Code, string, bool) {
	h.faults.mu.Lock()
	defer h.faults.mu.Unlock()
	now := time.Now()
	for _, key := range []string{id.ClientID(), ""} {
		if r, ok := h.faults.refuse[key]; ok {
			if now.Before(r.until) {
				return r.code, r.reason, true
			}
			delete(h.faults.refuse, key)
		}
	}
	return packets.Code{}, "", false
}

// CutAtNextSubscribe arms a one-shot rig fault: the next SUBSCRIBE id
// sends is read and recorded, then its connection is reset (TCP RST, no
// SUBACK). RECON-010 asks a device to survive an abrupt close at any point
// (002 L13767, L16694-16698, "RST at every packet boundary"); a close
// between SUBSCRIBE and SUBACK is the boundary a byte-count cut in the
// proxy cannot aim at, because TLS record sizes differ between clients.
// on false disarms it.
func (h *Hub) CutAtNextSubscribe(id iothub.Identity, on bool) {
	h.faults.mu.Lock()
	defer h.faults.mu.Unlock()
	if h.faults.cutAtSubscribe == nil {
		h.faults.cutAtSubscribe = map[string]bool{}
	}
	if on {
		h.faults.cutAtSubscribe[id.ClientID()] = true
	} else {
		delete(h.faults.cutAtSubscribe, id.ClientID())
	}
}

// DelayNextTwinAnswer arms a one-shot rig fault: the hub's next answer to
// a twin request of id goes out d late (IoT Hub's answer time is not
// documented; a slow one is normal). TWIN-008: a device must take success
// from the 2xx answer on the request's $rid, so it cannot have reported
// success before that answer left the hub.
func (h *Hub) DelayNextTwinAnswer(id iothub.Identity, d time.Duration) {
	h.faults.mu.Lock()
	if h.faults.twinDelay == nil {
		h.faults.twinDelay = map[string]time.Duration{}
	}
	if d > 0 {
		h.faults.twinDelay[id.ClientID()] = d
	} else {
		delete(h.faults.twinDelay, id.ClientID())
	}
	h.faults.mu.Unlock()
	h.trace.add(Entry{ClientID: id.ClientID(), Dir: DirEvent, Type: EventFault, Requirement: "TWIN-008",
		Reason: fmt.Sprintf("the next twin answer goes out %s late", d)})
}

// HoldTwinAnswers arms a one-shot rig fault: the hub's next n answers to
// twin requests of id are held back until the n-th is ready, then all are
// sent at once, in the order of the requests or (reverse) newest first.
// IoT Hub documents no order or timing for twin answers, so a device must
// have several requests outstanding and pair each answer with its request
// by $rid alone (TWIN-003, whose evidence is two overlapping requests
// answered in reverse order). n <= 1 disarms it; answers held when it is
// disarmed go out at once, in order.
func (h *Hub) HoldTwinAnswers(id iothub.Identity, n int, reverse bool) {
	h.faults.mu.Lock()
	if h.faults.twinHold == nil {
		h.faults.twinHold = map[string]*twinHold{}
	}
	var release []packets.Packet
	var to *conn
	if old := h.faults.twinHold[id.ClientID()]; old != nil {
		release, to = old.held, old.conn
	}
	if n > 1 {
		h.faults.twinHold[id.ClientID()] = &twinHold{n: n, reverse: reverse}
	} else {
		delete(h.faults.twinHold, id.ClientID())
	}
	h.faults.mu.Unlock()
	order := "in request order"
	if reverse {
		order = "newest first"
	}
	h.trace.add(Entry{ClientID: id.ClientID(), Dir: DirEvent, Type: EventFault, Requirement: "TWIN-003",
		Reason: fmt.Sprintf("the next %d twin answers are held until all are ready, then sent %s", max(n, 0), order)})
	for _, pk := range release {
		_ = h.send(to, pk)
	}
}

// holdTwinAnswer takes pk into an armed HoldTwinAnswers: it returns
// the answers to send now (none while the fault is still collecting) and
// whether pk was taken.
func (h *Hub) holdTwinAnswer(c *conn, pk packets.Packet) ([]packets.Packet, bool) {
	h.faults.mu.Lock()
	defer h.faults.mu.Unlock()
	hold := h.faults.twinHold[c.clientID]
	if hold == nil {
		return nil, false
	}
	if hold.conn != c {
		// A new connection: answers held for an earlier one are not its.
		hold.conn, hold.held = c, nil
	}
	hold.held = append(hold.held, pk)
	if len(hold.held) < hold.n {
		return nil, true
	}
	delete(h.faults.twinHold, c.clientID)
	out := hold.held
	if hold.reverse {
		slices.Reverse(out)
	}
	return out, true
}

// takeTwinDelay consumes an armed DelayNextTwinAnswer.
func (h *Hub) takeTwinDelay(c *conn) time.Duration {
	h.faults.mu.Lock()
	defer h.faults.mu.Unlock()
	d := h.faults.twinDelay[c.clientID]
	delete(h.faults.twinDelay, c.clientID)
	return d
}

// takeSubscribeCut reports (and consumes) an armed CutAtNextSubscribe.
func (h *Hub) takeSubscribeCut(c *conn) bool {
	h.faults.mu.Lock()
	defer h.faults.mu.Unlock()
	if !h.faults.cutAtSubscribe[c.clientID] {
		return false
	}
	delete(h.faults.cutAtSubscribe, c.clientID)
	return true
}

// Drop closes the identity's live connection: with rst a TCP reset, without
// it a plain close. IoT Hub sends no DISCONNECT either way.
func (h *Hub) Drop(id iothub.Identity, rst bool, reason string) error {
	c := h.activeConn(context.Background(), id)
	if c == nil {
		return fmt.Errorf("%s: %w", id, ErrDeviceOffline)
	}
	if reason == "" {
		reason = "dropped by the service API"
	}
	h.fault(c, "", reason)
	h.closeConn(c, reason, "", rst)
	return nil
}

// resetTCP aborts the TCP connection under nc with a reset, before TLS
// could send its close_notify alert: a killed TCP connection (KillTcp, a
// Drop with rst) carries no TLS goodbye, so the device reads ECONNRESET,
// not a clean end of stream.
func resetTCP(nc net.Conn) {
	for nc != nil {
		switch v := nc.(type) {
		case *net.TCPConn:
			_ = v.SetLinger(0)
			_ = v.Close()
			return
		case *hubConn:
			nc = v.Conn
		case *peekedConn: // the TLS listener's sniffed connection
			nc = v.Conn
		case *tls.Conn:
			nc = v.NetConn()
		case *wsConn:
			nc = v.ws.UnderlyingConn()
		default:
			return
		}
	}
}

// SetSilent makes the hub stop answering id at the application level while
// keeping the connection open: no PUBACK, PINGRESP, SUBACK or replies go out
// (only keep-alive can detect it, RECON-013).
func (h *Hub) SetSilent(id iothub.Identity, silent bool) {
	h.faults.mu.Lock()
	if h.faults.silent == nil {
		h.faults.silent = map[string]bool{}
	}
	h.faults.silent[id.ClientID()] = silent
	h.faults.mu.Unlock()
	// A pending connection is waited for: its CONNACK must still go out,
	// and OnSessionEstablished applies the silent flag after it.
	c := h.activeConn(context.Background(), id)
	if c != nil {
		if hc, ok := c.netConn.(*hubConn); ok {
			hc.silent.Store(silent)
		}
	}
	h.trace.add(Entry{ClientID: id.ClientID(), Dir: DirEvent, Type: EventFault, Reason: fmt.Sprintf("silent=%v", silent)})
}

func (h *Hub) faultSilent(c *conn) bool {
	if hc, ok := c.netConn.(*hubConn); ok && hc.silent.Load() {
		return true
	}
	h.faults.mu.Lock()
	defer h.faults.mu.Unlock()
	return h.faults.silent[c.clientID]
}

func (h *Hub) fault(c *conn, req, reason string) {
	h.trace.add(Entry{ConnID: c.id, ClientID: c.clientID, Remote: c.remote, Dir: DirEvent, Type: EventFault, Requirement: req, Reason: reason})
}

// Fault kinds as IoT Hub raises them over MQTT. The seeds do not document
// fault injection itself; what is known comes from the official SDKs' e2e
// tests (shared/research/device-sdk-behaviours.md §5): the timeline is
// normal → request → delay → faulted for the duration → normal, and with
// MQTT "throttling, quota and auth faults get disconnects (not error
// messages)". 002 L13767 says the same of the service in general: "AMQP
// returns errors for many conditions, while MQTT terminates the
// connection". What the hub does with a reconnect *during* the duration is
// documented nowhere; each kind's choice below says why.
type faultKind struct {
	// rst: the faulted connection ends with a TCP reset, else a FIN.
	rst bool
	// refuse: during the duration a reconnect is refused with this CONNACK
	// return code (0: not refused with a code).
	refuse byte
	// closeAfterConnect: during the duration a reconnect is closed right
	// after its CONNECT, without a CONNACK (RST when rst).
	closeAfterConnect bool
	req               string // the requirement whose behaviour the fault exercises
}

var faultKinds = map[string]faultKind{
	// KillTcp: the TCP connection is reset ("boom", ungraceful; research
	// §5 "For KillTcp, RST the socket"). A transient fault (RECON-011: retry
	// as for any temporary fault, 002 L35847-35848): during the duration
	// every reconnect is reset right after its CONNECT, no CONNACK — MQTT
	// terminates rather than returns an error (002 L13767), and the catalog's
	// RECON-011 evidence is "the hub closes the connection without a reason
	// right after CONNECT". Not a CONNACK 3: that code is throttling
	// (RECON-003), which a transient fault is not.
	FaultKillTcp: {rst: true, closeAfterConnect: true, req: "RECON-011"},
	// ShutDownMqtt: the same, closed gracefully ("byebye"; a FIN: MQTT 3.1.1
	// has no server DISCONNECT, §3.14), and reconnects during the duration
	// closed the same way.
	FaultShutDownMqtt: {closeAfterConnect: true, req: "RECON-011"},
	// InvokeThrottling: a disconnect (research §5), then reconnects refused
	// for the duration. IoT Hub throttles with 429 ThrottlingException (002
	// L13409, L13960); the docs give no CONNACK code for it. MQTT 3.1.1
	// §3.2.2.3 0x03 "Server unavailable" ("the MQTT service is unavailable")
	// is the one code meaning "not now, try later", and the catalog reads
	// CONNACK 0x03 as throttling (RECON-003 evidence).
	FaultInvokeThrottling: {refuse: 3, req: "RECON-003"},
	// InvokeMaxMessageQuota: a disconnect, then refusals for the duration.
	// The quota error (403002 IoTHubQuotaExceeded) has no documented CONNACK
	// code either; 0x03 is again the only "service unavailable to you now"
	// code (0x05 would say the credentials are wrong, which they are not).
	FaultInvokeMaxMessageQuota: {refuse: 3, req: "RECON-003"},
	// InvokeAuthError: a disconnect, then reconnects refused as not
	// authorized (0x05) for the duration: IoT Hub refuses credentials it
	// does not accept with "Connection refused: Not authorized" (002 L8716;
	// 401003 IoTHubUnauthorized, 002 L35845), an unrecoverable error for the
	// device (002 L16708, RECON-004).
	FaultInvokeAuthError: {refuse: 5, req: "RECON-004"},
}

// faultFromTelemetry acts on IoT Hub's fault-injection properties (see
// faultKinds): after the delay the connection is reset (KillTcp) or closed
// (every other kind), then for the duration reconnects are closed after
// their CONNECT (KillTcp, ShutDownMqtt) or refused with the kind's CONNACK
// code (throttling and quota 0x03, auth 0x05). The fault message itself is
// handled like any telemetry (PUBACK included); with a delay of 0 the close
// may overtake the PUBACK, as with IoT Hub (research §5).
func (h *Hub) faultFromTelemetry(c *conn, props iothub.PropertyBag) {
	typ, ok := props.Get(FaultPropType)
	if !ok {
		return
	}
	secs := func(name string, def int) time.Duration {
		if v, ok := props.Get(name); ok {
			if n, err := strconv.Atoi(v); err == nil && n >= 0 {
				return time.Duration(n) * time.Second
			}
		}
		return time.Duration(def) * time.Second
	}
	delay := secs(FaultPropDelay, 1)
	duration := secs(FaultPropDuration, 5)
	kind, known := faultKinds[typ]
	if !known {
		h.fault(c, "", fmt.Sprintf("unknown fault type %q ignored", typ))
		return
	}
	h.fault(c, kind.req, fmt.Sprintf("fault %s requested: delay %s, duration %s", typ, delay, duration))
	t := time.AfterFunc(delay, func() {
		select {
		case <-h.closed:
			return
		default:
		}
		switch {
		case kind.refuse != 0:
			h.RefuseConnects(c.identity, kind.refuse, duration)
		case kind.closeAfterConnect:
			h.closeAfterConnect(c.identity, typ, kind, duration)
		}
		h.closeConn(c, "fault injection: "+typ, kind.req, kind.rst)
	})
	h.faults.mu.Lock()
	h.faults.timers = append(h.faults.timers, t)
	h.faults.mu.Unlock()
}

// closeFault is an active close-after-CONNECT fault of one identity.
type closeFault struct {
	typ   string
	kind  faultKind
	until time.Time
}

// closeAfterConnect makes the hub close every connection of id right after
// its CONNECT (accepted by the CONNECT rules) for d, without a CONNACK.
func (h *Hub) closeAfterConnect(id iothub.Identity, typ string, kind faultKind, d time.Duration) {
	h.faults.mu.Lock()
	if h.faults.closeAfter == nil {
		h.faults.closeAfter = map[string]closeFault{}
	}
	h.faults.closeAfter[id.ClientID()] = closeFault{typ: typ, kind: kind, until: time.Now().Add(d)}
	h.faults.mu.Unlock()
	how := "closing"
	if kind.rst {
		how = "resetting"
	}
	h.trace.add(Entry{ClientID: id.ClientID(), Dir: DirEvent, Type: EventFault, Requirement: kind.req,
		Reason: fmt.Sprintf("fault %s: %s every connection right after its CONNECT, without CONNACK, for %s", typ, how, d)})
}

// activeCloseFault reports an active close-after-CONNECT fault for id.
func (h *Hub) activeCloseFault(id iothub.Identity) (closeFault, bool) {
	h.faults.mu.Lock()
	defer h.faults.mu.Unlock()
	f, ok := h.faults.closeAfter[id.ClientID()]
	if !ok {
		return f, false
	}
	if !time.Now().Before(f.until) {
		delete(h.faults.closeAfter, id.ClientID())
		return f, false
	}
	return f, true
}

// faultHooks apply the close-after-CONNECT faults. Registered after the
// hub's own hooks, so its OnConnect runs once the CONNECT passed the hub's
// CONNECT rules (a refused CONNECT gets its CONNACK code first); returning
// an error there makes mochi end the connection without a CONNACK.
type faultHooks struct {
	mqtt.HookBase
	h *Hub
}

func (k *faultHooks) ID() string { return "hilrun-iothub-faults" }

func (k *faultHooks) Provides(b byte) bool { return b == mqtt.OnConnect }

func (k *faultHooks) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	h := k.h
	c := h.connOf(cl)
	if c == nil || !c.authed {
		return nil
	}
	f, ok := h.activeCloseFault(c.identity)
	if !ok {
		return nil
	}
	how := "closed"
	if f.kind.rst {
		how = "reset"
		resetTCP(c.netConn)
	}
	reason := fmt.Sprintf("fault injection: %s: %s right after CONNECT, no CONNACK (%s of the fault left)", f.typ, how, time.Until(f.until).Round(time.Millisecond))
	h.trace.add(Entry{ConnID: c.id, ClientID: c.clientID, Remote: c.remote, Dir: DirEvent, Type: EventConnClosed, Reason: reason, Requirement: f.kind.req})
	h.deleteConn(cl)
	return errors.New(reason)
}
