package agentproto

// Operation names (host → device requests).
const (
	OpHello        = "hello"          // → Hello
	OpConfigure    = "configure"      // Config (merged into the current configuration) → Status
	OpTrustClear   = "trust.clear"    // remove every trusted root
	OpTrustAdd     = "trust.add"      // Cert{PEM} one root per call (frames are small)
	OpTrustList    = "trust.list"     // TrustListArgs (optional) → TrustList: every root the device would accept (configured and built in)
	OpCertSet      = "cert.set"       // Cert{PEM, KeyPEM} device certificate (chain in PEM) and key
	OpOpen         = "client.open"    // start connecting (with retries per the retry policy)
	OpClose        = "client.close"   // CloseArgs; stop and disconnect
	OpStatus       = "status"         // → Status
	OpTelemetry    = "telemetry.send" // TelemetryArgs → TelemetryResult (after PUBACK for QoS 1)
	OpTwinGet      = "twin.get"       // → TwinResult
	OpTwinReport   = "twin.report"    // ReportArgs → ReportResult
	OpMethodDefine = "method.define"  // MethodBehaviour
	OpMethodClear  = "method.clear"   // forget every method.define (unknown methods answer as unregistered)
	OpRotate       = "creds.rotate"   // RotateArgs: new SAS key, or new certificate
	OpClockGet     = "clock.get"      // → Clock
	OpClockSet     = "clock.set"      // Clock
	OpReset        = "reset"          // firmware restarts (a hello event follows)
	OpEcho         = "echo"           // EchoArgs → EchoArgs (round-trip benchmark)
)

// Event names (device → host).
const (
	EvHello     = "hello"           // Hello, sent at every boot
	EvConn      = "conn"            // ConnEvent
	EvTelemetry = "telemetry.acked" // TelemetryResult
	EvC2D       = "c2d"             // C2DEvent
	EvDesired   = "twin.desired"    // DesiredEvent
	EvResync    = "twin.resync"     // ResyncEvent
	EvMethod    = "method.invoked"  // MethodEvent
	EvCreds     = "creds.renewed"   // CredsEvent
	EvLog       = "log"             // LogEvent
	EvClockSync = "clock.synced"    // Clock
)

// Capabilities a board may declare in Hello.Caps; specs for features the
// board lacks are reported not applicable.
const (
	CapSAS        = "sas"
	CapX509       = "x509"
	CapModules    = "modules"
	CapPnP        = "pnp"
	CapDPS        = "dps"
	CapOTA        = "ota"
	CapWebSockets = "websockets"
	// CapPersistentSession: the client can connect with CleanSession 0 and
	// resume its session (subscriptions and QoS 1 messages kept by the hub).
	CapPersistentSession = "persistent-session"
	// CapCleanSession is the former name of CapPersistentSession (it never
	// meant CleanSession 1); a hello declaring it declares
	// persistent-session. Kept so firmwares built before the rename stay
	// valid.
	CapCleanSession = "clean-session"
	CapC2D          = "c2d"
	CapMethods      = "methods"
	CapTwin         = "twin"
	CapSNTP         = "sntp"
	CapCertRotation = "cert-rotation"
	CapTrustUpdate  = "trust-update"
	CapWill         = "will"
	CapDefects      = "defects" // virtual board: accepts defect switches
	// CapDNS: the firmware resolves the hub host through the name server
	// given in hub.dnsServer (the rig's, rig/dns), so the rig sees its
	// lookups (RECON-012).
	CapDNS = "dns"

	// Optional behaviours on which real device clients differ. A board
	// declaring one must do it; a board not declaring it is still asked,
	// and an `unsupported` answer (or not doing it) then makes the specs
	// that need it not applicable (when the requirement is about the
	// behaviour) or precondition-unmet (when only the spec needs it).
	CapCleanSession1 = "clean-session-1" // can connect with CleanSession 1 (mqtt.cleanSession true)
	CapTelemetryQoS0 = "telemetry-qos0"  // can send telemetry at QoS 0 (telemetry.send qos 0)
	CapCTime         = "ctime"           // can stamp a creation time $.ctime (telemetry.send ctime)
	CapModuleX509    = "module-x509"     // a module identity can authenticate with an X.509 certificate
	// CapLocalTwinValidation: the client refuses reported patches that
	// break IoT Hub's document rules (TWIN-011..016) before sending them.
	// Informational: the hub enforces those rules (it answers 400), so
	// the specs accept both a local refusal and a sent-and-refused patch.
	CapLocalTwinValidation = "local-twin-validation"

	// Named by the requirement catalog for features no firmware here
	// declares yet.
	CapAWS        = "aws"         // AWS IoT Core shadow client (AWS-*)
	CapFileUpload = "file-upload" // HTTPS file upload (FUP-*)
	CapHeartbeat  = "heartbeat"   // solution-level heartbeat messages (TEL-013)
	CapTracing    = "tracing"     // distributed tracing tracestate (TEL-014)
	CapPnPRefuse  = "pnp-refuse"  // pnp.define writable[].max: refuse a value above it with ac 400 (PNP-003)
)

