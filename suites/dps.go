package suites

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/certs"
	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/fixtures/catalog"
	"github.com/hilrun/hilrun/rig/dps"
	"github.com/hilrun/hilrun/rig/dpsproto"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/iothub"
)

// Device Provisioning Service over MQTT (DPS-*), against the reference DPS
// (rig/dps). The seeds describe the flow at API level only (000 L348-483);
// topics, Username, token scope and key derivation are the catalog's test
// assumptions [NS-4]. What cannot be observed here: the port the device
// would dial on its own (the rig hands it the endpoint's address; DPS-001
// judges the TLS and SNI of that connection), and whether the 60 s bound of
// the examples is kept by a device that never gets a final answer (DPS-006
// judges that a final answer ends the attempt).
var _ = Describe("device provisioning (DPS)", func() {
	Conformance("the device reaches the provisioning host over TLS with its name as SNI", []string{"DPS-001"}, func(ctx SpecContext) {
		ds := newDPS(ctx, fixtures.DPSOptions{Name: "dps001"})
		m := ds.Mark()
		res := must(ds.Register(ctx))
		conns := ds.DPSConnIDs(m)
		tr := ds.Env.Hub.Trace().Entries(func(e *hub.Entry) bool { return e.Seq > m.Trace && conns[e.ConnID] })
		var tlsE *hub.Entry
		for i, e := range tr {
			if e.Type == hub.EventTLSFailed {
				Fail(fmt.Sprintf("DPS-001: the TLS handshake with the provisioning endpoint failed (%s): TLS rules of CONN-002..004 (000 L32)\n%s", e.Reason, traceText(tr)))
			}
			if e.Type == hub.EventTLS && tlsE == nil {
				tlsE = &tr[i]
			}
		}
		Expect(tlsE).NotTo(BeNil(), "DPS-001: expected a TLS connection to the provisioning endpoint (000 L32, L365); seen none (register result %+v)\n%s", res, traceText(tr))
		Expect(tlsE.TLS.ServerName).To(Equal(fixtures.DPSHost), "DPS-001: the ClientHello names the provisioning host %s as SNI (000 L365, L372); seen %q\n%s", fixtures.DPSHost, tlsE.TLS.ServerName, traceText(tr))
		Expect(tlsE.TLS.Version).To(BeElementOf("TLS 1.2", "TLS 1.3"), "DPS-001 (CONN-004): TLS 1.2 or later (000 L32)\n%s", traceText(tr))
	})

	Conformance("the device abandons a provisioning handshake whose leaf names another host: no CONNECT, no credentials reach the endpoint", []string{"DPS-001"}, func(ctx SpecContext) {
		ds := newDPS(ctx, fixtures.DPSOptions{Name: "dps001h", TimeoutMS: 4000})
		d := ds.Env.DPS
		// Under the trusted root, for another host (CONN-003's rule, which DPS-001 applies).
		leaf := must(ds.Env.Hub.PKI().Intermediate.IssueServer(certs.LeafOptions{CommonName: "wrong-host.example.net", DNSNames: []string{"wrong-host.example.net"}}))
		old := d.ServerCertificate()
		d.SetServerCertificate(leaf.TLSCertificate())
		DeferCleanup(func() { d.SetServerCertificate(old) })
		m := ds.Mark()
		res := must(ds.Register(ctx))
		// The board's answer can come before the endpoint has recorded the
		// handshake it refused: wait for that entry (suites/cert_dps.go).
		certDPSWaitTLS(ctx, ds, m)
		conns := ds.DPSConnIDs(m)
		tr := ds.Env.Hub.Trace().Entries(func(e *hub.Entry) bool { return e.Seq > m.Trace && conns[e.ConnID] })
		Expect(conns).NotTo(BeEmpty(), "DPS-001: expected the device to open a TLS connection to the provisioning endpoint; result %+v", res)
		for _, e := range tr {
			Expect(e.Dir == hub.DirIn && e.Type == "CONNECT").To(BeFalse(), "DPS-001 (CONN-003): the server certificate names wrong-host.example.net, not %s: the device must abandon the handshake, yet it sent a CONNECT (000 L369-372)\n%s", fixtures.DPSHost, traceText(tr))
		}
		Expect(res.Status).NotTo(Equal(dpsproto.StatusAssigned), "DPS-001: no assignment over a connection to the wrong host")
	})

	Conformance("the DPS CONNECT uses ClientId = registration ID and Username {idScope}/registrations/{registrationId}/api-version=2019-03-31", []string{"DPS-002"}, func(ctx SpecContext) {
		ds := newDPS(ctx, fixtures.DPSOptions{Name: "dps002"})
		m := ds.Mark()
		res := must(ds.Register(ctx))
		tr := ds.DPSTrace(m)
		connect := dpsConnect(tr, res)
		Expect(connect.ClientID).To(Equal(ds.RegID), "DPS-002: ClientId is the registration ID (000 L354-359)\n%s", traceText(tr))
		u, err := dpsproto.ParseUsername(connect.Username)
		Expect(err).NotTo(HaveOccurred(), "DPS-002: Username %q is not {idScope}/registrations/{registrationId}/api-version=%s [NS-4]\n%s", connect.Username, dpsproto.APIVersion, traceText(tr))
		Expect(u.IDScope).To(Equal(ds.Env.DPS.IDScope()), "DPS-002: the Username starts with the ID scope (000 L357, L366)\n%s", traceText(tr))
		Expect(u.RegistrationID).To(Equal(ds.RegID), "DPS-002: the Username names the registration ID\n%s", traceText(tr))
		Expect(u.APIVersion).To(Equal(dpsproto.APIVersion), "DPS-002: api-version=%s [NS-4]\n%s", dpsproto.APIVersion, traceText(tr))
	})

	dpsSAS := func(ctx SpecContext, auth, req string) {
		ds := newDPS(ctx, fixtures.DPSOptions{Name: "dps003", Auth: auth}, agentproto.CapSAS)
		m := ds.Mark()
		res := must(ds.Register(ctx))
		tr := ds.DPSTrace(m)
		connect := dpsConnect(tr, res)
		f := sasFields(connect.Password)
		Expect(f).To(HaveKey("sr"), "%s: the Password is a SharedAccessSignature with sr (000 L359, L367)\n%s", req, traceText(tr))
		sr, err := url.QueryUnescape(f["sr"])
		Expect(err).NotTo(HaveOccurred(), "%s: sr is URL-encoded\n%s", req, traceText(tr))
		want := dpsproto.ResourceURI(ds.Env.DPS.IDScope(), ds.RegID)
		Expect(strings.EqualFold(sr, want)).To(BeTrue(), "%s: the token is scoped to %s [NS-4]; seen sr %q\n%s", req, want, sr, traceText(tr))
		Expect(f["skn"]).To(Equal(dpsproto.KeyName), "%s: the token names skn=%s, the policy of a registration token (NS-4; DPS MQTT support doc in device-sdk-behaviours.md §0); seen %q\n%s", req, dpsproto.KeyName, f["skn"], traceText(tr))
		v := dpsVerdict(tr, connect)
		Expect(v.Type).To(Equal(hub.EventConnOpened), "%s: the signature must verify with the %s (000 L359): the endpoint answered %s\n%s", req,
			map[bool]string{true: "key derived for the registration ID from the group key", false: "individual enrollment's key"}[auth == fixtures.DPSGroupSAS], v.Reason, traceText(tr))
	}
	Conformance("an individual enrollment's SAS token is scoped to {idScope}/registrations/{registrationId}, skn=registration, signed with the enrollment key", []string{"DPS-003"}, func(ctx SpecContext) {
		dpsSAS(ctx, fixtures.DPSIndividualSAS, "DPS-003")
	})
	Conformance("a group enrollment's SAS token is signed with the key derived for the registration ID (HMAC-SHA256 under the group key)", []string{"DPS-003"}, func(ctx SpecContext) {
		dpsSAS(ctx, fixtures.DPSGroupSAS, "DPS-003")
	})

	Conformance("the device subscribes $dps/registrations/res/# before it publishes the registration request with body {registrationId}", []string{"DPS-004"}, func(ctx SpecContext) {
		// A device that publishes before its SUBACK never gets the answer:
		// a short bound ends its attempt early.
		ds := newDPS(ctx, fixtures.DPSOptions{Name: "dps004", TimeoutMS: 4000})
		m := ds.Mark()
		res := must(ds.Register(ctx))
		tr := ds.DPSTrace(m)
		var put *hub.Entry
		subacked := false
		pending := map[uint16]bool{}
		for i, e := range tr {
			switch {
			case e.Dir == hub.DirIn && e.Type == "SUBSCRIBE":
				for _, f := range e.Filters {
					if f.Filter == dpsproto.ResponseFilter {
						pending[e.PacketID] = true
					}
				}
			case e.Dir == hub.DirOut && e.Type == "SUBACK" && pending[e.PacketID] && len(e.Granted) > 0 && e.Granted[0] < 0x80:
				subacked = true
			case e.Dir == hub.DirIn && e.Type == "PUBLISH" && strings.HasPrefix(e.Topic, dpsproto.RegisterPrefix) && put == nil:
				put = &tr[i]
				Expect(subacked).To(BeTrue(), "DPS-004: a SUBACK granting %s must precede the registration request %s (000 L402-410 [NS-4])\n%s", dpsproto.ResponseFilter, e.Topic, traceText(tr))
			}
		}
		Expect(put).NotTo(BeNil(), "DPS-004: expected a PUBLISH to %s$rid={rid}; seen none (result %+v)\n%s", dpsproto.RegisterPrefix, res, traceText(tr))
		req, err := dpsproto.ParseRequestTopic(put.Topic)
		Expect(err).NotTo(HaveOccurred(), "DPS-004: %v\n%s", err, traceText(tr))
		Expect(req.Kind).To(Equal(dpsproto.KindRegister), "DPS-004: the first request is the registration PUT\n%s", traceText(tr))
		body, err := dpsproto.ParseRegisterBody(put.Payload)
		Expect(err).NotTo(HaveOccurred(), "DPS-004: the body is {\"registrationId\":\"…\"} plus an optional payload (000 L479-481): %v; seen %q\n%s", err, put.Payload, traceText(tr))
		Expect(body.RegistrationID).To(Equal(ds.RegID), "DPS-004: registrationId in the body is the registration ID\n%s", traceText(tr))
	})

	Conformance("on a 202 the device waits retry-after seconds, then polls iotdps-get-operationstatus with the operationId it was given, until a final status", []string{"DPS-005"}, func(ctx SpecContext) {
		one := 1 // the shortest whole-second retry-after; two 202s: 2 s of real time in this spec
		ds := newDPS(ctx, fixtures.DPSOptions{Name: "dps005", RetryAfter: &one, Faults: dps.Faults{Polls: 1}})
		m := ds.Mark()
		res := must(ds.Register(ctx))
		tr := ds.DPSTrace(m)
		var last *hub.Entry // the latest 202 answer
		var lastOp dpsproto.Operation
		polls := 0
		for i, e := range tr {
			switch {
			case e.Dir == hub.DirOut && e.Type == "PUBLISH" && strings.HasPrefix(e.Topic, dpsproto.ResponsePrefix):
				r, err := dpsproto.ParseResponseTopic(e.Topic)
				if err == nil && r.Status == 202 {
					last = &tr[i]
					_ = json.Unmarshal(e.Payload, &lastOp)
				}
			case e.Dir == hub.DirIn && e.Type == "PUBLISH" && strings.HasPrefix(e.Topic, dpsproto.StatusPrefix):
				polls++
				Expect(last).NotTo(BeNil(), "DPS-005: a status poll before any 202 answer\n%s", traceText(tr))
				r := must(dpsproto.ParseResponseTopic(last.Topic))
				gap := e.Time.Sub(last.Time)
				Expect(gap >= time.Duration(r.RetryAfter)*time.Second).To(BeTrue(),
					"DPS-005: the poll %s came %s after the 202 answer %s, before its retry-after=%d s [NS-4]\n%s", e.Topic, gap.Round(time.Millisecond), last.Topic, r.RetryAfter, traceText(tr))
				req, err := dpsproto.ParseRequestTopic(e.Topic)
				Expect(err).NotTo(HaveOccurred(), "DPS-005: poll topic %q: %v\n%s", e.Topic, err, traceText(tr))
				Expect(req.OperationID).To(Equal(lastOp.OperationID), "DPS-005: the poll names the operationId of the 202 body\n%s", traceText(tr))
				last = nil
			}
		}
		Expect(polls).To(BeNumerically(">=", 2), "DPS-005: expected a poll after each of the two 202 answers; seen %d (result %+v)\n%s", polls, res, traceText(tr))
		Expect(res.Status).To(Equal(dpsproto.StatusAssigned), "DPS-005: polling ends with the final status (assigned); the device reported %+v\n%s", res, traceText(tr))
	})

	Conformance("an assigned result leads to a hub connection with the returned hub host and device ID", []string{"DPS-006"}, func(ctx SpecContext) {
		ds := newDPS(ctx, fixtures.DPSOptions{Name: "dps006"})
		m := ds.Mark()
		res := must(ds.Register(ctx))
		Expect(res.Status).To(Equal(dpsproto.StatusAssigned), "DPS-006: expected assigned; the device reported %+v (000 L375)\n%s", res, traceText(ds.DPSTrace(m)))
		Expect(res.AssignedHub).To(Equal(fixtures.HubHost), "DPS-006: the device reports the assigned hub (000 L382)")
		Expect(res.DeviceID).To(Equal(ds.DeviceID), "DPS-006: the device reports the assigned device ID (000 L382)")
		hm := ds.Mark()
		must(0, ds.Call(ctx, agentproto.OpOpen, nil, nil))
		dpsConns := ds.DPSConnIDs(m)
		connect := must(waitHub(ctx, ds.Session, hm, "the board's CONNECT at the hub", func(e hub.Entry) bool {
			return e.Dir == hub.DirIn && e.Type == "CONNECT" && !dpsConns[e.ConnID]
		}))
		tr := hubSince(ds.Session, hm)
		Expect(connect.ClientID).To(Equal(ds.DeviceID), "DPS-006: the hub CONNECT uses the assigned device ID %q, not %q (000 L382)\n%s", ds.DeviceID, connect.ClientID, traceText(tr))
		u, err := iothub.ParseUsername(connect.Username)
		Expect(err == nil && strings.EqualFold(u.Host, res.AssignedHub)).To(BeTrue(), "DPS-006: the Username names the assigned hub %s; seen %q\n%s", res.AssignedHub, connect.Username, traceText(tr))
		if t := tlsOf(tr, connect.ConnID); t != nil {
			Expect(t.TLS.ServerName).To(Equal(res.AssignedHub), "DPS-006: the hub connection's SNI is the assigned hub\n%s", traceText(tr))
		}
		expectAccepted(ctx, ds.Session, hm, connect)
		fixtures.NoteFact(fixtures.FactDPS, "individual SAS enrollment", fmt.Sprintf("registration %s assigned to %s as device %s", ds.RegID, res.AssignedHub, res.DeviceID), true)
	})

	dpsFinal := func(ctx SpecContext, o fixtures.DPSOptions, want string) {
		o.TimeoutMS = 4000 // the device's bound; a client that keeps polling is caught at its next poll
		ds := newDPS(ctx, o)
		m := ds.Mark()
		type out struct {
			res agentproto.DPSResult
			err error
		}
		wctx, cancel := context.WithTimeout(ctx, time.Duration(o.TimeoutMS)*time.Millisecond+ds.Env.Timing.Op)
		defer cancel()
		// The wait ends on a poll after the final answer (seen in the
		// trace) or on the device's result (which cancels it).
		waitCtx, answered := context.WithCancel(wctx)
		var result atomic.Pointer[out]
		finished := make(chan struct{})
		go func() {
			defer GinkgoRecover()
			defer close(finished)
			r, err := ds.Register(context.WithoutCancel(ctx))
			result.Store(&out{r, err})
			answered()
		}()
		DeferCleanup(func() { <-finished }) // the call ends within the device's bound
		var finalAt, repoll *hub.Entry
		_ = ds.Env.Hub.Wait(waitCtx, func() bool {
			tr := ds.DPSTrace(m)
			for i, e := range tr {
				if finalAt == nil && e.Dir == hub.DirOut && e.Type == "PUBLISH" && strings.HasPrefix(e.Topic, dpsproto.ResponsePrefix+"200/") {
					finalAt = &tr[i]
				}
				if finalAt != nil && e.Seq > finalAt.Seq && e.Dir == hub.DirIn && e.Type == "PUBLISH" && strings.HasPrefix(e.Topic, dpsproto.StatusPrefix) {
					repoll = &tr[i]
				}
			}
			return repoll != nil
		})
		if repoll == nil && result.Load() == nil {
			<-waitCtx.Done()
		}
		got := result.Load()
		tr := ds.DPSTrace(m)
		Expect(finalAt).NotTo(BeNil(), "DPS-006: expected the endpoint's final 200 answer (status %s)\n%s", want, traceText(tr))
		Expect(repoll).To(BeNil(), "DPS-006: the final answer (status %s) ends the attempt; the device polled again (%s) instead of reporting it (000 L375-378)\n%s", want, topicOf(repoll), traceText(tr))
		Expect(got).NotTo(BeNil(), "DPS-006: the device did not report the outcome within its bound of %d ms after the final answer (000 L373)\n%s", o.TimeoutMS, traceText(tr))
		Expect(got.err).NotTo(HaveOccurred(), "DPS-006: dps.register")
		Expect(got.res.Status).To(Equal(want), "DPS-006: the outcome is reported with its status (000 L377); seen %+v\n%s", got.res, traceText(tr))
		Expect(got.res.ErrorMessage).NotTo(BeEmpty(), "DPS-006: the outcome is reported with its error message (000 L377); seen %+v", got.res)
		dpsConns := ds.DPSConnIDs(m)
		for _, e := range hubSince(ds.Session, m) {
			Expect(e.Dir == hub.DirIn && e.Type == "CONNECT" && !dpsConns[e.ConnID]).To(BeFalse(),
				"DPS-006: only an assigned result leads to a hub connection (000 L375-379); after %s the board sent a hub CONNECT as %q\n%s", want, e.ClientID, traceText(hubSince(ds.Session, m)))
		}
	}
	Conformance("a failed result is reported with its status and error and ends the attempt: no further polls, no hub connection", []string{"DPS-006"}, func(ctx SpecContext) {
		dpsFinal(ctx, fixtures.DPSOptions{Name: "dps006f", Faults: dps.Faults{FailWith200: true}}, dpsproto.StatusFailed)
	})
	Conformance("a disabled enrollment is reported as disabled with its error and ends the attempt", []string{"DPS-006"}, func(ctx SpecContext) {
		dpsFinal(ctx, fixtures.DPSOptions{Name: "dps006d", Disabled: true}, dpsproto.StatusDisabled)
	})

	Conformance("with X.509 the same device certificate and chain are presented at DPS and at the hub", []string{"DPS-007"}, func(ctx SpecContext) {
		ds := newDPS(ctx, fixtures.DPSOptions{Name: "dps007", Auth: fixtures.DPSGroupX509}, agentproto.CapX509)
		m := ds.Mark()
		res := must(ds.Register(ctx))
		dtr := ds.DPSTrace(m)
		Expect(res.Status).To(Equal(dpsproto.StatusAssigned), "DPS-007: registering with the device certificate and its chain (000 L424-430): the device reported %+v\n%s", res, traceText(dtr))
		var atDPS *hub.Entry
		for i, e := range dtr {
			if e.Type == hub.EventTLS && e.TLS != nil {
				atDPS = &dtr[i]
			}
		}
		Expect(atDPS).NotTo(BeNil(), "DPS-007: the DPS TLS handshake\n%s", traceText(dtr))
		hm := ds.Mark()
		must(0, ds.Open(ctx))
		htr := ds.Trace(hm)
		var atHub *hub.Entry
		for i, e := range htr {
			if e.Type == hub.EventTLS && e.TLS != nil {
				atHub = &htr[i]
			}
		}
		Expect(atHub).NotTo(BeNil(), "DPS-007: the hub TLS handshake\n%s", traceText(htr))
		Expect(atHub.TLS.ClientCertThumbprint).To(Equal(atDPS.TLS.ClientCertThumbprint), "DPS-007: the same device certificate at DPS and at the hub (000 L457-469)\n%s\n%s", traceText(dtr), traceText(htr))
		Expect(atHub.TLS.ClientCertChainLen).To(Equal(atDPS.TLS.ClientCertChainLen), "DPS-007: the same chain at DPS (%d certificates) and at the hub (%d) (000 L430)", atDPS.TLS.ClientCertChainLen, atHub.TLS.ClientCertChainLen)
	})

	Conformance("custom registration data is sent as JSON in the registration payload and returned data is accepted", []string{"DPS-008"}, func(ctx SpecContext) {
		custom := json.RawMessage(`{"hilrun":{"spec":"dps-008","n":8}}`)
		back := json.RawMessage(`{"welcome":"dps-008"}`)
		ds := newDPS(ctx, fixtures.DPSOptions{Name: "dps008", Payload: custom, ReturnPayload: back})
		m := ds.Mark()
		res := must(ds.Register(ctx))
		tr := ds.DPSTrace(m)
		put := dpsRegisterPublish(tr)
		body, err := dpsproto.ParseRegisterBody(put.Payload)
		Expect(err).NotTo(HaveOccurred(), "DPS-008: %v\n%s", err, traceText(tr))
		Expect(jsonValue(body.Payload)).To(Equal(jsonValue(custom)), "DPS-008: the payload member carries the custom data as JSON (000 L481); seen %s\n%s", body.Payload, traceText(tr))
		Expect(res.Status).To(Equal(dpsproto.StatusAssigned), "DPS-008: registration with custom data is assigned; the device reported %+v", res)
		Expect(jsonValue(res.Payload)).To(Equal(jsonValue(back)), "DPS-008: the custom data returned with the assignment is accepted and handed to the application (000 L481); seen %s", res.Payload)
	})
})

