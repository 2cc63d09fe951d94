package awsiot

import (
	"errors"
	"fmt"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/hilrun/hilrun/rig/awsproto"
	"github.com/hilrun/hilrun/rig/hub"
)

// hooks are the endpoint's mochi hooks: tracing, CONNECT admission,
// authorization and the broker's limits, and the shadow service.
type hooks struct {
	mqtt.HookBase
	e *Endpoint
}

func (k *hooks) ID() string { return "hilrun-awsiot" }

func (k *hooks) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnSessionEstablished, mqtt.OnDisconnect,
		mqtt.OnPacketRead, mqtt.OnPacketEncode, mqtt.OnPacketProcessed:
		return true
	}
	return false
}

func (e *Endpoint) connOf(cl *mqtt.Client) *conn {
	if v, ok := e.conns.Load(cl); ok {
		return v.(*conn)
	}
	return nil
}

func (e *Endpoint) traceConn(c *conn, en hub.Entry) {
	en.ConnID, en.ClientID, en.Remote = c.id, c.clientID, c.remote
	e.trace.AddExternal(en)
}

// errClose makes mochi drop the connection (no DISCONNECT: AWS IoT closes
// the network connection).
var errClose = packets.ErrRejectPacket

// OnConnect admits a CONNECT: the certificate's thing must be allowed
// iot:Connect on client/{ClientId} (AWS-005: with the default policy,
// ClientId = thing name); otherwise AWS IoT closes the connection without
// a CONNACK. The keep-alive is brought into 30–1200 s.
func (k *hooks) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	e := k.e
	v, _ := e.infoByConn.Load(cl.Net.Conn)
	info, _ := v.(*connInfo)
	if info == nil || info.cert == nil {
		return errors.New("no TLS client certificate") // cannot happen on the TLS listener
	}
	c := &conn{id: info.id, cl: cl, clientID: pk.Connect.ClientIdentifier, thing: info.cert.Thing, certID: info.cert.ID, remote: cl.Net.Remote, subs: map[string]bool{}}
	en := hub.PacketEntry(hub.DirIn, pk)
	en.Extra = "thing=" + c.thing + " cert=" + c.certID[:16]
	e.traceConn(c, en)
	refuse := func(req, format string, a ...any) error {
		reason := fmt.Sprintf(format, a...)
		e.traceConn(c, hub.Entry{Dir: hub.DirEvent, Type: hub.EventConnRejected, Requirement: req, Reason: reason})
		return errors.New(reason)
	}
	if pk.ProtocolVersion != 4 && pk.ProtocolVersion != 5 {
		return refuse("AWS-001", "MQTT protocol level %d; AWS IoT speaks MQTT 3.1.1 and 5", pk.ProtocolVersion)
	}
	pol, ok := e.reg.thingPolicy(c.thing)
	if !ok {
		return refuse("AWS-005", "thing %q of the certificate is not registered", c.thing)
	}
	if c.clientID == "" || !pol.Allows("iot:Connect", "client/"+c.clientID, c.thing) {
		return refuse("AWS-005", "iot:Connect on client/%s is not allowed for thing %s (policy %s: the ClientId must be the thing name); AWS IoT closes the connection", c.clientID, c.thing, pol.Name)
	}
	if pk.Connect.WillFlag {
		if p := awsproto.TopicProblem(pk.Connect.WillTopic); p != "" || !pol.Allows("iot:Publish", "topic/"+pk.Connect.WillTopic, c.thing) {
			return refuse("AWS-010", "Will topic %q is not allowed for thing %s", pk.Connect.WillTopic, c.thing)
		}
	}
	if ka := awsproto.EffectiveKeepAlive(pk.Connect.Keepalive); ka != pk.Connect.Keepalive {
		e.traceConn(c, hub.Entry{Dir: hub.DirEvent, Type: hub.EventWarning, Requirement: "AWS-001",
			Reason: fmt.Sprintf("keep-alive %d s is outside 30–1200 s; AWS IoT applies %d s", pk.Connect.Keepalive, ka)})
		cl.State.Keepalive = ka
	}
	e.conns.Store(cl, c)
	return nil
}

func (k *hooks) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	return k.e.connOf(cl) != nil
}

// OnACLCheck: authorization is decided in OnPacketRead, where a refusal
// closes the connection as AWS IoT does.
func (k *hooks) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool { return true }

func (k *hooks) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	e := k.e
	c := e.connOf(cl)
	if c == nil {
		return
	}
	e.mu.Lock()
	old := e.active[c.clientID]
	e.active[c.clientID] = c
	e.mu.Unlock()
	if old != nil && old != c {
		e.traceConn(old, hub.Entry{Dir: hub.DirEvent, Type: hub.EventConnClosed, Reason: "a new connection with the same ClientId took over"})
	}
	e.traceConn(c, hub.Entry{Dir: hub.DirEvent, Type: hub.EventConnOpened, Extra: "thing=" + c.thing})
	e.notify()
}