// capAliases maps former capability names to their current ones.
var capAliases = map[string]string{CapCleanSession: CapPersistentSession}

// CanonicalCap returns the current name of capability c (c itself unless
// it is a former name).
func CanonicalCap(c string) string {
	if n, ok := capAliases[c]; ok {
		return n
	}
	return c
}

// HasCap reports whether caps (a hello's list) declares capability c,
// under its current or a former name.
func HasCap(caps []string, c string) bool {
	c = CanonicalCap(c)
	for _, x := range caps {
		if CanonicalCap(x) == c {
			return true
		}
	}
	return false
}

// Hello identifies the firmware and what it can do.
type Hello struct {
	Proto     int      `json:"proto"`
	Firmware  string   `json:"fw"`
	FWVersion string   `json:"fwVersion"`
	Build     string   `json:"build"` // build hash
	Client    string   `json:"client"`
	ClientVer string   `json:"clientVersion"`
	Board     string   `json:"board"`
	Caps      []string `json:"caps"`
	Defects   []string `json:"defects,omitempty"` // active defect switches (virtual board)
	BootCount int      `json:"boot"`
	MaxFrame  int      `json:"maxFrame"`
	// MinTokenTTLS is the shortest SAS token life (s) the client library
	// can hold a session with: it renews a fixed margin before se, so a
	// shorter token is renewed at once, again and again (0: no such floor).
	MinTokenTTLS int `json:"minTokenTtlS,omitempty"`
	// TwinTimeoutFixedMS declares that the client library's bound on a
	// twin request cannot be configured (a configured twin.timeoutMs is
	// stored but not applied): its own fixed bound in ms, or -1 when it
	// has none. 0: the bound is configurable (TWIN-019).
	TwinTimeoutFixedMS int `json:"twinTimeoutFixedMs,omitempty"`
	// OperationTimeout declares the client's overall limit on retrying
	// one operation (a QoS 1 telemetry send): after it the client stops
	// resending the message and reports the failure (RECON-005). nil: not
	// declared.
	OperationTimeout *OperationTimeout `json:"operationTimeout,omitempty"`
	// RetryDefaults declares the board's default reconnect backoff, which
	// configure {"retry": {}} (no member set) restores (RECON-002). nil:
	// not declared.
	RetryDefaults *RetryConfig `json:"retryDefaults,omitempty"`
}

// OperationTimeout is the hello's declaration of the overall operation
// limit (RECON-005, 002 L16710, L16753).
type OperationTimeout struct {
	// DefaultMS is the limit with no retry.operationTimeoutMs configured,
	// in ms; -1: the client has no such limit.
	DefaultMS int `json:"defaultMs"`
	// Configurable: the board applies retry.operationTimeoutMs.
	Configurable bool `json:"configurable,omitempty"`
}

// Config is the device configuration. configure merges non-zero fields.
type Config struct {
	Hub      *HubConfig      `json:"hub,omitempty"`
	Identity *IdentityConfig `json:"identity,omitempty"`
	Auth     *AuthConfig     `json:"auth,omitempty"`
	MQTT     *MQTTConfig     `json:"mqtt,omitempty"`
	Retry    *RetryConfig    `json:"retry,omitempty"`
	ModelID  string          `json:"modelId,omitempty"`
	WiFi     *WiFiConfig     `json:"wifi,omitempty"`
	SNTP     *SNTPConfig     `json:"sntp,omitempty"`
	Twin     *TwinConfig     `json:"twin,omitempty"`
	AWS      *AWSConfig      `json:"aws,omitempty"`     // AWS IoT Core boards (aws.go)
	Defects  []string        `json:"defects,omitempty"` // virtual board only
	// Hosts maps "host:port" to the address this rig serves it at (the
	// hub's HTTPS port for file upload, the storage endpoint for OTA and
	// uploads); the firmware dials the address, with the host as SNI.
	Hosts map[string]string `json:"hosts,omitempty"`
}

