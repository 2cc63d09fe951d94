package esp32

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"go.bug.st/serial"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/rig/board"
)

// Port is an open serial port with modem lines.
type Port interface {
	io.ReadWriteCloser
	Lines
}

// PortOpener opens a serial port. Its Close must interrupt a Read blocked
// in another goroutine, and Read may return (0, nil) on a read timeout.
type PortOpener func(path string, baud int) (Port, error)

// SerialOpener opens path with go.bug.st/serial, 8N1, modem lines left as
// the kernel set them (a non-nil InitialStatusBits fails on ptys), with a
// 100 ms read timeout.
func SerialOpener(path string, baud int) (Port, error) {
	p, err := serial.Open(path, &serial.Mode{BaudRate: baud, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit})
	if err != nil {
		return nil, fmt.Errorf("open %s at %d baud: %w", path, baud, err)
	}
	if err := p.SetReadTimeout(100 * time.Millisecond); err != nil {
		p.Close()
		return nil, fmt.Errorf("%s: set read timeout: %w", path, err)
	}
	return p, nil
}

// Config configures a Board.
type Config struct {
	ID      string // board id (inventory); names it in messages
	Profile string // Info.Profile: "esp32" (default) or "generic"
	Serial  string // USB serial number to bind by (preferred)
	Port    string // fixed port (when Serial is empty)
	Baud    int    // console baud; default 115200
	Chip    string // esp32, esp32s3, …

	// Image and Parts are flashed when Flash gets an Image without Path.
	Image string
	Parts *Parts

	// Flasher writes firmware; nil means the board has none
	// (board.ErrNoFlasher).
	Flasher Flasher
	// Reset overrides the DTR/RTS strategy (default: by bridge, USB-JTAG
	// for 303A:1001, classic otherwise).
	Reset ResetStrategy
	// ResetCommand, when set, resets the board by running this template
	// instead of driving DTR/RTS (generic profile).
	ResetCommand []string
	// Look finds the reset command's executable (default exec.LookPath).
	Look LookPath

	Lister   Lister     // default SystemLister
	OpenPort PortOpener // default SerialOpener
	// Log receives progress lines ("hilrun: …"); nil discards them.
	Log io.Writer

	// ReturnTimeout bounds how long the board waits for its port to come
	// back after flashing or a reset re-enumerated it (default 15 s).
	ReturnTimeout time.Duration
	// HelloTimeout bounds the pre-flight wait for hello (default 20 s).
	HelloTimeout time.Duration
	// BufferLimit bounds the bytes kept while no console reads (default 1 MiB).
	BufferLimit int
}

// Board is a real board on a USB serial port. It implements board.Board
// and board.Prechecker.
type Board struct {
	cfg Config

	mu        sync.Mutex
	changed   chan struct{} // closed and replaced on every state change
	port      Port
	info      PortInfo // where the port was found last
	bridge    Bridge
	suspended bool // a flasher or reset command owns the port
	opening   bool // the pump is between Find and storing the port
	closed    bool
	pumping   bool
	lastErr   error // the pump's last failure to find/open the port

	buf     []byte // bytes not yet read by the attached handle
	dropped int
	last    byte // last byte ingested ('\n' initially)
	h       *handle

	line   []byte   // partial line, for hello detection
	recent []string // last console lines, for diagnostics
	hellos int

	wg sync.WaitGroup
}

var _ board.Board = (*Board)(nil)
var _ board.Prechecker = (*Board)(nil)

// New returns a board; nothing is opened until Open, Flash or Reset.
func New(cfg Config) (*Board, error) {
	if cfg.Serial == "" && cfg.Port == "" {
		return nil, fmt.Errorf("board %s: needs a USB serial number or a port", cfg.ID)
	}
	if cfg.Baud == 0 {
		cfg.Baud = 115200
	}
	if cfg.Profile == "" {
		cfg.Profile = "esp32"
	}
	if cfg.ID == "" {
		cfg.ID = cfg.Serial
		if cfg.ID == "" {
			cfg.ID = cfg.Port
		}
	}
	if cfg.Lister == nil {
		cfg.Lister = SystemLister
	}
	if cfg.OpenPort == nil {
		cfg.OpenPort = SerialOpener
	}
	if cfg.ReturnTimeout == 0 {
		cfg.ReturnTimeout = 15 * time.Second
	}
	if cfg.HelloTimeout == 0 {
		cfg.HelloTimeout = 20 * time.Second
	}
	if cfg.BufferLimit == 0 {
		cfg.BufferLimit = 1 << 20
	}
	return &Board{cfg: cfg, changed: make(chan struct{}), last: '\n'}, nil
}

