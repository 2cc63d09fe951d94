package sim

// Defect switches added for the second batch of mutation-gap specs (issue
// 15, docs/mutation.md sample 3, "possible gaps"): bugs the suite let
// through because its specs only looked where the reference firmware
// happens to report or count. Each has a row in DEFECTS.md ("Added for the
// second mutation-gap specs").
const (
	DefOpTimeoutNoEvent   = "op-timeout-no-event"
	DefTraceCountWhileOff = "trace-count-while-off"
)

var boundsGaps2Defects = []Defect{
	{DefOpTimeoutNoEvent, "RECON-005", "a QoS 1 message given up at the operation timeout is reported only to a caller still waiting on it: a send made without wait fails with no telemetry.acked event, so the application never learns of it"},
	{DefTraceCountWhileOff, "TEL-014", "the tracing sample counter advances only while tracing is off: once tracing is on at a rate below 100 % the counter stands still and every message is stamped with tracestate"},
}