// HubConfig says where the hub is.
type HubConfig struct {
	Host      string `json:"host,omitempty"`      // FQDN (SNI, Username, sr)
	Port      int    `json:"port,omitempty"`      // 8883, or 443 for WebSocket
	Transport string `json:"transport,omitempty"` // "mqtts" (default) or "wss"
	Address   string `json:"address,omitempty"`   // dial this host:port instead of Host:Port (lab networks, proxies)
	// PlainAddress is where the hub host's plaintext MQTT port 1883 is on
	// this rig: a trap recording attempts. Conforming firmware never dials
	// it (IoT Hub has no plaintext MQTT); firmware that would fall back to
	// 1883 must dial this instead so that the rig can see it.
	PlainAddress string `json:"plainAddress,omitempty"`
	// DNSServer is the name server ("ip:port", UDP) this rig serves the
	// hub host from (capability dns, RECON-012): the firmware resolves
	// Host through it at each connection attempt whose earlier answer's
	// TTL has run out, and dials the answer's address at the port of
	// Address (or Port); TLS still names Host. Empty: dial Address as
	// before.
	DNSServer string `json:"dnsServer,omitempty"`
}

// IdentityConfig names the device (and module).
type IdentityConfig struct {
	DeviceID string `json:"deviceId"`
	ModuleID string `json:"moduleId,omitempty"`
}

// AuthConfig selects SAS or X.509.
type AuthConfig struct {
	Type          string  `json:"type"`                    // "sas" or "x509"
	Key           string  `json:"key,omitempty"`           // SAS key, base64 (never echoed back)
	TokenTTL      int     `json:"tokenTtlS,omitempty"`     // seconds; default 3600
	RenewFraction float64 `json:"renewFraction,omitempty"` // renew after this fraction of the TTL; default 0.8
}

// MQTTConfig tunes the MQTT session.
type MQTTConfig struct {
	KeepAlive    int   `json:"keepAliveS,omitempty"` // default 60
	CleanSession *bool `json:"cleanSession,omitempty"`
	QoS          *int  `json:"qos,omitempty"` // telemetry default QoS (1)
	Will         *Will `json:"will,omitempty"`
}

// Will asks the client to register a Will on its telemetry topic.
type Will struct {
	Payload    string            `json:"payload"`
	Properties map[string]string `json:"props,omitempty"`
}

// RetryConfig is the reconnect policy: exponential backoff with jitter and
// a cap, as the official SDKs use (RECON-001/002).
type RetryConfig struct {
	InitialMS int `json:"initialMs,omitempty"` // default 1000
	MaxMS     int `json:"maxMs,omitempty"`     // default 60000
	JitterPct int `json:"jitterPct,omitempty"` // default 20
	// OperationTimeoutMS bounds the retries of one operation (a QoS 1
	// telemetry send, resends included), from the send until the device
	// gives up and reports the failure (RECON-005); applied by boards that
	// declare hello operationTimeout.configurable. Default: the board's
	// (hello operationTimeout.defaultMs).
	OperationTimeoutMS int `json:"operationTimeoutMs,omitempty"`
}

// WiFiConfig is for real boards; secrets are never echoed back.
type WiFiConfig struct {
	SSID     string `json:"ssid"`
	Password string `json:"password,omitempty"`
}

// SNTPConfig points the board at a time server.
type SNTPConfig struct {
	Server string `json:"server"` // host:port
}

// TwinConfig tunes twin handling.
type TwinConfig struct {
	TimeoutMS int `json:"timeoutMs,omitempty"` // twin request timeout; default 20000
}

// Cert carries PEM material.
type Cert struct {
	PEM    string `json:"pem"`
	KeyPEM string `json:"keyPem,omitempty"`
	// Slot "secondary" (cert.set only) provisions a second device
	// certificate, presented when the hub refuses the first one (CERT-006);
	// "" sets the device certificate and forgets a secondary one.
	Slot string `json:"slot,omitempty"`
}

// TrustListArgs are the optional arguments of trust.list. With SHA256
// given, the device answers only the roots it trusts among those
// fingerprints (a full factory bundle does not fit one frame). A firmware
// that ignores the filter and lists everything stays valid, so a caller
// judges the answer itself.
type TrustListArgs struct {
	SHA256 []string `json:"sha256,omitempty"` // DER fingerprints, upper-case hex
}

