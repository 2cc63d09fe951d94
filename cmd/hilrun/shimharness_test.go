package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/term"

	"github.com/hilrun/hilrun/devicefw/agentproto"
)

// shimHarness runs an agent firmware executable (an SDK shim) on a real
// pseudo-terminal, as the virtual board does, and speaks the agent protocol
// to it frame by frame, so a test sees exactly what crossed the line.
type shimHarness struct {
	t         *testing.T
	master    interface{ Write([]byte) (int, error) }
	cmd       *exec.Cmd
	stderr    *sdkLockedBuffer
	lines     chan []byte
	frameWait time.Duration
	exited    bool
	state     string // the firmware's --state directory

	console []string            // console text seen so far
	skipped []*agentproto.Frame // events that arrived while a call waited for its response
}

// startShim starts exe with the firmware arguments on a fresh pty; the
// process (and its group) is killed when the test ends. frameWait bounds
// every wait for a frame.
func startShim(t *testing.T, exe string, frameWait time.Duration) *shimHarness {
	t.Helper()
	master, slave, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { master.Close(); slave.Close() })
	for _, f := range []int{int(slave.Fd()), int(master.Fd())} {
		if _, err := term.MakeRaw(f); err != nil {
			t.Fatal(err)
		}
	}
	h := &shimHarness{t: t, master: master, stderr: &sdkLockedBuffer{}, lines: make(chan []byte, 64), frameWait: frameWait}
	h.state = t.TempDir()
	h.cmd = exec.Command(exe, "--uart", slave.Name(), "--state", h.state, "--board", "pty-test")
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	h.cmd.Stderr = h.stderr // written by exec's copy goroutine while the test reads it
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !h.exited {
			_ = syscall.Kill(-h.cmd.Process.Pid, syscall.SIGKILL)
			_ = h.cmd.Wait()
		}
	})
	go func() {
		r := bufio.NewReaderSize(master, 8192)
		for {
			l, err := r.ReadBytes('\n')
			if len(l) > 0 {
				h.lines <- l
			}
			if err != nil {
				close(h.lines)
				return
			}
		}
	}()
	return h
}

// next returns the next frame, keeping console text aside.
func (h *shimHarness) next(what string) *agentproto.Frame {
	h.t.Helper()
	deadline := time.After(h.frameWait)
	for {
		select {
		case l, ok := <-h.lines:
			if !ok {
				h.t.Fatalf("%s: UART closed; console %q; stderr %s", what, h.console, h.stderr.String())
			}
			text, f, err := agentproto.Split(l)
			if len(bytes.TrimSpace(text)) > 0 {
				h.console = append(h.console, string(text))
			}
			if err == agentproto.ErrNotFrame {
				continue
			}
			if err != nil {
				h.t.Fatalf("%s: undecodable frame %q: %v", what, l, err)
			}
			return f
		case <-deadline:
			h.t.Fatalf("%s: nothing within %s; console %q; stderr %s", what, h.frameWait, h.console, h.stderr.String())
		}
	}
}

// nextEvent returns an event skipped by an earlier call, else the next frame.
func (h *shimHarness) nextEvent(what string) *agentproto.Frame {
	h.t.Helper()
	if len(h.skipped) > 0 {
		f := h.skipped[0]
		h.skipped = h.skipped[1:]
		return f
	}
	return h.next(what)
}

func (h *shimHarness) send(line []byte) {
	h.t.Helper()
	if _, err := h.master.Write(line); err != nil {
		h.t.Fatal(err)
	}
}

// call sends a request and returns its response; events that come first
// are kept for nextEvent.
func (h *shimHarness) call(id uint32, op string, args any) *agentproto.Frame {
	h.t.Helper()
	f, err := agentproto.Request(id, op, args)
	if err != nil {
		h.t.Fatal(err)
	}
	b, err := agentproto.Encode(f)
	if err != nil {
		h.t.Fatal(err)
	}
	h.send(b)
	for {
		r := h.next(op)
		if r.T == agentproto.KindEvent {
			h.skipped = append(h.skipped, r)
			continue
		}
		if r.T != agentproto.KindResponse || r.ID != id {
			h.t.Fatalf("%s: want the response to id %d, got %+v", op, id, r)
		}
		return r
	}
}

// expectResetExit checks that the shim exits with the reset status (3)
// after an answered reset.
func (h *shimHarness) expectResetExit() {
	h.t.Helper()
	done := make(chan error, 1)
	go func() { done <- h.cmd.Wait() }()
	select {
	case err := <-done:
		h.exited = true
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 {
			h.t.Fatalf("after reset the shim must exit with status 3, got %v", err)
		}
	case <-time.After(5 * time.Second):
		h.t.Fatal("the shim did not exit after reset")
	}
}

