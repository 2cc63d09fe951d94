package sim

import (
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/hilrun/hilrun/devicefw/agentproto"
)

// Defect switches added for the RECON network-fault specs. Each needs a row in
// DEFECTS.md (section "RECON network-fault specs") and an implementation at the point
// in the client where the rule is kept.
const (
	DefNoAutoReconnect     = "no-auto-reconnect"
	DefBackoffNoJitter     = "backoff-no-jitter"
	DefBackoffNoCap        = "backoff-no-cap"
	DefNoDeadLinkDetection = "no-dead-link-detection"
	DefStopOnEarlyLoss     = "stop-on-early-loss"
)

// reconNetDefects lists them; see Defects.
var reconNetDefects = []Defect{
	{DefNoAutoReconnect, "RECON-001", "after an unexpected loss of an established connection the client goes to idle and waits for client.open instead of reconnecting"},
	{DefBackoffNoJitter, "RECON-001", "reconnect delays carry no jitter: every gap is exactly the exponential step (initial, 2×, 4×, … up to the cap)"},
	{DefBackoffNoCap, "RECON-001", "reconnect delays keep doubling past the configured maximum (bounded at 60 s)"},
	{DefNoDeadLinkDetection, "RECON-013", "a missing PINGRESP is noticed only after 10 × keep-alive, so a dead link holds the client for that long"},
	{DefStopOnEarlyLoss, "RECON-010", "a connection attempt closed or reset before its CONNACK (during TLS or while waiting for CONNACK) is treated as unrecoverable: the client stops"},
}

const (
	// backoff-no-cap: the doubling still ends somewhere.
	noCapLimit = 60 * time.Second
	// no-dead-link-detection: the missing PINGRESP is noticed this many
	// keep-alives late.
	deadLinkLateFactor = 10
)

// retryBackoff is backoff for the reconnect loop, with this file's defects
// applied (RECON-001).
func (dc *deviceClient) retryBackoff(cc connConfig, n int) time.Duration {
	if dc.on(DefBackoffNoJitter) {
		cc.jitterPct = 0
	}
	if dc.on(DefBackoffNoCap) {
		cc.retryMax = noCapLimit
	}
	return backoff(cc, n)
}

// pingTimeout is how long paho waits for a PINGRESP before it declares the
// connection lost (RECON-013): a fifth of the keep-alive, at most 10 s
// (paho's default). paho checks every keep-alive/4 (every 5 s above 20 s)
// and pings at the first check after a keep-alive without traffic; a
// timeout shorter than the check interval is decided at the first check
// after the PINGREQ. So a dead link is noticed within 1.25 × keep-alive +
// one check = 1.5 × keep-alive (for keep-alives up to 20 s).
func (dc *deviceClient) pingTimeout(cc connConfig) time.Duration {
	if dc.on(DefNoDeadLinkDetection) {
		return deadLinkLateFactor * cc.keepAlive
	}
	return min(cc.keepAlive/5, 10*time.Second)
}

// stopAfterLoss applies no-auto-reconnect once an established connection is
// lost: it reports idle and returns true when the loop must end.
func (dc *deviceClient) stopAfterLoss(s *session, reason string) bool {
	if !dc.on(DefNoAutoReconnect) {
		return false
	}
	dc.setState(agentproto.ConnEvent{State: agentproto.StateIdle, Reason: reason + "; waiting for client.open"})
	s.cancel()
	return true
}

// stopOnEarlyLoss applies stop-on-early-loss to a failed attempt: paho
// reports a network failure before CONNACK (reset or close during TLS or
// while waiting for CONNACK) as return code 0xFE.
func (dc *deviceClient) stopOnEarlyLoss(rc byte) bool {
	return rc == packets.ErrNetworkError && dc.on(DefStopOnEarlyLoss)
}
