package agentproto

// AWS IoT Core operations and events (devicefw/PROTOCOL.md §4.1). They are
// optional: a firmware without AWS support answers them `unknown_op` and
// stays a valid protocol-1 firmware. A board whose hello declares CapAWS
// implements all of them, and its client.open / client.close / status /
// telemetry.send / creds.rotate act on its AWS connection.
const (
	OpShadowGet    = "aws.shadow.get"    // ShadowArgs → ShadowResult
	OpShadowUpdate = "aws.shadow.update" // ShadowUpdateArgs → ShadowResult
	OpShadowDelete = "aws.shadow.delete" // ShadowArgs → ShadowResult

	EvShadowDelta = "aws.shadow.delta" // ShadowDeltaEvent
)

// AWSConfig is the `aws` section of configure.
type AWSConfig struct {
	// Endpoint is the ATS endpoint host (SNI, `<account>-ats.iot.<region>.amazonaws.com`).
	Endpoint string `json:"endpoint"`
	Port     int    `json:"port,omitempty"` // 8883
	// Address, when set, is dialled instead of Endpoint:Port (lab networks).
	Address   string `json:"address,omitempty"`
	ThingName string `json:"thingName"`
	// TelemetryTopic and C2DFilter default to the seed SDK's
	// `device/{thing}/messages/events` and `device/{thing}/messages/devicebound/#`.
	TelemetryTopic string `json:"telemetryTopic,omitempty"`
	C2DFilter      string `json:"c2dFilter,omitempty"`
	// QoS of telemetry (0 or 1), chosen once as the seed SDK's constructor does; default 1.
	QoS        *int `json:"qos,omitempty"`
	KeepAliveS int  `json:"keepAliveS,omitempty"`
	// ShadowTimeoutMS bounds a shadow request's wait for its answer (the seed
	// SDK's example uses 20 s); default 20000.
	ShadowTimeoutMS int `json:"shadowTimeoutMs,omitempty"`
}

// ShadowArgs names the shadow: "" is the classic shadow.
type ShadowArgs struct {
	Name string `json:"name,omitempty"`
}

// ShadowUpdateArgs is an update of the reported and/or desired state;
// Version, when set, makes the update conditional on the shadow's version.
type ShadowUpdateArgs struct {
	Name     string         `json:"name,omitempty"`
	Reported map[string]any `json:"reported,omitempty"`
	Desired  map[string]any `json:"desired,omitempty"`
	Version  *int64         `json:"version,omitempty"`
}

// ShadowResult is the service's answer as the device understood it:
// Status 200 for `…/accepted`, else the code of the `…/rejected`
// document (400, 404, 409, …). A device that gave up waiting answers the
// operation with error `timeout` instead.
type ShadowResult struct {
	Status      int            `json:"status"`
	Message     string         `json:"message,omitempty"`
	Version     int64          `json:"version"`
	ClientToken string         `json:"clientToken,omitempty"`
	Desired     map[string]any `json:"desired,omitempty"` // get: as held afterwards (left out when too large for a frame)
	Reported    map[string]any `json:"reported,omitempty"`
}

// ShadowDeltaEvent: a `…/update/delta` reached the application; State is
// the delta as the application got it (the keys whose desired value
// differs from reported).
type ShadowDeltaEvent struct {
	Name    string         `json:"name,omitempty"`
	Version int64          `json:"version"`
	State   map[string]any `json:"state"`
}
