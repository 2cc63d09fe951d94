// Package console opens a board's serial port and separates agent frames
// (devicefw/agentproto) from console text: boot ROM banners, firmware log
// lines, binary noise. A reader goroutine splits the byte stream into
// bounded lines, decodes the frames and hands them, in order, to a single
// consumer (rig/agent) through Frames. Every line in and every frame out is
// kept in a timestamped, bounded console log for reports and interactive
// viewers; secrets in frames are redacted before they reach it (Redact).
//
// When the port fails (board unplugged, USB re-enumeration after a reset,
// pseudo-terminal gone) the console notes the outage in its log and reopens
// the port through its Opener with bounded backoff until Close.
//
// # Pseudo-terminals
//
// Verified on Linux (kernel 6.18) with creack/pty v1.1.24 and
// go.bug.st/serial v1.8.0. The virtual board arrangement that works is one pty per board: the device
// (firmware or a test's fake device) owns the master and also keeps its own
// descriptor of the slave open, in raw mode (term.MakeRaw); the host opens
// the slave path (/dev/pts/N) with SerialOpener exactly as it would open
// /dev/ttyUSB0. Two ptys are not needed. What we observed:
//
//   - serial.Open on the slave works with Mode.InitialStatusBits == nil; a
//     non-nil value fails (modem-bit ioctls are ENOTTY on a pty).
//   - With a read timeout, Read returns (0, nil) when nothing arrived; the
//     reader treats that as "no data" and checks for Close.
//   - When the device closes master and slave, the host's Read returns
//     serial's PortError "Port has been closed" (a hangup reads as zero
//     bytes); bytes still unread in the pty are lost; the /dev/pts/N path disappears (open: ENOENT) and writes
//     fail with EIO. A later pty may reuse the same number.
//   - The host can close and reopen the slave while the device keeps its
//     slave descriptor open; bytes the device wrote meanwhile are delivered
//     after the reopen. If the device did not keep the slave open, its
//     master reads would fail with EIO whenever the host closes the port.
//   - serial.Open takes TIOCEXCL, but as root (CAP_SYS_ADMIN, as in our
//     containers) a second open of the same slave still succeeds, so the
//     exclusive lock is no protection against two harnesses on one board
//     there.
//
// Package ptytest provides that arrangement and a fake agent device.
package console

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.bug.st/serial"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/rig/secrets"
)

// Opener opens (or reopens) the port. The returned Close must interrupt a
// Read blocked in another goroutine (go.bug.st/serial's does); Read may
// return (0, nil) on a read timeout.
type Opener func(ctx context.Context) (io.ReadWriteCloser, error)

// serialReadTimeout bounds each Read on a serial port so that the reader
// notices Close even on drivers whose Close does not interrupt a Read.
const serialReadTimeout = 100 * time.Millisecond

// SerialOpener opens path with go.bug.st/serial at baud, 8N1, leaving the
// modem lines alone (InitialStatusBits nil, which also works on ptys) and
// with a read timeout.
func SerialOpener(path string, baud int) Opener {
	return func(ctx context.Context) (io.ReadWriteCloser, error) {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("serial port %s: %w", path, err)
		}
		p, err := serial.Open(path, &serial.Mode{
			BaudRate: baud,
			DataBits: 8,
			Parity:   serial.NoParity,
			StopBits: serial.OneStopBit,
		})
		if err != nil {
			return nil, fmt.Errorf("serial port %s at %d baud: %w", path, baud, err)
		}
		if err := p.SetReadTimeout(serialReadTimeout); err != nil {
			p.Close()
			return nil, fmt.Errorf("serial port %s: set read timeout: %w", path, err)
		}
		return p, nil
	}
}

// Direction says which way a line travelled.
type Direction uint8

// Directions.
const (
	In  Direction = iota // from the board (and the console's own notes)
	Out                  // to the board
)

func (d Direction) String() string {
	if d == Out {
		return "out"
	}
	return "in"
}

// Kind classifies a console log line.
type Kind uint8

// Kinds of log lines.
const (
	KindText    Kind = iota // console output of the board
	KindFrame               // a decoded agent frame (its JSON, redacted)
	KindGarbage             // binary noise, an overlong line, a frame that failed to decode
	KindNote                // the rig's own annotation: port lost, reopened, dropped frames
)

