package hub_test

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/hub/hubtest"
	"github.com/hilrun/hilrun/rig/iothub"
)

func tlsDial(addr string, cfg *tls.Config) (net.Conn, error) {
	return tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
}

// sasDevice registers id and returns the golden-client description.
func sasDevice(h *hubtest.Hub, id string) hubtest.Device {
	d := h.AddSASDevice(id)
	return hubtest.Device{Identity: dev(id), Key: d.Authentication.SymmetricKey.PrimaryKey}
}

func lostChan() (chan error, func(error)) {
	ch := make(chan error, 1)
	return ch, func(err error) {
		select {
		case ch <- err:
		default:
		}
	}
}

func expectLost(t *testing.T, h *hubtest.Hub, ch chan error, clientID, req string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("connection not closed\n%s", h.TraceSummary(clientID))
	}
	e, err := h.WaitEntry(hubtest.Context(t, 5*time.Second), clientID, func(e hub.Entry) bool { return e.Type == hub.EventViolation })
	if err != nil {
		t.Fatal(err)
	}
	if e.Requirement != req {
		t.Fatalf("violation %q [%s], want %s", e.Reason, e.Requirement, req)
	}
}

func TestTelemetryPropertyBag(t *testing.T) {
	// TEL-001, TEL-002, TEL-003: topic, property-bag decoding, QoS and packet facts.
	h := hubtest.Start(t)
	d := sasDevice(h, "sensor")
	c := h.Connect(d)
	topic := "devices/sensor/messages/events/$.mid=m1&%24.ct=application%2Fjson&my%20prop=a%20b&empty=&nullish"
	hubtest.Wait(t, c.Publish(topic, 1, false, `{"t":21.5}`), "publish QoS 1")
	hubtest.Wait(t, c.Publish("devices/sensor/messages/events/", 0, false, "plain"), "publish QoS 0")
	msgs, err := h.WaitTelemetryCount(hubtest.Context(t, 5*time.Second), d.Identity, 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	m := msgs[0]
	want := map[string]string{"$.mid": "m1", "$.ct": "application/json", "my prop": "a b", "empty": ""}
	for k, v := range want {
		if got, ok := m.Properties.Get(k); !ok || got != v {
			t.Errorf("property %q = %q (present %v), want %q", k, got, ok, v)
		}
	}
	var sawNull bool
	for _, p := range m.Properties {
		if p.Name == "nullish" && p.NoValue {
			sawNull = true
		}
	}
	if !sawNull {
		t.Errorf("value-less property not decoded: %+v", m.Properties)
	}
	if m.QoS != 1 || m.PacketID == 0 || m.Topic != topic || string(m.Payload) != `{"t":21.5}` {
		t.Errorf("message facts wrong: %+v", m)
	}
	if msgs[1].QoS != 0 || string(msgs[1].Payload) != "plain" {
		t.Errorf("QoS 0 message wrong: %+v", msgs[1])
	}
}

func TestTelemetryModuleTopic(t *testing.T) {
	// MOD-004: a module publishes on its own events topic; the device topic is refused.
	h := hubtest.Start(t)
	d := sasDevice(h, "gw/mod-a")
	c := h.Connect(d)
	hubtest.Wait(t, c.Publish("devices/gw/modules/mod-a/messages/events/", 1, false, "m"), "module publish")
	if _, err := h.WaitTelemetry(hubtest.Context(t, 5*time.Second), d.Identity, 0, nil); err != nil {
		t.Fatal(err)
	}
	ch, onLost := lostChan()
	d.OnLost = onLost
	c2 := h.Connect(d)
	c2.Publish("devices/gw/messages/events/", 1, false, "as device")
	expectLost(t, h, ch, "gw/mod-a", "MOD-004")
}

func TestTelemetryRetainTagged(t *testing.T) {
	// TEL-006: RETAIN is not stored; the message carries x-opt-retain.
	h := hubtest.Start(t)
	d := sasDevice(h, "retainer")
	c := h.Connect(d)
	hubtest.Wait(t, c.Publish("devices/retainer/messages/events/", 1, true, "r"), "publish")
	m, err := h.WaitTelemetry(hubtest.Context(t, 5*time.Second), d.Identity, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := m.Properties.Get(iothub.PropRetain); v != "true" || !m.Retain {
		t.Fatalf("retained telemetry not tagged: %+v", m)
	}
}

func TestTelemetrySizeLimit(t *testing.T) {
	// TEL-005: 256 KB counts body + property names/values; above it the hub closes.
	h := hubtest.Start(t)
	d := sasDevice(h, "big")
	c := h.Connect(d)
	bag := iothub.PropertyBag{{Name: "k", Value: "vv"}}
	exact := make([]byte, iothub.MaxTelemetryBytes-3)
	hubtest.Wait(t, c.Publish(iothub.TelemetryTopic(d.Identity, bag), 1, false, exact), "publish at the limit")
	ch, onLost := lostChan()
	d.OnLost = onLost
	c2 := h.Connect(d)
	c2.Publish(iothub.TelemetryTopic(d.Identity, bag), 1, false, make([]byte, iothub.MaxTelemetryBytes-2))
	expectLost(t, h, ch, "big", "TEL-005")
}

func TestTopicRulesClose(t *testing.T) {
	// CONN-018, CONN-019, CONN-020, TEL-001: anything undocumented closes the connection.
	cases := []struct {
		name, req string
		act       func(c paho.Client)
	}{
		{"QoS 2 publish", "CONN-020", func(c paho.Client) { c.Publish("devices/rules/messages/events/", 2, false, "x") }},
		{"other device's telemetry topic", "TEL-001", func(c paho.Client) { c.Publish("devices/other/messages/events/", 1, false, "x") }},
		{"'+' in a property bag", "TEL-002", func(c paho.Client) { c.Publish("devices/rules/messages/events/a+b=c", 1, false, "x") }},
		{"badly percent-encoded property bag", "TEL-002", func(c paho.Client) { c.Publish("devices/rules/messages/events/k=100%", 1, false, "x") }},
		{"free-form topic", "TEL-001", func(c paho.Client) { c.Publish("sensors/temperature", 1, false, "x") }},
		{"subscribe outside the documented filters", "CONN-018", func(c paho.Client) { c.Subscribe("devices/rules/#", 1, nil) }},
		{"subscribe with + wildcard", "CONN-018", func(c paho.Client) { c.Subscribe("$iothub/methods/POST/+", 1, nil) }},
		{"subscribe other device's C2D", "CONN-018", func(c paho.Client) { c.Subscribe("devices/other/messages/devicebound/#", 1, nil) }},
		{"six subscriptions", "CONN-019", func(c paho.Client) {
			c.SubscribeMultiple(map[string]byte{"$iothub/twin/res/#": 1, "$iothub/twin/PATCH/properties/desired/#": 1,
				"$iothub/methods/POST/#": 1, "devices/rules/messages/devicebound/#": 1, "$iothub/twin/#": 1}, nil).Wait()
			c.Subscribe("$iothub/twin/res/#", 0, nil).Wait() // re-subscribing an existing filter is not a new one
			c.Subscribe("$iothub/twin/GET/#", 1, nil)
		}},
	}
	h := hubtest.Start(t)
	d := sasDevice(h, "rules")
	for _, tc := range cases {
		t.Run(tc.req+" "+tc.name, func(t *testing.T) {
			ch, onLost := lostChan()
			dd := d
			dd.OnLost = onLost
			dd.CleanSession = true
			c := h.Connect(dd)
			before := len(h.Trace().Entries(func(e *hub.Entry) bool { return e.Type == hub.EventViolation }))
			tc.act(c)
			select {
			case <-ch:
			case <-time.After(5 * time.Second):
				t.Fatalf("connection not closed\n%s", h.TraceSummary("rules"))
			}
			var got []hub.Entry
			_ = h.Wait(hubtest.Context(t, 5*time.Second), func() bool {
				got = h.Trace().Entries(func(e *hub.Entry) bool { return e.Type == hub.EventViolation })
				return len(got) > before
			})
			if len(got) <= before || got[len(got)-1].Requirement != tc.req {
				t.Fatalf("no %s violation recorded\n%s", tc.req, h.TraceSummary("rules"))
			}
		})
	}
}

func TestSubscribeQoS2GrantedQoS1(t *testing.T) {
	// CONN-020: SUBSCRIBE at QoS 2 is granted QoS 1.
	h := hubtest.Start(t)
	d := sasDevice(h, "greedy")
	r, _ := h.RawConnect(d)
	r.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 7,
		Filters: packets.Subscriptions{{Filter: "$iothub/methods/POST/#", Qos: 2}}})
	ack := r.Expect(packets.Suback, 5*time.Second)
	if len(ack.ReasonCodes) != 1 || ack.ReasonCodes[0] != 1 {
		t.Fatalf("SUBACK codes %v, want [1]", ack.ReasonCodes)
	}
}

