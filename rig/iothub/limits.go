package iothub

import "time"

// Size limits. All sizes are in bytes.
const (
	// MaxTelemetryBytes is the largest device-to-cloud message, counted as
	// MessageSize does (TEL-005).
	MaxTelemetryBytes = 256 * 1024

	// MaxC2DBytes is the largest cloud-to-device payload a device must
	// take in intact (C2D-007).
	MaxC2DBytes = 64 * 1024

	// MaxMethodPayloadBytes bounds both direct-method request bodies
	// (METH-007) and the device's response bodies (METH-005).
	MaxMethodPayloadBytes = 128 * 1024

	// MaxIDLength is the longest device or module ID, in characters
	// (MOD-008, CONN-024).
	MaxIDLength = 128
)

// Count limits.
const (
	// MaxC2DQueue is how many cloud-to-device messages the hub keeps for a
	// device that is offline with a persistent session (C2D-006).
	MaxC2DQueue = 50

	// MaxSubscriptions is the most subscriptions one device may hold at a
	// time (CONN-019).
	MaxSubscriptions = 5
)

// Direct-method timeouts (METH-006).
const (
	// DefaultMethodTimeout applies when the caller sets no
	// responseTimeoutInSeconds (METH-006).
	DefaultMethodTimeout = 30 * time.Second

	// MaxMethodTimeout is the largest responseTimeoutInSeconds a caller may
	// choose (METH-006).
	MaxMethodTimeout = 300 * time.Second
)

// Cloud-to-device queue settings as the service documents them (numbers
// register, Appendix A of the requirements; used by the C2D-003..C2D-006
// scenarios).
const (
	// C2DDefaultTTL is the time-to-live of a C2D message when the sender
	// sets none.
	C2DDefaultTTL = time.Hour

	// C2DMinTTL is the shortest time-to-live a sender may set.
	C2DMinTTL = time.Minute

	// C2DMaxTTL is the longest time-to-live a sender may set.
	C2DMaxTTL = 48 * time.Hour

	// C2DDefaultMaxDeliveryCount is how often a message is delivered before
	// it is dead-lettered when the device never completes it.
	C2DDefaultMaxDeliveryCount = 10

	// C2DLockTimeout is how long a delivered message stays locked
	// (invisible) before the hub may deliver it again.
	C2DLockTimeout = time.Minute
)

// KeepAliveFactor multiplies the CONNECT keep-alive to give the idle time after
// which the hub drops a silent session, as MQTT 3.1.1 prescribes (CONN-023).
const KeepAliveFactor = 1.5