// sdkLockedBuffer is a bytes.Buffer safe for the exec goroutine writing
// and the test reading.
type sdkLockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *sdkLockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *sdkLockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// expectHello checks the boot: the hello event comes first with seq 1 and
// names the client and version, the capabilities the shim must and must not
// declare, and a boot console line naming the SDK and its version.
func (h *shimHarness) expectHello(client func(string) bool, version string, must, mustNot []string) agentproto.Hello {
	h.t.Helper()
	ev := h.next("hello event")
	if ev.T != agentproto.KindEvent || ev.Ev != agentproto.EvHello || ev.Seq != 1 {
		h.t.Fatalf("first frame must be the hello event with seq 1, got %+v", ev)
	}
	var hello agentproto.Hello
	if err := json.Unmarshal(ev.Data, &hello); err != nil {
		h.t.Fatal(err)
	}
	if hello.Proto != agentproto.Version || !client(hello.Client) || hello.ClientVer != version || hello.Board != "pty-test" || hello.BootCount != 1 || hello.MaxFrame != agentproto.MaxFrame {
		h.t.Fatalf("hello %+v: want proto 1, the SDK's client name, version %s, board pty-test, boot 1, maxFrame %d", hello, version, agentproto.MaxFrame)
	}
	for _, c := range must {
		if !slices.Contains(hello.Caps, c) {
			h.t.Errorf("caps %v lack %q", hello.Caps, c)
		}
	}
	for _, c := range mustNot {
		if slices.Contains(hello.Caps, c) {
			h.t.Errorf("caps %v declare %q, which the SDK shim cannot do", hello.Caps, c)
		}
	}
	if len(h.console) == 0 || !strings.Contains(h.console[0], "azure-iot-device "+version) {
		h.t.Errorf("boot console line should name the SDK and its version; console %q", h.console)
	}
	return hello
}

// expectProtocolEdges checks requests answered by id (hello, echo of
// non-ASCII text) and bad_frame with id 0 for a corrupted CRC glued to
// console text, then console input ignored, unknown_op, bad_args for an
// unknown auth type, unsupported for a Will (no SDK shim can set one) and
// not_connected for telemetry while closed. It uses request ids 7 to 13.
func (h *shimHarness) expectProtocolEdges() {
	h.t.Helper()
	if r := h.call(7, agentproto.OpHello, nil); !r.OK {
		h.t.Fatalf("hello: %+v", r.Err)
	}
	r := h.call(8, agentproto.OpEcho, agentproto.EchoArgs{Data: "ünï \"q\""})
	var echo agentproto.EchoArgs
	if !r.OK || json.Unmarshal(r.Data, &echo) != nil || echo.Data != "ünï \"q\"" {
		h.t.Fatalf("echo: %+v", r)
	}
	good, _ := agentproto.Encode(&agentproto.Frame{T: agentproto.KindRequest, ID: 9, Op: agentproto.OpHello})
	bad := bytes.Replace(good, []byte(`"hello"`), []byte(`"hellp"`), 1)
	h.send(append([]byte("log text before the magic "), bad...))
	if r = h.next("bad CRC"); r.T != agentproto.KindResponse || r.ID != 0 || r.Err == nil || r.Err.Code != agentproto.ErrBadFrame {
		h.t.Fatalf("corrupted frame: want bad_frame with id 0, got %+v", r)
	}
	h.send([]byte("console input without magic\n"))
	if r = h.call(10, "no.such.op", nil); r.Err == nil || r.Err.Code != agentproto.ErrUnknownOp {
		h.t.Fatalf("unknown op: %+v", r)
	}
	if r = h.call(11, agentproto.OpConfigure, map[string]any{"auth": map[string]any{"type": "psk"}}); r.Err == nil || r.Err.Code != agentproto.ErrBadArgs {
		h.t.Fatalf("bad auth type: want bad_args, got %+v", r)
	}
	if r = h.call(12, agentproto.OpConfigure, map[string]any{"mqtt": map[string]any{"will": map[string]any{"payload": "x"}}}); r.Err == nil || r.Err.Code != agentproto.ErrUnsupported {
		h.t.Fatalf("a Will: want unsupported, got %+v", r)
	}
	if r = h.call(13, agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: "{}"}); r.Err == nil || r.Err.Code != agentproto.ErrNotConnected {
		h.t.Fatalf("telemetry while closed: want not_connected, got %+v", r)
	}
}
