// Package ptytest gives tests a pseudo-terminal wired like a board's UART
// and a small scriptable fake agent device to put on its device side, so
// rig/console and rig/agent can be exercised over a real tty opened with
// console.SerialOpener, exactly like /dev/ttyUSB0.
//
// The arrangement (see package console): the device owns the master and
// keeps its own descriptor of the slave open in raw mode; the host opens
// Pair.Path, the slave's /dev/pts/N.
package ptytest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/hilrun/hilrun/devicefw/agentproto"
)

// Pair is one pseudo-terminal.
type Pair struct {
	Master *os.File // device side; non-blocking, so deadlines and Close interrupt reads
	Slave  *os.File // the device's own slave descriptor, raw, kept open
	Path   string   // the slave's path, for the host
	once   sync.Once
}

// Open creates a pty pair: raw slave (no echo, no CR/LF rewriting), master
// switched to non-blocking mode on the same *os.File (re-wrapping the fd
// would fail to register with the poller).
func Open() (*Pair, error) {
	m, s, err := pty.Open()
	if err != nil {
		return nil, fmt.Errorf("ptytest: open pty: %w", err)
	}
	if _, err := term.MakeRaw(int(s.Fd())); err != nil {
		m.Close()
		s.Close()
		return nil, fmt.Errorf("ptytest: raw mode on %s: %w", s.Name(), err)
	}
	if err := unix.SetNonblock(int(m.Fd()), true); err != nil {
		m.Close()
		s.Close()
		return nil, fmt.Errorf("ptytest: non-blocking master: %w", err)
	}
	return &Pair{Master: m, Slave: s, Path: s.Name()}, nil
}

// Close "unplugs" the device: master and slave are closed, the host's reads
// fail and Path disappears.
func (p *Pair) Close() error {
	var err error
	p.once.Do(func() {
		err = errors.Join(p.Slave.Close(), p.Master.Close())
	})
	return err
}

// Device is a fake agent firmware on the master side of a Pair. It answers
// the requests echo, hello, fail (an error response) and ignores others
// with unknown_op; tests drive events and console noise with its methods.
// All writes are serialised, so methods may be called from any goroutine.
type Device struct {
	rw    io.ReadWriter
	start time.Time

	wmu    sync.Mutex
	seq    uint64
	boot   int
	silent bool
	noise  bool
	n      int // responses sent, for noise patterns

	mu       sync.Mutex
	requests []*agentproto.Frame
	changed  chan struct{} // closed and replaced when a request arrives
}

// NewDevice puts a fake device on rw (normally Pair.Master).
func NewDevice(rw io.ReadWriter) *Device {
	return &Device{rw: rw, start: time.Now(), changed: make(chan struct{})}
}

// SetSilent makes the device ignore (true) or answer (false) requests.
func (d *Device) SetSilent(on bool) { d.wmu.Lock(); d.silent = on; d.wmu.Unlock() }

// SetNoise makes the device interleave log lines with its responses and
// glue every third response to a log line without a newline.
func (d *Device) SetNoise(on bool) { d.wmu.Lock(); d.noise = on; d.wmu.Unlock() }

// Requests returns the requests received so far.
func (d *Device) Requests() []*agentproto.Frame {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]*agentproto.Frame(nil), d.requests...)
}

// WaitRequests waits until at least n requests have arrived.
func (d *Device) WaitRequests(ctx context.Context, n int) error {
	for {
		d.mu.Lock()
		got, ch := len(d.requests), d.changed
		d.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("ptytest: %d of %d requests arrived: %w", got, n, ctx.Err())
		}
	}
}

