package hubbench

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// The load generator runs in a process of its own (`hilrun bench-load`,
// started by Run), so that the broker's memory figures are the broker's
// alone and the generator's CPU shows up as another process. It speaks
// JSON lines: Run writes one Request, the generator answers with zero or
// more progress Responses and one final one (Done).

// Request is one instruction to the load generator.
type Request struct {
	Op       string        `json:"op"` // setup, connect, telemetry, telemetry-total, twin, counts, ping, close
	Setup    *Setup        `json:"setup,omitempty"`
	Messages int           `json:"messages,omitempty"` // telemetry: per device; 0 = until Duration
	Payload  int           `json:"payload,omitempty"`  // telemetry payload bytes
	Duration time.Duration `json:"duration,omitempty"` // telemetry: wall-time bound
	Twin     int           `json:"twin,omitempty"`     // twin: reported patches per device
	// Accumulate keeps the telemetry latencies for telemetry-total.
	Accumulate bool `json:"accumulate,omitempty"`
}

// Setup is what the generator connects to, and as whom.
type Setup struct {
	Addr       string       `json:"addr"`
	ServerName string       `json:"serverName"`
	CAPEM      []byte       `json:"caPEM"`
	TLSMax     uint16       `json:"tlsMax,omitempty"`
	Devices    []DeviceCred `json:"devices"`
	Subscribe  bool         `json:"subscribe"` // methods, C2D and twin responses, as an SDK does
	KeepAlive  uint16       `json:"keepAlive"`
	Workers    int          `json:"workers"` // concurrent dials
	// Sources spreads client sockets over 127.0.0.1 … 127.0.0.N, so very
	// many connections to one port do not exhaust one source address's
	// ephemeral ports.
	Sources int           `json:"sources,omitempty"`
	Timeout time.Duration `json:"timeout"`
}

// DeviceCred is one device's MQTT credentials. The password (a SAS token)
// never leaves the generator in any answer or message.
type DeviceCred struct {
	ID       string `json:"id"`
	Username string `json:"username"`
	Password string `json:"password"`
}

// Response is the generator's answer.
type Response struct {
	Progress string        `json:"progress,omitempty"`
	Done     bool          `json:"done,omitempty"`
	Err      string        `json:"err,omitempty"`
	Elapsed  time.Duration `json:"elapsed,omitempty"`
	Count    int           `json:"count,omitempty"`  // operations completed
	Errors   int           `json:"errors,omitempty"` // operations failed
	First    string        `json:"first,omitempty"`  // the first failure
	Latency  Summary       `json:"latency"`
	Methods  uint64        `json:"methods,omitempty"`
	C2D      uint64        `json:"c2d,omitempty"`
	RSSBytes uint64        `json:"rssBytes,omitempty"`
}

// Summary is a latency distribution.
type Summary struct {
	N   int           `json:"n"`
	P50 time.Duration `json:"p50"`
	P90 time.Duration `json:"p90"`
	P99 time.Duration `json:"p99"`
	Max time.Duration `json:"max"`
}

// Summarise sorts d in place and takes its percentiles (nearest rank).
func Summarise(d []time.Duration) Summary {
	if len(d) == 0 {
		return Summary{}
	}
	slices.Sort(d)
	at := func(p float64) time.Duration {
		i := int(p*float64(len(d))+0.5) - 1
		return d[min(max(i, 0), len(d)-1)]
	}
	return Summary{N: len(d), P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: d[len(d)-1]}
}

func (s Summary) String() string {
	if s.N == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  max %s  (n=%d)", round(s.P50), round(s.P90), round(s.P99), round(s.Max), s.N)
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	default:
		return d.Round(time.Microsecond)
	}
}

// generator is the load generator's state.
type generator struct {
	setup   Setup
	tc      *tls.Config
	clients []*client
	out     *json.Encoder
	outMu   sync.Mutex
	telLat  []time.Duration // accumulated telemetry latencies
}

