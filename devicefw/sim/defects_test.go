package sim

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/iothub"
	"github.com/hilrun/hilrun/rig/iothub/twin"
)

// rejected waits for the hub to refuse a CONNECT for req.
func (r *rig) rejected(req string) hub.Entry {
	r.t.Helper()
	var found hub.Entry
	if err := r.hub.Wait(r.ctx(), func() bool {
		es := r.hub.Trace().Entries(func(e *hub.Entry) bool { return e.Type == hub.EventConnRejected && e.Requirement == req })
		if len(es) > 0 {
			found = es[0]
		}
		return len(es) > 0
	}); err != nil {
		r.t.Fatalf("no CONNECT refused for %s: %v\n%s", req, err, r.hub.TraceSummary(r.id.ClientID()))
	}
	return found
}

// violation waits for the hub to close the connection for req.
func (r *rig) violation(req string) {
	r.t.Helper()
	r.entry("violation "+req, func(e hub.Entry) bool { return e.Type == hub.EventViolation && e.Requirement == req })
}

func (r *rig) stopped() agentproto.ConnEvent {
	r.t.Helper()
	return decode[agentproto.ConnEvent](r.t, r.fw.waitEvent(agentproto.EvConn, connState(agentproto.StateStopped)).Data)
}

func (r *rig) send(a agentproto.TelemetryArgs) agentproto.TelemetryResult {
	r.t.Helper()
	var res agentproto.TelemetryResult
	r.fw.must(agentproto.OpTelemetry, a, &res)
	return res
}

