package main

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/reports"
)

// End-to-end tests of rig faults and interruptions: `hilrun run` on the
// virtual board flashed with a misbehaving image (--sim-misbehave, the
// simfaults modes) or with its firmware stopped. Each asserts the verdict in
// report.json and junit.xml, the exit status, a bounded wall time, and that
// no process of the run is left behind.

// The rig-fault runs get short watchdog deadlines ($HILRUN_TEST_RIG_TIMING,
// fixtures/rigtiming.go) instead of the production 4 s idle + 3 s probe,
// which they would otherwise wait out once per hang: what they prove (a
// hang is declared, recovered, given up, reported once) does not depend on
// the length of the deadline.
const (
	testWatchdogIdle  = time.Second
	testWatchdogProbe = 2 * time.Second
)

// rigTEL is the telemetry specs but TEL-013, whose heartbeat watch alone
// lasts 7 s: plenty of frames and events for the line faults to fall in,
// and specs to resume after a hang.
const rigTEL = "TEL && !TEL-013"

var testRigTiming = fmt.Sprintf("%s=watchdog-idle=%s,watchdog-probe=%s", fixtures.RigTimingEnv, testWatchdogIdle, testWatchdogProbe)

// rigRun is one `hilrun run` child with its output watched line by line.
type rigRun struct {
	t     *testing.T
	tmp   string // TMPDIR of the child: its work directory and the firmware's state are in here
	out   string // report directory
	cmd   *exec.Cmd
	start time.Time

	mu    sync.Mutex
	lines []string
	seen  chan struct{} // closed and replaced on every line
	done  chan struct{} // output closed and process waited for
	wall  time.Duration
	code  int
}

func startRig(t *testing.T, args ...string) *rigRun {
	t.Helper()
	return startRigEnv(t, []string{testRigTiming}, args...)
}

// startRigEnv is startRig with env added to the child's environment.
func startRigEnv(t *testing.T, env []string, args ...string) *rigRun {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	r := &rigRun{t: t, tmp: tmp, out: filepath.Join(tmp, "out"), seen: make(chan struct{}), done: make(chan struct{})}
	r.cmd = exec.Command(exe, append([]string{"run", "--out", r.out}, args...)...)
	// TMPDIR puts the run's work directory (and so the firmware's --state
	// argument) under tmp, which is how leftovers are found.
	r.cmd.Env = append(append(os.Environ(), asHilrunEnv+"=1", "TMPDIR="+tmp), env...)
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	r.cmd.Stderr = r.cmd.Stdout
	r.start = time.Now()
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			r.mu.Lock()
			r.lines = append(r.lines, sc.Text())
			close(r.seen)
			r.seen = make(chan struct{})
			r.mu.Unlock()
		}
		err := r.cmd.Wait()
		r.mu.Lock()
		r.wall = time.Since(r.start)
		r.code = r.cmd.ProcessState.ExitCode()
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() < 0 {
			r.code = -1
		}
		r.mu.Unlock()
		close(r.done)
	}()
	t.Cleanup(func() {
		select {
		case <-r.done:
		default:
			_ = r.cmd.Process.Kill()
			<-r.done
		}
	})
	return r
}

// waitLine waits (bounded) for an output line containing s.
func (r *rigRun) waitLine(s string, within time.Duration) {
	r.t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for i := 0; ; {
		r.mu.Lock()
		for ; i < len(r.lines); i++ {
			if strings.Contains(r.lines[i], s) {
				r.mu.Unlock()
				return
			}
		}
		seen := r.seen
		r.mu.Unlock()
		select {
		case <-seen:
		case <-r.done:
			r.mu.Lock()
			n := len(r.lines)
			r.mu.Unlock()
			if i >= n {
				r.t.Fatalf("run ended without a line containing %q:\n%s", s, r.output())
			}
		case <-deadline.C:
			r.t.Fatalf("no line containing %q within %s:\n%s", s, within, r.output())
		}
	}
}

func (r *rigRun) output() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.lines, "\n")
}

