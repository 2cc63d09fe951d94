package hub

import (
	"encoding/json"
	"io"
	"sync"
	"time"

	"github.com/hilrun/hilrun/rig/iothub"
)

// Direction of a trace entry relative to the hub.
const (
	DirIn    = "in"    // device → hub
	DirOut   = "out"   // hub → device
	DirEvent = "event" // something the hub decided or observed (TLS facts, close reasons, warnings)
)

// Event kinds recorded with Dir == DirEvent.
const (
	EventTLS          = "tls"           // handshake finished; TLS facts attached
	EventTLSFailed    = "tls-failed"    // handshake failed or stalled
	EventPlaintext    = "plaintext"     // plaintext MQTT on a TLS port (CONN-002); no packet bytes recorded
	EventConnRejected = "conn-rejected" // CONNECT refused (Reason, ReturnCode)
	EventConnOpened   = "conn-opened"   // CONNACK 0 sent, session established
	EventConnClosed   = "conn-closed"   // connection ended (Reason)
	EventViolation    = "violation"     // the device broke a documented rule; the hub closed the connection
	EventWarning      = "warning"       // tolerated deviation from the documentation (Requirement names the rule)
	EventFault        = "fault"         // fault injection or throttling acted on the connection
	EventWill         = "will"          // Will delivered as telemetry
	EventSNTP         = "sntp"          // a query at the suite's time server (AddExternal; Remote is the client)
)

// maxTracePayload bounds how many payload bytes one trace entry keeps; the
// full payload of telemetry lives in the telemetry store.
const maxTracePayload = 4096

// Entry is one line of the wire trace: a packet in or out, or an event.
type Entry struct {
	Seq      uint64        `json:"seq"`
	Time     time.Time     `json:"time"`     // wall clock
	Mono     time.Duration `json:"mono"`     // since hub start, monotonic
	ConnID   uint64        `json:"conn"`     // 0 for hub-wide events
	ClientID string        `json:"clientId"` // identity as claimed in CONNECT (device or device/module)
	Remote   string        `json:"remote,omitempty"`
	Dir      string        `json:"dir"`
	Type     string        `json:"type"` // CONNECT, PUBLISH, ... or an Event* kind

	// PUBLISH fields.
	Topic      string             `json:"topic,omitempty"`
	QoS        byte               `json:"qos,omitempty"`
	PacketID   uint16             `json:"packetId,omitempty"`
	Dup        bool               `json:"dup,omitempty"`
	Retain     bool               `json:"retain,omitempty"`
	Payload    []byte             `json:"payload,omitempty"`
	PayloadLen int                `json:"payloadLen,omitempty"`
	Properties iothub.PropertyBag `json:"properties,omitempty"`

	// CONNECT / CONNACK fields. Password is always redacted.
	Username     string `json:"username,omitempty"`
	Password     string `json:"password,omitempty"`
	KeepAlive    uint16 `json:"keepAlive,omitempty"`
	CleanSession bool   `json:"cleanSession,omitempty"`
	ProtoLevel   byte   `json:"protocolLevel,omitempty"`
	WillTopic    string `json:"willTopic,omitempty"`
	ReturnCode   byte   `json:"returnCode,omitempty"`
	Session      bool   `json:"sessionPresent,omitempty"`

	// SUBSCRIBE / SUBACK / UNSUBSCRIBE.
	Filters []FilterQoS `json:"filters,omitempty"`
	Granted []byte      `json:"granted,omitempty"`

	// Events.
	Reason      string    `json:"reason,omitempty"`
	Requirement string    `json:"requirement,omitempty"`
	TLS         *TLSFacts `json:"tls,omitempty"`
	Raw         []byte    `json:"raw,omitempty"` // outbound packet bytes as written (secrets never go out, so this is safe)
	Extra       string    `json:"extra,omitempty"`
}

// FilterQoS is one subscription filter with its requested QoS.
type FilterQoS struct {
	Filter string `json:"filter"`
	QoS    byte   `json:"qos"`
}

// TLSFacts is what the hub learned about a connection's TLS layer.
type TLSFacts struct {
	Version              string   `json:"version"`
	CipherSuite          string   `json:"cipherSuite"`
	ServerName           string   `json:"serverName"` // SNI as sent by the device
	OfferedVersions      []string `json:"offeredVersions,omitempty"`
	OfferedCiphers       []string `json:"offeredCiphers,omitempty"`
	ClientCertSubject    string   `json:"clientCertSubject,omitempty"`
	ClientCertThumbprint string   `json:"clientCertThumbprint,omitempty"` // SHA-256, upper-case hex
	ClientCertChainLen   int      `json:"clientCertChainLen,omitempty"`
	Transport            string   `json:"transport"` // "mqtts" or "wss"
}

// Trace records the wire trace. It is safe for concurrent use.
type Trace struct {
	mu      sync.Mutex
	start   time.Time
	limit   int
	entries chunkLog[Entry]
	dropped uint64
	seq     uint64
	notify  func()
}

func newTrace(limit int, notify func()) *Trace {
	return &Trace{start: time.Now(), limit: limit, notify: notify}
}

func (t *Trace) add(e Entry) {
	now := time.Now()
	if len(e.Payload) > maxTracePayload {
		e.Payload = e.Payload[:maxTracePayload:maxTracePayload]
	}
	t.mu.Lock()
	if t.entries.needChunk() {
		t.mu.Unlock()
		c := newChunk[Entry]()
		t.mu.Lock()
		t.entries.addChunk(c)
	}
	t.seq++
	e.Seq = t.seq
	e.Time = now
	e.Mono = now.Sub(t.start)
	if t.limit > 0 && t.entries.len() >= t.limit {
		// Drop the oldest tenth in one go.
		n := t.limit / 10
		if n == 0 {
			n = 1
		}
		t.dropped += uint64(n)
		t.entries.dropFront(n)
	}
	t.entries.push(e)
	t.mu.Unlock()
	if t.notify != nil {
		t.notify()
	}
}

// AddExternal records an event observed outside the hub (e.g. an SNTP query
// at the suite's time server) into the same ordered trace; Seq, Time and
// Mono are assigned here.
func (t *Trace) AddExternal(e Entry) { t.add(e) }

// Entries returns a copy of all entries that match (nil matches all).
func (t *Trace) Entries(match func(*Entry) bool) []Entry {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Entry, 0, t.entries.len())
	t.entries.each(func(e *Entry) {
		if match == nil || match(e) {
			out = append(out, *e)
		}
	})
	return out
}

// ForClient returns the entries of one identity (ClientID form: "dev" or "dev/mod").
func (t *Trace) ForClient(clientID string) []Entry {
	return t.Entries(func(e *Entry) bool { return e.ClientID == clientID })
}

// Dropped reports how many old entries were discarded because of the size limit.
func (t *Trace) Dropped() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.dropped
}

// WriteJSON exports the entries that match as a JSON array.
func (t *Trace) WriteJSON(w io.Writer, match func(*Entry) bool) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(t.Entries(match))
}

// LastSeq is the sequence number of the newest entry (0 when empty).
func (t *Trace) LastSeq() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.seq
}
