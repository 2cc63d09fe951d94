package board

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"go.bug.st/serial"
)

// SerialConfig describes a board that is already running instrumented
// firmware on a serial port (a device maker's own board, or an ESP32 until
// its profile lands): no flashing, reset through DTR/RTS where wired.
type SerialConfig struct {
	Name string
	Port string
	Baud int
}

// Serial is a generic serial-attached board.
type Serial struct{ cfg SerialConfig }

// NewSerial returns a generic serial board.
func NewSerial(cfg SerialConfig) *Serial {
	if cfg.Baud == 0 {
		cfg.Baud = 115200
	}
	if cfg.Name == "" {
		cfg.Name = cfg.Port
	}
	return &Serial{cfg: cfg}
}

// Info implements Board.
func (s *Serial) Info() Info {
	return Info{Profile: "serial", Name: s.cfg.Name, Port: s.cfg.Port, Baud: s.cfg.Baud}
}

// Open implements Board.
func (s *Serial) Open(ctx context.Context) (io.ReadWriteCloser, error) {
	p, err := serial.Open(s.cfg.Port, &serial.Mode{BaudRate: s.cfg.Baud, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit})
	if err != nil {
		// The OS error names the path already; say it once (issue 16).
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		name := ""
		if s.cfg.Name != "" && s.cfg.Name != s.cfg.Port {
			name = "board " + s.cfg.Name + ": "
		}
		return nil, fmt.Errorf("%scannot open serial port %s: %w (is the board plugged in and the port free?)", name, s.cfg.Port, err)
	}
	return p, nil
}

// ErrNoFlasher is returned by Flash on boards without a flasher profile.
var ErrNoFlasher = errors.New("board: this profile has no flasher; flash the instrumented firmware with your vendor tool first")

// Flash implements Board.
func (s *Serial) Flash(context.Context, Image) error { return ErrNoFlasher }

// Reset implements Board with esptool's classic DTR/RTS sequence.
func (s *Serial) Reset(ctx context.Context) error {
	p, err := serial.Open(s.cfg.Port, &serial.Mode{BaudRate: s.cfg.Baud})
	if err != nil {
		return fmt.Errorf("board %s: reset: %w", s.cfg.Name, err)
	}
	defer p.Close()
	return ClassicResetter{Lines: p}.HardReset(ctx)
}

// PowerOff implements Board: no power control on a plain serial board.
func (s *Serial) PowerOff(context.Context) error {
	return ErrNoPowerControl
}

// PowerOn implements Board.
func (s *Serial) PowerOn(context.Context) error {
	return ErrNoPowerControl
}

// Close implements Board.
func (s *Serial) Close() error { return nil }
