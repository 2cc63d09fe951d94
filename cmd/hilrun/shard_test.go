package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hilrun/hilrun/reports"
	"github.com/hilrun/hilrun/suites"
)

// shardSample is a small label-filtered subset with specs of several areas
// and facts of the report's "TLS and clock" section (root rotation, the
// clock, the PnP model ID), each spec under a second on the virtual board.
const shardSample = "CERT-001 || CERT-002 || CERT-003 || CLOCK-002 || C2D || PNP"

// TestShardsMatchOneBoard: the same subset run on one board and split
// across three boards gives the same report, verdict by verdict: the same
// specs in the same order with the same statuses, the same requirement
// statuses, summary and facts, the same report files; the sharded one also
// names the shard of every spec. The single run records the spec durations
// the sharded run then balances by.
func TestShardsMatchOneBoard(t *testing.T) {
	t.Parallel() // its own durations file
	dir := t.TempDir()
	dur := filepath.Join(dir, "durations.json")
	one, sharded := filepath.Join(dir, "one"), filepath.Join(dir, "sharded")
	out, code := hilrunEnv(t, []string{durationsEnv + "=" + dur}, "run", "--label-filter", shardSample, "--out", one)
	if code != 0 {
		t.Fatalf("one board: exit %d\n%s", code, out)
	}
	out, code = hilrunEnv(t, []string{durationsEnv + "=" + dur}, "run", "--shards", "3", "--label-filter", shardSample, "--out", sharded)
	if code != 0 {
		t.Fatalf("three shards: exit %d\n%s", code, out)
	}
	if !strings.Contains(out, "balanced by measured durations") || !strings.Contains(out, "speed-up ≈") {
		t.Errorf("the sharded run does not say how it balanced or its speed-up:\n%s", out)
	}
	a, err := reports.Load(filepath.Join(one, reports.JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	b, err := reports.Load(filepath.Join(sharded, reports.JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Specs) < 15 {
		t.Fatalf("the sample ran only %d specs", len(a.Specs))
	}
	for _, d := range verdictDiffs(a, b) {
		t.Errorf("differs (one board vs shards): %s", d)
	}
	names := func(r *reports.Report) []string {
		var n []string
		for _, s := range r.Specs {
			n = append(n, s.Name)
		}
		return n
	}
	if !slices.Equal(names(a), names(b)) {
		t.Errorf("spec order differs:\none board %q\nshards    %q", names(a), names(b))
	}
	if x, y := mustJSON(t, a.Summary), mustJSON(t, b.Summary); x != y {
		t.Errorf("summary differs:\none board %s\nshards    %s", x, y)
	}
	facts := func(r *reports.Report) []string {
		var f []string
		for _, x := range r.TLSClock {
			f = append(f, x.Kind+"|"+x.Name+"|"+x.Spec)
		}
		return f
	}
	if !slices.Equal(facts(a), facts(b)) || len(a.TLSClock) == 0 {
		t.Errorf("TLS and clock facts differ:\none board %q\nshards    %q", facts(a), facts(b))
	}
	shards := map[string]bool{}
	for _, s := range b.Specs {
		shards[s.Board] = true
		if s.Board == "" {
			t.Errorf("spec %s names no shard", s.Name)
		}
	}
	if len(b.Run.Shards) != 3 || len(shards) != 3 {
		t.Errorf("%d shards in run.shards, specs name %d", len(b.Run.Shards), len(shards))
	}
	if b.Run.LabelFilter != shardSample || b.Board.Firmware.Name != a.Board.Firmware.Name {
		t.Errorf("run metadata: label filter %q, firmware %q", b.Run.LabelFilter, b.Board.Firmware.Name)
	}
	// The same report files; the same JSON shape (keys), apart from the
	// sharded run's own additive fields.
	for _, f := range []string{reports.JSONFile, reports.JUnitFile, reports.HTMLFile, reports.MarkdownFile, "console.log"} {
		if _, err := os.Stat(filepath.Join(sharded, f)); err != nil {
			t.Errorf("sharded report file %s: %v", f, err)
		}
	}
	ka, kb := jsonKeys(t, filepath.Join(one, reports.JSONFile)), jsonKeys(t, filepath.Join(sharded, reports.JSONFile))
	kb = slices.DeleteFunc(kb, func(k string) bool { return strings.HasPrefix(k, ".run.shards") || strings.HasSuffix(k, "[].board") })
	for _, k := range ka {
		if !slices.Contains(kb, k) {
			t.Errorf("report.json key %s missing from the sharded report", k)
		}
	}
	for _, k := range kb {
		if !slices.Contains(ka, k) {
			t.Errorf("report.json key %s only in the sharded report", k)
		}
	}
	ja, _ := os.ReadFile(filepath.Join(one, reports.JUnitFile))
	jb, _ := os.ReadFile(filepath.Join(sharded, reports.JUnitFile))
	if x, y := bytes.Count(ja, []byte("<testcase ")), bytes.Count(jb, []byte("<testcase ")); x != y {
		t.Errorf("junit.xml: %d test cases on one board, %d sharded", x, y)
	}
}

// TestShardsVerdicts: a defect fails its requirement in a sharded run (exit
// 1); a board that never comes up leaves its specs not-run and the run a
// rig fault (exit 3), not a failure; bad flag combinations exit 2.
func TestShardsVerdicts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out, code := hilrun(t, "run", "--shards", "2", "--defect", "username-no-host", "--label-filter", "CONN-005 || CONN-006 || TEL-001", "--out", filepath.Join(dir, "defect"))
	if code != 1 {
		t.Fatalf("defect: exit %d, want 1\n%s", code, out)
	}
	rep, err := reports.Load(filepath.Join(dir, "defect", reports.JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range rep.Requirements {
		if q.ID == "CONN-006" && q.Status != reports.Fail {
			t.Errorf("CONN-006 is %s, want fail", q.Status)
		}
	}
	if rep.Run.Defects[0] != "username-no-host" {
		t.Errorf("run.defects %v", rep.Run.Defects)
	}

	out, code = hilrun(t, "run", "--shards", "2", "--sim-misbehave", "crash-at-boot", "--label-filter", "CONN-005 || TEL-001", "--out", filepath.Join(dir, "rig"))
	if code != exitRigFault {
		t.Fatalf("crash at boot: exit %d, want %d\n%s", code, exitRigFault, out)
	}
	rep, err = reports.Load(filepath.Join(dir, "rig", reports.JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Outcome() != reports.OutcomeRigFault || !strings.Contains(rep.Run.RigFault, "shard-1: board did not come up") {
		t.Errorf("outcome %s, run.rigFault %q", rep.Outcome(), rep.Run.RigFault)
	}
	// Every selected spec (how many grows with the suite) is not-run.
	if len(rep.Specs) < 2 || countSpecs(rep, reports.SpecNotRun) != len(rep.Specs) {
		t.Errorf("%d specs, %d not-run, want every one not-run: %+v", len(rep.Specs), countSpecs(rep, reports.SpecNotRun), rep.Specs)
	}

	for _, args := range [][]string{
		{"run", "--shards", "2", "--board", "serial", "--port", "/dev/null"},
		{"run", "--shard"},
		{"run", "--durations", "x.json"},
		{"run", "--shards", "2", "--pool"},
		{"run", "--shards", "0"},
	} {
		if out, code := hilrun(t, append(args, "--out", filepath.Join(dir, "bad"))...); code != 2 {
			t.Errorf("%q: exit %d, want 2\n%s", args, code, out)
		}
	}
}

// TestShardsInterrupt: Ctrl-C (SIGINT) on a sharded run stops every shard
// quickly; the report of what ran is written and the exit status is 1.
func TestShardsInterrupt(t *testing.T) {
	t.Parallel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// Not RECON-001: its backoff-cap check judges timing that the tests
	// running beside this one can starve, and a failure before the signal
	// would make the outcome fail, not interrupted.
	c := exec.Command(exe, "run", "--shards", "2", "--label-filter", "RECON && !RECON-001", "--out", dir)
	c.Env = append(os.Environ(), asHilrunEnv+"=1")
	var buf syncBuffer
	c.Stdout, c.Stderr = &buf, &buf
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(buf.String(), "PASS ") < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // polling the child's output; no event to wait on
	}
	t0 := time.Now()
	_ = c.Process.Signal(syscall.SIGINT)
	err = c.Wait()
	took := time.Since(t0)
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, buf.String())
	}
	if took > 8*time.Second {
		t.Errorf("took %s after SIGINT to stop", took)
	}
	rep, err := reports.Load(filepath.Join(dir, reports.JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Run.Interrupted || rep.Outcome() != reports.OutcomeInterrupted || countSpecs(rep, reports.SpecPassed) < 2 {
		t.Errorf("interrupted %v, outcome %s, %d passed", rep.Run.Interrupted, rep.Outcome(), countSpecs(rep, reports.SpecPassed))
	}
}

// TestDealSpecs: longest first to the least loaded board; a spec needing a
// capability goes to a board known to declare it.
func TestDealSpecs(t *testing.T) {
	specs := []suites.SpecInfo{{Name: "a"}, {Name: "b"}, {Name: "c", Capabilities: []string{"x509"}}, {Name: "d"}, {Name: "e"}}
	durs := []time.Duration{4 * time.Second, 3 * time.Second, time.Second, 2 * time.Second, 2 * time.Second}
	bins, loads := dealSpecs(specs, durs, []shardWorker{{id: "1"}, {id: "2"}})
	if d := loads[0] - loads[1]; d > time.Second || d < -time.Second {
		t.Errorf("unbalanced: %v (bins %v)", loads, bins)
	}
	for _, b := range bins {
		if !slices.IsSorted(b) {
			t.Errorf("bin %v not in run order", b)
		}
	}
	bins, _ = dealSpecs(specs, durs, []shardWorker{{id: "1", caps: []string{"sas"}}, {id: "2", caps: []string{"sas", "x509"}}})
	if !slices.Contains(bins[1], 2) {
		t.Errorf("the x509 spec went to the board without x509: %v", bins)
	}
	bins, _ = dealSpecs(specs, durs, []shardWorker{{id: "1", caps: []string{"sas"}}, {id: "2"}})
	if !slices.Contains(bins[1], 2) {
		t.Errorf("the x509 spec went to the board known to lack x509 rather than the unknown one: %v", bins)
	}
}

func hilrunEnv(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := exec.Command(exe, args...)
	c.Env = append(append(os.Environ(), asHilrunEnv+"=1"), env...)
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	err = c.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), code
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// jsonKeys lists the key paths of a JSON file (array elements merged).
func jsonKeys(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	var keys []string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				p := prefix + "." + k
				if !slices.Contains(keys, p) {
					keys = append(keys, p)
				}
				walk(p, e)
			}
		case []any:
			for _, e := range x {
				walk(prefix+"[]", e)
			}
		}
	}
	walk("", v)
	return keys
}

// syncBuffer is a bytes.Buffer safe for a child's output and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestPoolShard: `--pool --shard` splits one suite run across the
// inventory's boards: one report, each spec naming the board that ran it,
// and the boards' capabilities remembered for the next split.
func TestPoolShard(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	inv := writeInventory(t, dir, []string{"sim-a", "sim-b"}, nil)
	dur := filepath.Join(dir, "durations.json")
	out, code := hilrunEnv(t, []string{durationsEnv + "=" + dur}, "run", "--pool", "--shard", "--inventory", inv, "--label-filter", "CONN-005 || TEL-001 || TEL-002 || C2D-001", "--out", filepath.Join(dir, "pool"))
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	rep, err := reports.Load(filepath.Join(dir, "pool", reports.JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	boards := map[string]int{}
	for _, s := range rep.Specs {
		boards[s.Board]++
	}
	if len(rep.Specs) < 4 || boards["sim-a"] == 0 || boards["sim-b"] == 0 || len(boards) != 2 {
		t.Errorf("specs per board %v (%d specs)", boards, len(rep.Specs))
	}
	d := loadDurations(dur)
	if len(d.Boards["sim-a"].Caps) == 0 || len(d.Profiles["sim"]) != len(rep.Specs) {
		t.Errorf("durations file: boards %v, %d specs timed", d.Boards, len(d.Profiles["sim"]))
	}
	out, code = hilrun(t, "run", "--pool", "--shard", "--inventory", writeMixedInventory(t, dir), "--out", filepath.Join(dir, "mixed"))
	if code != 2 || !strings.Contains(out, "one kind") {
		t.Errorf("boards of two kinds: exit %d, want 2\n%s", code, out)
	}
}

func writeMixedInventory(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "mixed.yaml")
	body := "boards:\n  - id: sim-a\n    profile: sim\n  - id: dev-1\n    profile: esp32\n    chip: esp32s3\n    port: /dev/null\n"
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPlanReruns: a spec not applicable on one pool board goes again to a
// board of the run that declared the capability it needs; with no such
// board it stays not applicable.
func TestPlanReruns(t *testing.T) {
	x := suites.SpecInfo{ID: "x", Name: "x [CONN-012]", Capabilities: []string{"x509"}}
	plain := suites.SpecInfo{ID: "p", Name: "p [CONN-005]"}
	children := []*shardChild{{id: "a", specs: []suites.SpecInfo{x, plain}}, {id: "b"}, {id: "c"}}
	caps := map[string][]string{"a": {"sas"}, "b": {"sas"}, "c": {"sas", "x509"}}
	got := planReruns(children, caps, map[string][]string{"a": {x.Name, plain.Name}})
	if len(got["c"]) != 1 || got["c"][0].ID != "x" || len(got["b"]) != 0 || len(got["a"]) != 0 {
		t.Errorf("reruns %v", got)
	}
	caps["c"] = []string{"sas"}
	if got := planReruns(children, caps, map[string][]string{"a": {x.Name}}); len(got) != 0 {
		t.Errorf("no board declares x509, yet reruns %v", got)
	}
}
