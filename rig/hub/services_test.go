package hub_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/hilrun/hilrun/certs"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/hub/hubtest"
	"github.com/hilrun/hilrun/rig/iothub"
	"github.com/hilrun/hilrun/rig/iothub/twin"
)

// inbox collects messages a golden client receives.
type inbox chan paho.Message

func (in inbox) handler(_ paho.Client, m paho.Message) { in <- m }

func (in inbox) next(t *testing.T, h *hubtest.Hub, clientID, what string) paho.Message {
	t.Helper()
	select {
	case m := <-in:
		return m
	case <-time.After(5 * time.Second):
		t.Fatalf("no %s received\n%s", what, h.TraceSummary(clientID))
		return nil
	}
}

func (in inbox) none(t *testing.T, what string) {
	t.Helper()
	select {
	case m := <-in:
		t.Fatalf("unexpected %s: %s", what, m.Topic())
	default:
	}
}

func TestC2DDeliveryAfterSubscribe(t *testing.T) {
	// C2D-001, C2D-002, C2D-003: nothing before SUBACK, and only messages
	// sent after the subscription (002 L13928); delivery with the property
	// bag at QoS 1; the PUBACK completes the message.
	h := hubtest.Start(t)
	d := sasDevice(h, "c2d-dev")
	c := h.Connect(d)
	early, err := h.SendC2D("c2d-dev", hub.C2DMessage{Payload: []byte("before subscribe")})
	if err != nil {
		t.Fatal(err)
	}
	in := make(inbox, 10)
	hubtest.Wait(t, c.Subscribe(iothub.C2DFilter("c2d-dev"), 1, in.handler), "subscribe")
	mid, err := h.SendC2D("c2d-dev", hub.C2DMessage{Payload: []byte("hello"), CorrelationID: "corr 1",
		Properties: iothub.PropertyBag{{Name: "k&=/", Value: "v é"}}})
	if err != nil {
		t.Fatal(err)
	}
	m := in.next(t, h, "c2d-dev", "C2D message")
	if m.Qos() != 1 || string(m.Payload()) != "hello" {
		t.Fatalf("delivery qos=%d payload=%q", m.Qos(), m.Payload())
	}
	tp, err := iothub.ParseTopic(m.Topic())
	if err != nil || tp.Kind != iothub.TopicC2D {
		t.Fatalf("topic %q: %v", m.Topic(), err)
	}
	for k, v := range map[string]string{iothub.PropMessageID: mid, iothub.PropCorrelationID: "corr 1", "k&=/": "v é"} {
		if got, _ := tp.Properties.Get(k); got != v {
			t.Errorf("property %q = %q, want %q (topic %s)", k, got, v, m.Topic())
		}
	}
	// SUBACK precedes the delivery on the wire.
	var order []string
	for _, e := range h.Trace().ForClient("c2d-dev") {
		if e.Dir == hub.DirOut && (e.Type == "SUBACK" || e.Type == "PUBLISH") {
			order = append(order, e.Type)
		}
	}
	if len(order) < 2 || order[0] != "SUBACK" {
		t.Fatalf("outbound order %v, want SUBACK first", order)
	}
	if err := h.Wait(hubtest.Context(t, 5*time.Second), func() bool {
		st, _ := h.C2DState("c2d-dev", mid)
		return st.State == hub.C2DCompleted
	}); err != nil {
		st, _ := h.C2DState("c2d-dev", mid)
		t.Fatalf("message not completed by PUBACK: %+v", st)
	}
	if st, _ := h.C2DState("c2d-dev", early); st.State != hub.C2DEnqueued || st.DeliveryCount != 0 {
		t.Fatalf("message sent before the subscription: %+v, want Enqueued and never delivered", st)
	}
	in.none(t, "delivery of the pre-subscription message")
}