func (k Kind) String() string {
	switch k {
	case KindText:
		return "text"
	case KindFrame:
		return "frame"
	case KindGarbage:
		return "garbage"
	case KindNote:
		return "note"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Line is one entry of the console log. Text is printable: non-printable
// bytes are escaped as \xNN, ANSI colour sequences are removed and frame
// JSON is redacted.
type Line struct {
	Time time.Time
	Dir  Direction
	Kind Kind
	Text string
}

// String renders the line with its wall-clock time.
func (l Line) String() string {
	return l.Time.Format("15:04:05.000000") + " " + l.body()
}

func (l Line) body() string {
	dir := l.Dir.String()
	if l.Kind == KindNote {
		dir = "--"
	}
	return fmt.Sprintf("%-3s %-7s %s", dir, l.Kind, l.Text)
}

// Frame is an agent frame received from the board.
type Frame struct {
	*agentproto.Frame
	Time time.Time // when its line was complete
	// Lost counts frames dropped immediately before this one because the
	// delivery queue was full (a rig fault; Stats.FramesDropped counts all).
	Lost uint64
	// Bad, when set, says this is not a frame but a frame line that failed
	// to decode (CRC mismatch, malformed, too long: wrapping
	// agentproto.ErrCRC, ErrSyntax or ErrTooLong); Frame is then empty.
	// It is delivered in order with the good frames so that the consumer
	// can place the loss exactly (PROTOCOL.md §2: a corrupted frame is a
	// rig fault, and it may have been any response or event).
	Bad error
}

// Options tune a Console. Zero values select the defaults.
type Options struct {
	// Name labels the console in errors and notes, e.g. the port path.
	Name string
	// MaxLines bounds the console log; the oldest lines are dropped and
	// counted (Stats.LogDropped). Default 100000.
	MaxLines int
	// MaxLine bounds one line in bytes (without its newline). A longer
	// line is dropped, counted as Oversize and logged as garbage with its
	// first bytes as soon as it exceeds MaxLine. Default 2*agentproto.MaxFrame, so that a maximal frame
	// glued to a log line still fits.
	MaxLine int
	// FrameQueue bounds the frames received but not yet taken from Frames.
	// Beyond it frames are dropped and counted as a rig fault
	// (Stats.FramesDropped, Frame.Lost). Default 10000.
	FrameQueue int
	// Mirror, if set, receives every log line as WriteLog renders it, as it
	// happens (e.g. an interactive viewer). Write errors are ignored.
	Mirror io.Writer
	// OnLine, if set, is called with every log line as it happens. It must
	// not block for long and must not call WriteFrame.
	OnLine func(Line)
	// ReopenMin and ReopenMax bound the backoff between reopen attempts
	// after a port failure. Defaults 20ms and 1s.
	ReopenMin, ReopenMax time.Duration
}

func (o Options) withDefaults() Options {
	if o.Name == "" {
		o.Name = "serial"
	}
	if o.MaxLines <= 0 {
		o.MaxLines = 100000
	}
	if o.MaxLine <= 0 {
		o.MaxLine = 2 * agentproto.MaxFrame
	}
	if o.FrameQueue <= 0 {
		o.FrameQueue = 10000
	}
	if o.ReopenMin <= 0 {
		o.ReopenMin = 20 * time.Millisecond
	}
	if o.ReopenMax < o.ReopenMin {
		o.ReopenMax = max(time.Second, o.ReopenMin)
	}
	return o
}

// Stats are the console's counters.
type Stats struct {
	BytesIn, BytesOut uint64
	Lines             uint64 // lines read from the port, of every kind
	TextLines         uint64 // console text (including text glued before a frame)
	GarbageLines      uint64 // lines (or line parts) that were mostly noise
	GarbageBytes      uint64 // non-printable bytes, plus all bytes of overlong lines
	FramesIn          uint64 // frames decoded
	FramesOut         uint64 // frames written
	CRCErrors         uint64 // frames with a CRC mismatch
	SyntaxErrors      uint64 // frames that were not well-formed
	Oversize          uint64 // lines longer than MaxLine, frames longer than agentproto.MaxFrame
	Outages           uint64 // times the port failed
	Reopens           uint64 // successful reopens after an outage
	FramesDropped     uint64 // frames lost because the delivery queue was full (rig fault)
	LogDropped        uint64 // oldest log lines dropped to respect MaxLines
}

// Errors.
var (
	ErrClosed   = errors.New("console closed")
	ErrPortDown = errors.New("port down (reopening)")
)

// Console is an open board console. Its methods are safe for concurrent
// use.
type Console struct {
	opts   Options
	open   Opener
	start  time.Time
	ctx    context.Context // reopen context, cancelled by Close
	cancel context.CancelFunc
	done   chan struct{}
	wg     sync.WaitGroup

	// wmu guards port and closed, and serialises writes with port swaps so
	// that nothing is written to a closed descriptor.
	wmu    sync.Mutex
	port   io.ReadWriteCloser
	closed bool

	smu   sync.Mutex
	stats Stats

	// mmu serialises appending to the log with the mirror, so the mirror
	// sees lines in log order. Lock order: wmu, mmu, lmu.
	mmu  sync.Mutex
	lmu  sync.Mutex
	ring []Line
	head int // index of the oldest line once the ring is full

	qmu    sync.Mutex
	queue  []Frame
	lost   uint64
	qsig   chan struct{}
	frames chan Frame

	sp splitter // used only by the reader goroutine (or a test)
}

func newConsole(open Opener, opts Options) *Console {
	opts = opts.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Console{
		opts:   opts,
		open:   open,
		start:  time.Now(),
		ctx:    ctx,
		cancel: cancel,
		done:   make(chan struct{}),
		qsig:   make(chan struct{}, 1),
		frames: make(chan Frame),
		sp:     splitter{max: opts.MaxLine, buf: make([]byte, 0, opts.MaxLine)},
	}
}

// Open opens the port with open (this first open must succeed; ctx bounds
// it) and starts reading. The console then lives until Close, reopening the
// port after failures.
func Open(ctx context.Context, open Opener, opts Options) (*Console, error) {
	c := newConsole(open, opts)
	port, err := open(ctx)
	if err != nil {
		c.cancel()
		if strings.Contains(err.Error(), c.opts.Name) {
			return nil, err // the opener's error names the port already
		}
		return nil, fmt.Errorf("console %s: open: %w", c.opts.Name, err)
	}
	c.port = port
	c.Notef("%s: port opened", c.opts.Name)
	c.wg.Add(2)
	go c.readLoop(port)
	go c.pump()
	return c, nil
}

// Name is Options.Name.
func (c *Console) Name() string { return c.opts.Name }

// Frames delivers the frames received, in order, to the single consumer.
// It is closed after Close.
func (c *Console) Frames() <-chan Frame { return c.frames }

// Stats returns a snapshot of the counters.
func (c *Console) Stats() Stats {
	c.smu.Lock()
	defer c.smu.Unlock()
	return c.stats
}

func (c *Console) count(f func(s *Stats)) {
	c.smu.Lock()
	f(&c.stats)
	c.smu.Unlock()
}

// WriteFrame encodes f, writes it to the board and logs it (redacted). It
// fails with ErrPortDown during an outage and ErrClosed after Close.
func (c *Console) WriteFrame(f *agentproto.Frame) error {
	line, err := agentproto.Encode(f)
	if err != nil {
		return fmt.Errorf("console %s: encode %s frame: %w", c.opts.Name, f.T, err)
	}
	js := line[len(agentproto.Magic) : len(line)-len(" *00000000\n")]
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return fmt.Errorf("console %s: %w", c.opts.Name, ErrClosed)
	}
	now := time.Now()
	c.addLine(Line{Time: now, Dir: Out, Kind: KindFrame, Text: string(Redact(js))})
	if c.port == nil {
		c.addLine(Line{Time: now, Dir: Out, Kind: KindNote, Text: "frame above not sent: port down"})
		return fmt.Errorf("console %s: write: %w", c.opts.Name, ErrPortDown)
	}
	for p := line; len(p) > 0; {
		n, err := c.port.Write(p)
		p = p[n:]
		if err != nil {
			c.addLine(Line{Time: time.Now(), Dir: Out, Kind: KindNote, Text: "frame above not sent: " + err.Error()})
			return fmt.Errorf("console %s: write: %w", c.opts.Name, err)
		}
		if n == 0 {
			return fmt.Errorf("console %s: write: %w", c.opts.Name, io.ErrShortWrite)
		}
	}
	c.count(func(s *Stats) { s.FramesOut++; s.BytesOut += uint64(len(line)) })
	return nil
}

// Notef adds a note (the rig's own annotation) to the console log.
func (c *Console) Notef(format string, a ...any) {
	c.addLine(Line{Time: time.Now(), Dir: In, Kind: KindNote, Text: fmt.Sprintf(format, a...)})
}

// Close stops the reader, closes the port and closes Frames. It is
// idempotent and returns the port's Close error the first time.
func (c *Console) Close() error {
	c.wmu.Lock()
	if c.closed {
		c.wmu.Unlock()
		return nil
	}
	c.closed = true
	close(c.done)
	c.cancel()
	var err error
	if c.port != nil {
		err = c.port.Close()
		c.port = nil
	}
	c.wmu.Unlock()
	c.wg.Wait()
	c.Notef("%s: console closed", c.opts.Name)
	return err
}

func (c *Console) isClosed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// readLoop reads the port until Close, reopening it after failures.
func (c *Console) readLoop(port io.ReadWriteCloser) {
	defer c.wg.Done()
	buf := make([]byte, 4096)
	for {
		err := c.readPort(port, buf)
		if c.isClosed() {
			return
		}
		now := time.Now()
		if c.sp.pending() {
			c.sp.flush(sink{c, now})
		}
		c.wmu.Lock()
		if c.port == port {
			port.Close()
			c.port = nil
		}
		c.wmu.Unlock()
		c.count(func(s *Stats) { s.Outages++ })
		c.Notef("%s: port lost: %v", c.opts.Name, err)
		if port = c.reopen(now); port == nil {
			return
		}
	}
}

func (c *Console) readPort(port io.Reader, buf []byte) error {
	for {
		n, err := port.Read(buf)
		if n > 0 {
			c.ingest(buf[:n], time.Now())
		}
		if err != nil {
			return err
		}
		if n == 0 && c.isClosed() {
			return ErrClosed
		}
	}
}

// reopen tries the Opener with exponential backoff until it succeeds or
// the console is closed (then it returns nil).
func (c *Console) reopen(lostAt time.Time) io.ReadWriteCloser {
	delay := c.opts.ReopenMin
	for attempt := 1; ; attempt++ {
		t := time.NewTimer(delay)
		select {
		case <-c.done:
			t.Stop()
			return nil
		case <-t.C:
		}
		p, err := c.open(c.ctx)
		if err == nil {
			c.wmu.Lock()
			if c.closed {
				c.wmu.Unlock()
				p.Close()
				return nil
			}
			c.port = p
			c.wmu.Unlock()
			c.count(func(s *Stats) { s.Reopens++ })
			c.Notef("%s: port reopened after %v (attempt %d)", c.opts.Name, time.Since(lostAt).Round(time.Millisecond), attempt)
			return p
		}
		if attempt&(attempt-1) == 0 { // 1, 2, 4, 8, ...: note without flooding the log
			c.Notef("%s: reopen attempt %d failed: %v", c.opts.Name, attempt, err)
		}
		delay = min(2*delay, c.opts.ReopenMax)
	}
}

// ingest feeds bytes read at time t through the line splitter.
func (c *Console) ingest(p []byte, t time.Time) {
	c.count(func(s *Stats) { s.BytesIn += uint64(len(p)) })
	c.sp.feed(p, sink{c, t})
}

// handleLine classifies one complete line (without its '\n').
func (c *Console) handleLine(line []byte, t time.Time) {
	c.count(func(s *Stats) { s.Lines++ })
	text, f, err := agentproto.Split(line)
	if errors.Is(err, agentproto.ErrNotFrame) {
		c.textLine(text, t)
		return
	}
	if len(text) > 0 {
		c.textLine(text, t)
	}
	body := bytes.TrimRight(line, "\r\n")[len(text)+len(agentproto.Magic):]
	js := body
	if j := bytes.LastIndex(body, []byte(" *")); j >= 0 {
		js = body[:j]
	}
	switch {
	case err == nil:
		c.count(func(s *Stats) { s.FramesIn++ })
		c.addLine(Line{Time: t, Dir: In, Kind: KindFrame, Text: string(Redact(js))})
		c.deliver(Frame{Frame: f, Time: t})
		return
	case errors.Is(err, agentproto.ErrCRC):
		c.count(func(s *Stats) { s.CRCErrors++ })
	case errors.Is(err, agentproto.ErrTooLong):
		c.count(func(s *Stats) { s.Oversize++ })
		js = js[:min(len(js), 160)]
	default:
		c.count(func(s *Stats) { s.SyntaxErrors++ })
	}
	shown, _ := sanitize(Redact(js))
	c.addLine(Line{Time: t, Dir: In, Kind: KindGarbage, Text: fmt.Sprintf("bad frame (%v): %s", err, shown)})
	c.deliver(Frame{Frame: &agentproto.Frame{}, Time: t, Bad: err})
}

// textLine logs console text, or garbage if at least a quarter of its
// bytes are noise.
func (c *Console) textLine(b []byte, t time.Time) {
	b = bytes.TrimRight(b, "\r")
	// Mask before sanitize escapes non-printable bytes: a raw key's bytes
	// are only recognisable as they were sent.
	b = secrets.MaskBytes(b)
	s, bad := sanitize(b)
	kind := KindText
	if bad > 0 && 4*bad >= len(b) {
		kind = KindGarbage
	}
	c.count(func(st *Stats) {
		st.GarbageBytes += uint64(bad)
		if kind == KindText {
			st.TextLines++
		} else {
			st.GarbageLines++
		}
	})
	c.addLine(Line{Time: t, Dir: In, Kind: kind, Text: s})
}

// deliver queues f for the consumer, or drops and counts it if the queue
// is full.
func (c *Console) deliver(f Frame) {
	c.qmu.Lock()
	if len(c.queue) >= c.opts.FrameQueue {
		c.lost++
		c.qmu.Unlock()
		c.count(func(s *Stats) { s.FramesDropped++ })
		c.Notef("RIG FAULT: frame queue full (%d frames not taken), dropped %s frame id=%d seq=%d %s%s",
			c.opts.FrameQueue, f.T, f.ID, f.Seq, f.Op, f.Ev)
		return
	}
	f.Lost, c.lost = c.lost, 0
	c.queue = append(c.queue, f)
	c.qmu.Unlock()
	select {
	case c.qsig <- struct{}{}:
	default:
	}
}

func (c *Console) pop() (Frame, bool) {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if len(c.queue) == 0 {
		return Frame{}, false
	}
	f := c.queue[0]
	c.queue[0] = Frame{}
	c.queue = c.queue[1:]
	if len(c.queue) == 0 {
		c.queue = nil
	}
	return f, true
}

// pump moves frames from the queue to the Frames channel.
func (c *Console) pump() {
	defer c.wg.Done()
	defer close(c.frames)
	for {
		f, ok := c.pop()
		if !ok {
			select {
			case <-c.qsig:
				continue
			case <-c.done:
				return
			}
		}
		select {
		case c.frames <- f:
		case <-c.done:
			return
		}
	}
}

// addLine appends to the log and feeds the mirror. Every line goes
// through rig/secrets here, the one way into the log: a registered secret
// the firmware prints, or one in a frame under a member name Redact does not
// know, never reaches the log, the mirror or a report.
func (c *Console) addLine(l Line) {
	l.Text = secrets.Mask(l.Text)
	c.mmu.Lock()
	defer c.mmu.Unlock()
	c.lmu.Lock()
	if len(c.ring) < c.opts.MaxLines {
		c.ring = append(c.ring, l)
	} else {
		c.ring[c.head] = l
		c.head = (c.head + 1) % len(c.ring)
		c.count(func(s *Stats) { s.LogDropped++ })
	}
	c.lmu.Unlock()
	if c.opts.Mirror != nil {
		io.WriteString(c.opts.Mirror, c.format(l))
	}
	if c.opts.OnLine != nil {
		c.opts.OnLine(l)
	}
}

// Lines returns the console log, oldest first.
func (c *Console) Lines() []Line { return c.Tail(-1) }

// Tail returns the last n lines of the log (all of them if n < 0).
func (c *Console) Tail(n int) []Line {
	c.lmu.Lock()
	defer c.lmu.Unlock()
	total := len(c.ring)
	if n < 0 || n > total {
		n = total
	}
	out := make([]Line, 0, n)
	for i := total - n; i < total; i++ {
		out = append(out, c.ring[(c.head+i)%total])
	}
	return out
}

func (c *Console) format(l Line) string {
	return fmt.Sprintf("%+12.6fs %s\n", l.Time.Sub(c.start).Seconds(), l.body())
}

// WriteLog writes the console log, one line each with its time offset from
// Open, after a header naming the port, the start time and how many old
// lines were dropped.
func (c *Console) WriteLog(w io.Writer) error {
	lines := c.Lines()
	st := c.Stats()
	var b strings.Builder
	fmt.Fprintf(&b, "# console %s opened %s; %d lines", c.opts.Name, c.start.Format(time.RFC3339Nano), len(lines))
	if st.LogDropped > 0 {
		fmt.Fprintf(&b, " (%d older lines dropped)", st.LogDropped)
	}
	b.WriteString("\n")
	for _, l := range lines {
		b.WriteString(c.format(l))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// splitter cuts a byte stream into lines at '\n', keeping at most max bytes
// of a line: memory stays bounded whatever arrives. A line that grows past
// max is reported at once (cut), its further bytes as they are dropped
// (more), and its end (end).
type splitter struct {
	max   int
	buf   []byte
	over  bool // the current line exceeded max
	total int  // length of the current overlong line so far
}

// lineSink receives what a splitter finds. Slices are only valid during
// the call.
type lineSink interface {
	line(b []byte)                // a complete line of at most max bytes, without '\n'
	cut(prefix []byte, total int) // the current line exceeded max; prefix is its first max bytes
	more(n int)                   // n more bytes of the overlong line were dropped
	end(total int)                // the overlong line ended, total bytes long
}

func (s *splitter) feed(p []byte, k lineSink) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		seg := p
		if i >= 0 {
			seg = p[:i]
		}
		switch {
		case s.over:
			s.total += len(seg)
			if len(seg) > 0 {
				k.more(len(seg))
			}
		case len(s.buf)+len(seg) <= s.max:
			s.buf = append(s.buf, seg...)
		default:
			s.over, s.total = true, len(s.buf)+len(seg)
			s.buf = append(s.buf, seg[:s.max-len(s.buf)]...)
			k.cut(s.buf, s.total)
		}
		if i < 0 {
			return
		}
		s.flush(k)
		p = p[i+1:]
	}
}

// flush ends the current line: at a '\n', or at an outage (then an empty
// partial line is not a line).
func (s *splitter) flush(k lineSink) {
	if s.over {
		k.end(s.total)
	} else {
		k.line(s.buf)
	}
	s.buf, s.over, s.total = s.buf[:0], false, 0
}

func (s *splitter) pending() bool { return s.over || len(s.buf) > 0 }

// sink feeds a splitter's findings, read at time t, into the console.
type sink struct {
	c *Console
	t time.Time
}

func (k sink) line(b []byte) { k.c.handleLine(b, k.t) }

func (k sink) cut(prefix []byte, total int) {
	k.c.count(func(s *Stats) { s.Oversize++; s.GarbageLines++; s.GarbageBytes += uint64(total) })
	shown, _ := sanitize(Redact(prefix[:min(len(prefix), 160)]))
	k.c.addLine(Line{Time: k.t, Dir: In, Kind: KindGarbage,
		Text: fmt.Sprintf("overlong line (more than %d bytes), dropping it: %s…", k.c.opts.MaxLine, shown)})
}

func (k sink) more(n int) { k.c.count(func(s *Stats) { s.GarbageBytes += uint64(n) }) }

func (k sink) end(total int) {
	k.c.count(func(s *Stats) { s.Lines++ })
	k.c.addLine(Line{Time: k.t, Dir: In, Kind: KindNote, Text: fmt.Sprintf("overlong line ended after %d bytes", total)})
}

// sanitize makes console bytes printable: ANSI CSI sequences (log colours)
// are removed, '\r' is shown as \r, other control bytes and invalid UTF-8
// as \xNN. bad counts the escaped bytes (noise).
func sanitize(b []byte) (s string, bad int) {
	var sb strings.Builder
	sb.Grow(len(b))
	for i := 0; i < len(b); {
		c := b[i]
		if c == 0x1b && i+1 < len(b) && b[i+1] == '[' {
			j := i + 2
			for j < len(b) && j-i < 32 && b[j] >= 0x20 && b[j] < 0x40 {
				j++
			}
			if j < len(b) && b[j] >= 0x40 && b[j] <= 0x7e {
				i = j + 1
				continue
			}
		}
		if c < utf8.RuneSelf {
			switch {
			case c >= 0x20 && c != 0x7f || c == '\t':
				sb.WriteByte(c)
			case c == '\r':
				sb.WriteString(`\r`)
			default:
				bad++
				fmt.Fprintf(&sb, `\x%02x`, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			bad++
			fmt.Fprintf(&sb, `\x%02x`, c)
			i++
			continue
		}
		sb.Write(b[i : i+size])
		i += size
	}
	return sb.String(), bad
}
