package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"syscall"
	"time"

	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/reports"
)

// The durations file keeps every spec's measured duration from earlier
// runs, per board kind, so that a sharded run (`--shards`, `--pool
// --shard`) balances its shards by time rather than by count, and can say
// what one board would have taken. Every run without defect switches or
// rig misbehaviour updates it; a shard's child does not (the sharded run
// records the merged report once). It also remembers the capabilities each
// inventory board declared in its last hello, so that a pool shard gives a
// spec needing a capability to a board that has it.

// durationsEnv overrides the durations file's path (tests set it).
const durationsEnv = "HILRUN_DURATIONS"

// Fallback per-spec estimates when the file knows nothing about a spec:
// the virtual board's median spec with compressed time, and with --strict.
const (
	estimateSpec       = 500 * time.Millisecond
	estimateSpecStrict = 3 * time.Second
)

type durationsFile struct {
	Version int `json:"version"`
	// Profiles: board kind (durationsKey) → spec name → milliseconds
	// (a moving average over runs).
	Profiles map[string]map[string]float64 `json:"profiles"`
	// Boards: inventory board id → capabilities of its last hello.
	Boards map[string]boardMemory `json:"boards,omitempty"`
}

type boardMemory struct {
	Caps []string  `json:"caps"`
	Seen time.Time `json:"seen"`
}

// durationsPath is the file: --durations, $HILRUN_DURATIONS, else
// <user cache dir>/hilrun/durations.json.
func durationsPath(flag string) string {
	if flag != "" {
		return flag
	}
	if p := os.Getenv(durationsEnv); p != "" {
		return p
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "hilrun", "durations.json")
}

// durationsKey names the board kind whose timings a run measures.
func durationsKey(o *runOptions) string {
	k := o.board
	switch {
	case o.firmware == "c":
		k = "sim:c"
	case o.board == "sim" && o.image != "":
		k = "sim:" + filepath.Base(o.image)
	}
	if o.cloud == fixtures.CloudAWS {
		k += "+aws"
	}
	if o.strict {
		k += "/strict"
	}
	return k
}

func loadDurations(path string) *durationsFile {
	d := &durationsFile{Version: 1, Profiles: map[string]map[string]float64{}, Boards: map[string]boardMemory{}}
	if path == "" {
		return d
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return d
	}
	var v durationsFile
	if json.Unmarshal(b, &v) != nil || v.Version != 1 {
		return d // unreadable or another version: start again
	}
	if v.Profiles == nil {
		v.Profiles = d.Profiles
	}
	if v.Boards == nil {
		v.Boards = d.Boards
	}
	return &v
}

// estimator gives a spec's expected duration for one board kind.
type estimator struct {
	known    map[string]float64
	base     map[string]float64 // the Go firmware's virtual board, same timing: for specs the kind has not timed yet
	fallback time.Duration
}

func (d *durationsFile) estimator(key string, strict bool) estimator {
	e := estimator{known: d.Profiles[key], fallback: estimateSpec}
	if strict {
		e.fallback = estimateSpecStrict
	}
	// A spec's time is mostly the waits it judges, the same on every
	// board: a kind not timed yet borrows the virtual board's.
	if b := durationsBase(strict); b != key {
		e.base = d.Profiles[b]
	}
	// Unknown specs are guessed at the median of the known ones.
	known := e.known
	if len(known) < 5 {
		known = e.base
	}
	if n := len(known); n >= 5 {
		v := make([]float64, 0, n)
		for _, ms := range known {
			v = append(v, ms)
		}
		sort.Float64s(v)
		e.fallback = time.Duration(v[n/2] * float64(time.Millisecond))
	}
	return e
}

func (e estimator) of(name string) (time.Duration, bool) {
	if ms, ok := e.known[name]; ok {
		return time.Duration(ms * float64(time.Millisecond)), true
	}
	if ms, ok := e.base[name]; ok {
		return time.Duration(ms * float64(time.Millisecond)), true
	}
	return e.fallback, false
}

// durationsBase is the key of the Go firmware's virtual board.
func durationsBase(strict bool) string {
	if strict {
		return "sim/strict"
	}
	return "sim"
}

// updateDurations folds a report's spec durations (passed and failed specs:
// the others did not run to their end) and the boards' capabilities into
// the file, under an exclusive lock (several runs may finish at once).
func updateDurations(path, key string, rep *reports.Report, boards map[string][]string) error {
	if path == "" || rep == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	lf, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	defer syscall.Flock(int(lf.Fd()), syscall.LOCK_UN) //nolint:errcheck
	d := loadDurations(path)
	m := d.Profiles[key]
	if m == nil {
		m = map[string]float64{}
		d.Profiles[key] = m
	}
	for _, s := range rep.Specs {
		if s.Status != reports.SpecPassed && s.Status != reports.SpecFailed {
			continue
		}
		ms := float64(s.Duration.Microseconds()) / 1000
		if old, ok := m[s.Name]; ok {
			ms = (old + ms) / 2 // moving average: one slow run does not dominate
		}
		m[s.Name] = ms
	}
	for id, caps := range boards {
		d.Boards[id] = boardMemory{Caps: slices.Clone(caps), Seen: time.Now().UTC()}
	}
	b, err := json.MarshalIndent(d, "", " ")
	if err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// recordRun updates the durations file after a single-board run (run.go):
// not for a shard's child, not with defects or rig misbehaviour on (their
// timings are not the board's).
func recordRun(o *runOptions, key string, rep *reports.Report) {
	if len(childSpecs) > 0 || len(o.defects) > 0 || len(o.misbehave) > 0 || rep == nil {
		return
	}
	_ = updateDurations(durationsPath(""), key, rep, nil)
}
