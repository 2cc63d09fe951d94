package suites

import (
	"fmt"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/iothub"
	"github.com/hilrun/hilrun/rig/iothub/twin"
)

// Boundary specs for IoT Plug and Play (issue 15): model IDs of several
// shapes (versions past one digit, many segments, past 64 characters) and
// commands whose names are long, hold digits and underscores, in and out of
// a component, answered with several handler statuses.
var _ = Describe("IoT Plug and Play at its boundaries", func() {
	Conformance("model IDs with versions past 9 and 255, many segments and more than 64 characters are announced as whole DTMIs", []string{"PNP-002"}, func(ctx SpecContext) {
		models := []string{
			"dtmi:com:example:Thermostat;12",
			"dtmi:com:example:Thermostat;256",
			"dtmi:contoso_iot:building7:floor_3:room42:hvac:Thermostat_v2;65535",
			"dtmi:com:contoso:smart_building:floor_monitoring:ThermostatController;3",
		}
		s := pnpSession(ctx, agentproto.PnPDefinition{ModelID: models[0]})
		for i, model := range models {
			if i > 0 {
				// The model ID is given at client creation (000 L114-120):
				// close, define the next model, open again.
				must(0, s.Call(ctx, agentproto.OpClose, nil, nil))
				must(0, s.Call(ctx, agentproto.OpPnPDefine, agentproto.PnPDefinition{ModelID: model}, nil))
			}
			m, connect := openForConnect(ctx, s)
			got := pnpModelOf(connect)
			tr := hubSince(s, m)
			Expect(iothub.ValidDTMI(got)).To(BeTrue(), "PNP-002: expected the model ID announced for %q (%d characters) to be a DTMI %s (000 L117, L128, L398); seen %q\n%s", model, len(model), iothub.DTMIPattern, got, traceText(tr))
			Expect(got).To(Equal(model), "PNP-002: expected the whole DTMI %q, path segments and version, in the Username (000 L117, L398); seen %q\n%s", model, got, traceText(tr))
			expectAccepted(ctx, s, m, connect)
			waitBoardConnected(ctx, s, m)
		}
	})

	Conformance("a refused writable-property value is acknowledged with a 4xx ac, its av and the {value, ac, av, ad} shape, at the root and in a component", []string{"PNP-003"}, func(ctx SpecContext) {
		if !boardHas(agentproto.CapPnPRefuse) {
			NotApplicable("the board does not declare pnp-refuse: it cannot be told to refuse a writable-property value (pnp.define writable[].max)")
		}
		limit := 40.0
		s := pnpSession(ctx, agentproto.PnPDefinition{ModelID: pnpModel, Writable: []agentproto.PnPProperty{
			{Name: "targetTemperature", Max: &limit}, {Component: "thermostat1", Name: "targetTemperature", Max: &limit}}})
		must(0, s.Open(ctx))
		twinResynced(ctx, s, s.Start())
		for _, c := range []struct {
			component string
			val       int
			refused   bool
		}{{"", 25, false}, {"", 90, true}, {"thermostat1", 21, false}, {"thermostat1", 95, true}} {
			m := s.Mark()
			patch := twin.Section{"targetTemperature": c.val}
			if c.component != "" {
				patch = twin.Section{c.component: map[string]any{"__t": "c", "targetTemperature": c.val}}
			}
			v := must(s.Env.Hub.UpdateDesired(s.ID, patch))
			ack := pnpAck(ctx, s, m, c.component, "targetTemperature")
			tr := s.Trace(m)
			obj, ok := ack.(map[string]any)
			Expect(ok).To(BeTrue(), "PNP-003: expected the acknowledgement of %s.targetTemperature=%d to be an object {value, ac, av, ad} (000 L139-141 [NS-3]); seen %v\n%s", c.component, c.val, ack, traceText(tr))
			Expect(obj).To(HaveKey("value"), "PNP-003: the acknowledgement carries value (000 L139-141 [NS-3]); seen %v\n%s", ack, traceText(tr))
			Expect(obj).To(HaveKeyWithValue("av", BeNumerically("==", v)), "PNP-003: the acknowledgement carries av, the desired $version %d (000 L139-141 [NS-3]); seen %v\n%s", v, ack, traceText(tr))
			if d, has := obj["ad"]; has {
				Expect(d).To(BeAssignableToTypeOf(""), "PNP-003: ad, when present, is a description text\n%s", traceText(tr))
			}
			if c.refused {
				// [NS-3]: a value the device cannot apply is acknowledged with
				// an error ac (400 bad request; 4xx in general); value may be
				// the refused one or the one the device keeps.
				Expect(obj["ac"]).To(And(BeNumerically(">=", 400), BeNumerically("<", 500)), "PNP-003: expected the refused value %d (above the board's maximum %v) to be acknowledged with a 4xx ac (000 L139-141 [NS-3]); seen %v\n%s", c.val, limit, ack, traceText(tr))
			} else {
				Expect(obj).To(HaveKeyWithValue("value", BeNumerically("==", c.val)), "PNP-003: value is the applied value\n%s", traceText(tr))
				Expect(obj["ac"]).To(BeElementOf(float64(200), float64(202)), "PNP-003: expected an accepted value %d to be acknowledged with ac 200 (or 202 in progress) [NS-3]; seen %v\n%s", c.val, ack, traceText(tr))
			}
		}
	})

	Conformance("av is the desired $version past 255 and past 256 unrelated changes", []string{"PNP-004"}, func(ctx SpecContext) {
		s := pnpSession(ctx, agentproto.PnPDefinition{ModelID: pnpModel, Writable: []agentproto.PnPProperty{{Name: "targetTemperature"}, {Component: "thermostat1", Name: "targetTemperature"}}})
		must(0, s.Open(ctx))
		twinResynced(ctx, s, s.Start())
		// Unrelated desired changes carry the desired $version past 255 (an
		// 8-bit counter) before the acknowledged ones; then one more past 256.
		v := int64(0)
		for i := 0; v < 257; i++ {
			v = must(s.Env.Hub.UpdateDesired(s.ID, twin.Section{"other": i}))
		}
		for _, c := range []struct {
			component string
			val       int
		}{{"", 27}, {"thermostat1", 19}} {
			m := s.Mark()
			patch := twin.Section{"targetTemperature": c.val}
			if c.component != "" {
				patch = twin.Section{c.component: map[string]any{"__t": "c", "targetTemperature": c.val}}
			}
			v = must(s.Env.Hub.UpdateDesired(s.ID, patch))
			ack := pnpAck(ctx, s, m, c.component, "targetTemperature")
			obj, _ := ack.(map[string]any)
			Expect(obj).To(HaveKey("av"), "PNP-004: the acknowledgement carries av (000 L139); seen %v\n%s", ack, traceText(s.Trace(m)))
			Expect(obj["av"]).To(BeNumerically("==", v), "PNP-004: expected av to be the $version %d of the desired patch that delivered %d (000 L139), past 255; seen %v\n%s", v, c.val, obj["av"], traceText(s.Trace(m)))
		}
	})

	Conformance("commands with long, digit and underscore names, in and out of components, are served under their exact names with their handlers' status and JSON result", []string{"PNP-005"}, func(ctx SpecContext) {
		cmds := []agentproto.PnPCommand{
			{Name: "reboot_now2", Payload: `{"ok":true}`},
			{Component: "environmentalSensor2", Name: "getMaxMinReportSince", Payload: `{"maxTemp":40.5,"minTemp":-3}`},
			{Component: "deviceInformation_1", Name: "setLedColour", Status: 400, Payload: `{"error":"colour out of range"}`},
			{Component: "thermostat1", Name: "calibrateSensorAgainstReferenceProbe", Status: 500, Payload: `{"error":"probe missing"}`},
			{Name: "x", Status: 202, Payload: `[]`},
		}
		s := pnpSession(ctx, agentproto.PnPDefinition{ModelID: pnpModel, Commands: cmds})
		must(0, s.Open(ctx))
		for _, c := range cmds {
			method := iothub.CommandMethodName(c.Component, c.Name)
			want := c.Status
			if want == 0 {
				want = 200
			}
			m := s.Mark()
			r, err := invokeMethod(ctx, s, hub.MethodRequest{Name: method, Payload: []byte(`{"since":"2026-12-01T00:00:00Z"}`)})
			tr := s.Trace(m)
			Expect(err).NotTo(HaveOccurred(), "PNP-005: invoking command %s (%d characters) as its direct method (000 L151-153): %v\n%s", method, len(method), err, traceText(tr))
			Expect(r.Status).To(Equal(want), "PNP-005: expected command %s (%d characters) to be answered by its handler with status %d (000 L153: the method of the command's exact name; 002 L14037: the status is the handler's); seen %d\n%s", method, len(method), want, r.Status, traceText(tr))
			Expect(jsonValue(r.Payload)).To(Equal(jsonValue([]byte(c.Payload))), "PNP-005: expected the response body of %s to be the command's JSON result %s (000 L163, L167); seen %s\n%s", method, c.Payload, r.Payload, traceText(tr))
		}
		// A name differing only in case is not the command (000 L296).
		for _, c := range cmds[1:2] {
			other := iothub.CommandMethodName(c.Component, fmt.Sprintf("G%s", c.Name[1:]))
			m := s.Mark()
			r, err := invokeMethod(ctx, s, hub.MethodRequest{Name: other})
			if err == nil {
				Expect(r.Status == 200 && fmt.Sprint(jsonValue(r.Payload)) == fmt.Sprint(jsonValue([]byte(c.Payload)))).To(BeFalse(),
					"PNP-005: %s was answered as %s; command names are case-sensitive (000 L296)\n%s", other, iothub.CommandMethodName(c.Component, c.Name), traceText(s.Trace(m)))
			}
		}
	})
})
