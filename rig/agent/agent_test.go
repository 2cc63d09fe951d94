package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/rig/console"
	"github.com/hilrun/hilrun/rig/console/ptytest"
)

type rig struct {
	pair *ptytest.Pair
	dev  *ptytest.Device
	con  *console.Console
	cl   *Client
}

// newRig puts a fake device on a pty, opens the host side through
// console.SerialOpener like a real board and starts a client.
func newRig(tb testing.TB, opts Options) *rig {
	tb.Helper()
	p, err := ptytest.Open()
	if err != nil {
		tb.Fatal(err)
	}
	d := ptytest.NewDevice(p.Master)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { defer close(served); d.Serve(ctx) }()
	con, err := console.Open(context.Background(), console.SerialOpener(p.Path, 921600), console.Options{Name: p.Path})
	if err != nil {
		tb.Fatal(err)
	}
	cl := New(con, opts)
	tb.Cleanup(func() {
		cl.Close()
		con.Close()
		cancel()
		p.Close()
		<-served
	})
	return &rig{pair: p, dev: d, con: con, cl: cl}
}

func ctxTimeout(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

func TestCalls(t *testing.T) {
	r := newRig(t, Options{})
	r.dev.SetNoise(true)
	ctx := ctxTimeout(t, 5*time.Second)
	for i := range 10 {
		var out agentproto.EchoArgs
		in := agentproto.EchoArgs{Data: fmt.Sprint("ping-", i)}
		if err := r.cl.Call(ctx, agentproto.OpEcho, in, &out); err != nil {
			t.Fatal(err)
		}
		if out != in {
			t.Fatalf("echo %+v → %+v", in, out)
		}
	}
	h, err := r.cl.Hello(ctx)
	if err != nil || h.Proto != agentproto.Version || h.Firmware != "ptytest" {
		t.Fatalf("hello %+v, %v", h, err)
	}
	err = r.cl.Call(ctx, "fail", nil, nil)
	var perr *agentproto.Error
	if !errors.As(err, &perr) || perr.Code != agentproto.ErrBadArgs {
		t.Fatalf("fail: %v", err)
	}
	err = r.cl.Call(ctx, "no.such.op", nil, nil)
	if !errors.As(err, &perr) || perr.Code != agentproto.ErrUnknownOp || !strings.Contains(err.Error(), "no.such.op") {
		t.Fatalf("unknown op: %v", err)
	}
	// Concurrent calls are matched by id.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 10 {
				var out agentproto.EchoArgs
				in := agentproto.EchoArgs{Data: fmt.Sprintf("g%d-%d", g, i)}
				if err := r.cl.Call(ctx, agentproto.OpEcho, in, &out); err != nil || out != in {
					errs <- fmt.Errorf("%+v → %+v, %v", in, out, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := r.cl.Stats()
	if st.Calls != 93 || st.DeviceErrors != 2 || st.UnknownResponses != 0 || st.Timeouts != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestEventsAndWaits(t *testing.T) {
	r := newRig(t, Options{})
	ctx := ctxTimeout(t, 5*time.Second)
	start := r.cl.Mark()
	r.dev.Boot()
	hello, err := r.cl.WaitEvent(ctx, start, agentproto.EvHello, nil)
	if err != nil {
		t.Fatal(err)
	}
	var h agentproto.Hello
	if err := hello.Decode(&h); err != nil || hello.Seq != 1 || hello.Boot != 1 || h.BootCount != 1 {
		t.Fatalf("hello %+v %+v %v", hello, h, err)
	}
	r.dev.Write([]byte("I (100) wifi: connecting\r\n"))
	r.dev.Emit(agentproto.EvConn, agentproto.ConnEvent{State: agentproto.StateConnecting, Attempt: 1})
	r.dev.Emit(agentproto.EvLog, agentproto.LogEvent{Level: "W", Msg: "tls slow"})
	r.dev.Emit(agentproto.EvConn, agentproto.ConnEvent{State: agentproto.StateConnected})
	ev, err := r.cl.WaitConn(ctx, hello.After(), agentproto.StateConnected)
	if err != nil || ev.Seq != 4 || ev.Boot != 1 {
		t.Fatalf("conn %+v %v", ev, err)
	}
	names := []string{}
	for _, e := range r.cl.Events(start) {
		names = append(names, e.Name)
	}
	if strings.Join(names, ",") != "hello,conn,log,conn" {
		t.Fatalf("events %v", names)
	}
	// A waiter started before the event arrives.
	mark := r.cl.Mark()
	got := make(chan Event, 1)
	go func() {
		e, err := r.cl.WaitEvent(ctx, mark, agentproto.EvC2D, func(e Event) bool {
			var c agentproto.C2DEvent
			return e.Decode(&c) == nil && c.Size == 3
		})
		if err != nil {
			t.Error(err)
		}
		got <- e
	}()
	r.dev.Emit(agentproto.EvC2D, agentproto.C2DEvent{Size: 1})
	r.dev.Emit(agentproto.EvC2D, agentproto.C2DEvent{Size: 3})
	if e := <-got; e.Seq != 6 {
		t.Fatalf("c2d %+v", e)
	}
	if len(r.cl.Faults()) != 0 {
		t.Fatalf("faults %v", r.cl.Faults())
	}
	// A wait that is not satisfied says what it saw.
	_, err = r.cl.WaitConn(ctxTimeout(t, 50*time.Millisecond), start, agentproto.StateStopped)
	var we *WaitError
	if !errors.As(err, &we) || !errors.Is(err, context.DeadlineExceeded) || len(we.Seen) != 6 {
		t.Fatalf("wait error %v", err)
	}
	for _, want := range []string{`"conn" with state "stopped"`, "6 events seen", `seq 4 conn {"state":"connected"}`, "I (100) wifi: connecting"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("wait error lacks %q:\n%v", want, err)
		}
	}
}

func TestSeqGapIsRigFault(t *testing.T) {
	faults := make(chan Fault, 4)
	r := newRig(t, Options{OnFault: func(f Fault) { faults <- f }})
	ctx := ctxTimeout(t, 5*time.Second)
	start := r.cl.Mark()
	r.dev.Boot()
	r.dev.Emit(agentproto.EvConn, agentproto.ConnEvent{State: agentproto.StateConnecting})
	ev2, err := r.cl.WaitEvent(ctx, start, agentproto.EvConn, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A pending wait for something that never comes...
	waitErr := make(chan error, 1)
	go func() {
		_, err := r.cl.WaitEvent(ctx, ev2.After(), agentproto.EvMethod, nil)
		waitErr <- err
	}()
	// ...fails when the device skips seq 3.
	r.dev.EmitSeq(4, agentproto.EvConn, agentproto.ConnEvent{State: agentproto.StateConnected})
	err = <-waitErr
	var fe *FaultError
	if !errors.Is(err, ErrRigFault) || !errors.Is(err, ErrSeqGap) || !errors.As(err, &fe) {
		t.Fatalf("wait across a gap: %v", err)
	}
	if fe.Fault.Expected != 3 || fe.Fault.Got != 4 || fe.Fault.Kind != FaultSeqGap || len(fe.Fault.Tail) == 0 {
		t.Fatalf("fault %+v", fe.Fault)
	}
	if f := <-faults; f.Kind != FaultSeqGap || f.Boot != 1 {
		t.Fatalf("OnFault %+v", f)
	}
	// Even the event that revealed the gap is not trusted from before it.
	if _, err := r.cl.WaitConn(ctx, start, agentproto.StateConnected); !errors.Is(err, ErrRigFault) {
		t.Fatalf("wait from before the gap: %v", err)
	}
	t.Log(err)
	// A reset (hello with seq 1) is not a fault; waits after the fault work.
	after := r.cl.Mark()
	r.dev.Boot()
	r.dev.Emit(agentproto.EvConn, agentproto.ConnEvent{State: agentproto.StateConnecting})
	ev, err := r.cl.WaitConn(ctx, after, agentproto.StateConnecting)
	if err != nil || ev.Boot != 2 || ev.Seq != 2 {
		t.Fatalf("after reset %+v %v", ev, err)
	}
	if n := len(r.cl.Faults()); n != 1 {
		t.Fatalf("%d faults: %v", n, r.cl.Faults())
	}
}

func TestSeqChecks(t *testing.T) {
	type ev struct {
		seq  uint64
		name string
	}
	cases := []struct {
		name   string
		events []ev
		faults []string // kinds
		boots  []int
	}{
		{"in order", []ev{{1, "hello"}, {2, "conn"}, {3, "log"}}, nil, []int{1, 1, 1}},
		{"attach mid-boot", []ev{{41, "log"}, {42, "conn"}}, nil, []int{0, 0}},
		{"reset", []ev{{1, "hello"}, {2, "conn"}, {1, "hello"}, {2, "conn"}}, nil, []int{1, 1, 2, 2}},
		{"skip", []ev{{1, "hello"}, {3, "conn"}}, []string{FaultSeqGap}, []int{1, 1}},
		{"repeat", []ev{{1, "hello"}, {2, "conn"}, {2, "conn"}}, []string{FaultSeqRepeat}, []int{1, 1, 1}},
		{"backwards without hello", []ev{{1, "hello"}, {2, "conn"}, {3, "log"}, {1, "conn"}}, []string{FaultSeqBackwards}, []int{1, 1, 1, 1}},
		{"hello not at seq 1", []ev{{1, "hello"}, {2, "conn"}, {7, "hello"}}, []string{FaultSeqGap}, []int{1, 1, 1}},
		{"hello in sequence", []ev{{5, "log"}, {6, "hello"}}, nil, []int{0, 0}},
		{"resync after a fault", []ev{{1, "hello"}, {5, "a"}, {6, "b"}, {7, "c"}}, []string{FaultSeqGap}, []int{1, 1, 1, 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(nil, Options{})
			for _, e := range tc.events {
				c.handle(console.Frame{Frame: &agentproto.Frame{T: agentproto.KindEvent, Seq: e.seq, Ev: e.name}, Time: time.Now()})
			}
			var kinds []string
			for _, f := range c.Faults() {
				kinds = append(kinds, f.Kind)
			}
			if fmt.Sprint(kinds) != fmt.Sprint(tc.faults) {
				t.Errorf("faults %v, want %v", c.Faults(), tc.faults)
			}
			var boots []int
			for _, e := range c.Events(Cursor{}) {
				boots = append(boots, e.Boot)
			}
			if fmt.Sprint(boots) != fmt.Sprint(tc.boots) {
				t.Errorf("boots %v, want %v", boots, tc.boots)
			}
		})
	}
}

func TestOtherFaultsAndStrayFrames(t *testing.T) {
	c := newClient(nil, Options{})
	now := time.Now()
	c.handle(console.Frame{Frame: &agentproto.Frame{T: agentproto.KindEvent, Seq: 1, Ev: "hello"}, Time: now})
	mark := c.Mark()
	c.handle(console.Frame{Frame: &agentproto.Frame{T: agentproto.KindResponse, ID: 77, OK: true}, Time: now})
	c.handle(console.Frame{Frame: &agentproto.Frame{T: agentproto.KindRequest, ID: 1, Op: "echo"}, Time: now})
	if st := c.Stats(); st.UnknownResponses != 1 || st.Unexpected != 1 || st.Faults != 0 {
		t.Fatalf("stats %+v", st)
	}
	c.handle(console.Frame{Frame: agentproto.Failure(0, agentproto.Errorf(agentproto.ErrBadFrame, "frame CRC mismatch")), Time: now})
	c.handle(console.Frame{Frame: &agentproto.Frame{T: agentproto.KindEvent, Seq: 2, Ev: "conn"}, Time: now, Lost: 2})
	var kinds []string
	for _, f := range c.Faults() {
		kinds = append(kinds, f.Kind)
	}
	if fmt.Sprint(kinds) != fmt.Sprint([]string{FaultBadFrame, FaultFramesDropped}) {
		t.Fatalf("faults %v", c.Faults())
	}
	_, err := c.WaitEvent(ctxTimeout(t, time.Second), mark, "conn", nil)
	if !errors.Is(err, ErrRigFault) || errors.Is(err, ErrSeqGap) || !strings.Contains(err.Error(), "bad_frame") {
		t.Fatalf("wait: %v", err)
	}
	// A cursor taken after the faults is not affected by them.
	c.handle(console.Frame{Frame: &agentproto.Frame{T: agentproto.KindEvent, Seq: 3, Ev: "conn"}, Time: now})
	after := c.Mark()
	c.handle(console.Frame{Frame: &agentproto.Frame{T: agentproto.KindEvent, Seq: 4, Ev: "log"}, Time: now})
	if e, err := c.WaitEvent(ctxTimeout(t, time.Second), after, "", nil); err != nil || e.Seq != 4 {
		t.Fatalf("wait after faults: %+v %v", e, err)
	}
}

func TestCallTimeoutSilentDevice(t *testing.T) {
	r := newRig(t, Options{CallTimeout: 100 * time.Millisecond})
	mark := r.cl.Mark()
	r.dev.Boot()
	if _, err := r.cl.WaitEvent(ctxTimeout(t, 5*time.Second), mark, agentproto.EvHello, nil); err != nil {
		t.Fatal(err)
	}
	r.dev.SetSilent(true)
	// No deadline on ctx: Options.CallTimeout applies.
	start := time.Now()
	err := r.cl.Call(context.Background(), agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: "{}"}, nil)
	var te *TimeoutError
	if !errors.As(err, &te) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if el := time.Since(start); el < 100*time.Millisecond || el > 2*time.Second {
		t.Fatalf("timed out after %v", el)
	}
	for _, want := range []string{`"telemetry.send"`, "silent", "rst:0x1 (POWERON_RESET)", `"op":"telemetry.send"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("timeout error lacks %q:\n%v", want, err)
		}
	}
	t.Log(err)
	if st := r.cl.Stats(); st.Timeouts != 1 {
		t.Fatalf("stats %+v", st)
	}
	// A late response is counted, not mistaken for another call's.
	r.dev.SetSilent(false)
	var out agentproto.EchoArgs
	if err := r.cl.Call(ctxTimeout(t, 5*time.Second), agentproto.OpEcho, agentproto.EchoArgs{Data: "x"}, &out); err != nil || out.Data != "x" {
		t.Fatalf("echo after silence %+v %v", out, err)
	}
}

func TestCallTimeoutBabblingDevice(t *testing.T) {
	r := newRig(t, Options{})
	r.dev.SetSilent(true) // a crash loop: noise, no agent
	ctx, stop := context.WithCancel(context.Background())
	babbled := make(chan struct{})
	go func() { defer close(babbled); r.dev.Babble(ctx) }()
	err := r.cl.Call(ctxTimeout(t, 300*time.Millisecond), agentproto.OpEcho, agentproto.EchoArgs{Data: "?"}, nil)
	stop()
	<-babbled
	var te *TimeoutError
	if !errors.As(err, &te) || !strings.Contains(err.Error(), `"echo"`) || !strings.Contains(err.Error(), "babbling") {
		t.Fatalf("err = %v", err)
	}
	st := r.con.Stats()
	if st.GarbageBytes == 0 || st.Oversize == 0 {
		t.Fatalf("console stats %+v", st)
	}
	t.Logf("%.300s…", err)
	t.Logf("console stats %+v", st)
}

func TestCloseFailsPendingAndLeaksNothing(t *testing.T) {
	r := newRig(t, Options{})
	r.dev.SetSilent(true)
	callErr := make(chan error, 1)
	waitErr := make(chan error, 1)
	mark := r.cl.Mark()
	go func() { callErr <- r.cl.Call(ctxTimeout(t, 10*time.Second), agentproto.OpEcho, nil, nil) }()
	go func() {
		_, err := r.cl.WaitEvent(ctxTimeout(t, 10*time.Second), mark, "never", nil)
		waitErr <- err
	}()
	// Make sure the call is on the wire before closing.
	if err := r.dev.WaitRequests(ctxTimeout(t, 5*time.Second), 1); err != nil {
		t.Fatal(err)
	}
	r.con.Close() // the console going away ends the client
	if err := <-callErr; !errors.Is(err, ErrClosed) {
		t.Fatalf("call: %v", err)
	}
	if err := <-waitErr; !errors.Is(err, ErrClosed) {
		t.Fatalf("wait: %v", err)
	}
	r.cl.Close()
	if err := r.cl.Call(context.Background(), agentproto.OpEcho, nil, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("call after close: %v", err)
	}
	for i := 0; ; i++ {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		if !strings.Contains(string(buf), "agent.(*Client).") && !strings.Contains(string(buf), "console.(*Console).") {
			break
		}
		if i > 100 {
			t.Fatalf("goroutines left:\n%s", buf)
		}
		runtime.Gosched()
		<-time.After(time.Millisecond)
	}
}

// BenchmarkRoundTripPTY measures echo calls over a real pty with the fake
// device: go.bug.st/serial on the host side, the device on the master.
func BenchmarkRoundTripPTY(b *testing.B) {
	r := newRig(b, Options{})
	ctx := context.Background()
	in := agentproto.EchoArgs{Data: "0123456789abcdef0123456789abcdef"}
	var out agentproto.EchoArgs
	if err := r.cl.Call(ctx, agentproto.OpEcho, in, &out); err != nil { // warm up
		b.Fatal(err)
	}
	durs := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if err := r.cl.Call(ctx, agentproto.OpEcho, in, &out); err != nil {
			b.Fatal(err)
		}
		durs = append(durs, time.Since(t0))
	}
	b.StopTimer()
	sort.Slice(durs, func(i, j int) bool { return durs[i] < durs[j] })
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	b.ReportMetric(us(durs[len(durs)/2]), "median-µs")
	b.ReportMetric(us(durs[min(len(durs)-1, len(durs)*99/100)]), "p99-µs")
}

// typicalEvents are the events the framing overhead is measured on, with
// realistic seq and uptime values.
func typicalEvents() map[string]*agentproto.Frame {
	conn, _ := agentproto.Event(1234, 3_600_000, agentproto.EvConn, agentproto.ConnEvent{State: agentproto.StateConnected, Attempt: 1})
	acked, _ := agentproto.Event(1235, 3_600_250, agentproto.EvTelemetry, agentproto.TelemetryResult{Ref: 512, Acked: true, Size: 256})
	c2d, _ := agentproto.Event(1236, 3_601_000, agentproto.EvC2D, agentproto.C2DEvent{
		Topic:      "devices/dev-01/messages/devicebound/%24.mid=6b1d&%24.to=%2Fdevices%2Fdev-01%2Fmessages%2FdeviceBound&k=v",
		Properties: map[string]string{"$.mid": "6b1d", "k": "v"}, Payload: `{"cmd":"blink"}`, Size: 15,
		SHA256: "2f1e5cc5e1c0b6a1b8a4b5f7f3b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5"})
	return map[string]*agentproto.Frame{"conn": conn, "telemetry.acked": acked, "c2d": c2d}
}

// framingOverhead is the bytes of the frame line minus the bytes of the
// bare JSON data it carries.
func framingOverhead(tb testing.TB, f *agentproto.Frame) (line, data int) {
	b, err := agentproto.Encode(f)
	if err != nil {
		tb.Fatal(err)
	}
	return len(b), len(f.Data)
}

func BenchmarkFramingOverhead(b *testing.B) {
	for _, name := range []string{"conn", "telemetry.acked", "c2d"} {
		f := typicalEvents()[name]
		b.Run(name, func(b *testing.B) {
			var line, data int
			for range b.N {
				line, data = framingOverhead(b, f)
			}
			b.ReportMetric(float64(line-data), "overhead-B")
			b.ReportMetric(float64(data), "data-B")
		})
	}
}

func TestFramingOverhead(t *testing.T) {
	for _, name := range []string{"conn", "telemetry.acked", "c2d"} {
		line, data := framingOverhead(t, typicalEvents()[name])
		t.Logf("%-16s line %3d B, data %3d B, overhead %2d B", name, line, data, line-data)
		if line-data > 100 {
			t.Errorf("%s: framing overhead %d B", name, line-data)
		}
	}
}

// FuzzHandleFrames feeds arbitrary decoded frames (JSON envelopes, one per
// line) into the client: it must never panic, keep every event, count every
// stray response, and flag exactly the seq breaks a simple model finds.
func FuzzHandleFrames(f *testing.F) {
	f.Add([]byte(`{"t":"evt","seq":1,"ev":"hello"}` + "\n" + `{"t":"evt","seq":2,"ev":"conn","data":{"state":"connected"}}` + "\n" + `{"t":"evt","seq":4,"ev":"log"}`))
	f.Add([]byte(`{"t":"res","id":3,"ok":true}` + "\n" + `{"t":"res","id":0,"err":{"code":"bad_frame","msg":"crc"}}` + "\n" + `{"t":"req","id":1,"op":"x"}`))
	f.Add([]byte(`{"t":"evt","seq":18446744073709551615,"ev":"a"}` + "\n" + `{"t":"evt","seq":0,"ev":"b"}` + "\n" + `{"t":"evt","seq":1,"ev":"hello"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := newClient(nil, Options{MaxEvents: 8})
		var events, strays, faults int
		var last uint64
		have := false
		for _, line := range strings.Split(string(data), "\n") {
			var fr agentproto.Frame
			if json.Unmarshal([]byte(line), &fr) != nil {
				continue
			}
			c.handle(console.Frame{Frame: &fr, Time: time.Now()})
			switch fr.T {
			case agentproto.KindEvent:
				events++
				switch {
				case fr.Ev == agentproto.EvHello && fr.Seq == 1:
				case !have:
				case fr.Seq != last+1:
					faults++
				}
				last, have = fr.Seq, true
			case agentproto.KindResponse:
				if fr.ID == 0 && fr.Err != nil {
					faults++
				} else {
					strays++
				}
			}
		}
		st := c.Stats()
		if st.Events != uint64(events) || st.UnknownResponses != uint64(strays) || st.Faults != uint64(faults) || len(c.Faults()) != faults {
			t.Fatalf("stats %+v; model: %d events, %d strays, %d faults", st, events, strays, faults)
		}
		evs := c.Events(Cursor{})
		if len(evs) > 8+8/4 || (events > 0 && len(evs) == 0) {
			t.Fatalf("%d events retained of %d", len(evs), events)
		}
		for i := 1; i < len(evs); i++ {
			if evs[i].Boot < evs[i-1].Boot || evs[i].pos != evs[i-1].pos+1 {
				t.Fatalf("history out of order: %+v then %+v", evs[i-1], evs[i])
			}
		}
		// A wait from the start fails at once on the first fault, if any.
		if faults > 0 && c.base == 0 {
			_, err := c.WaitEvent(ctxTimeout(t, time.Minute), Cursor{}, "\x00never", nil)
			if !errors.Is(err, ErrRigFault) {
				t.Fatalf("wait with %d faults: %v", faults, err)
			}
		}
	})
}
