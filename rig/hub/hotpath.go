package hub

import (
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/hilrun/hilrun/rig/iothub"
	"github.com/hilrun/hilrun/rig/secrets"
)

// pubState is what a connection's read goroutine keeps about the PUBLISH
// packets it handles, so that one packet's topic is parsed once, not in
// each of the three places that need it (trace entry, topic rules,
// delivery), and its payload is scanned for secrets once, not for the
// trace entry and the telemetry message separately. A device publishes to
// the same topic over and over, so the parse is kept until the topic
// changes. Only the goroutine that reads the connection's packets (mochi's
// read loop, which runs OnPacketRead and then OnPublish for each packet)
// touches it, so it needs no lock.
type pubState struct {
	valid    bool
	topic    string
	parsed   iothub.Topic // iothub.ParseTopic(topic)
	parseErr error
	checked  iothub.Topic // iothub.CheckDevicePublish(identity, topic)
	checkErr error

	// The masking of the PUBLISH being handled, for payload (identified by
	// its backing array and length) and topic.
	maskPayload  []byte
	maskTopic    string
	mTopic       string
	topicFound   []secrets.Found
	mPayload     []byte
	payloadFound []secrets.Found
}

func (p *pubState) load(id iothub.Identity, topic string) {
	if p.valid && p.topic == topic {
		return
	}
	p.parsed, p.parseErr = iothub.ParseTopic(topic)
	p.checked, p.checkErr = iothub.CheckDevicePublish(id, topic)
	p.topic, p.valid = topic, true
}

// parseTopic is iothub.ParseTopic(topic) for a PUBLISH on c.
func (c *conn) parseTopic(topic string) (iothub.Topic, error) {
	c.pub.load(c.identity, topic)
	return c.pub.parsed, c.pub.parseErr
}

// checkPublish is iothub.CheckDevicePublish(c.identity, topic).
func (c *conn) checkPublish(topic string) (iothub.Topic, error) {
	c.pub.load(c.identity, topic)
	return c.pub.checked, c.pub.checkErr
}

// maskPublish masks the topic and payload of an inbound PUBLISH once for
// both its trace entry and its telemetry message, and returns the state
// to hand to them; nil when the payload is larger than what the trace
// masks (maskEntry then masks its own cut, as for any entry).
func (c *conn) maskPublish(pk *packets.Packet) *pubState {
	if len(pk.Payload) > 2*maxTracePayload {
		return nil
	}
	p := &c.pub
	p.maskPayload, p.maskTopic = pk.Payload, pk.TopicName
	p.mTopic, p.topicFound = secrets.MaskFind(pk.TopicName)
	p.mPayload, p.payloadFound = secrets.MaskBytesFind(pk.Payload)
	return p
}

// maskedFor returns the masking maskPublish did for this topic and
// payload, nil when it was for another packet.
func (p *pubState) maskedFor(topic string, payload []byte) *pubState {
	if p.maskTopic != topic || len(p.maskPayload) != len(payload) {
		return nil
	}
	if len(payload) > 0 && &p.maskPayload[0] != &payload[0] {
		return nil
	}
	return p
}

// apply sets the masked topic and payload on the fields given and notes
// what was found, as maskEntry and maskMessage do field by field.
func (p *pubState) apply(topic *string, payload *[]byte, seen *[]SecretSeen) {
	if p.topicFound != nil {
		*topic = p.mTopic
		*seen = appendSeen(*seen, "topic", p.topicFound)
	}
	if p.payloadFound != nil {
		*payload = p.mPayload
		*seen = appendSeen(*seen, "payload", p.payloadFound)
	}
}
