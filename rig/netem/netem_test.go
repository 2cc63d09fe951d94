package netem

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A test never sleeps to synchronise: it waits on proxy events or on reads
// with deadlines. "Nothing arrives" is a read that times out (quiet).
const (
	quiet   = 150 * time.Millisecond
	patient = 10 * time.Second
)

// server is the stand-in hub: it hands every accepted connection to the
// test (accepted) or to handle.
type server struct {
	ln       net.Listener
	accepted chan *net.TCPConn
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

func startServer(t testing.TB, handle func(*net.TCPConn)) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{ln: ln, accepted: make(chan *net.TCPConn, 64)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			tc := c.(*net.TCPConn)
			if handle == nil {
				s.accepted <- tc
				continue
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				handle(tc)
				_ = tc.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *server) addr() string { return s.ln.Addr().String() }

// next is the next connection the server accepted.
func (s *server) next(t testing.TB) *net.TCPConn {
	t.Helper()
	select {
	case c := <-s.accepted:
		return c
	case <-time.After(patient):
		t.Fatal("server accepted no connection")
		return nil
	}
}

func echo(c *net.TCPConn) {
	_, _ = io.Copy(c, c)
}

func startProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	p, err := Start(Config{Listen: "127.0.0.1:0", Target: target})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func dial(t testing.TB, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c.(*net.TCPConn)
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), patient)
	t.Cleanup(cancel)
	return ctx
}

func waitKind(t testing.TB, p *Proxy, after uint64, kind string, conn uint64) Event {
	t.Helper()
	e, err := p.WaitEventAfter(ctxT(t), after, func(e Event) bool { return e.Kind == kind && (conn == 0 || e.Conn == conn) })
	if err != nil {
		t.Fatalf("waiting for %q (conn %d): %v; events:\n%s", kind, conn, err, dump(p))
	}
	return e
}

func dump(p *Proxy) string {
	var b strings.Builder
	for _, e := range p.Events() {
		b.WriteString("  " + e.String() + "\n")
	}
	return b.String()
}

// readN reads exactly n bytes within the patient deadline.
func readN(t testing.TB, c net.Conn, n int) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(patient))
	buf := make([]byte, n)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	_ = c.SetReadDeadline(time.Time{})
	return buf
}

// readErr reads until an error and returns what was read and the error.
func readErr(c net.Conn) ([]byte, error) {
	_ = c.SetReadDeadline(time.Now().Add(patient))
	var got []byte
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			return got, err
		}
	}
}

// assertQuiet asserts that nothing arrives on c for a while and that c is
// still open (the read times out rather than failing).
func assertQuiet(t testing.TB, c net.Conn, what string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(quiet))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	var ne net.Error
	if n > 0 || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("%s: expected nothing and an open socket, got %q, %v", what, buf[:n], err)
	}
	_ = c.SetReadDeadline(time.Time{})
}

// firstErr connects, writes and reads like a device's TLS handshake and
// returns the first error. A reset right after accept can already fail the
// connect (the RST arrives before connect() reports success), or the write,
// or the read: the device sees ECONNRESET once, in whichever call comes
// first.
func firstErr(addr string) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write([]byte("hello")); err != nil {
		return err
	}
	_, err = readErr(c)
	return err
}

func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

func roundTrip(t testing.TB, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, c, len(msg)); string(got) != msg {
		t.Fatalf("echo %q, want %q", got, msg)
	}
}