// TestDefectsOnTheWire shows, for every switch that changes what crosses
// the wire, that it does and that the hub notices.
func TestDefectsOnTheWire(t *testing.T) {
	t.Parallel()
	cases := []struct {
		defect string
		devID  string
		cfg    func(*agentproto.Config)
		run    func(t *testing.T, r *rig)
	}{
		{DefUsernameNoHost, "", nil, func(t *testing.T, r *rig) {
			r.fw.must(agentproto.OpOpen, nil, nil)
			r.rejected("CONN-006")
			r.stopped()
		}},
		{DefClientIDLowercase, "Mixed-Case", nil, func(t *testing.T, r *rig) {
			r.fw.must(agentproto.OpOpen, nil, nil)
			e := r.rejected("CONN-006")
			if e.ClientID != "mixed-case" {
				t.Fatalf("ClientId %q", e.ClientID)
			}
			r.stopped()
		}},
		{DefTokenExpired, "", nil, func(t *testing.T, r *rig) {
			r.fw.must(agentproto.OpOpen, nil, nil)
			r.rejected("CONN-010")
			r.stopped()
		}},
		{DefTokenWrongKey, "", nil, func(t *testing.T, r *rig) {
			r.fw.must(agentproto.OpOpen, nil, nil)
			r.rejected("CONN-009")
			r.stopped()
		}},
		{DefWillWrongTopic, "", func(c *agentproto.Config) { c.MQTT = &agentproto.MQTTConfig{Will: &agentproto.Will{Payload: "gone"}} }, func(t *testing.T, r *rig) {
			r.fw.must(agentproto.OpOpen, nil, nil)
			r.rejected("CONN-021")
			r.stopped()
		}},
		{DefTelemetryWrongTopic, "", nil, func(t *testing.T, r *rig) {
			r.open()
			r.send(agentproto.TelemetryArgs{Payload: "x"})
			r.violation("TEL-001")
		}},
		{DefBagNotEncoded, "", nil, func(t *testing.T, r *rig) {
			r.open()
			r.send(agentproto.TelemetryArgs{Payload: "x", Properties: map[string]string{"load": "100%"}})
			// The hub closes the connection; its trace labels a bad bag
			// TEL-001 (the topic rule) rather than TEL-002, see the report.
			r.entry("violation", func(e hub.Entry) bool {
				return e.Type == hub.EventViolation && strings.Contains(e.Reason, "property bag") && strings.Contains(e.Reason, "percent-encoded")
			})
		}},
		{DefTelemetryQoS0, "", nil, func(t *testing.T, r *rig) {
			r.open()
			if res := r.send(agentproto.TelemetryArgs{Payload: "x", Wait: true}); !res.Acked {
				t.Fatalf("result %+v", res)
			}
			m, err := r.hub.WaitTelemetry(r.ctx(), r.id, 0, nil)
			if err != nil || m.QoS != 0 {
				t.Fatalf("message QoS %d: %v", m.QoS, err)
			}
		}},
		{DefTelemetryQoS2, "", nil, func(t *testing.T, r *rig) {
			r.open()
			r.send(agentproto.TelemetryArgs{Payload: "x"})
			r.violation("CONN-020")
		}},
		{DefTelemetryRetain, "", nil, func(t *testing.T, r *rig) {
			r.open()
			r.send(agentproto.TelemetryArgs{Payload: "x", Wait: true})
			m, err := r.hub.WaitTelemetry(r.ctx(), r.id, 0, nil)
			if err != nil || !m.Retain || !m.Properties.Has(iothub.PropRetain) {
				t.Fatalf("message %+v: %v", m, err)
			}
		}},
		{DefSizeCountsTopic, "", nil, func(t *testing.T, r *rig) {
			r.open()
			if _, err := r.fw.call(agentproto.OpTelemetry, agentproto.TelemetryArgs{Gen: &agentproto.Gen{Size: iothub.MaxTelemetryBytes - 8, Seed: 1}}); err == nil {
				t.Fatal("a message 8 bytes under the limit was sent; the defect counts the topic and refuses it")
			}
		}},
		{DefNoC2DPuback, "", nil, func(t *testing.T, r *rig) {
			r.open()
			mid, err := r.hub.SendC2D(r.id.DeviceID, hub.C2DMessage{Payload: []byte("hi"), MessageID: "nopuback"})
			if err != nil {
				t.Fatal(err)
			}
			from := r.fw.mark()
			r.fw.waitEvent(agentproto.EvC2D, nil)
			// The hub redelivers after a reconnect (persistent session), with DUP.
			if err := r.hub.Drop(r.id, false, ""); err != nil {
				t.Fatal(err)
			}
			ev := decode[agentproto.C2DEvent](t, r.fw.waitEvent(agentproto.EvC2D, nil, from+1).Data)
			if !ev.Dup || !ev.Duplicate {
				t.Fatalf("redelivery %+v", ev)
			}
			if s, _ := r.hub.C2DState(r.id.DeviceID, mid); s.State == hub.C2DCompleted || s.DeliveryCount < 2 {
				t.Fatalf("state %+v", s)
			}
		}},
		{DefNoC2DSubscribe, "", nil, func(t *testing.T, r *rig) {
			r.open()
			for _, e := range r.entries(isType(hub.DirIn, "SUBSCRIBE")) {
				for _, f := range e.Filters {
					if f.Filter == iothub.C2DFilter(r.id.DeviceID) {
						t.Fatalf("subscribed to %s", f.Filter)
					}
				}
			}
		}},
		{DefC2DNoDedup, "", nil, func(t *testing.T, r *rig) {
			r.open()
			for range 2 {
				if _, err := r.hub.SendC2D(r.id.DeviceID, hub.C2DMessage{Payload: []byte("hi"), MessageID: "same"}); err != nil {
					t.Fatal(err)
				}
			}
			r.fw.wait("two c2d events", func() bool { return len(filterEv(r.fw.events, agentproto.EvC2D)) == 2 })
			if r.fw.countEvents(agentproto.EvC2D, func(d json.RawMessage) bool { return decode[agentproto.C2DEvent](t, d).Duplicate }) != 0 {
				t.Fatal("duplicate flagged")
			}
		}},
		{DefTwinGetBeforeSub, "", nil, func(t *testing.T, r *rig) {
			r.openConnected()
			r.entry("warning", func(e hub.Entry) bool { return e.Type == hub.EventWarning && e.Requirement == "TWIN-001" })
		}},
		{DefStaleDesired, "", nil, func(t *testing.T, r *rig) {
			r.open()
			body, _ := twin.DesiredPatchDocument(twin.Section{"rate": 1}, 1)
			if err := r.hub.PushDesiredRaw(r.id, 1, body); err != nil {
				t.Fatal(err)
			}
			if ev := decode[agentproto.DesiredEvent](t, r.fw.waitEvent(agentproto.EvDesired, nil).Data); !ev.Applied {
				t.Fatalf("stale patch not applied: %+v", ev)
			}
		}},
		{DefNoTwinResync, "", nil, func(t *testing.T, r *rig) {
			r.open()
			from := r.fw.mark()
			if err := r.hub.Drop(r.id, false, ""); err != nil {
				t.Fatal(err)
			}
			r.fw.waitEvent(agentproto.EvConn, connState(agentproto.StateConnected), from)
			if n := len(r.entries(func(e hub.Entry) bool { return e.Dir == hub.DirIn && strings.HasPrefix(e.Topic, "$iothub/twin/GET/") })); n != 1 {
				t.Fatalf("%d GETs", n)
			}
		}},
		{DefReportedDollarKey, "", nil, func(t *testing.T, r *rig) {
			r.open()
			if _, aerr := r.fw.call(agentproto.OpTwinReport, agentproto.ReportArgs{Patch: map[string]any{"a": 1}}); aerr == nil || aerr.Code != agentproto.ErrRejected {
				t.Fatalf("report: %v", aerr)
			}
		}},
		{DefMethodRIDUpper, "", nil, func(t *testing.T, r *rig) {
			r.open()
			_, err := r.hub.InvokeMethod(r.ctx(), r.id, hub.MethodRequest{Name: "m", RID: "0a", Timeout: time.Second})
			if !hub.IsMethodError(err, 504) {
				t.Fatalf("invoke: %v", err)
			}
			r.entry("response", func(e hub.Entry) bool { return e.Dir == hub.DirIn && e.Topic == "$iothub/methods/res/404/?$rid=A" })
		}},
		{DefMethodUnknownSilent, "", nil, func(t *testing.T, r *rig) {
			r.open()
			if _, err := r.hub.InvokeMethod(r.ctx(), r.id, hub.MethodRequest{Name: "nobody", Timeout: time.Second}); !hub.IsMethodError(err, 504) {
				t.Fatalf("invoke: %v", err)
			}
		}},
		{DefMethodStatusText, "", nil, func(t *testing.T, r *rig) {
			r.fw.must(agentproto.OpMethodDefine, agentproto.MethodBehaviour{Name: "m", Status: 200}, nil)
			r.open()
			go func() {
				_, _ = r.hub.InvokeMethod(r.ctx(), r.id, hub.MethodRequest{Name: "m", Timeout: 5 * time.Second})
			}()
			r.violation("METH-004")
		}},
		{DefSubscribeWildcard, "", nil, func(t *testing.T, r *rig) {
			r.fw.must(agentproto.OpOpen, nil, nil)
			r.violation("CONN-018")
			r.fw.waitEvent(agentproto.EvConn, connState(agentproto.StateBackoff))
		}},
		{DefNoBackoff, "", nil, func(t *testing.T, r *rig) {
			r.hub.RefuseConnects(r.id, 3, time.Minute)
			r.fw.must(agentproto.OpOpen, nil, nil)
			st := r.stopped()
			if st.Attempt != noBackoffMaxAttempts {
				t.Fatalf("stopped %+v", st)
			}
			if n := r.fw.countEvents(agentproto.EvConn, func(d json.RawMessage) bool {
				ev := decode[agentproto.ConnEvent](t, d)
				return ev.State == agentproto.StateBackoff && ev.NextMS != int(noBackoffDelay.Milliseconds())
			}); n != 0 {
				t.Fatalf("%d backoffs with a real delay", n)
			}
		}},
		{DefNoResubscribe, "", func(c *agentproto.Config) {
			clean := true
			c.MQTT = &agentproto.MQTTConfig{CleanSession: &clean}
		}, func(t *testing.T, r *rig) {
			r.open()
			from := r.fw.mark()
			if err := r.hub.Drop(r.id, false, ""); err != nil {
				t.Fatal(err)
			}
			r.fw.waitEvent(agentproto.EvConn, connState(agentproto.StateConnected), from)
			if n := len(r.entries(isType(hub.DirIn, "SUBSCRIBE"))); n != 1 {
				t.Fatalf("%d SUBSCRIBEs", n)
			}
		}},
		{DefRenewLate, "", func(c *agentproto.Config) { c.Auth.TokenTTL = 2 }, func(t *testing.T, r *rig) {
			r.open()
			r.entry("expiry drop", func(e hub.Entry) bool { return e.Type == hub.EventConnClosed && e.Requirement == "RECON-006" })
		}},
		{DefRetryAfterAuth, "", func(c *agentproto.Config) { c.Auth.Key = wrongKey(c.Auth.Key) }, func(t *testing.T, r *rig) {
			r.fw.must(agentproto.OpOpen, nil, nil)
			r.fw.wait("second attempt", func() bool { return len(r.entries(isType(hub.DirIn, "CONNECT"))) >= 2 })
			r.fw.must(agentproto.OpClose, agentproto.CloseArgs{Graceful: true}, nil)
			if r.fw.countEvents(agentproto.EvConn, connState(agentproto.StateStopped)) != 0 {
				t.Fatal("stopped")
			}
		}},
		{DefNoDisconnect, "", nil, func(t *testing.T, r *rig) {
			r.open()
			r.fw.must(agentproto.OpClose, agentproto.CloseArgs{Graceful: true}, nil)
			if err := r.hub.WaitDisconnected(r.ctx(), r.id); err != nil {
				t.Fatal(err)
			}
			if n := len(r.entries(isType(hub.DirIn, "DISCONNECT"))); n != 0 {
				t.Fatalf("%d DISCONNECTs", n)
			}
		}},
	}
	covered := map[string]bool{DefTwinAnyRID: true} // wire-identical: TestTwinAnyRID
	for _, c := range cases {
		covered[c.defect] = true
		t.Run(c.defect, func(t *testing.T) {
			t.Parallel()
			id := c.devID
			if id == "" {
				id = "dev-" + c.defect
			}
			r := newRig(t, id, []string{c.defect}, c.cfg)
			c.run(t, r)
		})
	}
	// The per-area switches (defects_*.go) are proven by the conformance
	// specs that catch them: `hilrun selftest` (cmd/hilrun TestSelftest).
	for _, d := range coreDefects {
		if !covered[d.Name] {
			t.Errorf("defect %s has no test", d.Name)
		}
	}
}

