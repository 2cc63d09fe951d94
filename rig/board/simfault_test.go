package board

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hilrun/hilrun/devicefw/agentproto"
)

// refFirmwareEnv makes the test binary run the reference firmware
// (devicefw/sim.Main), as the hilrun binary's sim-firmware command does, so
// that its rig misbehaviour modes are tested through the real board.
const refFirmwareEnv = "HILRUN_BOARD_REF_FIRMWARE"

// recoverBound is how long a reset or power cycle of a hung firmware may
// take, hello included: the board watchdog relies on it.
const recoverBound = 3 * time.Second

func refImage(t *testing.T, modes ...string) Image {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return WithMisbehave(Image{Path: exe, Env: []string{refFirmwareEnv + "=1"}}, modes)
}

// childPIDs lists this process's children from /proc (zombies included:
// an unreaped child is left behind too).
func childPIDs(t *testing.T) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	me := strconv.Itoa(os.Getpid())
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid …; comm may contain spaces and parentheses.
		rest := string(b[strings.LastIndexByte(string(b), ')')+1:])
		if f := strings.Fields(rest); len(f) > 1 && f[1] == me {
			out = append(out, pid)
		}
	}
	return out
}

// noChildrenLeft fails when a process this test started is still around.
func noChildrenLeft(t *testing.T) {
	t.Helper()
	if kids := childPIDs(t); len(kids) > 0 {
		t.Fatalf("processes left behind: %v", kids)
	}
}

// procState returns the state letter of pid ("T" stopped, "Z" zombie),
// "" when it does not exist.
func procState(pid int) string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// tryCall sends a request and waits up to d for its response; ok is false
// at the deadline (the way a host notices a hung firmware).
func (h *hostSide) tryCall(id uint32, op string, args any, d time.Duration) (*agentproto.Frame, bool) {
	h.t.Helper()
	req, _ := agentproto.Request(id, op, args)
	line, _ := agentproto.Encode(req)
	if _, err := h.port.Write(line); err != nil {
		h.t.Fatal(err)
	}
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		select {
		case l, ok := <-h.lines:
			if !ok {
				h.t.Fatal("port closed")
			}
			if f, err := agentproto.Decode([]byte(l)); err == nil && f.T == agentproto.KindResponse && f.ID == id {
				return f, true
			}
		case <-deadline.C:
			return nil, false
		}
	}
}

// waitHelloWithin waits for a hello event and fails after d.
func (h *hostSide) waitHelloWithin(d time.Duration, what string) agentproto.Hello {
	h.t.Helper()
	start := time.Now()
	hello := h.waitHello()
	if el := time.Since(start); el > d {
		h.t.Fatalf("%s: hello after %s, want within %s", what, el, d)
	}
	return hello
}