func TestPassThrough(t *testing.T) {
	cases := []struct {
		name  string
		setup func(*Proxy)
		size  int
	}{
		{"plain", func(*Proxy) {}, 1 << 20},
		{"latency and jitter keep order", func(p *Proxy) { p.SetLatency(time.Millisecond, 3*time.Millisecond) }, 128 << 10},
		{"bandwidth", func(p *Proxy) { p.SetBandwidth(4 << 20) }, 256 << 10},
		{"all at once", func(p *Proxy) {
			p.SetLatency(0, 2*time.Millisecond)
			p.SetBandwidth(8 << 20)
			p.DropAfter(1 << 30)
		}, 256 << 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, echo)
			p := startProxy(t, srv.addr())
			tc.setup(p)
			c := dial(t, p.Addr())
			want := make([]byte, tc.size)
			r := rand.New(rand.NewPCG(1, 2))
			for i := range want {
				want[i] = byte(r.Uint32())
			}
			werr := make(chan error, 1)
			go func() {
				// Writes of varying sizes, so chunks differ in size.
				rest := want
				for len(rest) > 0 {
					n := min(len(rest), 1+r.IntN(20000))
					if _, err := c.Write(rest[:n]); err != nil {
						werr <- err
						return
					}
					rest = rest[n:]
				}
				werr <- c.CloseWrite()
			}()
			got, err := readErr(c)
			if err != io.EOF {
				t.Fatalf("read: %v after %d bytes", err, len(got))
			}
			if err := <-werr; err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("echoed %d bytes differ from the %d sent", len(got), len(want))
			}
			e := waitKind(t, p, 0, EvClosed, 0)
			if e.Up != int64(tc.size) || e.Down != int64(tc.size) || e.Detail != "both sides closed" {
				t.Fatalf("closed event %v, want up = down = %d", e, tc.size)
			}
			if p.Live() != 0 {
				t.Fatalf("live %d after close", p.Live())
			}
		})
	}
}

func TestCutAndCloseAll(t *testing.T) {
	cases := []struct {
		name    string
		do      func(*Proxy) int
		kind    string
		wantErr func(error) bool
	}{
		{"Cut resets both sides", (*Proxy).Cut, EvCut, isReset},
		{"CloseAll closes both sides cleanly", (*Proxy).CloseAll, EvClosed, func(err error) bool { return err == io.EOF }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, nil)
			p := startProxy(t, srv.addr())
			c := dial(t, p.Addr())
			sc := srv.next(t)
			if _, err := c.Write([]byte("up")); err != nil {
				t.Fatal(err)
			}
			readN(t, sc, 2)
			if p.Live() != 1 {
				t.Fatalf("live %d", p.Live())
			}
			mark := p.Mark()
			if n := tc.do(p); n != 1 {
				t.Fatalf("acted on %d connections, want 1", n)
			}
			e := waitKind(t, p, mark, tc.kind, 0)
			if e.Up != 2 {
				t.Fatalf("event %v: want up 2", e)
			}
			if _, err := readErr(c); !tc.wantErr(err) {
				t.Fatalf("device side: %v", err)
			}
			if _, err := readErr(sc); !tc.wantErr(err) {
				t.Fatalf("hub side: %v", err)
			}
			if p.Live() != 0 || tc.do(p) != 0 {
				t.Fatalf("live %d after the fault", p.Live())
			}
			// New connections still work.
			c2 := dial(t, p.Addr())
			sc2 := srv.next(t)
			_, _ = sc2.Write([]byte("down"))
			if got := readN(t, c2, 4); string(got) != "down" {
				t.Fatalf("got %q", got)
			}
		})
	}
}

