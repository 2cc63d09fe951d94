package hub

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/hilrun/hilrun/rig/iothub"
)

// retainMarker travels in an inbound packet's (MQTT 5-only, so otherwise
// unused) user properties from OnPacketRead to OnPublish: the RETAIN flag is
// cleared before mochi could store the message (IoT Hub retains nothing,
// TEL-006) but the telemetry still gets x-opt-retain.
const retainMarker = "hilrun-retain"

// OnPacketRead records every inbound packet and enforces IoT Hub's topic
// rules. A violation closes the connection (ErrRejectPacket makes mochi
// drop it), which is IoT Hub's answer to anything undocumented.
func (k *hooks) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	h := k.h
	if pk.FixedHeader.Type == packets.Connect {
		if c := h.connOf(cl); c != nil {
			// A second CONNECT on a connection is a protocol violation
			// that closes it ([MQTT-3.1.0-2]). It must not replace the
			// connection's state: OnDisconnect would then miss the
			// registration and the identity would stay "connected".
			k.traceIn(c, pk)
			reason := "second CONNECT on the connection; MQTT 3.1.1 [MQTT-3.1.0-2] closes it"
			c.setClose(reason, "CONN-001")
			h.trace.add(Entry{ConnID: c.id, ClientID: c.clientID, Remote: c.remote, Dir: DirEvent, Type: EventViolation, Requirement: "CONN-001", Reason: reason})
			return pk, packets.ErrRejectPacket
		}
		c := h.newConn(cl, pk)
		k.traceIn(c, pk) // as sent, before admitConnect adjusts it for mochi
		return h.admitConnect(c, pk)
	}
	c := h.connOf(cl)
	if c == nil {
		return pk, nil
	}
	k.traceIn(c, pk)
	if c.revoked.Load() {
		// Its identity was disabled or deleted (Hub.revoke, 002 L11222):
		// nothing more is accepted while the close takes effect.
		return pk, packets.ErrRejectPacket
	}
	violation := func(req, format string, a ...any) (packets.Packet, error) {
		reason := fmt.Sprintf(format, a...)
		c.setClose(reason, req)
		h.trace.add(Entry{ConnID: c.id, ClientID: c.clientID, Remote: c.remote, Dir: DirEvent, Type: EventViolation, Requirement: req, Reason: reason})
		return pk, packets.ErrRejectPacket
	}
	switch pk.FixedHeader.Type {
	case packets.Publish:
		if pk.FixedHeader.Qos == 2 {
			return violation("CONN-020", "PUBLISH with QoS 2 on %q; IoT Hub closes the connection", pk.TopicName)
		}
		if strings.ContainsAny(pk.TopicName, "+#") {
			// MQTT 3.1.1 §4.7.1: wildcards never appear in a topic name; a
			// space in a property bag must be %20, not '+' (TEL-002).
			return violation("TEL-002", "PUBLISH topic %q contains an MQTT wildcard character", pk.TopicName)
		}
		t, err := c.checkPublish(pk.TopicName)
		if err != nil {
			return violation(reqOf(err, "TEL-001"), "PUBLISH to %q not allowed: %v", pk.TopicName, err)
		}
		if t.Kind == iothub.TopicTelemetry {
			if n := iothub.MessageSize(pk.Payload, t.Properties); n > iothub.MaxTelemetryBytes {
				return violation("TEL-005", "telemetry of %d bytes exceeds the %d-byte limit", n, iothub.MaxTelemetryBytes)
			}
		}
		if t.Kind == iothub.TopicMethodResponse && len(pk.Payload) > iothub.MaxMethodPayloadBytes {
			return violation("METH-005", "method response of %d bytes exceeds the %d-byte limit", len(pk.Payload), iothub.MaxMethodPayloadBytes)
		}
		if pk.FixedHeader.Retain {
			pk.FixedHeader.Retain = false
			pk.Properties.User = append(pk.Properties.User, packets.UserProperty{Key: retainMarker, Val: "true"})
		}
	case packets.Subscribe:
		if h.takeSubscribeCut(c) {
			reason := "rig fault: connection reset on SUBSCRIBE, before the SUBACK (CutAtNextSubscribe)"
			h.fault(c, "", reason)
			h.closeConn(c, reason, "", true)
			return pk, packets.ErrRejectPacket
		}
		h.mu.Lock()
		existing := 0
		var have map[string]byte
		if s := h.sessions[c.clientID]; s != nil {
			have = s.subs
			existing = len(s.subs)
		}
		h.mu.Unlock()
		added := map[string]bool{}
		for _, f := range pk.Filters {
			if _, ok := have[f.Filter]; !ok {
				added[f.Filter] = true
			}
		}
		if existing+len(added) > iothub.MaxSubscriptions {
			return violation("CONN-019", "%d active subscriptions would exceed the limit of %d", existing+len(added), iothub.MaxSubscriptions)
		}
		for _, f := range pk.Filters {
			class, err := iothub.ClassifySubscribe(c.identity, f.Filter)
			switch class {
			case iothub.FilterRejected:
				return violation(reqOf(err, "CONN-018"), "SUBSCRIBE to %q not allowed: %v", f.Filter, err)
			case iothub.FilterTolerated:
				h.warn(c, "CONN-018", fmt.Sprintf("undocumented filter %q (accepted by IoT Hub)", f.Filter))
			}
		}
	case packets.Puback:
		h.completeC2D(c, pk.PacketID)
	case packets.Disconnect:
		c.mu.Lock()
		c.graceful = true
		c.mu.Unlock()
	}
	return pk, nil
}