func TestC2DBacklogCleanSession0(t *testing.T) {
	// C2D-006, CONN-017: with CleanSession 0 the subscription persists and
	// messages queued offline arrive on reconnect without resubscribing;
	// with CleanSession 1 they do not.
	h := hubtest.Start(t)
	d := sasDevice(h, "sleeper")
	r, ack := h.RawConnect(d) // CleanSession false
	if ack.ReasonCode != 0 {
		t.Fatal("connect refused")
	}
	r.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
		Filters: packets.Subscriptions{{Filter: iothub.C2DFilter("sleeper"), Qos: 1}}})
	r.Expect(packets.Suback, 5*time.Second)
	r.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
	_ = r.Conn.Close()
	if err := h.WaitDisconnected(hubtest.Context(t, 5*time.Second), d.Identity); err != nil {
		t.Fatal(err)
	}
	const n = iothub.MaxC2DQueue
	for i := 0; i < n; i++ {
		if _, err := h.SendC2D("sleeper", hub.C2DMessage{Payload: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.SendC2D("sleeper", hub.C2DMessage{Payload: []byte("one too many")}); !errors.Is(err, hub.ErrQueueFull) {
		t.Fatalf("51st message: %v, want ErrQueueFull", err)
	}
	r2, ack2 := h.RawConnect(d)
	if !ack2.SessionPresent {
		t.Fatal("CONNACK session present = false for a CleanSession 0 reconnect")
	}
	for i := 0; i < n; i++ {
		pk := r2.Expect(packets.Publish, 5*time.Second)
		if string(pk.Payload) != fmt.Sprint(i) {
			t.Fatalf("message %d payload %q (order lost)", i, pk.Payload)
		}
		r2.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID})
	}
	if err := h.Wait(hubtest.Context(t, 5*time.Second), func() bool {
		for _, s := range h.C2DQueue("sleeper") {
			if s.State != hub.C2DCompleted {
				return false
			}
		}
		return true
	}); err != nil {
		t.Fatalf("backlog not completed: %+v", h.C2DQueue("sleeper"))
	}

	t.Run("CleanSession 1 gets no backlog", func(t *testing.T) {
		r2.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
		_ = r2.Conn.Close()
		_ = h.WaitDisconnected(hubtest.Context(t, 5*time.Second), d.Identity)
		if _, err := h.SendC2D("sleeper", hub.C2DMessage{Payload: []byte("offline")}); err != nil {
			t.Fatal(err)
		}
		clean := d
		clean.CleanSession = true
		r3, ack3 := h.RawConnect(clean)
		if ack3.SessionPresent {
			t.Fatal("session present with CleanSession 1")
		}
		r3.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
			Filters: packets.Subscriptions{{Filter: iothub.C2DFilter("sleeper"), Qos: 1}}})
		r3.Expect(packets.Suback, 5*time.Second)
		r3.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
		if pk := r3.Expect(packets.Pingresp, 5*time.Second); pk.FixedHeader.Type != packets.Pingresp {
			t.Fatal("expected only PINGRESP")
		}
	})
}

