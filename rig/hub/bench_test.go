package hub_test

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/hub/hubtest"
	"github.com/hilrun/hilrun/rig/iothub"
)

// Benchmark parameters. A round is one burst of QoS 1 telemetry from every
// client; benchRoundMsgs is its approximate size (each of the N clients
// publishes max(1, benchRoundMsgs/N) messages).
const (
	benchRoundMsgs    = 10000
	benchPayloadBytes = 256
	benchDialWorkers  = 32               // concurrent TLS+CONNECT dials while setting up
	benchAckTimeout   = 30 * time.Second // bound on any one PUBACK / CONNACK
	benchStoreLimit   = 200000           // hub telemetry store and trace bounds
)

// BenchmarkTelemetryQoS1 measures QoS 1 telemetry throughput of N golden
// paho clients against the reference hub and, in the same run, against a
// bare mochi-mqtt server (allow-all auth hook only, same TLS certificate, same
// capabilities) as the baseline. Every b.Loop iteration sends one round to
// each server (alternating which goes first); each round is timed on its
// own. Reported metrics:
//
//	hub-msgs/s, mochi-msgs/s  acknowledged QoS 1 publishes per second
//	ratio                     hub-msgs/s ÷ mochi-msgs/s (goal ≥ 0.8)
//	hub-B/device, mochi-B/device
//	                          live heap (HeapAlloc) + goroutine stacks
//	                          (StackInuse) added per connected client, after
//	                          GC. Both include the in-process paho client
//	                          (its goroutines, buffers, TLS state) as well
//	                          as the server side, so only their difference
//	                          is the hub's.
//	hub-overhead-B/device     that difference, on the live heap only: what
//	                          the hub keeps per connection on top of mochi.
//	                          Stacks are left out because both sides run the
//	                          same goroutines per client (12: paho's and
//	                          mochi's) and their stack total moves by up to
//	                          ±15 KB/device from run to run with stack reuse,
//	                          which would drown a ~5 KB difference.
//
// ns/op is the wall time of one iteration (a round to each server) and is
// not meaningful by itself. Use -benchtime=Rx for R rounds; each
// sub-benchmark sets up 2×clients TLS connections once, outside the timer.
func BenchmarkTelemetryQoS1(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) { benchTelemetryQoS1(b, n) })
	}
}

func benchTelemetryQoS1(b *testing.B, n int) {
	// Each client costs a socket on both ends for each of the two servers.
	ensureOpenFiles(b, uint64(4*n+512))
	r := newBenchRig(b, n)
	payload := benchPayload()
	k := max(1, benchRoundMsgs/n)

	// Warm up both sides (first-write buffer growth, lazy paho state)
	// outside the measurement.
	if err := r.hubSide.round(1, payload); err != nil {
		b.Fatalf("hub warm-up: %v", err)
	}
	if err := r.mochiSide.round(1, payload); err != nil {
		b.Fatalf("mochi warm-up: %v", err)
	}
	sent := uint64(n) // hub messages so far

	var hubDur, mochiDur time.Duration
	var hubMsgs, mochiMsgs int
	timed := func(s *benchSide) (time.Duration, error) {
		// Start each round from a collected heap, so that a round pays for
		// the garbage it makes and not for the other server's.
		runtime.GC()
		start := time.Now()
		err := s.round(k, payload)
		return time.Since(start), err
	}
	for i := 0; b.Loop(); i++ {
		order := []*benchSide{r.hubSide, r.mochiSide}
		if i%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, s := range order {
			d, err := timed(s)
			if err != nil {
				b.Fatalf("%s round %d: %v", s.name, i, err)
			}
			if s == r.hubSide {
				hubDur += d
				hubMsgs += n * k
			} else {
				mochiDur += d
				mochiMsgs += n * k
			}
		}
	}
	sent += uint64(hubMsgs)
	if got := r.h.LastTelemetrySeq(); got != sent {
		b.Fatalf("hub stored %d telemetry messages, want %d", got, sent)
	}

	hubRate := float64(hubMsgs) / hubDur.Seconds()
	mochiRate := float64(mochiMsgs) / mochiDur.Seconds()
	b.ReportMetric(hubRate, "hub-msgs/s")
	b.ReportMetric(mochiRate, "mochi-msgs/s")
	b.ReportMetric(hubRate/mochiRate, "ratio")
	b.ReportMetric(r.hubSide.bytesPerDevice, "hub-B/device")
	b.ReportMetric(r.mochiSide.bytesPerDevice, "mochi-B/device")
	b.ReportMetric(r.hubSide.heapPerDevice-r.mochiSide.heapPerDevice, "hub-overhead-B/device")
}

