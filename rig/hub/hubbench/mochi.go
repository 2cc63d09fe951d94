package hubbench

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/hilrun/hilrun/certs"
	"github.com/hilrun/hilrun/rig/iothub"
)

// The bare mochi-mqtt baseline (Options.Mochi): the MQTT library the hub
// is built on, with an allow-all auth hook and nothing else, on the same
// TLS certificate and with the capabilities the hub gives it. Its figures
// separate what the hub's rules, trace and stores cost from what the
// library and Go's TLS and network stack cost.

type allowHook struct{ mqtt.HookBase }

func (*allowHook) ID() string { return "hilrun-bench-allow" }

func (*allowHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck}, []byte{b})
}

func (*allowHook) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

func (*allowHook) OnACLCheck(*mqtt.Client, string, bool) bool { return true }

// startMochi runs a bare mochi server on an ephemeral 127.0.0.1 TLS port.
func startMochi(pki *certs.HubPKI, tlsMax uint16) (*mqtt.Server, string, error) {
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumQos = 1
	caps.MinimumProtocolVersion = 4
	caps.MaximumPacketSize = uint32(iothub.MaxTelemetryBytes + 64*1024)
	caps.MaximumClientWritesPending = 64
	caps.MaximumSessionExpiryInterval = uint32((48 * time.Hour).Seconds())
	caps.Compatibilities.ObscureNotAuthorized = false
	srv := mqtt.New(&mqtt.Options{Capabilities: caps, ClientNetReadBufferSize: 1024,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := srv.AddHook(new(allowHook), nil); err != nil {
		return nil, "", err
	}
	cert := pki.ServerTLSCertificate()
	ln := listeners.NewTCP(listeners.Config{ID: "bench-mochi", Address: "127.0.0.1:0",
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, MaxVersion: tlsMax,
			ClientAuth: tls.RequestClientCert}})
	if err := srv.AddListener(ln); err != nil {
		return nil, "", err
	}
	if err := srv.Serve(); err != nil {
		return nil, "", err
	}
	l, ok := srv.Listeners.Get("bench-mochi")
	if !ok {
		_ = srv.Close()
		return nil, "", fmt.Errorf("mochi listener missing")
	}
	return srv, l.Address(), nil
}

// connectMochi starts a bare mochi server and connects a generator to it.
func connectMochi(o *Options, pki *certs.HubPKI, mkSetup func(string) *Setup, p func(string, ...any)) (*side, func(), error) {
	srv, addr, err := startMochi(pki, o.TLSMax)
	if err != nil {
		return nil, nil, fmt.Errorf("bare mochi: %w", err)
	}
	g, err := startGenerator(o, "mochi")
	if err != nil {
		_ = srv.Close()
		return nil, nil, err
	}
	stop := func() { g.stop(); _ = srv.Close() }
	if _, err := g.call(Request{Op: "setup", Setup: mkSetup(addr)}); err != nil {
		stop()
		return nil, nil, err
	}
	heap0, stack0 := liveBytes()
	p("mochi: connecting %d devices to a bare mochi-mqtt server (allow-all, in this process)", o.Devices)
	r, err := g.call(Request{Op: "connect"})
	if err != nil {
		stop()
		return nil, nil, err
	}
	if r.Errors > 0 {
		stop()
		return nil, nil, fmt.Errorf("mochi: %d of %d devices failed to connect; first: %s", r.Errors, o.Devices, r.First)
	}
	heap1, stack1 := liveBytes()
	n := float64(o.Devices)
	t := &Target{Name: "bare mochi-mqtt (allow-all hook, same TLS)", Connect: opOf(r),
		Memory: Memory{HeapPerConn: (float64(heap1) - float64(heap0)) / n, StackPerConn: (float64(stack1) - float64(stack0)) / n}}
	p("mochi: %d connected in %s; heap %s, stacks %s per connection", r.Count, round(r.Elapsed), kb(t.Memory.HeapPerConn), kb(t.Memory.StackPerConn))
	return &side{name: "mochi", g: g, pid: "self", t: t}, stop, nil
}
