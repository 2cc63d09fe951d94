package board

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// Resetter drives a board's reset and boot-mode lines. Real boards wire
// them to the USB-UART bridge's DTR and RTS; the virtual board restarts a
// process instead. Keeping reset behind this interface is what lets a
// pseudo-terminal stand in for /dev/ttyUSB0 (see ErrResetUnsupported).
type Resetter interface {
	// HardReset pulses EN: the firmware reboots into the application.
	HardReset(ctx context.Context) error
	// EnterBootloader holds IO0 low across a reset: the ROM download mode
	// that flashers need.
	EnterBootloader(ctx context.Context) error
}

// ModemLines is the part of a serial port the DTR/RTS sequences need;
// go.bug.st/serial's Port satisfies it.
type ModemLines interface {
	SetDTR(bool) error
	SetRTS(bool) error
}

// ClassicResetter is esptool's "ClassicReset" for boards with the usual
// two-transistor auto-reset circuit (DTR → IO0, RTS → EN, both inverted).
// go.bug.st/serial sets DTR and RTS with separate ioctls, so esptool's
// tighter "UnixTight" variant (both lines in one ioctl) is not possible.
//
// Verified here only against a pseudo-terminal, where every line change
// fails with ENOTTY and the resetter returns ErrResetUnsupported; the
// sequence itself follows esptool's documented timings and is untested on
// hardware in this repository.
type ClassicResetter struct {
	Lines ModemLines
	// Hold is how long EN is held low (esptool: 100 ms); Settle is how long
	// IO0 stays low after EN is released (esptool: 50 ms). USB-Serial-JTAG
	// chips need longer (esptool uses 200 ms).
	Hold, Settle time.Duration
}

func (r ClassicResetter) durations() (time.Duration, time.Duration) {
	hold, settle := r.Hold, r.Settle
	if hold == 0 {
		hold = 100 * time.Millisecond
	}
	if settle == 0 {
		settle = 50 * time.Millisecond
	}
	return hold, settle
}

// HardReset implements Resetter: RTS asserted (EN low) for Hold, released.
func (r ClassicResetter) HardReset(ctx context.Context) error {
	hold, _ := r.durations()
	return RunLineSteps(ctx, r.Lines, []LineStep{RTS(true), Wait(hold), RTS(false)})
}

// EnterBootloader implements Resetter with esptool's sequence
// "D0|R1|W0.1|D1|R0|W0.05|D0".
func (r ClassicResetter) EnterBootloader(ctx context.Context) error {
	hold, settle := r.durations()
	return RunLineSteps(ctx, r.Lines, []LineStep{
		DTR(false), RTS(true), Wait(hold),
		DTR(true), RTS(false), Wait(settle),
		DTR(false),
	})
}

// LineStep is one step of a reset sequence in esptool's notation: set DTR
// ('D') or RTS ('R') to V, or wait ('W') for D.
type LineStep struct {
	Line byte
	V    bool
	D    time.Duration
}

// DTR, RTS and Wait build LineSteps.
func DTR(v bool) LineStep           { return LineStep{Line: 'D', V: v} }
func RTS(v bool) LineStep           { return LineStep{Line: 'R', V: v} }
func Wait(d time.Duration) LineStep { return LineStep{Line: 'W', D: d} }

// RunLineSteps drives a reset sequence on l. A port without modem lines (a
// pseudo-terminal: ENOTTY) ends it with ErrResetUnsupported.
func RunLineSteps(ctx context.Context, l ModemLines, steps []LineStep) error {
	for _, s := range steps {
		var err error
		switch s.Line {
		case 'D':
			err = l.SetDTR(s.V)
		case 'R':
			err = l.SetRTS(s.V)
		default:
			// The hold times are the electrical contract of the reset
			// circuit, not synchronisation: there is nothing to wait on.
			t := time.NewTimer(s.D)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		if err != nil {
			return modemError(err)
		}
	}
	return nil
}

// modemError maps "this port has no modem lines" to ErrResetUnsupported.
func modemError(err error) error {
	if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EINVAL) || errors.Is(err, errors.ErrUnsupported) {
		return fmt.Errorf("%w (%v): use a board profile with another reset method, or reset the board by hand", ErrResetUnsupported, err)
	}
	return fmt.Errorf("board: reset lines: %w", err)
}
