package sim

import (
	"fmt"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/hilrun/hilrun/devicefw/agentproto"
)

// Defect switches added for the RECON session specs. Each needs a row in
// DEFECTS.md (section "RECON session specs") and an implementation at the point
// in the client where the rule is kept.
const (
	DefTakeoverWar           = "takeover-war"
	DefDropInflight          = "drop-inflight-on-reconnect"
	DefCleanSessionAfterLoss = "clean-session-after-loss"
	DefStopOnServerClose     = "stop-on-server-close"
	DefIgnoreThrottling      = "ignore-throttling"
	DefStopUnreported        = "stop-unreported"
	DefTrustSessionPresent   = "trust-session-present"
)

// reconSessionDefects lists them; see Defects.
var reconSessionDefects = []Defect{
	{DefTakeoverWar, "RECON-009", "after the hub closes an established connection (as it does when a newer connection with the same identity takes over) the device reconnects at once, every time, without backoff; bounded: 40 such reconnects per client.open"},
	{DefDropInflight, "TEL-004", "unacknowledged QoS 1 messages are discarded when the connection is lost: nothing is sent again after the reconnect"},
	{DefCleanSessionAfterLoss, "C2D-006", "after an unexpected loss the device reconnects with CleanSession 1, so the hub discards the persistent session and the C2D backlog queued meanwhile"},
	{DefStopOnServerClose, "RECON-011", "a connection the hub closes within 5 s of its CONNACK is taken as a refusal: the client stops instead of retrying"},
	{DefStopUnreported, "RECON-004", "after an unrecoverable refusal (CONNACK not authorized) the client stops but reports only \"idle\" with no reason: nobody learns why it went quiet"},
	{DefTrustSessionPresent, "RECON-010", "a start-up SUBSCRIBE whose connection was reset before the SUBACK is taken as subscribed once the next CONNACK says session present: the device carries on without C2D, methods and twin subscriptions"},
	{DefIgnoreThrottling, "RECON-003", "after a throttling refusal (CONNACK 3) the next attempt follows the normal backoff instead of the throttled minimum"},
}

const (
	// takeoverWarMax bounds takeover-war's immediate reconnects per session.
	takeoverWarMax = 40
	// serverCloseStopWithin is how young a connection must be for
	// stop-on-server-close to treat its loss as a refusal.
	serverCloseStopWithin = 5 * time.Second
)

// reconSessionState is what one client.open … client.close lifetime keeps
// for the session-continuity rules and their defects.
type reconSessionState struct {
	upAt      time.Time // when the current connection got its CONNACK
	quick     int       // consecutive connections lost before they were stable
	warUsed   int       // takeover-war: immediate reconnects used
	cleanNext bool      // clean-session-after-loss: the next CONNECT is clean
}

// connected records a new connection (call after CONNACK 0).
func (r *reconSessionState) connected() {
	r.upAt = time.Now()
	r.cleanNext = false
}

// lossAttempt returns the backoff step for the reconnect after a lost
// connection. A connection lost before it was stable (it lived less than
// the backoff cap) does not reset the backoff: the next wait continues the
// exponential sequence. So a duplicate identity that keeps taking the
// connection over meets growing gaps, not a ping-pong at the initial
// delay (RECON-009); a single loss still waits the initial delay (RECON-001).
func (r *reconSessionState) lossAttempt(cc connConfig) int {
	if time.Since(r.upAt) < cc.retryMax {
		r.quick++
	} else {
		r.quick = 1
	}
	return max(r.quick, 1)
}

// connConfigFor applies clean-session-after-loss to an attempt's configuration.
func (dc *deviceClient) connConfigFor(s *session, cc connConfig) connConfig {
	if s.rses.cleanNext {
		cc.clean = true // defect: the persistent session is given up
	}
	return cc
}

// afterLoss applies this file's defects to the reconnect after a lost
// connection: it returns the delay to wait, and false when the client
// stops (the stopped state is already reported).
func (dc *deviceClient) afterLoss(s *session, delay time.Duration) (time.Duration, bool) {
	lived := time.Since(s.rses.upAt)
	if dc.on(DefStopOnServerClose) && lived < serverCloseStopWithin {
		dc.setState(agentproto.ConnEvent{State: agentproto.StateStopped,
			Reason: fmt.Sprintf("connection closed by the hub %s after CONNACK: taken as a refusal", lived.Round(time.Millisecond))})
		return 0, false
	}
	if dc.on(DefDropInflight) {
		s.store = paho.NewOrderedMemoryStore() // defect: in-flight QoS 1 messages are forgotten
	}
	if dc.on(DefCleanSessionAfterLoss) {
		s.rses.cleanNext = true
	}
	if dc.on(DefTakeoverWar) && s.rses.warUsed < takeoverWarMax {
		s.rses.warUsed++
		s.rses.quick = 0
		return 0, true // defect: fight for the connection at once
	}
	return delay, true
}
