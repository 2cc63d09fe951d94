package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/hilrun/hilrun/rig/hub/hubbench"
)

// TestBenchSmoke runs `hilrun bench` at toy size (the load generator is
// this test binary as `hilrun bench-load`) and checks the report's shape
// and that every operation completed. It asserts no speed.
func TestBenchSmoke(t *testing.T) {
	t.Parallel()
	out, code := hilrun(t, "bench", "--devices", "5", "--messages", "4", "--rounds", "2", "--mosquitto", "off",
		"--twin", "1", "--service-ops", "5", "--json")
	if code != 0 {
		t.Fatalf("hilrun bench exited %d:\n%s", code, out)
	}
	i := strings.Index(out, "{\n")
	if i < 0 {
		t.Fatalf("no JSON result in:\n%s", out)
	}
	var r hubbench.Result
	if err := json.Unmarshal([]byte(out[i:]), &r); err != nil {
		t.Fatalf("result is not JSON: %v\n%s", err, out)
	}
	if r.Devices != 5 || r.Hub.Telemetry.Count != 20 || r.Twin.Count != 5 || r.Methods.Count != 5 || r.C2D.Count != 5 {
		t.Fatalf("counts: devices %d, telemetry %d, twin %d, methods %d, c2d %d; want 5, 20, 5, 5, 5\n%s",
			r.Devices, r.Hub.Telemetry.Count, r.Twin.Count, r.Methods.Count, r.C2D.Count, out)
	}
	if r.Hub.Telemetry.Latency.P50 <= 0 || r.Hub.Memory.RSSBytes == 0 || r.Mosquitto != nil {
		t.Fatalf("figures not sane: %+v\n%s", r.Hub, out)
	}
	if !strings.Contains(out, "telemetry round 2/2") {
		t.Fatalf("no progress on stderr:\n%s", out)
	}
}

// TestBenchAgentSmoke measures a few echo round trips to the virtual board.
func TestBenchAgentSmoke(t *testing.T) {
	t.Parallel()
	out, code := hilrun(t, "bench", "--agent", "20")
	if code != 0 {
		t.Fatalf("hilrun bench --agent exited %d:\n%s", code, out)
	}
	if !strings.Contains(out, "agent echo round trip over the pty") || !strings.Contains(out, "median") || !strings.Contains(out, "(n=20)") {
		t.Fatalf("no echo figures:\n%s", out)
	}
}
