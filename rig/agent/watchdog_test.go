package agent

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hilrun/hilrun/devicefw/agentproto"
)

// TestCorruptFrameFailsPendingCall: a device frame whose CRC does not match
// is a rig fault placed in the history, and a pending call fails at once
// with it (the mangled line may have been its response) instead of
// running into its deadline.
func TestCorruptFrameFailsPendingCall(t *testing.T) {
	r := newRig(t, Options{})
	r.dev.SetSilent(true)
	ctx := ctxTimeout(t, 10*time.Second)
	start := r.cl.Mark()
	errc := make(chan error, 1)
	t0 := time.Now()
	go func() { errc <- r.cl.Call(ctx, agentproto.OpEcho, agentproto.EchoArgs{Data: "x"}, nil) }()
	if err := r.dev.WaitRequests(ctx, 1); err != nil {
		t.Fatal(err)
	}
	f, _ := agentproto.Event(7, 1, agentproto.EvConn, agentproto.ConnEvent{State: agentproto.StateConnected})
	line, _ := agentproto.Encode(f)
	i := bytes.LastIndex(line, []byte(" *"))
	line[i+2] ^= 1 // one bit of the CRC flipped on the line
	if err := r.dev.Write(line); err != nil {
		t.Fatal(err)
	}
	err := <-errc
	var fe *FaultError
	if !errors.Is(err, ErrRigFault) || !errors.As(err, &fe) || fe.Fault.Kind != FaultCorruptFrame || time.Since(t0) > 5*time.Second {
		t.Fatalf("call across a corrupt frame: %v after %v", err, time.Since(t0))
	}
	if _, err := r.cl.WaitEvent(ctx, start, agentproto.EvMethod, nil); !errors.Is(err, ErrRigFault) {
		t.Fatalf("wait across a corrupt frame: %v", err)
	}
	if fs := r.cl.Faults(); len(fs) != 1 || fs[0].Kind != FaultCorruptFrame || r.cl.FaultCount() != 1 {
		t.Fatalf("faults %v", fs)
	}
}

// TestWatchdogHangRecoverDead: a board that stops answering is declared
// hung once, within Idle+Probe of its last frame; waits pending meanwhile
// fail at once with ErrBoardHung and the watchdog's Context is cancelled;
// a recovery makes it usable again; once the recoveries are used up it is
// dead and Ready says so.
func TestWatchdogHangRecoverDead(t *testing.T) {
	r := newRig(t, Options{})
	ctx := ctxTimeout(t, 30*time.Second)
	var mu sync.Mutex
	var logs []string
	recovered := 0
	w := r.cl.StartWatchdog(ctx, WatchdogConfig{
		Idle: 300 * time.Millisecond, Probe: 300 * time.Millisecond, MaxRecoveries: 1,
		Recover: func(ctx context.Context) error {
			recovered++
			r.dev.SetSilent(false)
			return r.dev.Boot()
		},
		Log: func(s string) { mu.Lock(); logs = append(logs, s); mu.Unlock() },
	})
	defer w.Stop()
	// Alive and idle: probes are answered, nothing is declared.
	if err := r.dev.WaitRequests(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if w.Hangs() != 0 {
		t.Fatal("idle but answering board declared hung")
	}

	gen := w.Context()
	r.dev.SetSilent(true)
	t0 := time.Now()
	_, err := r.cl.WaitEvent(ctx, r.cl.Mark(), agentproto.EvMethod, nil)
	took := time.Since(t0)
	if !errors.Is(err, ErrBoardHung) || took > 2*time.Second {
		t.Fatalf("wait on a hung board: %v after %v", err, took)
	}
	if gen.Err() == nil || !errors.Is(context.Cause(gen), ErrBoardHung) {
		t.Fatalf("watchdog context not cancelled: %v", context.Cause(gen))
	}
	if err := w.Ready(ctx); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	if recovered != 1 {
		t.Fatalf("%d recoveries", recovered)
	}
	if err := r.cl.Call(ctx, agentproto.OpEcho, agentproto.EchoArgs{Data: "y"}, nil); err != nil {
		t.Fatalf("call after recovery: %v", err)
	}

	// Hangs again: no recovery left.
	r.dev.SetSilent(true)
	if err := w.Ready(ctx); err == nil {
		// Ready may run before the hang is declared: wait for it.
		_, err = r.cl.WaitEvent(ctx, r.cl.Mark(), agentproto.EvMethod, nil)
		if !errors.Is(err, ErrBoardHung) {
			t.Fatalf("second hang: %v", err)
		}
		err = w.Ready(ctx)
		var de *DeadError
		if !errors.As(err, &de) || !strings.Contains(de.Reason, "already recovered 1 times") {
			t.Fatalf("dead board: %v", err)
		}
	}
	if err := r.cl.Call(ctx, agentproto.OpEcho, nil, nil); !errors.Is(err, ErrBoardHung) {
		t.Fatalf("call on a dead board: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	hung := 0
	for _, l := range logs {
		if strings.HasPrefix(l, "RIG FAULT: board stopped responding at") {
			hung++
		}
	}
	if hung != 2 || w.Hangs() != 2 {
		t.Fatalf("hang reported %d times (hangs %d): %q", hung, w.Hangs(), logs)
	}
}

// TestWatchdogPause: a deliberate outage (a power cycle) is not a hang.
func TestWatchdogPause(t *testing.T) {
	r := newRig(t, Options{})
	ctx := ctxTimeout(t, 10*time.Second)
	w := r.cl.StartWatchdog(ctx, WatchdogConfig{Idle: 100 * time.Millisecond, Probe: 100 * time.Millisecond})
	defer w.Stop()
	resume := w.Pause()
	r.dev.SetSilent(true)
	n := len(r.dev.Requests())
	// Over a second of silence: no probe goes out while paused.
	tctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := r.dev.WaitRequests(tctx, n+1); err == nil {
		t.Fatal("probed while paused")
	}
	r.dev.SetSilent(false)
	resume()
	if err := r.dev.WaitRequests(ctx, n+1); err != nil {
		t.Fatal(err)
	}
	if w.Hangs() != 0 {
		t.Fatal("paused outage declared a hang")
	}
}