func TestBlackhole(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	p := startProxy(t, srv.addr())
	c := dial(t, p.Addr())
	sc := srv.next(t)
	_, _ = c.Write([]byte("a"))
	readN(t, sc, 1)

	mark := p.Mark()
	p.Blackhole(true)
	waitKind(t, p, mark, EvBlackholeOn, 0)
	if _, err := c.Write([]byte("held-up")); err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Write([]byte("held-down")); err != nil {
		t.Fatal(err)
	}
	assertQuiet(t, sc, "hub side during blackhole")
	assertQuiet(t, c, "device side during blackhole")
	// A new connection is accepted, but the hub is not even dialled.
	c2 := dial(t, p.Addr())
	acc := waitKind(t, p, mark, EvAccept, 0)
	_, _ = c2.Write([]byte("new"))
	assertQuiet(t, c2, "new connection during blackhole")
	select {
	case <-srv.accepted:
		t.Fatal("hub dialled during blackhole")
	default:
	}
	// A peer closing is not seen either: nothing reads.
	if p.Live() != 2 {
		t.Fatalf("live %d during blackhole, want 2", p.Live())
	}

	mark = p.Mark()
	p.Restore()
	waitKind(t, p, mark, EvBlackholeOff, 0)
	if got := readN(t, sc, 7); string(got) != "held-up" {
		t.Fatalf("hub got %q after Restore", got)
	}
	if got := readN(t, c, 9); string(got) != "held-down" {
		t.Fatalf("device got %q after Restore", got)
	}
	waitKind(t, p, mark, EvDialed, acc.Conn)
	sc2 := srv.next(t)
	if got := readN(t, sc2, 3); string(got) != "new" {
		t.Fatalf("hub got %q on the connection opened during blackhole", got)
	}

	// Blackhole(false) resumes like Restore; Cut works during a blackhole,
	// also on a connection still waiting to dial.
	p.Blackhole(true)
	c3 := dial(t, p.Addr())
	mark = p.Mark()
	waitKind(t, p, 0, EvAccept, acc.Conn+1)
	if n := p.Cut(); n != 3 {
		t.Fatalf("cut %d, want 3", n)
	}
	for i, cc := range []net.Conn{c, c2, c3} {
		if _, err := readErr(cc); !isReset(err) {
			t.Fatalf("conn %d after cut during blackhole: %v", i, err)
		}
	}
	p.Blackhole(false)
	waitKind(t, p, mark, EvBlackholeOff, 0)
	c4 := dial(t, p.Addr())
	sc4 := srv.next(t)
	_, _ = c4.Write([]byte("ok"))
	readN(t, sc4, 2)
}

func TestBlackholeBounded(t *testing.T) {
	// During a blackhole the proxy stops reading: a sender is pushed back by
	// TCP flow control instead of filling the proxy's memory.
	t.Parallel()
	srv := startServer(t, nil)
	p := startProxy(t, srv.addr())
	c := dial(t, p.Addr())
	srv.next(t)
	p.Blackhole(true)
	_ = c.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	buf := make([]byte, 64<<10)
	sent := 0
	for sent < 256<<20 {
		n, err := c.Write(buf)
		sent += n
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("write: %v", err)
			}
			break
		}
	}
	if sent >= 256<<20 {
		t.Fatalf("wrote %d MB into a blackhole without back-pressure", sent>>20)
	}
	t.Logf("back-pressure after %d KB (kernel buffers + at most one chunk)", sent>>10)
	if p.Live() != 1 {
		t.Fatal("connection closed during blackhole")
	}
}

func TestRefuseNew(t *testing.T) {
	srv := startServer(t, echo)
	p := startProxy(t, srv.addr())
	live := dial(t, p.Addr())
	roundTrip(t, live, "before")

	mark := p.Mark()
	p.RefuseNew(true)
	if err := firstErr(p.Addr()); !isReset(err) {
		t.Fatalf("refused connection: %v, want ECONNRESET", err)
	}
	e := waitKind(t, p, mark, EvRefused, 0)
	roundTrip(t, live, "live connections keep working")
	p.RefuseNew(false)
	c2 := dial(t, p.Addr())
	roundTrip(t, c2, "accepted again")
	for _, ev := range p.Events() {
		if ev.Conn == e.Conn && ev.Kind != EvRefused {
			t.Fatalf("refused connection also got %v", ev)
		}
	}
	if p.Live() != 2 {
		t.Fatalf("live %d, want 2", p.Live())
	}
}

func TestDialFailed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	p := startProxy(t, target)
	if err := firstErr(p.Addr()); !isReset(err) {
		t.Fatalf("device side: %v, want ECONNRESET", err)
	}
	e := waitKind(t, p, 0, EvDialFailed, 0)
	if !strings.Contains(e.Detail, "refused") {
		t.Fatalf("event %v", e)
	}
}

