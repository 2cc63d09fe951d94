// Package hubbench measures the reference hub (rig/hub) at fleet scale: N
// SAS-authenticated devices over real TLS on 127.0.0.1 send QoS 1
// telemetry, twin reported patches, answer direct methods and take C2D
// messages, and the run reports throughput, latency percentiles and the
// hub's memory per connection. When a Mosquitto binary is available it runs
// the same QoS 1 telemetry load against a Mosquitto it starts itself, in the
// same run, and reports the ratio.
//
// The hub runs in the calling process and the load generator in a child
// process (ServeLoad, `hilrun bench-load`), so that heap and RSS figures
// are the hub's own. Benchmarks report figures; nothing here asserts a
// speed.
package hubbench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"sync"
	"time"

	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/iothub"
)

// Options configure a run.
type Options struct {
	Devices  int           // concurrent device connections
	Duration time.Duration // telemetry phase length per broker (when Messages is 0)
	Messages int           // telemetry messages per device; 0 = send for Duration
	Payload  int           // telemetry payload bytes
	// Mosquitto is "auto" (use it when installed), "off", or a binary path.
	Mosquitto string
	// Twin is how many reported-property patches each device sends.
	Twin int
	// ServiceOps is how many direct method calls, and how many C2D
	// messages, the service side sends (spread over the devices).
	ServiceOps int
	// Hold keeps every connection open this long after the load and
	// reports memory again at its end (the fleet-scale check).
	Hold time.Duration
	// TLSMax caps the TLS version both brokers negotiate (tls.VersionTLS12
	// by default, as most device stacks; 0x0304 for TLS 1.3).
	TLSMax uint16
	// Rounds splits the telemetry phase into slices that alternate
	// between the brokers (default 6).
	Rounds int
	// Mochi adds a bare mochi-mqtt server (allow-all, same TLS, in this
	// process) as a third side of the telemetry comparison.
	Mochi bool
	// Sources spreads client sockets over 127.0.0.1 … 127.0.0.N (0: one).
	Sources int
	// CPUProfile, when set, receives a CPU profile of the hub process
	// during the hub's telemetry phase.
	CPUProfile string
	// MemProfile, when set, receives a heap profile of the hub process
	// once every device is connected.
	MemProfile string
	// Progress receives human-readable progress lines (nil: none).
	Progress io.Writer
	// LoadCommand starts the load generator process; it must run
	// ServeLoad on its stdin/stdout. Default: this executable with the
	// argument "bench-load".
	LoadCommand func() *exec.Cmd
	// HubConfig adjusts the hub's configuration (tests shrink bounds).
	HubConfig func(*hub.Config)
}

