package hub

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/hilrun/hilrun/rig/iothub"
	"github.com/hilrun/hilrun/rig/secrets"
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
	EventDNS          = "dns"           // a query at the board's name server on the rig (AddExternal; RECON-012)
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

	// CONNECT / CONNACK fields. Password holds facts about the password,
	// never the password (see describePassword): a SAS token field by field
	// with sig as <redacted>, or "not a SAS token (N bytes)"; empty when
	// CONNECT carried none.
	Username     string `json:"username,omitempty"`
	Password     string `json:"password,omitempty"`
	KeepAlive    uint16 `json:"keepAlive,omitempty"`
	CleanSession bool   `json:"cleanSession,omitempty"`
	ProtoLevel   byte   `json:"protocolLevel,omitempty"`
	WillTopic    string `json:"willTopic,omitempty"`
	ReturnCode   byte   `json:"returnCode,omitempty"`
	Session      bool   `json:"sessionPresent,omitempty"`

	// AcceptTime is when the hub's listener accepted the connection's TCP
	// socket, before the TLS handshake: the moment the device's attempt
	// reached the hub. Set on the connection's first entry (tls,
	// tls-failed, plaintext, or the debug listener's warning) and on its
	// CONNECT; zero elsewhere and for connections the hub did not accept
	// itself. AcceptMono is the same instant on the Mono clock. RECON-001
	// measures a device's wait between attempts from the previous
	// attempt's end to this (fixtures/series.Waits), so a handshake slowed
	// by a loaded rig does not count as the device's backoff.
	AcceptTime time.Time     `json:"acceptTime,omitzero"`
	AcceptMono time.Duration `json:"acceptMono,omitempty"`

	// SUBSCRIBE / SUBACK / UNSUBSCRIBE.
	Filters []FilterQoS `json:"filters,omitempty"`
	Granted []byte      `json:"granted,omitempty"`

	// Events.
	Reason      string    `json:"reason,omitempty"`
	Requirement string    `json:"requirement,omitempty"`
	TLS         *TLSFacts `json:"tls,omitempty"`
	Raw         []byte    `json:"raw,omitempty"` // outbound packet bytes as written (masked like everything else)
	Extra       string    `json:"extra,omitempty"`

	// Secrets lists the registered secrets (rig/secrets) the hub found in
	// this entry and replaced by <redacted> before recording it, and those
	// in the CONNECT password, which is not recorded at all. It names them,
	// never shows them: specs judge leaks from it (CONN-011).
	Secrets []SecretSeen `json:"secrets,omitempty"`

	gone bool      // removed by the per-client bound (keyBound); never handed out
	pre  *pubState // topic and payload masked already (traceIn); cleared by maskEntry
}

func (e *Entry) seq() uint64  { return e.Seq }
func (e *Entry) key() string  { return e.ClientID }
func (e *Entry) isGone() bool { return e.gone }
func (e *Entry) bury()        { *e = Entry{Seq: e.Seq, gone: true} }

// EventTraceDropped is a hub-wide event saying that a client's oldest
// entries are being dropped by Config.MaxTraceEntriesPerClient (once per
// client), with the count so far; Trace.Dropped has the running total of
// both bounds (the global one, Config.MaxTraceEntries, drops the oldest
// tenth at a time).
const EventTraceDropped = "trace-dropped"

// SecretSeen is one registered secret found in a trace entry.
type SecretSeen struct {
	Field  string `json:"field"`  // password, payload, topic, username, …
	Secret string `json:"secret"` // its rig/secrets label, e.g. KeyLabel(id, "primary")
	Form   string `json:"form"`   // the form it had: "Base64 text", "raw bytes", …
}

func appendSeen(to []SecretSeen, field string, found []secrets.Found) []SecretSeen {
	for _, f := range found {
		to = append(to, SecretSeen{Field: field, Secret: f.Label, Form: f.Form})
	}
	return to
}