func TestLatency(t *testing.T) {
	srv := startServer(t, echo)
	p := startProxy(t, srv.addr())
	c := dial(t, p.Addr())
	roundTrip(t, c, "warm-up")
	const d = 40 * time.Millisecond
	p.SetLatency(d, 0)
	start := time.Now()
	roundTrip(t, c, "ping")
	rtt := time.Since(start)
	// Both directions are delayed: at least 2d. The upper bound is a sanity
	// check only.
	if rtt < 2*d || rtt > patient {
		t.Fatalf("round trip %v with latency %v each way", rtt, d)
	}
	p.SetLatency(0, 0)
	roundTrip(t, c, "off again")
}

func TestBandwidth(t *testing.T) {
	const (
		rate  = 128 << 10
		total = 64 << 10
		burst = rate / 10
	)
	cases := []struct {
		name string
		up   bool
	}{{"device→hub", true}, {"hub→device", false}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, nil)
			p := startProxy(t, srv.addr())
			c := dial(t, p.Addr())
			sc := srv.next(t)
			p.SetBandwidth(rate)
			from, to := net.Conn(sc), net.Conn(c)
			if tc.up {
				from, to = c, sc
			}
			start := time.Now()
			go func() { _, _ = from.Write(make([]byte, total)) }()
			readN(t, to, total)
			took := time.Since(start)
			// The bucket starts full (one burst), the rest flows at rate.
			min := time.Duration(total-burst) * time.Second / rate
			if took < min*9/10 {
				t.Fatalf("%d bytes at %d B/s took %v, want ≥ %v", total, rate, took, min)
			}
			t.Logf("%d bytes at %d B/s: %v (lower bound %v)", total, rate, took, min)
		})
	}
}

func TestDropAfter(t *testing.T) {
	srv := startServer(t, nil)
	p := startProxy(t, srv.addr())
	before := dial(t, p.Addr())
	scBefore := srv.next(t)

	const n = 1000
	p.DropAfter(n)
	c := dial(t, p.Addr())
	sc := srv.next(t)
	mark := p.Mark()
	payload := bytes.Repeat([]byte("0123456789"), 500)
	_, _ = c.Write(payload)
	got, err := readErr(sc)
	if len(got) != n || !bytes.Equal(got, payload[:n]) || !isReset(err) {
		t.Fatalf("hub got %d bytes then %v, want exactly %d then ECONNRESET", len(got), err, n)
	}
	if _, err := readErr(c); !isReset(err) {
		t.Fatalf("device side: %v, want ECONNRESET", err)
	}
	e := waitKind(t, p, mark, EvCut, 0)
	if e.Up != n || !strings.Contains(e.Detail, "drop-after") {
		t.Fatalf("event %v", e)
	}
	// The connection opened before DropAfter is not affected.
	if _, err := before.Write(payload); err != nil {
		t.Fatal(err)
	}
	readN(t, scBefore, len(payload))

	// Restore disarms it, also for a connection opened while it was armed.
	armed := dial(t, p.Addr())
	scArmed := srv.next(t)
	p.Restore()
	if _, err := armed.Write(payload); err != nil {
		t.Fatal(err)
	}
	readN(t, scArmed, len(payload))
}

// TestCloseAfter: the cut point of DropAfter, ended with a clean close.
func TestCloseAfter(t *testing.T) {
	srv := startServer(t, nil)
	p := startProxy(t, srv.addr())
	const n = 700
	p.CloseAfter(n)
	c := dial(t, p.Addr())
	sc := srv.next(t)
	mark := p.Mark()
	payload := bytes.Repeat([]byte("abcdefghij"), 200)
	_, _ = c.Write(payload)
	got, err := readErr(sc)
	if len(got) != n || !bytes.Equal(got, payload[:n]) || isReset(err) {
		t.Fatalf("hub got %d bytes then %v, want exactly %d then a clean end", len(got), err, n)
	}
	if _, err := readErr(c); isReset(err) {
		t.Fatalf("device side: %v, want a clean end (EOF)", err)
	}
	e := waitKind(t, p, mark, EvClosed, 0)
	if e.Up != n || !strings.Contains(e.Detail, "close-after") {
		t.Fatalf("event %v", e)
	}
	// DropAfter after it cuts with a reset again.
	p.DropAfter(n)
	c2 := dial(t, p.Addr())
	sc2 := srv.next(t)
	_, _ = c2.Write(payload)
	if _, err := readErr(sc2); !isReset(err) {
		t.Fatalf("after DropAfter: %v, want ECONNRESET", err)
	}
}

