package suites

import (
	"testing"

	"github.com/hilrun/hilrun/rig/hub"
)

func TestTraceStateOnWire(t *testing.T) {
	for _, tc := range []struct {
		topic           string
		name, raw, want string
		ok              bool
	}{
		{"devices/d/messages/events/key=property_value&tracestate=timestamp%3D1539243209", "tracestate", "timestamp%3D1539243209", "timestamp=1539243209", true},
		// The C SDK's capture, 002 L30286.
		{"devices/d/messages/events/key=property_value&%24.tracestate=timestamp%3d1547666028", "%24.tracestate", "timestamp%3d1547666028", "timestamp=1547666028", true},
		// L30262 as printed: '=' left raw inside the value.
		{"devices/d/messages/events/tracestate=timestamp=1539243209", "tracestate", "timestamp=1539243209", "timestamp=1539243209", true},
		{"devices/d/messages/events/TraceState=timestamp%3D1", "TraceState", "timestamp%3D1", "timestamp=1", true},
		{"devices/d/messages/events/tracestate", "tracestate", "", "", true},
		{"devices/d/messages/events/traceparent=00-abc", "", "", "", false},
		{"devices/d/messages/events/", "", "", "", false},
		{"devices/d/messages/events/a=1&x%zz=2", "", "", "", false},
		{"devices/d/modules/m/messages/events/%24.tracestate=timestamp%3D7", "%24.tracestate", "timestamp%3D7", "timestamp=7", true},
		{"devices/d/twin/tracestate=timestamp%3D1", "", "", "", false},
	} {
		name, raw, got, ok := traceStateOnWire(tc.topic)
		if ok != tc.ok || name != tc.name || raw != tc.raw || got != tc.want {
			t.Errorf("traceStateOnWire(%q) = %q %q %q %v; want %q %q %q %v", tc.topic, name, raw, got, ok, tc.name, tc.raw, tc.want, tc.ok)
		}
	}
}

func TestIsHeartbeat(t *testing.T) {
	pub := func(topic string) hub.Entry { return hub.Entry{Dir: hub.DirIn, Type: "PUBLISH", Topic: topic} }
	for _, tc := range []struct {
		e    hub.Entry
		want bool
	}{
		{pub("devices/d/messages/events/heartbeat=true"), true},
		{pub("devices/d/messages/events/%24.mid=1&Heartbeat=true"), true},
		{pub("devices/d/messages/events/heartbeat=false"), false},
		{pub("devices/d/messages/events/heartbeat"), false},
		{pub("devices/d/messages/events/"), false},
		{pub("devices/d/messages/events/heartbeat=true&&x=1"), false}, // the bag does not decode (TEL-002)
		{pub("$iothub/twin/PATCH/properties/reported/?$rid=1&heartbeat=true"), false},
		{hub.Entry{Dir: hub.DirOut, Type: "PUBLISH", Topic: "devices/d/messages/events/heartbeat=true"}, false},
	} {
		if got := isHeartbeat(tc.e); got != tc.want {
			t.Errorf("isHeartbeat(%s %q) = %v, want %v", tc.e.Dir, tc.e.Topic, got, tc.want)
		}
	}
}

func FuzzTraceStateOnWire(f *testing.F) {
	for _, s := range []string{"devices/d/messages/events/tracestate=timestamp%3D1", "devices/d/messages/events/%24.tracestate=%zz", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		_, _, _, _ = traceStateOnWire(topic)
		_ = isHeartbeat(hub.Entry{Dir: hub.DirIn, Type: "PUBLISH", Topic: topic})
	})
}
