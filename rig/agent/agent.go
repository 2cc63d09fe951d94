// Package agent is the host side of the agent protocol v1
// (devicefw/PROTOCOL.md, devicefw/agentproto) on top of a rig/console
// Console: calls with request ids, matched responses and deadlines; an
// ordered history of the board's events with per-boot sequence checking;
// and waits on that history without sleeps.
//
// A break in the event sequence (a skipped, repeated or backwards seq that
// is not a reset) is a rig fault, not a verdict on the device: it is
// recorded (Faults), reported (Options.OnFault) and fails every wait whose
// range it touches with an error wrapping ErrRigFault, so a lost event is
// never silently taken for an event that did not happen.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/rig/console"
)

// Options tune a Client. Zero values select the defaults.
type Options struct {
	// CallTimeout bounds a Call whose ctx has no deadline. Default 10s.
	CallTimeout time.Duration
	// WaitTimeout bounds a WaitEvent whose ctx has no deadline. Default 30s.
	WaitTimeout time.Duration
	// OnFault, if set, is called (from the client's reader goroutine) for
	// every rig fault as it is recorded. It must not block for long.
	OnFault func(Fault)
	// MaxEvents bounds the retained event history (trimmed in batches to
	// MaxEvents); older events are discarded, and waits from cursors before
	// them fail. Default 100000.
	MaxEvents int
	// TailLines is how many console lines errors and faults carry.
	// Default 20.
	TailLines int
	// OnCallTimeout, if set, is called (from the calling goroutine) when a
	// call misses its deadline: the watchdog probes the board then.
	OnCallTimeout func(op string)
}

func (o Options) withDefaults() Options {
	if o.CallTimeout <= 0 {
		o.CallTimeout = 10 * time.Second
	}
	if o.WaitTimeout <= 0 {
		o.WaitTimeout = 30 * time.Second
	}
	if o.MaxEvents <= 0 {
		o.MaxEvents = 100000
	}
	if o.TailLines <= 0 {
		o.TailLines = 20
	}
	return o
}

// Errors.
var (
	// ErrRigFault marks failures of the rig (lost or duplicated frames,
	// broken event sequence), as opposed to non-conformance of the device.
	ErrRigFault = errors.New("rig fault")
	// ErrSeqGap is the rig fault of a broken event sequence.
	ErrSeqGap = fmt.Errorf("%w: event sequence broken", ErrRigFault)
	// ErrClosed is returned after Close, or once the console has closed.
	ErrClosed = errors.New("agent client closed")
	// ErrBoardHung is the rig fault of a board that stopped answering
	// (SetDown): calls and waits fail with it at once instead of waiting
	// out their deadlines.
	ErrBoardHung = fmt.Errorf("%w: board stopped responding", ErrRigFault)
)

// Fault kinds.
const (
	FaultSeqGap        = "seq-gap"        // seq skipped ahead: events were lost
	FaultSeqRepeat     = "seq-repeat"     // the same seq again
	FaultSeqBackwards  = "seq-backwards"  // seq went back without a hello starting a new boot
	FaultFramesDropped = "frames-dropped" // the console's delivery queue overflowed
	FaultBadFrame      = "bad-frame"      // the device rejected a frame the host sent (id 0 bad_frame)
	FaultCorruptFrame  = "corrupt-frame"  // a frame from the device failed to decode (CRC mismatch, malformed, too long)
	FaultBoardHung     = "board-hung"     // the board stopped answering (the watchdog's echo probe went unanswered)
)

// Fault is one rig fault.
type Fault struct {
	At       time.Time
	Kind     string
	Boot     int    // boot in which it happened
	Expected uint64 // seq expected (seq faults)
	Got      uint64 // seq received (seq faults)
	Event    string // name of the event that revealed it
	Msg      string
	Tail     []console.Line // console lines up to the fault
	pos      uint64         // history position it precedes
}

func (f Fault) String() string {
	switch f.Kind {
	case FaultSeqGap, FaultSeqRepeat, FaultSeqBackwards:
		return fmt.Sprintf("%s in boot %d: expected seq %d, got %d (event %q)", f.Kind, f.Boot, f.Expected, f.Got, f.Event)
	}
	return fmt.Sprintf("%s: %s", f.Kind, f.Msg)
}

// FaultError is how a rig fault fails a wait. It wraps ErrSeqGap (for
// sequence faults) or ErrRigFault.
type FaultError struct {
	Waiting string // what the wait expected
	Fault   Fault
}

