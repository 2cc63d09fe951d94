package hub

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hilrun/hilrun/rig/iothub"
)

// C2D message states, IoT Hub's lifecycle names (002 L10745-10760).
const (
	C2DEnqueued              = "Enqueued"
	C2DInvisible             = "Invisible"
	C2DCompleted             = "Completed"
	C2DExpired               = "Expired"
	C2DDeliveryCountExceeded = "DeliveryCountExceeded"
)

// ErrDeviceOffline is returned when an operation needs a connected device
// (IoT Hub answers 404 DeviceNotOnline for methods, METH appendix A).
var ErrDeviceOffline = errors.New("device is not online")

// ErrQueueFull is returned when a device's C2D queue already holds 50 messages (C2D-006).
var ErrQueueFull = errors.New("device queue is full (50 messages)")

// C2DMessage is a cloud-to-device message as the service sends it.
type C2DMessage struct {
	Payload       []byte
	MessageID     string             // $.mid; generated when empty
	CorrelationID string             // $.cid
	Properties    iothub.PropertyBag // application properties
	TTL           time.Duration      // default 1 h, 1 min..48 h (appendix A)
	Ack           string             // iothub-ack: none, positive, negative, full
}

// C2DStatus is a queued message as the service sees it.
type C2DStatus struct {
	MessageID     string    `json:"messageId"`
	State         string    `json:"state"`
	DeliveryCount int       `json:"deliveryCount"`
	Enqueued      time.Time `json:"enqueuedTime"`
	Expiry        time.Time `json:"expiryTime"`
	Completed     time.Time `json:"completedTime,omitempty"`
}

type c2dMessage struct {
	seq      uint64
	msg      C2DMessage
	topic    string
	status   C2DStatus
	conn     *conn
	packetID uint16
}

type c2dQueue struct {
	msgs []*c2dMessage // Enqueued or Invisible, in order
	done []C2DStatus   // completed or dead-lettered (feedback), newest maxC2DDone
	// doneDropped counts the oldest finished statuses let go to keep done bounded.
	doneDropped uint64
}

// maxC2DDone bounds how many finished messages a device's queue remembers
// for C2DQueue / C2DState: a device that takes messages for hours (a
// fleet benchmark, a soak) must not grow the hub without limit. IoT Hub
// itself keeps no such history on the device side; the service learns
// outcomes from feedback, which the hub does not model beyond this list.
const maxC2DDone = 1000

// finish records a message's final status; at maxC2DDone the oldest
// tenth goes in one step (counted in doneDropped).
func (q *c2dQueue) finish(st C2DStatus) {
	if len(q.done) >= maxC2DDone {
		k := maxC2DDone / 10
		q.done = append(q.done[:0], q.done[k:]...)
		q.doneDropped += uint64(k)
	}
	q.done = append(q.done, st)
}

// SendC2D enqueues a message for a device. It is delivered when the device
// is connected and subscribed (C2D-001), at QoS 1, and completed by its PUBACK
// (C2D-003).
func (h *Hub) SendC2D(deviceID string, m C2DMessage) (string, error) {
	id := iothub.Identity{DeviceID: deviceID}
	if _, err := h.reg.Get(id); err != nil {
		return "", err
	}
	if len(m.Payload) > iothub.MaxC2DBytes {
		return "", fmt.Errorf("C2D payload of %d bytes exceeds %d (C2D-007): %w", len(m.Payload), iothub.MaxC2DBytes, ErrTooLarge)
	}
	if m.TTL == 0 {
		m.TTL = iothub.C2DDefaultTTL
	}
	if m.TTL < iothub.C2DMinTTL && m.TTL > 0 || m.TTL > iothub.C2DMaxTTL {
		// Short TTLs below IoT Hub's 1-minute minimum are allowed so specs can
		// compress time; only the maximum is enforced.
		if m.TTL > iothub.C2DMaxTTL {
			return "", fmt.Errorf("TTL %s above the 48 h maximum", m.TTL)
		}
	}
	if m.MessageID == "" {
		m.MessageID = newMessageID()
	}
	bag := iothub.PropertyBag{{Name: iothub.PropMessageID, Value: m.MessageID},
		{Name: iothub.PropTo, Value: "/devices/" + deviceID + "/messages/deviceBound"}}
	if m.CorrelationID != "" {
		bag = append(bag, iothub.Property{Name: iothub.PropCorrelationID, Value: m.CorrelationID})
	}
	if m.Ack != "" {
		bag = append(bag, iothub.Property{Name: "iothub-ack", Value: m.Ack})
	}
	bag = append(bag, m.Properties...)
	now := time.Now()
	h.mu.Lock()
	q := h.queueOf(deviceID)
	if len(q.msgs) >= iothub.MaxC2DQueue {
		h.mu.Unlock()
		return "", fmt.Errorf("%s: %w", deviceID, ErrQueueFull)
	}
	h.c2dSeq++
	cm := &c2dMessage{seq: h.c2dSeq, msg: m, topic: iothub.C2DTopic(deviceID, bag),
		status: C2DStatus{MessageID: m.MessageID, State: C2DEnqueued, Enqueued: now, Expiry: now.Add(m.TTL)}}
	q.msgs = append(q.msgs, cm)
	c := h.active[deviceID]
	h.mu.Unlock()
	h.trace.add(Entry{ClientID: deviceID, Dir: DirEvent, Type: "c2d-enqueued", Topic: cm.topic, Extra: "messageId=" + m.MessageID})
	// No wait for a pending connection: the message is queued, and
	// whichever runs last of this and OnSessionEstablished (which marks the
	// connection established before it delivers the backlog) sends it.
	if c != nil {
		h.deliverC2D(c)
	}
	return m.MessageID, nil
}