// Serve reads requests from the line and answers them until the line fails
// or ctx ends. Requests are answered in order, one at a time.
func (d *Device) Serve(ctx context.Context) error {
	if dl, ok := d.rw.(interface{ SetReadDeadline(time.Time) error }); ok {
		stop := context.AfterFunc(ctx, func() { dl.SetReadDeadline(time.Now()) })
		defer stop()
	}
	buf := make([]byte, 4096)
	var line []byte
	for {
		n, err := d.rw.Read(buf)
		for _, b := range buf[:n] {
			if b != '\n' {
				if len(line) <= agentproto.MaxFrame {
					line = append(line, b)
				}
				continue
			}
			d.handle(line)
			line = line[:0]
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
	}
}

func (d *Device) handle(line []byte) {
	_, f, err := agentproto.Split(line)
	if errors.Is(err, agentproto.ErrNotFrame) {
		return
	}
	if err != nil {
		d.send(agentproto.Failure(0, agentproto.Errorf(agentproto.ErrBadFrame, "%v", err)))
		return
	}
	d.mu.Lock()
	d.requests = append(d.requests, f)
	close(d.changed)
	d.changed = make(chan struct{})
	d.mu.Unlock()
	d.wmu.Lock()
	silent := d.silent
	d.wmu.Unlock()
	if silent || f.T != agentproto.KindRequest {
		return
	}
	var res *agentproto.Frame
	switch f.Op {
	case agentproto.OpEcho:
		res = &agentproto.Frame{T: agentproto.KindResponse, ID: f.ID, OK: true, Data: f.Args}
	case agentproto.OpHello:
		res, _ = agentproto.Response(f.ID, d.hello())
	case "fail":
		res = agentproto.Failure(f.ID, agentproto.Errorf(agentproto.ErrBadArgs, "fail requested"))
	default:
		res = agentproto.Failure(f.ID, agentproto.Errorf(agentproto.ErrUnknownOp, "%q", f.Op))
	}
	d.send(res)
}

func (d *Device) hello() agentproto.Hello {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	return agentproto.Hello{Proto: agentproto.Version, Firmware: "ptytest", FWVersion: "0",
		Board: "pty", Caps: []string{agentproto.CapSAS}, BootCount: d.boot, MaxFrame: agentproto.MaxFrame}
}

func (d *Device) uptime() int64 { return time.Since(d.start).Milliseconds() }

// send writes a frame, with log noise around it if SetNoise is on.
func (d *Device) send(f *agentproto.Frame) error {
	line, err := agentproto.Encode(f)
	if err != nil {
		return err
	}
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if d.noise {
		d.n++
		pre := fmt.Sprintf("I (%d) agent: answering id=%d\r\n", d.uptime(), f.ID)
		if d.n%3 == 0 {
			pre += fmt.Sprintf("\x1b[0;32mD (%d) glued: ", d.uptime()) // no newline: the frame follows on the same line
		}
		line = append([]byte(pre), line...)
	}
	_, err = d.rw.Write(line)
	return err
}

// Write writes raw bytes (console noise, partial lines, garbage).
func (d *Device) Write(p []byte) error {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	_, err := d.rw.Write(p)
	return err
}

// Emit sends the next event of the current boot and returns its seq.
func (d *Device) Emit(name string, data any) (uint64, error) {
	d.wmu.Lock()
	d.seq++
	seq := d.seq
	d.wmu.Unlock()
	return seq, d.EmitSeq(seq, name, data)
}

// EmitSeq sends an event with an arbitrary seq (to provoke gaps); the
// device's own counter continues from seq.
func (d *Device) EmitSeq(seq uint64, name string, data any) error {
	d.wmu.Lock()
	d.seq = seq
	d.wmu.Unlock()
	f, err := agentproto.Event(seq, d.uptime(), name, data)
	if err != nil {
		return err
	}
	return d.send(f)
}

// BootBanner is what an ESP32's ROM prints at power-on.
const BootBanner = "ets Jun  8 2016 00:22:57\r\n\r\nrst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n" +
	"configsip: 0, SPIWP:0xee\r\nclk_drv:0x00,q_drv:0x00,d_drv:0x00,cs0_drv:0x00,hd_drv:0x00,wp_drv:0x00\r\n" +
	"mode:DIO, clock div:2\r\nload:0x3fff0030,len:7104\r\nentry 0x400805f0\r\n"

// Boot simulates a reset: some line noise, the ROM banner, then the hello
// event with seq 1.
func (d *Device) Boot() error {
	d.wmu.Lock()
	d.boot++
	d.start = time.Now()
	d.wmu.Unlock()
	if err := d.Write(append([]byte{0, 0xff, 0x00}, BootBanner...)); err != nil {
		return err
	}
	return d.EmitSeq(1, agentproto.EvHello, d.hello())
}

// Babble writes garbage without newlines (a board at the wrong baud rate,
// or a crash loop) until ctx ends.
func (d *Device) Babble(ctx context.Context) {
	junk := bytes.Repeat([]byte{0xe0, 0x00, 0x1f, 0xfe, 'x', 0x80}, 200)
	for ctx.Err() == nil {
		if err := d.Write(junk); err != nil {
			return
		}
	}
}