func (o *Options) defaults() {
	if o.Devices <= 0 {
		o.Devices = 100
	}
	if o.Duration <= 0 && o.Messages <= 0 {
		o.Duration = 5 * time.Second
	}
	if o.Payload <= 0 {
		o.Payload = 256
	}
	if o.Rounds <= 0 {
		o.Rounds = 6
	}
	if o.Mosquitto == "" {
		o.Mosquitto = "auto"
	}
	if o.TLSMax == 0 {
		o.TLSMax = 0x0303 // TLS 1.2
	}
	if o.LoadCommand == nil {
		o.LoadCommand = func() *exec.Cmd {
			exe, err := os.Executable()
			if err != nil {
				exe = os.Args[0]
			}
			return exec.Command(exe, "bench-load")
		}
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

// Result is everything a run measured.
type Result struct {
	Devices    int           `json:"devices"`
	Payload    int           `json:"payloadBytes"`
	Duration   time.Duration `json:"duration,omitempty"`
	Messages   int           `json:"messagesPerDevice,omitempty"`
	TLS        string        `json:"tls"`
	OpenFiles  uint64        `json:"openFilesLimit"`
	GOMAXPROCS int           `json:"gomaxprocs"`

	Hub       Target  `json:"hub"`
	Mosquitto *Target `json:"mosquitto,omitempty"`
	// Mochi is the bare mochi-mqtt baseline (Options.Mochi), and MochiRatio
	// hub ÷ bare mochi-mqtt: what the hub's own work costs.
	Mochi      *Target `json:"mochi,omitempty"`
	MochiRatio float64 `json:"mochiRatio,omitempty"`
	// MosquittoNote says why Mosquitto was not measured.
	MosquittoNote string `json:"mosquittoNote,omitempty"`
	// Ratio is hub ÷ Mosquitto QoS 1 telemetry throughput, same run.
	Ratio float64 `json:"ratio,omitempty"`

	Twin    Op `json:"twin"`
	Methods Op `json:"methods"`
	C2D     Op `json:"c2d"`

	// Hold is the memory at the end of Options.Hold, connections still open.
	Hold *HoldResult `json:"hold,omitempty"`

	// What the hub recorded and what its bounds dropped.
	TraceEntries     uint64 `json:"traceEntries"`
	TraceDropped     uint64 `json:"traceDropped"`
	TelemetryStored  uint64 `json:"telemetryStored"`
	TelemetryDropped uint64 `json:"telemetryDropped"`
}

// Target is one broker's figures.
type Target struct {
	Name      string `json:"name"`
	Connect   Op     `json:"connect"`
	Telemetry Op     `json:"telemetry"`
	Memory    Memory `json:"memory"`
	// CPU use during the telemetry phase, in cores (1.0 = one core busy).
	BrokerCPU    float64 `json:"brokerCPU"`
	GeneratorCPU float64 `json:"generatorCPU"`
}

// Op is one kind of operation's outcome.
type Op struct {
	Count     int           `json:"count"`
	Errors    int           `json:"errors,omitempty"`
	First     string        `json:"firstError,omitempty"`
	Elapsed   time.Duration `json:"elapsed"`
	PerSecond float64       `json:"perSecond"`
	Latency   Summary       `json:"latency"`
}

func opOf(r Response) Op {
	o := Op{Count: r.Count, Errors: r.Errors, First: r.First, Elapsed: r.Elapsed, Latency: r.Latency}
	if r.Elapsed > 0 {
		o.PerSecond = float64(r.Count) / r.Elapsed.Seconds()
	}
	return o
}

// Memory is what a broker holds per connection.
type Memory struct {
	// HeapPerConn is the Go heap (HeapAlloc after GC) added per
	// connection; StackPerConn the goroutine stacks. Hub only.
	HeapPerConn  float64 `json:"heapPerConn,omitempty"`
	StackPerConn float64 `json:"stackPerConn,omitempty"`
	// RSSPerConn is the process's resident set added per connection.
	RSSPerConn float64 `json:"rssPerConn"`
	RSSBytes   uint64  `json:"rssBytes"`
	// GoroutinesPerConn is the goroutines added per connection (hub only).
	GoroutinesPerConn float64 `json:"goroutinesPerConn,omitempty"`
}

// HoldResult is the memory after holding every connection open.
type HoldResult struct {
	Duration  time.Duration `json:"duration"`
	Connected int           `json:"connected"`
	Memory    Memory        `json:"memory"`
}

// genProc is a running load generator.
type genProc struct {
	name     string
	cmd      *exec.Cmd
	enc      *json.Encoder
	dec      *json.Decoder
	stdin    io.WriteCloser
	progress io.Writer
	stopped  bool
}

func startGenerator(o *Options, name string) (*genProc, error) {
	cmd := o.LoadCommand()
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start load generator: %w", err)
	}
	return &genProc{name: name, cmd: cmd, enc: json.NewEncoder(in), dec: json.NewDecoder(out), stdin: in, progress: o.Progress}, nil
}

func (g *genProc) call(req Request) (Response, error) {
	if err := g.enc.Encode(req); err != nil {
		return Response{}, fmt.Errorf("load generator: %w", err)
	}
	for {
		var r Response
		if err := g.dec.Decode(&r); err != nil {
			return Response{}, fmt.Errorf("load generator (%s): %w", req.Op, err)
		}
		if r.Progress != "" {
			fmt.Fprintf(g.progress, "  %s %s\n", g.name, r.Progress)
			continue
		}
		if r.Err != "" {
			return r, fmt.Errorf("load generator (%s): %s", req.Op, r.Err)
		}
		return r, nil
	}
}

func (g *genProc) pid() int { return g.cmd.Process.Pid }

func (g *genProc) stop() {
	if g.stopped {
		return
	}
	g.stopped = true
	_, _ = g.call(Request{Op: "close"})
	_ = g.stdin.Close()
	done := make(chan struct{})
	go func() { _ = g.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = g.cmd.Process.Kill()
		<-done
	}
}

// benchDevice is a registered device and its credentials.
type benchDevice struct {
	id   iothub.Identity
	cred DeviceCred
}

// Run performs one benchmark run.
func Run(ctx context.Context, o Options) (*Result, error) {
	o.defaults()
	raiseOpenFiles()
	res := &Result{Devices: o.Devices, Payload: o.Payload, Duration: o.Duration, Messages: o.Messages,
		TLS: tlsName(o.TLSMax), OpenFiles: openFilesLimit(), GOMAXPROCS: runtime.GOMAXPROCS(0)}
	if o.Messages > 0 {
		res.Duration = 0
	}
	if need := uint64(o.Devices + 256); res.OpenFiles > 0 && res.OpenFiles < need {
		return nil, fmt.Errorf("%d devices need about %d open files per process, the limit is %d (raise it with ulimit -n)", o.Devices, need, res.OpenFiles)
	}
	p := func(format string, args ...any) { fmt.Fprintf(o.Progress, format+"\n", args...) }

	cfg := hub.Config{MQTTAddr: "127.0.0.1:0", HTTPSAddr: "off", HandshakeTimeout: 60 * time.Second}
	if o.HubConfig != nil {
		o.HubConfig(&cfg)
	}
	h, err := hub.Start(cfg)
	if err != nil {
		return nil, fmt.Errorf("start hub: %w", err)
	}
	defer h.Close()

	p("hub: registering %d SAS devices", o.Devices)
	devs, err := register(h, o.Devices, o.Duration+o.Hold+2*time.Hour)
	if err != nil {
		return nil, err
	}
	ca := h.PKI().Root.CertPEM()
	setup := func(addr string) *Setup {
		s := &Setup{Addr: addr, ServerName: h.Host(), CAPEM: ca, TLSMax: o.TLSMax, Subscribe: true,
			KeepAlive: 600, Workers: 32, Sources: o.Sources, Timeout: 60 * time.Second}
		for _, d := range devs {
			s.Devices = append(s.Devices, d.cred)
		}
		return s
	}

	// The hub.
	g, err := startGenerator(&o, "hub")
	if err != nil {
		return nil, err
	}
	hubDone := false
	defer func() {
		if !hubDone {
			g.stop()
		}
	}()
	if _, err := g.call(Request{Op: "setup", Setup: setup(h.MQTTAddr())}); err != nil {
		return nil, err
	}
	heap0, stack0 := liveBytes()
	rss0 := selfRSS()
	gor0 := runtime.NumGoroutine()
	p("hub: connecting %d devices (TLS, SAS CONNECT, SUBSCRIBE methods/C2D/twin)", o.Devices)
	r, err := g.call(Request{Op: "connect"})
	if err != nil {
		return nil, err
	}
	res.Hub.Name = "hilrun hub " + hub.Version
	res.Hub.Connect = opOf(r)
	if r.Errors > 0 {
		return res, fmt.Errorf("hub: %d of %d devices failed to connect; first: %s", r.Errors, o.Devices, r.First)
	}
	heap1, stack1 := liveBytes()
	rss1 := selfRSS()
	if o.MemProfile != "" {
		if err := writeHeapProfile(o.MemProfile); err != nil {
			return nil, err
		}
	}
	n := float64(o.Devices)
	res.Hub.Memory = Memory{HeapPerConn: (float64(heap1) - float64(heap0)) / n, StackPerConn: (float64(stack1) - float64(stack0)) / n,
		RSSPerConn: (float64(rss1) - float64(rss0)) / n, RSSBytes: rss1, GoroutinesPerConn: float64(runtime.NumGoroutine()-gor0) / n}
	p("hub: %d connected in %s; memory per connection: heap %s, stacks %s (%.1f goroutines), RSS %s",
		r.Count, round(r.Elapsed), kb(res.Hub.Memory.HeapPerConn), kb(res.Hub.Memory.StackPerConn), res.Hub.Memory.GoroutinesPerConn, kb(res.Hub.Memory.RSSPerConn))

	// Mosquitto, connected now so that the two brokers' telemetry rounds
	// can alternate: load from other processes on the machine then falls
	// on both alike.
	var mside *side
	bin, note := findMosquitto(o.Mosquitto)
	if bin == "" {
		res.MosquittoNote = note
		p("mosquitto: %s", note)
	} else {
		m, err := startMosquitto(ctx, bin, h.PKI(), o.TLSMax)
		if err != nil {
			return res, fmt.Errorf("mosquitto: %w", err)
		}
		defer m.stop()
		mside, err = connectMosquitto(&o, m, setup(m.addr), p)
		if err != nil {
			return res, err
		}
		defer mside.g.stop()
		mside.t.Name = m.version
		res.Mosquitto = mside.t
	}
	var bside *side
	stopMochi := func() {}
	if o.Mochi {
		var stop func()
		bside, stop, err = connectMochi(&o, h.PKI(), setup, p)
		if err != nil {
			return res, err
		}
		once := sync.OnceFunc(stop)
		stopMochi = once
		defer once()
		res.Mochi = bside.t
	}
	hside := &side{name: "hub", g: g, pid: "self", t: &res.Hub}
	var stopProf func()
	if o.CPUProfile != "" {
		f, err := os.Create(o.CPUProfile)
		if err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, err
		}
		stopProf = func() { pprof.StopCPUProfile(); f.Close() }
	}
	err = telemetryRounds(&o, hside, mside, bside)
	if stopProf != nil {
		stopProf()
	}
	if err != nil {
		return nil, err
	}
	if mside != nil {
		mside.g.stop()
		if mside.t.Telemetry.PerSecond > 0 {
			res.Ratio = res.Hub.Telemetry.PerSecond / mside.t.Telemetry.PerSecond
		}
		p("ratio hub/mosquitto (QoS 1 telemetry, same run, alternating rounds): %.2f", res.Ratio)
	}
	// The in-process baseline goes before the hub's own phases, so its
	// memory never counts as the hub's (Hold).
	stopMochi()
	if bside != nil && bside.t.Telemetry.PerSecond > 0 {
		res.MochiRatio = res.Hub.Telemetry.PerSecond / bside.t.Telemetry.PerSecond
		p("ratio hub/bare mochi-mqtt (QoS 1 telemetry, same run): %.2f", res.MochiRatio)
	}

	if o.Twin > 0 {
		p("hub: twin reported patches, %d per device", o.Twin)
		r, err = g.call(Request{Op: "twin", Twin: o.Twin})
		if err != nil {
			return nil, err
		}
		res.Twin = opOf(r)
		p("hub: twin %.0f patches/s, latency %s", res.Twin.PerSecond, r.Latency)
	}
	if o.ServiceOps > 0 {
		p("hub: %d direct method calls", o.ServiceOps)
		res.Methods = serviceLoad(ctx, o.ServiceOps, devs, func(ctx context.Context, d benchDevice) error {
			mr, err := h.InvokeMethod(ctx, d.id, hub.MethodRequest{Name: "bench", Payload: []byte(`{"n":1}`), Timeout: 30 * time.Second})
			if err == nil && mr.Status != 200 {
				err = fmt.Errorf("method status %d", mr.Status)
			}
			return err
		})
		p("hub: methods %.0f calls/s, latency %s", res.Methods.PerSecond, res.Methods.Latency)
		p("hub: %d C2D messages (sent until completed by the device's PUBACK)", o.ServiceOps)
		res.C2D = serviceLoad(ctx, o.ServiceOps, devs, func(ctx context.Context, d benchDevice) error {
			mid, err := h.SendC2D(d.id.DeviceID, hub.C2DMessage{Payload: []byte(`{"c2d":1}`)})
			if err != nil {
				return err
			}
			return h.Wait(ctx, func() bool {
				st, ok := h.C2DState(d.id.DeviceID, mid)
				return ok && st.State == hub.C2DCompleted
			})
		})
		p("hub: C2D %.0f msg/s, latency %s", res.C2D.PerSecond, res.C2D.Latency)
	}

	if o.Hold > 0 {
		p("hub: holding %d connections for %s", o.Devices, o.Hold)
		if err := hold(ctx, g, o.Hold, p); err != nil {
			return nil, err
		}
		heap2, stack2 := liveBytes()
		rss2 := selfRSS()
		connected := 0
		for _, d := range devs {
			if h.Connected(d.id) {
				connected++
			}
		}
		res.Hold = &HoldResult{Duration: o.Hold, Connected: connected, Memory: Memory{
			HeapPerConn: (float64(heap2) - float64(heap0)) / n, StackPerConn: (float64(stack2) - float64(stack0)) / n,
			RSSPerConn: (float64(rss2) - float64(rss0)) / n, RSSBytes: rss2}}
		p("hub: after %s, %d/%d still connected; memory per connection: heap %s, stacks %s, RSS %s", o.Hold, connected, o.Devices,
			kb(res.Hold.Memory.HeapPerConn), kb(res.Hold.Memory.StackPerConn), kb(res.Hold.Memory.RSSPerConn))
	}
	hubDone = true
	g.stop()
	res.TraceEntries = h.Trace().LastSeq()
	res.TraceDropped = h.Trace().Dropped()
	res.TelemetryStored = h.LastTelemetrySeq()
	res.TelemetryDropped = h.TelemetryDropped()

	return res, nil
}

