package board

import (
	"context"
	"errors"
	"fmt"
)

// ErrNoHello means the board did not send its agent hello after a reset:
// the pre-flight health check failed. Wrapped in a RigFault.
var ErrNoHello = errors.New("board: no hello after reset")

// RigFault is a failure of the test rig (board not found, port gone, flasher
// missing or failing, no hello after reset), as opposed to a verdict on the
// firmware. A pool reports it per board and carries on with the others.
type RigFault struct {
	Board string // board id or name
	Stage string // "find", "open", "flash", "reset", "preflight"
	Err   error
}

func (e *RigFault) Error() string {
	return fmt.Sprintf("rig fault on board %s (%s): %v", e.Board, e.Stage, e.Err)
}

func (e *RigFault) Unwrap() error { return e.Err }

// IsRigFault reports whether err is (or wraps) a RigFault.
func IsRigFault(err error) bool {
	var rf *RigFault
	return errors.As(err, &rf)
}

// Prechecker is implemented by boards that can run the pre-flight health
// check themselves: reset the board and wait for the agent's hello. A
// failure is a *RigFault wrapping ErrNoHello (or the reset error).
type Prechecker interface {
	Preflight(ctx context.Context) error
}

// FaultReporter is implemented by boards that know when they gave up on
// their firmware (the virtual board's crash loop), so that a host waiting
// on the board (its hello, an agent call) fails at once with the reason
// instead of at its deadline.
type FaultReporter interface {
	// Faulted returns a channel closed when the board gives up. Take it
	// before waiting: recovering the board (reset, power, flash) starts a
	// new attempt with a new channel.
	Faulted() <-chan struct{}
	// Fault returns why the board gave up, or nil.
	Fault() error
}

// WithFault returns a context derived from ctx that is cancelled with the
// board's fault as its cause (context.Cause) as soon as b, when it is a
// FaultReporter, gives up; for other boards it only inherits ctx. Call the
// returned function to release it.
func WithFault(ctx context.Context, b Board) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	fr, ok := b.(FaultReporter)
	if !ok {
		return ctx, func() { cancel(context.Canceled) }
	}
	faulted := fr.Faulted()
	go func() {
		select {
		case <-faulted:
			cancel(fr.Fault())
		case <-ctx.Done():
		}
	}()
	return ctx, func() { cancel(context.Canceled) }
}
