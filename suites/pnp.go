package suites

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/rig/dpsproto"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/iothub"
	"github.com/hilrun/hilrun/rig/iothub/twin"
)

// The model the PnP specs announce: the README's thermostat (000 L117).
const pnpModel = "dtmi:com:example:Thermostat;1"

// IoT Plug and Play (PNP-*): the board is put in PnP mode with pnp.define
// (model ID, writable properties, commands; PROTOCOL.md §4.3). The wire
// shapes (model-id in the Username, value/ac/av/ad, component*command) are
// the catalog's test assumptions [NS-1, NS-3, NS-4]. Component telemetry
// ($.sub) and the "__t":"c" component marker have no catalog requirement:
// the hub records them (telemetry properties, reported twin) and the
// firmware sends them, but no spec judges them.
var _ = Describe("IoT Plug and Play", func() {
	Conformance("the model ID is announced in every CONNECT, URL-encoded, and is the same on a reconnect", []string{"PNP-001"}, func(ctx SpecContext) {
		s := pnpSession(ctx, agentproto.PnPDefinition{ModelID: pnpModel})
		m, connect := openForConnect(ctx, s)
		expectAccepted(ctx, s, m, connect)
		waitBoardConnected(ctx, s, m)
		first := pnpModelOf(connect)
		tr := hubSince(s, m)
		fixtures.NoteFact(fixtures.FactPnP, "model ID in the CONNECT Username", first, iothub.ValidDTMI(first))
		Expect(first).To(Equal(pnpModel), "PNP-001: the CONNECT announces the model ID given at client creation (000 L114-120); seen model-id %q\n%s", first, traceText(tr))
		// Any percent-encoding that decodes to the DTMI is URL-encoded
		// (upper- or lower-case hex, ':' and ';' escaped or not: both are
		// legal in a query, RFC 3986 §3.4); ParseUsername decoded it above.
		Expect(strings.Contains(connect.Username, "&model-id=") || strings.Contains(connect.Username, "?model-id=")).To(BeTrue(), "PNP-001: the model ID is the model-id parameter of the Username query [NS-1]\n%s", traceText(tr))
		// A reconnect: the hub drops the connection (as IoT Hub may at any time).
		m2 := s.Mark()
		must(0, s.Env.Hub.Drop(s.ID, false, "PNP-001: reconnect"))
		second := must(waitHub(ctx, s, m2, "the reconnect's CONNECT", func(e hub.Entry) bool {
			return e.Dir == hub.DirIn && e.Type == "CONNECT" && e.ClientID == s.ID.ClientID()
		}))
		tr = hubSince(s, m)
		Expect(pnpModelOf(second)).To(Equal(first), "PNP-001: the model ID is the same on every reconnect (000 L120: it cannot change later); first %q, then %q\n%s", first, pnpModelOf(second), traceText(tr))
		must(0, s.Env.Hub.WaitConnected(ctx, s.ID))
	})

	Conformance("the model ID is a DTMI: dtmi:<path segments>;<version>", []string{"PNP-002"}, func(ctx SpecContext) {
		s := pnpSession(ctx, agentproto.PnPDefinition{ModelID: pnpModel})
		m, connect := openForConnect(ctx, s)
		got := pnpModelOf(connect)
		Expect(iothub.ValidDTMI(got)).To(BeTrue(), "PNP-002: model ID %q does not match %s (000 L117, L128, L398)\n%s", got, iothub.DTMIPattern, traceText(hubSince(s, m)))
		expectAccepted(ctx, s, m, connect)
	})

	Conformance("a writable-property update is acknowledged with {value, ac, av, ad}, also in a component", []string{"PNP-003"}, func(ctx SpecContext) {
		s := pnpSession(ctx, agentproto.PnPDefinition{ModelID: pnpModel, Writable: []agentproto.PnPProperty{
			{Name: "targetTemperature"}, {Component: "thermostat1", Name: "targetTemperature"}}})
		must(0, s.Open(ctx))
		twinResynced(ctx, s, s.Start())
		m := s.Mark()
		must(s.Env.Hub.UpdateDesired(s.ID, twin.Section{"targetTemperature": 25}))
		ack := pnpAck(ctx, s, m, "", "targetTemperature")
		pnpExpectAck(s, m, ack, 25, "PNP-003")
		m = s.Mark()
		must(s.Env.Hub.UpdateDesired(s.ID, twin.Section{"thermostat1": map[string]any{"__t": "c", "targetTemperature": 21}}))
		ack = pnpAck(ctx, s, m, "thermostat1", "targetTemperature")
		pnpExpectAck(s, m, ack, 21, "PNP-003")
	})

	Conformance("av is the $version of the desired patch that delivered the value", []string{"PNP-004"}, func(ctx SpecContext) {
		s := pnpSession(ctx, agentproto.PnPDefinition{ModelID: pnpModel, Writable: []agentproto.PnPProperty{{Name: "targetTemperature"}}})
		must(0, s.Open(ctx))
		twinResynced(ctx, s, s.Start())
		// Unrelated desired changes first, so the desired $version is not
		// the reported one by chance.
		for i := 0; i < 3; i++ {
			must(s.Env.Hub.UpdateDesired(s.ID, twin.Section{"other": i}))
		}
		for _, val := range []int{25, 26} {
			m := s.Mark()
			v := must(s.Env.Hub.UpdateDesired(s.ID, twin.Section{"targetTemperature": val}))
			ack := pnpAck(ctx, s, m, "", "targetTemperature")
			obj, _ := ack.(map[string]any)
			Expect(obj).To(HaveKey("av"), "PNP-004: the acknowledgement carries av (000 L139); seen %v\n%s", ack, traceText(s.Trace(m)))
			Expect(obj["av"]).To(BeNumerically("==", v), "PNP-004: av is the $version %d of the desired patch that delivered %d (000 L139); seen %v\n%s", v, val, obj["av"], traceText(s.Trace(m)))
		}
	})

	Conformance("each command is served as the direct method of its exact name (component*command in a component) answering its JSON result", []string{"PNP-005"}, func(ctx SpecContext) {
		s := pnpSession(ctx, agentproto.PnPDefinition{ModelID: pnpModel, Commands: []agentproto.PnPCommand{
			{Name: "getMaxMinReport", Payload: `{"maxTemp":42,"minTemp":12.34}`},
			{Component: "thermostat1", Name: "getMaxMinReport", Payload: `{"maxTemp":43}`}}})
		must(0, s.Open(ctx))
		for _, c := range []struct{ method, want string }{
			{"getMaxMinReport", `{"maxTemp":42,"minTemp":12.34}`},
			{iothub.CommandMethodName("thermostat1", "getMaxMinReport"), `{"maxTemp":43}`},
		} {
			m := s.Mark()
			r, err := invokeMethod(ctx, s, hub.MethodRequest{Name: c.method})
			Expect(err).NotTo(HaveOccurred(), "PNP-005: invoking command %s (000 L151-153): %v\n%s", c.method, err, traceText(s.Trace(m)))
			Expect(r.Status).To(Equal(200), "PNP-005: command %s is answered by its handler (000 L153, L296); status %d\n%s", c.method, r.Status, traceText(s.Trace(m)))
			Expect(jsonValue(r.Payload)).To(Equal(jsonValue([]byte(c.want))), "PNP-005: the response body is the command's JSON result (000 L163, L167); seen %s\n%s", r.Payload, traceText(s.Trace(m)))
		}
		// The name is case-sensitive: another case is not that command.
		m := s.Mark()
		r, err := invokeMethod(ctx, s, hub.MethodRequest{Name: "GetMaxMinReport"})
		if err == nil {
			Expect(r.Status == 200 && jsonValue(r.Payload) != nil && fmt.Sprint(jsonValue(r.Payload)) == fmt.Sprint(jsonValue([]byte(`{"maxTemp":42,"minTemp":12.34}`)))).To(BeFalse(),
				"PNP-005: GetMaxMinReport was answered as getMaxMinReport; the command name must match exactly (000 L153)\n%s", traceText(s.Trace(m)))
		}
	})

	Conformance("the DPS registration payload carries {\"modelId\"} and the hub CONNECT the same model ID", []string{"PNP-006"}, func(ctx SpecContext) {
		ds := newDPS(ctx, fixtures.DPSOptions{Name: "pnp006", PnP: &agentproto.PnPDefinition{ModelID: pnpModel}})
		m := ds.Mark()
		res := must(ds.Register(ctx))
		tr := ds.DPSTrace(m)
		body, err := dpsproto.ParseRegisterBody(dpsRegisterPublish(tr).Payload)
		Expect(err).NotTo(HaveOccurred(), "PNP-006: %v\n%s", err, traceText(tr))
		var p struct {
			ModelID string `json:"modelId"`
		}
		_ = json.Unmarshal(body.Payload, &p)
		Expect(p.ModelID).To(Equal(pnpModel), "PNP-006: the registration payload is {\"modelId\":\"%s\"} (000 L402-410); seen %s\n%s", pnpModel, body.Payload, traceText(tr))
		Expect(res.Status).To(Equal(dpsproto.StatusAssigned), "PNP-006: registration assigned; the device reported %+v", res)
		hm := ds.Mark()
		must(0, ds.Open(ctx))
		connect := must(ds.WaitTrace(ctx, hm, "the hub CONNECT", func(e hub.Entry) bool { return e.Dir == hub.DirIn && e.Type == "CONNECT" }))
		Expect(pnpModelOf(connect)).To(Equal(p.ModelID), "PNP-006: the hub CONNECT announces the model ID of the registration (000 L414-417)\n%s", traceText(ds.Trace(hm)))
	})
})

