package hub

import (
	"bytes"
	"fmt"
	"net"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/hilrun/hilrun/rig/iothub"
)

// BenchmarkHooksTelemetryQoS1 is the hub's own work for one QoS 1
// telemetry message, without network, TLS or mochi's read loop: the
// hooks mochi calls for a PUBLISH from a device (OnPacketRead, OnPublish,
// OnPacketProcessed) and for the PUBACK it writes back (OnPacketEncode),
// rotating over N connected devices. It is the deterministic part of
// `hilrun bench`'s hub figure (ns/op and allocs/op per message).
func BenchmarkHooksTelemetryQoS1(b *testing.B) {
	for _, n := range []int{1, 1000} {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) { benchHooks(b, n) })
	}
}

func benchHooks(b *testing.B, n int) {
	h, err := Start(Config{Host: "hooks-bench.azure-devices.net", MQTTAddr: "127.0.0.1:0", HTTPSAddr: "off"})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	k := &hooks{h: h}
	type dev struct {
		cl       *mqtt.Client
		pub, ack packets.Packet
	}
	payload := bytes.Repeat([]byte{'p'}, 256)
	devs := make([]dev, n)
	for i := range devs {
		id := fmt.Sprintf("hb-%05d", i)
		a, z := net.Pipe()
		b.Cleanup(func() { a.Close(); z.Close() })
		cl := h.srv.NewClient(&hubConn{Conn: a}, "mqtts", id, false)
		c := h.newConn(cl, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4,
			Connect: packets.ConnectParams{ClientIdentifier: id}})
		c.identity = iothub.Identity{DeviceID: id}
		c.authed = true
		c.established.Store(true)
		devs[i] = dev{cl: cl,
			pub: packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, ProtocolVersion: 4,
				TopicName: "devices/" + id + "/messages/events/", Payload: payload, PacketID: 1},
			ack: packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, ProtocolVersion: 4, PacketID: 1}}
	}
	b.ReportAllocs()
	cpu0 := processCPU()
	ops := 0
	for i := 0; b.Loop(); i++ {
		ops++
		d := &devs[i%n]
		pk, err := k.OnPacketRead(d.cl, d.pub)
		if err != nil {
			b.Fatalf("OnPacketRead: %v", err)
		}
		if _, err := k.OnPublish(d.cl, pk); err != errSuccessIgnore {
			b.Fatalf("OnPublish: %v", err)
		}
		k.OnPacketEncode(d.cl, d.ack)
		k.OnPacketProcessed(d.cl, pk, nil)
	}
	// CPU time is steadier than wall time on a shared machine.
	b.ReportMetric(float64(processCPU()-cpu0)/float64(ops), "cpu-ns/op")
}
