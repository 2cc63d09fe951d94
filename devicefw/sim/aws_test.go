package sim

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hilrun/hilrun/certs"
	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/rig/awsiot"
	"github.com/hilrun/hilrun/rig/awsproto"
	"github.com/hilrun/hilrun/rig/hub"
)

// awsRig boots the AWS image against a reference AWS IoT endpoint.
func awsRig(t *testing.T, thing string, defects []string) (*host, *awsiot.Endpoint) {
	t.Helper()
	ep, err := awsiot.Start(awsiot.Config{MQTTAddr: "127.0.0.1:0", HTTPSAddr: "off", HandshakeTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ep.Close() })
	ca, _ := certs.NewRoot("sim aws CA", certs.ECDSAP256)
	ep.Registry().AddCA(ca.Cert)
	if _, err := ep.Registry().AddThing(awsiot.Thing{Name: thing}); err != nil {
		t.Fatal(err)
	}
	leaf, _ := ca.IssueClient(certs.LeafOptions{CommonName: thing})
	if _, err := ep.Registry().AddCertificate(leaf.Cert, thing); err != nil {
		t.Fatal(err)
	}
	h := boot(t, Options{Cloud: CloudAWS, Defects: defects})
	var hello agentproto.Hello
	h.must(agentproto.OpHello, nil, &hello)
	if !agentproto.HasCap(hello.Caps, agentproto.CapAWS) || agentproto.HasCap(hello.Caps, agentproto.CapTwin) {
		t.Fatalf("AWS image hello caps %v", hello.Caps)
	}
	key, _ := leaf.KeyPEM()
	h.must(agentproto.OpTrustAdd, agentproto.Cert{PEM: string(ep.PKI().Root.CertPEM())}, nil)
	h.must(agentproto.OpCertSet, agentproto.Cert{PEM: string(leaf.ChainPEM()), KeyPEM: string(key)}, nil)
	h.must(agentproto.OpClockSet, agentproto.Clock{UnixMS: time.Now().UnixMilli()}, nil)
	h.must(agentproto.OpConfigure, agentproto.Config{AWS: &agentproto.AWSConfig{Endpoint: ep.Host(), Address: ep.MQTTAddr(), ThingName: thing, ShadowTimeoutMS: 2000},
		Retry: &agentproto.RetryConfig{InitialMS: 50, MaxMS: 200}}, nil)
	m := h.mark()
	h.must(agentproto.OpOpen, nil, nil)
	h.waitEvent(agentproto.EvConn, connState(agentproto.StateConnected), m)
	return h, ep
}

func TestAWSImageShadowAndTelemetry(t *testing.T) {
	t.Parallel() // its own rig; waits on timers
	h, ep := awsRig(t, "simthing", nil)
	if _, aerr := h.call(agentproto.OpTwinGet, nil); aerr == nil || aerr.Code != agentproto.ErrUnsupported {
		t.Errorf("twin.get on the AWS image: %v", aerr)
	}
	var r agentproto.ShadowResult
	h.must(agentproto.OpShadowUpdate, agentproto.ShadowUpdateArgs{Reported: map[string]any{"fw": "1"}}, &r)
	if r.Status != 200 || r.Version != 1 || !strings.HasPrefix(r.ClientToken, "hil-") {
		t.Errorf("update: %+v", r)
	}
	v := int64(0)
	h.must(agentproto.OpShadowUpdate, agentproto.ShadowUpdateArgs{Reported: map[string]any{"fw": "2"}, Version: &v}, &r)
	if r.Status != 409 {
		t.Errorf("stale version: %+v", r)
	}
	m := h.mark()
	if _, err := ep.UpdateShadow("simthing", "", []byte(`{"state":{"desired":{"fw":"3"}}}`)); err != nil {
		t.Fatal(err)
	}
	ev := h.waitEvent(agentproto.EvShadowDelta, nil, m)
	if d := decode[agentproto.ShadowDeltaEvent](t, ev.Data); d.State["fw"] != "3" || d.Version != 2 {
		t.Errorf("delta event %s", ev.Data)
	}
	h.must(agentproto.OpShadowGet, agentproto.ShadowArgs{}, &r)
	if r.Status != 200 || r.Version != 2 || r.Desired["fw"] != "3" {
		t.Errorf("get: %+v", r)
	}
	h.must(agentproto.OpShadowGet, agentproto.ShadowArgs{Name: "cfg"}, &r)
	if r.Status != 404 {
		t.Errorf("get of a missing named shadow: %+v", r)
	}
	var tr agentproto.TelemetryResult
	h.must(agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: "{}", Wait: true}, &tr)
	if !tr.Acked {
		t.Errorf("telemetry: %+v", tr)
	}
	for _, e := range ep.Trace().Entries(func(e *hub.Entry) bool { return e.Type == "SUBSCRIBE" }) {
		for _, f := range e.Filters {
			if strings.Contains(f.Filter, "#") && strings.HasPrefix(f.Filter, "$aws") {
				t.Errorf("wide shadow filter %s", f.Filter)
			}
		}
	}
	var gets int
	for _, e := range ep.Trace().Entries(func(e *hub.Entry) bool {
		return e.Type == "PUBLISH" && e.Topic == awsproto.ShadowTopic("simthing", "", awsproto.OpGet, "")
	}) {
		gets++
		if len(e.Payload) != 0 {
			t.Errorf("get request with payload %q", e.Payload)
		}
	}
	if gets != 1 {
		t.Errorf("%d get requests on the wire", gets)
	}
	ep.SilenceShadow("simthing", true)
	if _, aerr := h.call(agentproto.OpShadowGet, agentproto.ShadowArgs{}); aerr == nil || aerr.Code != agentproto.ErrTimeout {
		t.Errorf("unanswered get: %v", aerr)
	}
}

func TestAWSImageSeedSDKDefects(t *testing.T) {
	h, ep := awsRig(t, "simbug", []string{DefAWSClientTokenJSON, DefAWSDeltaAsShadow})
	var r agentproto.ShadowResult
	h.must(agentproto.OpShadowUpdate, agentproto.ShadowUpdateArgs{Reported: map[string]any{"fw": "1"}}, &r)
	if r.Status != 400 {
		t.Errorf("the seed SDK's clientToken JSON: %+v", r)
	}
	m := h.mark()
	if _, err := ep.UpdateShadow("simbug", "", []byte(`{"state":{"desired":{"led":"on"}}}`)); err != nil {
		t.Fatal(err)
	}
	ev := h.waitEvent(agentproto.EvShadowDelta, nil, m)
	var d agentproto.ShadowDeltaEvent
	_ = json.Unmarshal(ev.Data, &d)
	if len(d.State) != 0 {
		t.Errorf("delta parsed as a shadow should leave the state empty: %s", ev.Data)
	}
}
