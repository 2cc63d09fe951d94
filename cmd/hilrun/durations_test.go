package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hilrun/hilrun/reports"
)

// TestDurationsFile: a missing, broken or foreign file starts empty; an
// update keeps passed and failed specs' durations as a moving average and
// the boards' capabilities; unknown specs are estimated at the median.
func TestDurationsFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sub", "durations.json")
	for _, body := range []string{"", "{", `{"version":9,"profiles":{"sim":{"a":1}}}`} {
		if body != "" {
			_ = os.MkdirAll(filepath.Dir(p), 0o755)
			_ = os.WriteFile(p, []byte(body), 0o644)
		}
		if d := loadDurations(p); len(d.Profiles) != 0 || d.Version != 1 {
			t.Errorf("%q: %+v", body, d)
		}
	}
	rep := &reports.Report{Specs: []reports.SpecResult{
		{Name: "a", Status: reports.SpecPassed, Duration: 2 * time.Second},
		{Name: "b", Status: reports.SpecFailed, Duration: time.Second},
		{Name: "c", Status: reports.SpecNotRun, Duration: time.Hour},
	}}
	if err := updateDurations(p, "sim", rep, map[string][]string{"board-1": {"sas"}}); err != nil {
		t.Fatal(err)
	}
	rep.Specs[0].Duration = 4 * time.Second
	if err := updateDurations(p, "sim", rep, nil); err != nil {
		t.Fatal(err)
	}
	d := loadDurations(p)
	if got := d.Profiles["sim"]; got["a"] != 3000 || got["b"] != 1000 || len(got) != 2 {
		t.Errorf("profiles %v", d.Profiles)
	}
	if c := d.Boards["board-1"].Caps; len(c) != 1 || c[0] != "sas" {
		t.Errorf("boards %v", d.Boards)
	}
	e := d.estimator("sim", false)
	if v, ok := e.of("a"); !ok || v != 3*time.Second {
		t.Errorf("a: %v %v", v, ok)
	}
	if v, ok := e.of("zzz"); ok || v != estimateSpec {
		t.Errorf("unknown spec: %v %v", v, ok) // fewer than 5 known: the fixed estimate
	}
	if v, _ := d.estimator("sim/strict", true).of("a"); v != estimateSpecStrict {
		t.Errorf("strict estimate %v", v)
	}
}

// TestDurationsBorrowed: a board kind not timed yet (the C firmware, an SDK)
// borrows the Go firmware's virtual board timings.
func TestDurationsBorrowed(t *testing.T) {
	d := &durationsFile{Version: 1, Profiles: map[string]map[string]float64{"sim": {"a": 2000}, "sim:c": {"b": 500}}}
	e := d.estimator("sim:c", false)
	if v, ok := e.of("a"); !ok || v != 2*time.Second {
		t.Errorf("borrowed: %v %v", v, ok)
	}
	if v, ok := e.of("b"); !ok || v != 500*time.Millisecond {
		t.Errorf("own: %v %v", v, ok)
	}
}
