// Package board is how hilrun holds a device under test. In the labgrid
// spirit a board is a few resources (a serial port, a way to reset it, a way
// to power it, a flasher) behind one small interface, so the conformance
// suite drives a USB-attached ESP32 and the virtual board the same way.
//
// Profiles:
//   - sim (NewSim): the virtual board. The Go reference firmware
//     (devicefw/sim) runs as a host process whose UART is a pseudo-terminal;
//     the harness opens a second pseudo-terminal through go.bug.st/serial
//     exactly as it opens /dev/ttyUSB0. Flashing installs an executable into
//     the board's state directory; resetting restarts the process.
//   - real boards (ESP32 and others) come with their flasher and reset
//     strategy; see Resetter for the DTR/RTS line sequences.
package board

import (
	"context"
	"errors"
	"io"
)

// Board is one device under test.
type Board interface {
	// Info describes the board; Port is the serial device the console opens.
	Info() Info
	// Open opens the board's serial port. The console calls it again after
	// the port disappears (USB re-enumeration after a reset), so it must be
	// callable many times. Its signature matches console.Opener.
	Open(ctx context.Context) (io.ReadWriteCloser, error)
	// Flash writes a firmware image and leaves the board running it.
	Flash(ctx context.Context, img Image) error
	// Reset restarts the firmware as the EN/reset pin would.
	Reset(ctx context.Context) error
	// PowerOff cuts power (volatile state such as the RTC is lost).
	PowerOff(ctx context.Context) error
	// PowerOn restores power; the firmware boots.
	PowerOn(ctx context.Context) error
	// Close releases every resource and stops anything the board started.
	Close() error
}

// Info describes a board.
type Info struct {
	Profile string `json:"profile"` // "sim", "esp32", …
	Name    string `json:"name"`
	Port    string `json:"port"` // serial device path, e.g. /dev/ttyUSB0 or the virtual board's /dev/pts/N
	Baud    int    `json:"baud"`
	// Serial is the USB serial number a real board is bound by (empty for sim).
	Serial string `json:"serial,omitempty"`
}

// Image is a firmware image. For the virtual board it is an executable run
// with Args (plus the UART and state flags the board adds) and Env; for a
// real board it is a flashable file (Path) and Args are ignored.
type Image struct {
	Path string
	Args []string
	Env  []string
}

// ErrResetUnsupported means the reset lines cannot be driven on this port:
// on a pseudo-terminal the modem-control ioctls fail with ENOTTY, the same
// condition esptool reports as "Chip was NOT reset".
var ErrResetUnsupported = errors.New("board: reset lines not supported on this port")

// ErrNoPowerControl is returned by PowerOff and PowerOn of a board without a
// power switch. A reset through the EN pin is the nearest substitute: on an
// ESP32 it is a chip reset that also restarts the RTC.
var ErrNoPowerControl = errors.New("board: no power control (add a power switch to the board profile)")

// ErrPoweredOff is returned by operations that need a running board.
var ErrPoweredOff = errors.New("board: powered off")