func (e *FaultError) Error() string {
	return fmt.Sprintf("agent: waiting for %s: rig fault: %s; console before the fault:\n%s",
		e.Waiting, e.Fault, formatTail(e.Fault.Tail))
}

func (e *FaultError) Unwrap() error {
	switch e.Fault.Kind {
	case FaultSeqGap, FaultSeqRepeat, FaultSeqBackwards:
		return ErrSeqGap
	case FaultBoardHung:
		return ErrBoardHung
	}
	return ErrRigFault
}

// Event is one event from the board.
type Event struct {
	Seq    uint64
	Uptime time.Duration // device uptime when it was sent
	Name   string
	Data   json.RawMessage
	At     time.Time // when the host received it
	Boot   int       // number of hellos with seq 1 seen up to this event (0: before any)
	pos    uint64    // history position
	faults int       // faults recorded up to and including this event
}

// Decode unmarshals the event data into v.
func (e Event) Decode(v any) error {
	if len(e.Data) == 0 {
		return fmt.Errorf("agent: event %q seq %d has no data", e.Name, e.Seq)
	}
	if err := json.Unmarshal(e.Data, v); err != nil {
		return fmt.Errorf("agent: event %q seq %d: %w", e.Name, e.Seq, err)
	}
	return nil
}

// After is the cursor just past this event.
func (e Event) After() Cursor { return Cursor{pos: e.pos + 1, faults: e.faults} }

func (e Event) short() string {
	d := string(e.Data)
	if len(d) > 80 {
		d = d[:77] + "..."
	}
	return fmt.Sprintf("#%d boot %d seq %d %s %s", e.pos, e.Boot, e.Seq, e.Name, d)
}

// Cursor is a position in the event history (and in the list of faults).
// The zero Cursor is the start of the history.
type Cursor struct {
	pos    uint64
	faults int
}

// Stats are the client's counters.
type Stats struct {
	Calls            uint64
	Timeouts         uint64
	DeviceErrors     uint64 // calls answered with an error
	UnknownResponses uint64 // responses whose id no call is waiting for (late, or foreign)
	Unexpected       uint64 // frames a device must not send (requests)
	Events           uint64
	Faults           uint64
}

// Client talks to the agent of one board. It must be the only consumer of
// its console's frames. Its methods are safe for concurrent use.
type Client struct {
	con  *console.Console
	opts Options

	mu      sync.Mutex
	nextID  uint32
	pending map[uint32]chan reply
	events  []Event
	base    uint64 // history position of events[0]
	boot    int
	lastSeq uint64
	haveSeq bool
	faults  []Fault
	stats   Stats
	changed chan struct{} // closed and replaced on every change
	endErr  error
	// down is the board-hung fault while the board is declared hung
	// (SetDown until SetUp): calls and waits fail with it at once.
	down      *Fault
	lastFrame time.Time // when the last frame (good or bad) arrived
	wd        *Watchdog // kicked when a call misses its deadline

	stop chan struct{}
	done chan struct{} // closed when the reader ends (Close or console closed)
	once sync.Once
}

func newClient(con *console.Console, opts Options) *Client {
	return &Client{
		con:     con,
		opts:    opts.withDefaults(),
		pending: map[uint32]chan reply{},
		changed: make(chan struct{}),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
}

// New starts a client on con. Close it before closing con, or let con's
// Close end it.
func New(con *console.Console, opts Options) *Client {
	c := newClient(con, opts)
	go c.run()
	return c
}

func (c *Client) run() {
	frames := c.con.Frames()
	for {
		select {
		case f, ok := <-frames:
			if !ok {
				c.end(fmt.Errorf("%w: console %s closed", ErrClosed, c.con.Name()))
				return
			}
			c.handle(f)
		case <-c.stop:
			c.end(ErrClosed)
			return
		}
	}
}

func (c *Client) end(err error) {
	c.mu.Lock()
	c.endErr = err
	c.broadcastLocked()
	c.mu.Unlock()
	close(c.done)
}

// Close stops the client; pending calls and waits fail with ErrClosed. It
// does not close the console.
func (c *Client) Close() error {
	c.once.Do(func() { close(c.stop) })
	<-c.done
	return nil
}

func (c *Client) broadcastLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *Client) tail() []console.Line {
	if c.con == nil {
		return nil
	}
	return c.con.Tail(c.opts.TailLines)
}