// newDPS starts a provisioning session, skipping the spec as not
// applicable when the board lacks a capability its requirements need.
func newDPS(ctx context.Context, o fixtures.DPSOptions, extra ...string) *fixtures.DPSSession {
	GinkgoHelper()
	e := env
	Expect(e).NotTo(BeNil(), "suites.Run sets up the environment")
	needs := append([]string{agentproto.CapDPS}, extra...)
	cat := catalog.MustLoad()
	for _, l := range CurrentSpecReport().Labels() {
		if r, ok := cat.Get(l); ok && r.Capability != "" {
			needs = append(needs, r.Capability)
		}
	}
	for _, c := range needs {
		if !boardHas(c) {
			Skip(notApplicable + "board does not declare capability " + c)
		}
	}
	if e.DPS == nil {
		PreconditionUnmet("no reference DPS in this run (the hub has no PKI to issue its certificate)")
	}
	ds, err := e.NewDPSSession(ctx, o)
	if ds != nil && ds.Session != nil {
		current = ds.Session
		s := ds.Session
		DeferCleanup(func(ctx SpecContext) { s.Close(ctx) })
	}
	if err != nil {
		if isUnsupported(err) {
			Fail(fmt.Sprintf("DPS session setup: the board declares %v but answered %v", needs, err))
		}
		Fail("DPS session setup: " + err.Error())
	}
	return ds
}

