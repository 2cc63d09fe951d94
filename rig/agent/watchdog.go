package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hilrun/hilrun/devicefw/agentproto"
)

// A hung board (firmware stuck, process stopped, UART dead) otherwise
// shows up only as every later call and wait running into its deadline,
// spec after spec, each read as a firmware failure. The watchdog notices it
// once, quickly and cheaply: when no frame has come from the board for
// Idle, or a call has just missed its deadline, it sends an echo (the
// cheapest operation, PROTOCOL.md §4) with a short bound. A board that
// sends any frame during that window is alive. One that sends none is
// declared hung: the fault is recorded (FaultBoardHung), every pending
// call and wait fails with it at once (Client.SetDown), the watchdog's
// Context is cancelled, and Recover (reset, power cycle, hello) is tried a
// bounded number of times. After a successful recovery the client accepts
// calls again; otherwise the board is dead for the rest of the run.

// WatchdogConfig tunes a Watchdog. Zero values select the defaults.
type WatchdogConfig struct {
	// Idle is how long the board may send no frame before it is probed.
	// Default 4s.
	Idle time.Duration
	// Probe bounds the echo probe. Default 3s.
	Probe time.Duration
	// Recover brings a hung board back (reset or power cycle, then its
	// hello); its ctx is a RigContext bounded by RecoverTimeout. nil: a
	// hung board is not recovered.
	Recover func(ctx context.Context) error
	// RecoverTimeout bounds one Recover. Default 30s.
	RecoverTimeout time.Duration
	// MaxRecoveries bounds the recoveries per watchdog (per run), so that a
	// board hanging again right after each recovery ends the run instead of
	// looping. Default 2; negative: none.
	MaxRecoveries int
	// Log receives one line per event (hung, recovering, recovered, dead).
	Log func(string)
}

func (c WatchdogConfig) withDefaults() WatchdogConfig {
	if c.Idle <= 0 {
		c.Idle = 4 * time.Second
	}
	if c.Probe <= 0 {
		c.Probe = 3 * time.Second
	}
	if c.RecoverTimeout <= 0 {
		c.RecoverTimeout = 30 * time.Second
	}
	if c.MaxRecoveries == 0 {
		c.MaxRecoveries = 2
	}
	if c.Log == nil {
		c.Log = func(string) {}
	}
	return c
}

// Watchdog states.
const (
	wdUp = iota
	wdRecovering
	wdDead
)

// DeadError is why a board is dead for the rest of the run.
type DeadError struct{ Reason string }

func (e *DeadError) Error() string { return "rig fault: " + e.Reason }

// Unwrap makes a DeadError an ErrBoardHung (and so an ErrRigFault).
func (e *DeadError) Unwrap() error { return ErrBoardHung }

// Watchdog watches one Client's board. Start it with Client.StartWatchdog.
type Watchdog struct {
	c      *Client
	cfg    WatchdogConfig
	ctx    context.Context
	cancel context.CancelFunc
	kick   chan struct{}
	done   chan struct{}

	mu         sync.Mutex
	state      int
	hold       int
	gen        context.Context
	genCancel  context.CancelCauseFunc
	ready      chan struct{} // closed whenever state is not recovering
	recoveries int
	dead       *DeadError
	hangs      int
}

// StartWatchdog starts watching the board until Stop or ctx ends.
func (c *Client) StartWatchdog(ctx context.Context, cfg WatchdogConfig) *Watchdog {
	w := &Watchdog{c: c, cfg: cfg.withDefaults(), kick: make(chan struct{}, 1), done: make(chan struct{}), ready: make(chan struct{})}
	close(w.ready)
	w.ctx, w.cancel = context.WithCancel(ctx)
	w.gen, w.genCancel = context.WithCancelCause(w.ctx)
	c.mu.Lock()
	c.wd = w
	c.mu.Unlock()
	go w.run()
	return w
}

// Stop stops the watchdog (a Recover in progress is cancelled) and waits
// for it.
func (w *Watchdog) Stop() {
	w.cancel()
	<-w.done
	w.c.mu.Lock()
	if w.c.wd == w {
		w.c.wd = nil
	}
	w.c.mu.Unlock()
}

// Kick asks for a probe now (a call just missed its deadline).
func (w *Watchdog) Kick() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Pause stops probing until the returned resume is called: for deliberate
// outages (a spec power-cycling the board), during which an unanswered
// probe says nothing.
func (w *Watchdog) Pause() (resume func()) {
	w.mu.Lock()
	w.hold++
	w.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			w.mu.Lock()
			w.hold--
			w.mu.Unlock()
			w.Kick() // re-arm the idle timer from now
		})
	}
}

// Context is cancelled when the board is declared hung (its cause wraps
// ErrBoardHung), so that anything bounded by it — a spec's waits on the
// hub as well as on the agent — wakes at once. After a recovery, Context
// returns a fresh one.
func (w *Watchdog) Context() context.Context {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.gen
}