func (c *Client) notef(format string, a ...any) {
	if c.con != nil {
		c.con.Notef("agent: "+format, a...)
	}
}

// reply is what a pending call receives: its response, or the rig fault
// that may have swallowed it.
type reply struct {
	f     *agentproto.Frame
	fault *Fault
}

// handle takes one frame from the console.
func (c *Client) handle(f console.Frame) {
	var faults []Fault
	var note string
	c.mu.Lock()
	c.lastFrame = f.Time
	// A frame lost or corrupted on the line may have been the response any
	// pending call waits for (its id cannot be trusted), so those calls
	// fail now with the rig fault instead of waiting out their deadlines
	// and being taken for a device that did not answer.
	lossLocked := func(ft Fault) {
		ft = c.faultLocked(ft)
		faults = append(faults, ft)
		c.failPendingLocked(ft)
	}
	if f.Lost > 0 {
		lossLocked(Fault{At: f.Time, Kind: FaultFramesDropped,
			Msg: fmt.Sprintf("console dropped %d frames (delivery queue full)", f.Lost)})
	}
	if f.Bad != nil {
		lossLocked(Fault{At: f.Time, Kind: FaultCorruptFrame,
			Msg: "a frame from the board failed to decode (" + f.Bad.Error() + "): lost on the line; it may have been any response or event"})
		c.mu.Unlock()
		c.report(faults, "")
		return
	}
	switch f.T {
	case agentproto.KindResponse:
		if ch, ok := c.pending[f.ID]; ok {
			delete(c.pending, f.ID)
			ch <- reply{f: f.Frame}
		} else if f.ID == 0 && f.Err != nil {
			// The device could not decode a request line: that request
			// (whichever pending call it was) will never be answered.
			lossLocked(Fault{At: f.Time, Kind: FaultBadFrame,
				Msg: "device rejected a frame from the host (corrupted on the line): " + f.Err.Error()})
		} else {
			c.stats.UnknownResponses++
			note = fmt.Sprintf("response for unknown id %d (late, or not ours)", f.ID)
		}
	case agentproto.KindEvent:
		faults = append(faults, c.eventLocked(f)...)
	default:
		c.stats.Unexpected++
		note = fmt.Sprintf("unexpected %q frame from the device", f.T)
	}
	c.mu.Unlock()
	c.report(faults, note)
}

func (c *Client) report(faults []Fault, note string) {
	if note != "" {
		c.notef("%s", note)
	}
	for _, ft := range faults {
		c.notef("RIG FAULT %s", ft)
		if c.opts.OnFault != nil {
			c.opts.OnFault(ft)
		}
	}
}

// failPendingLocked fails every pending call with fault f.
func (c *Client) failPendingLocked(f Fault) {
	for id, ch := range c.pending {
		delete(c.pending, id)
		ch <- reply{fault: &f}
	}
}

// SetDown declares the board hung (the watchdog's verdict): the fault is
// recorded (kind FaultBoardHung, message msg), every pending call and wait
// fails with it at once, and so do new ones until SetUp — except calls
// made with RigContext (the watchdog's own probes and recovery).
func (c *Client) SetDown(at time.Time, msg string) Fault {
	c.mu.Lock()
	f := c.faultLocked(Fault{At: at, Kind: FaultBoardHung, Msg: msg})
	c.down = &f
	c.failPendingLocked(f)
	c.mu.Unlock()
	c.report([]Fault{f}, "")
	return f
}

// SetUp ends SetDown: the board answers again.
func (c *Client) SetUp() {
	c.mu.Lock()
	c.down = nil
	c.broadcastLocked()
	c.mu.Unlock()
}

// Down returns the board-hung fault while the board is declared hung.
func (c *Client) Down() (Fault, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down == nil {
		return Fault{}, false
	}
	return *c.down, true
}

// LastFrame is when the last frame (or frame-like line) came from the board.
func (c *Client) LastFrame() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastFrame
}

// FaultCount is the number of faults recorded so far: Faults()[n:] are the
// faults after a moment at which FaultCount returned n.
func (c *Client) FaultCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.faults)
}

type rigCallKey struct{}

// RigContext marks ctx's calls as the rig's own (watchdog probes, the
// hello after a recovery): they go out even while the board is declared
// hung.
func RigContext(ctx context.Context) context.Context {
	return context.WithValue(ctx, rigCallKey{}, true)
}

