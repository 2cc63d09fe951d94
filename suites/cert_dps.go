package suites

import (
	"context"
	"errors"
	"fmt"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/rig/dps"
	"github.com/hilrun/hilrun/rig/dpsproto"
	"github.com/hilrun/hilrun/rig/hub"
)

// CERT-005: the provisioning endpoint's certificate is checked exactly as
// strictly as the hub's. The examples hand the provisioning client the same
// Azure root as the hub client (000 L369-371, L451-453), so every chain the
// hub's CONN-003 / CLOCK-003 specs make the board refuse (suites/tls.go) is
// presented here by the reference DPS, for the DPS host (dps.PresentChain).
// Each spec then puts the endpoint's own chain back and provisions, so a
// refusal is known to be the certificate's and not a broken endpoint's.
// Capability dps like the DPS specs (newDPS): not applicable elsewhere.
var _ = Describe("provisioning endpoint certificate (CERT-005)", func() {
	for _, c := range dps.BadChains {
		what := certDPSWhat[c]
		Conformance("the board abandons the provisioning handshake with "+what+": no CONNECT, no registration token reaches DPS, the failure is reported, no hub connection follows; the endpoint's own chain then provisions", []string{"CERT-005"}, func(ctx SpecContext) {
			// The default attempt bound (15 s): a board that hangs on a
			// refused handshake answers at that bound at the latest, and
			// the provisioning with the own chain has a real board's time.
			ds := newDPS(ctx, fixtures.DPSOptions{Name: "cert005"})
			d := ds.Env.DPS
			DeferCleanup(func() { _ = d.PresentChain(dps.ChainOwn) })
			must(0, d.PresentChain(c))

			m := ds.Mark()
			res, err := ds.Register(ctx)
			reported := certDPSReported(res, err)
			tlsE := certDPSWaitTLS(ctx, ds, m)
			tr := certDPSObserveQuiet(ctx, ds, m)
			conns := ds.DPSConnIDs(m)
			dpsTr := certDPSOnConns(tr, conns)
			seen := certDPSOutcome(dpsTr, res, err)
			fixtures.NoteFact(fixtures.FactRoot, "provisioning endpoint: "+c.String(), seen, strings.HasPrefix(seen, "refused"))

			Expect(tlsE).NotTo(BeNil(), "CERT-005: expected the board to open a TLS connection to the provisioning endpoint %s (000 L369-371); seen none within %s (register result %+v, error %v)\n%s",
				fixtures.DPSHost, ds.Env.Timing.Connect, res, err, traceText(tr))
			for _, e := range tr {
				if e.Type == hub.EventTLSFailed && strings.Contains(e.Reason, "does not look like a TLS handshake") {
					Fail(fmt.Sprintf("CERT-005: after the TLS handshake with %s failed, the board spoke plaintext to the provisioning endpoint (000 L369-371; CONN-002)\n%s", what, traceText(tr)))
				}
			}
			Expect(tlsFirst(dpsTr, hub.EventTLS)).To(BeNil(),
				"CERT-005: the provisioning endpoint presented %s; the board must refuse it as it refuses it from the hub (000 L369-371), yet it completed the TLS handshake\n%s", what, traceText(tr))
			Expect(packets(dpsTr, hub.DirIn, "CONNECT")).To(BeEmpty(),
				"CERT-005: the board sent CONNECT (with its registration SAS token) to a provisioning endpoint presenting %s (000 L369-371)\n%s", what, traceText(tr))
			Expect(publishes(dpsTr, dpsproto.RegisterPrefix)).To(BeEmpty(),
				"CERT-005: the board sent a registration request to a provisioning endpoint presenting %s (000 L369-371)\n%s", what, traceText(tr))
			hubConn := certDPSHubConnects(ds, tr, conns)
			Expect(hubConn).To(BeEmpty(),
				"CERT-005: after refusing a provisioning endpoint with %s the board must not connect to a hub as the identity it was to be given (000 L369-371; a registration that is not assigned ends the flow before the hub, L375-379); seen CONNECT(s) from %v\n%s", what, certDPSClientIDs(hubConn), traceText(tr))
			Expect(reported).To(BeEmpty(), "CERT-005: %s (000 L369-371; the status and error message of a failed registration, L375-379)\n%s", reported, traceText(tr))

			// The endpoint's own chain back: the same registration now
			// provisions, so the refusal above was the certificate's.
			must(0, d.PresentChain(dps.ChainOwn))
			m2 := ds.Mark()
			res2, err := ds.Register(ctx)
			tr2 := ds.DPSTrace(m2)
			Expect(err).NotTo(HaveOccurred(), "CERT-005: with the endpoint's own chain back, dps.register must succeed (else the refusal above proves nothing)\n%s", traceText(tr2))
			Expect(res2.Status).To(Equal(dpsproto.StatusAssigned),
				"CERT-005: with the endpoint's own chain back (a leaf for %s under the trusted root), the registration must be assigned (000 L369-379); result %+v\n%s", fixtures.DPSHost, res2, traceText(tr2))
		})
	}
})