// Info implements board.Board; Port is where the board was found last.
func (b *Board) Info() board.Info {
	b.mu.Lock()
	defer b.mu.Unlock()
	port := b.info.Port
	if port == "" {
		port = b.cfg.Port
	}
	return board.Info{Profile: b.cfg.Profile, Name: b.cfg.ID, Port: port, Baud: b.cfg.Baud, Serial: b.cfg.Serial}
}

// Bridge is the USB bridge the port was found on (zero before the first open).
func (b *Board) Bridge() Bridge {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.bridge
}

func (b *Board) broadcastLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

func (b *Board) progress(format string, a ...any) {
	if b.cfg.Log != nil {
		fmt.Fprintf(b.cfg.Log, "hilrun: board %s: %s\n", b.cfg.ID, fmt.Sprintf(format, a...))
	}
}

func (b *Board) fault(stage string, err error) error {
	return &board.RigFault{Board: b.cfg.ID, Stage: stage, Err: err}
}

// find looks the port up (by serial number) and opens it.
func (b *Board) find() (Port, PortInfo, error) {
	info, err := Find(b.cfg.Lister, b.cfg.Serial, b.cfg.Port)
	if err != nil {
		return nil, PortInfo{}, err
	}
	p, err := b.cfg.OpenPort(info.Port, b.cfg.Baud)
	if err != nil {
		return nil, PortInfo{}, fmt.Errorf("%w (is another program using the port?)", err)
	}
	return p, info, nil
}

func (b *Board) setPortLocked(p Port, info PortInfo) {
	b.port, b.info = p, info
	if br, ok := LookupBridge(info.VID, info.PID); ok {
		b.bridge = br
	}
	b.lastErr = nil
	b.broadcastLocked()
}

func (b *Board) startPumpLocked() {
	if !b.pumping && !b.closed {
		b.pumping = true
		b.wg.Add(1)
		go b.pump()
	}
}

// pump reads the port for the board's whole life, reopening it (found
// again by serial number) whenever it is lost, except while suspended.
func (b *Board) pump() {
	defer b.wg.Done()
	rbuf := make([]byte, 4096)
	for {
		p := b.waitPort()
		if p == nil {
			return
		}
		n, err := p.Read(rbuf)
		if n > 0 {
			b.ingest(rbuf[:n], false)
		}
		if err != nil {
			b.mu.Lock()
			lost := b.port == p
			if lost {
				_ = p.Close()
				b.port = nil
				b.broadcastLocked()
			}
			quiet := b.suspended || b.closed
			b.mu.Unlock()
			if lost && !quiet {
				b.notef("port %s lost (%v): waiting for it to come back", b.info.Port, err)
			}
		}
	}
}

// waitPort returns the open port, (re)opening it when it is missing and
// the board is not suspended; nil once the board is closed.
func (b *Board) waitPort() Port {
	delay := 20 * time.Millisecond
	var lostAt time.Time
	for {
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return nil
		}
		if b.port != nil {
			p := b.port
			b.mu.Unlock()
			return p
		}
		if b.suspended {
			ch := b.changed
			b.mu.Unlock()
			<-ch
			continue
		}
		if lostAt.IsZero() {
			lostAt = time.Now()
		}
		b.opening = true
		b.mu.Unlock()

		p, info, err := b.find()

		b.mu.Lock()
		b.opening = false
		switch {
		case err == nil && (b.suspended || b.closed):
			_ = p.Close()
			b.broadcastLocked()
		case err == nil:
			b.setPortLocked(p, info)
			b.mu.Unlock()
			b.notef("port %s open (%s, after %v)", info.Port, describeBridge(info), time.Since(lostAt).Round(time.Millisecond))
			return p
		default:
			b.lastErr = err
			b.broadcastLocked()
		}
		ch, closed := b.changed, b.closed
		b.mu.Unlock()
		if closed {
			return nil
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ch:
			t.Stop()
		}
		delay = min(2*delay, 500*time.Millisecond)
	}
}

func describeBridge(info PortInfo) string {
	if info.VID == "" {
		return "no USB details"
	}
	name := "unknown bridge"
	if br, ok := LookupBridge(info.VID, info.PID); ok {
		name = br.Name
	}
	return fmt.Sprintf("%s:%s %s, serial %q", strings.ToUpper(info.VID), strings.ToUpper(info.PID), name, info.Serial)
}