// TrustList is the answer to trust.list: the roots the device accepts as
// anchors for the server chain, with where each comes from. A firmware
// that cannot list its built-in roots lists only the configured ones.
type TrustList struct {
	Roots []TrustedRoot `json:"roots"`
}

// TrustedRoot is one trust anchor.
type TrustedRoot struct {
	Subject string `json:"subject"` // RFC 4514 distinguished name
	SHA256  string `json:"sha256"`  // fingerprint of the DER certificate, upper-case hex
	Source  string `json:"source"`  // TrustConfigured or TrustFactory
}

// Sources of a TrustedRoot.
const (
	TrustConfigured = "configured" // added with trust.add (NVS)
	TrustFactory    = "factory"    // built into the firmware image (certificate bundle)
)

// Certificate slots for Cert.Slot.
const SlotSecondary = "secondary"

// CloseArgs controls client.close.
type CloseArgs struct {
	Graceful bool `json:"graceful"` // send DISCONNECT (default true on the wire is the firmware's choice)
}

// Status is the device's view of its connection.
type Status struct {
	State        string `json:"state"` // idle, connecting, connected, backoff, stopped
	Reason       string `json:"reason,omitempty"`
	Connects     int    `json:"connects"`
	DesiredVer   int64  `json:"desiredVersion"`
	ClockUnixMS  int64  `json:"clockUnixMs"`
	ClockSynced  bool   `json:"clockSynced"`
	TokenExpires int64  `json:"tokenExpires,omitempty"` // se of the current token
	// Already answers client.open on a client that was already open (its
	// connection or reconnect loop running): nothing new was started and
	// no conn event follows (PROTOCOL.md §4).
	Already bool `json:"already,omitempty"`
}

// Connection states in Status and ConnEvent.
const (
	StateIdle       = "idle"
	StateConnecting = "connecting"
	StateConnected  = "connected"
	StateBackoff    = "backoff"
	StateStopped    = "stopped" // unrecoverable (e.g. not authorized); no further attempts
)

// TelemetryArgs sends one message. Payload or Gen.
type TelemetryArgs struct {
	Payload     string            `json:"payload,omitempty"`
	Gen         *Gen              `json:"gen,omitempty"`
	Properties  map[string]string `json:"props,omitempty"` // application properties
	MessageID   string            `json:"messageId,omitempty"`
	ContentType string            `json:"contentType,omitempty"`
	// CreationTime asks the device to stamp $.ctime, its RTC time in UTC (TEL-012).
	CreationTime bool `json:"ctime,omitempty"`
	QoS          *int `json:"qos,omitempty"`
	Wait         bool `json:"wait,omitempty"` // respond only after PUBACK (QoS 1)
	// Component names the DTDL component the message belongs to ($.sub,
	// IoT Plug and Play; boards declaring `pnp`).
	Component string `json:"component,omitempty"`
}

// Gen asks for a generated payload of Size bytes from Seed, so large
// messages need not cross the UART (see Generate).
type Gen struct {
	Size int    `json:"size"`
	Seed uint32 `json:"seed"`
}

// TelemetryResult reports a send.
type TelemetryResult struct {
	Ref   uint64 `json:"ref"`   // device-local message number
	Acked bool   `json:"acked"` // PUBACK seen (QoS 1)
	Size  int    `json:"size"`
	Error string `json:"error,omitempty"`
}

// TwinResult is the twin as the device holds it after a GET.
type TwinResult struct {
	Desired         map[string]any `json:"desired"`
	Reported        map[string]any `json:"reported"`
	DesiredVersion  int64          `json:"desiredVersion"`
	ReportedVersion int64          `json:"reportedVersion"`
	Status          int            `json:"status"`
}

// ReportArgs sends a reported-properties patch.
type ReportArgs struct {
	Patch map[string]any `json:"patch"`
	// Spread, when set, adds generated string members to Patch, so a
	// patch larger than one frame (TWIN-015's 8 KB) can be asked for.
	Spread *Spread `json:"spread,omitempty"`
}

// Spread describes generated patch members: Members members named
// Prefix and i in three decimal digits for i in 0..Members-1, member i holding
// the string Generate(Len + (1 if i < Extra), uint32(i+1)).
type Spread struct {
	Prefix  string `json:"prefix"`
	Members int    `json:"members"`
	Len     int    `json:"len"`
	Extra   int    `json:"extra,omitempty"`
}

