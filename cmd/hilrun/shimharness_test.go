package main

import (
	"bufio"
	"bytes"
	"errors"
	"os/exec"
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
