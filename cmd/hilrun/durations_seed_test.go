package main

import (
	"testing"
	"time"
)

// TestDurationsSeed: the durations file's own measurements win; the seed
// fills only the specs it has not timed; the embedded seed parses and
// times the default suite of the virtual board; an export keeps the
// virtual board kinds and the current specs only.
func TestDurationsSeed(t *testing.T) {
	own := &durationsFile{Version: 1, Profiles: map[string]map[string]float64{"sim": {"a": 2000}}}
	seed := &durationsFile{Version: 1, Profiles: map[string]map[string]float64{"sim": {"a": 9000, "b": 700}, "sdk:x": {"c": 300}}}
	d, n := own.withSeed(seed)
	if n != 2 {
		t.Errorf("%d entries from the seed, want 2 (b, c)", n)
	}
	e := d.estimator("sim", false)
	if v, ok := e.of("a"); !ok || v != 2*time.Second {
		t.Errorf("a: %v %v (the file's own must win)", v, ok)
	}
	if v, ok := e.of("b"); !ok || v != 700*time.Millisecond {
		t.Errorf("b: %v %v (from the seed)", v, ok)
	}
	if v, ok := d.estimator("sdk:x", false).of("c"); !ok || v != 300*time.Millisecond {
		t.Errorf("sdk:x c: %v %v", v, ok)
	}
	if own.Profiles["sim"]["b"] != 0 {
		t.Error("withSeed changed the file it was given")
	}

	emb := durationsSeed()
	if emb == nil {
		t.Fatal("durations_seed.json does not parse (version 1 expected)")
	}
	if got := len(emb.Profiles["sim"]); got < 100 {
		t.Errorf("seed times %d specs of the virtual board, want the whole default suite", got)
	}
	for k := range emb.Profiles {
		if !seedKind(k) {
			t.Errorf("seed profile %q is not a virtual board kind", k)
		}
	}

	src := &durationsFile{Version: 1, Profiles: map[string]map[string]float64{
		"sim":      {"a": 1234.4, "gone": 5},
		"esp32s3":  {"a": 1},
		"sdk:node": {"a": 2},
	}}
	s := seedFrom(src, []string{"a"})
	if len(s.Profiles) != 2 || s.Profiles["sim"]["a"] != 1234 || len(s.Profiles["sim"]) != 1 || s.Profiles["sdk:node"]["a"] != 2 {
		t.Errorf("export %v", s.Profiles)
	}
}
