package sim

// Defect switches added for the session SHOULD specs (suites/should_session.go).
// Each needs a row in DEFECTS.md (section "Added for the session SHOULD
// specs") and an implementation at the point in the client where the rule
// is kept.

// Names of the session SHOULD defect switches.
const (
	DefCleanNoResubscribe    = "clean-session-no-resubscribe"
	DefC2DUnparsableNotAcked = "c2d-unparsable-not-acked"
	DefTwinWaitForever       = "twin-wait-forever"
)

// shouldSessionDefects lists them; see Defects.
var shouldSessionDefects = []Defect{
	{DefCleanNoResubscribe, "CONN-017", "with CleanSession 1 the device subscribes only on the first connection of a client.open; reconnects (CONNACK session-present 0) rely on subscriptions the hub no longer holds"},
	{DefC2DUnparsableNotAcked, "C2D-005", "a C2D payload that is not valid JSON is dropped by the application handler before the acknowledgement: neither reported nor PUBACKed, so the hub redelivers it on every reconnect"},
	{DefTwinWaitForever, "TWIN-019", "a twin request waits for its response without a time limit (only a lost connection ends the wait), so an unanswered GET hangs the operation"},
}