// notef adds the rig's own line to the console stream.
func (b *Board) notef(format string, a ...any) {
	b.ingest([]byte("[hilrun] "+fmt.Sprintf(format, a...)+"\n"), true)
}

// noteWriter feeds a tool's output lines into the console stream.
type noteWriter struct{ b *Board }

func (w noteWriter) Write(p []byte) (int, error) { w.b.ingest(p, true); return len(p), nil }

// ingest appends bytes to the console stream and scans them for hello.
// A rig note (note=true) never glues onto half a board line.
func (b *Board) ingest(p []byte, note bool) {
	if len(p) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if note && b.last != '\n' {
		// A rig note never glues onto half a board line.
		b.buf = append(b.buf, '\n')
		b.scanLocked([]byte{'\n'})
	}
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.cfg.BufferLimit; over > 0 {
		b.buf = append(b.buf[:0:0], b.buf[over:]...)
		b.dropped += over
	}
	b.last = p[len(p)-1]
	b.scanLocked(p)
	b.broadcastLocked()
}

func (b *Board) scanLocked(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if len(b.line)+len(p) <= 2*agentproto.MaxFrame {
				b.line = append(b.line, p...)
			}
			return
		}
		if len(b.line)+i <= 2*agentproto.MaxFrame {
			b.line = append(b.line, p[:i]...)
		}
		b.lineLocked(b.line)
		b.line = b.line[:0]
		p = p[i+1:]
	}
}

func (b *Board) lineLocked(line []byte) {
	text, f, err := agentproto.Split(line)
	if err == nil && f.T == agentproto.KindEvent && f.Ev == agentproto.EvHello {
		b.hellos++
	}
	if t := strings.TrimSpace(string(text)); t != "" {
		b.recent = append(b.recent, t)
		if len(b.recent) > 10 {
			b.recent = b.recent[1:]
		}
	}
}

// Open implements board.Board: it opens the port on first use (finding it
// by serial number) and returns a handle on the board's console stream.
// Bytes the board printed while no handle was attached are delivered
// first. A second Open supersedes the first handle.
func (b *Board) Open(ctx context.Context) (io.ReadWriteCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := b.openFirst(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, errors.New("board closed")
	}
	h := &handle{b: b, done: make(chan struct{})}
	if old := b.h; old != nil {
		old.closeOnce()
	}
	b.h = h
	b.startPumpLocked()
	b.broadcastLocked()
	b.mu.Unlock()
	return h, nil
}

// openFirst opens the port synchronously the first time, so that a board
// that is not attached fails at once with the list of what is, instead of
// after ReturnTimeout. Later opens are the pump's.
func (b *Board) openFirst() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return errors.New("board closed")
	}
	if b.port != nil || b.suspended || b.pumping {
		b.mu.Unlock()
		return nil
	}
	b.mu.Unlock()
	p, info, err := b.find()
	if err != nil {
		return b.fault("open", fmt.Errorf("board %s: %w", b.cfg.ID, err))
	}
	b.mu.Lock()
	if b.closed || b.port != nil || b.pumping {
		b.mu.Unlock()
		p.Close()
		return nil
	}
	b.setPortLocked(p, info)
	b.startPumpLocked()
	b.mu.Unlock()
	b.notef("port %s open (%s)", info.Port, describeBridge(info))
	return nil
}

// handle is one attachment of a console to the board's stream.
type handle struct {
	b    *Board
	done chan struct{}
	once sync.Once
}

var errHandleClosed = errors.New("board console handle closed")

func (h *handle) closeOnce() { h.once.Do(func() { close(h.done) }) }

func (h *handle) Read(p []byte) (int, error) {
	b := h.b
	for {
		b.mu.Lock()
		select {
		case <-h.done:
			b.mu.Unlock()
			return 0, errHandleClosed
		default:
		}
		if b.closed || b.h != h {
			b.mu.Unlock()
			return 0, errHandleClosed
		}
		if b.dropped > 0 {
			msg := fmt.Sprintf("[hilrun] %d bytes of console output dropped while no console was attached\n", b.dropped)
			b.dropped = 0
			b.buf = append([]byte(msg), b.buf...)
		}
		if len(b.buf) > 0 {
			n := copy(p, b.buf)
			b.buf = b.buf[n:]
			b.mu.Unlock()
			return n, nil
		}
		ch := b.changed
		b.mu.Unlock()
		select {
		case <-ch:
		case <-h.done:
		}
	}
}