// side is one broker under load: its generator, its process, its figures.
type side struct {
	name    string
	g       *genProc
	pid     string // broker process for CPU figures ("self": the hub)
	t       *Target
	elapsed time.Duration
	count   int
	cpuB    uint64
	cpuG    uint64
}

// telemetryRounds runs the QoS 1 telemetry load in Rounds slices,
// alternating the brokers (and which goes first), and sums each side.
func telemetryRounds(o *Options, sides ...*side) error {
	var live []*side
	for _, s := range sides {
		if s != nil {
			live = append(live, s)
		}
	}
	rounds := max(o.Rounds, 1)
	msgs := 0
	if o.Messages > 0 {
		msgs = max(1, o.Messages/rounds)
	}
	dur := o.Duration / time.Duration(rounds)
	// Warm-up, not measured: every device's first message pays for lazy
	// state on both ends (buffers, TLS record state, page faults).
	for _, s := range live {
		if r, err := s.g.call(Request{Op: "telemetry", Messages: 1, Payload: o.Payload}); err != nil || r.Errors > 0 {
			return fmt.Errorf("%s: telemetry warm-up: %v %s", s.name, err, r.First)
		}
	}
	for i := range rounds {
		order := slices.Clone(live)
		if i%2 == 1 {
			slices.Reverse(order)
		}
		for _, s := range order {
			fmt.Fprintf(o.Progress, "%s: QoS 1 telemetry round %d/%d, %s\n", s.name, i+1, rounds, loadDesc(Options{Devices: o.Devices, Messages: msgs, Duration: dur, Payload: o.Payload}))
			runtime.GC()
			gpid := fmt.Sprint(s.g.pid())
			b0, g0 := cpuOf(s.pid), cpuOf(gpid)
			r, err := s.g.call(Request{Op: "telemetry", Messages: msgs, Payload: o.Payload, Duration: dur, Accumulate: true})
			s.cpuB += cpuOf(s.pid) - b0
			s.cpuG += cpuOf(gpid) - g0
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			if r.Errors > 0 {
				return fmt.Errorf("%s: %d devices failed during telemetry; first: %s", s.name, r.Errors, r.First)
			}
			s.elapsed += r.Elapsed
			s.count += r.Count
		}
	}
	for _, s := range live {
		r, err := s.g.call(Request{Op: "telemetry-total"})
		if err != nil {
			return err
		}
		s.t.Telemetry = Op{Count: s.count, Elapsed: s.elapsed, Latency: r.Latency}
		if s.elapsed > 0 {
			s.t.Telemetry.PerSecond = float64(s.count) / s.elapsed.Seconds()
		}
		s.t.BrokerCPU = cores(s.cpuB, s.elapsed)
		s.t.GeneratorCPU = cores(s.cpuG, s.elapsed)
		fmt.Fprintf(o.Progress, "%s: telemetry %.0f msg/s, latency %s; cpu %s %.2f cores, generator %.2f cores\n",
			s.name, s.t.Telemetry.PerSecond, r.Latency, s.name, s.t.BrokerCPU, s.t.GeneratorCPU)
	}
	return nil
}