// maskEntry replaces every registered secret in e's text and bytes by
// <redacted>, noting each in e.Secrets, so the trace never holds one:
// whoever reads it (Go accessors, /hilrun/trace with any policy, failure
// messages, reports) gets it masked already. Slices shared with the packet
// (Payload, Filters, TLS facts) are replaced, not written to.
func maskEntry(e *Entry) {
	str := func(field string, s *string) {
		if out, found := secrets.MaskFind(*s); found != nil {
			*s = out
			e.Secrets = appendSeen(e.Secrets, field, found)
		}
	}
	bin := func(field string, b *[]byte) {
		if out, found := secrets.MaskBytesFind(*b); found != nil {
			*b = out
			e.Secrets = appendSeen(e.Secrets, field, found)
		}
	}
	str("clientId", &e.ClientID)
	if p := e.pre; p != nil {
		e.pre = nil
		p.apply(&e.Topic, &e.Payload, &e.Secrets)
	} else {
		str("topic", &e.Topic)
		bin("payload", &e.Payload)
	}
	str("username", &e.Username)
	str("password", &e.Password)
	str("willTopic", &e.WillTopic)
	str("reason", &e.Reason)
	str("extra", &e.Extra)
	bin("raw", &e.Raw)
	for i := range e.Properties {
		p := e.Properties[i]
		str("property name", &p.Name)
		str("property value", &p.Value)
		if p != e.Properties[i] {
			e.Properties = append(iothub.PropertyBag(nil), e.Properties...)
			e.Properties[i] = p
		}
	}
	for i := range e.Filters {
		f := e.Filters[i]
		str("filter", &f.Filter)
		if f != e.Filters[i] {
			e.Filters = append([]FilterQoS(nil), e.Filters...)
			e.Filters[i] = f
		}
	}
	if e.TLS != nil {
		t := *e.TLS
		str("tls serverName", &t.ServerName)
		str("tls clientCertSubject", &t.ClientCertSubject)
		if t.ServerName != e.TLS.ServerName || t.ClientCertSubject != e.TLS.ClientCertSubject {
			e.TLS = &t
		}
	}
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
	// perClient bounds each client ID's entries; clientDrops names the
	// clients it has trimmed (each is announced once, EventTraceDropped).
	perClient   keyBound[string]
	clientDrops map[string]bool
	observe     func(Entry) // refusal logging (refusallog.go); nil: none
}

func newTrace(limit int, notify func()) *Trace {
	return &Trace{start: time.Now(), limit: limit, notify: notify}
}

// pushLocked appends an entry with the next sequence number and applies
// both bounds. Called with t.mu held; e is masked already.
func (t *Trace) pushLocked(e Entry, now time.Time) {
	t.seq++
	e.Seq = t.seq
	e.Time = now
	e.Mono = now.Sub(t.start)
	if !e.AcceptTime.IsZero() {
		e.AcceptMono = e.AcceptTime.Sub(t.start)
	}
	if t.limit > 0 && t.entries.len() >= t.limit {
		// Drop the oldest tenth in one go (counted in Dropped).
		dropped := max(1, t.limit/10)
		t.dropped += uint64(dropped)
		t.entries.dropFrontEach(dropped, func(old *Entry) { droppedFrom[string](&t.perClient, old) })
	}
	t.entries.push(e)
	if old := addedTo[string, Entry](&t.perClient, &t.entries, e.ClientID, e.Seq); old != nil {
		old.bury()
		t.dropped++
		if !t.clientDrops[e.ClientID] {
			if t.clientDrops == nil {
				t.clientDrops = map[string]bool{}
			}
			t.clientDrops[e.ClientID] = true
			reason, _ := secrets.MaskFind(fmt.Sprintf("the oldest trace entries of %q are being dropped: it has more than %d (Config.MaxTraceEntriesPerClient); %d entries dropped so far", e.ClientID, t.perClient.limit, t.dropped))
			t.pushLocked(Entry{Dir: DirEvent, Type: EventTraceDropped, Reason: reason}, now)
		}
	}
}

func (t *Trace) add(e Entry) {
	now := time.Now()
	// Mask a little past the cut, so a secret straddling it is masked
	// rather than kept in part.
	if len(e.Payload) > 2*maxTracePayload {
		e.Payload = e.Payload[: 2*maxTracePayload : 2*maxTracePayload]
	}
	maskEntry(&e)
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
	t.pushLocked(e, now)
	t.mu.Unlock()
	if t.observe != nil {
		t.observe(e)
	}
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
		if !e.gone && (match == nil || match(e)) {
			out = append(out, *e)
		}
	})
	return out
}

// ForClient returns the entries of one identity (ClientID form: "dev" or "dev/mod").
func (t *Trace) ForClient(clientID string) []Entry {
	return t.Entries(func(e *Entry) bool { return e.ClientID == clientID })
}

// Dropped reports how many old entries the trace's bounds discarded
// (Config.MaxTraceEntries and Config.MaxTraceEntriesPerClient).
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