func (h *handle) Write(p []byte) (int, error) {
	b := h.b
	b.mu.Lock()
	port, susp := b.port, b.suspended
	b.mu.Unlock()
	select {
	case <-h.done:
		return 0, errHandleClosed
	default:
	}
	if port == nil {
		if susp {
			return 0, fmt.Errorf("board %s: port busy (flashing or resetting)", b.cfg.ID)
		}
		return 0, fmt.Errorf("board %s: port not available (re-enumerating?)", b.cfg.ID)
	}
	return port.Write(p)
}

func (h *handle) Close() error {
	h.closeOnce()
	b := h.b
	b.mu.Lock()
	if b.h == h {
		b.h = nil
	}
	b.broadcastLocked()
	b.mu.Unlock()
	return nil
}

// suspend closes the port and keeps the pump from reopening it, so a
// flasher or reset command can have it. It waits for a pump that is just
// opening the port to give it up.
func (b *Board) suspend(ctx context.Context) error {
	b.mu.Lock()
	b.suspended = true
	if b.port != nil {
		_ = b.port.Close()
		b.port = nil
	}
	b.broadcastLocked()
	for b.opening {
		ch := b.changed
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			b.resume()
			return ctx.Err()
		}
		b.mu.Lock()
	}
	b.mu.Unlock()
	return nil
}

func (b *Board) resume() {
	b.mu.Lock()
	b.suspended = false
	b.startPumpLocked()
	b.broadcastLocked()
	b.mu.Unlock()
}

// ready waits until the port is open (reopened by the pump after
// re-enumeration) and returns it.
func (b *Board) ready(ctx context.Context) (Port, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.ReturnTimeout)
	defer cancel()
	b.mu.Lock()
	b.startPumpLocked()
	for {
		if b.closed {
			b.mu.Unlock()
			return nil, errors.New("board closed")
		}
		if b.port != nil && !b.suspended {
			p := b.port
			b.mu.Unlock()
			return p, nil
		}
		ch := b.changed
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			b.mu.Lock()
			last := b.lastErr
			b.mu.Unlock()
			what := "port " + b.cfg.Port
			if b.cfg.Serial != "" {
				what = fmt.Sprintf("USB serial number %q", b.cfg.Serial)
			}
			if last == nil {
				last = ctx.Err()
			}
			return nil, fmt.Errorf("board %s: %s did not come back within %v: %v", b.cfg.ID, what, b.cfg.ReturnTimeout, last)
		}
		b.mu.Lock()
	}
}

// currentPortPath finds the port now (it may have moved since last time).
func (b *Board) currentPortPath() (PortInfo, error) {
	return Find(b.cfg.Lister, b.cfg.Serial, b.cfg.Port)
}

// Flash implements board.Board. The port is released to the flasher, the
// flasher's output goes into the console stream, then the port is found
// again (by serial number), reopened, and the board is reset into the
// application with the console attached, so the boot banner is captured.
// img.Path, when set, is a merged image (or nanoFramework image); an empty
// Image flashes what the configuration names.
func (b *Board) Flash(ctx context.Context, img board.Image) error {
	if b.cfg.Flasher == nil {
		return board.ErrNoFlasher
	}
	job := FlashJob{ID: b.cfg.ID, Serial: b.cfg.Serial, Chip: b.cfg.Chip, Baud: b.cfg.Baud, Out: noteWriter{b}}
	if img.Path != "" {
		job.Image = img.Path
	} else {
		job.Image, job.Parts = b.cfg.Image, b.cfg.Parts
	}
	if err := b.suspend(ctx); err != nil {
		return err
	}
	info, err := b.currentPortPath()
	if err != nil {
		b.resume()
		return b.fault("find", fmt.Errorf("board %s: %w", b.cfg.ID, err))
	}
	job.Port = info.Port
	what := job.Image
	if what == "" && job.Parts != nil {
		what = job.Parts.App + " (+ bootloader, partition table)"
	}
	b.progress("flashing %s with %s on %s", what, b.cfg.Flasher.Name(), info.Port)
	b.notef("flashing %s with %s on %s", what, b.cfg.Flasher.Name(), info.Port)
	start := time.Now()
	err = b.cfg.Flasher.Flash(ctx, job)
	b.resume()
	if err != nil {
		b.notef("flashing failed: %v", firstLine(err))
		return b.fault("flash", fmt.Errorf("board %s: %w", b.cfg.ID, err))
	}
	b.notef("flashed in %v", time.Since(start).Round(time.Millisecond))
	b.progress("flashed in %v; resetting into the application", time.Since(start).Round(time.Millisecond))
	return b.Reset(ctx)
}

func firstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// Reset implements board.Board: into the application, by the reset
// command when one is configured, else by DTR/RTS.
func (b *Board) Reset(ctx context.Context) error {
	if len(b.cfg.ResetCommand) > 0 {
		return b.runResetCommand(ctx)
	}
	return b.lines(ctx, "reset", func(s ResetStrategy, p Port) error { return s.RunMode(ctx, p) })
}

// EnterBootloader resets the chip into the ROM download mode.
func (b *Board) EnterBootloader(ctx context.Context) error {
	return b.lines(ctx, "bootloader", func(s ResetStrategy, p Port) error { return s.Bootloader(ctx, p) })
}

func (b *Board) lines(ctx context.Context, what string, f func(ResetStrategy, Port) error) error {
	if err := b.openFirst(); err != nil {
		return err
	}
	p, err := b.ready(ctx)
	if err != nil {
		return b.fault("reset", err)
	}
	s := b.cfg.Reset
	if s == nil {
		s = StrategyFor(b.Bridge())
	}
	b.notef("%s (%s DTR/RTS sequence)", what, s.Name())
	if err := f(s, p); err != nil {
		if errors.Is(err, board.ErrResetUnsupported) {
			return fmt.Errorf("board %s: %w", b.cfg.ID, err)
		}
		return b.fault("reset", fmt.Errorf("board %s: %w", b.cfg.ID, err))
	}
	return nil
}

func (b *Board) runResetCommand(ctx context.Context) error {
	if err := b.suspend(ctx); err != nil {
		return err
	}
	info, err := b.currentPortPath()
	if err != nil {
		b.resume()
		return b.fault("find", fmt.Errorf("board %s: %w", b.cfg.ID, err))
	}
	job := FlashJob{ID: b.cfg.ID, Serial: b.cfg.Serial, Chip: b.cfg.Chip, Baud: b.cfg.Baud, Port: info.Port, Image: b.cfg.Image, Parts: b.cfg.Parts}
	argv, err := Expand(b.cfg.ResetCommand, job.Vars())
	if err == nil {
		b.notef("reset by command")
		err = RunTemplate(ctx, b.cfg.Look, argv, noteWriter{b})
	}
	b.resume()
	if err != nil {
		return b.fault("reset", fmt.Errorf("board %s: reset.command: %w", b.cfg.ID, err))
	}
	if _, err := b.ready(ctx); err != nil {
		return b.fault("reset", err)
	}
	return nil
}

// Hellos is how many agent hello events the board has sent so far.
func (b *Board) Hellos() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.hellos
}

// Preflight implements board.Prechecker: reset the board and wait for the
// agent's hello. No hello within HelloTimeout is a *board.RigFault
// wrapping board.ErrNoHello, with the last console lines. The bytes stay in
// the stream for the console that attaches next.
func (b *Board) Preflight(ctx context.Context) error {
	n0 := b.Hellos()
	start := time.Now()
	b.progress("pre-flight: reset and wait for hello (up to %v)", b.cfg.HelloTimeout)
	if err := b.Reset(ctx); err != nil {
		if board.IsRigFault(err) {
			return err
		}
		return b.fault("preflight", err)
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.HelloTimeout)
	defer cancel()
	b.mu.Lock()
	for b.hellos == n0 {
		ch := b.changed
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			b.mu.Lock()
			recent := append([]string(nil), b.recent...)
			b.mu.Unlock()
			tailText := "  (nothing)"
			if len(recent) > 0 {
				tailText = "  " + strings.Join(recent, "\n  ")
			}
			return b.fault("preflight", fmt.Errorf("%w within %v: check the cable and that the instrumented firmware is flashed; last console lines:\n%s",
				board.ErrNoHello, b.cfg.HelloTimeout, tailText))
		}
		b.mu.Lock()
	}
	b.mu.Unlock()
	b.progress("pre-flight: hello after %v", time.Since(start).Round(time.Millisecond))
	return nil
}

// PowerOff implements board.Board: no power control on USB serial boards.
func (b *Board) PowerOff(context.Context) error {
	return board.ErrNoPowerControl
}

// PowerOn implements board.Board.
func (b *Board) PowerOn(context.Context) error {
	return board.ErrNoPowerControl
}

// Close implements board.Board.
func (b *Board) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	var err error
	if b.port != nil {
		err = b.port.Close()
		b.port = nil
	}
	if b.h != nil {
		b.h.closeOnce()
	}
	b.broadcastLocked()
	b.mu.Unlock()
	b.wg.Wait()
	return err
}