// wait waits (bounded) for the run to end and returns its exit status and
// wall time.
func (r *rigRun) wait(within time.Duration) (int, time.Duration) {
	r.t.Helper()
	select {
	case <-r.done:
	case <-time.After(within):
		r.t.Fatalf("run did not end within %s:\n%s", within, r.output())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.code, r.wall
}

// report loads report.json and junit.xml, checks that the junit counts
// never show a rig fault or an interruption as a failure, and that no
// process of the run is left.
func (r *rigRun) report() (*reports.Report, junitDoc) {
	r.t.Helper()
	rep, err := reports.Load(r.out)
	if err != nil {
		r.t.Fatalf("no report: %v\n%s", err, r.output())
	}
	b, err := os.ReadFile(filepath.Join(r.out, reports.JUnitFile))
	if err != nil {
		r.t.Fatal(err)
	}
	var j junitDoc
	if err := xml.Unmarshal(b, &j); err != nil {
		r.t.Fatal(err)
	}
	if left := leftovers(r.tmp); len(left) > 0 {
		r.t.Errorf("processes left behind: %v", left)
	}
	return rep, j
}

type junitDoc struct {
	Failures int `xml:"failures,attr"`
	Errors   int `xml:"errors,attr"`
	Skipped  int `xml:"skipped,attr"`
	Suites   []struct {
		Cases []struct {
			Name    string `xml:"name,attr"`
			Failure *struct {
				Type string `xml:"type,attr"`
			} `xml:"failure"`
			Error *struct {
				Type    string `xml:"type,attr"`
				Message string `xml:"message,attr"`
			} `xml:"error"`
			Skipped *struct {
				Message string `xml:"message,attr"`
			} `xml:"skipped"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// errorsOfType counts the test cases with an <error> of that type.
func (j junitDoc) errorsOfType(typ string) int {
	n := 0
	for _, s := range j.Suites {
		for _, c := range s.Cases {
			if c.Error != nil && c.Error.Type == typ {
				n++
			}
		}
	}
	return n
}

func (j junitDoc) skippedWith(prefix string) int {
	n := 0
	for _, s := range j.Suites {
		for _, c := range s.Cases {
			if c.Skipped != nil && strings.HasPrefix(c.Skipped.Message, prefix) {
				n++
			}
		}
	}
	return n
}

// leftovers lists the live processes whose command line mentions dir (the
// run itself, its firmware processes).
func leftovers(dir string) []string {
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(cmdline), dir) {
			continue
		}
		stat, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:])); len(f) > 0 && f[0] == "Z" {
			continue // a zombie has released everything
		}
		out = append(out, e.Name()+": "+strings.ReplaceAll(string(cmdline), "\x00", " "))
	}
	return out
}

func countSpecs(rep *reports.Report, st reports.SpecStatus) int {
	n := 0
	for _, s := range rep.Specs {
		if s.Status == st {
			n++
		}
	}
	return n
}

func faultKinds(rep *reports.Report) map[string]int {
	m := map[string]int{}
	for _, f := range rep.RigFaults {
		m[f.Kind]++
	}
	return m
}

// assertRigFault checks what every rig-fault run must show: exit 3, outcome
// rig-fault, no failed spec or requirement, rig faults as JUnit errors and
// never as failures.
func assertRigFault(t *testing.T, r *rigRun, code int, rep *reports.Report, j junitDoc) {
	t.Helper()
	if code != reports.ExitRigFault {
		t.Errorf("exit %d, want %d (rig fault)", code, reports.ExitRigFault)
	}
	if rep.Summary.Outcome != reports.OutcomeRigFault || rep.Summary.Verdict {
		t.Errorf("outcome %s verdict %v, want rig-fault", rep.Summary.Outcome, rep.Summary.Verdict)
	}
	if n := countSpecs(rep, reports.SpecFailed); n != 0 || rep.Summary.Requirements[reports.Fail] != 0 {
		t.Errorf("%d failed specs, %d failed requirements: a rig fault is not a firmware verdict", n, rep.Summary.Requirements[reports.Fail])
	}
	if j.Failures != 0 || j.errorsOfType("rig-fault") == 0 {
		t.Errorf("junit: %d failures, %d rig-fault errors", j.Failures, j.errorsOfType("rig-fault"))
	}
	if !strings.Contains(r.output(), "verdict: RIG FAULT") {
		t.Errorf("no RIG FAULT verdict line")
	}
	if t.Failed() {
		t.Log(r.output())
	}
}

// TestRigFaultSilentAfterHello: a board that answers hello and then nothing
// is declared hung within the watchdog's idle + probe time of
// its last frame, recovered by a reset twice (it hangs again each time),
// then given up: three rig-fault specs, the fourth not run, RIG FAULT, and
// the hang said once per hang.
func TestRigFaultSilentAfterHello(t *testing.T) {
	t.Parallel()
	r := startRig(t, "--sim-misbehave", "silent-after-hello", "--label-filter", "TEL-001 || TEL-002 || TEL-003 || TEL-005")
	code, wall := r.wait(60 * time.Second)
	rep, j := r.report()
	assertRigFault(t, r, code, rep, j)
	if n := countSpecs(rep, reports.SpecRigFault); n != 3 {
		t.Errorf("%d rig-fault specs, want 3 (one per hang)", n)
	}
	// The rest of the selection (its size grows with the suite) is not-run.
	if want, n := len(rep.Specs)-3, countSpecs(rep, reports.SpecNotRun); want < 1 || n != want || j.skippedWith("not run: rig fault") != want {
		t.Errorf("%d not-run specs (junit %d), want the %d left after three hangs", n, j.skippedWith("not run: rig fault"), want)
	}
	if !strings.Contains(rep.Run.RigFault, "board stopped responding at") || !strings.Contains(rep.Run.RigFault, fmt.Sprintf("no answer to echo within %s", testWatchdogProbe)) {
		t.Errorf("run rig fault %q", rep.Run.RigFault)
	}
	if n := strings.Count(r.output(), "RIG FAULT: board stopped responding at"); n != 3 {
		t.Errorf("the hang is reported %d times, want once per hang (3)", n)
	}
	for _, s := range rep.Specs {
		if s.Status == reports.SpecRigFault && s.Duration > testWatchdogIdle+testWatchdogProbe+2*time.Second {
			t.Errorf("spec %s took %s: hang → verdict should be within idle %s + probe %s", s.Name, s.Duration, testWatchdogIdle, testWatchdogProbe)
		}
	}
	if wall > 40*time.Second {
		t.Errorf("run took %s", wall)
	}
	t.Logf("silent-after-hello: exit %d in %s", code, wall)
}

// TestRigFaultHangAfter: a firmware that stops answering 2 s after every
// boot is recovered and resumed until the recoveries are used up; no spec
// is failed and the run ends in a bounded time.
func TestRigFaultHangAfter(t *testing.T) {
	t.Parallel()
	r := startRig(t, "--sim-misbehave", "hang-after:2s", "--label-filter", "RECON-011 || TWIN-010 || TEL")
	code, wall := r.wait(90 * time.Second)
	rep, j := r.report()
	assertRigFault(t, r, code, rep, j)
	if faultKinds(rep)["board-hung"] == 0 || countSpecs(rep, reports.SpecRigFault) == 0 {
		t.Errorf("no hang recorded: %v", faultKinds(rep))
	}
	if wall > 60*time.Second {
		t.Errorf("run took %s", wall)
	}
	t.Logf("hang-after:2s: exit %d in %s, %d rig-fault, %d passed, %d not run", code, wall,
		countSpecs(rep, reports.SpecRigFault), countSpecs(rep, reports.SpecPassed), countSpecs(rep, reports.SpecNotRun))
}

// TestRigFaultFirmwareStopped: the firmware process stopped (SIGSTOP) mid
// run is one hang: that spec is rig-fault, the board is reset (a stopped
// process can be killed), and the specs after it pass.
func TestRigFaultFirmwareStopped(t *testing.T) {
	t.Parallel()
	r := startRig(t, "--label-filter", rigTEL)
	r.waitLine("PASS ", 30*time.Second)
	pids, _ := filepath.Glob(filepath.Join(r.tmp, "hilrun-run-*", "board", "firmware.pid"))
	if len(pids) != 1 {
		t.Fatalf("firmware.pid: %v", pids)
	}
	b, err := os.ReadFile(pids[0])
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		t.Fatalf("firmware.pid %q", b)
	}
	stoppedAt := time.Now()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	r.waitLine("answers again", 20*time.Second)
	resumed := time.Since(stoppedAt)
	code, wall := r.wait(30 * time.Second)
	rep, j := r.report()
	assertRigFault(t, r, code, rep, j)
	if n := countSpecs(rep, reports.SpecRigFault); n != 1 || faultKinds(rep)["board-hung"] != 1 {
		t.Errorf("%d rig-fault specs, faults %v: want the one spec of the hang", n, faultKinds(rep))
	}
	last := rep.Specs[len(rep.Specs)-1]
	if last.Status != reports.SpecPassed || countSpecs(rep, reports.SpecNotRun) != 0 {
		t.Errorf("the run did not resume: last spec %s, %d not run", last.Status, countSpecs(rep, reports.SpecNotRun))
	}
	if resumed > 12*time.Second {
		t.Errorf("stop → resumed took %s", resumed)
	}
	t.Logf("SIGSTOP: resumed %s after the stop; exit %d in %s", resumed.Round(time.Millisecond), code, wall)
}

// TestRigFaultCrashAtBoot: a crash loop (crash-at-boot, --sim-misbehave)
// is a fast rig fault (exit 3) before any spec; the output and the message
// name the firmware log, which is kept in the report directory with the
// firmware's panic in it.
func TestRigFaultCrashAtBoot(t *testing.T) {
	t.Parallel()
	r := startRig(t, "--sim-misbehave", "crash-at-boot", "--label-filter", "CONN-005")
	code, wall := r.wait(30 * time.Second)
	rep, j := r.report()
	if code != reports.ExitRigFault || rep.Summary.Outcome != reports.OutcomeRigFault || j.Failures != 0 || j.errorsOfType("rig-fault") != 1 {
		t.Errorf("exit %d outcome %s junit failures %d rig-fault errors %d", code, rep.Summary.Outcome, j.Failures, j.errorsOfType("rig-fault"))
	}
	log := filepath.Join(r.out, "firmware.log")
	if _, err := os.Stat(log); err != nil || !strings.Contains(rep.Run.RigFault, log) {
		t.Errorf("run rig fault %q should name the kept log %s (%v)", rep.Run.RigFault, log, err)
	}
	if rep.Run.Interrupted || strings.Contains(r.output(), "run interrupted") {
		t.Error("a crash loop is reported as an interruption")
	}
	if b, err := os.ReadFile(log); err != nil || !strings.Contains(string(b), "panic: hilrun-sim") {
		t.Errorf("firmware log %s lacks the firmware's panic: %v\n%s", log, err, b)
	}
	if out := r.output(); !strings.Contains(out, "crash loop: firmware crashed 3 times") || !strings.Contains(out, log) {
		t.Errorf("the output does not say crash loop and point at the kept log %s", log)
	}
	if wall > 10*time.Second {
		t.Errorf("crash loop took %s to be a rig fault", wall)
	}
	if t.Failed() {
		t.Log(r.output())
	}
}

// TestRigFaultBadCRC: device frames corrupted on the line make the specs
// they fall in rig-fault (the calls waiting fail at once), never failed.
func TestRigFaultBadCRC(t *testing.T) {
	t.Parallel()
	r := startRig(t, "--sim-misbehave", "bad-crc:25", "--label-filter", rigTEL)
	code, wall := r.wait(60 * time.Second)
	rep, j := r.report()
	assertRigFault(t, r, code, rep, j)
	if faultKinds(rep)["corrupt-frame"] == 0 {
		t.Errorf("faults %v, want corrupt-frame", faultKinds(rep))
	}
	// A frame corrupted between two specs (an event a spec's message
	// raised after the spec ended, e.g. a late telemetry.acked) is a rig
	// fault of the run, outside any spec; the ones inside specs carry it.
	inSpec := 0
	for _, f := range rep.RigFaults {
		switch {
		case f.Spec != "":
			inSpec++
		case f.Kind != "seq-gap" && f.Kind != "corrupt-frame":
			t.Errorf("fault outside any spec: %+v", f)
		}
	}
	if inSpec == 0 {
		t.Errorf("no rig fault names its spec: %+v", rep.RigFaults)
	}
	if wall > 20*time.Second {
		t.Errorf("run took %s", wall)
	}
}

// TestRigFaultDropEvents: events lost on the line (sequence gaps) make the
// specs they fall in rig-fault.
func TestRigFaultDropEvents(t *testing.T) {
	t.Parallel()
	r := startRig(t, "--sim-misbehave", "drop-events:5", "--label-filter", rigTEL)
	code, wall := r.wait(60 * time.Second)
	rep, j := r.report()
	assertRigFault(t, r, code, rep, j)
	if faultKinds(rep)["seq-gap"] == 0 {
		t.Errorf("faults %v, want seq-gap", faultKinds(rep))
	}
	if wall > 30*time.Second {
		t.Errorf("run took %s", wall)
	}
}

// assertInterrupted: exit 1 within 5 s of the signal (prompt, with room
// for a loaded CI machine running -race packages beside it; the specs that
// use it make waiting out the rig's own deadlines take far longer), outcome interrupted,
// nothing failed, the interruption a JUnit error or skip, never a failure.
func assertInterrupted(t *testing.T, r *rigRun, signalled time.Time) (*reports.Report, junitDoc) {
	t.Helper()
	code, _ := r.wait(10 * time.Second)
	took := time.Since(signalled)
	rep, j := r.report()
	if code != reports.ExitFail || rep.Summary.Outcome != reports.OutcomeInterrupted || !rep.Run.Interrupted {
		t.Errorf("exit %d outcome %s interrupted %v, want 1, interrupted", code, rep.Summary.Outcome, rep.Run.Interrupted)
	}
	if took > 5*time.Second {
		t.Errorf("run ended %s after the signal, want ≤ 5 s", took)
	}
	if countSpecs(rep, reports.SpecFailed) != 0 || j.Failures != 0 {
		t.Errorf("%d failed specs, junit failures %d: an interruption is not a failure", countSpecs(rep, reports.SpecFailed), j.Failures)
	}
	if !strings.Contains(r.output(), "verdict: INTERRUPTED") {
		t.Error("no INTERRUPTED verdict line")
	}
	if t.Failed() {
		t.Log(r.output())
	}
	t.Logf("signal → exit %s", took.Round(time.Millisecond))
	return rep, j
}

// TestInterruptHungBoard: Ctrl-C while the board is hung (the watchdog
// probing it) ends the run at once, not when the probe gives up 9 s
// later: the cut spec interrupted, the others not run, exit 1.
func TestInterruptHungBoard(t *testing.T) {
	t.Parallel()
	// Idle 1 s, then a 10 s probe: Ctrl-C comes 1 s into the probe.
	r := startRigEnv(t, []string{fixtures.RigTimingEnv + "=watchdog-idle=1s,watchdog-probe=10s"}, "--sim-misbehave", "silent-after-hello", "--label-filter", "TEL")
	r.waitLine("capabilities", 30*time.Second)
	// The first spec's first call is unanswered from here on; 2 s in, the
	// watchdog's probe is out too.
	time.Sleep(2 * time.Second) // not synchronisation: how long the board has been hung when Ctrl-C comes
	t0 := time.Now()
	if err := r.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	rep, j := assertInterrupted(t, r, t0)
	if countSpecs(rep, reports.SpecInterrupted) != 1 || countSpecs(rep, reports.SpecNotRun) != len(rep.Specs)-1 {
		t.Errorf("specs %v, want one interrupted, the rest not run", rep.Summary.Specs)
	}
	if j.errorsOfType("interrupted") < 1 || j.skippedWith("not run") != len(rep.Specs)-1 {
		t.Errorf("junit: %d interrupted errors, %d not-run skips", j.errorsOfType("interrupted"), j.skippedWith("not run"))
	}
}

// TestInterruptDuringBoot: Ctrl-C while the board is still coming up (here
// a crash-looping image, so that boot takes a while) is an interruption
// (exit 1), not "board did not come up" (exit 3).
func TestInterruptDuringBoot(t *testing.T) {
	t.Parallel()
	r := startRig(t, "--sim-misbehave", "crash-at-boot", "--label-filter", "CONN-005")
	r.waitLine("flashing the virtual board", 30*time.Second)
	t0 := time.Now()
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	rep, _ := assertInterrupted(t, r, t0)
	if !strings.Contains(rep.Run.InterruptReason, "bring-up") || rep.Run.RigFault != "" || strings.Contains(r.output(), "did not come up") {
		t.Errorf("interrupt reason %q, rig fault %q", rep.Run.InterruptReason, rep.Run.RigFault)
	}
}
