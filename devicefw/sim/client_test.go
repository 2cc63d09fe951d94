package sim

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hilrun/hilrun/certs"
	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/iothub"
	"github.com/hilrun/hilrun/rig/iothub/twin"
)

func TestSASConnectTelemetry(t *testing.T) {
	t.Parallel()
	r := newRig(t, "Dev-SAS.1", nil, func(c *agentproto.Config) { c.ModelID = "dtmi:com:example:Thermostat;1" })
	r.open()
	r.fw.waitEvent(agentproto.EvResync, nil)

	connect := r.entry("CONNECT", isType(hub.DirIn, "CONNECT"))
	u, err := iothub.ParseUsername(connect.Username)
	if err != nil || u.Host != r.hub.Host() || u.Identity != r.id || u.APIVersion != iothub.DefaultAPIVersion ||
		u.ModelID != "dtmi:com:example:Thermostat;1" || !strings.HasPrefix(u.DeviceClientType, FirmwareName) {
		t.Fatalf("Username %q: %+v %v", connect.Username, u, err)
	}
	if strings.Contains(connect.Password, r.key) {
		t.Fatal("trace shows the key")
	}
	// TWIN-001: the response filter is subscribed before the first GET.
	var subSeq, getSeq uint64
	for _, e := range r.hub.Trace().ForClient(r.id.ClientID()) {
		for _, f := range e.Filters {
			if e.Type == "SUBSCRIBE" && f.Filter == iothub.TwinResponseFilter && subSeq == 0 {
				subSeq = e.Seq
			}
		}
		if e.Type == "PUBLISH" && e.Dir == hub.DirIn && strings.HasPrefix(e.Topic, "$iothub/twin/GET/") && getSeq == 0 {
			getSeq = e.Seq
		}
	}
	if subSeq == 0 || getSeq == 0 || subSeq > getSeq {
		t.Fatalf("SUBSCRIBE at #%d, GET at #%d\n%s", subSeq, getSeq, r.hub.TraceSummary(r.id.ClientID()))
	}

	var res agentproto.TelemetryResult
	r.fw.must(agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: `{"t":21.5}`, MessageID: "m-1", ContentType: "application/json",
		Properties: map[string]string{"alert": "a b&c=d/é"}, Wait: true}, &res)
	if !res.Acked || res.Ref == 0 {
		t.Fatalf("result %+v", res)
	}
	m, err := r.hub.WaitTelemetry(r.ctx(), r.id, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(m.Topic, "devices/Dev-SAS.1/messages/events/") || m.QoS != 1 || m.Retain || string(m.Payload) != `{"t":21.5}` {
		t.Fatalf("message %+v", m)
	}
	props := m.Properties.Map()
	if props["alert"] != "a b&c=d/é" || props[iothub.PropMessageID] != "m-1" || props[iothub.PropContentType] != "application/json" ||
		props[iothub.PropContentEncoding] != "utf-8" {
		t.Fatalf("properties %v (topic %s)", props, m.Topic)
	}
	r.fw.waitEvent(agentproto.EvTelemetry, func(d json.RawMessage) bool {
		ev := decode[agentproto.TelemetryResult](t, d)
		return ev.Ref == res.Ref && ev.Acked
	})

	// Generated payloads, and the local 256 KB limit (TEL-005).
	r.fw.must(agentproto.OpTelemetry, agentproto.TelemetryArgs{Gen: &agentproto.Gen{Size: 1000, Seed: 7}, Wait: true}, &res)
	m, err = r.hub.WaitTelemetry(r.ctx(), r.id, m.Seq, nil)
	if err != nil || !bytes.Equal(m.Payload, agentproto.Generate(1000, 7)) {
		t.Fatalf("generated payload: %v", err)
	}
	if _, aerr := r.fw.call(agentproto.OpTelemetry, agentproto.TelemetryArgs{Gen: &agentproto.Gen{Size: iothub.MaxTelemetryBytes + 1}}); aerr == nil || aerr.Code != agentproto.ErrBadArgs {
		t.Fatalf("oversize telemetry: %v", aerr)
	}
	if !r.hub.Connected(r.id) {
		t.Fatal("connection dropped")
	}

	// Graceful close sends DISCONNECT (CONN-022).
	r.fw.must(agentproto.OpClose, agentproto.CloseArgs{Graceful: true}, nil)
	r.entry("DISCONNECT", isType(hub.DirIn, "DISCONNECT"))
	var st agentproto.Status
	r.fw.must(agentproto.OpStatus, nil, &st)
	if st.State != agentproto.StateIdle || st.Connects != 1 || st.TokenExpires <= time.Now().Unix() {
		t.Fatalf("status %+v", st)
	}
	for _, e := range r.hub.Trace().ForClient(r.id.ClientID()) {
		if e.Type == hub.EventViolation || e.Type == hub.EventWarning {
			t.Errorf("hub %s: %s [%s]", e.Type, e.Reason, e.Requirement)
		}
	}
	r.fw.mu.Lock()
	defer r.fw.mu.Unlock()
	for _, line := range r.fw.console {
		if strings.Contains(line, r.key) || strings.Contains(line, "sig=") {
			t.Fatalf("console leaks a secret: %s", line)
		}
	}
}