// ServeLoad runs the load generator on r/w until r ends or a close request.
func ServeLoad(r io.Reader, w io.Writer) error {
	raiseOpenFiles()
	g := &generator{out: json.NewEncoder(w)}
	dec := json.NewDecoder(r)
	defer g.closeAll()
	for {
		var req Request
		if err := dec.Decode(&req); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		resp := g.do(req)
		resp.Done = true
		resp.RSSBytes = selfRSS()
		g.send(resp)
		if req.Op == "close" {
			return nil
		}
	}
}

func (g *generator) send(r Response) {
	g.outMu.Lock()
	defer g.outMu.Unlock()
	_ = g.out.Encode(r)
}

func (g *generator) progress(format string, args ...any) {
	g.send(Response{Progress: fmt.Sprintf(format, args...)})
}

func (g *generator) do(req Request) Response {
	switch req.Op {
	case "setup":
		if req.Setup == nil {
			return Response{Err: "setup without parameters"}
		}
		g.setup = *req.Setup
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(g.setup.CAPEM) {
			return Response{Err: "setup: no CA certificate in caPEM"}
		}
		g.tc = &tls.Config{RootCAs: pool, ServerName: g.setup.ServerName, MinVersion: tls.VersionTLS12, MaxVersion: g.setup.TLSMax}
		if g.setup.Workers <= 0 {
			g.setup.Workers = 32
		}
		if g.setup.Timeout <= 0 {
			g.setup.Timeout = 30 * time.Second
		}
		return Response{}
	case "connect":
		return g.connect()
	case "telemetry":
		return g.telemetry(req)
	case "twin":
		return g.twin(req)
	case "telemetry-total":
		return Response{Count: len(g.telLat), Latency: Summarise(slices.Clone(g.telLat))}
	case "counts":
		var r Response
		for _, c := range g.clients {
			m, d := c.counts()
			r.Methods += m
			r.C2D += d
		}
		return r
	case "ping":
		return g.each("ping", 0, func(c *client) error { return c.ping() })
	case "close":
		start := time.Now()
		g.closeAll()
		return Response{Elapsed: time.Since(start)}
	}
	return Response{Err: fmt.Sprintf("unknown op %q", req.Op)}
}

func (g *generator) closeAll() {
	var wg sync.WaitGroup
	for _, c := range g.clients {
		wg.Add(1)
		go func() { defer wg.Done(); c.close() }()
	}
	wg.Wait()
	g.clients = nil
}

// ticker emits a progress line every second until stop is closed.
func (g *generator) ticker(what string, done *atomic.Int64, total int, stop <-chan struct{}) {
	start := time.Now()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := int64(0)
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			n := done.Load()
			if total > 0 {
				g.progress("%s: %d/%d (%.0f/s, %s)", what, n, total, float64(n-last), time.Since(start).Round(time.Second))
			} else {
				g.progress("%s: %d (%.0f/s, %s)", what, n, float64(n-last), time.Since(start).Round(time.Second))
			}
			last = n
		}
	}
}