func isRigCall(ctx context.Context) bool { v, _ := ctx.Value(rigCallKey{}).(bool); return v }

// faultLocked records a fault placed before the next event.
func (c *Client) faultLocked(f Fault) Fault {
	f.Boot = c.boot
	f.pos = c.base + uint64(len(c.events))
	f.Tail = c.tail()
	c.faults = append(c.faults, f)
	c.stats.Faults++
	c.broadcastLocked()
	return f
}

// eventLocked checks an event's seq, records the fault it reveals (placed
// before it, in the same critical section, so no wait can see the event
// without the fault) and appends it to the history.
func (c *Client) eventLocked(f console.Frame) []Fault {
	var faults []Fault
	switch {
	case f.Ev == agentproto.EvHello && f.Seq == 1:
		c.boot++ // a (re)boot
	case !c.haveSeq:
		// The first event seen, mid-boot, is the baseline: events from
		// before the console was opened are not ours to miss.
	case f.Seq == c.lastSeq+1:
	default:
		kind := FaultSeqGap
		if f.Seq == c.lastSeq {
			kind = FaultSeqRepeat
		} else if f.Seq < c.lastSeq {
			kind = FaultSeqBackwards
		}
		faults = append(faults, c.faultLocked(Fault{At: f.Time, Kind: kind, Expected: c.lastSeq + 1, Got: f.Seq, Event: f.Ev}))
	}
	c.lastSeq, c.haveSeq = f.Seq, true
	ev := Event{Seq: f.Seq, Uptime: time.Duration(f.Uptime) * time.Millisecond, Name: f.Ev, Data: f.Data,
		At: f.Time, Boot: c.boot, pos: c.base + uint64(len(c.events)), faults: len(c.faults)}
	c.events = append(c.events, ev)
	if len(c.events) > c.opts.MaxEvents+c.opts.MaxEvents/4 { // trim in batches
		drop := len(c.events) - c.opts.MaxEvents
		c.events = append(c.events[:0:0], c.events[drop:]...)
		c.base += uint64(drop)
	}
	c.stats.Events++
	c.broadcastLocked()
	return faults
}

// Stats returns a snapshot of the counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Faults returns the rig faults recorded so far.
func (c *Client) Faults() []Fault {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Fault(nil), c.faults...)
}

// Mark returns the cursor at the end of the history: waits from it see
// only events that arrive later.
func (c *Client) Mark() Cursor {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Cursor{pos: c.base + uint64(len(c.events)), faults: len(c.faults)}
}

// Events returns the retained events at or after since, in order.
func (c *Client) Events(since Cursor) []Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	from := max(since.pos, c.base) - c.base
	if from >= uint64(len(c.events)) {
		return nil
	}
	return append([]Event(nil), c.events[from:]...)
}

