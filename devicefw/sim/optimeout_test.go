package sim

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/rig/hub"
)

// TestAckStore: the session store as paho sees it signals PUBACKs (its
// Del of an outbound key) and leaves abandoned messages out of the resume.
func TestAckStore(t *testing.T) {
	pub := func(id uint16) packets.ControlPacket {
		p := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
		p.Qos, p.MessageID, p.TopicName = 1, id, "devices/d/messages/events/"
		return p
	}
	cases := []struct {
		name     string
		put      []uint16
		abandon  []uint16
		reput    []uint16 // after the abandon: the id taken by a new message
		del      []uint16 // PUBACKs
		wantAll  []string
		signaled []uint16
	}{
		{name: "kept until acknowledged", put: []uint16{1, 2}, wantAll: []string{"o.1", "o.2"}},
		{name: "PUBACK signals and removes", put: []uint16{1, 2}, del: []uint16{1}, wantAll: []string{"o.2"}, signaled: []uint16{1}},
		{name: "abandoned left out of the resume", put: []uint16{1, 2}, abandon: []uint16{2}, wantAll: []string{"o.1"}},
		{name: "id reused after the abandon", put: []uint16{3}, abandon: []uint16{3}, reput: []uint16{3}, wantAll: []string{"o.3"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newAckWatch()
			inner := paho.NewOrderedMemoryStore()
			inner.Open()
			st := &ackStore{Store: inner, w: w}
			waits := map[uint16]chan struct{}{}
			for _, id := range c.put {
				st.Put(outboundKey(id), pub(id))
				waits[id] = w.wait(outboundKey(id))
			}
			for _, id := range c.abandon {
				w.abandon(outboundKey(id))
				if st.Get(outboundKey(id)) != nil {
					t.Fatalf("Get of abandoned %d returned the packet", id)
				}
			}
			for _, id := range c.reput {
				st.Put(outboundKey(id), pub(id))
			}
			for _, id := range c.del {
				st.Del(outboundKey(id))
			}
			got := st.All()
			slices.Sort(got)
			if !slices.Equal(got, c.wantAll) {
				t.Fatalf("All() = %v, want %v", got, c.wantAll)
			}
			if again := inner.All(); len(again) != len(c.wantAll) {
				t.Fatalf("inner store holds %v after the resume, want %v", again, c.wantAll)
			}
			for id, ch := range waits {
				select {
				case <-ch:
					if !slices.Contains(c.signaled, id) {
						t.Fatalf("%d signalled acknowledged", id)
					}
				default:
					if slices.Contains(c.signaled, id) {
						t.Fatalf("%d not signalled", id)
					}
				}
			}
		})
	}
}

// TestOperationTimeout: with the hub silent, a QoS 1 send ends at the
// configured operation timeout with a failure answer and event.
func TestOperationTimeout(t *testing.T) {
	r := newRig(t, "optimeout", nil, func(c *agentproto.Config) { c.Retry.OperationTimeoutMS = 300 })
	r.open()
	r.hub.SetSilent(r.id, true)
	from := r.fw.mark()
	one := 1
	start := time.Now()
	var res agentproto.TelemetryResult
	r.fw.must(agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: `{"x":1}`, QoS: &one, Wait: true}, &res)
	if res.Acked || !strings.Contains(res.Error, "operation timeout") {
		t.Fatalf("answer %+v, want a failure at the operation timeout", res)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 5*time.Second {
		t.Fatalf("answered after %s, want about 300 ms", d)
	}
	r.fw.waitEvent(agentproto.EvTelemetry, func(d json.RawMessage) bool {
		return !decode[agentproto.TelemetryResult](t, d).Acked
	}, from)
}

// TestOperationTimeoutAcrossReconnects: a message given up is not sent
// again after a reconnect; with retry-forever it is.
func TestOperationTimeoutAcrossReconnects(t *testing.T) {
	t.Parallel() // its own rig; waits on timers
	for _, c := range []struct {
		defect string
		resent bool
	}{{"", false}, {DefRetryForever, true}} {
		t.Run("defect="+c.defect, func(t *testing.T) {
			var defects []string
			if c.defect != "" {
				defects = []string{c.defect}
			}
			r := newRig(t, "optimeout-"+strings.TrimPrefix(c.defect, "retry-"), defects, func(cfg *agentproto.Config) { cfg.Retry.OperationTimeoutMS = 300 })
			r.open()
			r.hub.SetSilent(r.id, true)
			one := 1
			isPub := func(payload string) func(hub.Entry) bool {
				return func(e hub.Entry) bool {
					return e.Dir == hub.DirIn && e.Type == "PUBLISH" && string(e.Payload) == payload
				}
			}
			var res agentproto.TelemetryResult
			// Without the timer (retry-forever) the send never ends: no wait.
			r.fw.must(agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: `{"n":1}`, QoS: &one, Wait: c.defect == ""}, &res)
			first := r.entry("the withheld message", isPub(`{"n":1}`))
			if c.defect == "" && (res.Acked || res.Error == "") {
				t.Fatalf("answer %+v, want the failure at the operation timeout", res)
			}
			if c.defect != "" {
				// The reconnect must come after the 300 ms limit; with the
				// defect nothing on the line marks its end, so time passes.
				time.Sleep(400 * time.Millisecond)
			}
			from := r.fw.mark()
			if err := r.hub.Drop(r.id, true, "test: reconnect"); err != nil {
				t.Fatal(err)
			}
			r.fw.waitEvent(agentproto.EvConn, connState(agentproto.StateConnected), from)
			// A later message marks the point by which a resume has sent
			// what the session store held.
			r.fw.must(agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: `{"n":2}`, QoS: &one}, nil)
			marker := r.entry("the marker", isPub(`{"n":2}`))
			var again []hub.Entry
			for _, e := range r.entries(isPub(`{"n":1}`)) {
				if e.ConnID != first.ConnID && e.Seq < marker.Seq {
					again = append(again, e)
				}
			}
			if c.resent && len(again) == 0 {
				t.Fatalf("retry-forever: the message was not sent again after the reconnect\n%s", r.fw.dump())
			}
			if !c.resent && len(again) != 0 {
				t.Fatalf("the message given up was sent again on connection %d\n%s", again[0].ConnID, r.fw.dump())
			}
		})
	}
}