func (g *generator) connect() Response {
	devs := g.setup.Devices
	clients := make([]*client, len(devs))
	lat := make([]time.Duration, len(devs))
	errs := make([]error, len(devs))
	var done atomic.Int64
	stop := make(chan struct{})
	go g.ticker("connect", &done, len(devs), stop)
	start := time.Now()
	next := make(chan int)
	var wg sync.WaitGroup
	for w := range min(g.setup.Workers, len(devs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := &net.Dialer{Timeout: g.setup.Timeout}
			if g.setup.Sources > 1 {
				d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+w%g.setup.Sources))}
			}
			for i := range next {
				t0 := time.Now()
				c, err := dialClient(d, g.setup.Addr, g.tc, devs[i].ID, devs[i].Username, devs[i].Password, g.setup.KeepAlive, g.setup.Timeout)
				if err == nil && g.setup.Subscribe {
					err = c.subscribe([]string{"$iothub/methods/POST/#", "devices/" + devs[i].ID + "/messages/devicebound/#", "$iothub/twin/res/#"}, g.setup.Timeout)
					if err != nil {
						c.close()
					}
				}
				if err != nil {
					errs[i] = fmt.Errorf("%s: %w", devs[i].ID, err)
				} else {
					clients[i] = c
					lat[i] = time.Since(t0)
				}
				done.Add(1)
			}
		}()
	}
	for i := range devs {
		next <- i
	}
	close(next)
	wg.Wait()
	close(stop)
	r := Response{Elapsed: time.Since(start)}
	var ok []time.Duration
	for i, c := range clients {
		if c != nil {
			g.clients = append(g.clients, c)
			ok = append(ok, lat[i])
			r.Count++
		} else {
			r.Errors++
			if r.First == "" {
				r.First = errs[i].Error()
			}
		}
	}
	r.Latency = Summarise(ok)
	return r
}

// each runs op on every connected client at once and gathers latencies.
func (g *generator) each(what string, total int, op func(*client) error) Response {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var r Response
	start := time.Now()
	for _, c := range g.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := op(c); err != nil {
				mu.Lock()
				r.Errors++
				if r.First == "" {
					r.First = fmt.Sprintf("%s: %v", c.id, err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	r.Elapsed = time.Since(start)
	r.Count = len(g.clients) - r.Errors
	return r
}

func (g *generator) telemetry(req Request) Response {
	payload := make([]byte, req.Payload)
	for i := range payload {
		payload[i] = 'a' + byte(i%26)
	}
	var deadline time.Time
	if req.Duration > 0 {
		deadline = time.Now().Add(req.Duration)
	}
	lats := make([][]time.Duration, len(g.clients))
	var acked atomic.Int64
	stop := make(chan struct{})
	total := 0
	if req.Messages > 0 {
		total = req.Messages * len(g.clients)
	}
	go g.ticker("telemetry", &acked, total, stop)
	i := 0
	idx := map[*client]int{}
	for _, c := range g.clients {
		idx[c] = i
		i++
	}
	r := g.each("telemetry", total, func(c *client) error {
		topic := "devices/" + c.id + "/messages/events/"
		mine := make([]time.Duration, 0, max(req.Messages, 64))
		defer func() { lats[idx[c]] = mine }()
		for n := 0; req.Messages == 0 || n < req.Messages; n++ {
			t0 := time.Now()
			if !deadline.IsZero() && !t0.Before(deadline) {
				break
			}
			if err := c.publishAck(topic, payload, g.setup.Timeout); err != nil {
				return err
			}
			mine = append(mine, time.Since(t0))
			acked.Add(1)
		}
		return nil
	})
	close(stop)
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	if req.Accumulate {
		g.telLat = append(g.telLat, all...)
	}
	r.Count = len(all)
	r.Latency = Summarise(all)
	return r
}

func (g *generator) twin(req Request) Response {
	lats := make([][]time.Duration, len(g.clients))
	idx := map[*client]int{}
	for i, c := range g.clients {
		idx[c] = i
	}
	var done atomic.Int64
	stop := make(chan struct{})
	go g.ticker("twin", &done, req.Twin*len(g.clients), stop)
	r := g.each("twin", 0, func(c *client) error {
		mine := make([]time.Duration, 0, req.Twin)
		defer func() { lats[idx[c]] = mine }()
		for n := range req.Twin {
			t0 := time.Now()
			if err := c.twinReported(n+1, fmt.Appendf(nil, `{"bench":{"n":%d}}`, n), g.setup.Timeout); err != nil {
				return err
			}
			mine = append(mine, time.Since(t0))
			done.Add(1)
		}
		return nil
	})
	close(stop)
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	r.Count = len(all)
	r.Latency = Summarise(all)
	return r
}