func TestWaitEvent(t *testing.T) {
	srv := startServer(t, echo)
	p := startProxy(t, srv.addr())
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := p.WaitEvent(ctx, func(e Event) bool { return e.Kind == EvCut }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitEvent without a match: %v", err)
	}
	var seen []string
	var mu sync.Mutex
	p2, err := Start(Config{Target: srv.addr(), OnEvent: func(e Event) {
		mu.Lock()
		seen = append(seen, e.Kind)
		mu.Unlock()
	}, MaxEvents: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	got := make(chan Event, 1)
	go func() {
		e, _ := p2.WaitEvent(context.Background(), func(e Event) bool { return e.Kind == EvBandwidth })
		got <- e
	}()
	for i := range 10 {
		p2.SetLatency(time.Duration(i), 0)
	}
	p2.SetBandwidth(1)
	if e := <-got; e.Seq != 11 {
		t.Fatalf("waited event %v", e)
	}
	if evs := p2.Events(); len(evs) > 4 || evs[len(evs)-1].Kind != EvBandwidth {
		t.Fatalf("kept events %v", evs)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 11 {
		t.Fatalf("OnEvent saw %d events", len(seen))
	}
}

// TestConcurrentSwitches flips every switch while data flows on several
// connections: no deadlock, no race, and Close still ends everything.
func TestConcurrentSwitches(t *testing.T) {
	srv := startServer(t, echo)
	p := startProxy(t, srv.addr())
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4096)
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.Dial("tcp", p.Addr())
				if err != nil {
					continue
				}
				_ = c.SetDeadline(time.Now().Add(200 * time.Millisecond))
				for range 20 {
					if _, err := c.Write(buf); err != nil {
						break
					}
					if _, err := io.ReadFull(c, buf); err != nil {
						break
					}
				}
				_ = c.Close()
			}
		}()
	}
	for i := range 300 {
		switch i % 8 {
		case 0:
			p.Blackhole(true)
		case 1:
			p.SetLatency(time.Millisecond, time.Millisecond)
		case 2:
			p.Blackhole(false)
		case 3:
			p.SetBandwidth(1 << 20)
		case 4:
			p.Cut()
		case 5:
			p.DropAfter(10000)
		case 6:
			p.CloseAll()
		case 7:
			p.Restore()
		}
		runtime.Gosched()
	}
	p.Blackhole(true) // Close must also end connections held by a blackhole
	close(stop)
	wg.Wait()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if p.Live() != 0 {
		t.Fatalf("live %d after Close", p.Live())
	}
}

func TestCloseEndsEverything(t *testing.T) {
	srv := startServer(t, nil)
	p, err := Start(Config{Listen: "127.0.0.1:0", Target: srv.addr()})
	if err != nil {
		t.Fatal(err)
	}
	// Connections in every state: forwarding with queued delayed data,
	// blocked on a bandwidth limit, waiting to dial during a blackhole.
	c1 := dial(t, p.Addr())
	sc1 := srv.next(t)
	p.SetLatency(time.Hour, 0)
	_, _ = c1.Write([]byte("delayed for an hour"))
	_, _ = sc1.Write([]byte("this too"))
	p.SetLatency(0, 0)
	p.SetBandwidth(1)
	c2 := dial(t, p.Addr())
	srv.next(t)
	_, _ = c2.Write(make([]byte, 1000))
	p.Blackhole(true)
	c3 := dial(t, p.Addr())
	waitKind(t, p, 0, EvAccept, 3)

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	for i, c := range []net.Conn{c1, c2, c3} {
		if _, err := readErr(c); err == nil || os.IsTimeout(err) {
			t.Fatalf("conn %d still open after Close: %v", i+1, err)
		}
	}
	if _, err := net.Dial("tcp", p.Addr()); err == nil {
		t.Fatal("still listening after Close")
	}
	// Close waited for every goroutine (WaitGroup); the stacks confirm it.
	// A goroutine past wg.Done may still be unwinding: yield, never sleep.
	var leaked string
	for range 1000 {
		leaked = netemGoroutines()
		if leaked == "" {
			return
		}
		runtime.Gosched()
	}
	t.Fatalf("goroutines left after Close:\n%s", leaked)
}

func netemGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "rig/netem.(*") && !strings.Contains(g, "netem_test.go") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}

// BenchmarkPassThrough moves the same bytes over a direct connection and
// through the proxy in the same run and reports the throughput ratio.
func BenchmarkPassThrough(b *testing.B) {
	const size = 8 << 20
	sink := func(c *net.TCPConn) {
		buf := make([]byte, 64<<10)
		for {
			for got := 0; got < size; {
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				got += n
			}
			if _, err := c.Write([]byte{1}); err != nil {
				return
			}
		}
	}
	srv := startServer(b, sink)
	p := startProxy(b, srv.addr())
	direct := dial(b, srv.addr())
	proxied := dial(b, p.Addr())
	data := make([]byte, size)
	ack := make([]byte, 1)
	move := func(c net.Conn) time.Duration {
		start := time.Now()
		if _, err := c.Write(data); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, ack); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	move(direct)
	move(proxied)
	var dDirect, dProxy time.Duration
	b.ResetTimer()
	for b.Loop() {
		dDirect += move(direct)
		dProxy += move(proxied)
	}
	b.ReportMetric(float64(dProxy)/float64(dDirect), "proxy/direct-time")
	b.ReportMetric(float64(size)*float64(b.N)/dDirect.Seconds()/1e6, "direct-MB/s")
	b.ReportMetric(float64(size)*float64(b.N)/dProxy.Seconds()/1e6, "proxy-MB/s")
}

func TestMaxConns(t *testing.T) {
	srv := startServer(t, echo)
	p, err := Start(Config{Target: srv.addr(), MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	a, b := dial(t, p.Addr()), dial(t, p.Addr())
	roundTrip(t, a, "a")
	roundTrip(t, b, "b")
	if err := firstErr(p.Addr()); !isReset(err) {
		t.Fatalf("third connection: %v, want ECONNRESET", err)
	}
	e := waitKind(t, p, 0, EvRefused, 0)
	if !strings.Contains(e.Detail, "limit 2") {
		t.Fatalf("event %v", e)
	}
}

func TestDeviceEndWhileHeld(t *testing.T) {
	// A device giving up on a blackholed link is stamped when it happens
	// (RECON-013), but the hub side learns of nothing until the hold ends.
	t.Parallel()
	for _, rst := range []bool{false, true} {
		srv := startServer(t, nil)
		p := startProxy(t, srv.addr())
		c := dial(t, p.Addr())
		sc := srv.next(t)
		_, _ = c.Write([]byte("a"))
		readN(t, sc, 1)
		mark := p.Mark()
		p.Blackhole(true)
		waitKind(t, p, mark, EvBlackholeOn, 0)
		_, _ = c.Write([]byte("held"))
		if rst {
			reset(c)
		} else {
			_ = c.Close()
		}
		ev := waitKind(t, p, mark, EvDeviceEnd, 0)
		if want := map[bool]string{false: "FIN", true: "reset"}[rst]; !strings.HasPrefix(ev.Detail, want) {
			t.Fatalf("rst=%v: device-end detail %q, want %s…", rst, ev.Detail, want)
		}
		assertQuiet(t, sc, "hub side while the device's end is held")
		if p.Live() != 1 {
			t.Fatalf("rst=%v: live %d while held, want 1", rst, p.Live())
		}
		p.Blackhole(false)
		if rst {
			if _, err := readErr(sc); !isReset(err) {
				t.Fatalf("hub side after the hold: %v, want a reset", err)
			}
		} else {
			if got := readN(t, sc, 4); string(got) != "held" {
				t.Fatalf("hub got %q after the hold", got)
			}
			if _, err := readErr(sc); !errors.Is(err, io.EOF) {
				t.Fatalf("hub side after the hold: %v, want EOF", err)
			}
		}
	}
}
