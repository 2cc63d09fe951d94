package suites

import (
	"fmt"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/certs"
	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/rig/hub"
)

// Boundary specs for CERT-004 (issue 15): the repetition spec of tls.go
// drives the unknown root only; these drive the other verification
// failures many times in a row.
var _ = Describe("tls: repeated verification failures of every kind", func() {
	// CERT-004 past the unknown root (issue 15): the other verification
	// failures, each presented many times in a row.
	for _, tc := range []struct {
		what string
		kind certs.ServerLeafKind
	}{
		{"a leaf for another host name under the trusted root", certs.WrongHost},
		{"an expired leaf under the trusted root", certs.Expired},
	} {
		Conformance(tc.what+" presented many times in a row never leads to a completed handshake, a CONNECT or a plaintext attempt", []string{"CERT-004"}, func(ctx SpecContext) {
			s := NewSession(ctx, fixtures.SessionOptions{NoOpen: true})
			sc := tlsScenario(s)
			tlsServe(s, must(sc.Server(sc.OldRoot, 1, tc.kind)))
			m0 := s.Mark()
			for i := 0; i < certRefusalAttempts; i++ {
				tlsAttempt(ctx, s)
				must(0, s.Call(ctx, agentproto.OpClose, agentproto.CloseArgs{Graceful: true}, nil))
			}
			tr := tlsObserveQuiet(ctx, s, m0)
			tlsExpectRefused(tr, "CERT-004", fmt.Sprintf("%s (attempts 1..%d)", tc.what, certRefusalAttempts))
			Expect(len(tlsEvents(tr, hub.EventTLSFailed))).To(BeNumerically(">=", certRefusalAttempts),
				"CERT-004: every one of the %d attempts with %s must reach the hub as a refused TLS handshake (002 L13843, L13889)\n%s", certRefusalAttempts, tc.what, traceText(tr))
		})
	}
})
