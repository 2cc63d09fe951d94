package hub

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

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
	silent map[string]bool    // by ClientID
	// twinFail: the next twin requests of an identity answered with an
	// error status (TWIN-005), by ClientID.
	twinFail map[string]twinFailure
	timers   []*time.Timer
}

// twinFailure is a pending FailTwinRequests fault.
type twinFailure struct {
	status int
	left   int
}

// RefuseConnects makes the hub answer CONNECTs from id (or everyone, when
// id is the zero Identity) with the given CONNACK return code for d
// (RECON-001..004 specs: 3 server unavailable, 5 not authorized, ...).
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

// faultFromTelemetry acts on IoT Hub's fault-injection properties: after
// the delay, KillTcp resets the TCP connection, ShutDownMqtt closes it
// cleanly, and throttling, quota and auth faults disconnect; for the
// duration, reconnects are refused (0x03 server unavailable, or 0x05 for
// auth errors).
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
	var rst bool
	refuseCode := byte(3)
	switch typ {
	case FaultKillTcp:
		rst = true
	case FaultShutDownMqtt:
	case FaultInvokeThrottling, FaultInvokeMaxMessageQuota:
	case FaultInvokeAuthError:
		refuseCode = 5
	default:
		h.fault(c, "", fmt.Sprintf("unknown fault type %q ignored", typ))
		return
	}
	h.fault(c, "", fmt.Sprintf("fault %s requested: delay %s, duration %s", typ, delay, duration))
	t := time.AfterFunc(delay, func() {
		select {
		case <-h.closed:
			return
		default:
		}
		h.RefuseConnects(c.identity, refuseCode, duration)
		h.closeConn(c, "fault injection: "+typ, "", rst)
	})
	h.faults.mu.Lock()
	h.faults.timers = append(h.faults.timers, t)
	h.faults.mu.Unlock()
}
