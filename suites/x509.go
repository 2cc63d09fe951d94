package suites

import (
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/certs"
	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/rig/hub"
)

// X.509 identities around the CONN-012..014 specs in connect.go: the
// secondary thumbprint slot, the certificate's common name, and modules.
var _ = Describe("X.509 identities", func() {
	Conformance("a self-signed device whose certificate matches only the secondary thumbprint connects", []string{"CONN-014"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{Auth: fixtures.AuthX509Self, NoOpen: true})
		dev := must(s.Env.Hub.Registry().Get(s.ID))
		own := dev.Authentication.X509Thumbprint.PrimaryThumbprint
		other := must(certs.SelfSigned(certs.LeafOptions{CommonName: s.ID.ClientID()}))
		// The device's certificate moves to the secondary slot; the primary
		// slot holds a certificate the device does not have.
		dev.Authentication.X509Thumbprint = &hub.X509Thumbprint{PrimaryThumbprint: certs.Thumbprint(other.Cert), SecondaryThumbprint: own}
		must(putDevice(s, dev))
		m, connect := openForConnect(ctx, s)
		tr := hubSince(s, m)
		t := tlsOf(tr, connect.ConnID)
		Expect(t).NotTo(BeNil(), "CONN-014: no TLS facts for the connection\n%s", traceText(tr))
		Expect(t.TLS.ClientCertThumbprint).To(Equal(own),
			"CONN-014: the presented certificate's SHA-256 must match the registered secondary thumbprint\n%s", traceText(tr))
		expectAccepted(ctx, s, m, connect)
	})

	Conformance("a CA-signed device presents a certificate whose CN is its device ID", []string{"CONN-015"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{Auth: fixtures.AuthX509CA, NoOpen: true})
		m, connect := openForConnect(ctx, s)
		tr := hubSince(s, m)
		t := tlsOf(tr, connect.ConnID)
		Expect(t != nil && t.TLS.ClientCertSubject != "").To(BeTrue(), "CONN-015: a client certificate in the TLS handshake\n%s", traceText(tr))
		cn := commonName(t.TLS.ClientCertSubject)
		Expect(cn).To(Equal(s.ID.DeviceID), "CONN-015: the certificate CN (subject %q) must be the device ID\n%s", t.TLS.ClientCertSubject, traceText(tr))
		Expect(cn).To(Equal(connect.ClientID), "CONN-015: the certificate CN must equal the CONNECT ClientId\n%s", traceText(tr))
		expectNoWarning(tr, "CONN-015")
		expectAccepted(ctx, s, m, connect)
	})

	// MOD-001 (the ClientId) is judged by the SAS module spec in
	// modules.go; this one judges MOD-006 alone, so that a client that
	// cannot authenticate a module with X.509 is not failed on MOD-001.
	Conformance("a module authenticating with X.509 presents a certificate whose CN is {deviceId}/{moduleId}", []string{"MOD-006"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{Auth: fixtures.AuthX509CA, ModuleID: "telemetry-mod", NoOpen: true}, agentproto.CapX509)
		m := s.Mark()
		// MOD-006 is about a module's X.509 certificate: a board that
		// cannot authenticate a module with one (no module-x509, answer
		// unsupported) cannot break it.
		if err := s.Call(ctx, agentproto.OpOpen, nil, nil); !optional(agentproto.CapModuleX509, "client.open of a module with X.509", err) {
			NotApplicable("the board cannot authenticate a module with an X.509 certificate (" + err.Error() + ")")
		} else {
			must(0, err)
		}
		connect := must(waitHub(ctx, s, m, "the board's first CONNECT", func(e hub.Entry) bool { return e.Dir == hub.DirIn && e.Type == "CONNECT" }))
		tr := hubSince(s, m)
		want := certs.ModuleCommonName(s.ID.DeviceID, s.ID.ModuleID)
		t := tlsOf(tr, connect.ConnID)
		Expect(t != nil && t.TLS.ClientCertSubject != "").To(BeTrue(), "MOD-006: expected a client certificate in the TLS handshake of the module's connection; seen none\n%s", traceText(tr))
		Expect(commonName(t.TLS.ClientCertSubject)).To(Equal(want),
			"MOD-006: expected the module certificate's CN to be %q (003 L23-25); the subject is %q\n%s", want, t.TLS.ClientCertSubject, traceText(tr))
		expectNoWarning(tr, "CONN-015")
		expectAccepted(ctx, s, m, connect)
	})
})

// putDevice replaces the session identity's registry entry (thumbprints,
// keys) as an operator would through the service API.
func putDevice(s *fixtures.Session, d hub.Device) (hub.Device, error) {
	nd, _, err := s.Env.Hub.Registry().Put(d, "*")
	return nd, err
}

// commonName returns the CN of a subject in RFC 2253 form ("CN=x,O=y").
func commonName(subject string) string {
	for _, rdn := range strings.Split(subject, ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(rdn), "CN="); ok {
			return v
		}
	}
	return ""
}

// expectNoWarning fails if the hub noted a warning or violation for req.
func expectNoWarning(tr []hub.Entry, req string) {
	GinkgoHelper()
	for _, e := range tr {
		if e.Dir == hub.DirEvent && e.Requirement == req && e.Type != hub.EventTLS {
			Fail(req + ": the hub noted: " + e.Reason + "\n" + traceText(tr))
		}
	}
}
