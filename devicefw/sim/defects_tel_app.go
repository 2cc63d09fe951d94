package sim

// Defect switches added for the heartbeat (TEL-013) and distributed
// tracing (TEL-014) specs. Each needs a row in DEFECTS.md (section "Added
// for the TEL heartbeat and tracing specs") and is implemented in
// heartbeat.go.
const (
	DefHeartbeatOnlyWhenIdle = "heartbeat-only-when-idle"
	DefHeartbeatDrift        = "heartbeat-interval-drift"
	DefTraceStateMillis      = "tracestate-millis"
	DefTraceStateISO         = "tracestate-iso-time"
	DefTracingPerMille       = "tracing-sampling-per-mille"
)

// telAppDefects lists them; see Defects.
var telAppDefects = []Defect{
	{DefHeartbeatOnlyWhenIdle, "TEL-013", "every other telemetry message restarts the heartbeat timer (the heartbeat is treated as an idle keep-alive), so while the application sends telemetry more often than the interval no heartbeat-tagged message goes out"},
	{DefHeartbeatDrift, "TEL-013", "the heartbeat goes out on every second tick of its timer (a status-LED toggle timer reused: on, then off), so heartbeat-tagged messages come every 1.8 intervals instead of at least once per interval"},
	{DefTraceStateMillis, "TEL-014", "tracestate carries the creation time in Unix milliseconds (timestamp=1547666028000)"},
	{DefTraceStateISO, "TEL-014", "tracestate carries the creation time as ISO 8601 text (the $.ctime formatter reused: timestamp=2019-01-16T19:13:48.000Z)"},
	{DefTracingPerMille, "TEL-014", "the sampling rate is read as per mille: at 100 % only every tenth telemetry message carries tracestate"},
}