func (k *hooks) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	e := k.e
	c := e.connOf(cl)
	if c == nil {
		return
	}
	e.conns.Delete(cl)
	e.infoByConn.Delete(cl.Net.Conn)
	e.mu.Lock()
	if e.active[c.clientID] == c {
		delete(e.active, c.clientID)
	}
	e.mu.Unlock()
	reason := "closed"
	if r := c.closing.Load(); r != nil {
		reason = "closed by the endpoint: " + *r
	} else if err != nil {
		reason = err.Error()
	}
	e.traceConn(c, hub.Entry{Dir: hub.DirEvent, Type: hub.EventConnClosed, Reason: reason})
	e.notify()
}

// OnPacketRead traces every inbound packet and enforces the broker's
// rules; a violation closes the connection (AWS IoT's answer to an
// unauthorized or over-limit publish or subscribe).
func (k *hooks) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	e := k.e
	c := e.connOf(cl)
	if c == nil || pk.FixedHeader.Type == packets.Connect {
		return pk, nil // CONNECT is traced by OnConnect
	}
	e.traceConn(c, hub.PacketEntry(hub.DirIn, pk))
	violation := func(req, format string, a ...any) (packets.Packet, error) {
		reason := fmt.Sprintf(format, a...)
		c.closing.Store(&reason)
		e.traceConn(c, hub.Entry{Dir: hub.DirEvent, Type: hub.EventViolation, Requirement: req, Reason: reason})
		return pk, errClose
	}
	pol, ok := e.reg.thingPolicy(c.thing)
	if !ok {
		return violation("AWS-005", "thing %s is no longer registered", c.thing)
	}
	switch pk.FixedHeader.Type {
	case packets.Publish:
		if pk.FixedHeader.Qos == 2 {
			return violation("AWS-006", "PUBLISH with QoS 2 on %q; AWS IoT supports QoS 0 and 1 only and closes the connection", pk.TopicName)
		}
		if n := len(pk.Payload); n > awsproto.MaxPayloadBytes {
			return violation("AWS-006", "PUBLISH of %d bytes exceeds AWS IoT's %d-byte message limit", n, awsproto.MaxPayloadBytes)
		}
		if p := awsproto.TopicProblem(pk.TopicName); p != "" {
			return violation("AWS-010", "PUBLISH to %q: %s", pk.TopicName, p)
		}
		if strings.HasPrefix(pk.TopicName, "$") {
			ref, isShadow := awsproto.ParseShadowTopic(pk.TopicName)
			if !isShadow || ref.Answer != "" {
				return violation("AWS-010", "PUBLISH to reserved topic %q, which devices may only subscribe to (or which does not exist)", pk.TopicName)
			}
			if pk.FixedHeader.Retain {
				return violation("AWS-010", "retained PUBLISH to reserved topic %q; AWS IoT keeps no retained messages on reserved topics", pk.TopicName)
			}
		}
		if !pol.Allows("iot:Publish", "topic/"+pk.TopicName, c.thing) {
			return violation("AWS-010", "iot:Publish on topic/%s is not allowed for thing %s (policy %s)", pk.TopicName, c.thing, pol.Name)
		}
	case packets.Subscribe:
		if len(pk.Filters) > awsproto.MaxFiltersPerSub {
			return violation("AWS-010", "SUBSCRIBE with %d filters; AWS IoT takes at most %d per request", len(pk.Filters), awsproto.MaxFiltersPerSub)
		}
		added := 0
		for _, f := range pk.Filters {
			if p := awsproto.FilterProblem(f.Filter); p != "" {
				return violation("AWS-010", "SUBSCRIBE to %q: %s", f.Filter, p)
			}
			if !pol.Allows("iot:Subscribe", "topicfilter/"+f.Filter, c.thing) {
				return violation("AWS-010", "iot:Subscribe on topicfilter/%s is not allowed for thing %s (policy %s)", f.Filter, c.thing, pol.Name)
			}
			if !c.subs[f.Filter] {
				added++
			}
		}
		if len(c.subs)+added > awsproto.MaxSubscriptions {
			return violation("AWS-010", "%d subscriptions would exceed AWS IoT's %d per connection", len(c.subs)+added, awsproto.MaxSubscriptions)
		}
		for _, f := range pk.Filters {
			c.subs[f.Filter] = true
		}
	case packets.Unsubscribe:
		for _, f := range pk.Filters {
			delete(c.subs, f.Filter)
		}
	}
	return pk, nil
}

// OnPacketEncode traces every outbound packet before it is written.
func (k *hooks) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	e := k.e
	if c := e.connOf(cl); c != nil {
		e.traceConn(c, hub.PacketEntry(hub.DirOut, pk))
	} else if cl.Net.Conn != nil {
		en := hub.PacketEntry(hub.DirOut, pk)
		en.ClientID, en.Remote = cl.ID, cl.Net.Remote
		e.trace.AddExternal(en)
	}
	return pk
}

// OnPacketProcessed runs the shadow service after the broker has handled
// (and for QoS 1 acknowledged) a request PUBLISH: the answer comes on
// `…/accepted` or `…/rejected`, as a separate message (AWS-012).
func (k *hooks) OnPacketProcessed(cl *mqtt.Client, pk packets.Packet, err error) {
	if err != nil || pk.FixedHeader.Type != packets.Publish {
		return
	}
	e := k.e
	c := e.connOf(cl)
	if c == nil {
		return
	}
	ref, ok := awsproto.ParseShadowTopic(pk.TopicName)
	if !ok || ref.Answer != "" {
		return
	}
	e.shadowRequest(ref, pk.Payload, c)
}