func connectMosquitto(o *Options, m *mosquitto, s *Setup, p func(string, ...any)) (*side, error) {
	g, err := startGenerator(o, "mosquitto")
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			g.stop()
		}
	}()
	if _, err := g.call(Request{Op: "setup", Setup: s}); err != nil {
		return nil, err
	}
	pid := fmt.Sprint(m.cmd.Process.Pid)
	rss0 := rssOf(pid)
	p("mosquitto: connecting %d devices", o.Devices)
	r, err := g.call(Request{Op: "connect"})
	if err != nil {
		return nil, err
	}
	t := &Target{Connect: opOf(r)}
	if r.Errors > 0 {
		return nil, fmt.Errorf("mosquitto: %d of %d devices failed to connect; first: %s", r.Errors, o.Devices, r.First)
	}
	rss1 := rssOf(pid)
	t.Memory = Memory{RSSPerConn: (float64(rss1) - float64(rss0)) / float64(o.Devices), RSSBytes: rss1}
	p("mosquitto: %d connected in %s; RSS per connection %s", r.Count, round(r.Elapsed), kb(t.Memory.RSSPerConn))
	ok = true
	return &side{name: "mosquitto", g: g, pid: pid, t: t}, nil
}

func loadDesc(o Options) string {
	if o.Messages > 0 {
		return fmt.Sprintf("%d devices × %d messages of %d bytes, one in flight per device", o.Devices, o.Messages, o.Payload)
	}
	return fmt.Sprintf("%d devices for %s, %d-byte payloads, one in flight per device", o.Devices, o.Duration, o.Payload)
}

