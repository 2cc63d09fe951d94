package hub

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// attachGate counts the connections handed to mochi that mochi has not
// started reading yet, so Close can wait for them before it stops the
// server.
//
// Why: mochi's attachClient calls Listeners.ClientsWg.Add(1) in the
// goroutine its listener spawns for each accepted connection, and
// Server.Close calls ClientsWg.Wait. A connection accepted just before
// Close can make that Add run concurrently with Wait while the counter is
// zero, which the WaitGroup contract forbids (and the race detector
// reports). mochi's first Read of the connection comes after that Add, so
// once every handed connection has been read once, Close is safe.
type attachGate struct {
	mu      sync.Mutex
	closing bool
	pending int
	drained chan struct{}
}

// enter reserves a place for one connection; false once Close began (the
// caller then closes the connection itself).
func (g *attachGate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closing {
		return false
	}
	g.pending++
	return true
}

func (g *attachGate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.pending--
	if g.pending == 0 && g.drained != nil {
		close(g.drained)
		g.drained = nil
	}
}

// closeAndWait refuses new connections and waits, at most d, for the
// pending ones to be read once.
func (g *attachGate) closeAndWait(d time.Duration) {
	g.mu.Lock()
	g.closing = true
	if g.pending == 0 {
		g.mu.Unlock()
		return
	}
	ch := make(chan struct{})
	g.drained = ch
	g.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	}
}

// firstReadSignal runs a function on a hubConn's first Read.
type firstReadSignal struct {
	f atomic.Pointer[func()]
}

func (s *firstReadSignal) fire() {
	if s.f.Load() == nil {
		return
	}
	if f := s.f.Swap(nil); f != nil {
		(*f)()
	}
}

// deliver hands hc to mochi through out, tracked by the hub's attach gate;
// false (hc not handed, the caller cleans up) when the hub is closing or
// out is closed.
func (h *Hub) deliver(out *ChanListener, hc *hubConn) bool {
	if !h.attach.enter() {
		return false
	}
	var once sync.Once
	leave := func() { once.Do(h.attach.leave) }
	hc.firstRead.f.Store(&leave)
	if !out.Deliver(net.Conn(hc)) {
		hc.firstRead.f.Store(nil)
		leave()
		return false
	}
	return true
}

// Read is how mochi reads packets; the first call tells the attach gate
// the connection is attached.
func (c *hubConn) Read(p []byte) (int, error) {
	c.firstRead.fire()
	return c.Conn.Read(p)
}