func TestC2DRedeliveryWithDup(t *testing.T) {
	// C2D-004: a delivery lost before PUBACK is redelivered with DUP=1 and the same message id.
	h := hubtest.Start(t)
	d := sasDevice(h, "forgetful")
	sub := func(r *hubtest.Raw) {
		r.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
			Filters: packets.Subscriptions{{Filter: iothub.C2DFilter("forgetful"), Qos: 1}}})
		r.Expect(packets.Suback, 5*time.Second)
	}
	r, _ := h.RawConnect(d)
	sub(r)
	mid, err := h.SendC2D("forgetful", hub.C2DMessage{Payload: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	first := r.Expect(packets.Publish, 5*time.Second)
	if first.FixedHeader.Dup {
		t.Fatal("first delivery has DUP set")
	}
	_ = r.Conn.Close() // no PUBACK
	_ = h.WaitDisconnected(hubtest.Context(t, 5*time.Second), d.Identity)
	r2, _ := h.RawConnect(d)
	second := r2.Expect(packets.Publish, 5*time.Second)
	if !second.FixedHeader.Dup || second.TopicName != first.TopicName {
		t.Fatalf("redelivery dup=%v topic=%q, want dup and %q", second.FixedHeader.Dup, second.TopicName, first.TopicName)
	}
	if st, _ := h.C2DState("forgetful", mid); st.DeliveryCount != 2 {
		t.Fatalf("delivery count %d, want 2", st.DeliveryCount)
	}
}

func TestC2DLimits(t *testing.T) {
	// C2D-007: 64 KB maximum; modules have no C2D (MOD-010).
	h := hubtest.Start(t)
	sasDevice(h, "lim")
	if _, err := h.SendC2D("lim", hub.C2DMessage{Payload: make([]byte, iothub.MaxC2DBytes)}); err != nil {
		t.Fatalf("64 KB message refused: %v", err)
	}
	if _, err := h.SendC2D("lim", hub.C2DMessage{Payload: make([]byte, iothub.MaxC2DBytes+1)}); !errors.Is(err, hub.ErrTooLarge) {
		t.Fatalf("64 KB + 1: %v, want ErrTooLarge", err)
	}
	if _, err := h.SendC2D("nobody", hub.C2DMessage{}); !errors.Is(err, hub.ErrNotFound) {
		t.Fatalf("unknown device: %v", err)
	}
}

func twinClient(t *testing.T, h *hubtest.Hub, d hubtest.Device) (paho.Client, inbox, inbox) {
	c := h.Connect(d)
	res, desired := make(inbox, 16), make(inbox, 16)
	hubtest.Wait(t, c.Subscribe(iothub.TwinResponseFilter, 0, res.handler), "subscribe twin res")
	hubtest.Wait(t, c.Subscribe(iothub.TwinDesiredFilter, 0, desired.handler), "subscribe desired")
	return c, res, desired
}

func TestTwinGetAndReportedPatch(t *testing.T) {
	// TWIN-002, TWIN-004, TWIN-006, TWIN-007, TWIN-008.
	h := hubtest.Start(t)
	d := sasDevice(h, "twinned")
	if _, err := h.UpdateDesired(d.Identity, twin.Section{"fw": "1.2.3"}); err != nil {
		t.Fatal(err)
	}
	c, res, _ := twinClient(t, h, d)
	hubtest.Wait(t, c.Publish(iothub.TwinGetTopic("get-1"), 0, false, ""), "GET")
	m := res.next(t, h, "twinned", "GET response")
	if m.Topic() != "$iothub/twin/res/200/?$rid=get-1" {
		t.Fatalf("GET response topic %q", m.Topic())
	}
	desired, dv, reported, rv, err := twin.ParseDeviceDocument(m.Payload())
	if err != nil {
		t.Fatalf("GET body %s: %v", m.Payload(), err)
	}
	if desired["fw"] != "1.2.3" || dv != 2 || rv != 1 || len(reported) != 0 {
		t.Fatalf("GET body %s", m.Payload())
	}
	hubtest.Wait(t, c.Publish(iothub.TwinReportedTopic("p1"), 0, false, `{"temp":{"value":21,"unit":"C"},"gone":1}`), "PATCH")
	m = res.next(t, h, "twinned", "PATCH response")
	if m.Topic() != "$iothub/twin/res/204/?$rid=p1&$version=2" {
		t.Fatalf("PATCH response topic %q", m.Topic())
	}
	hubtest.Wait(t, c.Publish(iothub.TwinReportedTopic("p2"), 0, false, `{"gone":null,"temp":{"unit":null}}`), "PATCH null")
	m = res.next(t, h, "twinned", "PATCH response")
	if m.Topic() != "$iothub/twin/res/204/?$rid=p2&$version=3" {
		t.Fatalf("PATCH response topic %q", m.Topic())
	}
	rep, ver := h.ReportedOf(d.Identity)
	b, _ := json.Marshal(rep)
	if ver != 3 || string(b) != `{"temp":{"value":21}}` {
		t.Fatalf("reported v%d %s", ver, b)
	}
}

func TestTwinReportedValidation(t *testing.T) {
	// TWIN-006, TWIN-011..016: invalid reported patches get 400, valid ones 204.
	deep := `{"a":{"b":{"c":{"d":{"e":{"leaf":1}}}}}}`
	tooDeep := `{"a":{"b":{"c":{"d":{"e":{"f":{"leaf":1}}}}}}}`
	cases := []struct {
		req, name, body string
		status          string
	}{
		{"TWIN-006", "array body", `[1,2]`, "400"},
		{"TWIN-006", "not JSON", `{"a":`, "400"},
		{"TWIN-011", "key with dot", `{"a.b":1}`, "400"},
		{"TWIN-011", "key with space", `{"a b":1}`, "400"},
		{"TWIN-011", "65-byte key", `{"` + strings.Repeat("k", 65) + `":1}`, "400"},
		{"TWIN-011", "64-byte key", `{"` + strings.Repeat("k", 64) + `":1}`, "204"},
		{"TWIN-012", "array value", `{"a":[1]}`, "400"},
		{"TWIN-012", "integer out of range", `{"a":4503599627370496}`, "400"},
		{"TWIN-013", "depth 5", deep, "204"},
		{"TWIN-013", "depth 6", tooDeep, "400"},
		{"TWIN-014", "513-byte string", `{"s":"` + strings.Repeat("x", 513) + `"}`, "400"},
		{"TWIN-016", "$-key", `{"$version":4}`, "400"},
	}
	h := hubtest.Start(t)
	d := sasDevice(h, "validated")
	c, res, _ := twinClient(t, h, d)
	for i, tc := range cases {
		t.Run(tc.req+" "+tc.name, func(t *testing.T) {
			rid := fmt.Sprint(i)
			hubtest.Wait(t, c.Publish(iothub.TwinReportedTopic(rid), 0, false, tc.body), "PATCH")
			m := res.next(t, h, "validated", "PATCH response")
			tp, _ := iothub.ParseTopic(m.Topic())
			if fmt.Sprint(tp.Status) != tc.status || tp.RID != rid {
				t.Fatalf("status %d rid %q, want %s rid %q", tp.Status, tp.RID, tc.status, rid)
			}
		})
	}
	t.Run("TWIN-015 reported section above 8 KB", func(t *testing.T) {
		for i := 0; i < 20; i++ {
			body := fmt.Sprintf(`{"p%d":"%s"}`, i, strings.Repeat("y", 500))
			hubtest.Wait(t, c.Publish(iothub.TwinReportedTopic("big"), 0, false, body), "PATCH")
			m := res.next(t, h, "validated", "PATCH response")
			if strings.HasPrefix(m.Topic(), "$iothub/twin/res/400/") {
				rep, _ := h.ReportedOf(d.Identity)
				if n := twin.Size(rep); n > twin.MaxSectionBytes || n < twin.MaxSectionBytes-600 {
					t.Fatalf("rejected at stored size %d", n)
				}
				return
			}
		}
		t.Fatal("section grew past 8 KB without a 400")
	})
}

func TestDesiredPushOnlyToSubscribedConnected(t *testing.T) {
	// TWIN-009, TWIN-010: desired patches go to connected, subscribed
	// devices with $version; nothing is queued while offline.
	h := hubtest.Start(t)
	d := sasDevice(h, "desirous")
	_, _, desired := twinClient(t, h, d)
	v, err := h.UpdateDesired(d.Identity, twin.Section{"interval": 5, "old": nil})
	if err != nil {
		t.Fatal(err)
	}
	m := desired.next(t, h, "desirous", "desired patch")
	if m.Topic() != fmt.Sprintf("$iothub/twin/PATCH/properties/desired/?$version=%d", v) {
		t.Fatalf("topic %q", m.Topic())
	}
	patch, pv, err := twin.ParseDesiredPatch(m.Payload())
	if err != nil || pv != v || fmt.Sprint(patch["interval"]) != "5" {
		t.Fatalf("body %s (v%d): %v", m.Payload(), pv, err)
	}

	other := sasDevice(h, "unsubscribed")
	oc := h.Connect(other)
	got := make(inbox, 4)
	hubtest.Wait(t, oc.Subscribe(iothub.TwinResponseFilter, 0, got.handler), "subscribe res only")
	if _, err := h.UpdateDesired(other.Identity, twin.Section{"x": 1}); err != nil {
		t.Fatal(err)
	}
	// A PINGREQ round trip orders the check after anything the hub sent.
	hubtest.Wait(t, oc.Publish(iothub.TwinGetTopic("sync"), 0, false, ""), "GET")
	first := got.next(t, h, "unsubscribed", "GET response")
	if !strings.HasPrefix(first.Topic(), "$iothub/twin/res/200/") {
		t.Fatalf("unsubscribed device got %q", first.Topic())
	}
	for _, e := range h.Trace().ForClient("unsubscribed") {
		if e.Dir == hub.DirOut && strings.HasPrefix(e.Topic, "$iothub/twin/PATCH/") {
			t.Fatal("desired patch sent to a device not subscribed to it")
		}
	}
}

func TestTwinThrottled429(t *testing.T) {
	// TWIN-005, LIMITS-002: twin operations above the limit get 429.
	h := hubtest.Start(t, func(c *hub.Config) { c.Limits.TwinOpsPerSecond = 0.001; c.Limits.TwinBurst = 2 })
	d := sasDevice(h, "chatty")
	c, res, _ := twinClient(t, h, d)
	var statuses []string
	for i := 0; i < 3; i++ {
		hubtest.Wait(t, c.Publish(iothub.TwinGetTopic(fmt.Sprint(i)), 0, false, ""), "GET")
		m := res.next(t, h, "chatty", "GET response")
		statuses = append(statuses, strings.Split(m.Topic(), "/")[3])
	}
	if strings.Join(statuses, ",") != "200,200,429" {
		t.Fatalf("statuses %v, want 200,200,429", statuses)
	}
}

// methodDevice answers methods like a well-behaved device.
func methodDevice(t *testing.T, h *hubtest.Hub, d hubtest.Device, answer func(name, rid string, body []byte) (int, string)) paho.Client {
	c := h.Connect(d)
	hubtest.Wait(t, c.Subscribe(iothub.MethodsFilter, 0, func(c paho.Client, m paho.Message) {
		tp, err := iothub.ParseTopic(m.Topic())
		if err != nil {
			return
		}
		status, body := answer(tp.MethodName, tp.RID, m.Payload())
		if status == 0 {
			return
		}
		c.Publish(iothub.MethodResponseTopic(status, tp.RID), 0, false, body)
	}), "subscribe methods")
	return c
}

func TestMethodRoundTrip(t *testing.T) {
	// METH-001..004, METH-008: QoS 0 request, reply matched by rid, status passed through.
	h := hubtest.Start(t)
	d := sasDevice(h, "callee")
	methodDevice(t, h, d, func(name, rid string, body []byte) (int, string) {
		if name == "reboot" {
			return 200, fmt.Sprintf(`{"echo":%s}`, body)
		}
		return 404, `{"error":"unknown method"}`
	})
	ctx := hubtest.Context(t, 10*time.Second)
	for _, rid := range []string{"", "a", "0a", "x1", "10"} {
		res, err := h.InvokeMethod(ctx, d.Identity, hub.MethodRequest{Name: "reboot", Payload: []byte(`{"delay":1}`), RID: rid})
		if err != nil {
			t.Fatalf("rid %q: %v", rid, err)
		}
		if res.Status != 200 || string(res.Payload) != `{"echo":{"delay":1}}` {
			t.Fatalf("rid %q: %+v", rid, res)
		}
	}
	res, err := h.InvokeMethod(ctx, d.Identity, hub.MethodRequest{Name: "Reboot"})
	if err != nil || res.Status != 404 {
		t.Fatalf("case-sensitive name: %+v %v", res, err)
	}
	for _, e := range h.Trace().ForClient("callee") {
		if e.Dir == hub.DirOut && strings.HasPrefix(e.Topic, "$iothub/methods/POST/") && e.QoS != 0 {
			t.Fatalf("method request sent at QoS %d", e.QoS)
		}
	}
}

func TestMethodTimeoutAndOffline(t *testing.T) {
	// METH-006: no answer → 504 after the timeout; offline → 404.
	h := hubtest.Start(t)
	d := sasDevice(h, "mute")
	methodDevice(t, h, d, func(string, string, []byte) (int, string) { return 0, "" })
	_, err := h.InvokeMethod(context.Background(), d.Identity, hub.MethodRequest{Name: "ping", Timeout: 300 * time.Millisecond})
	if !hub.IsMethodError(err, 504) {
		t.Fatalf("err %v, want 504", err)
	}
	_, err = h.InvokeMethod(context.Background(), dev("absent"), hub.MethodRequest{Name: "ping"})
	if !hub.IsMethodError(err, 404) {
		t.Fatalf("offline err %v, want 404", err)
	}
	_, err = h.InvokeMethod(context.Background(), d.Identity, hub.MethodRequest{Name: "big", Payload: make([]byte, iothub.MaxMethodPayloadBytes+1)})
	if !hub.IsMethodError(err, 400) {
		t.Fatalf("oversize payload err %v, want 400 (METH-007)", err)
	}
}

func TestTelemetryFloodDisconnects(t *testing.T) {
	// LIMITS-001: a device above its telemetry throttle is disconnected.
	h := hubtest.Start(t, func(c *hub.Config) { c.Limits.TelemetryPerSecond = 0.001; c.Limits.TelemetryBurst = 3 })
	d := sasDevice(h, "flood")
	ch, onLost := lostChan()
	d.OnLost = onLost
	c := h.Connect(d)
	for i := 0; i < 5; i++ {
		c.Publish("devices/flood/messages/events/", 0, false, "x")
	}
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("flooding device not disconnected\n%s", h.TraceSummary("flood"))
	}
	if _, err := h.WaitEntry(hubtest.Context(t, 5*time.Second), "flood", func(e hub.Entry) bool {
		return e.Type == hub.EventConnClosed && e.Requirement == "LIMITS-001"
	}); err != nil {
		t.Fatal(err)
	}
}

