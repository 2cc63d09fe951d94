package hub

import (
	"bytes"
	"sync"
	"testing"

	"github.com/hilrun/hilrun/rig/secrets"
)

// maskBenchOnce registers the benchmark's secrets once per process: the
// benchmark function runs several times and the registry only grows.
var maskBenchOnce sync.Once

// BenchmarkMaskEntry is what masking adds to each traced PUBLISH on the
// hot path (the keys of 1000 devices and a token each registered), with
// every core tracing at once.
func BenchmarkMaskEntry(b *testing.B) {
	maskBenchOnce.Do(func() {
		for i := 0; i < 1000; i++ {
			d := Device{DeviceID: "maskbench"}
			_ = normaliseAuth(&d.Authentication)
			registerSecrets(&d)
			secrets.AddBase64("token", NewKey()) // the golden client's SAS signature
		}
	})
	payload := bytes.Repeat([]byte{'x'}, 256)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			e := Entry{ClientID: "bench-0001", Dir: DirIn, Type: "PUBLISH", Topic: "devices/bench-0001/messages/events/",
				QoS: 1, PacketID: 7, Payload: payload, PayloadLen: len(payload)}
			maskEntry(&e)
			m := Message{Topic: e.Topic, Payload: payload}
			maskMessage(&m)
		}
	})
}
