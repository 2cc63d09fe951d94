package hub

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hilrun/hilrun/rig/iothub"
	"github.com/hilrun/hilrun/rig/secrets"
)

// Message is one device-to-cloud message as the hub received it (TEL-*).
type Message struct {
	Seq        uint64             `json:"seq"`
	Identity   iothub.Identity    `json:"identity"`
	ConnID     uint64             `json:"conn"`
	Topic      string             `json:"topic"` // raw topic as sent
	QoS        byte               `json:"qos"`
	PacketID   uint16             `json:"packetId"`
	Dup        bool               `json:"dup"`
	Retain     bool               `json:"retain"`
	Properties iothub.PropertyBag `json:"properties"`
	Payload    []byte             `json:"payload"`
	Received   time.Time          `json:"received"`
	Will       bool               `json:"will,omitempty"`
	// Secrets names the registered secrets (rig/secrets) that were in the
	// message as sent and are <redacted> in Topic, Properties and Payload
	// here: the service side never gets a key back (CONN-011).
	Secrets []SecretSeen `json:"secrets,omitempty"`

	gone bool      // removed by the per-device bound (keyBound); never handed out
	pre  *pubState // topic and payload masked already (OnPublish); cleared by maskMessage
}

func (m *Message) seq() uint64          { return m.Seq }
func (m *Message) key() iothub.Identity { return m.Identity }
func (m *Message) isGone() bool         { return m.gone }
func (m *Message) bury()                { *m = Message{Seq: m.Seq, gone: true} }

// maskMessage masks registered secrets in what the service API hands out.
// The payload is replaced, not written to: it is the packet's buffer.
func maskMessage(m *Message) {
	if p := m.pre; p != nil {
		m.pre = nil
		p.apply(&m.Topic, &m.Payload, &m.Secrets)
	} else {
		if out, found := secrets.MaskFind(m.Topic); found != nil {
			m.Topic = out
			m.Secrets = appendSeen(m.Secrets, "topic", found)
		}
		if out, found := secrets.MaskBytesFind(m.Payload); found != nil {
			m.Payload = out
			m.Secrets = appendSeen(m.Secrets, "payload", found)
		}
	}
	for i, p := range m.Properties {
		n, fn := secrets.MaskFind(p.Name)
		v, fv := secrets.MaskFind(p.Value)
		if fn == nil && fv == nil {
			continue
		}
		m.Properties = append(iothub.PropertyBag(nil), m.Properties...)
		m.Properties[i].Name, m.Properties[i].Value = n, v
		m.Secrets = appendSeen(appendSeen(m.Secrets, "property name", fn), "property value", fv)
	}
}

type telemetryStore struct {
	mu    sync.Mutex
	limit int
	seq   uint64
	msgs  chunkLog[Message]
	// dropped counts messages the bounds discarded, oldest first.
	dropped   uint64
	perDevice keyBound[iothub.Identity]
}

func newTelemetryStore(limit int) *telemetryStore { return &telemetryStore{limit: limit} }

func (s *telemetryStore) add(m Message) Message {
	maskMessage(&m)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.msgs.needChunk() {
		s.mu.Unlock()
		c := newChunk[Message]()
		s.mu.Lock()
		s.msgs.addChunk(c)
	}
	s.seq++
	m.Seq = s.seq
	if s.limit > 0 && s.msgs.len() >= s.limit {
		k := max(1, s.limit/10)
		s.dropped += uint64(k)
		s.msgs.dropFrontEach(k, func(old *Message) { droppedFrom[iothub.Identity](&s.perDevice, old) })
	}
	s.msgs.push(m)
	if old := addedTo[iothub.Identity, Message](&s.perDevice, &s.msgs, m.Identity, m.Seq); old != nil {
		old.bury()
		s.dropped++
	}
	return m
}

func (s *telemetryStore) list(match func(*Message) bool) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Message
	s.msgs.each(func(m *Message) {
		if !m.gone && (match == nil || match(m)) {
			out = append(out, *m)
		}
	})
	return out
}

// Telemetry returns the messages received from an identity, oldest first.
func (h *Hub) Telemetry(id iothub.Identity) []Message {
	return h.telem.list(func(m *Message) bool { return m.Identity == id })
}

// AllTelemetry returns every stored message with Seq > after.
func (h *Hub) AllTelemetry(after uint64) []Message {
	return h.telem.list(func(m *Message) bool { return m.Seq > after })
}

// WaitTelemetry waits for the first message from id with Seq > after that
// satisfies match (nil matches any). The error says how many messages from
// the identity were seen instead.
func (h *Hub) WaitTelemetry(ctx context.Context, id iothub.Identity, after uint64, match func(Message) bool) (Message, error) {
	var found Message
	err := h.waitFor(ctx, func() bool {
		for _, m := range h.telem.list(func(m *Message) bool { return m.Identity == id && m.Seq > after }) {
			if match == nil || match(m) {
				found = m
				return true
			}
		}
		return false
	})
	if err != nil {
		seen := h.telem.list(func(m *Message) bool { return m.Identity == id && m.Seq > after })
		return Message{}, fmt.Errorf("waiting for telemetry from %s: %w; %d other message(s) seen", id, err, len(seen))
	}
	return found, nil
}

// WaitTelemetryCount waits until at least n messages from id have Seq > after.
func (h *Hub) WaitTelemetryCount(ctx context.Context, id iothub.Identity, after uint64, n int) ([]Message, error) {
	var got []Message
	err := h.waitFor(ctx, func() bool {
		got = h.telem.list(func(m *Message) bool { return m.Identity == id && m.Seq > after })
		return len(got) >= n
	})
	if err != nil {
		return got, fmt.Errorf("waiting for %d telemetry messages from %s: %w; saw %d", n, id, err, len(got))
	}
	return got, nil
}

// LastTelemetrySeq is the sequence number of the newest stored message, a
// starting point for WaitTelemetry.
func (h *Hub) LastTelemetrySeq() uint64 {
	h.telem.mu.Lock()
	defer h.telem.mu.Unlock()
	return h.telem.seq
}

// TelemetryDropped is how many of the oldest stored messages the store's
// bounds (Config.MaxStoredTelemetry, Config.MaxTelemetryPerDevice) have
// discarded.
func (h *Hub) TelemetryDropped() uint64 {
	h.telem.mu.Lock()
	defer h.telem.mu.Unlock()
	return h.telem.dropped
}