// pnpSession starts a closed session and puts the board in PnP mode.
func pnpSession(ctx context.Context, d agentproto.PnPDefinition) *fixtures.Session {
	GinkgoHelper()
	s := NewSession(ctx, fixtures.SessionOptions{NoOpen: true})
	err := s.Call(ctx, agentproto.OpPnPDefine, d, nil)
	if ae, ok := fixtures.IsDeviceError(err); ok && (ae.Code == agentproto.ErrUnknownOp || ae.Code == agentproto.ErrUnsupported) {
		// pnp.define came after the first release of protocol 1
		// (PROTOCOL.md §4.3): a board that declares pnp for its model ID
		// alone, without this operation, cannot be put in PnP mode here.
		PreconditionUnmet(fmt.Sprintf("the board declares pnp but answers pnp.define with %s: its PnP mode (model ID, components, writable-property acknowledgements, commands) cannot be set up by this spec; not judged", ae.Code))
	}
	Expect(err).To(Succeed(), "pnp.define (the board declares pnp)")
	return s
}

// pnpModelOf is the model-id of a CONNECT's Username ("" when absent).
func pnpModelOf(connect hub.Entry) string {
	u, err := iothub.ParseUsername(connect.Username)
	if err != nil {
		return ""
	}
	return u.ModelID
}