// Build returns the members sp describes (host and firmware build the
// same ones).
func (sp Spread) Build() map[string]any {
	out := make(map[string]any, sp.Members)
	for i := range sp.Members {
		n := sp.Len
		if i < sp.Extra {
			n++
		}
		out[sp.Prefix+string([]byte{byte('0' + i/100%10), byte('0' + i/10%10), byte('0' + i%10)})] = string(Generate(n, uint32(i+1)))
	}
	return out
}

// JSONString is the method body g describes (MethodBehaviour.Gen): a JSON
// string literal of g.Size bytes, '"' + Generate(Size-2, Seed) + '"'; `""`
// for a nil g or a size under 2. Host and firmware build the same one.
func (g *Gen) JSONString() []byte {
	if g == nil || g.Size < 2 {
		return []byte(`""`)
	}
	out := make([]byte, 0, g.Size)
	out = append(out, '"')
	out = append(out, Generate(g.Size-2, g.Seed)...)
	return append(out, '"')
}

// ReportResult is the hub's answer to a reported patch.
type ReportResult struct {
	Status  int   `json:"status"`
	Version int64 `json:"version"`
}

// MethodBehaviour defines how a named method answers. Name "*" sets the
// behaviour for methods without their own definition.
type MethodBehaviour struct {
	Name    string `json:"name"`
	Status  int    `json:"status"`
	Payload string `json:"payload,omitempty"` // JSON text; empty for no body
	DelayMS int    `json:"delayMs,omitempty"`
	Fail    bool   `json:"fail,omitempty"` // the handler "throws": the firmware answers its error status
	Silent  bool   `json:"silent,omitempty"`
	// Gen, when set, replaces Payload with a generated body of Gen.Size
	// bytes: a JSON string literal, '"' + Generate(Size-2, Seed) + '"', so
	// a body near the 128 KB limit (METH-005) need not cross the UART.
	Gen *Gen `json:"gen,omitempty"`
}

// RotateArgs replaces credentials; the client reconnects with them.
type RotateArgs struct {
	Key    string `json:"key,omitempty"`
	PEM    string `json:"pem,omitempty"`
	KeyPEM string `json:"keyPem,omitempty"`
}

// Clock is the device's real-time clock.
type Clock struct {
	UnixMS int64 `json:"unixMs"`
	Synced bool  `json:"synced,omitempty"`
}

// EchoArgs is echoed back unchanged.
type EchoArgs struct {
	Data string `json:"data"`
}

// ConnEvent reports a connection state change.
type ConnEvent struct {
	State   string `json:"state"`
	Reason  string `json:"reason,omitempty"`
	Attempt int    `json:"attempt,omitempty"`
	NextMS  int    `json:"nextMs,omitempty"` // backoff before the next attempt
	Session bool   `json:"sessionPresent,omitempty"`
}

// C2DEvent reports a received cloud-to-device message.
type C2DEvent struct {
	Topic      string            `json:"topic"`
	Properties map[string]string `json:"props"`
	Payload    string            `json:"payload,omitempty"` // first 512 bytes
	Size       int               `json:"size"`
	SHA256     string            `json:"sha256"`
	Dup        bool              `json:"dup,omitempty"`
	Duplicate  bool              `json:"duplicate,omitempty"` // message id seen before (C2D-004)
}

// DesiredEvent reports a desired-properties patch and whether it was applied.
type DesiredEvent struct {
	Version int64          `json:"version"`
	Applied bool           `json:"applied"`
	Reason  string         `json:"reason,omitempty"` // e.g. "stale: version <= 7"
	Patch   map[string]any `json:"patch,omitempty"`
	// Desired is the desired state the device holds after the patch
	// (TWIN-009, TWIN-017); omitted when too large for one frame.
	Desired map[string]any `json:"desired,omitempty"`
}

// ResyncEvent reports the twin GET after a (re)connect (TWIN-010).
type ResyncEvent struct {
	DesiredVersion  int64 `json:"desiredVersion"`
	ReportedVersion int64 `json:"reportedVersion"`
}

// MethodEvent reports an invocation and the answer given.
type MethodEvent struct {
	Name   string `json:"name"`
	RID    string `json:"rid"`
	Status int    `json:"status"`
	Size   int    `json:"size"`
}

// CredsEvent reports a token renewal or credential change.
type CredsEvent struct {
	Kind   string `json:"kind"` // "sas-renewal", "key-rotated", "cert-rotated"
	Expiry int64  `json:"se,omitempty"`
}

// LogEvent carries a firmware log line worth structuring.
type LogEvent struct {
	Level string `json:"level"`
	Msg   string `json:"msg"`
}