// Call sends request op with args and waits for its response, decoding the
// response data into result (if not nil). The deadline is ctx's, or
// Options.CallTimeout if ctx has none. A device error is returned as an
// *agentproto.Error (use errors.As); a missed deadline as a *TimeoutError.
func (c *Client) Call(ctx context.Context, op string, args, result any) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.CallTimeout)
		defer cancel()
	}
	deadline, _ := ctx.Deadline()
	ch := make(chan reply, 1)
	c.mu.Lock()
	if c.endErr != nil {
		err := c.endErr
		c.mu.Unlock()
		return fmt.Errorf("agent call %q: %w", op, err)
	}
	if c.down != nil && !isRigCall(ctx) {
		f := *c.down
		c.mu.Unlock()
		return fmt.Errorf("agent call %q: %w", op, &FaultError{Waiting: "the response to " + op, Fault: f})
	}
	for {
		c.nextID++
		if _, busy := c.pending[c.nextID]; c.nextID != 0 && !busy {
			break
		}
	}
	id := c.nextID
	c.pending[id] = ch
	c.stats.Calls++
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}()

	req, err := agentproto.Request(id, op, args)
	if err != nil {
		return fmt.Errorf("agent call %q: args: %w", op, err)
	}
	before := c.con.Stats()
	start := time.Now()
	if err := c.con.WriteFrame(req); err != nil {
		return fmt.Errorf("agent call %q (id %d): %w", op, id, err)
	}
	select {
	case rp := <-ch:
		if rp.fault != nil {
			return fmt.Errorf("agent call %q (id %d): %w", op, id, &FaultError{Waiting: "the response to " + op, Fault: *rp.fault})
		}
		res := rp.f
		if res.Err != nil {
			c.mu.Lock()
			c.stats.DeviceErrors++
			c.mu.Unlock()
			return fmt.Errorf("agent call %q (id %d): device error: %w", op, id, res.Err)
		}
		if !res.OK {
			return fmt.Errorf("agent call %q (id %d): response has neither ok nor err", op, id)
		}
		if result != nil && len(res.Data) > 0 {
			if err := json.Unmarshal(res.Data, result); err != nil {
				return fmt.Errorf("agent call %q (id %d): result: %w", op, id, err)
			}
		}
		return nil
	case <-ctx.Done():
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			// The cause says who ended it (a run interrupted, a board
			// declared hung), which the caller's report needs.
			return fmt.Errorf("agent call %q (id %d): %w", op, id, context.Cause(ctx))
		}
		c.mu.Lock()
		c.stats.Timeouts++
		c.mu.Unlock()
		after := c.con.Stats()
		c.notef("call %q id %d timed out after %v", op, id, time.Since(start).Round(time.Millisecond))
		if !isRigCall(ctx) {
			c.mu.Lock()
			wd := c.wd
			c.mu.Unlock()
			if wd != nil {
				wd.Kick()
			}
			if c.opts.OnCallTimeout != nil {
				c.opts.OnCallTimeout(op)
			}
		}
		return &TimeoutError{Op: op, ID: id, Deadline: deadline, Waited: time.Since(start),
			Console: c.con.Name(), Diagnosis: diagnose(before, after), Tail: c.tail()}
	case <-c.done:
		c.mu.Lock()
		err := c.endErr
		c.mu.Unlock()
		return fmt.Errorf("agent call %q (id %d): %w", op, id, err)
	}
}

// TimeoutError is a call that got no response by its deadline. It wraps
// context.DeadlineExceeded.
type TimeoutError struct {
	Op        string
	ID        uint32
	Deadline  time.Time
	Waited    time.Duration
	Console   string
	Diagnosis string // what the console saw meanwhile: silence, garbage, text without frames, other frames
	Tail      []console.Line
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("agent call %q (id %d): no response by deadline %s (waited %v); %s; last console lines of %s:\n%s",
		e.Op, e.ID, e.Deadline.Format("15:04:05.000"), e.Waited.Round(time.Millisecond), e.Diagnosis, e.Console, formatTail(e.Tail))
}

func (e *TimeoutError) Unwrap() error { return context.DeadlineExceeded }

// diagnose says what the console saw between two snapshots.
func diagnose(a, b console.Stats) string {
	lines := b.Lines - a.Lines
	frames := b.FramesIn - a.FramesIn
	garbage := b.GarbageBytes - a.GarbageBytes
	bad := (b.CRCErrors - a.CRCErrors) + (b.SyntaxErrors - a.SyntaxErrors) + (b.Oversize - a.Oversize)
	bytesIn := b.BytesIn - a.BytesIn
	var s string
	switch {
	case bytesIn == 0:
		s = "the board sent nothing since the request (silent: hung, not running the agent, or wrong port)"
	case frames == 0 && garbage > 0:
		s = fmt.Sprintf("the board sent %d bytes, %d of them garbage, and no frames (babbling: wrong baud rate, crash loop?)", bytesIn, garbage)
	case frames == 0 && lines == 0:
		s = fmt.Sprintf("the board sent %d bytes without completing a line", bytesIn)
	case frames == 0:
		s = fmt.Sprintf("the board printed %d lines but sent no frames (agent not running or stuck?)", lines)
	default:
		s = fmt.Sprintf("the board sent %d frames, none answering this call", frames)
	}
	if bad > 0 {
		s += fmt.Sprintf("; %d frames failed to decode", bad)
	}
	if b.Outages > a.Outages {
		s += fmt.Sprintf("; the port failed %d times", b.Outages-a.Outages)
	}
	return s
}

