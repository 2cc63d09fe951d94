package suites

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/iothub"
	"github.com/hilrun/hilrun/rig/iothub/twin"
)

// Module identities (MOD-*) on SAS: the board is configured as a module of
// a fresh parent device (SessionOptions.ModuleID). MOD-001 and MOD-006 with
// X.509 are in x509.go.
var _ = Describe("module identities", func() {
	Conformance("a SAS module connects with ClientId {deviceId}/{moduleId} and Username {host}/{deviceId}/{moduleId}/?api-version=…", []string{"MOD-001", "MOD-002"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{ModuleID: "UserMod", NoOpen: true})
		m, connect := openForConnect(ctx, s)
		tr := hubSince(s, m)
		Expect(connect.ClientID).To(Equal(s.ID.ClientID()), "MOD-001: a module's ClientId is {deviceId}/{moduleId}\n%s", traceText(tr))
		want := fixtures.HubHost + "/" + s.ID.DeviceID + "/" + s.ID.ModuleID + "/?api-version="
		Expect(connect.Username).To(HavePrefix(want), "MOD-002: a module's Username is {hub FQDN}/{deviceId}/{moduleId}/?api-version=…\n%s", traceText(tr))
		Expect(strings.Count(connect.Username, "/?")).To(Equal(1), "MOD-002: one '/?' in the Username\n%s", traceText(tr))
		u := must(iothub.ParseUsername(connect.Username))
		Expect(u.APIVersion).NotTo(BeEmpty(), "MOD-002: the Username carries an api-version\n%s", traceText(tr))
		// Which api-version is CONN-006's matter (a SHOULD, with its own
		// spec); a hub warning about it does not fail MOD-001/MOD-002.
		expectAccepted(ctx, s, m, connect)
	})

	Conformance("a module's SAS token is scoped to {host}/devices/{deviceId}/modules/{moduleId} and verifies with the module key", []string{"MOD-003"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{ModuleID: "SasMod", NoOpen: true}, agentproto.CapSAS)
		m, connect := openForConnect(ctx, s)
		tr := hubSince(s, m)
		// The trace keeps the password with sig redacted: sr is read here,
		// the signature is judged by the hub below.
		fields := sasFields(connect.Password)
		Expect(fields).To(HaveKey("sr"), "MOD-003: the Password must be a SharedAccessSignature with sr\n%s", traceText(tr))
		Expect(fields).NotTo(HaveKey("skn"), "MOD-003: a token signed with the module's own key has no skn\n%s", traceText(tr))
		sr, err := url.QueryUnescape(fields["sr"])
		Expect(err).NotTo(HaveOccurred(), "MOD-003: sr must be URL-encoded\n%s", traceText(tr))
		host, path, _ := strings.Cut(sr, "/")
		want := "devices/" + s.ID.DeviceID + "/modules/" + s.ID.ModuleID
		Expect(strings.EqualFold(host, fixtures.HubHost) && path == want).To(BeTrue(),
			"MOD-003: sr must be the module resource {hub FQDN}/%s, got %q\n%s", want, sr, traceText(tr))
		// The hub checks sig against the keys of the identity in ClientId:
		// the module's, not the parent device's.
		expectAccepted(ctx, s, m, connect)
	})

	Conformance("a module's telemetry and any Will use devices/{deviceId}/modules/{moduleId}/messages/events/", []string{"MOD-004"}, func(ctx SpecContext) {
		// "Telemetry and any Will" (002 L13836-13837): the Will half only
		// for a board that registers Wills (capability will).
		o := fixtures.SessionOptions{ModuleID: "TelMod", NoOpen: true}
		if boardHas(agentproto.CapWill) {
			o.Will = &agentproto.Will{Payload: `{"will":"module"}`}
		}
		s := NewSession(ctx, o)
		m, connect := openForConnect(ctx, s)
		topic := iothub.TelemetryTopic(s.ID, nil)
		if o.Will != nil {
			Expect(connect.WillTopic).To(Equal(topic), "MOD-004: expected the module's Will topic to be its telemetry topic %s; seen %q\n%s", topic, connect.WillTopic, traceText(hubSince(s, m)))
		}
		expectAccepted(ctx, s, m, connect)
		waitBoardConnected(ctx, s, m)
		// The wire decides, not the call's result (a wrong topic closes the connection).
		_ = s.Call(ctx, agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: `{"probe":"mod-004"}`, Properties: map[string]string{"probe": "mod-004"}, Wait: true}, nil)
		pub := must(s.WaitTrace(ctx, m, "the module's telemetry PUBLISH", func(e hub.Entry) bool {
			return e.Dir == hub.DirIn && e.Type == "PUBLISH" && strings.HasPrefix(e.Topic, "devices/")
		}))
		tr := s.Trace(m)
		Expect(pub.Topic).To(HavePrefix(topic), "MOD-004: module telemetry goes to %s{property bag}\n%s", topic, traceText(tr))
		t := must(iothub.ParseTopic(pub.Topic))
		Expect(t.Kind == iothub.TopicTelemetry && t.Identity == s.ID).To(BeTrue(), "MOD-004: %q is not this module's telemetry topic\n%s", pub.Topic, traceText(tr))
		probe, _ := t.Properties.Get("probe")
		Expect(probe).To(Equal("mod-004"), "MOD-004: the property bag follows the module topic\n%s", traceText(tr))
		Expect(s.Violations(m)).To(BeEmpty(), "MOD-004: the hub closed the module's connection\n%s", traceText(tr))
		must(s.WaitTelemetry(ctx, m, func(msg hub.Message) bool { return msg.Identity == s.ID }))
	})

	Conformance("a module's twin runs on its own connection over the $iothub/twin topics: subscribed GET, desired patch, reported patch", []string{"MOD-005"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{ModuleID: "TwinMod"})
		get := must(s.WaitTrace(ctx, s.Start(), "the module's twin GET", twinPublishTo(twinGetPrefix)))
		tr := s.Trace(s.Start())
		// TWIN-001 asks only for the response filter before the first twin
		// request (002 L13936); the desired filter before the GET is
		// TWIN-010's start-up order (subscribe, then retrieve: 002
		// L12100-12104).
		Expect(twinSubackedBefore(tr, get, iothub.TwinResponseFilter)).To(BeTrue(),
			"MOD-005 (TWIN-001): on the module connection a SUBACK granting %s must precede the first twin request %s (002 L13936)\n%s", iothub.TwinResponseFilter, get.Topic, traceText(tr))
		Expect(twinSubackedBefore(tr, get, iothub.TwinDesiredFilter)).To(BeTrue(),
			"MOD-005 (TWIN-010): on the module connection a SUBACK granting %s must precede the twin GET %s (subscribe, then retrieve: 002 L12100-12104)\n%s", iothub.TwinDesiredFilter, get.Topic, traceText(tr))
		rid := twinRID(get.Topic)
		Expect(get.Topic).To(Equal(iothub.TwinGetTopic(rid)), "MOD-005 (TWIN-002): the module's GET uses the device twin topic $iothub/twin/GET/?$rid={rid} (002 L13936)\n%s", traceText(tr))
		Expect(get.PayloadLen).To(BeZero(), "MOD-005 (TWIN-002): expected an empty GET payload (002 L13936); seen %d bytes\n%s", get.PayloadLen, traceText(tr))
		twinResynced(ctx, s, s.Start())

		// A desired change of the module twin reaches the module connection.
		m := s.Mark()
		v := must(s.Env.Hub.UpdateDesired(s.ID, twin.Section{"modRate": 7}))
		must(s.WaitTrace(ctx, m, fmt.Sprintf("the desired patch $version=%d on the module connection", v), func(e hub.Entry) bool {
			return e.Dir == hub.DirOut && e.Type == "PUBLISH" && e.Topic == iothub.TwinDesiredTopic(v)
		}))
		twinDesiredEvent(ctx, s, m, v)

		// A reported patch lands in the module twin, not the device's.
		m = s.Mark()
		res, err := twinReport(ctx, s, map[string]any{"modFw": "2.0"})
		tr = s.Trace(m)
		Expect(err).NotTo(HaveOccurred(), "MOD-005: the module's reported patch must succeed\n%s", traceText(tr))
		p := must(s.WaitTrace(ctx, m, "the module's reported PATCH", twinPublishTo(twinReportedPrefix)))
		prid := twinRID(p.Topic)
		Expect(p.Topic).To(Equal(iothub.TwinReportedTopic(prid)), "MOD-005 (TWIN-006): PATCH topic\n%s", traceText(tr))
		resp := must(s.WaitTrace(ctx, m, "the hub's answer on $rid="+prid, twinAnswerTo(prid)))
		t := must(iothub.ParseTopic(resp.Topic))
		Expect(res).To(Equal(agentproto.ReportResult{Status: t.Status, Version: t.Version}),
			"MOD-005 (TWIN-008): the module reports the status and $version of the answer on its $rid (%s)\n%s", resp.Topic, traceText(s.Trace(m)))
		rep, _ := s.Env.Hub.ReportedOf(s.ID)
		Expect(rep).To(HaveKeyWithValue("modFw", "2.0"), "MOD-005: the module twin holds the reported property\n%s", traceText(s.Trace(m)))
		devRep, _ := s.Env.Hub.ReportedOf(iothub.Identity{DeviceID: s.ID.DeviceID})
		Expect(devRep).NotTo(HaveKey("modFw"), "MOD-005: the parent device's twin must not receive the module's patch")
	})

	Conformance("a module holds one connection of its own while its parent device is online too", []string{"MOD-007"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{ModuleID: "PairMod"})
		parent := iothub.Identity{DeviceID: s.ID.DeviceID}
		DeferCleanup(must(connectParent(ctx, s)))
		m := s.Mark()
		_ = s.Call(ctx, agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: `{"probe":"mod-007"}`, Wait: true}, nil)
		// Nothing else may happen to the module's connection: watch for a
		// close for the quiet period (this wait is expected to time out).
		qctx, cancel := context.WithTimeout(ctx, s.Env.Timing.Quiet)
		defer cancel()
		_ = s.Env.Hub.Wait(qctx, func() bool { return len(packets(s.Trace(m), hub.DirEvent, hub.EventConnClosed)) > 0 })
		tr := s.Trace(s.Start())
		connects := packets(tr, hub.DirIn, "CONNECT")
		for i := 1; i < len(connects); i++ {
			end := connEnd(tr, connects[i-1].ConnID)
			Expect(end != nil && end.Seq < connects[i].Seq).To(BeTrue(),
				"MOD-007: CONNECT #%d (connection %d) for %s came while connection %d of the same module was still up\n%s",
				connects[i].Seq, connects[i].ConnID, s.ID.ClientID(), connects[i-1].ConnID, traceText(tr))
		}
		for _, e := range tr {
			Expect(e.Type == hub.EventConnClosed && e.Requirement == "CONN-016").To(BeFalse(),
				"MOD-007: the hub closed module connection %d because another took over: %s\n%s", e.ConnID, e.Reason, traceText(tr))
		}
		Expect(acceptedConns(tr)).To(HaveLen(1), "MOD-007: the module keeps its single connection while its parent device is online\n%s", traceText(tr))
		Expect(s.Env.Hub.Connected(parent)).To(BeTrue(), "precondition: the parent device stays connected next to its module")
		msg := must(s.WaitTelemetry(ctx, m, nil))
		Expect(msg.ConnID).To(Equal(acceptedConns(tr)[0]), "MOD-007: the module's telemetry travels on its own connection\n%s", traceText(tr))
	})

	Conformance("mixed-case device and module IDs of up to 128 characters cross the wire unchanged", []string{"MOD-008"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{ModuleID: longMixedCaseID(iothub.MaxIDLength), NoOpen: true})
		m, connect := openForConnect(ctx, s)
		tr := hubSince(s, m)
		Expect(connect.ClientID).To(Equal(s.ID.ClientID()), "MOD-008: the ClientId must carry both IDs byte for byte (%d-character module ID)\n%s", len(s.ID.ModuleID), traceText(tr))
		u := must(iothub.ParseUsername(connect.Username))
		Expect(u.Identity).To(Equal(s.ID), "MOD-008: the Username must carry both IDs byte for byte\n%s", traceText(tr))
		if pw := sasFields(connect.Password); pw["sr"] != "" {
			sr, err := url.QueryUnescape(pw["sr"])
			Expect(err).NotTo(HaveOccurred(), "MOD-008: sr must be URL-encoded\n%s", traceText(tr))
			Expect(sr).To(HaveSuffix("/devices/"+s.ID.DeviceID+"/modules/"+s.ID.ModuleID), "MOD-008: sr must carry both IDs byte for byte\n%s", traceText(tr))
		}
		expectAccepted(ctx, s, m, connect)
		waitBoardConnected(ctx, s, m)
		_ = s.Call(ctx, agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: `{"probe":"mod-008"}`, Wait: true}, nil)
		pub := must(s.WaitTrace(ctx, m, "the module's telemetry PUBLISH", func(e hub.Entry) bool {
			return e.Dir == hub.DirIn && e.Type == "PUBLISH" && strings.HasPrefix(e.Topic, "devices/")
		}))
		Expect(pub.Topic).To(HavePrefix(iothub.TelemetryTopic(s.ID, nil)), "MOD-008: the telemetry topic must carry both IDs byte for byte\n%s", traceText(s.Trace(m)))
	})

	Conformance("a module receives direct methods over $iothub/methods/POST/# on its own connection and answers on $iothub/methods/res", []string{"MOD-009"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{ModuleID: "MethMod", NoOpen: true})
		defineMethod(ctx, s, agentproto.MethodBehaviour{Name: "modPing", Status: 200, Payload: `{"pong":"module"}`})
		Expect(s.Open(ctx)).To(Succeed())
		expectMethodsWildcardOnly(s, "MOD-009 (METH-001)")
		m := s.Mark()
		res, err := invokeMethod(ctx, s, hub.MethodRequest{Name: "modPing", Payload: []byte(`{"n":1}`)})
		Expect(err).NotTo(HaveOccurred(), "MOD-009: invoking modPing on the module: %v\n%s", err, traceText(s.Trace(m)))
		req := methodRequest(s, m, res.RID)
		Expect(req.Topic).To(Equal(iothub.MethodRequestTopic("modPing", res.RID)), "MOD-009\n%s", traceText(s.Trace(m)))
		resp := methodResponse(s, m, res.RID)
		Expect(resp.ConnID).To(Equal(req.ConnID), "MOD-009: the response goes out on the connection that got the request\n%s", traceText(s.Trace(m)))
		Expect(resp.Topic).To(Equal(iothub.MethodResponseTopic(200, res.RID)), "MOD-009 (METH-004): response topic\n%s", traceText(s.Trace(m)))
		var body map[string]any
		Expect(json.Unmarshal(resp.Payload, &body)).To(Succeed(), "MOD-009 (METH-005): the response body is JSON, got %q", resp.Payload)
		Expect(body).To(Equal(map[string]any{"pong": "module"}), "MOD-009: the handler's payload\n%s", traceText(s.Trace(m)))
	})

	Conformance("a module subscribes to no cloud-to-device filter", []string{"MOD-010"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{ModuleID: "NoC2DMod", NoOpen: true})
		m, connect := openForConnect(ctx, s)
		expectAccepted(ctx, s, m, connect)
		sub := must(s.WaitTrace(ctx, m, "the module's SUBSCRIBE", func(e hub.Entry) bool { return e.Dir == hub.DirIn && e.Type == "SUBSCRIBE" }))
		must(s.WaitTrace(ctx, m, "the hub's answer to the SUBSCRIBE (SUBACK or close)", func(e hub.Entry) bool {
			return e.ConnID == sub.ConnID && e.Seq > sub.Seq && (e.Type == "SUBACK" || e.Type == hub.EventConnClosed)
		}))
		tr := s.Trace(m)
		for _, e := range packets(tr, hub.DirIn, "SUBSCRIBE") {
			for _, f := range e.Filters {
				Expect(f.Filter).NotTo(ContainSubstring("/messages/devicebound"),
					"MOD-010: IoT Hub documents no cloud-to-device subscription for modules; SUBSCRIBE #%d asks for %q\n%s", e.Seq, f.Filter, traceText(tr))
			}
		}
		Expect(warnings(tr, "MOD-010")).To(BeEmpty(), "MOD-010: the hub objected\n%s", traceText(tr))
	})
})