func TestX509Connect(t *testing.T) {
	t.Parallel()
	h := newRig(t, "x509-dev", nil, func(c *agentproto.Config) { c.Auth = &agentproto.AuthConfig{Type: "x509"} })
	leaf, err := certs.SelfSigned(certs.LeafOptions{CommonName: "x509-dev"})
	if err != nil {
		t.Fatal(err)
	}
	d, _ := h.hub.Registry().Get(h.id)
	d.Authentication = hub.Authentication{Type: hub.AuthSelfSigned, X509Thumbprint: &hub.X509Thumbprint{PrimaryThumbprint: certs.Thumbprint(leaf.Cert)}}
	if _, _, err := h.hub.Registry().Put(d, "*"); err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := leaf.KeyPEM()
	h.fw.must(agentproto.OpCertSet, agentproto.Cert{PEM: string(leaf.CertPEM()), KeyPEM: string(keyPEM)}, nil)
	h.open()
	opened := h.entry("opened", isType(hub.DirEvent, hub.EventConnOpened))
	if opened.Extra != "auth="+hub.MethodX509Thumb {
		t.Fatalf("auth %q", opened.Extra)
	}
	connect := h.entry("CONNECT", isType(hub.DirIn, "CONNECT"))
	if connect.Password != "" {
		t.Fatalf("X.509 CONNECT carries a password %q (CONN-012)", connect.Password)
	}
	h.fw.must(agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: "x", Wait: true}, nil)
	if _, err := h.hub.WaitTelemetry(h.ctx(), h.id, 0, nil); err != nil {
		t.Fatal(err)
	}
}

func TestWebSocketConnect(t *testing.T) {
	t.Parallel()
	var r *rig
	r = newRig(t, "ws-dev", nil, nil)
	r.fw.must(agentproto.OpConfigure, agentproto.Config{Hub: &agentproto.HubConfig{Host: r.hub.Host(), Transport: "wss", Address: r.hub.HTTPSAddr()}}, nil)
	r.open()
	opened := r.entry("opened", isType(hub.DirEvent, hub.EventConnOpened))
	if opened.TLS == nil || opened.TLS.Transport != "wss" {
		t.Fatalf("transport %+v", opened.TLS)
	}
}

