package hub

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/hilrun/hilrun/rig/iothub"
)

// testHTTPTimeouts are short server bounds, so a test sees them act.
var testHTTPTimeouts = httpTimeouts{readHeader: 300 * time.Millisecond, read: 600 * time.Millisecond,
	write: 600 * time.Millisecond, idle: 300 * time.Millisecond}

// testHandshakeTimeout is a short Config.HandshakeTimeout.
const testHandshakeTimeout = 300 * time.Millisecond

// closeSlack is how much later than its bound the server may close a
// connection here (a loaded 2-core machine under -race).
const closeSlack = 3 * time.Second

func TestHTTPServerHasBounds(t *testing.T) {
	h, err := Start(Config{Host: "hub.test", MQTTAddr: "127.0.0.1:0", HTTPSAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	s := h.httpSrv
	for name, got := range map[string][2]time.Duration{
		"ReadHeaderTimeout": {s.ReadHeaderTimeout, httpReadHeaderTimeout},
		"ReadTimeout":       {s.ReadTimeout, httpReadTimeout},
		"WriteTimeout":      {s.WriteTimeout, httpWriteTimeout},
		"IdleTimeout":       {s.IdleTimeout, httpIdleTimeout},
	} {
		if got[0] <= 0 || got[0] != got[1] {
			t.Errorf("%s = %s, want %s", name, got[0], got[1])
		}
	}
}

// restStartBounded is restStart with the short server bounds and the given
// Config.HandshakeTimeout (0: the default).
func restStartBounded(t *testing.T, handshake time.Duration) *restEnv {
	t.Helper()
	h, err := start(Config{Host: "hub.test", MQTTAddr: "127.0.0.1:0", HTTPSAddr: "127.0.0.1:0",
		HandshakeTimeout: handshake}, testHTTPTimeouts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	e := &restEnv{t: t, h: h, base: "https://" + h.HTTPSAddr()}
	e.client = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: h.RootCAs(), ServerName: "localhost", MinVersion: tls.VersionTLS12},
	}}
	t.Cleanup(e.client.CloseIdleConnections)
	e.owner = e.token("iothubowner", h.Host(), time.Now().Add(time.Hour), false)
	return e
}

// dialHTTPS opens a TLS connection to the HTTPS listener.
func (e *restEnv) dialHTTPS() *tls.Conn {
	e.t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", e.h.HTTPSAddr(),
		&tls.Config{RootCAs: e.h.RootCAs(), ServerName: "localhost", MinVersion: tls.VersionTLS12})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = c.Close() })
	return c
}

// closedBy reads (and discards) until the server closes c; it fails the
// test unless that happens within bound + closeSlack of since.
func closedBy(t *testing.T, c net.Conn, r io.Reader, since time.Time, bound time.Duration, what string) {
	t.Helper()
	deadline := since.Add(bound + closeSlack)
	_ = c.SetReadDeadline(deadline)
	_, err := io.Copy(io.Discard, r)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: connection still open %s after %s (bound %s)", what, time.Since(since).Round(time.Millisecond), what, bound)
	}
	t.Logf("%s: closed after %s (bound %s)", what, time.Since(since).Round(time.Millisecond), bound)
}

func TestHTTPIdleAndSlowConnectionsClosed(t *testing.T) {
	t.Parallel() // a hub of its own; waits on the hub's timers
	e := restStartBounded(t, testHandshakeTimeout)
	ht := testHTTPTimeouts

	t.Run("idle keep-alive after an unauthenticated request", func(t *testing.T) {
		c := e.dialHTTPS()
		br := bufio.NewReader(c)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "GET /hilrun/status HTTP/1.1\r\nHost: hub.test\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || resp.Close {
			t.Fatalf("status %d, close %v: want a 401 on a kept-alive connection", resp.StatusCode, resp.Close)
		}
		closedBy(t, c, br, time.Now(), ht.idle, "idle keep-alive")
	})

	t.Run("connection that never sends a request", func(t *testing.T) {
		c := e.dialHTTPS()
		closedBy(t, c, c, time.Now(), ht.readHeader, "no request")
	})

	// The TLS handshake has its own deadline on both listeners, before
	// net/http or mochi see the connection (Config.HandshakeTimeout).
	for name, addr := range map[string]string{"https": e.h.HTTPSAddr(), "mqtts": e.h.MQTTAddr()} {
		t.Run("TLS handshake never finished on "+name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			// The start of a ClientHello record that announces more than it sends.
			if _, err := c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}); err != nil {
				t.Fatal(err)
			}
			closedBy(t, c, c, start, testHandshakeTimeout, "handshake on "+name)
		})
	}

	t.Run("request headers trickled", func(t *testing.T) {
		c := e.dialHTTPS()
		start := time.Now()
		if _, err := io.WriteString(c, "GET /hilrun/status HTTP/1.1\r\nHost: hub.test\r\n"); err != nil {
			t.Fatal(err)
		}
		// One header byte every 50 ms: each read succeeds, only the
		// deadline on the whole header can end it. The writer stops when
		// the server closes or after the bound has long passed.
		done := make(chan struct{})
		defer close(done)
		go func() {
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			stop := time.After(ht.readHeader + closeSlack)
			for {
				select {
				case <-done:
					return
				case <-stop:
					return
				case <-tick.C:
					_ = c.SetWriteDeadline(time.Now().Add(time.Second))
					if _, err := c.Write([]byte("X")); err != nil {
						return
					}
				}
			}
		}()
		closedBy(t, c, c, start, ht.readHeader, "trickled headers")
	})

	t.Run("request body never finished", func(t *testing.T) {
		c := e.dialHTTPS()
		start := time.Now()
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		req := fmt.Sprintf("POST /hilrun/faults HTTP/1.1\r\nHost: hub.test\r\nAuthorization: %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"action\":", e.owner)
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		closedBy(t, c, c, start, ht.read, "unfinished body")
	})
}

// TestHTTPLongCallsOutliveBounds: calls that wait by design (a telemetry
// long poll, a direct method waiting for the device, METH-006) get their
// answer although they take longer than the server's read and write bounds.
func TestHTTPLongCallsOutliveBounds(t *testing.T) {
	t.Parallel() // a hub of its own; waits on the hub's timers
	e := restStartBounded(t, 0)
	wait := 3 * testHTTPTimeouts.write // well past both bounds
	d := e.putDevice("/devices/slowpoke")

	start := time.Now()
	resp, b := e.do(http.MethodGet, fmt.Sprintf("/hilrun/telemetry/wait?deviceId=slowpoke&timeoutSeconds=%g", wait.Seconds()), nil, nil)
	if resp.StatusCode != http.StatusRequestTimeout || time.Since(start) < wait {
		t.Fatalf("telemetry long poll: status %d after %s, want 408 after %s; body %s", resp.StatusCode, time.Since(start), wait, b)
	}

	c := e.restConnect(d)
	restWait(t, c.Subscribe(iothub.MethodsFilter, 0, func(paho.Client, paho.Message) {}), "subscribe methods") // never answers
	start = time.Now()
	resp, b = e.do(http.MethodPost, "/twins/slowpoke/methods", map[string]any{"methodName": "hang", "responseTimeoutInSeconds": 2}, nil)
	if resp.StatusCode != http.StatusGatewayTimeout || time.Since(start) < 2*time.Second {
		t.Fatalf("method call: status %d after %s, want 504 after 2 s; body %s", resp.StatusCode, time.Since(start), b)
	}
}