// dpsConnect is the first CONNECT of the registration's DPS trace.
func dpsConnect(tr []hub.Entry, res agentproto.DPSResult) hub.Entry {
	GinkgoHelper()
	for _, e := range tr {
		if e.Dir == hub.DirIn && e.Type == "CONNECT" {
			return e
		}
	}
	Fail(fmt.Sprintf("expected a CONNECT at the provisioning endpoint; seen none (result %+v)\n%s", res, traceText(tr)))
	return hub.Entry{}
}

// dpsVerdict is the endpoint's decision on connect: conn-opened or conn-rejected.
func dpsVerdict(tr []hub.Entry, connect hub.Entry) hub.Entry {
	for _, e := range tr {
		if e.ConnID == connect.ConnID && (e.Type == hub.EventConnOpened || e.Type == hub.EventConnRejected) {
			return e
		}
	}
	return hub.Entry{Type: "none", Reason: "no decision traced"}
}

// dpsRegisterPublish is the first registration request in tr.
func dpsRegisterPublish(tr []hub.Entry) hub.Entry {
	GinkgoHelper()
	for _, e := range tr {
		if e.Dir == hub.DirIn && e.Type == "PUBLISH" && strings.HasPrefix(e.Topic, dpsproto.RegisterPrefix) {
			return e
		}
	}
	Fail("expected the registration request PUBLISH to " + dpsproto.RegisterPrefix + "…\n" + traceText(tr))
	return hub.Entry{}
}

func topicOf(e *hub.Entry) string {
	if e == nil {
		return ""
	}
	return e.Topic
}