func TestMethods(t *testing.T) {
	t.Parallel()
	r := newRig(t, "meth-dev", nil, nil)
	r.fw.must(agentproto.OpMethodDefine, agentproto.MethodBehaviour{Name: "reboot", Status: 201, Payload: `{"ok":true}`}, nil)
	r.fw.must(agentproto.OpMethodDefine, agentproto.MethodBehaviour{Name: "crash", Fail: true}, nil)
	r.open()
	for _, rid := range []string{"0a", "x1"} {
		res, err := r.hub.InvokeMethod(r.ctx(), r.id, hub.MethodRequest{Name: "reboot", Payload: []byte(`{"in":1}`), RID: rid, Timeout: 10 * time.Second})
		if err != nil || res.Status != 201 || string(res.Raw) != `{"ok":true}` || res.RID != rid {
			t.Fatalf("rid %s: %+v %v", rid, res, err)
		}
		r.fw.waitEvent(agentproto.EvMethod, func(d json.RawMessage) bool {
			ev := decode[agentproto.MethodEvent](t, d)
			return ev.Name == "reboot" && ev.RID == rid && ev.Status == 201 && ev.Size == 8
		})
	}
	// METH-012: exact names only; unknown ones get 404 promptly (METH-010).
	res, err := r.hub.InvokeMethod(r.ctx(), r.id, hub.MethodRequest{Name: "Reboot", Timeout: 10 * time.Second})
	if err != nil || res.Status != unknownMethodStatus {
		t.Fatalf("unknown method: %+v %v", res, err)
	}
	res, err = r.hub.InvokeMethod(r.ctx(), r.id, hub.MethodRequest{Name: "crash", Timeout: 10 * time.Second})
	if err != nil || res.Status != 500 || !json.Valid(res.Raw) {
		t.Fatalf("failing handler: %+v %v", res, err)
	}
}

func TestDesiredPatches(t *testing.T) {
	t.Parallel()
	r := newRig(t, "twin-dev", nil, nil)
	if _, err := r.hub.UpdateDesired(r.id, twin.Section{"rate": 5}); err != nil {
		t.Fatal(err)
	}
	r.open()
	rs := decode[agentproto.ResyncEvent](t, r.fw.waitEvent(agentproto.EvResync, nil).Data)
	if tw, _ := r.hub.GetTwin(r.id); rs.DesiredVersion != tw.Properties.Desired["$version"] {
		t.Fatalf("resync %+v, hub twin %+v", rs, tw)
	}
	from := r.hub.Trace().LastSeq()
	v, err := r.hub.UpdateDesired(r.id, twin.Section{"rate": 10, "mode": "eco"})
	if err != nil {
		t.Fatal(err)
	}
	ev := decode[agentproto.DesiredEvent](t, r.fw.waitEvent(agentproto.EvDesired, nil).Data)
	if !ev.Applied || ev.Version != v || ev.Patch["mode"] != "eco" {
		t.Fatalf("desired %+v", ev)
	}
	r.entry("desired push", func(e hub.Entry) bool {
		return e.Seq > from && e.Dir == hub.DirOut && e.Type == "PUBLISH" && strings.HasPrefix(e.Topic, "$iothub/twin/PATCH/properties/desired/")
	})
	// A stale patch is not applied (TWIN-010).
	body, _ := twin.DesiredPatchDocument(twin.Section{"rate": 1}, v)
	if err := r.hub.PushDesiredRaw(r.id, v, body); err != nil {
		t.Fatal(err)
	}
	stale := decode[agentproto.DesiredEvent](t, r.fw.waitEvent(agentproto.EvDesired, func(d json.RawMessage) bool {
		return !decode[agentproto.DesiredEvent](t, d).Applied
	}).Data)
	if stale.Version != v || !strings.HasPrefix(stale.Reason, "stale") {
		t.Fatalf("stale %+v", stale)
	}
	var tw agentproto.TwinResult
	r.fw.must(agentproto.OpTwinGet, nil, &tw)
	if tw.DesiredVersion != v || tw.Desired["mode"] != "eco" || tw.Status != 200 {
		t.Fatalf("twin %+v", tw)
	}
	var rep agentproto.ReportResult
	_, before := r.hub.ReportedOf(r.id)
	r.fw.must(agentproto.OpTwinReport, agentproto.ReportArgs{Patch: map[string]any{"fw": "1.0"}}, &rep)
	if rep.Status != 204 || rep.Version != before+1 {
		t.Fatalf("report %+v", rep)
	}
	if got, ver := r.hub.ReportedOf(r.id); ver != before+1 || got["fw"] != "1.0" {
		t.Fatalf("hub reported %v v%d", got, ver)
	}
}