// TestBenchmarkSmoke runs the benchmark's code path at toy size and checks
// only correctness: every publish is acknowledged by both servers and the
// hub stores exactly what was sent.
func TestBenchmarkSmoke(t *testing.T) {
	const n, k = 5, 20
	r := newBenchRig(t, n)
	payload := benchPayload()
	if err := r.hubSide.round(k, payload); err != nil {
		t.Fatalf("hub round: %v", err)
	}
	if err := r.mochiSide.round(k, payload); err != nil {
		t.Fatalf("mochi round: %v", err)
	}
	if got := len(r.h.AllTelemetry(0)); got != n*k {
		t.Fatalf("hub stored %d telemetry messages, want %d", got, n*k)
	}
	for _, id := range r.ids {
		msgs := r.h.Telemetry(iothub.Identity{DeviceID: id})
		if len(msgs) != k {
			t.Fatalf("hub stored %d messages from %s, want %d", len(msgs), id, k)
		}
		for _, m := range msgs {
			if m.QoS != 1 || len(m.Payload) != benchPayloadBytes || m.Topic != benchTopic(id) {
				t.Fatalf("stored message from %s: qos %d, %d-byte payload, topic %q", id, m.QoS, len(m.Payload), m.Topic)
			}
		}
	}
	if got := r.mochi.Info.Clone().MessagesReceived; got < n*k {
		t.Fatalf("mochi received %d messages, want ≥ %d", got, n*k)
	}
	if r.hubSide.bytesPerDevice <= 0 || r.mochiSide.bytesPerDevice <= 0 {
		t.Logf("memory per device not positive at this size (hub %.0f B, mochi %.0f B); expected noise for %d clients",
			r.hubSide.bytesPerDevice, r.mochiSide.bytesPerDevice, n)
	}
}

// benchRig is a hub and a bare mochi server, each with N connected clients
// using the same device IDs.
type benchRig struct {
	h         *hubtest.Hub
	mochi     *mqtt.Server
	ids       []string
	hubSide   *benchSide
	mochiSide *benchSide
}

// benchSide is one server's connected clients.
type benchSide struct {
	name           string
	clients        []paho.Client
	topics         []string
	bytesPerDevice float64 // live heap + stacks added per connected client
	heapPerDevice  float64 // live heap only
}

func benchTopic(id string) string { return "devices/" + id + "/messages/events/" }

func benchPayload() []byte {
	p := make([]byte, benchPayloadBytes)
	for i := range p {
		p[i] = 'a' + byte(i%26)
	}
	return p
}

func newBenchRig(tb testing.TB, n int) *benchRig {
	tb.Helper()
	r := &benchRig{}
	r.h = hubtest.Start(tb, func(c *hub.Config) {
		c.MaxStoredTelemetry = benchStoreLimit
		c.MaxTraceEntries = benchStoreLimit
		c.HandshakeTimeout = benchAckTimeout
	})
	r.mochi = startBareMochi(tb, r.h)

	devs := make([]hubtest.Device, n)
	r.ids = make([]string, n)
	for i := range devs {
		id := fmt.Sprintf("bench-%04d", i)
		d := r.h.AddSASDevice(id)
		r.ids[i] = id
		devs[i] = hubtest.Device{Identity: iothub.Identity{DeviceID: id}, Key: d.Authentication.SymmetricKey.PrimaryKey}
	}

	// The hub: golden clients exactly as the hub's tests connect them
	// (hubtest.Dial registers the disconnect cleanup).
	dialHub := func(d hubtest.Device) (paho.Client, error) {
		c, err := r.h.Dial(d)
		if err != nil {
			return nil, fmt.Errorf("%w\n%s", err, r.h.TraceSummary(d.Identity.ClientID()))
		}
		return c, nil
	}
	// The baseline: the same paho options (TLS config, keep-alive, clean
	// session, timeouts) aimed at the bare server, without credentials.
	mochiAddr := mochiListenerAddr(r.mochi)
	dialMochi := func(d hubtest.Device) (paho.Client, error) {
		o := r.h.ClientOptions(hubtest.Device{Identity: d.Identity})
		o.Servers = nil
		o.AddBroker("ssl://" + mochiAddr)
		o.SetUsername("")
		o.SetPassword("")
		c := paho.NewClient(o)
		tok := c.Connect()
		if !tok.WaitTimeout(benchAckTimeout) {
			return nil, fmt.Errorf("connect timed out")
		}
		if err := tok.Error(); err != nil {
			return nil, err
		}
		tb.Cleanup(func() { c.Disconnect(50) })
		return c, nil
	}

	// One extra client per server, connected before measuring, takes the
	// process's one-time costs (crypto tables, package globals, first
	// buffers) out of the per-device memory figures.
	const warm = "bench-warmup"
	wd := r.h.AddSASDevice(warm)
	wdev := hubtest.Device{Identity: iothub.Identity{DeviceID: warm}, Key: wd.Authentication.SymmetricKey.PrimaryKey}
	if _, err := dialHub(wdev); err != nil {
		tb.Fatalf("hub: connect %s: %v", warm, err)
	}
	if _, err := dialMochi(wdev); err != nil {
		tb.Fatalf("mochi: connect %s: %v", warm, err)
	}

	r.hubSide = connectSide(tb, "hub", r.ids, func(i int) (paho.Client, error) { return dialHub(devs[i]) })
	r.mochiSide = connectSide(tb, "mochi", r.ids, func(i int) (paho.Client, error) { return dialMochi(devs[i]) })
	return r
}