// reqOf extracts a requirement ID ("CONN-018") from an iothub error message
// when it names one.
func reqOf(err error, def string) string {
	if err == nil {
		return def
	}
	// The wire-convention package names the rule it applied; trust that
	// over text, which quotes device input (a property value "X-1" would
	// otherwise pass for a requirement ID).
	var ie *iothub.Error
	if errors.As(err, &ie) {
		if ie.Rule != "" {
			return ie.Rule
		}
		return def
	}
	for _, f := range strings.FieldsFunc(err.Error(), func(r rune) bool {
		return !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-')
	}) {
		if i := strings.IndexByte(f, '-'); i > 0 && i < len(f)-1 && len(f) <= 10 {
			return f
		}
	}
	return def
}

// OnPublish handles what a device publishes. Every documented topic is
// consumed by the hub (CodeSuccessIgnore: acknowledged, never routed to
// other MQTT clients); replies are queued to go out after the PUBACK.
func (k *hooks) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	h := k.h
	c := h.connOf(cl)
	if c == nil || c.revoked.Load() {
		return pk, packets.ErrRejectPacket // revoked: disabled or deleted (Hub.revoke)
	}
	t, err := c.parseTopic(pk.TopicName)
	if err != nil {
		return pk, packets.ErrRejectPacket
	}
	retained := false
	for _, u := range pk.Properties.User {
		if u.Key == retainMarker {
			retained = true
		}
	}
	switch t.Kind {
	case iothub.TopicTelemetry:
		if h.faultSilent(c) {
			return pk, packets.ErrRejectPacket // withhold PUBACK: the hub "stops answering"
		}
		if c.telemLimit != nil && !c.telemLimit.Allow() {
			c.afterAck = append(c.afterAck, func() {
				h.fault(c, "LIMITS-001", "telemetry rate above the identity's throttle; hub disconnects")
				h.closeConn(c, "telemetry throttled: rate above the configured limit", "LIMITS-001", false)
			})
			return pk, errSuccessIgnore
		}
		props := append(iothub.PropertyBag(nil), t.Properties...)
		if retained {
			props = props.Set(iothub.PropRetain, "true")
		}
		// Checked and stored under c.mu, under which Hub.revoke marks the
		// connection: once the registry call that disabled or deleted the
		// identity has returned, no message of it is recorded (002 L11222).
		c.mu.Lock()
		if c.revoked.Load() {
			c.mu.Unlock()
			return pk, packets.ErrRejectPacket
		}
		h.telem.add(Message{Identity: c.identity, ConnID: c.id, Topic: pk.TopicName, QoS: pk.FixedHeader.Qos,
			PacketID: pk.PacketID, Dup: pk.FixedHeader.Dup, Retain: retained, Properties: props,
			Payload: pk.Payload, Received: time.Now(), pre: c.pub.maskedFor(pk.TopicName, pk.Payload)})
		c.mu.Unlock()
		h.notify()
		if h.cfg.FaultInjection {
			h.faultFromTelemetry(c, props)
		}
	case iothub.TopicTwinGet:
		rid := t.RID // not t: a closure capturing t would move every PUBLISH's Topic to the heap
		c.afterAck = append(c.afterAck, func() { h.twinGet(c, rid) })
	case iothub.TopicTwinReported:
		rid := t.RID
		body := append([]byte(nil), pk.Payload...)
		c.afterAck = append(c.afterAck, func() { h.twinReported(c, rid, body) })
	case iothub.TopicMethodResponse:
		h.methodResponse(c, t, pk.Payload)
	}
	return pk, errSuccessIgnore
}

// errSuccessIgnore is packets.CodeSuccessIgnore converted to an error once:
// converting the struct on every return allocates.
var errSuccessIgnore error = packets.CodeSuccessIgnore

// OnPacketProcessed runs after mochi answered a packet (PUBACK, SUBACK), so
// replies the hub queued follow the acknowledgement, and C2D starts only
// after the SUBACK for its filter (C2D-001).
func (k *hooks) OnPacketProcessed(cl *mqtt.Client, pk packets.Packet, err error) {
	h := k.h
	c := h.connOf(cl)
	if c == nil {
		return
	}
	fns := c.afterAck
	c.afterAck = nil
	if c.revoked.Load() {
		return // disabled or deleted meanwhile (Hub.revoke): no twin work, no C2D
	}
	for _, fn := range fns {
		fn()
	}
	if pk.FixedHeader.Type == packets.Subscribe {
		h.deliverC2D(c)
	}
}