func TestUndocumentedTwinWildcardTolerated(t *testing.T) {
	// CONN-018: "$iothub/twin/#" is undocumented but accepted (nanoFramework uses it); the hub warns.
	h := hubtest.Start(t)
	d := sasDevice(h, "nano")
	c := h.Connect(d)
	got := make(chan string, 1)
	hubtest.Wait(t, c.Subscribe("$iothub/twin/#", 1, func(_ paho.Client, m paho.Message) { got <- m.Topic() }), "subscribe")
	hubtest.Wait(t, c.Publish("$iothub/twin/GET/?$rid=1", 0, false, ""), "twin GET")
	select {
	case topic := <-got:
		if topic != "$iothub/twin/res/200/?$rid=1" {
			t.Fatalf("response topic %q", topic)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no twin response\n%s", h.TraceSummary("nano"))
	}
	warned := h.Trace().Entries(func(e *hub.Entry) bool { return e.Type == hub.EventWarning && e.Requirement == "CONN-018" })
	if len(warned) == 0 {
		t.Fatal("no CONN-018 warning for the undocumented filter")
	}
}

func TestWebSocketTransport(t *testing.T) {
	// CONN-001: MQTT over WebSocket at /$iothub/websocket on the HTTPS port.
	h := hubtest.Start(t)
	d := sasDevice(h, "ws-dev")
	d.WebSocket = true
	c := h.Connect(d)
	hubtest.Wait(t, c.Publish("devices/ws-dev/messages/events/", 1, false, "over ws"), "publish")
	m, err := h.WaitTelemetry(hubtest.Context(t, 5*time.Second), d.Identity, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Payload) != "over ws" {
		t.Fatalf("payload %q", m.Payload)
	}
	var transport string
	for _, e := range h.Trace().ForClient("ws-dev") {
		if e.Type == hub.EventConnOpened && e.TLS != nil {
			transport = e.TLS.Transport
		}
	}
	if transport != "wss" {
		t.Fatalf("transport %q, want wss", transport)
	}
}

func TestBadInputKeepsServing(t *testing.T) {
	// Bad input: garbage, stalled handshakes and garbage after CONNECT are
	// closed while other devices keep working.
	h := hubtest.Start(t, func(c *hub.Config) { c.HandshakeTimeout = time.Second })
	d := sasDevice(h, "steady")
	good := h.Connect(d)

	stalled, err := net.Dial("tcp", h.MQTTAddr()) // TCP open, no ClientHello
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()

	garbage, err := tlsDial(h.MQTTAddr(), h.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = garbage.Write([]byte("GET / HTTP/1.1\r\n\r\n\x00\xff\xfe"))

	r, _ := h.RawConnect(sasDevice(h, "babbler"))
	r.Write([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	r.ExpectClosed(5 * time.Second)

	oversize, _ := h.RawConnect(sasDevice(h, "oversize"))
	oversize.Write([]byte{0x30, 0xff, 0xff, 0xff, 0x7f}) // PUBLISH claiming 256 MB
	oversize.ExpectClosed(5 * time.Second)

	_ = stalled.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := stalled.Read(make([]byte, 1)); err == nil {
		t.Fatal("stalled handshake still open")
	}
	hubtest.Wait(t, good.Publish("devices/steady/messages/events/", 1, false, "still here"), "publish after abuse")
	if _, err := h.WaitTelemetry(hubtest.Context(t, 5*time.Second), d.Identity, 0, nil); err != nil {
		t.Fatal(err)
	}
	if len(h.Trace().Entries(func(e *hub.Entry) bool {
		return e.Type == hub.EventTLSFailed && strings.Contains(e.Reason, "did not finish")
	})) == 0 {
		t.Fatal("stalled handshake not traced")
	}
}