func newMessageID() string {
	return newEtag() + strconv.FormatInt(time.Now().UnixNano()%1e6, 36)
}

func (h *Hub) queueOf(deviceID string) *c2dQueue {
	q := h.queues[deviceID]
	if q == nil {
		q = &c2dQueue{}
		h.queues[deviceID] = q
	}
	return q
}

// deliverC2D sends every deliverable message to c.
// Only the identity's active, established connection gets messages: one
// being taken over would lose them to its close, one still pending must
// send its CONNACK first (C2D-001, CONN-016).
func (h *Hub) deliverC2D(c *conn) {
	if c.identity.ModuleID != "" || !c.established.Load() || c.revoked.Load() {
		return // modules have no C2D endpoint (MOD-010)
	}
	filter := iothub.C2DFilter(c.identity.DeviceID)
	if !h.subscribed(c, filter) {
		return
	}
	h.mu.Lock()
	s := h.sessions[c.clientID]
	if s == nil || h.active[c.clientID] != c {
		h.mu.Unlock()
		return
	}
	granted := s.subs[filter]
	from := s.c2dFrom
	q := h.queueOf(c.identity.DeviceID)
	now := time.Now()
	var out []*c2dMessage
	keep := q.msgs[:0]
	for _, m := range q.msgs {
		switch {
		case now.After(m.status.Expiry) && m.status.State == C2DEnqueued:
			m.status.State = C2DExpired
			q.finish(m.status)
			continue
		case m.status.State == C2DEnqueued && m.seq > from:
			if m.status.DeliveryCount >= iothub.C2DDefaultMaxDeliveryCount {
				m.status.State = C2DDeliveryCountExceeded
				q.finish(m.status)
				continue
			}
			out = append(out, m)
		}
		keep = append(keep, m)
	}
	q.msgs = keep
	var sends []func()
	for _, m := range out {
		qos := byte(1)
		if granted == 0 {
			qos = 0
		}
		var pid uint16
		if qos == 1 {
			id, err := c.cl.NextPacketID()
			if err != nil {
				break
			}
			pid = uint16(id)
			c.mu.Lock()
			c.c2dInflight[pid] = m
			c.mu.Unlock()
			m.status.State = C2DInvisible
			m.conn, m.packetID = c, pid
		}
		dup := m.status.DeliveryCount > 0 // redelivery of the same message (C2D-004)
		m.status.DeliveryCount++
		pk := publishPacket(m.topic, m.msg.Payload, qos, pid, dup)
		if qos == 0 {
			// No PUBACK will come: a QoS 0 delivery completes on send.
			m.status.State = C2DCompleted
			m.status.Completed = now
		}
		sends = append(sends, func() { _ = h.send(c, pk) })
	}
	if len(out) > 0 {
		rest := q.msgs[:0]
		for _, m := range q.msgs {
			if m.status.State == C2DCompleted {
				q.finish(m.status)
				continue
			}
			rest = append(rest, m)
		}
		q.msgs = rest
	}
	h.mu.Unlock()
	for _, f := range sends {
		f()
	}
}

// completeC2D handles the PUBACK that completes a delivery (C2D-003).
func (h *Hub) completeC2D(c *conn, pid uint16) {
	c.mu.Lock()
	m := c.c2dInflight[pid]
	delete(c.c2dInflight, pid)
	c.mu.Unlock()
	if m == nil {
		return
	}
	h.mu.Lock()
	q := h.queueOf(c.identity.DeviceID)
	for i, x := range q.msgs {
		if x == m {
			q.msgs = append(q.msgs[:i], q.msgs[i+1:]...)
			break
		}
	}
	m.status.State = C2DCompleted
	m.status.Completed = time.Now()
	q.finish(m.status)
	h.mu.Unlock()
	h.notify()
}

// abandonC2D returns a lost connection's unacknowledged deliveries to the
// queue; they are redelivered with DUP set (C2D-004).
func (h *Hub) abandonC2D(c *conn) {
	c.mu.Lock()
	inflight := c.c2dInflight
	c.c2dInflight = map[uint16]*c2dMessage{}
	c.mu.Unlock()
	if len(inflight) == 0 {
		return
	}
	h.mu.Lock()
	for _, m := range inflight {
		if m.status.State == C2DInvisible {
			m.status.State = C2DEnqueued
			m.conn = nil
		}
	}
	next := h.active[c.clientID]
	h.mu.Unlock()
	// A connection that took this one over may be established already (its
	// backlog went out before these messages were back in the queue): they
	// go to it now, not at its next SUBSCRIBE or reconnect (C2D-004). One
	// still pending delivers them itself once established.
	if next != nil && next != c {
		h.deliverC2D(next)
	}
}

// C2DQueue returns the state of every message sent to a device: those still
// queued first, then completed or dead-lettered ones.
func (h *Hub) C2DQueue(deviceID string) []C2DStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	q := h.queueOf(deviceID)
	var out []C2DStatus
	for _, m := range q.msgs {
		out = append(out, m.status)
	}
	return append(out, q.done...)
}

// C2DState returns one message's state.
func (h *Hub) C2DState(deviceID, messageID string) (C2DStatus, bool) {
	for _, s := range h.C2DQueue(deviceID) {
		if s.MessageID == messageID {
			return s, true
		}
	}
	return C2DStatus{}, false
}
