package suites

import (
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/rig/hub"
)

var _ = Describe("connect", func() {
	Conformance("CONNECT carries the device ID as ClientId and the documented Username", []string{"CONN-005", "CONN-006"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		connect := must(s.WaitTrace(ctx, s.Start(), "CONNECT from the device", func(e hub.Entry) bool {
			return e.Dir == hub.DirIn && e.Type == "CONNECT"
		}))
		Expect(connect.ClientID).To(Equal(s.ID.DeviceID), "CONN-005: ClientId must be the device ID byte for byte\n%s", traceText(s.Trace(s.Start())))
		Expect(connect.Username).To(HavePrefix(fixtures.HubHost+"/"+s.ID.DeviceID+"/?api-version="),
			"CONN-006: Username must be {hub FQDN}/{deviceId}/?api-version=…\n%s", traceText(s.Trace(s.Start())))
		Expect(strings.Count(connect.Username, "/?")).To(Equal(1))
	})
})

var _ = Describe("connect with X.509", func() {
	Conformance("a CA-signed device presents its certificate chain and no SAS token", []string{"CONN-012", "CONN-013"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{Auth: fixtures.AuthX509CA})
		tr := s.Trace(s.Start())
		tlsFacts := must(s.WaitTrace(ctx, s.Start(), "TLS handshake with a client certificate", func(e hub.Entry) bool {
			return e.Type == hub.EventTLS && e.TLS != nil && e.TLS.ClientCertSubject != ""
		}))
		Expect(tlsFacts.TLS.ClientCertSubject).To(ContainSubstring(s.ID.DeviceID), "CONN-013\n%s", traceText(tr))
		connect := must(s.WaitTrace(ctx, s.Start(), "CONNECT", func(e hub.Entry) bool { return e.Dir == hub.DirIn && e.Type == "CONNECT" }))
		Expect(connect.Password).To(BeEmpty(), "CONN-012: no SAS token alongside the certificate\n%s", traceText(tr))
	})

	Conformance("a self-signed device authenticates by thumbprint", []string{"CONN-014"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{Auth: fixtures.AuthX509Self})
		must(s.WaitTrace(ctx, s.Start(), "CONNACK 0 for the thumbprint identity", func(e hub.Entry) bool {
			return e.Dir == hub.DirOut && e.Type == "CONNACK" && e.ReturnCode == 0
		}))
	})
})