// Ready waits while a recovery is in progress. It returns nil when the
// board answers, a *DeadError when it will not for the rest of the run, or
// ctx's error.
func (w *Watchdog) Ready(ctx context.Context) error {
	w.mu.Lock()
	ready := w.ready
	w.mu.Unlock()
	select {
	case <-ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.dead != nil {
		return w.dead
	}
	return nil
}

// Dead returns why the board is dead for the rest of the run.
func (w *Watchdog) Dead() (*DeadError, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dead, w.dead != nil
}

// Hangs counts the hangs declared so far.
func (w *Watchdog) Hangs() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.hangs
}

func (w *Watchdog) run() {
	defer close(w.done)
	probedAt := time.Now()
	t := time.NewTimer(w.cfg.Idle)
	defer t.Stop()
	for {
		kicked := false
		select {
		case <-w.ctx.Done():
			return
		case <-w.kick:
			kicked = true
		case <-t.C:
		}
		w.mu.Lock()
		held, state := w.hold > 0, w.state
		w.mu.Unlock()
		last := w.c.LastFrame()
		if last.Before(probedAt) {
			last = probedAt
		}
		switch {
		case state != wdUp:
			return // dead: nothing left to watch
		case held:
			probedAt = time.Now()
			resetTimer(t, w.cfg.Idle)
			continue
		case !kicked && time.Since(last) < w.cfg.Idle:
			resetTimer(t, w.cfg.Idle-time.Since(last))
			continue
		}
		if w.probe() {
			probedAt = time.Now()
			resetTimer(t, w.cfg.Idle)
			continue
		}
		if !w.hung(last) {
			return
		}
		probedAt = time.Now()
		resetTimer(t, w.cfg.Idle)
	}
}

func resetTimer(t *time.Timer, d time.Duration) {
	t.Stop()
	select {
	case <-t.C:
	default:
	}
	t.Reset(max(d, time.Millisecond))
}

// probe sends an echo and reports whether the board is alive: it answered,
// or it sent some other frame meanwhile (a probe lost in a reboot, a
// response mangled on the line: the agent is running).
func (w *Watchdog) probe() bool {
	before := w.c.LastFrame()
	ctx, cancel := context.WithTimeout(RigContext(w.ctx), w.cfg.Probe)
	defer cancel()
	err := w.c.Call(ctx, agentproto.OpEcho, agentproto.EchoArgs{Data: "watchdog"}, nil)
	if err == nil || w.ctx.Err() != nil || errors.Is(err, ErrClosed) {
		return true
	}
	return w.c.LastFrame().After(before)
}

// hung declares the board hung and tries to recover it. It reports whether
// the board answers again.
func (w *Watchdog) hung(last time.Time) bool {
	now := time.Now()
	msg := fmt.Sprintf("board stopped responding at %s: no answer to echo within %s (no frame for %s)",
		last.Format("15:04:05.000"), w.cfg.Probe, now.Sub(last).Round(100*time.Millisecond))
	// Recovering before SetDown: whoever a failed wait wakes and asks
	// Ready must wait for the outcome of this recovery.
	w.mu.Lock()
	w.hangs++
	w.state = wdRecovering
	w.ready = make(chan struct{})
	w.genCancel(&FaultError{Waiting: "the board", Fault: Fault{At: now, Kind: FaultBoardHung, Msg: msg}})
	w.mu.Unlock()
	w.c.SetDown(now, msg)
	w.mu.Lock()
	canRecover := w.cfg.Recover != nil && w.recoveries < w.cfg.MaxRecoveries
	if canRecover {
		w.recoveries++
	}
	n := w.recoveries
	w.mu.Unlock()
	w.cfg.Log("RIG FAULT: " + msg)
	if !canRecover {
		why := "no recovery left"
		if w.cfg.Recover == nil {
			why = "this board cannot be recovered by the rig"
		} else if w.cfg.MaxRecoveries > 0 {
			why = fmt.Sprintf("it was already recovered %d times in this run", w.cfg.MaxRecoveries)
		}
		return w.die(msg + "; " + why)
	}
	w.cfg.Log(fmt.Sprintf("rig: recovering the board (recovery %d of %d: reset, then power cycle)", n, max(w.cfg.MaxRecoveries, 0)))
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(RigContext(w.ctx), w.cfg.RecoverTimeout)
	err := w.cfg.Recover(ctx)
	cancel()
	if w.ctx.Err() != nil {
		return w.die(msg + "; recovery cut short (run ending)")
	}
	if err != nil {
		return w.die(fmt.Sprintf("%s; the board did not recover: %v", msg, err))
	}
	w.c.SetUp()
	w.mu.Lock()
	w.state = wdUp
	w.gen, w.genCancel = context.WithCancelCause(w.ctx)
	close(w.ready)
	w.mu.Unlock()
	w.cfg.Log(fmt.Sprintf("rig: the board answers again after %s; resuming", time.Since(t0).Round(10*time.Millisecond)))
	return true
}

func (w *Watchdog) die(reason string) bool {
	w.mu.Lock()
	w.state = wdDead
	w.dead = &DeadError{Reason: reason}
	close(w.ready)
	w.mu.Unlock()
	w.cfg.Log("RIG FAULT: giving up on the board: " + reason)
	return false
}
