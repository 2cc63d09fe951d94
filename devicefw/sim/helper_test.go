package sim

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/hub/hubtest"
	"github.com/hilrun/hilrun/rig/iothub"
)

// waitFor bounds every wait in these tests.
const waitFor = 20 * time.Second

// uart is the firmware's side of an in-memory serial line.
type uart struct {
	io.Reader
	io.Writer
}

// host is a tiny agent host: it sends request frames to a firmware running
// over in-memory pipes and collects responses, events and console lines.
type host struct {
	t      testing.TB
	toFW   io.Writer
	nextID uint32

	mu      sync.Mutex
	changed chan struct{}
	events  []*agentproto.Frame
	resps   map[uint32]*agentproto.Frame
	console []string
	done    chan error
}

// newHost serves the host side of a serial line: it reads frames and
// console lines from r until it fails; requests go to w.
func newHost(t testing.TB, r io.Reader, w io.Writer) (*host, <-chan struct{}) {
	h := &host{t: t, toFW: w, changed: make(chan struct{}), resps: map[uint32]*agentproto.Frame{}, done: make(chan error, 1)}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 8192), 1<<20)
		for sc.Scan() {
			_, f, err := agentproto.Split(sc.Bytes())
			h.mu.Lock()
			switch {
			case err != nil:
				h.console = append(h.console, sc.Text())
			case f.T == agentproto.KindEvent:
				h.events = append(h.events, f)
			case f.T == agentproto.KindResponse:
				h.resps[f.ID] = f
			}
			close(h.changed)
			h.changed = make(chan struct{})
			h.mu.Unlock()
		}
	}()
	return h, readDone
}

// boot runs the firmware with opts (UART filled in) until the test ends.
func boot(t testing.TB, opts Options) *host {
	t.Helper()
	hostR, fwW := io.Pipe()
	fwR, hostW := io.Pipe()
	opts.UART = uart{fwR, fwW}
	h, readDone := newHost(t, hostR, hostW)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { h.done <- Run(ctx, opts) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(waitFor):
			t.Errorf("firmware did not stop")
		}
		_ = hostW.Close()
		_ = fwW.Close()
		<-readDone
	})
	h.waitEvent(agentproto.EvHello, nil)
	return h
}

// wait blocks until cond (checked under h.mu) holds.
func (h *host) wait(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.After(waitFor)
	for {
		h.mu.Lock()
		ok := cond()
		ch := h.changed
		h.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			h.t.Fatalf("timed out waiting for %s\n%s", what, h.dump())
		}
	}
}

func (h *host) dump() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var b strings.Builder
	b.WriteString("events:\n")
	for _, e := range h.events {
		fmt.Fprintf(&b, "  #%d %s %s\n", e.Seq, e.Ev, e.Data)
	}
	b.WriteString("console:\n")
	for _, c := range h.console {
		fmt.Fprintf(&b, "  %s\n", c)
	}
	return b.String()
}

// call sends one request and returns its response.
func (h *host) call(op string, args any) (json.RawMessage, *agentproto.Error) {
	h.t.Helper()
	h.mu.Lock()
	h.nextID++
	id := h.nextID
	h.mu.Unlock()
	f, err := agentproto.Request(id, op, args)
	if err != nil {
		h.t.Fatal(err)
	}
	line, err := agentproto.Encode(f)
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := h.toFW.Write(line); err != nil {
		h.t.Fatalf("write %s: %v", op, err)
	}
	var res *agentproto.Frame
	h.wait("response to "+op, func() bool { res = h.resps[id]; return res != nil })
	if res.Err != nil {
		return nil, res.Err
	}
	return res.Data, nil
}

// must calls op and fails the test on an error response; out, if not nil,
// receives the data.
func (h *host) must(op string, args any, out any) {
	h.t.Helper()
	data, aerr := h.call(op, args)
	if aerr != nil {
		h.t.Fatalf("%s: %v\n%s", op, aerr, h.dump())
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			h.t.Fatalf("%s result %s: %v", op, data, err)
		}
	}
}

// mark returns the number of events seen so far (for waits "after now").
func (h *host) mark() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.events)
}