func TestC2D(t *testing.T) {
	t.Parallel()
	r := newRig(t, "c2d-dev", nil, nil)
	r.open()
	r.fw.waitEvent(agentproto.EvResync, nil) // subscriptions are in place
	payload := []byte(strings.Repeat("c2d-", 200))
	mid, err := r.hub.SendC2D("c2d-dev", hub.C2DMessage{Payload: payload, MessageID: "msg-1", Properties: iothub.PropertyBag{{Name: "k", Value: "v w"}}})
	if err != nil {
		t.Fatal(err)
	}
	ev := decode[agentproto.C2DEvent](t, r.fw.waitEvent(agentproto.EvC2D, nil).Data)
	sum := sha256.Sum256(payload)
	if ev.Size != len(payload) || ev.SHA256 != hex.EncodeToString(sum[:]) || len(ev.Payload) != 512 || ev.Properties["k"] != "v w" ||
		ev.Properties[iothub.PropMessageID] != "msg-1" || ev.Duplicate {
		t.Fatalf("c2d %+v", ev)
	}
	if err := r.hub.Wait(r.ctx(), func() bool { s, ok := r.hub.C2DState("c2d-dev", mid); return ok && s.State == hub.C2DCompleted }); err != nil {
		t.Fatalf("C2D not completed: %v\n%s", err, r.hub.TraceSummary("c2d-dev"))
	}
	// The same message id again is flagged as a duplicate (C2D-004).
	if _, err := r.hub.SendC2D("c2d-dev", hub.C2DMessage{Payload: []byte("again"), MessageID: "msg-1"}); err != nil {
		t.Fatal(err)
	}
	r.fw.waitEvent(agentproto.EvC2D, func(d json.RawMessage) bool { return decode[agentproto.C2DEvent](t, d).Duplicate })
}

func TestReconnectAfterDrop(t *testing.T) {
	t.Parallel()
	r := newRig(t, "recon-dev", nil, nil)
	r.open()
	r.fw.waitEvent(agentproto.EvResync, nil)
	if _, err := r.hub.UpdateDesired(r.id, twin.Section{"offline": true}); err != nil {
		t.Fatal(err)
	}
	from := r.fw.mark()
	if err := r.hub.Drop(r.id, true, "test drop"); err != nil {
		t.Fatal(err)
	}
	bo := decode[agentproto.ConnEvent](t, r.fw.waitEvent(agentproto.EvConn, connState(agentproto.StateBackoff), from).Data)
	if bo.NextMS <= 0 || bo.NextMS > 400 || bo.Attempt != 1 {
		t.Fatalf("backoff %+v", bo)
	}
	r.fw.waitEvent(agentproto.EvConn, connState(agentproto.StateConnected), from)
	rs := decode[agentproto.ResyncEvent](t, r.fw.waitEvent(agentproto.EvResync, nil, from).Data)
	if rs.DesiredVersion < 2 {
		t.Fatalf("resync %+v", rs)
	}
	// Whether or not the hub kept the session, the device is subscribed
	// after the reconnect and methods work.
	r.fw.must(agentproto.OpMethodDefine, agentproto.MethodBehaviour{Name: "*", Status: 200}, nil)
	if res, err := r.hub.InvokeMethod(r.ctx(), r.id, hub.MethodRequest{Name: "ping", Timeout: 10 * time.Second}); err != nil || res.Status != 200 {
		t.Fatalf("method after reconnect: %+v %v", res, err)
	}
}

