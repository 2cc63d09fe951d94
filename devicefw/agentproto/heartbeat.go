package agentproto

// Operations for two application-level behaviours a device solution may
// agree with its cloud side: the heartbeat pattern (TEL-013, 002
// L11119-11127) and distributed tracing (TEL-014, 002 L30262,
// L30388-30392). They are additions to protocol version 1: a firmware
// without them answers `unknown_op`, does not declare `heartbeat` /
// `tracing`, and the specs that need them are not applicable
// (PROTOCOL.md §4.4). Both settings hold for the open client only: they
// end with client.close (or a reboot), so they never leak into the next
// session.
const (
	OpHeartbeatStart = "heartbeat.start" // HeartbeatArgs: send heartbeat messages on the open client
	OpTracingSet     = "tracing.set"     // TracingArgs: stamp tracestate on a share of the telemetry
)

// HeartbeatArgs is the heartbeat the solution agreed on: at least one
// message tagged with Properties every IntervalMS, whether the device has
// other data to send or not. A later heartbeat.start replaces the earlier
// one; IntervalMS 0 stops the heartbeat.
type HeartbeatArgs struct {
	IntervalMS int `json:"intervalMs"`
	// Properties are the application properties that identify a message
	// as a heartbeat to the solution ("usually with a property that
	// identifies it as a heartbeat", 002 L11121). The body is the
	// device's choice; empty is typical.
	Properties map[string]string `json:"props"`
}

// TracingArgs turns distributed tracing on: SamplingPct percent (0..100)
// of the telemetry messages carry the application property tracestate =
// timestamp=<Unix seconds of creation> (002 L30262). 0 turns it off.
type TracingArgs struct {
	SamplingPct int `json:"samplingPct"`
}
