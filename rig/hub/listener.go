package hub

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/hilrun/hilrun/certs"
)

// WebSocketPath is where IoT Hub serves MQTT over WebSocket (CONN-001).
const WebSocketPath = "/$iothub/websocket"

// connInfo is what the hub knows about a transport connection before MQTT
// starts: its trace id and TLS facts.
type connInfo struct {
	id    uint64
	facts *TLSFacts
	// accepted is when the listener accepted the TCP socket, before any
	// TLS: the start of the device's attempt (Entry.AcceptTime; RECON-001
	// judges a backoff from it, so a slow handshake is not taken for the
	// device's wait).
	accepted time.Time
}

// hubConn is the net.Conn mochi gets: it can go silent (writes are
// discarded) to play a hub that stops answering, and it exposes the TLS
// state of the connection underneath.
type hubConn struct {
	net.Conn
	silent atomic.Bool
	// idleLimit is 1.5 × the connection's keep-alive in nanoseconds, once
	// CONNECT declared one (CONN-023). mochi computes the read deadline in
	// whole seconds (ka + ka/2, so 1 s → 1 s and 3 s → 4 s); the hub
	// replaces it with the exact figure IoT Hub applies.
	idleLimit atomic.Int64

	closeMu sync.Mutex
	closed  bool
	onClose func()

	// conn is the hub's state for the mochi client on this connection
	// (connSlot): set and cleared with Hub.conns.
	conn atomic.Pointer[conn]

	// firstRead tells the hub's attach gate that mochi started reading.
	firstRead firstReadSignal
}

// Close closes the connection and then runs the function whenClosed set.
// Every way a mochi client ends goes through here (Client.Stop), also the
// ones that skip OnDisconnect.
func (c *hubConn) Close() error {
	c.closeMu.Lock()
	f := c.onClose
	c.closed, c.onClose = true, nil
	c.closeMu.Unlock()
	err := c.Conn.Close()
	if f != nil {
		f()
	}
	return err
}

// whenClosed makes Close run f once; false (and f never runs) when the
// connection is closed already.
func (c *hubConn) whenClosed(f func()) bool {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	if c.closed {
		return false
	}
	c.onClose = f
	return true
}

// SetDeadline is what mochi calls after every packet it reads.
func (c *hubConn) SetDeadline(t time.Time) error {
	return c.Conn.SetDeadline(c.keepAliveDeadline(t))
}

// SetReadDeadline applies the same correction.
func (c *hubConn) SetReadDeadline(t time.Time) error {
	return c.Conn.SetReadDeadline(c.keepAliveDeadline(t))
}

func (c *hubConn) keepAliveDeadline(t time.Time) time.Time {
	if d := c.idleLimit.Load(); d > 0 && !t.IsZero() {
		return time.Now().Add(time.Duration(d))
	}
	return t
}

func (c *hubConn) Write(p []byte) (int, error) {
	if c.silent.Load() {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// ConnectionState returns the TLS state, empty for plaintext.
func (c *hubConn) ConnectionState() tls.ConnectionState {
	if cs, ok := c.Conn.(interface{ ConnectionState() tls.ConnectionState }); ok {
		return cs.ConnectionState()
	}
	return tls.ConnectionState{}
}

func (h *Hub) listen() error {
	ln, err := net.Listen("tcp", h.cfg.MQTTAddr)
	if err != nil {
		return fmt.Errorf("mqtt listener %s: %w (choose another address with --mqtt-addr; ports below 1024 need privileges)", h.cfg.MQTTAddr, err)
	}
	h.mqttLn = ln
	mqttConns := NewChanListener(ln.Addr())
	h.wg.Add(1)
	go h.acceptTLS(ln, "mqtts", mqttConns)
	if err := h.srv.AddListener(listeners.NewNet("mqtts", mqttConns)); err != nil {
		return err
	}

	if h.cfg.PlainMQTTAddr != "" {
		pl, err := net.Listen("tcp", h.cfg.PlainMQTTAddr)
		if err != nil {
			return fmt.Errorf("plaintext mqtt listener %s: %w", h.cfg.PlainMQTTAddr, err)
		}
		h.plainLn = pl
		h.log.Warn("PLAINTEXT MQTT LISTENER ENABLED: IoT Hub never accepts plaintext MQTT (CONN-002); use only for debugging", "addr", pl.Addr().String())
		plainConns := NewChanListener(pl.Addr())
		h.wg.Add(1)
		go h.acceptPlain(pl, plainConns)
		if err := h.srv.AddListener(listeners.NewNet("plain", plainConns)); err != nil {
			return err
		}
	}

	if h.cfg.HTTPSAddr != "off" {
		hl, err := net.Listen("tcp", h.cfg.HTTPSAddr)
		if err != nil {
			return fmt.Errorf("https listener %s: %w (choose another address with --https-addr, or \"off\")", h.cfg.HTTPSAddr, err)
		}
		h.httpsLn = hl
		httpConns := NewChanListener(hl.Addr())
		h.wg.Add(1)
		go h.acceptTLS(hl, "https", httpConns)
		h.wsLn = NewChanListener(hl.Addr())
		if err := h.srv.AddListener(listeners.NewNet("wss", h.wsLn)); err != nil {
			return err
		}
		mux := http.NewServeMux()
		mux.HandleFunc(WebSocketPath, h.serveWebSocket)
		mux.Handle("/", h.restHandler())
		h.httpSrv = &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: h.httpT.readHeader,
			ReadTimeout:       h.httpT.read,
			WriteTimeout:      h.httpT.write,
			IdleTimeout:       h.httpT.idle,
			ConnContext: func(ctx context.Context, c net.Conn) context.Context {
				return context.WithValue(ctx, connCtxKey{}, c)
			},
			ErrorLog: nil,
		}
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			_ = h.httpSrv.Serve(httpConns)
		}()
	}
	return nil
}