const benchMochiListener = "bench-tls"

// startBareMochi starts a mochi server with nothing but an allow-all auth hook, on a TLS
// listener serving the hub's own server certificate, with the capabilities
// the hub gives its mochi server.
func startBareMochi(tb testing.TB, h *hubtest.Hub) *mqtt.Server {
	tb.Helper()
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumQos = 1
	caps.MinimumProtocolVersion = 4
	caps.MaximumPacketSize = uint32(iothub.MaxTelemetryBytes + 64*1024)
	caps.MaximumClientWritesPending = 1024
	caps.MaximumSessionExpiryInterval = uint32((48 * time.Hour).Seconds())
	caps.WildcardSubAvailable = 1
	caps.Compatibilities.ObscureNotAuthorized = false
	srv := mqtt.New(&mqtt.Options{
		InlineClient: false,
		Capabilities: caps,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err := srv.AddHook(new(benchAllowHook), nil); err != nil {
		tb.Fatalf("mochi hook: %v", err)
	}
	cert := h.PKI().ServerTLSCertificate()
	ln := listeners.NewTCP(listeners.Config{
		ID:      benchMochiListener,
		Address: "127.0.0.1:0",
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS12,
			ClientAuth:   tls.RequestClientCert, // as the hub asks
		},
	})
	if err := srv.AddListener(ln); err != nil {
		tb.Fatalf("mochi listener: %v", err)
	}
	if err := srv.Serve(); err != nil {
		tb.Fatalf("mochi serve: %v", err)
	}
	tb.Cleanup(func() { _ = srv.Close() })
	return srv
}

// benchAllowHook is mochi's hooks/auth.AllowHook, copied: importing that
// package pulls in gopkg.in/yaml.v3 (its ledger), which go.mod does not
// list. It allows every CONNECT and every topic.
type benchAllowHook struct{ mqtt.HookBase }

func (*benchAllowHook) ID() string { return "allow-all-auth" }

func (*benchAllowHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck}, []byte{b})
}

func (*benchAllowHook) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

func (*benchAllowHook) OnACLCheck(*mqtt.Client, string, bool) bool { return true }

func mochiListenerAddr(srv *mqtt.Server) string {
	ln, ok := srv.Listeners.Get(benchMochiListener)
	if !ok {
		panic("bench: mochi listener missing")
	}
	return ln.Address()
}

// connectSide dials N clients with a bounded worker pool and records the
// live memory they added (server and client side together).
func connectSide(tb testing.TB, name string, ids []string, dial func(i int) (paho.Client, error)) *benchSide {
	tb.Helper()
	s := &benchSide{name: name, clients: make([]paho.Client, len(ids)), topics: make([]string, len(ids))}
	for i, id := range ids {
		s.topics[i] = benchTopic(id)
	}
	heap0, stack0 := liveBytes()
	errs := make([]error, len(ids))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(benchDialWorkers, len(ids)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				s.clients[i], errs[i] = dial(i)
			}
		}()
	}
	for i := range ids {
		next <- i
	}
	close(next)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			tb.Fatalf("%s: connect %s: %v", name, ids[i], err)
		}
	}
	heap1, stack1 := liveBytes()
	n := float64(len(ids))
	s.heapPerDevice = (float64(heap1) - float64(heap0)) / n
	s.bytesPerDevice = s.heapPerDevice + (float64(stack1)-float64(stack0))/n
	return s
}

// liveBytes is the live heap (HeapAlloc) and goroutine stacks
// (StackInuse) after a full collection. HeapAlloc rather than HeapInuse:
// the latter counts whole spans and swings by ±10 KB/device with
// fragmentation from run to run.
func liveBytes() (heap, stack uint64) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc, m.StackInuse
}

// round has every client publish k QoS 1 messages concurrently, each
// client waiting for the PUBACK of one message before sending the next.
func (s *benchSide) round(k int, payload []byte) error {
	errs := make([]error, len(s.clients))
	var wg sync.WaitGroup
	for i, c := range s.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range k {
				tok := c.Publish(s.topics[i], 1, false, payload)
				if !tok.WaitTimeout(benchAckTimeout) {
					errs[i] = fmt.Errorf("client %d message %d: PUBACK not received within %s", i, j, benchAckTimeout)
					return
				}
				if err := tok.Error(); err != nil {
					errs[i] = fmt.Errorf("client %d message %d: %w", i, j, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
