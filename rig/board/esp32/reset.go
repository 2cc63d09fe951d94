package esp32

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hilrun/hilrun/rig/board"
)

// Lines are the modem-control lines of a serial port; go.bug.st/serial's
// Port has them.
type Lines = board.ModemLines

// ResetStrategy drives EN and IO0 through DTR and RTS.
type ResetStrategy interface {
	// Name is esptool's name for the sequence.
	Name() string
	// RunMode resets the chip into the application (IO0 high).
	RunMode(ctx context.Context, l Lines) error
	// Bootloader resets the chip into the ROM download mode (IO0 low while
	// EN is released).
	Bootloader(ctx context.Context, l Lines) error
}

// ClassicReset is esptool's ClassicReset for boards with the usual
// two-transistor auto-reset circuit on a USB-UART bridge (DTR → IO0, RTS →
// EN, both inverted): run mode is "R1|W0.1|R0" (esptool's HardReset), the
// bootloader "D0|R1|W0.1|D1|R0|W0.05|D0".
//
// go.bug.st/serial sets DTR and RTS with separate ioctls, so esptool's
// UnixTightReset (both lines in one TIOCMSET) is not possible here.
type ClassicReset struct {
	Hold  time.Duration // EN low; default 100 ms
	Delay time.Duration // IO0 held low after EN is released; default 50 ms (esptool's reset_delay)
}

// Name implements ResetStrategy.
func (ClassicReset) Name() string { return "classic" }

func (r ClassicReset) durations() (hold, delay time.Duration) {
	hold, delay = r.Hold, r.Delay
	if hold == 0 {
		hold = 100 * time.Millisecond
	}
	if delay == 0 {
		delay = 50 * time.Millisecond
	}
	return hold, delay
}

// RunMode implements ResetStrategy: DTR released first so IO0 is high when
// EN comes back (esptool's HardReset leaves DTR as it is; we release it so
// a chip left in download mode boots the application).
func (r ClassicReset) RunMode(ctx context.Context, l Lines) error {
	hold, _ := r.durations()
	return runSteps(ctx, l, []board.LineStep{board.DTR(false), board.RTS(true), board.Wait(hold), board.RTS(false)})
}

// Bootloader implements ResetStrategy.
func (r ClassicReset) Bootloader(ctx context.Context, l Lines) error {
	hold, delay := r.durations()
	return runSteps(ctx, l, []board.LineStep{board.DTR(false), board.RTS(true), board.Wait(hold), board.DTR(true), board.RTS(false), board.Wait(delay), board.DTR(false)})
}

// USBJTAGReset is esptool's USBJTAGSerialReset for chips on their own
// USB-Serial-JTAG (VID:PID 303A:1001), whose DTR/RTS are decoded by the
// chip rather than by transistors: the bootloader sequence passes through
// (1,1) instead of (0,0), and run mode uses esptool's HardReset with
// uses_usb (longer holds, so the USB stack keeps up).
type USBJTAGReset struct {
	Step time.Duration // default 100 ms (esptool)
	Hold time.Duration // run mode: EN low, then settle; default 200 ms (esptool)
}

// Name implements ResetStrategy.
func (USBJTAGReset) Name() string { return "usb-jtag" }

func (r USBJTAGReset) durations() (step, hold time.Duration) {
	step, hold = r.Step, r.Hold
	if step == 0 {
		step = 100 * time.Millisecond
	}
	if hold == 0 {
		hold = 200 * time.Millisecond
	}
	return step, hold
}

// RunMode implements ResetStrategy: "D0|R1|W0.2|R0|W0.2".
func (r USBJTAGReset) RunMode(ctx context.Context, l Lines) error {
	_, hold := r.durations()
	return runSteps(ctx, l, []board.LineStep{board.DTR(false), board.RTS(true), board.Wait(hold), board.RTS(false), board.Wait(hold)})
}

// Bootloader implements ResetStrategy:
// "R0|D0|W0.1|D1|R0|W0.1|R1|D0|R1|W0.1|D0|R0".
func (r USBJTAGReset) Bootloader(ctx context.Context, l Lines) error {
	s, _ := r.durations()
	return runSteps(ctx, l, []board.LineStep{
		board.RTS(false), board.DTR(false), board.Wait(s),
		board.DTR(true), board.RTS(false), board.Wait(s),
		board.RTS(true), board.DTR(false), board.RTS(true), board.Wait(s),
		board.DTR(false), board.RTS(false),
	})
}

// StrategyFor returns the reset strategy for a bridge.
func StrategyFor(b Bridge) ResetStrategy {
	if b.USBJTAG {
		return USBJTAGReset{}
	}
	return ClassicReset{}
}

// runSteps drives a sequence with board.RunLineSteps, naming this
// profile's fix when the port has no modem lines.
func runSteps(ctx context.Context, l Lines, steps []board.LineStep) error {
	err := board.RunLineSteps(ctx, l, steps)
	if errors.Is(err, board.ErrResetUnsupported) {
		return fmt.Errorf("%w; set reset.command in hilrun.yaml", err)
	}
	return err
}