type connCtxKey struct{}

// Bounds of the HTTPS listener's server (MQTT over WebSocket and the
// service REST API). Without them net/http keeps a connection as long as
// the client likes: idle between requests, or trickling a request, also
// before the client authenticated. A WebSocket leaves them behind when it
// is upgraded: from then on the MQTT deadlines apply (HandshakeTimeout,
// then 1.5 × keep-alive).
const (
	// httpReadHeaderTimeout bounds the request line and headers, which a
	// client sends at once: generous on any link, and it cuts off a client
	// that trickles them (slowloris).
	httpReadHeaderTimeout = 10 * time.Second
	// httpReadTimeout bounds the whole request, headers and body; bodies
	// are at most restMaxBody (1 MiB), seconds on a slow link.
	httpReadTimeout = 30 * time.Second
	// httpWriteTimeout bounds a response, from the end of its request's
	// headers to its last byte: REST answers are immediate, the largest
	// (a full wire trace) takes seconds. Calls that legitimately wait
	// longer (a telemetry long poll, a method call waiting for the device)
	// extend the deadlines by their wait (extendDeadlines).
	httpWriteTimeout = 60 * time.Second
	// httpIdleTimeout is how long a keep-alive connection may sit idle
	// between requests; below the 90 s Go's http.Transport keeps idle
	// connections, so the usual client closes first.
	httpIdleTimeout = 60 * time.Second
)

// httpTimeouts are the server bounds a hub uses: the constants above,
// shorter in tests.
type httpTimeouts struct{ readHeader, read, write, idle time.Duration }

var defaultHTTPTimeouts = httpTimeouts{readHeader: httpReadHeaderTimeout, read: httpReadTimeout,
	write: httpWriteTimeout, idle: httpIdleTimeout}

// extendDeadlines lets a REST response that waits for up to wait take that
// long on top of the server's bounds. The read deadline moves too: once the
// body is read, net/http keeps a read pending to notice the client going
// away, and that read timing out would cancel the request's context.
func (h *Hub) extendDeadlines(w http.ResponseWriter, wait time.Duration) {
	rc := http.NewResponseController(w)
	d := time.Now().Add(wait + h.httpT.write)
	_ = rc.SetReadDeadline(d)
	_ = rc.SetWriteDeadline(d)
}

func (h *Hub) tlsConfigFor(info *connInfo) *tls.Config {
	return &tls.Config{
		MinVersion: uint16(h.tlsMin.Load()),
		MaxVersion: uint16(h.tlsMax.Load()),
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return h.cert.Load(), nil
		},
		// SAS and X.509 devices share the port, so a client certificate is
		// requested but verified in the CONNECT hook (CONN-012..014).
		ClientAuth: tls.RequestClientCert,
		GetConfigForClient: func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
			info.facts.ServerName = chi.ServerName
			for _, v := range chi.SupportedVersions {
				info.facts.OfferedVersions = append(info.facts.OfferedVersions, tls.VersionName(v))
			}
			for _, c := range chi.CipherSuites {
				info.facts.OfferedCiphers = append(info.facts.OfferedCiphers, tls.CipherSuiteName(c))
			}
			return nil, nil
		},
	}
}