// certDPSWhat names each bad chain as the hub's specs do (suites/tls.go).
var certDPSWhat = map[dps.Chain]string{
	dps.ChainUntrustedRoot: "a chain under a root the board does not trust",
	dps.ChainWrongHost:     "a leaf for another host name under the trusted root",
	dps.ChainExpired:       "an expired leaf under the trusted root",
	dps.ChainNotYetValid:   "a not-yet-valid leaf under the trusted root",
}

// certDPSReported is "" when the board reported the failed attempt as the
// agent protocol documents it (a result with a status other than assigned,
// or an agent error), else what it did instead.
func certDPSReported(res agentproto.DPSResult, err error) string {
	var pe *agentproto.Error
	switch {
	case err != nil && errors.As(err, &pe):
		return ""
	case err != nil:
		return "the board did not report the failed provisioning attempt: dps.register got no answer (" + err.Error() + ")"
	case res.Status == dpsproto.StatusAssigned:
		return fmt.Sprintf("the board reports the registration assigned (%+v) over a chain it must refuse", res)
	case res.Status == "":
		return fmt.Sprintf("dps.register answered without a status (%+v): the failure is not reported", res)
	}
	return ""
}

// certDPSWaitTLS waits for the TLS outcome of a provisioning connection
// since m (handshake completed or refused at the endpoint); nil when none
// came within Timing.Connect.
func certDPSWaitTLS(ctx context.Context, ds *fixtures.DPSSession, m fixtures.Marks) *hub.Entry {
	e, err := waitHub(ctx, ds.Session, m, "a TLS handshake with the provisioning endpoint", func(e hub.Entry) bool {
		return (e.Type == hub.EventTLS || e.Type == hub.EventTLSFailed) && e.TLS != nil && e.TLS.Transport == "dps-mqtts"
	})
	if err != nil {
		return nil
	}
	return &e
}

// certDPSObserveQuiet observes the wire for Timing.Quiet after the attempt
// and returns it since m. The wait is expected to time out: a CONNECT at the
// endpoint or at the hub ends it early and lands in the returned trace.
func certDPSObserveQuiet(ctx context.Context, ds *fixtures.DPSSession, m fixtures.Marks) []hub.Entry {
	qctx, cancel := context.WithTimeout(ctx, ds.Env.Timing.Quiet)
	defer cancel()
	_ = ds.Env.Hub.Wait(qctx, func() bool {
		for _, e := range hubSince(ds.Session, m) {
			if e.Dir == hub.DirIn && e.Type == "CONNECT" {
				return true
			}
		}
		return false
	})
	return hubSince(ds.Session, m)
}

// certDPSOnConns keeps the entries of the given connections.
func certDPSOnConns(tr []hub.Entry, conns map[uint64]bool) []hub.Entry {
	var out []hub.Entry
	for _, e := range tr {
		if e.ConnID != 0 && conns[e.ConnID] {
			out = append(out, e)
		}
	}
	return out
}

// certDPSHubConnects are CONNECTs at the hub (not the provisioning
// endpoint) naming the registration ID or the device ID the enrollment
// would assign: an identity the board could only have from provisioning.
func certDPSHubConnects(ds *fixtures.DPSSession, tr []hub.Entry, dpsConns map[uint64]bool) []hub.Entry {
	var out []hub.Entry
	for _, e := range packets(tr, hub.DirIn, "CONNECT") {
		if !dpsConns[e.ConnID] && (strings.EqualFold(e.ClientID, ds.RegID) || strings.EqualFold(e.ClientID, ds.DeviceID)) {
			out = append(out, e)
		}
	}
	return out
}

func certDPSClientIDs(es []hub.Entry) []string {
	out := make([]string, 0, len(es))
	for _, e := range es {
		out = append(out, e.ClientID)
	}
	return out
}

// certDPSOutcome describes for the report what the board did.
func certDPSOutcome(dpsTr []hub.Entry, res agentproto.DPSResult, err error) string {
	switch {
	case len(packets(dpsTr, hub.DirIn, "CONNECT")) > 0:
		return "accepted: CONNECT sent to the provisioning endpoint"
	case tlsFirst(dpsTr, hub.EventTLS) != nil:
		return "accepted: handshake completed"
	case tlsFirst(dpsTr, hub.EventTLSFailed) == nil:
		return "no handshake seen"
	}
	out := "refused"
	switch {
	case err != nil:
		out += " (dps.register: " + err.Error() + ")"
	case res.ErrorMessage != "":
		out += " (board " + res.Status + ": " + tlsReason(res.ErrorMessage) + ")"
	}
	return out
}
