package suites

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/certs"
	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/rig/agent"
	"github.com/hilrun/hilrun/rig/awsiot"
	"github.com/hilrun/hilrun/rig/awsproto"
	"github.com/hilrun/hilrun/rig/hub"
)

// AWS IoT Core (catalog area AWS, seed 001 nanoFramework.Aws.IoTCore.
// Devices). These specs run only for boards whose hello declares `aws`,
// against the reference AWS IoT endpoint (rig/awsiot): `hilrun run
// --cloud aws`. The endpoint's own root stands in for Amazon Root CA 1
// and its ATS-style name for the account endpoint.

var _ = Describe("AWS IoT Core", func() {
	Conformance("connects with MQTT over TLS to port 8883", []string{"AWS-001"}, func(ctx SpecContext) {
		s := NewAWSSession(ctx, fixtures.AWSSessionOptions{NoOpen: true})
		err := s.Open(ctx)
		tr := s.Trace(s.Start())
		for _, e := range tr {
			if e.Type == hub.EventPlaintext {
				Fail("AWS-001 (001 L7, L38–42): the device sent MQTT in plaintext to the TLS port; AWS IoT takes MQTT only over TLS on 8883\n" + awsTrace(s))
			}
		}
		Expect(err).NotTo(HaveOccurred(), "AWS-001 (001 L7, L38–42): expected a TLS connection carrying MQTT; the device did not connect: %v", err)
		var tlsConn uint64
		for _, e := range tr {
			if e.Type == hub.EventTLS && e.TLS != nil && (e.TLS.Version == "TLS 1.2" || e.TLS.Version == "TLS 1.3") {
				tlsConn = e.ConnID
			}
			if e.Type == "CONNECT" && e.Dir == hub.DirIn {
				Expect(e.ConnID).To(Equal(tlsConn), "AWS-001 (001 L7, L38–42): expected CONNECT inside a TLS 1.2+ session; seen CONNECT on connection %d, TLS on %d\n%s", e.ConnID, tlsConn, awsTrace(s))
				Expect(e.ProtoLevel).To(BeElementOf(byte(4), byte(5)), "AWS-001 (001 L7): MQTT 3.1.1 or 5 expected, seen protocol level %d", e.ProtoLevel)
				return
			}
		}
		Fail("AWS-001 (001 L7, L38–42): no CONNECT seen at the endpoint\n" + awsTrace(s))
	})

	awsMutualTLS := func(ctx SpecContext, selfSigned bool) {
		s := NewAWSSession(ctx, fixtures.AWSSessionOptions{SelfSigned: selfSigned, NoOpen: true})
		err := s.Open(ctx)
		tr := s.Trace(s.Start())
		Expect(err).NotTo(HaveOccurred(), "AWS-002 (001 L107, L113): expected the device to connect with its X.509 thing certificate (mutual TLS); it did not: %v", err)
		want := certs.Thumbprint(s.Cert.Cert)
		var ok bool
		for _, e := range awsTLS(tr) {
			if e.Type == hub.EventTLS && e.TLS.ClientCertThumbprint == want {
				ok = true
			}
		}
		Expect(ok).To(BeTrue(), "AWS-002 (001 L107, L113): expected a TLS handshake presenting the thing certificate %s; none seen\n%s", want[:16], awsTrace(s))
		for _, e := range tr {
			if e.Type == "CONNECT" && e.Dir == hub.DirIn {
				Expect(e.Username+e.Password).To(BeEmpty(), "AWS-002 (001 L107, L113): authentication is the certificate; CONNECT carried username %q / password facts %q (IAM credentials are not offered)", e.Username, e.Password)
			}
		}
	}
	Conformance("authenticates with mutual TLS: a thing certificate issued by a registered CA", []string{"AWS-002"}, func(ctx SpecContext) {
		awsMutualTLS(ctx, false)
	})
	Conformance("authenticates with mutual TLS: a registered self-signed thing certificate", []string{"AWS-002"}, func(ctx SpecContext) {
		awsMutualTLS(ctx, true)
	})

	Conformance("refuses a server chain that does not lead to the trusted root", []string{"AWS-003"}, func(ctx SpecContext) {
		s := NewAWSSession(ctx, fixtures.AWSSessionOptions{NoOpen: true})
		ep := s.Env.AWS
		other, err := certs.NewHubPKIWithNames(fixtures.AWSHost, certs.ECDSAP256, "localhost")
		Expect(err).NotTo(HaveOccurred())
		orig := ep.ServerCertificate()
		ep.SetServerCertificate(other.ServerTLSCertificate())
		DeferCleanup(func() { ep.SetServerCertificate(orig) })
		m := s.Mark()
		Expect(s.Call(ctx, agentproto.OpOpen, nil, nil)).To(Succeed())
		// One failed attempt is enough: the device reports it with a backoff (or a stop).
		_, err = s.WaitEvent(ctx, m, agentproto.EvConn, func(e agent.Event) bool {
			var c agentproto.ConnEvent
			return e.Decode(&c) == nil && (c.State == agentproto.StateBackoff || c.State == agentproto.StateStopped || c.State == agentproto.StateConnected)
		})
		Expect(err).NotTo(HaveOccurred(), "AWS-003 (001 L53, L60–79): expected the device to report its connection attempt; no conn event")
		for _, e := range s.Trace(m) {
			Expect(e.Type == "CONNECT" && e.Dir == hub.DirIn).To(BeFalse(),
				"AWS-003 (001 L53, L60–79): the server chain led to a root the device was not given (the endpoint's root stands in for Amazon Root CA 1), yet it sent CONNECT: it does not validate the chain\n%s", awsTrace(s))
		}
	})

	Conformance("connects to the account's ATS endpoint (SNI)", []string{"AWS-004"}, func(ctx SpecContext) {
		s := NewAWSSession(ctx, fixtures.AWSSessionOptions{NoOpen: true})
		err := s.Open(ctx)
		hs := awsTLS(s.Trace(s.Start()))
		Expect(hs).NotTo(BeEmpty(), "AWS-004 (001 L111): no TLS handshake seen at the endpoint: %s\n%s", describeErr(err), awsTrace(s))
		for _, e := range hs {
			Expect(awsproto.IsATSEndpoint(e.TLS.ServerName)).To(BeTrue(),
				"AWS-004 (001 L111): expected SNI `<account>-ats.iot.<region>.amazonaws.com` (configured %s); seen %q", fixtures.AWSHost, e.TLS.ServerName)
			Expect(strings.EqualFold(e.TLS.ServerName, fixtures.AWSHost)).To(BeTrue(), "AWS-004 (001 L111): expected SNI %s, the configured endpoint; seen %q", fixtures.AWSHost, e.TLS.ServerName)
		}
		Expect(err).NotTo(HaveOccurred(), "AWS-004 (001 L111): the device did not connect to the ATS endpoint: %v", err)
	})

	Conformance("uses the thing name as MQTT ClientId", []string{"AWS-005"}, func(ctx SpecContext) {
		s := NewAWSSession(ctx, fixtures.AWSSessionOptions{NoOpen: true})
		err := s.Open(ctx)
		var ids []string
		for _, e := range s.Trace(s.Start()) {
			if e.Type == "CONNECT" && e.Dir == hub.DirIn {
				ids = append(ids, e.ClientID)
			}
		}
		Expect(ids).NotTo(BeEmpty(), "AWS-005 (001 L110, L114): no CONNECT seen: %s\n%s", describeErr(err), awsTrace(s))
		for _, id := range ids {
			Expect(id).To(Equal(s.Thing), "AWS-005 (001 L110, L114): expected ClientId = thing name %q; seen %q\n%s", s.Thing, id, awsTrace(s))
		}
		Expect(err).NotTo(HaveOccurred(), "AWS-005 (001 L110, L114): the device did not connect: %v", err)
	})

	Conformance("publishes telemetry at the configured QoS 1 or 0; a QoS 0 send is not acknowledged", []string{"AWS-006"}, func(ctx SpecContext) {
		one, zero := 1, 0
		s := NewAWSSession(ctx, fixtures.AWSSessionOptions{QoS: &one})
		topic := awsproto.DefaultTelemetryTopic(s.Thing)
		m := s.Mark()
		var r agentproto.TelemetryResult
		Expect(s.Call(ctx, agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: `{"t":1}`, Wait: true}, &r)).To(Succeed())
		p, err := s.WaitTrace(ctx, m, "telemetry PUBLISH on "+topic, func(e hub.Entry) bool {
			return e.Dir == hub.DirIn && e.Type == "PUBLISH" && e.Topic == topic
		})
		Expect(err).NotTo(HaveOccurred(), "AWS-006 (001 L81, L114, L175): %v", err)
		Expect(p.QoS).To(Equal(byte(1)), "AWS-006 (001 L81, L114, L175): the client was constructed with QoS 1 (AtLeastOnce); telemetry went out at QoS %d\n%s", p.QoS, awsTrace(s))
		Expect(r.Acked).To(BeTrue(), "AWS-006 (001 L168–173): a QoS 1 send waited for is confirmed by its PUBACK; the device reported acked=false (%s)", r.Error)

		cfg := s.Config(fixtures.AWSSessionOptions{QoS: &zero})
		Expect(s.Call(ctx, agentproto.OpClose, agentproto.CloseArgs{Graceful: true}, nil)).To(Succeed())
		Expect(s.Call(ctx, agentproto.OpConfigure, cfg, nil)).To(Succeed())
		Expect(s.Open(ctx)).To(Succeed())
		m = s.Mark()
		r = agentproto.TelemetryResult{}
		Expect(s.Call(ctx, agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: `{"t":0}`, Wait: true}, &r)).To(Succeed())
		p, err = s.WaitTrace(ctx, m, "telemetry PUBLISH on "+topic, func(e hub.Entry) bool {
			return e.Dir == hub.DirIn && e.Type == "PUBLISH" && e.Topic == topic
		})
		Expect(err).NotTo(HaveOccurred(), "AWS-006 (001 L175): %v", err)
		Expect(p.QoS).To(Equal(byte(0)), "AWS-006 (001 L81, L175): the client was constructed with QoS 0; telemetry went out at QoS %d", p.QoS)
		Expect(r.Acked).To(BeFalse(), "AWS-006 (001 L175): \"You won't get any answer for the quality 0\"; the device reported the QoS 0 send as acknowledged")
		for _, e := range s.Trace(s.Start()) {
			if e.Dir == hub.DirIn && e.Type == "PUBLISH" {
				Expect(e.QoS).To(BeNumerically("<=", 1), "AWS-006 (NS-5): AWS IoT supports QoS 0 and 1 only; PUBLISH on %s at QoS %d", e.Topic, e.QoS)
			}
		}
	})

	Conformance("fetches the shadow with an empty get, reads accepted / rejected, waits a bounded time", []string{"AWS-007"}, func(ctx SpecContext) {
		s := NewAWSSession(ctx, fixtures.AWSSessionOptions{})
		ep := s.Env.AWS
		_, err := ep.UpdateShadow(s.Thing, "", []byte(`{"state":{"desired":{"color":"red"},"reported":{"fw":"1.0"}}}`))
		Expect(err).NotTo(HaveOccurred())
		_, err = ep.UpdateShadow(s.Thing, "", []byte(`{"state":{"desired":{"color":"blue"}}}`))
		Expect(err).NotTo(HaveOccurred())
		want := ep.Shadow(s.Thing, "").Version
		m := s.Mark()
		var r agentproto.ShadowResult
		Expect(s.Call(ctx, agentproto.OpShadowGet, agentproto.ShadowArgs{}, &r)).To(Succeed(), "AWS-007 (001 L120–138): shadow get")
		getTopic := awsproto.ShadowTopic(s.Thing, "", awsproto.OpGet, "")
		p, err := s.WaitTrace(ctx, m, "PUBLISH on "+getTopic, func(e hub.Entry) bool { return e.Dir == hub.DirIn && e.Type == "PUBLISH" && e.Topic == getTopic })
		Expect(err).NotTo(HaveOccurred(), "AWS-007 (001 L120–138, NS-5): %v", err)
		Expect(p.PayloadLen).To(BeZero(), "AWS-007 (NS-5): the get request is an empty message; seen %d bytes %q", p.PayloadLen, p.Payload)
		Expect(r.Status).To(Equal(200), "AWS-007 (001 L120–133): get/accepted expected to reach the application; result %+v", r)
		Expect(r.Version).To(Equal(want), "AWS-007 (001 L120–133): the document from get/accepted has version %d; the device reports %d", want, r.Version)
		Expect(r.Desired["color"]).To(Equal("blue"), "AWS-007 (001 L133): desired state of the fetched document not held: %v", r.Desired)

		_, err = ep.UpdateShadow(s.Thing, "cfg", []byte(`{"state":{"desired":{"rate":10}}}`))
		Expect(err).NotTo(HaveOccurred())
		r = agentproto.ShadowResult{}
		Expect(s.Call(ctx, agentproto.OpShadowGet, agentproto.ShadowArgs{Name: "cfg"}, &r)).To(Succeed(), "AWS-007 (NS-5): get of named shadow cfg")
		Expect(r.Status).To(Equal(200), "AWS-007 (NS-5): `…/shadow/name/cfg/get/accepted` expected to reach the application; result %+v", r)
		Expect(r.Desired["rate"]).To(BeNumerically("==", 10), "AWS-007 (NS-5): desired state of named shadow cfg not held: %v", r.Desired)

		r = agentproto.ShadowResult{}
		Expect(s.Call(ctx, agentproto.OpShadowGet, agentproto.ShadowArgs{Name: "absent"}, &r)).To(Succeed(), "AWS-007 (001 L126–131): get of a named shadow")
		Expect(r.Status).To(Equal(404), "AWS-007 (001 L126–131): the endpoint answered get/rejected 404 for a shadow that does not exist; the device reports %+v", r)

		ep.SilenceShadow(s.Thing, true)
		DeferCleanup(func() { ep.SilenceShadow(s.Thing, false) })
		start := time.Now()
		err = s.Call(ctx, agentproto.OpShadowGet, agentproto.ShadowArgs{}, nil)
		ae, ok := fixtures.IsDeviceError(err)
		Expect(ok && ae.Code == agentproto.ErrTimeout).To(BeTrue(), "AWS-007 (001 L125, L136): with no answer the get must give up within its bound (timeout); got %v after %s", err, time.Since(start).Round(time.Millisecond))
	})

	Conformance("sends reported state as {\"state\":{\"reported\":…}} and observes accepted / rejected", []string{"AWS-008"}, func(ctx SpecContext) {
		s := NewAWSSession(ctx, fixtures.AWSSessionOptions{})
		upd := awsproto.ShadowTopic(s.Thing, "", awsproto.OpUpdate, "")
		m := s.Mark()
		var r agentproto.ShadowResult
		rep := map[string]any{"firmware": "myNano", "sdk": 0.2}
		Expect(s.Call(ctx, agentproto.OpShadowUpdate, agentproto.ShadowUpdateArgs{Reported: rep}, &r)).To(Succeed(), "AWS-008 (001 L140–153): reported update")
		p, err := s.WaitTrace(ctx, m, "PUBLISH on "+upd, func(e hub.Entry) bool { return e.Dir == hub.DirIn && e.Type == "PUBLISH" && e.Topic == upd })
		Expect(err).NotTo(HaveOccurred(), "AWS-008 (001 L140–149): %v", err)
		doc := awsDoc(p.Payload)
		Expect(doc).NotTo(BeNil(), "AWS-008 (001 L140–149): the update document is not a JSON object: %q", p.Payload)
		st, _ := doc["state"].(map[string]any)
		Expect(jsonEq(st["reported"], rep)).To(BeTrue(), "AWS-008 (001 L144–149): expected {\"state\":{\"reported\":%v}}; seen %s", rep, p.Payload)
		Expect(r.Status).To(Equal(200), "AWS-008 (001 L151–153): the endpoint answered update/accepted; the device reports %+v", r)
		sh := s.Env.AWS.Shadow(s.Thing, "")
		Expect(sh != nil && jsonEq(sh.Reported, rep)).To(BeTrue(), "AWS-008 (001 L148): the shadow's reported state is not what the device sent")

		stale := int64(0)
		r = agentproto.ShadowResult{}
		Expect(s.Call(ctx, agentproto.OpShadowUpdate, agentproto.ShadowUpdateArgs{Reported: map[string]any{"sdk": 0.3}, Version: &stale}, &r)).To(Succeed(), "AWS-008: conditional update")
		Expect(r.Status).To(Equal(409), "AWS-008 (001 L151–153): an update naming stale version 0 is answered update/rejected 409; the device reports %+v", r)
	})

	Conformance("delivers desired-state deltas to the application", []string{"AWS-009"}, func(ctx SpecContext) {
		s := NewAWSSession(ctx, fixtures.AWSSessionOptions{})
		m := s.Mark()
		_, err := s.Env.AWS.UpdateShadow(s.Thing, "", []byte(`{"state":{"desired":{"led":"on","rate":5}}}`))
		Expect(err).NotTo(HaveOccurred())
		want := s.Env.AWS.Shadow(s.Thing, "").Version
		ev, err := s.WaitEvent(ctx, m, agentproto.EvShadowDelta, func(agent.Event) bool { return true })
		Expect(err).NotTo(HaveOccurred(), "AWS-009 (001 L155–164): the endpoint published update/delta; no delta reached the application: %v\n%s", err, awsTrace(s))
		var d agentproto.ShadowDeltaEvent
		Expect(ev.Decode(&d)).To(Succeed())
		Expect(jsonEq(d.State, map[string]any{"led": "on", "rate": 5})).To(BeTrue(), "AWS-009 (001 L155–164): expected the delta keys {led: on, rate: 5} in the application; got %v", d.State)
		Expect(d.Version).To(Equal(want), "AWS-009: the delta has version %d; the device reports %d", want, d.Version)
	})

	Conformance("subscribes only to the topics it needs; telemetry and C2D topics are configurable", []string{"AWS-010"}, func(ctx SpecContext) {
		tel, c2d := "hil/${thing}/telemetry", "hil/${thing}/commands/#"
		s := NewAWSSession(ctx, fixtures.AWSSessionOptions{NoOpen: true})
		tel, c2d = strings.ReplaceAll(tel, "${thing}", s.Thing), strings.ReplaceAll(c2d, "${thing}", s.Thing)
		// The thing's policy allows the configured topics.
		pol := awsiot.DefaultPolicy().WithTopics("hil/" + s.Thing + "/*")
		_, err := s.Env.AWS.Registry().AddThing(awsiot.Thing{Name: s.Thing, Policy: pol})
		Expect(err).NotTo(HaveOccurred())
		Expect(s.Call(ctx, agentproto.OpConfigure, s.Config(fixtures.AWSSessionOptions{TelemetryTopic: tel, C2DFilter: c2d}), nil)).To(Succeed())
		Expect(s.Open(ctx)).To(Succeed(), "AWS-010: connect")
		var r agentproto.ShadowResult
		_ = s.Call(ctx, agentproto.OpShadowGet, agentproto.ShadowArgs{}, &r) // whatever the shadow client subscribes to is in place
		own := []string{awsproto.ShadowTopic(s.Thing, "", awsproto.OpGet, ""), awsproto.ShadowTopic(s.Thing, "", awsproto.OpUpdate, ""), awsproto.ShadowTopic(s.Thing, "", awsproto.OpDelete, "")}
		for _, e := range s.Trace(s.Start()) {
			if e.Type != "SUBSCRIBE" || e.Dir != hub.DirIn {
				continue
			}
			for _, f := range e.Filters {
				Expect(f.Filter).NotTo(Equal(awsproto.ShadowWildcard(s.Thing)), "AWS-010 (001 L4, NS-5): subscribed to %s, the wide shadow filter AWS advises against (it delivers the device's own requests and every answer, billed)", f.Filter)
				for _, t := range own {
					Expect(awsproto.FilterMatches(f.Filter, t)).To(BeFalse(), "AWS-010 (001 L4): filter %q also matches the device's own request topic %s: more than it needs", f.Filter, t)
				}
			}
		}
		m := s.Mark()
		Expect(s.Call(ctx, agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: `{"a":1}`, Wait: true}, nil)).To(Succeed())
		_, err = s.WaitTrace(ctx, m, "telemetry on the configured topic "+tel, func(e hub.Entry) bool { return e.Dir == hub.DirIn && e.Type == "PUBLISH" && e.Topic == tel })
		Expect(err).NotTo(HaveOccurred(), "AWS-010 (001 L166–179): telemetry topic configured as %s: %v", tel, err)
		down := "hil/" + s.Thing + "/commands/reboot"
		Expect(s.Env.AWS.Publish(down, []byte("now"), 1, false)).To(Succeed())
		_, err = s.WaitEvent(ctx, m, agentproto.EvC2D, func(e agent.Event) bool {
			var c agentproto.C2DEvent
			return e.Decode(&c) == nil && c.Topic == down
		})
		Expect(err).NotTo(HaveOccurred(), "AWS-010 (001 L181–186): a message on the configured C2D filter %s (topic %s) did not reach the application: %v", c2d, down, err)
	})

	Conformance("switches to a new certificate without reflashing", []string{"AWS-011"}, func(ctx SpecContext) {
		s := NewAWSSession(ctx, fixtures.AWSSessionOptions{})
		leaf, _, err := s.NewCert()
		Expect(err).NotTo(HaveOccurred())
		keyPEM, err := leaf.KeyPEM()
		Expect(err).NotTo(HaveOccurred())
		m := s.Mark()
		Expect(s.Call(ctx, agentproto.OpRotate, agentproto.RotateArgs{PEM: string(leaf.ChainPEM()), KeyPEM: string(keyPEM)}, nil)).To(Succeed(), "AWS-011 (001 L91–103): creds.rotate")
		Expect(s.Env.AWS.Registry().SetStatus(s.CertID, awsiot.StatusRevoked)).To(Succeed()) // the old certificate is retired
		want := certs.Thumbprint(leaf.Cert)
		hs, err := s.WaitTrace(ctx, m, "a TLS handshake with the new certificate "+want[:16], func(e hub.Entry) bool {
			return e.Type == hub.EventTLS && e.TLS != nil && e.TLS.ClientCertThumbprint == want
		})
		Expect(err).NotTo(HaveOccurred(), "AWS-011 (001 L91–103): after the new certificate and key were provisioned and the old one revoked, the device did not reconnect with the new one: %v", err)
		_, err = s.WaitTrace(ctx, m, "a session on the connection with the new certificate", func(e hub.Entry) bool {
			return e.Type == hub.EventConnOpened && e.ConnID == hs.ConnID
		})
		Expect(err).NotTo(HaveOccurred(), "AWS-011 (001 L91–103): no session established with the new certificate: %v", err)
	})

	Conformance("counts a shadow update as confirmed only on update/accepted, not on PUBACK", []string{"AWS-012"}, func(ctx SpecContext) {
		s := NewAWSSession(ctx, fixtures.AWSSessionOptions{})
		s.Env.AWS.RejectShadowUpdates(s.Thing, 500, 1)
		m := s.Mark()
		var r agentproto.ShadowResult
		err := s.Call(ctx, agentproto.OpShadowUpdate, agentproto.ShadowUpdateArgs{Reported: map[string]any{"fw": "3.0"}}, &r)
		rejected := awsproto.ShadowTopic(s.Thing, "", awsproto.OpUpdate, awsproto.Rejected)
		_, werr := s.WaitTrace(ctx, m, "update/rejected sent", func(e hub.Entry) bool { return e.Dir == hub.DirOut && e.Type == "PUBLISH" && e.Topic == rejected })
		Expect(werr).NotTo(HaveOccurred(), "AWS-012: the endpoint's rejection did not go out: %v", werr)
		var acked bool
		for _, e := range s.Trace(m) {
			if e.Dir == hub.DirOut && e.Type == "PUBACK" {
				acked = true
			}
		}
		Expect(acked).To(BeTrue(), "AWS-012: the endpoint PUBACKs the update before rejecting it (scene)")
		if err != nil {
			ae, ok := fixtures.IsDeviceError(err)
			Expect(ok).To(BeTrue(), "AWS-012: %v", err)
			Expect(ae.Code).NotTo(BeEmpty()) // any device-side failure is not a success
			return
		}
		Expect(r.Status).NotTo(Equal(200), "AWS-012 (001 L151–153): the broker PUBACKed the update but the shadow service answered update/rejected 500; the device reported it as accepted (%s)", fmtResult(r))
	})
})

func fmtResult(r agentproto.ShadowResult) string {
	b, _ := json.Marshal(r)
	return fmt.Sprint(string(b))
}