// OnSubscribed records the session's subscriptions.
func (k *hooks) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	h := k.h
	c := h.connOf(cl)
	if c == nil {
		return
	}
	h.mu.Lock()
	s := h.sessions[c.clientID]
	if s == nil {
		s = &session{subs: map[string]byte{}}
		h.sessions[c.clientID] = s
	}
	for i, f := range pk.Filters {
		if i < len(codes) && codes[i] < 0x80 {
			if _, had := s.subs[f.Filter]; !had && f.Filter == iothub.C2DFilter(c.identity.DeviceID) {
				s.c2dFrom = h.c2dSeq
			}
			s.subs[f.Filter] = codes[i]
		}
	}
	h.mu.Unlock()
}

func (k *hooks) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	h := k.h
	c := h.connOf(cl)
	if c == nil {
		return
	}
	h.mu.Lock()
	if s := h.sessions[c.clientID]; s != nil {
		for _, f := range pk.Filters {
			delete(s.subs, f.Filter)
		}
	}
	h.mu.Unlock()
}

// subscribed reports whether the identity's session holds filter.
func (h *Hub) subscribed(c *conn, filter string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.sessions[c.clientID]
	if s == nil {
		return false
	}
	if _, ok := s.subs[filter]; ok {
		return true
	}
	// "$iothub/twin/#" (tolerated, CONN-018) covers both twin filters.
	if strings.HasPrefix(filter, "$iothub/twin/") {
		_, ok := s.subs[iothub.TwinWildcardFilter]
		return ok
	}
	return false
}

// OnPacketEncode suppresses DISCONNECT: an MQTT 3.1.1 server never sends
// one, and IoT Hub just closes TCP (CONN-016). mochi writes DISCONNECT on
// takeover; an oversize limit makes WritePacket skip it.
//
// It also records the outbound packet, here rather than in OnPacketSent:
// mochi calls OnPacketSent after the bytes are on the socket, so a fast
// device answer (a PUBACK, a method response) could be traced before the
// packet it answers. Recording before the write keeps cause before effect
// in the trace; the bytes are encoded here the way WritePacket encodes them.
func (k *hooks) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type == packets.Disconnect {
		pk.Mods.MaxSize = 1
		return pk
	}
	h := k.h
	c := h.connOf(cl)
	e := Entry{Dir: DirOut, Type: packetName(pk.FixedHeader.Type)}
	if c != nil {
		e.ConnID, e.ClientID, e.Remote = c.id, c.clientID, c.remote
	} else {
		e.ClientID, e.Remote = cl.ID, cl.Net.Remote
	}
	fillEntry(&e, pk)
	e.Raw = encodeForTrace(pk)
	h.trace.add(e)
	return pk
}

// traceBufs holds encode buffers for encodeForTrace, so tracing an outbound
// packet allocates only the bytes it keeps.
var traceBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// encodeForTrace encodes an outbound packet as WritePacket will and returns
// the bytes the trace keeps (Entry.Raw): the whole packet, or for a PUBLISH
// its header and topic (the payload is in Entry.Payload). nil when the type
// is not traced as bytes or encoding fails.
func encodeForTrace(pk packets.Packet) []byte {
	buf := traceBufs.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 64*1024 { // don't pin a large PUBLISH's buffer
			buf.Reset()
			traceBufs.Put(buf)
		}
	}()
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackEncode(buf)
	case packets.Publish:
		err = pk.PublishEncode(buf)
	case packets.Puback:
		err = pk.PubackEncode(buf)
	case packets.Pubrec:
		err = pk.PubrecEncode(buf)
	case packets.Pubrel:
		err = pk.PubrelEncode(buf)
	case packets.Pubcomp:
		err = pk.PubcompEncode(buf)
	case packets.Suback:
		err = pk.SubackEncode(buf)
	case packets.Unsuback:
		err = pk.UnsubackEncode(buf)
	case packets.Pingresp:
		err = pk.PingrespEncode(buf)
	default:
		return nil
	}
	if err != nil {
		return nil
	}
	b := buf.Bytes()
	if pk.FixedHeader.Type == packets.Publish {
		n := len(b) - len(pk.Payload)
		if n <= 0 || n > len(b) {
			return nil
		}
		b = b[:n]
	}
	return bytes.Clone(b)
}

// send writes a hub-originated packet to a device connection.
func (h *Hub) send(c *conn, pk packets.Packet) error {
	if h.faultSilent(c) {
		return nil
	}
	return c.cl.WritePacket(pk)
}

func publishPacket(topic string, payload []byte, qos byte, id uint16, dup bool) packets.Packet {
	return packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos, Dup: dup},
		TopicName:   topic,
		Payload:     payload,
		PacketID:    id,
	}
}