// acceptTLS accepts raw TCP, runs each TLS handshake in its own goroutine
// with a deadline (a stalled client never blocks others), records the TLS
// facts, and hands finished connections to out.
func (h *Hub) acceptTLS(ln net.Listener, transport string, out *ChanListener) {
	defer h.wg.Done()
	defer out.Close()
	for {
		raw, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		go h.handshake(raw, time.Now(), transport, out)
	}
}

func (h *Hub) handshake(raw net.Conn, accepted time.Time, transport string, out *ChanListener) {
	info := &connInfo{id: h.connSeq.Add(1), facts: &TLSFacts{Transport: transport}, accepted: accepted}
	remote := raw.RemoteAddr().String()
	deadline := time.Now().Add(h.cfg.HandshakeTimeout)
	_ = raw.SetDeadline(deadline)
	raw = h.detectPlaintext(raw, info.id, accepted, remote, transport)
	tc := tls.Server(raw, h.tlsConfigFor(info))
	if err := tc.Handshake(); err != nil {
		reason := err.Error()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			reason = fmt.Sprintf("TLS handshake did not finish within %s", h.cfg.HandshakeTimeout)
		}
		h.trace.add(Entry{ConnID: info.id, Remote: remote, Dir: DirEvent, Type: EventTLSFailed, Reason: reason, TLS: info.facts, AcceptTime: accepted})
		_ = raw.Close()
		return
	}
	st := tc.ConnectionState()
	info.facts.Version = tls.VersionName(st.Version)
	info.facts.CipherSuite = tls.CipherSuiteName(st.CipherSuite)
	if len(st.PeerCertificates) > 0 {
		leaf := st.PeerCertificates[0]
		info.facts.ClientCertSubject = leaf.Subject.String()
		info.facts.ClientCertThumbprint = certs.Thumbprint(leaf)
		info.facts.ClientCertChainLen = len(st.PeerCertificates)
	}
	h.trace.add(Entry{ConnID: info.id, Remote: remote, Dir: DirEvent, Type: EventTLS, TLS: info.facts, AcceptTime: accepted})
	if transport == "mqtts" {
		// The CONNECT must follow within the same budget; mochi replaces the
		// deadline with the keep-alive one once CONNECT is accepted.
		_ = tc.SetDeadline(time.Now().Add(h.cfg.HandshakeTimeout))
		hc := &hubConn{Conn: tc}
		h.infoByConn.Store(net.Conn(hc), info)
		if !h.deliver(out, hc) {
			h.infoByConn.Delete(net.Conn(hc))
			_ = tc.Close()
		}
		return
	}
	// HTTPS: net/http needs the *tls.Conn itself to fill in Request.TLS.
	_ = tc.SetDeadline(time.Time{})
	h.infoByConn.Store(net.Conn(tc), info)
	if !out.Deliver(tc) {
		h.infoByConn.Delete(net.Conn(tc))
		_ = tc.Close()
	}
}

// mqttConnectByte is the first byte of an MQTT CONNECT (packet type 1, no
// flags); a TLS record starts with its content type, 0x16 for a handshake.
const mqttConnectByte = 0x10

// detectPlaintext peeks at the first bytes a client sends on a TLS port. If
// they look like an MQTT CONNECT rather than a TLS record, it records an
// EventPlaintext entry (CONN-002) that says only that: no bytes of the
// packet, which would carry the credentials, reach the trace. The returned
// conn replays the peeked bytes, so the TLS handshake then fails as usual.
func (h *Hub) detectPlaintext(raw net.Conn, id uint64, accepted time.Time, remote, transport string) net.Conn {
	br := bufio.NewReaderSize(raw, 512)
	first, err := br.Peek(1)
	if err != nil || first[0] != mqttConnectByte {
		return &peekedConn{Conn: raw, r: br}
	}
	// Whatever arrived with the first byte (never blocking for more) tells
	// whether the protocol name confirms it.
	buf, _ := br.Peek(br.Buffered())
	what := "first byte 0x10, an MQTT CONNECT, instead of a TLS record"
	if bytes.Contains(buf, []byte("\x00\x04MQTT")) {
		what = "an MQTT CONNECT (protocol name \"MQTT\") instead of a TLS ClientHello"
	}
	h.trace.add(Entry{ConnID: id, Remote: remote, Dir: DirEvent, Type: EventPlaintext, Requirement: "CONN-002", AcceptTime: accepted,
		Reason: fmt.Sprintf("plaintext MQTT on the TLS port (%s): %s; the packet is not recorded (it would carry the credentials)", transport, what)})
	return &peekedConn{Conn: raw, r: br}
}

// peekedConn reads through the reader that peeked at the connection.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

