package board

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.bug.st/serial"
	"golang.org/x/term"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/devicefw/sim"
)

// fakeFirmwareEnv makes the test binary act as a minimal firmware (see
// fakeFirmware), so the board's mechanics are tested without the reference
// firmware.
const fakeFirmwareEnv = "HILRUN_BOARD_FAKE_FIRMWARE"

func TestMain(m *testing.M) {
	// The child processes are this race-instrumented binary (the virtual
	// board's firmware): without atexit_sleep_ms=0 the race runtime sleeps
	// 1 s in every one of them at exit, once per reset and board. Races
	// are still detected and reported (exit status 66).
	if _, ok := os.LookupEnv("GORACE"); !ok {
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	if os.Getenv(fakeFirmwareEnv) == "1" {
		os.Exit(fakeFirmware(os.Args[1:]))
	}
	if os.Getenv(refFirmwareEnv) == "1" {
		os.Exit(sim.Main(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// fakeFirmware speaks just enough of the agent protocol: a boot banner, a
// hello event carrying the boot count, echo, reset (exit ExitReset) and a
// crash operation.
func fakeFirmware(args []string) int {
	fs := flag.NewFlagSet("fakefw", flag.ContinueOnError)
	uart := fs.String("uart", "", "")
	state := fs.String("state", "", "")
	boardName := fs.String("board", "", "")
	var defects multiFlag
	fs.Var(&defects, "defect", "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	f, err := os.OpenFile(*uart, os.O_RDWR, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open uart:", err)
		return 2
	}
	if _, err := term.MakeRaw(int(f.Fd())); err != nil {
		fmt.Fprintln(os.Stderr, "raw:", err)
		return 2
	}
	boot := 1
	countFile := filepath.Join(*state, "bootcount")
	if b, err := os.ReadFile(countFile); err == nil {
		boot, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		boot++
	}
	_ = os.WriteFile(countFile, []byte(strconv.Itoa(boot)), 0o600)
	send := func(fr *agentproto.Frame) {
		line, _ := agentproto.Encode(fr)
		_, _ = f.Write(line)
	}
	fmt.Fprintf(f, "ets Jun  8 2016 00:22:57\r\n\r\nrst:0x1 (POWERON_RESET),boot:0x13\r\n")
	hello, _ := agentproto.Event(1, 0, agentproto.EvHello, agentproto.Hello{Proto: 1, Firmware: "fake", Board: *boardName, BootCount: boot, Defects: defects})
	send(hello)
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return 2
		}
		fr, err := agentproto.Decode(line)
		if err != nil {
			continue
		}
		switch fr.Op {
		case agentproto.OpEcho:
			send(&agentproto.Frame{T: agentproto.KindResponse, ID: fr.ID, OK: true, Data: fr.Args})
		case agentproto.OpReset:
			res, _ := agentproto.Response(fr.ID, nil)
			send(res)
			return ExitReset
		case "test.crash":
			fmt.Fprintln(os.Stderr, "panic: boom")
			return 2
		case "test.rtc":
			_ = os.WriteFile(filepath.Join(*state, "rtc.json"), []byte(`{}`), 0o600)
			res, _ := agentproto.Response(fr.ID, nil)
			send(res)
		}
	}
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func fakeImage(t *testing.T) Image {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return Image{Path: exe, Env: []string{fakeFirmwareEnv + "=1"}}
}

// hostSide reads the board's serial port into lines and frames.
type hostSide struct {
	t     *testing.T
	port  io.ReadWriteCloser
	lines chan string
}

func openHost(t *testing.T, b Board) *hostSide {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p, err := b.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h := &hostSide{t: t, port: p, lines: make(chan string, 256)}
	go func() {
		r := bufio.NewReader(p)
		for {
			line, err := r.ReadString('\n')
			if line != "" {
				h.lines <- strings.TrimRight(line, "\r\n")
			}
			if err != nil { // port closed by the test's cleanup
				close(h.lines)
				return
			}
		}
	}()
	t.Cleanup(func() { p.Close() })
	return h
}

// waitLine returns the first line for which match holds, within 10 s.
func (h *hostSide) waitLine(what string, match func(string) bool) string {
	h.t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	var seen []string
	for {
		select {
		case l, ok := <-h.lines:
			if !ok {
				h.t.Fatalf("port closed while waiting for %s; saw %q", what, seen)
			}
			if match(l) {
				return l
			}
			seen = append(seen, l)
		case <-deadline.C:
			h.t.Fatalf("no %s within 10 s; saw %q", what, seen)
		}
	}
}

func (h *hostSide) waitHello() agentproto.Hello {
	h.t.Helper()
	l := h.waitLine("hello event", func(l string) bool {
		f, err := agentproto.Decode([]byte(l))
		return err == nil && f.Ev == agentproto.EvHello
	})
	f, _ := agentproto.Decode([]byte(l))
	var hello agentproto.Hello
	if err := jsonUnmarshal(f.Data, &hello); err != nil {
		h.t.Fatal(err)
	}
	return hello
}

func (h *hostSide) call(id uint32, op string, args any) *agentproto.Frame {
	h.t.Helper()
	req, _ := agentproto.Request(id, op, args)
	line, _ := agentproto.Encode(req)
	if _, err := h.port.Write(line); err != nil {
		h.t.Fatal(err)
	}
	l := h.waitLine(fmt.Sprintf("response to %s #%d", op, id), func(l string) bool {
		f, err := agentproto.Decode([]byte(l))
		return err == nil && f.T == agentproto.KindResponse && f.ID == id
	})
	f, _ := agentproto.Decode([]byte(l))
	return f
}

func newTestSim(t *testing.T, cfg SimConfig) *Sim {
	t.Helper()
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	s, err := NewSim(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestSimFlashBootAndEcho(t *testing.T) {
	s := newTestSim(t, SimConfig{Name: "vb1", Defects: []string{"d1"}})
	if s.Info().Profile != "sim" || !strings.HasPrefix(s.Info().Port, "/dev/pts/") {
		t.Fatalf("info %+v", s.Info())
	}
	h := openHost(t, s)
	if err := s.Flash(context.Background(), fakeImage(t)); err != nil {
		t.Fatal(err)
	}
	h.waitLine("ROM banner", func(l string) bool { return strings.HasPrefix(l, "rst:0x1") })
	hello := h.waitHello()
	if hello.Board != "vb1" || hello.BootCount != 1 || len(hello.Defects) != 1 || hello.Defects[0] != "d1" {
		t.Fatalf("hello %+v: want board vb1, boot 1, defects [d1] passed by the board", hello)
	}
	res := h.call(7, agentproto.OpEcho, agentproto.EchoArgs{Data: "ping"})
	if !res.OK || !strings.Contains(string(res.Data), "ping") {
		t.Fatalf("echo response %+v", res)
	}
}

func TestSimResetKeepsPortOpen(t *testing.T) {
	s := newTestSim(t, SimConfig{})
	h := openHost(t, s)
	if err := s.Flash(context.Background(), fakeImage(t)); err != nil {
		t.Fatal(err)
	}
	h.waitHello()
	// Reset requested by the firmware (agent reset operation).
	if res := h.call(1, agentproto.OpReset, nil); !res.OK {
		t.Fatalf("reset response %+v", res)
	}
	if hello := h.waitHello(); hello.BootCount != 2 {
		t.Fatalf("after requested reset boot %d, want 2", hello.BootCount)
	}
	// Reset from the host (EN pin).
	if err := s.Reset(context.Background()); err != nil {
		t.Fatal(err)
	}
	if hello := h.waitHello(); hello.BootCount != 3 {
		t.Fatalf("after host reset boot %d, want 3", hello.BootCount)
	}
	if res := h.call(2, agentproto.OpEcho, agentproto.EchoArgs{Data: "still here"}); !res.OK {
		t.Fatalf("echo after resets %+v", res)
	}
	reasons := []string{}
	for _, e := range s.Exits() {
		reasons = append(reasons, e.Reason)
	}
	if strings.Join(reasons, ",") != "reset requested,killed by board" {
		t.Fatalf("exits %v", reasons)
	}
}

func TestSimCrashIsReportedOnConsole(t *testing.T) {
	s := newTestSim(t, SimConfig{})
	h := openHost(t, s)
	if err := s.Flash(context.Background(), fakeImage(t)); err != nil {
		t.Fatal(err)
	}
	h.waitHello()
	req, _ := agentproto.Request(1, "test.crash", nil)
	line, _ := agentproto.Encode(req)
	if _, err := h.port.Write(line); err != nil {
		t.Fatal(err)
	}
	note := h.waitLine("board crash note", func(l string) bool { return strings.Contains(l, "[hilrun-sim board]") })
	if !strings.Contains(note, "panic: boom") || !strings.Contains(note, "exit status 2") {
		t.Fatalf("crash note %q lacks the stderr tail or status", note)
	}
	if hello := h.waitHello(); hello.BootCount != 2 {
		t.Fatalf("after crash boot %d, want a restart (2)", hello.BootCount)
	}
	ex := s.Exits()
	if len(ex) != 1 || ex[0].Code != 2 || !strings.HasPrefix(ex[0].Reason, "crashed") {
		t.Fatalf("exits %+v", ex)
	}
}

func TestSimCrashLoopStops(t *testing.T) {
	s := newTestSim(t, SimConfig{CrashLoopCrashes: 2, CrashWindow: time.Minute, CrashBackoff: time.Millisecond})
	h := openHost(t, s)
	// An image that exits at once: /bin/false through the board's flags.
	if err := s.Flash(context.Background(), Image{Path: "/bin/false"}); err != nil {
		t.Fatal(err)
	}
	h.waitLine("crash-loop note", func(l string) bool { return strings.Contains(l, "board left stopped") })
	if s.Running() {
		t.Fatal("board still running a crash-looping firmware")
	}
}

func TestSimPowerCycleLosesRTC(t *testing.T) {
	dir := t.TempDir()
	s := newTestSim(t, SimConfig{StateDir: dir})
	h := openHost(t, s)
	if err := s.Flash(context.Background(), fakeImage(t)); err != nil {
		t.Fatal(err)
	}
	h.waitHello()
	h.call(1, "test.rtc", nil)
	rtc := filepath.Join(dir, "nvs", "rtc.json")
	if err := s.Reset(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.waitHello()
	if _, err := os.Stat(rtc); err != nil {
		t.Fatalf("reset lost the RTC: %v", err)
	}
	if err := s.PowerOff(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(rtc); !os.IsNotExist(err) {
		t.Fatalf("power off kept the RTC: %v", err)
	}
	if err := s.Reset(context.Background()); !errors.Is(err, ErrPoweredOff) {
		t.Fatalf("reset while off: %v", err)
	}
	if err := s.PowerOn(context.Background()); err != nil {
		t.Fatal(err)
	}
	if hello := h.waitHello(); hello.BootCount != 3 {
		t.Fatalf("boot after power on %d, want 3 (NVS kept)", hello.BootCount)
	}
}

func TestSimCloseStopsFirmware(t *testing.T) {
	s := newTestSim(t, SimConfig{})
	h := openHost(t, s)
	if err := s.Flash(context.Background(), fakeImage(t)); err != nil {
		t.Fatal(err)
	}
	h.waitHello()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ex := s.Exits()
	if len(ex) != 1 || ex[0].Reason != "killed by board" {
		t.Fatalf("exits after Close %+v", ex)
	}
	if s.Running() {
		t.Fatal("firmware still running after Close")
	}
}

func TestClassicResetterOnPTY(t *testing.T) {
	s := newTestSim(t, SimConfig{})
	p, err := s.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	r := ClassicResetter{Lines: p.(serial.Port), Hold: time.Millisecond, Settle: time.Millisecond}
	for name, f := range map[string]func(context.Context) error{"HardReset": r.HardReset, "EnterBootloader": r.EnterBootloader} {
		if err := f(context.Background()); !errors.Is(err, ErrResetUnsupported) {
			t.Errorf("%s on a pty: %v, want ErrResetUnsupported", name, err)
		}
	}
}

// fakeLines records line changes to check the esptool sequences.
type fakeLines struct{ log []string }

func (f *fakeLines) SetDTR(b bool) error {
	f.log = append(f.log, fmt.Sprintf("D%d", b2i(b)))
	return nil
}
func (f *fakeLines) SetRTS(b bool) error {
	f.log = append(f.log, fmt.Sprintf("R%d", b2i(b)))
	return nil
}
func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestClassicResetterSequences(t *testing.T) {
	for _, c := range []struct {
		name string
		run  func(ClassicResetter) error
		want string
	}{
		{"bootloader", func(r ClassicResetter) error { return r.EnterBootloader(context.Background()) }, "D0 R1 D1 R0 D0"},
		{"hard reset", func(r ClassicResetter) error { return r.HardReset(context.Background()) }, "R1 R0"},
	} {
		fl := &fakeLines{}
		if err := c.run(ClassicResetter{Lines: fl, Hold: time.Microsecond, Settle: time.Microsecond}); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(fl.log, " "); got != c.want {
			t.Errorf("%s: %s, want %s (esptool ClassicReset)", c.name, got, c.want)
		}
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