func TestFaultInjectionOverTelemetry(t *testing.T) {
	// IoT Hub fault injection (device-sdk-behaviours §5): after the delay the
	// connection drops; during the duration reconnects are refused with the
	// kind's CONNACK code (KillTcp and ShutDownMqtt: faults_test.go).
	cases := []struct {
		typ  string
		code byte
	}{
		{hub.FaultInvokeThrottling, 3},
		{hub.FaultInvokeMaxMessageQuota, 3},
		{hub.FaultInvokeAuthError, 5},
	}
	h := hubtest.Start(t, func(c *hub.Config) { c.FaultInjection = true })
	for _, tc := range cases {
		t.Run(tc.typ, func(t *testing.T) {
			d := sasDevice(h, "fi-"+strings.ToLower(tc.typ))
			ch, onLost := lostChan()
			d.OnLost = onLost
			c := h.Connect(d)
			bag := iothub.PropertyBag{{Name: hub.FaultPropType, Value: tc.typ}, {Name: hub.FaultPropReason, Value: "boom"},
				{Name: hub.FaultPropDelay, Value: "0"}, {Name: hub.FaultPropDuration, Value: "30"}}
			c.Publish(iothub.TelemetryTopic(d.Identity, bag), 1, false, "fault")
			select {
			case <-ch:
			case <-time.After(5 * time.Second):
				t.Fatalf("fault %s did not drop the connection\n%s", tc.typ, h.TraceSummary(d.Identity.ClientID()))
			}
			d.OnLost = nil
			if got := connack(t, h, d); got != tc.code {
				t.Fatalf("reconnect during the fault: CONNACK %d, want %d", got, tc.code)
			}
			h.RefuseConnects(d.Identity, 0, 0) // end the fault window early
			if got := connack(t, h, d); got != 0 {
				t.Fatalf("reconnect after the fault: CONNACK %d", got)
			}
		})
	}
	t.Run("off by default", func(t *testing.T) {
		h2 := hubtest.Start(t)
		d := sasDevice(h2, "plain")
		c := h2.Connect(d)
		bag := iothub.PropertyBag{{Name: hub.FaultPropType, Value: hub.FaultKillTcp}, {Name: hub.FaultPropDelay, Value: "0"}}
		hubtest.Wait(t, c.Publish(iothub.TelemetryTopic(d.Identity, bag), 1, false, "fault"), "publish")
		hubtest.Wait(t, c.Publish("devices/plain/messages/events/", 1, false, "after"), "publish after")
		if !c.IsConnectionOpen() {
			t.Fatal("fault injection acted although disabled")
		}
	})
}