// Read drains what was peeked, then drops the reader and reads the
// connection directly: every connection keeps its peekedConn for life, and
// a buffer per connection that is never used again would cost 512 bytes
// each at fleet scale. Only one goroutine reads a connection (the TLS
// layer under mochi's read loop), so c.r needs no lock.
func (c *peekedConn) Read(p []byte) (int, error) {
	if c.r != nil {
		if c.r.Buffered() > 0 {
			return c.r.Read(p)
		}
		c.r = nil
	}
	return c.Conn.Read(p)
}

func (h *Hub) acceptPlain(ln net.Listener, out *ChanListener) {
	defer h.wg.Done()
	defer out.Close()
	for {
		raw, err := ln.Accept()
		if err != nil {
			return
		}
		info := &connInfo{id: h.connSeq.Add(1), accepted: time.Now()}
		_ = raw.SetDeadline(time.Now().Add(h.cfg.HandshakeTimeout))
		c := &hubConn{Conn: raw}
		h.infoByConn.Store(net.Conn(c), info)
		h.trace.add(Entry{ConnID: info.id, Remote: c.RemoteAddr().String(), Dir: DirEvent, Type: EventWarning,
			Requirement: "CONN-002", Reason: "plaintext MQTT connection (debug listener)", AcceptTime: info.accepted})
		if !h.deliver(out, c) {
			h.infoByConn.Delete(net.Conn(c))
			_ = c.Close()
		}
	}
}

var wsUpgrader = websocket.Upgrader{
	Subprotocols:    []string{"mqtt"},
	CheckOrigin:     func(*http.Request) bool { return true },
	ReadBufferSize:  16 * 1024,
	WriteBufferSize: 16 * 1024,
}

// serveWebSocket bridges MQTT over WebSocket into mochi (CONN-001, port 443).
func (h *Hub) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	if !websocket.IsWebSocketUpgrade(r) {
		http.Error(w, "MQTT over WebSocket: send an Upgrade request with subprotocol mqtt", http.StatusBadRequest)
		return
	}
	ws, err := wsUpgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader already answered
	}
	c := &wsConn{ws: ws}
	info := &connInfo{id: h.connSeq.Add(1), facts: &TLSFacts{Transport: "wss"}}
	if under, ok := r.Context().Value(connCtxKey{}).(net.Conn); ok {
		if v, ok := h.infoByConn.LoadAndDelete(under); ok {
			info = v.(*connInfo)
			f := *info.facts
			f.Transport = "wss"
			info.facts = &f
		}
	}
	_ = ws.UnderlyingConn().SetDeadline(time.Now().Add(h.cfg.HandshakeTimeout))
	c.tls = r.TLS
	hc := &hubConn{Conn: c}
	h.infoByConn.Store(net.Conn(hc), info)
	if !h.deliver(h.wsLn, hc) {
		h.infoByConn.Delete(net.Conn(hc))
		_ = c.Close()
	}
}

// wsConn adapts a WebSocket to net.Conn with binary frames.
type wsConn struct {
	ws  *websocket.Conn
	tls *tls.ConnectionState
	r   io.Reader
	wmu sync.Mutex
}

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			t, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if t != websocket.BinaryMessage {
				continue
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsConn) Close() error                      { return c.ws.Close() }
func (c *wsConn) LocalAddr() net.Addr               { return c.ws.LocalAddr() }
func (c *wsConn) RemoteAddr() net.Addr              { return c.ws.RemoteAddr() }
func (c *wsConn) SetDeadline(t time.Time) error     { return c.ws.UnderlyingConn().SetDeadline(t) }
func (c *wsConn) SetReadDeadline(t time.Time) error { return c.ws.UnderlyingConn().SetReadDeadline(t) }
func (c *wsConn) SetWriteDeadline(t time.Time) error {
	return c.ws.UnderlyingConn().SetWriteDeadline(t)
}

// ConnectionState exposes the TLS state of the HTTPS connection under the WebSocket.
func (c *wsConn) ConnectionState() tls.ConnectionState {
	if c.tls == nil {
		return tls.ConnectionState{}
	}
	return *c.tls
}

// ChanListener is a net.Listener fed from a channel, so connections can be
// prepared (TLS handshake, WebSocket upgrade) before mochi sees them. The
// hub's listeners use it, and so do the rig's other endpoints (DPS, AWS IoT).
type ChanListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

// NewChanListener is a ChanListener that reports addr as its address.
func NewChanListener(addr net.Addr) *ChanListener {
	return &ChanListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

// Deliver hands c to Accept; false when the listener is closed.
func (l *ChanListener) Deliver(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *ChanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *ChanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *ChanListener) Addr() net.Addr { return l.addr }