// sasFields splits a CONNECT Password "SharedAccessSignature k=v&…" (as
// the trace keeps it, sig redacted) into its fields; nil for other
// passwords.
func sasFields(pw string) map[string]string {
	rest, ok := strings.CutPrefix(pw, "SharedAccessSignature ")
	if !ok {
		return nil
	}
	out := map[string]string{}
	for _, f := range strings.Split(rest, "&") {
		k, v, _ := strings.Cut(f, "=")
		out[k] = v
	}
	return out
}

// longMixedCaseID returns an ID of n characters mixing upper and lower
// case, so that case folding or truncation anywhere shows (MOD-008).
func longMixedCaseID(n int) string {
	const pattern = "CaseMod-AbCdEfGhIjKlMnOpQrStUvWxYz-0123456789-"
	var b strings.Builder
	for b.Len() < n {
		b.WriteString(pattern)
	}
	return b.String()[:n]
}

// parentClientType marks the parent device's CONNECT in the trace.
const parentClientType = "hilrun-parent/1.0"

// connectParent connects the session module's parent device from the rig
// (a second client dialling the hub directly, not through the board or
// the fault proxy) and returns the function that disconnects it. The
// parent's key comes from the registry and is never printed.
func connectParent(ctx context.Context, s *fixtures.Session) (func(), error) {
	parent := iothub.Identity{DeviceID: s.ID.DeviceID}
	dev, err := s.Env.Hub.Registry().Get(parent)
	if err != nil || dev.Authentication.SymmetricKey == nil {
		return nil, fmt.Errorf("parent device %s: no SAS registration (%v)", parent, err)
	}
	tok, err := iothub.NewSASToken(iothub.DeviceResourceURI(fixtures.HubHost, parent), dev.Authentication.SymmetricKey.PrimaryKey, time.Now().Add(time.Hour), "")
	if err != nil {
		return nil, fmt.Errorf("SAS token for the parent device: %v", err) // names no key material
	}
	tlsc := &tls.Config{ServerName: fixtures.HubHost, RootCAs: s.Env.Hub.RootCAs(), MinVersion: tls.VersionTLS12}
	user := iothub.FormatUsername(fixtures.HubHost, parent, iothub.DefaultAPIVersion, url.Values{"DeviceClientType": {parentClientType}})
	o := paho.NewClientOptions().AddBroker("ssl://" + s.Env.Hub.MQTTAddr()).SetClientID(parent.ClientID()).
		SetUsername(user).SetPassword(tok).SetProtocolVersion(4).SetTLSConfig(tlsc).SetCleanSession(true).
		SetAutoReconnect(false).SetConnectRetry(false).SetKeepAlive(60 * time.Second).
		SetConnectTimeout(s.Env.Timing.Connect).SetWriteTimeout(s.Env.Timing.Connect)
	cli := paho.NewClient(o)
	ct := cli.Connect()
	if !ct.WaitTimeout(s.Env.Timing.Connect) || ct.Error() != nil {
		cli.Disconnect(0)
		return nil, fmt.Errorf("the parent device %s could not connect from the rig: %v", parent, ct.Error())
	}
	wctx, cancel := context.WithTimeout(ctx, s.Env.Timing.Connect)
	defer cancel()
	if err := s.Env.Hub.WaitConnected(wctx, parent); err != nil {
		cli.Disconnect(0)
		return nil, fmt.Errorf("hub has no connection for the parent device %s: %v", parent, err)
	}
	return func() { cli.Disconnect(50) }, nil
}