func TestCleanSessionResubscribes(t *testing.T) {
	t.Parallel()
	clean := true
	r := newRig(t, "clean-dev", nil, func(c *agentproto.Config) { c.MQTT = &agentproto.MQTTConfig{CleanSession: &clean} })
	r.open()
	r.fw.waitEvent(agentproto.EvResync, nil)
	from := r.fw.mark()
	if err := r.hub.Drop(r.id, false, ""); err != nil {
		t.Fatal(err)
	}
	r.fw.waitEvent(agentproto.EvResync, nil, from)
	if subs := r.entries(isType(hub.DirIn, "SUBSCRIBE")); len(subs) != 2 {
		t.Fatalf("%d SUBSCRIBEs, want one per connection\n%s", len(subs), r.hub.TraceSummary(r.id.ClientID()))
	}
}

func TestTokenRenewal(t *testing.T) {
	t.Parallel()
	r := newRig(t, "renew-dev", nil, func(c *agentproto.Config) {
		c.Auth.TokenTTL = 3
		c.Auth.RenewFraction = 0.3
	})
	r.open()
	ev := decode[agentproto.CredsEvent](t, r.fw.waitEvent(agentproto.EvCreds, nil).Data)
	if ev.Kind != "sas-renewal" || ev.Expiry <= time.Now().Unix() {
		t.Fatalf("creds %+v", ev)
	}
	connects := r.entries(isType(hub.DirIn, "CONNECT"))
	if len(connects) < 2 {
		t.Fatalf("%d CONNECTs", len(connects))
	}
	// The renewal is a clean DISCONNECT before expiry, not a hub drop (RECON-006).
	r.entry("DISCONNECT", isType(hub.DirIn, "DISCONNECT"))
	for _, e := range r.entries(isType(hub.DirEvent, hub.EventConnClosed)) {
		if e.Requirement == "RECON-006" {
			t.Fatalf("hub dropped an expired session: %s\n%s\n%s", e.Reason, r.hub.TraceSummary(r.id.ClientID()), r.fw.dump())
		}
	}
}

func TestStopAfterNotAuthorized(t *testing.T) {
	t.Parallel()
	r := newRig(t, "auth-dev", nil, func(c *agentproto.Config) { c.Auth.Key = wrongKey(c.Auth.Key) })
	r.fw.must(agentproto.OpOpen, nil, nil)
	st := decode[agentproto.ConnEvent](t, r.fw.waitEvent(agentproto.EvConn, connState(agentproto.StateStopped)).Data)
	if !strings.Contains(st.Reason, "CONNACK 5") {
		t.Fatalf("stopped: %+v", st)
	}
	r.fw.must(agentproto.OpEcho, agentproto.EchoArgs{Data: "x"}, nil)
	if n := len(r.entries(isType(hub.DirIn, "CONNECT"))); n != 1 {
		t.Fatalf("%d CONNECTs after not-authorized, want 1 (RECON-004)", n)
	}
	if r.fw.countEvents(agentproto.EvConn, connState(agentproto.StateBackoff)) != 0 {
		t.Fatal("backoff after not-authorized")
	}
	// Rotating to the right key is a new chance.
	from := r.fw.mark()
	r.fw.must(agentproto.OpRotate, agentproto.RotateArgs{Key: r.key}, nil)
	r.fw.waitEvent(agentproto.EvConn, connState(agentproto.StateConnected), from)
	r.fw.waitEvent(agentproto.EvCreds, func(d json.RawMessage) bool { return decode[agentproto.CredsEvent](t, d).Kind == "key-rotated" })
}

func TestRotateKeyReconnects(t *testing.T) {
	t.Parallel()
	r := newRig(t, "rot-dev", nil, nil)
	r.open()
	d, _ := r.hub.Registry().Get(r.id)
	newKey := hub.NewKey()
	d.Authentication.SymmetricKey.PrimaryKey = newKey
	if _, _, err := r.hub.Registry().Put(d, "*"); err != nil {
		t.Fatal(err)
	}
	from := r.fw.mark()
	r.fw.must(agentproto.OpRotate, agentproto.RotateArgs{Key: newKey}, nil)
	r.fw.waitEvent(agentproto.EvConn, connState(agentproto.StateConnected), from)
	if n := len(r.entries(isType(hub.DirIn, "CONNECT"))); n != 2 {
		t.Fatalf("%d CONNECTs", n)
	}
}