func filterEv(evs []*agentproto.Frame, name string) []*agentproto.Frame {
	var out []*agentproto.Frame
	for _, e := range evs {
		if e.Ev == name {
			out = append(out, e)
		}
	}
	return out
}

// twin-any-rid does not change the wire: it changes which request a
// response completes.
func TestTwinAnyRID(t *testing.T) {
	for _, on := range []bool{false, true} {
		fw := &Firmware{defects: defectSet{DefTwinAnyRID: on}, nvs: &NVS{}, rtc: NewRTC(), opts: Options{UART: uart{Writer: discard{}}}}
		dc := newDeviceClient(fw)
		fw.client = dc
		p := &pendingTwin{rid: "1", ch: make(chan twinResp, 1)}
		dc.pending["1"], dc.order = p, []string{"1"}
		dc.onTwinResponse(iothub.Topic{Kind: iothub.TopicTwinResponse, RID: "77", HasRID: true, Status: 200}, []byte(`{}`))
		select {
		case <-p.ch:
			if !on {
				t.Fatal("stray $rid completed a request (TWIN-003)")
			}
		default:
			if on {
				t.Fatal("defect on: stray $rid did not complete the oldest request")
			}
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// TestWill: an unclean close makes the hub deliver the Will as telemetry.
func TestWill(t *testing.T) {
	t.Parallel()
	r := newRig(t, "will-dev", nil, func(c *agentproto.Config) {
		c.MQTT = &agentproto.MQTTConfig{Will: &agentproto.Will{Payload: "offline", Properties: map[string]string{"why": "lost"}}}
	})
	r.open()
	r.fw.must(agentproto.OpClose, agentproto.CloseArgs{Graceful: false}, nil)
	m, err := r.hub.WaitTelemetry(r.ctx(), r.id, 0, func(m hub.Message) bool { return m.Will })
	if err != nil || string(m.Payload) != "offline" || m.Properties.Map()["why"] != "lost" {
		t.Fatalf("will %+v: %v", m, err)
	}
}

// TestDefectsDoc keeps DEFECTS.md and the Defects slice in step.
func TestDefectsDoc(t *testing.T) {
	b, err := os.ReadFile("DEFECTS.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `([a-z0-9-]+)` \\| ([A-Z][A-Z0-9]*-[0-9]+) \\|")
	doc := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(string(b), -1) {
		doc[m[1]] = m[2]
	}
	for _, d := range Defects {
		req, ok := doc[d.Name]
		if !ok {
			t.Errorf("DEFECTS.md lacks %s", d.Name)
		} else if req != d.Requirement {
			t.Errorf("DEFECTS.md gives %s for %s, code says %s", req, d.Name, d.Requirement)
		}
		delete(doc, d.Name)
	}
	for name := range doc {
		t.Errorf("DEFECTS.md lists unknown switch %s", name)
	}
	reqs, err := os.ReadFile("../../../shared/spec/requirements.md")
	if err != nil {
		t.Skipf("requirement catalog not available: %v", err)
	}
	for _, d := range Defects {
		if !strings.Contains(string(reqs), "**"+d.Requirement+"**") {
			t.Errorf("%s: requirement %s is not in the catalog", d.Name, d.Requirement)
		}
	}
}