// waitEvent waits for an event named name (after index from, default 0)
// whose data decodes into out-like T and satisfies match.
func (h *host) waitEvent(name string, match func(json.RawMessage) bool, from ...int) *agentproto.Frame {
	h.t.Helper()
	start := 0
	if len(from) > 0 {
		start = from[0]
	}
	var found *agentproto.Frame
	h.wait("event "+name, func() bool {
		for _, e := range h.events[min(start, len(h.events)):] {
			if e.Ev == name && (match == nil || match(e.Data)) {
				found = e
				return true
			}
		}
		return false
	})
	return found
}

// countEvents counts events named name matching match.
func (h *host) countEvents(name string, match func(json.RawMessage) bool) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, e := range h.events {
		if e.Ev == name && (match == nil || match(e.Data)) {
			n++
		}
	}
	return n
}

// connState matches conn events in a state.
func connState(state string) func(json.RawMessage) bool {
	return func(d json.RawMessage) bool {
		var ev agentproto.ConnEvent
		return json.Unmarshal(d, &ev) == nil && ev.State == state
	}
}

func decode[T any](t testing.TB, d json.RawMessage) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(d, &v); err != nil {
		t.Fatalf("decode %s: %v", d, err)
	}
	return v
}

// rig is one hub plus one firmware.
type rig struct {
	t   *testing.T
	hub *hubtest.Hub
	fw  *host
	id  iothub.Identity
	key string
}

// newRig starts a hub and a firmware configured for a SAS device devID
// with fast retries; more configuration and flash-time defects are optional.
func newRig(t *testing.T, devID string, defects []string, more func(*agentproto.Config)) *rig {
	t.Helper()
	h := hubtest.Start(t)
	d := h.AddSASDevice(devID)
	r := &rig{t: t, hub: h, id: iothub.Identity{DeviceID: devID}, key: d.Authentication.SymmetricKey.PrimaryKey}
	r.fw = boot(t, Options{Defects: defects})
	cfg := agentproto.Config{
		Hub:      &agentproto.HubConfig{Host: h.Host(), Address: h.MQTTAddr()},
		Identity: &agentproto.IdentityConfig{DeviceID: devID},
		Auth:     &agentproto.AuthConfig{Type: "sas", Key: r.key},
		Retry:    &agentproto.RetryConfig{InitialMS: 50, MaxMS: 400, JitterPct: 20},
		Twin:     &agentproto.TwinConfig{TimeoutMS: 5000},
	}
	if more != nil {
		more(&cfg)
	}
	r.fw.must(agentproto.OpTrustAdd, agentproto.Cert{PEM: string(h.PKI().Root.CertPEM())}, nil)
	r.fw.must(agentproto.OpClockSet, agentproto.Clock{UnixMS: time.Now().UnixMilli()}, nil)
	r.fw.must(agentproto.OpConfigure, cfg, nil)
	return r
}

// open opens the client and waits until it is connected, subscribed and
// has fetched its twin.
func (r *rig) open() {
	r.t.Helper()
	from := r.openConnected()
	r.fw.waitEvent(agentproto.EvResync, nil, from)
}

// openConnected opens the client and waits until it is connected; it
// returns the event mark from before the open.
func (r *rig) openConnected() int {
	r.t.Helper()
	from := r.fw.mark()
	r.fw.must(agentproto.OpOpen, nil, nil)
	r.fw.waitEvent(agentproto.EvConn, connState(agentproto.StateConnected), from)
	if err := r.hub.WaitConnected(r.ctx(), r.id); err != nil {
		r.t.Fatalf("hub: %v", err)
	}
	return from
}

func (r *rig) ctx() context.Context { return hubtest.Context(r.t, waitFor) }

// entry waits for a trace entry of the rig's identity.
func (r *rig) entry(what string, match func(hub.Entry) bool) hub.Entry {
	r.t.Helper()
	e, err := r.hub.WaitEntry(r.ctx(), r.id.ClientID(), match)
	if err != nil {
		r.t.Fatalf("%s: %v\n%s", what, err, r.fw.dump())
	}
	return e
}

// entries returns the identity's trace entries matching match.
func (r *rig) entries(match func(hub.Entry) bool) []hub.Entry {
	var out []hub.Entry
	for _, e := range r.hub.Trace().ForClient(r.id.ClientID()) {
		if match(e) {
			out = append(out, e)
		}
	}
	return out
}

func isType(dir, typ string) func(hub.Entry) bool {
	return func(e hub.Entry) bool { return e.Dir == dir && e.Type == typ }
}