func hold(ctx context.Context, g *genProc, d time.Duration, p func(string, ...any)) error {
	end := time.Now().Add(d)
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	lastPing := time.Now()
	for time.Now().Before(end) {
		wait := time.Until(end)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			heap, _ := liveBytes()
			p("  hub holding: %s left, heap %s, RSS %s", time.Until(end).Round(time.Second), mb(float64(heap)), mb(float64(selfRSS())))
			if time.Since(lastPing) > 4*time.Minute {
				if _, err := g.call(Request{Op: "ping"}); err != nil {
					return err
				}
				lastPing = time.Now()
			}
		case <-time.After(wait):
		}
	}
	return nil
}

// serviceLoad runs total service-side operations over the devices with a
// few concurrent callers, as a back end would, and times each.
func serviceLoad(ctx context.Context, total int, devs []benchDevice, op func(context.Context, benchDevice) error) Op {
	const callers = 16
	lat := make([]time.Duration, total)
	errs := make([]error, total)
	next := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for range min(callers, total) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
				t0 := time.Now()
				errs[i] = op(cctx, devs[i%len(devs)])
				lat[i] = time.Since(t0)
				cancel()
			}
		}()
	}
	for i := range total {
		next <- i
	}
	close(next)
	wg.Wait()
	o := Op{Elapsed: time.Since(start)}
	var ok []time.Duration
	for i, err := range errs {
		if err != nil {
			o.Errors++
			if o.First == "" {
				o.First = err.Error()
			}
			continue
		}
		ok = append(ok, lat[i])
	}
	o.Count = len(ok)
	o.PerSecond = float64(o.Count) / o.Elapsed.Seconds()
	o.Latency = Summarise(ok)
	return o
}

