package sim

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/rig/dps"
	"github.com/hilrun/hilrun/rig/dpsproto"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/iothub"
	"github.com/hilrun/hilrun/rig/iothub/twin"
)

// The DPS client against the reference DPS: a group enrollment, a 429
// first (the device waits its retry-after and asks again), then assigned,
// applied, and the hub connection under the assigned identity.
func TestDPSRegisterGroupThrottledThenAssigned(t *testing.T) {
	t.Parallel() // its own rig; waits on timers
	r := newRig(t, "placeholder", nil, nil)
	e, err := dps.Start(dps.Config{Hub: r.hub.Hub, RetryAfter: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	g, err := e.AddGroup(dps.Enrollment{GroupID: "fleet", Attestation: dps.Attestation{Type: dps.AttestSymmetricKey}})
	if err != nil {
		t.Fatal(err)
	}
	one := 1
	e.SetFaults("sensor-1", dps.Faults{Throttle: 1, RetryAfter: &one})
	var res agentproto.DPSResult
	r.fw.must(agentproto.OpDPSRegister, agentproto.DPSRegisterArgs{Host: e.Host(), Address: e.Addr(), IDScope: e.IDScope(), RegistrationID: "sensor-1",
		Auth: &agentproto.AuthConfig{Type: "sas", Key: g.Attestation.PrimaryKey}, Group: true, Apply: true, TimeoutMS: 10000}, &res)
	if res.Status != dpsproto.StatusAssigned || res.DeviceID != "sensor-1" || res.AssignedHub != r.hub.Host() {
		t.Fatalf("result %+v\n%s", res, r.fw.dump())
	}
	var throttled, retried *hub.Entry
	for _, en := range r.hub.Trace().ForClient("sensor-1") {
		switch {
		case en.Dir == hub.DirOut && strings.HasPrefix(en.Topic, dpsproto.ResponsePrefix+"429/") && throttled == nil:
			throttled = &en
		case throttled != nil && retried == nil && en.Dir == hub.DirIn && strings.HasPrefix(en.Topic, dpsproto.RegisterPrefix):
			retried = &en
		}
	}
	if throttled == nil || retried == nil || retried.Time.Sub(throttled.Time) < time.Second {
		t.Fatalf("expected a 429 and a new registration request at least 1 s later; trace:\n%s", r.hub.TraceSummary("sensor-1"))
	}
	r.id = iothub.Identity{DeviceID: "sensor-1"}
	r.openConnected()
}

// PnP mode: a desired patch of a writable property is acknowledged with
// value, ac, av (the desired $version) and ad; a component's inside the
// component object marked "__t": "c".
func TestPnPWritableAcknowledged(t *testing.T) {
	r := newRig(t, "pnp-dev", nil, nil)
	r.fw.must(agentproto.OpPnPDefine, agentproto.PnPDefinition{ModelID: "dtmi:com:example:Thermostat;1",
		Writable: []agentproto.PnPProperty{{Name: "targetTemperature"}, {Component: "thermostat1", Name: "targetTemperature"}}}, nil)
	r.open()
	u := r.entry("CONNECT", isType(hub.DirIn, "CONNECT")).Username
	if pu, err := iothub.ParseUsername(u); err != nil || pu.ModelID != "dtmi:com:example:Thermostat;1" {
		t.Fatalf("Username %q: model-id %v", u, err)
	}
	v, err := r.hub.UpdateDesired(r.id, twin.Section{"targetTemperature": 25, "thermostat1": map[string]any{"__t": "c", "targetTemperature": 21}})
	if err != nil {
		t.Fatal(err)
	}
	var rep twin.Section
	if err := r.hub.Wait(r.ctx(), func() bool {
		rep, _ = r.hub.ReportedOf(r.id)
		_, ok := rep["thermostat1"]
		return ok && rep["targetTemperature"] != nil
	}); err != nil {
		t.Fatalf("no acknowledgement: %v\n%s", err, r.fw.dump())
	}
	ack, _ := rep["targetTemperature"].(map[string]any)
	comp, _ := rep["thermostat1"].(map[string]any)
	cack, _ := comp["targetTemperature"].(map[string]any)
	if ack == nil || cack == nil || comp["__t"] != "c" {
		t.Fatalf("reported %v", rep)
	}
	for _, a := range []map[string]any{ack, cack} {
		if fmt.Sprint(a["ac"]) != "200" || fmt.Sprint(a["av"]) != fmt.Sprint(v) || a["ad"] == nil {
			t.Errorf("ack %v; want ac 200, av %d, ad", a, v)
		}
	}
}

// CERT-005: the provisioning connection's server check. The clean firmware
// refuses every bad chain the reference DPS presents (no CONNECT, status
// error) and registers over the endpoint's own chain; each CERT-005 defect
// accepts exactly the chains it stands for and still refuses the others.
func TestDPSServerCheck(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		defect   string
		accepted []dps.Chain
	}{
		{"", nil},
		{DefDPSTrustServerChain, []dps.Chain{dps.ChainUntrustedRoot}},
		{DefDPSSkipHostname, []dps.Chain{dps.ChainWrongHost}},
		{DefDPSIgnoreValidity, []dps.Chain{dps.ChainExpired, dps.ChainNotYetValid}},
	} {
		name := tc.defect
		if name == "" {
			name = "clean"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var defects []string
			if tc.defect != "" {
				defects = []string{tc.defect}
			}
			r := newRig(t, "placeholder", defects, nil)
			e, err := dps.Start(dps.Config{Hub: r.hub.Hub, RetryAfter: -1})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(e.Close)
			for i, c := range append(append([]dps.Chain(nil), dps.BadChains...), dps.ChainOwn) {
				regID := fmt.Sprintf("cert005-%d", i)
				en, err := e.AddIndividual(dps.Enrollment{RegistrationID: regID, Attestation: dps.Attestation{Type: dps.AttestSymmetricKey}})
				if err != nil {
					t.Fatal(err)
				}
				if err := e.PresentChain(c); err != nil {
					t.Fatal(err)
				}
				var res agentproto.DPSResult
				r.fw.must(agentproto.OpDPSRegister, agentproto.DPSRegisterArgs{Host: e.Host(), Address: e.Addr(), IDScope: e.IDScope(), RegistrationID: regID,
					Auth: &agentproto.AuthConfig{Type: "sas", Key: en.Attestation.PrimaryKey}, TimeoutMS: 10000}, &res)
				connects := 0
				for _, en := range r.hub.Trace().ForClient(regID) {
					if en.Dir == hub.DirIn && en.Type == "CONNECT" {
						connects++
					}
				}
				want := c == dps.ChainOwn || slices.Contains(tc.accepted, c)
				if got := res.Status == dpsproto.StatusAssigned && connects > 0; got != want {
					t.Fatalf("%s: accepted=%v, want %v (result %+v, %d CONNECTs)\n%s", c, got, want, res, connects, r.fw.dump())
				}
				if !want && (connects != 0 || res.Status != "error") {
					t.Fatalf("%s: refused chain: result %+v, %d CONNECTs", c, res, connects)
				}
			}
		})
	}
}