func readPIDFile(t *testing.T, s *Sim) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.cfg.StateDir, FirmwarePIDFile))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// TestSimCrashLoopDetected: an image that crashes at every boot is
// restarted with a backoff, declared a crash loop within a few seconds, and
// the error says why; the log is kept in LogDir after Close.
func TestSimCrashLoopDetected(t *testing.T) {
	logDir := filepath.Join(t.TempDir(), "report")
	s := newTestSim(t, SimConfig{Name: "loopy", LogDir: logDir})
	h := openHost(t, s)
	ctx, cancel := WithFault(context.Background(), s)
	defer cancel()
	start := time.Now()
	if err := s.Flash(context.Background(), refImage(t, "crash-at-boot")); err != nil {
		t.Fatal(err)
	}
	h.waitLine("panic on the UART", func(l string) bool { return strings.HasPrefix(l, "panic: hilrun-sim") })
	select {
	case <-s.Faulted():
	case <-time.After(5 * time.Second):
		t.Fatalf("no crash loop declared within 5 s; exits %+v", s.Exits())
	}
	took := time.Since(start)
	<-ctx.Done() // WithFault's context ends with the fault as its cause
	var cl *CrashLoopError
	if !errors.As(context.Cause(ctx), &cl) || !errors.Is(context.Cause(ctx), ErrCrashLoop) {
		t.Fatalf("context cause %v, want the crash loop", context.Cause(ctx))
	}
	if !errors.As(s.Fault(), &cl) || cl.Crashes != DefaultCrashLoopCrashes {
		t.Fatalf("fault %v", s.Fault())
	}
	msg := cl.Error()
	for _, want := range []string{"crash loop: firmware crashed 3 times in ", "s; last exit: crashed: exit status 2; stderr tail: panic: ",
		"stderr tail: panic: hilrun-sim: rig misbehaviour crash-at-boot", filepath.Join(logDir, FirmwareLogFile)} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	h.waitLine("crash-loop note", func(l string) bool { return strings.Contains(l, "crash loop: firmware crashed 3 times") })
	// Restarts were spaced by the backoff, not back to back.
	ex := s.Exits()
	if len(ex) != 3 {
		t.Fatalf("exits %+v, want 3 crashes and no more restarts", ex)
	}
	if gap := ex[1].At.Sub(ex[0].At); gap < DefaultCrashBackoff {
		t.Errorf("first restart after %s, want the %s backoff", gap, DefaultCrashBackoff)
	}
	if gap := ex[2].At.Sub(ex[1].At); gap < 2*DefaultCrashBackoff {
		t.Errorf("second restart after %s, want a doubled backoff", gap)
	}
	if s.Running() || s.FirmwarePID() != 0 {
		t.Fatal("board still running a crash-looping firmware")
	}
	if _, err := os.Stat(filepath.Join(s.cfg.StateDir, FirmwarePIDFile)); !os.IsNotExist(err) {
		t.Errorf("PID file left after the last crash: %v", err)
	}
	t.Logf("crash loop declared after %s", took)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	log, err := os.ReadFile(filepath.Join(logDir, FirmwareLogFile))
	if err != nil {
		t.Fatalf("firmware log not kept: %v", err)
	}
	if n := strings.Count(string(log), "panic: hilrun-sim"); n != 3 {
		t.Errorf("kept log has %d panics, want 3:\n%s", n, log)
	}
	noChildrenLeft(t)

	// A reset is a new attempt: the fault is cleared (and comes back).
	s2 := newTestSim(t, SimConfig{CrashBackoff: time.Millisecond})
	if err := s2.Flash(context.Background(), refImage(t, "crash-at-boot")); err != nil {
		t.Fatal(err)
	}
	first := s2.Faulted()
	select {
	case <-first:
	case <-time.After(5 * time.Second):
		t.Fatal("no crash loop")
	}
	if err := s2.Reset(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s2.Faulted() == first {
		t.Fatal("Reset kept the old fault channel")
	}
	select {
	case <-s2.Faulted():
	case <-time.After(5 * time.Second):
		t.Fatal("no crash loop after the reset: the mode did not survive it")
	}
	s2.Close()
	noChildrenLeft(t)
}

// TestSimCrashesWithHelloAreNoLoop: a firmware that comes up (hello) between
// its crashes is restarted every time.
func TestSimCrashesWithHelloAreNoLoop(t *testing.T) {
	s := newTestSim(t, SimConfig{CrashBackoff: time.Millisecond})
	h := openHost(t, s)
	if err := s.Flash(context.Background(), fakeImage(t)); err != nil {
		t.Fatal(err)
	}
	h.waitHello()
	for i := range DefaultCrashLoopCrashes + 1 {
		req, _ := agentproto.Request(uint32(i+1), "test.crash", nil)
		line, _ := agentproto.Encode(req)
		if _, err := h.port.Write(line); err != nil {
			t.Fatal(err)
		}
		if hello := h.waitHello(); hello.BootCount != i+2 {
			t.Fatalf("boot %d after crash %d", hello.BootCount, i+1)
		}
	}
	if s.Fault() != nil {
		t.Fatalf("fault %v for a firmware that said hello after every crash", s.Fault())
	}
}

// TestSimResetRecoversStoppedFirmware: a SIGSTOPped firmware (a hung chip)
// answers nothing; Reset kills it and boots a new one within the bound.
func TestSimResetRecoversStoppedFirmware(t *testing.T) {
	s := newTestSim(t, SimConfig{})
	h := openHost(t, s)
	if err := s.Flash(context.Background(), fakeImage(t)); err != nil {
		t.Fatal(err)
	}
	h.waitHello()
	pid := s.FirmwarePID()
	if pid == 0 || readPIDFile(t, s) != pid {
		t.Fatalf("FirmwarePID %d, PID file %d", pid, readPIDFile(t, s))
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// The signal takes effect when the kernel next schedules the process:
	// on a loaded host that can be after the echo below went out. The
	// kernel offers no event for it; /proc is read until it says stopped
	// (bounded), so the echo surely meets a stopped firmware.
	for deadline := time.Now().Add(2 * time.Second); procState(pid) != "T" && procState(pid) != "t"; {
		if time.Now().After(deadline) {
			t.Fatalf("firmware %d not stopped 2 s after SIGSTOP (state %q)", pid, procState(pid))
		}
		time.Sleep(2 * time.Millisecond)
	}
	if _, ok := h.tryCall(1, agentproto.OpEcho, agentproto.EchoArgs{Data: "x"}, 500*time.Millisecond); ok {
		t.Fatal("a stopped firmware answered")
	}
	start := time.Now()
	if err := s.Reset(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.waitHelloWithin(recoverBound, "reset of a stopped firmware")
	t.Logf("reset of a SIGSTOPped firmware: hello after %s", time.Since(start))
	if st := procState(pid); st != "" {
		t.Fatalf("old firmware %d still there (state %s)", pid, st)
	}
	if np := s.FirmwarePID(); np == 0 || np == pid || readPIDFile(t, s) != np {
		t.Fatalf("new PID %d (old %d, file %d)", np, pid, readPIDFile(t, s))
	}
	if res, ok := h.tryCall(2, agentproto.OpEcho, agentproto.EchoArgs{Data: "back"}, 5*time.Second); !ok || !res.OK {
		t.Fatalf("echo after the reset: %+v", res)
	}
}

// TestSimCloseKillsStoppedFirmware: Close ends a SIGSTOPped firmware and
// leaves no process behind.
func TestSimCloseKillsStoppedFirmware(t *testing.T) {
	s := newTestSim(t, SimConfig{})
	h := openHost(t, s)
	if err := s.Flash(context.Background(), fakeImage(t)); err != nil {
		t.Fatal(err)
	}
	h.waitHello()
	pid := s.FirmwarePID()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > recoverBound {
		t.Errorf("Close took %s", d)
	}
	if st := procState(pid); st != "" {
		t.Fatalf("stopped firmware %d survived Close (state %s)", pid, st)
	}
	noChildrenLeft(t)
}

// TestSimSilentFirmwareRecovery: the reference firmware with
// silent-after-hello goes quiet after its hello; Reset and PowerCycle bring
// it back within the bound, and the mode, part of the image, holds across
// both until a clean image is flashed.
func TestSimSilentFirmwareRecovery(t *testing.T) {
	s := newTestSim(t, SimConfig{})
	h := openHost(t, s)
	if err := s.Flash(context.Background(), refImage(t, "silent-after-hello")); err != nil {
		t.Fatal(err)
	}
	id := uint32(0)
	checkSilent := func(what string) {
		t.Helper()
		id++
		if res, ok := h.tryCall(id, agentproto.OpHello, nil, 5*time.Second); !ok || !res.OK {
			t.Fatalf("%s: hello request not answered: %+v", what, res)
		}
		id++
		if res, ok := h.tryCall(id, agentproto.OpEcho, agentproto.EchoArgs{Data: "x"}, 500*time.Millisecond); ok {
			t.Fatalf("%s: silent firmware answered %+v", what, res)
		}
		if !s.Running() {
			t.Fatalf("%s: silent firmware exited", what)
		}
	}
	h.waitHello()
	checkSilent("after flash")
	for _, step := range []struct {
		name string
		do   func(context.Context) error
	}{{"reset", s.Reset}, {"power cycle", s.PowerCycle}} {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), recoverBound)
		err := step.do(ctx)
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		h.waitHelloWithin(recoverBound, step.name+" of a silent firmware")
		t.Logf("%s of a silent firmware: hello after %s", step.name, time.Since(start))
		checkSilent("after " + step.name)
	}
	if err := s.Flash(context.Background(), refImage(t)); err != nil {
		t.Fatal(err)
	}
	h.waitHello()
	id++
	if _, ok := h.tryCall(id, agentproto.OpHello, nil, 5*time.Second); !ok {
		t.Fatal("hello not answered after a clean flash")
	}
	id++
	if res, ok := h.tryCall(id, agentproto.OpEcho, agentproto.EchoArgs{Data: "x"}, 5*time.Second); !ok || !res.OK {
		t.Fatalf("a clean image still silent: %+v", res)
	}
}

// TestSimBadCRCSurvivesReset: bad-crc:2 through the board: the second frame
// of every boot has a wrong CRC, across a reset.
func TestSimBadCRCSurvivesReset(t *testing.T) {
	s := newTestSim(t, SimConfig{})
	h := openHost(t, s)
	if err := s.Flash(context.Background(), refImage(t, "bad-crc:2")); err != nil {
		t.Fatal(err)
	}
	for boot := 1; boot <= 2; boot++ {
		h.waitHello() // frame 1: intact
		req, _ := agentproto.Request(uint32(boot), agentproto.OpEcho, agentproto.EchoArgs{Data: "x"})
		line, _ := agentproto.Encode(req)
		if _, err := h.port.Write(line); err != nil {
			t.Fatal(err)
		}
		l := h.waitLine("echo response (frame 2)", func(l string) bool { return agentproto.IsFrame([]byte(l)) })
		if _, err := agentproto.Decode([]byte(l)); !errors.Is(err, agentproto.ErrCRC) {
			t.Fatalf("boot %d: frame 2 %q: %v, want a CRC error", boot, l, err)
		}
		if boot == 1 {
			if err := s.Reset(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
}
