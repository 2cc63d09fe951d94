package sim

import (
	"strings"
	"testing"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/iothub"
)

// telemetryBag decodes the property bag of a telemetry PUBLISH as sent.
func telemetryBag(t *testing.T, e hub.Entry) iothub.PropertyBag {
	t.Helper()
	_, raw, _ := strings.Cut(e.Topic, "/messages/events/")
	bag, err := iothub.ParsePropertyBag(raw)
	if err != nil {
		t.Fatalf("bag of %q: %v", e.Topic, err)
	}
	return bag
}

func isHeartbeat(t *testing.T, e hub.Entry) bool {
	if e.Dir != hub.DirIn || e.Type != "PUBLISH" || !strings.Contains(e.Topic, "/messages/events/") {
		return false
	}
	v, ok := telemetryBag(t, e).Get("hb")
	return ok && v == "1"
}

func TestHeartbeat(t *testing.T) {
	t.Parallel()
	r := newRig(t, "hb-dev", nil, nil)
	if _, err := r.fw.call(agentproto.OpHeartbeatStart, agentproto.HeartbeatArgs{IntervalMS: 100, Properties: map[string]string{"hb": "1"}}); err == nil || err.Code != agentproto.ErrNotConnected {
		t.Fatalf("heartbeat.start on a closed client: %v", err)
	}
	if _, err := r.fw.call(agentproto.OpHeartbeatStart, agentproto.HeartbeatArgs{IntervalMS: 100}); err == nil || err.Code != agentproto.ErrBadArgs {
		t.Fatalf("heartbeat.start without props: %v", err)
	}
	r.open()
	r.fw.must(agentproto.OpHeartbeatStart, agentproto.HeartbeatArgs{IntervalMS: 100, Properties: map[string]string{"hb": "1"}}, nil)
	var beats []hub.Entry
	r.entry("three heartbeats", func(hub.Entry) bool {
		beats = r.entries(func(e hub.Entry) bool { return isHeartbeat(t, e) })
		return len(beats) >= 3
	})
	for _, b := range beats {
		if len(b.Payload) != 0 {
			t.Errorf("heartbeat body %q, want empty", b.Payload)
		}
	}
	// Stopping it: no heartbeat is sent after the stop is answered and
	// the next message is on the wire.
	r.fw.must(agentproto.OpHeartbeatStart, agentproto.HeartbeatArgs{}, nil)
	n := len(r.entries(func(e hub.Entry) bool { return isHeartbeat(t, e) }))
	r.send(agentproto.TelemetryArgs{Payload: "after", Wait: true})
	if m := len(r.entries(func(e hub.Entry) bool { return isHeartbeat(t, e) })); m > n+1 {
		t.Errorf("%d heartbeats after the stop", m-n)
	}
}

func TestTracing(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name    string
		defects []string
		pct     int
		send    int
		stamped int
		check   func(string) bool
	}{
		{"all", nil, 100, 3, 3, func(v string) bool { n, err := iothub.ParseTraceState(v); return err == nil && n > 1e9 && n < 1e10 }},
		{"half", nil, 50, 4, 2, nil},
		{"off", nil, 0, 2, 0, nil},
		{DefTraceStateMillis, []string{DefTraceStateMillis}, 100, 1, 1, func(v string) bool { n, err := iothub.ParseTraceState(v); return err == nil && n > 1e12 }},
		{DefTraceStateISO, []string{DefTraceStateISO}, 100, 1, 1, func(v string) bool { _, err := iothub.ParseTraceState(v); return err != nil }},
		{DefTracingPerMille, []string{DefTracingPerMille}, 100, 3, 0, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, "trace-"+c.name, c.defects, nil)
			r.open()
			r.fw.must(agentproto.OpTracingSet, agentproto.TracingArgs{SamplingPct: c.pct}, nil)
			for i := 0; i < c.send; i++ {
				r.send(agentproto.TelemetryArgs{Payload: "t", Properties: map[string]string{"key": "property_value"}, Wait: true})
			}
			stamped := 0
			for _, e := range r.entries(isType(hub.DirIn, "PUBLISH")) {
				if !strings.Contains(e.Topic, "/messages/events/") {
					continue
				}
				for _, p := range telemetryBag(t, e) {
					if iothub.IsTraceStateName(p.Name) {
						stamped++
						if !strings.Contains(e.Topic, "tracestate=timestamp%3D") {
							t.Errorf("topic %q: tracestate not percent-encoded", e.Topic)
						}
						if c.check != nil && !c.check(p.Value) {
							t.Errorf("tracestate %q", p.Value)
						}
					}
				}
			}
			if stamped != c.stamped {
				t.Errorf("%d of %d messages carry tracestate, want %d", stamped, c.send, c.stamped)
			}
			// Tracing ends with the client session.
			r.fw.must(agentproto.OpClose, agentproto.CloseArgs{Graceful: true}, nil)
			r.open()
			r.send(agentproto.TelemetryArgs{Payload: "new-session", Wait: true})
			for _, e := range r.entries(func(e hub.Entry) bool { return e.Type == "PUBLISH" && string(e.Payload) == "new-session" }) {
				for _, p := range telemetryBag(t, e) {
					if iothub.IsTraceStateName(p.Name) {
						t.Errorf("tracing outlived client.close: %q", e.Topic)
					}
				}
			}
		})
	}
}
