package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/hilrun/hilrun/reports"
)

// asHilrunEnv makes the test binary behave as the hilrun command, so tests
// can run it as a child process (and the virtual board can run it as its
// firmware, `hilrun sim-firmware`) without a separate build.
const asHilrunEnv = "HILRUN_TEST_AS_HILRUN"

// testParallel is how many of this package's parallel tests run at once
// by default (TestMain).
const testParallel = 4

func TestMain(m *testing.M) {
	// The child processes are this race-instrumented binary (hilrun
	// itself, a shard's or a pool board's run, the virtual board's
	// firmware): without atexit_sleep_ms=0 the race runtime sleeps 1 s in
	// every one of them at exit, once per run, reset and board. Races are
	// still detected and reported (exit status 66).
	if _, ok := os.LookupEnv("GORACE"); !ok {
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	// Spec durations measured by the tests' runs stay out of the user's
	// cache (durations.go).
	var durDir string
	if os.Getenv(durationsEnv) == "" {
		if d, err := os.MkdirTemp("", "hilrun-test-durations-"); err == nil {
			os.Setenv(durationsEnv, filepath.Join(d, "durations.json"))
			durDir = d
		}
	}
	// Runs of the whole suite in tests are on one board unless a test
	// asks for shards (TestRunDefaultVirtualBoard: the default sharding).
	if _, ok := os.LookupEnv(shardsEnv); !ok {
		os.Setenv(shardsEnv, "1")
	}
	if os.Getenv(asHilrunEnv) == "1" {
		if err := newRootCmd().Execute(); err != nil {
			os.Stderr.WriteString("hilrun: " + err.Error() + "\n")
			os.Exit(exitCode(err))
		}
		os.Exit(0)
	}
	// This package's tests mostly wait on child runs (the boards' timers,
	// the hub), not on the CPU: unless -parallel is given, four of them
	// run at once instead of GOMAXPROCS (two on a two-core machine).
	flag.Parse()
	parallelSet := false
	flag.Visit(func(f *flag.Flag) { parallelSet = parallelSet || f.Name == "test.parallel" })
	if !parallelSet {
		_ = flag.Set("test.parallel", strconv.Itoa(max(testParallel, runtime.GOMAXPROCS(0))))
	}
	code := m.Run()
	if durDir != "" {
		os.RemoveAll(durDir)
	}
	os.Exit(code)
}

// hilrun runs the test binary as `hilrun args...` and returns its combined
// output and exit status.
func hilrun(t *testing.T, args ...string) (string, int) {
	t.Helper()
	return hilrunEnv(t, nil, args...)
}

// quickSample is the label filter of the tests that need a passing run of
// something, not what it judges: one requirement of a single sub-second
// spec on the virtual board. (CONN-005, used before, now selects five
// specs, one of them the SAS session lifecycle of almost 4 s.)
const quickSample = "TEL-006"

// defaultSample is the label filter of TestRunDefaultVirtualBoard: specs
// of several areas, enough for every one of the default's boards to get
// some, none judging timing.
const defaultSample = "C2D || MOD || PNP || FUP"

// TestRunDefaultVirtualBoard is `hilrun run` the way it runs on a fresh
// clone: split across autoShardCount virtual boards (autoShards, shard.go),
// with one line per spec counted over the whole run as on one board, exit
// 0, and one report listing every catalog requirement with a status. It
// runs a sample ($HILRUN_SHARDS makes a filtered run take the default's
// sharding), not the whole suite: which runs are sharded by default is
// TestAutoShards', that a sharded run's report is a single-board run's is
// TestShardsMatchOneBoard's, and `.ci/run` runs the whole suite both ways
// (`hilrun run --shards 1` and the default `hilrun run`) right after these
// tests.
func TestRunDefaultVirtualBoard(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out, code := hilrunEnv(t, []string{fmt.Sprintf("%s=%d", shardsEnv, autoShardCount())}, "run", "--label-filter", defaultSample, "--out", dir)
	if code != 0 {
		t.Fatalf("hilrun run exited %d:\n%s", code, out)
	}
	rep, err := reports.Load(filepath.Join(dir, reports.JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Requirements) != 152 {
		t.Errorf("report lists %d requirements, want all 152", len(rep.Requirements))
	}
	for _, f := range []string{reports.JSONFile, reports.JUnitFile, reports.HTMLFile, reports.MarkdownFile, "console.log"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("report file %s: %v", f, err)
		}
	}
	if !strings.Contains(out, "verdict: PASS") {
		t.Errorf("no verdict line in output:\n%s", out)
	}
	if want := autoShardCount(); len(rep.Run.Shards) != want {
		t.Errorf("report names %d shards, want %d", len(rep.Run.Shards), want)
	}
	// One board's output: a line per spec counted over the whole run, no
	// shard's own summary.
	n := len(rep.Specs)
	last := regexp.MustCompile(fmt.Sprintf(`(?m)^(PASS|FAIL|N/A |PRE |SKIP) \[%d/%d\] `, n, n))
	if !strings.Contains(out, "virtual boards at once (the default") || !last.MatchString(out) || !strings.Contains(out, "verdict: PASS") {
		t.Errorf("output lacks the run's lines (sharding note, spec %d/%d, verdict):\n%s", n, n, out)
	}
	if strings.Contains(out, "[shard-") || strings.Count(out, "verdict:") != 1 {
		t.Errorf("a shard's own lines or verdict reach the default run's output:\n%s", out)
	}
	boards := map[string]bool{}
	for _, s := range rep.Specs {
		boards[s.Board] = true
		if s.Board == "" {
			t.Errorf("spec %s names no shard", s.Name)
		}
	}
	if len(boards) != autoShardCount() {
		t.Errorf("the specs ran on %d boards, want every one of the %d", len(boards), autoShardCount())
	}
}

// TestRunDefectFailsWithExitOne: a defect switch makes its requirement fail
// and the exit status says so.
func TestRunDefectFailsWithExitOne(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out, code := hilrun(t, "run", "--out", dir, "--defect", "username-no-host", "--label-filter", "CONN-006")
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out)
	}
	rep, err := reports.Load(filepath.Join(dir, reports.JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Requirements {
		if r.ID == "CONN-006" && r.Status != reports.Fail {
			t.Errorf("CONN-006 status %s, want fail", r.Status)
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, reports.JSONFile))
	if bytes.Contains(b, []byte("SharedAccessKey=")) {
		t.Error("report contains a SharedAccessKey")
	}
}

func TestRunRejectsUnknownDefect(t *testing.T) {
	t.Parallel()
	out, code := hilrun(t, "run", "--defect", "no-such-defect", "--out", t.TempDir())
	if code != 2 || !strings.Contains(out, "DEFECTS.md") {
		t.Fatalf("exit %d, want 2 with a pointer to DEFECTS.md:\n%s", code, out)
	}
}

// TestSelftest is the meta-test of the suite on a sample: for the PNP and
// FUP specs, every defect switch of their requirements is caught by a
// spec, the clean firmware passes every spec, every spec is failed by at
// least one defect, and the clean run goes in shards merged into one
// report. What it proves is the meta-test's machinery, so the sample is
// areas whose defects are caught within a second or two (a defect such as
// c2d-inbox-limit or module-clientid-device-only is caught only at a
// spec's 10-15 s deadline). `.ci/run` runs the whole meta-test (`hilrun
// selftest`, every defect) on the release build; set
// HILRUN_FULL_SELFTEST=1 to run it here too, under the race detector.
func TestSelftest(t *testing.T) {
	if testing.Short() {
		t.Skip("meta-test runs the suite once per defect")
	}
	dir := t.TempDir()
	// Two shards prove the clean run's merge as well as --jobs' four would;
	// the sample's few sub-second specs need no more boards booted.
	args := []string{"selftest", "--out", dir, "--jobs", "4", "--label-filter", "PNP || FUP", "--clean-shards", "2"}
	if os.Getenv("HILRUN_FULL_SELFTEST") == "1" {
		args = args[:5] // not parallel: the whole suite's timing specs would starve the other tests' runs
	} else {
		t.Parallel()
	}
	out, code := hilrun(t, args...)
	if code != 0 {
		t.Fatalf("selftest exited %d:\n%s", code, out)
	}
	var res selftestResult
	b, err := os.ReadFile(filepath.Join(dir, "selftest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if !res.OK || !res.CleanPassed || len(res.Unfailable) > 0 {
		t.Fatalf("selftest result %+v", res)
	}
	if len(res.Defects) < 10 || res.Specs < 8 {
		t.Errorf("the sample ran %d defects over %d specs: too small to prove anything", len(res.Defects), res.Specs)
	}
	// The clean run went in shards and was merged into one report.
	if clean, err := reports.Load(filepath.Join(dir, "clean", reports.JSONFile)); err != nil {
		t.Errorf("clean report: %v", err)
	} else if len(clean.Specs) < 8 || len(clean.Run.Shards) < 2 {
		t.Errorf("clean report: %d specs (want ≥ 8), %d shards (want ≥ 2)", len(clean.Specs), len(clean.Run.Shards))
	}
	t.Logf("%s", selftestMarkdown(res))
}

// TestConsoleVirtualBoard drives `hilrun console` with a script on stdin:
// decoded frames, agent calls and hub-side commands, secrets redacted.
func TestConsoleVirtualBoard(t *testing.T) {
	t.Parallel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := exec.Command(exe, "console")
	c.Env = append(os.Environ(), asHilrunEnv+"=1")
	c.Stdin = strings.NewReader("hello\n:open\ntelemetry.send {\"payload\":\"hi\",\"wait\":true}\n:invoke reboot {}\n:trace\nno.such.op\n:quit\n")
	outb, err := c.CombinedOutput()
	out := string(outb)
	if err != nil {
		t.Fatalf("console: %v\n%s", err, out)
	}
	for _, want := range []string{`# hello → {"proto":1,"fw":"hilrun-sim"`, `⚑ event conn {"state":"connected"}`, `# telemetry.send → {"ref":1,"acked":true`,
		"# method reboot → status 404", "dev→hub PUBLISH     devices/HIL-console-001/messages/events/", "unknown_op"} {
		if !strings.Contains(out, want) {
			t.Errorf("console output lacks %q", want)
		}
	}
	if strings.Contains(out, "SharedAccessKey=") {
		t.Error("console output shows a key")
	}
	if t.Failed() {
		t.Log(out)
	}
}

// TestReportReRenders: a run's report carries each requirement's row of
// the coverage table, and `hilrun report DIR` renders the report files
// again from report.json.
func TestReportReRenders(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if out, code := hilrun(t, "run", "--out", dir, "--label-filter", quickSample); code != 0 {
		t.Fatalf("run: %d\n%s", code, out)
	}
	r, err := reports.Load(filepath.Join(dir, reports.JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range r.Requirements {
		if q.Coverage == nil || q.Coverage.Dimensions == 0 || len(q.Coverage.Items) != q.Coverage.Dimensions {
			t.Errorf("%s: coverage %+v", q.ID, q.Coverage)
		}
	}
	if err := os.Remove(filepath.Join(dir, reports.HTMLFile)); err != nil {
		t.Fatal(err)
	}
	if out, code := hilrun(t, "report", dir); code != 0 {
		t.Fatalf("report: %d\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(dir, reports.HTMLFile)); err != nil {
		t.Fatal("report.html not re-rendered")
	}
	if out, code := hilrun(t, "report", t.TempDir()); code != 2 || !strings.Contains(out, "run directory") {
		t.Fatalf("report of an empty dir: %d\n%s", code, out)
	}
}
