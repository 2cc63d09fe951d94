package hub

import "github.com/mochi-mqtt/server/v2/packets"

// What other endpoint personalities share with the hub (rig/awsiot, the
// reference AWS IoT endpoint): the wire trace and its entries, so that
// fixtures, specs and reports read one trace format whatever cloud a run
// plays.

// NewTrace returns an empty wire trace keeping at most limit entries
// (oldest dropped; 0: unbounded); notify, when set, runs after each entry
// is added. Entries are masked on the way in, as the hub's are.
func NewTrace(limit int, notify func()) *Trace { return newTrace(limit, notify) }

// PacketEntry is the trace entry of an MQTT packet as the hub records it:
// packet type, PUBLISH / CONNECT / SUBSCRIBE fields, and for outbound
// packets (DirOut) the encoded header bytes. Connection fields are the
// caller's to fill.
func PacketEntry(dir string, pk packets.Packet) Entry {
	e := Entry{Dir: dir, Type: packetName(pk.FixedHeader.Type)}
	fillEntry(&e, pk)
	if dir == DirOut {
		e.Raw = encodeForTrace(pk)
	}
	return e
}
