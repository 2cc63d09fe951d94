package hub

import (
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// AttachGate counts the connections handed to mochi that mochi has not
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
type AttachGate struct {
	mu      sync.Mutex
	closing bool
	pending int
	drained chan struct{}
}

// enter reserves a place for one connection; false once Close began (the
// caller then closes the connection itself).
func (g *AttachGate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closing {
		return false
	}
	g.pending++
	return true
}

func (g *AttachGate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.pending--
	if g.pending == 0 && g.drained != nil {
		close(g.drained)
		g.drained = nil
	}
}

// CloseAndWait refuses new connections and waits, at most d, for the
// pending ones to be read once. Call it after the listeners stopped
// delivering and before mochi's Server.Close.
func (g *AttachGate) CloseAndWait(d time.Duration) {
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

// deliver hands c, whose first Read fires sig, to mochi through out,
// tracked by g; false (c not handed, the caller cleans up) when g is
// closing or out is closed.
func (g *AttachGate) deliver(out *ChanListener, c net.Conn, sig *firstReadSignal) bool {
	if !g.enter() {
		return false
	}
	var once sync.Once
	leave := func() { once.Do(g.leave) }
	sig.f.Store(&leave)
	if !out.Deliver(c) {
		sig.f.Store(nil)
		leave()
		return false
	}
	return true
}

// Deliver hands c to mochi through out, tracked by g; false (c not
// handed, the caller closes it) when g is closing or out is closed. The
// other mochi endpoints of the rig (DPS, AWS IoT) use it.
func (g *AttachGate) Deliver(out *ChanListener, c *AttachedConn) bool {
	return g.deliver(out, c, &c.firstRead)
}

// AttachedConn wraps a connection for AttachGate.Deliver: its first Read
// tells the gate mochi took it in.
type AttachedConn struct {
	net.Conn
	firstRead firstReadSignal
}

// NewAttachedConn wraps c.
func NewAttachedConn(c net.Conn) *AttachedConn { return &AttachedConn{Conn: c} }

func (c *AttachedConn) Read(p []byte) (int, error) {
	c.firstRead.fire()
	return c.Conn.Read(p)
}

// ConnectionState is the wrapped connection's TLS state, empty for
// plaintext (the endpoints' hooks read it from mochi's client).
func (c *AttachedConn) ConnectionState() tls.ConnectionState {
	if cs, ok := c.Conn.(interface{ ConnectionState() tls.ConnectionState }); ok {
		return cs.ConnectionState()
	}
	return tls.ConnectionState{}
}

// deliver hands hc to mochi through out, tracked by the hub's attach gate.
func (h *Hub) deliver(out *ChanListener, hc *hubConn) bool {
	return h.attach.deliver(out, hc, &hc.firstRead)
}

// Read is how mochi reads packets; the first call tells the attach gate
// the connection is attached.
func (c *hubConn) Read(p []byte) (int, error) {
	c.firstRead.fire()
	return c.Conn.Read(p)
}
