package sim

import (
	"fmt"
	"strconv"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/hilrun/hilrun/devicefw/agentproto"
)

// The overall operation timeout of a QoS 1 telemetry send (RECON-005,
// 002 L16709-16710, L16753): within a persistent session paho re-sends an
// unacknowledged PUBLISH at every reconnect (TEL-004), so the send is one
// operation across connections. It ends with the PUBACK of any copy, or
// at the operation timeout: then the message leaves the session store
// (no connection sends it again) and the failure is reported, in the
// telemetry.send answer and a telemetry.acked event with acked false.

// Defect switches of the operation timeout (DEFECTS.md, "Operation
// timeout").
const (
	DefRetryForever       = "retry-forever"
	DefRetryTimeoutSilent = "retry-timeout-silent"
)

var reconOpDefects = []Defect{
	{DefRetryForever, "RECON-005", "an unacknowledged QoS 1 telemetry message has no overall time limit: it stays in the session store and is sent again at every reconnect, and the send never ends with a failure (the C SDK's default retry policy has an infinite timeout)"},
	{DefRetryTimeoutSilent, "RECON-005", "at the operation timeout the message is dropped from the session store without telling the application: no failure answer, no event"},
}

// ackWatch sees, across the connections of one session, the PUBACKs of
// the QoS 1 messages the session store holds: paho deletes a message's
// outbound key when its PUBACK arrives, on whichever connection.
type ackWatch struct {
	mu        sync.Mutex
	waiters   map[string]chan struct{} // outbound key → closed at its PUBACK
	abandoned map[string]bool          // given up: never sent again
}

func newAckWatch() *ackWatch {
	return &ackWatch{waiters: map[string]chan struct{}{}, abandoned: map[string]bool{}}
}

func outboundKey(id uint16) string { return "o." + strconv.Itoa(int(id)) }

// wait returns a channel closed when the message under key is acknowledged.
func (w *ackWatch) wait(key string) chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch := w.waiters[key]
	if ch == nil {
		ch = make(chan struct{})
		w.waiters[key] = ch
	}
	return ch
}

func (w *ackWatch) forget(key string) {
	w.mu.Lock()
	delete(w.waiters, key)
	w.mu.Unlock()
}

// abandon gives the message under key up: the store drops it at the next
// resume, so no reconnect sends it again.
func (w *ackWatch) abandon(key string) {
	w.mu.Lock()
	delete(w.waiters, key)
	w.abandoned[key] = true
	w.mu.Unlock()
}

// ackStore is the session store as one connection's paho client sees it.
type ackStore struct {
	paho.Store
	w *ackWatch
}

func (a *ackStore) Put(key string, m packets.ControlPacket) {
	a.w.mu.Lock()
	delete(a.w.abandoned, key) // the packet id is taken by a new message
	a.w.mu.Unlock()
	a.Store.Put(key, m)
}

func (a *ackStore) Del(key string) {
	a.Store.Del(key)
	a.w.mu.Lock()
	ch := a.w.waiters[key]
	delete(a.w.waiters, key)
	delete(a.w.abandoned, key)
	a.w.mu.Unlock()
	if ch != nil {
		close(ch)
	}
}

// All leaves out (and deletes) the messages given up, so the resume after
// a reconnect does not send them again.
func (a *ackStore) All() []string {
	keys := a.Store.All()
	a.w.mu.Lock()
	var drop []string
	out := keys[:0:0]
	for _, k := range keys {
		if a.w.abandoned[k] {
			drop = append(drop, k)
			delete(a.w.abandoned, k)
			continue
		}
		out = append(out, k)
	}
	a.w.mu.Unlock()
	for _, k := range drop {
		a.Store.Del(k)
	}
	return out
}

func (a *ackStore) Get(key string) packets.ControlPacket {
	a.w.mu.Lock()
	gone := a.w.abandoned[key]
	a.w.mu.Unlock()
	if gone {
		return nil
	}
	return a.Store.Get(key)
}

// sessionStore is what connect gives paho for a persistent session.
func (s *session) sessionStore() paho.Store {
	if s.acks == nil {
		return s.store
	}
	return &ackStore{Store: s.store, w: s.acks}
}

// opTimeoutHello is the hello's declaration (PROTOCOL.md §3).
func opTimeoutHello() *agentproto.OperationTimeout {
	return &agentproto.OperationTimeout{DefaultMS: int(telemetryAckTimeout / time.Millisecond), Configurable: true}
}

// awaitAck waits for the outcome of a QoS 1 send made on c and reports it:
// true when a PUBACK came for it (any copy), false when the client gave up.
func (dc *deviceClient) awaitAck(s *session, c *conn, cc connConfig, tok paho.Token, res agentproto.TelemetryResult) (bool, string) {
	var key string
	var acked chan struct{}
	if c.acks != nil {
		if pt, ok := tok.(*paho.PublishToken); ok && pt.MessageID() != 0 {
			key = outboundKey(pt.MessageID())
			acked = c.acks.wait(key)
		}
	}
	forever, silent := dc.on(DefRetryForever), dc.on(DefRetryTimeoutSilent)
	limit := cc.opTimeout
	var expire <-chan time.Time
	if !forever {
		t := time.NewTimer(limit)
		defer t.Stop()
		expire = t.C
	}
	lost := c.lost
	if acked != nil {
		lost = nil // the session store sends it again after a reconnect (TEL-004)
	}
	var sctx <-chan struct{}
	if s != nil {
		sctx = s.ctx.Done()
	}
	done := dc.ackOrAny(tok.Done()) // telemetry-ack-any-puback only (defects_bounds_single.go)
	for {
		select {
		case <-done:
			if tok.Error() == nil {
				dc.ackedEvent(res, key, c)
				return true, ""
			}
			if acked == nil {
				return false, tok.Error().Error()
			}
			done = nil // this connection's token; a later copy may still be acknowledged
		case <-acked:
			dc.ackedEvent(res, "", c)
			return true, ""
		case <-lost:
			return false, "no PUBACK: connection lost (CleanSession 1: the message is not sent again)"
		case <-sctx:
			if key != "" {
				c.acks.forget(key)
			}
			return false, "client closed before the PUBACK"
		case <-expire:
			if key != "" {
				c.acks.abandon(key)
			}
			msg := fmt.Sprintf("no PUBACK within the operation timeout of %s; the message is given up and not sent again (RECON-005)", limit)
			if silent && sctx != nil {
				<-sctx // defect: the application is never told
				return false, "client closed"
			}
			if dc.on(DefOpTimeoutNoEvent) {
				return false, msg // defect: only a caller still waiting hears of it
			}
			fail := res
			fail.Error = msg
			dc.emit(agentproto.EvTelemetry, fail)
			return false, msg
		}
	}
}

func (dc *deviceClient) ackedEvent(res agentproto.TelemetryResult, key string, c *conn) {
	if key != "" {
		c.acks.forget(key)
	}
	res.Acked = true
	dc.emit(agentproto.EvTelemetry, res)
	dc.ringAck()
}

// opTimeoutOf reads retry.operationTimeoutMs.
func opTimeoutOf(r *agentproto.RetryConfig) time.Duration {
	if r != nil && r.OperationTimeoutMS > 0 {
		return time.Duration(r.OperationTimeoutMS) * time.Millisecond
	}
	return telemetryAckTimeout
}