func register(h *hub.Hub, n int, ttl time.Duration) ([]benchDevice, error) {
	devs := make([]benchDevice, n)
	exp := time.Now().Add(ttl)
	for i := range devs {
		id := iothub.Identity{DeviceID: fmt.Sprintf("bench-%05d", i)}
		d, err := h.Registry().Add(hub.Device{DeviceID: id.DeviceID})
		if err != nil {
			return nil, fmt.Errorf("register %s: %w", id, err)
		}
		tok, err := iothub.NewSASToken(iothub.DeviceResourceURI(h.Host(), id), d.Authentication.SymmetricKey.PrimaryKey, exp, "")
		if err != nil {
			return nil, err
		}
		devs[i] = benchDevice{id: id, cred: DeviceCred{ID: id.ClientID(), Password: tok,
			Username: iothub.FormatUsername(h.Host(), id, "2021-04-12", url.Values{"DeviceClientType": {"hilrun-bench/1.0"}})}}
	}
	return devs, nil
}

// liveBytes is the live heap and goroutine stacks after a full collection.
func liveBytes() (heap, stack uint64) {
	runtime.GC()
	runtime.GC()
	debug.FreeOSMemory() // so RSS shows what is live, not what GC has yet to return
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc, m.StackInuse
}

func cores(ticks uint64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(ticks) / 100 / d.Seconds() // USER_HZ is 100 on Linux
}

func tlsName(v uint16) string {
	switch v {
	case 0x0303:
		return "TLS 1.2"
	case 0x0304:
		return "TLS 1.3"
	}
	return fmt.Sprintf("0x%04x", v)
}

func kb(b float64) string { return fmt.Sprintf("%.1f KB", b/1024) }
func mb(b float64) string { return fmt.Sprintf("%.1f MB", b/(1024*1024)) }

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.Lookup("heap").WriteTo(f, 0)
}
