package suites

import (
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/certs"
	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/rig/agent"
	"github.com/hilrun/hilrun/rig/awsproto"
	"github.com/hilrun/hilrun/rig/hub"
)

// Boundary specs for AWS IoT Core (issue 15): the rules of suites/aws.go
// along the dimensions of fixtures/catalog/dimensions.yaml that one example
// left open: server chains bad in other ways than their root (AWS-003),
// thing names of 128 characters and with ":_-" (AWS-005), and a named
// shadow's delta at a version past 255 (AWS-009). They run with
// `hilrun run --cloud aws`.
var _ = Describe("AWS IoT Core, boundaries", func() {
	// AWS-003: the chain is validated, not only its root: under the root
	// the device trusts, a leaf for another host and an expired leaf.
	badChains := []struct {
		name string
		leaf func() certs.LeafOptions
	}{
		{"a leaf for another host name", func() certs.LeafOptions {
			return certs.LeafOptions{CommonName: "wrong-host.example.net", DNSNames: []string{"wrong-host.example.net"}}
		}},
		{"an expired leaf for the endpoint's name", func() certs.LeafOptions {
			return certs.LeafOptions{CommonName: fixtures.AWSHost, DNSNames: []string{fixtures.AWSHost, "localhost"},
				NotBefore: time.Now().Add(-72 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)}
		}},
	}
	for _, c := range badChains {
		Conformance("refuses a server chain under the trusted root that presents "+c.name, []string{"AWS-003"}, func(ctx SpecContext) {
			s := NewAWSSession(ctx, fixtures.AWSSessionOptions{NoOpen: true})
			ep := s.Env.AWS
			leaf := must(ep.PKI().Intermediate.IssueServer(c.leaf()))
			orig := ep.ServerCertificate()
			ep.SetServerCertificate(leaf.TLSCertificate())
			DeferCleanup(func() { ep.SetServerCertificate(orig) })
			m := s.Mark()
			Expect(s.Call(ctx, agentproto.OpOpen, nil, nil)).To(Succeed())
			_, err := s.WaitEvent(ctx, m, agentproto.EvConn, func(e agent.Event) bool {
				var ce agentproto.ConnEvent
				return e.Decode(&ce) == nil && (ce.State == agentproto.StateBackoff || ce.State == agentproto.StateStopped || ce.State == agentproto.StateConnected)
			})
			Expect(err).NotTo(HaveOccurred(), "AWS-003 (001 L53, L60-79): expected the device to report its connection attempt; no conn event")
			for _, e := range s.Trace(m) {
				Expect(e.Type == "CONNECT" && e.Dir == hub.DirIn).To(BeFalse(),
					"AWS-003 (001 L53, L60-79): the server chain leads to the trusted root but presents %s; validating the chain means refusing it, yet the device sent CONNECT\n%s", c.name, awsTrace(s))
			}
		})
	}

	// AWS-005: thing names are 1..128 of [a-zA-Z0-9:_-] (awsproto).
	thingShapes := []struct {
		name  string
		shape func(base string) string
	}{
		{"of 128 characters", func(base string) string {
			return base + "-" + strings.Repeat("t", awsproto.MaxThingNameBytes-len(base)-1)
		}},
		{"holding the characters : _ -", func(base string) string { return base + ":edge_gw-01" }},
	}
	for _, c := range thingShapes {
		Conformance("uses a thing name "+c.name+" unchanged as MQTT ClientId", []string{"AWS-005"}, func(ctx SpecContext) {
			s := NewAWSSession(ctx, fixtures.AWSSessionOptions{NoOpen: true, Thing: c.shape})
			err := s.Open(ctx)
			var ids []string
			for _, e := range s.Trace(s.Start()) {
				if e.Type == "CONNECT" && e.Dir == hub.DirIn {
					ids = append(ids, e.ClientID)
				}
			}
			Expect(ids).NotTo(BeEmpty(), "AWS-005 (001 L110, L114): no CONNECT seen: %s\n%s", describeErr(err), awsTrace(s))
			for _, id := range ids {
				Expect(id).To(Equal(s.Thing), "AWS-005 (001 L110, L114): expected ClientId = thing name %q (%d characters); seen %q (%d)\n%s", s.Thing, len(s.Thing), id, len(id), awsTrace(s))
			}
			Expect(err).NotTo(HaveOccurred(), "AWS-005 (001 L110, L114): the device did not connect as thing %q: %v", s.Thing, err)
		})
	}

	Conformance("delivers a named shadow's delta to the application with its name, at a shadow version past 255", []string{"AWS-009"}, func(ctx SpecContext) {
		s := NewAWSSession(ctx, fixtures.AWSSessionOptions{})
		ep := s.Env.AWS
		const name = "cfg"
		// The shadow's version passes 255 before the device uses it (no
		// subscriber yet: no deltas on the way).
		for i := 0; i < 300; i++ {
			_, err := ep.UpdateShadow(s.Thing, name, []byte(fmt.Sprintf(`{"state":{"desired":{"step":%d}}}`, i)))
			Expect(err).NotTo(HaveOccurred())
		}
		var r agentproto.ShadowResult
		Expect(s.Call(ctx, agentproto.OpShadowGet, agentproto.ShadowArgs{Name: name}, &r)).To(Succeed(), "AWS-009 (NS-5): get of named shadow %s", name)
		Expect(r.Status).To(Equal(200), "precondition: the named shadow %s is fetched; result %+v", name, r)
		m := s.Mark()
		_, err := ep.UpdateShadow(s.Thing, name, []byte(`{"state":{"desired":{"led":"on","rate":5}}}`))
		Expect(err).NotTo(HaveOccurred())
		want := ep.Shadow(s.Thing, name).Version
		Expect(want).To(BeNumerically(">", 255), "precondition: the shadow version is past 255")
		ev, err := s.WaitEvent(ctx, m, agentproto.EvShadowDelta, func(agent.Event) bool { return true })
		Expect(err).NotTo(HaveOccurred(), "AWS-009 (001 L155-164): the endpoint published …/shadow/name/%s/update/delta; no delta reached the application: %v\n%s", name, err, awsTrace(s))
		var d agentproto.ShadowDeltaEvent
		Expect(ev.Decode(&d)).To(Succeed())
		Expect(d.Name).To(Equal(name), "AWS-009 (001 L155-164, NS-5): the delta came on named shadow %s's topic; the application got it as shadow %q (\"\" is the classic shadow)", name, d.Name)
		Expect(d.State).To(HaveKeyWithValue("led", "on"), "AWS-009 (001 L155-164): expected the delta keys {led: on, rate: 5, step: …} in the application; got %v", d.State)
		Expect(d.Version).To(Equal(want), "AWS-009: the delta has version %d; the device reports %d", want, d.Version)
	})
})