func formatTail(lines []console.Line) string {
	if len(lines) == 0 {
		return "  (none)"
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString("  ")
		b.WriteString(l.String())
		b.WriteByte('\n')
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// Hello asks the agent who it is.
func (c *Client) Hello(ctx context.Context) (agentproto.Hello, error) {
	var h agentproto.Hello
	err := c.Call(ctx, agentproto.OpHello, nil, &h)
	return h, err
}

// WaitEvent returns the first event after since named name (any name if
// empty) for which match (if not nil) is true. It fails with a *WaitError
// at the deadline (ctx's, or Options.WaitTimeout), listing the events seen
// since the cursor, and with a *FaultError (wrapping ErrRigFault) if a rig
// fault lies between since and the matching event. match runs without
// locks held and may call the client.
func (c *Client) WaitEvent(ctx context.Context, since Cursor, name string, match func(Event) bool) (Event, error) {
	want := "event"
	if name != "" {
		want = fmt.Sprintf("event %q", name)
	}
	if match != nil {
		want += " (matching)"
	}
	return c.wait(ctx, since, want, func(e Event) bool {
		return (name == "" || e.Name == name) && (match == nil || match(e))
	})
}

// WaitConn waits for a conn event (agentproto.ConnEvent) with the given
// state after since.
func (c *Client) WaitConn(ctx context.Context, since Cursor, state string) (Event, error) {
	return c.wait(ctx, since, fmt.Sprintf("event %q with state %q", agentproto.EvConn, state), func(e Event) bool {
		var ce agentproto.ConnEvent
		return e.Name == agentproto.EvConn && json.Unmarshal(e.Data, &ce) == nil && ce.State == state
	})
}

func (c *Client) wait(ctx context.Context, since Cursor, want string, ok func(Event) bool) (Event, error) {
	if _, has := ctx.Deadline(); !has {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.WaitTimeout)
		defer cancel()
	}
	deadline, _ := ctx.Deadline()
	pos := since.pos
	for {
		c.mu.Lock()
		if pos < c.base {
			base := c.base
			c.mu.Unlock()
			return Event{}, fmt.Errorf("agent: waiting for %s: events %d..%d since the cursor were discarded (Options.MaxEvents %d)",
				want, pos, base-1, c.opts.MaxEvents)
		}
		fresh := append([]Event(nil), c.events[pos-c.base:]...)
		end := pos + uint64(len(fresh))
		var fault *Fault
		if since.faults < len(c.faults) {
			f := c.faults[since.faults]
			fault = &f
		}
		changed, endErr := c.changed, c.endErr
		var down *Fault
		if c.down != nil && !isRigCall(ctx) {
			d := *c.down
			down = &d
		}
		c.mu.Unlock()

		for _, e := range fresh {
			if fault != nil && fault.pos <= e.pos {
				return Event{}, &FaultError{Waiting: want, Fault: *fault}
			}
			if ok(e) {
				return e, nil
			}
		}
		if fault != nil && fault.pos <= end {
			return Event{}, &FaultError{Waiting: want, Fault: *fault}
		}
		if down != nil {
			return Event{}, &FaultError{Waiting: want, Fault: *down}
		}
		pos = end
		if endErr != nil {
			return Event{}, fmt.Errorf("agent: waiting for %s: %w", want, endErr)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return Event{}, fmt.Errorf("agent: waiting for %s: %w", want, context.Cause(ctx))
			}
			return Event{}, &WaitError{Want: want, Since: since, Deadline: deadline,
				Seen: c.Events(since), Tail: c.tail()}
		}
	}
}

// WaitError is a wait that ended at its deadline. It wraps
// context.DeadlineExceeded.
type WaitError struct {
	Want     string
	Since    Cursor
	Deadline time.Time
	Seen     []Event // events since the cursor
	Tail     []console.Line
}

func (e *WaitError) Error() string {
	var b strings.Builder
	// In the protocol's words (agent events, not the rig's cursors):
	// what was expected, until when, and what came instead.
	fmt.Fprintf(&b, "expected from the board: %s; not seen by the deadline %s; %d events seen while waiting",
		e.Want, e.Deadline.Format("15:04:05.000"), len(e.Seen))
	const show = 20
	seen := e.Seen
	if len(seen) > show {
		fmt.Fprintf(&b, " (last %d)", show)
		seen = seen[len(seen)-show:]
	}
	b.WriteString(":\n")
	for _, ev := range seen {
		b.WriteString("  " + ev.short() + "\n")
	}
	b.WriteString("last console lines:\n")
	b.WriteString(formatTail(e.Tail))
	return b.String()
}

func (e *WaitError) Unwrap() error { return context.DeadlineExceeded }