func TestDropAndSilent(t *testing.T) {
	// Service faults: drop (RST or FIN), and a silent hub (no PUBACK, no PINGRESP).
	h := hubtest.Start(t)
	d := sasDevice(h, "victim")
	for _, rst := range []bool{true, false} {
		r, _ := h.RawConnect(d)
		if err := h.Drop(d.Identity, rst, "test drop"); err != nil {
			t.Fatal(err)
		}
		r.ExpectClosed(5 * time.Second)
		_ = h.WaitDisconnected(hubtest.Context(t, 5*time.Second), d.Identity)
	}
	r, _ := h.RawConnect(d)
	h.SetSilent(d.Identity, true)
	r.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "devices/victim/messages/events/", PacketID: 9, Payload: []byte("x")})
	r.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
	if pk, err := r.Read(time.Second); err == nil {
		t.Fatalf("silent hub sent packet type %d", pk.FixedHeader.Type)
	}
	h.SetSilent(d.Identity, false)
	r.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
	r.Expect(packets.Pingresp, 5*time.Second)
}

func TestStateDirSurvivesRestart(t *testing.T) {
	// Registry and twins persist in the state directory.
	dir := t.TempDir()
	pki, err := certs.NewHubPKI(hubtest.Host, certs.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	cert := pki.ServerTLSCertificate()
	opt := func(c *hub.Config) { c.StateDir = dir; c.Certificate = &cert; c.PKI = pki }
	h1, err := hub.Start(hub.Config{Host: hubtest.Host, MQTTAddr: "127.0.0.1:0", HTTPSAddr: "off", StateDir: dir, Certificate: &cert, PKI: pki})
	if err != nil {
		t.Fatal(err)
	}
	d, err := h1.Registry().Add(hub.Device{DeviceID: "persistent"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h1.UpdateDesired(dev("persistent"), twin.Section{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	_ = h1.Close()
	h2 := hubtest.Start(t, opt)
	got, err := h2.Registry().Get(dev("persistent"))
	if err != nil || got.Authentication.SymmetricKey.PrimaryKey != d.Authentication.SymmetricKey.PrimaryKey {
		t.Fatalf("device after restart: %+v %v", got, err)
	}
	tw, err := h2.GetTwin(dev("persistent"))
	if err != nil || tw.Properties.Desired["k"] != "v" {
		t.Fatalf("twin after restart: %+v %v", tw, err)
	}
	h2.Connect(hubtest.Device{Identity: dev("persistent"), Key: d.Authentication.SymmetricKey.PrimaryKey})
}

func TestServerChainSwap(t *testing.T) {
	// CERT-* groundwork: the server chain can be replaced at run time.
	h := hubtest.Start(t)
	d := sasDevice(h, "rotating")
	h.Connect(d)
	next, err := certs.NewHubPKI(h.Host(), certs.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	h.SetServerCertificate(next.ServerTLSCertificate())
	if _, err := h.Dial(d); err == nil {
		t.Fatal("device trusting only the old root connected to the new chain")
	}
	cfg := h.TLSConfig()
	cfg.RootCAs = next.RootPool()
	c, err := tlsDial(h.MQTTAddr(), cfg)
	if err != nil {
		t.Fatalf("new root rejected: %v", err)
	}
	c.Close()
}