var _ = Describe("AWS IoT Core, boundaries: refused certificate", func() {
	Conformance("a thing certificate the endpoint does not know is refused: the device keeps presenting its certificate and never offers a username or password instead", []string{"AWS-002"}, func(ctx SpecContext) {
		s := NewAWSSession(ctx, fixtures.AWSSessionOptions{NoOpen: true})
		// A certificate for the thing's name that is not registered.
		leaf := must(certs.SelfSigned(certs.LeafOptions{CommonName: s.Thing}))
		Expect(s.SetCert(ctx, leaf)).To(Succeed())
		want := certs.Thumbprint(leaf.Cert)
		m := s.Mark()
		Expect(s.Call(ctx, agentproto.OpOpen, nil, nil)).To(Succeed())
		// Two refused attempts (or the device giving up) show what it does
		// after a refusal.
		backoffs := 0
		_, err := s.WaitEvent(ctx, m, agentproto.EvConn, func(e agent.Event) bool {
			var ce agentproto.ConnEvent
			if e.Decode(&ce) != nil {
				return false
			}
			if ce.State == agentproto.StateBackoff {
				backoffs++
			}
			return backoffs >= 2 || ce.State == agentproto.StateStopped || ce.State == agentproto.StateConnected
		})
		Expect(err).NotTo(HaveOccurred(), "AWS-002 (001 L107, L113): expected the device to report its refused attempts (backoff or stop); %v\n%s", err, awsTrace(s))
		Expect(s.Call(ctx, agentproto.OpClose, agentproto.CloseArgs{Graceful: true}, nil)).To(Succeed())
		attempts := 0
		for _, e := range s.Trace(m) {
			switch {
			case e.Dir == hub.DirEvent && (e.Type == hub.EventTLS || e.Type == hub.EventTLSFailed) && e.TLS != nil:
				attempts++
				Expect(e.TLS.ClientCertThumbprint).To(Equal(want), "AWS-002 (001 L107, L113): authentication is the X.509 thing certificate; attempt %d presented %q, not the device's certificate %s…\n%s", attempts, e.TLS.ClientCertThumbprint, want[:16], awsTrace(s))
			case e.Type == "CONNECT" && e.Dir == hub.DirIn:
				Expect(e.Username+e.Password).To(BeEmpty(), "AWS-002 (001 L107, L113): IAM credentials are not offered; a CONNECT carried username %q / password facts %q\n%s", e.Username, e.Password, awsTrace(s))
			case e.Dir == hub.DirEvent && e.Type == hub.EventConnOpened:
				Fail("AWS-002: the endpoint accepted a connection with an unregistered certificate (the rig is wrong)\n" + awsTrace(s))
			}
		}
		Expect(attempts).To(BeNumerically(">=", 1), "AWS-002: expected at least one TLS attempt at the endpoint\n%s", awsTrace(s))
	})
})