// pnpAck waits for the reported PATCH that carries the property (in the
// component, when given) and returns the property's reported member.
func pnpAck(ctx context.Context, s *fixtures.Session, m fixtures.Marks, component, name string) any {
	GinkgoHelper()
	var member any
	_, err := s.WaitTrace(ctx, m, fmt.Sprintf("a reported patch acknowledging %s", strings.TrimPrefix(component+"."+name, ".")), func(e hub.Entry) bool {
		if e.Dir != hub.DirIn || e.Type != "PUBLISH" || !strings.HasPrefix(e.Topic, "$iothub/twin/PATCH/properties/reported/") {
			return false
		}
		var patch map[string]any
		if json.Unmarshal(e.Payload, &patch) != nil {
			return false
		}
		if component != "" {
			c, ok := patch[component].(map[string]any)
			if !ok {
				return false
			}
			patch = c
		}
		v, ok := patch[name]
		member = v
		return ok
	})
	if err != nil {
		Fail("PNP-003: each writable-property update is acknowledged in a reported patch (000 L139-142): " + err.Error())
	}
	return member
}

func pnpExpectAck(s *fixtures.Session, m fixtures.Marks, ack any, value int, req string) {
	GinkgoHelper()
	tr := s.Trace(m)
	obj, ok := ack.(map[string]any)
	Expect(ok).To(BeTrue(), "%s: the property's reported member is an object {value, ac, av, ad} (000 L139-141 [NS-3]); seen %v\n%s", req, ack, traceText(tr))
	Expect(obj).To(HaveKeyWithValue("value", BeNumerically("==", value)), "%s: value is the acknowledged value\n%s", req, traceText(tr))
	Expect(obj).To(HaveKey("ac"), "%s: ac carries the status code\n%s", req, traceText(tr))
	Expect(obj["ac"]).To(BeElementOf(float64(200), float64(202), float64(400), float64(404), float64(500)), "%s: ac is one of 200, 202, 400, 404, 500 [NS-3]\n%s", req, traceText(tr))
	Expect(obj).To(HaveKey("av"), "%s: av carries the desired version\n%s", req, traceText(tr))
	if d, ok := obj["ad"]; ok {
		Expect(d).To(BeAssignableToTypeOf(""), "%s: ad, when present, is a description text\n%s", req, traceText(tr))
	}
}
