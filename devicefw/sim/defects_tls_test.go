package sim

import (
	"crypto/x509"
	"errors"
	"strings"
	"testing"

	"github.com/hilrun/hilrun/certs"
	"github.com/hilrun/hilrun/devicefw/agentproto"
)

// TestTrustList: trust.list reports the configured anchors and the factory
// bundle (G2 and Baltimore; Baltimore only under trust-bundle-no-g2).
func TestTrustList(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		defects []string
		ready   bool
	}{{nil, true}, {[]string{DefBundleNoG2}, false}} {
		r := newRig(t, "trust-list", tc.defects, nil)
		var tl agentproto.TrustList
		r.fw.must(agentproto.OpTrustList, nil, &tl)
		var fps []string
		sources := map[string]int{}
		for _, x := range tl.Roots {
			fps = append(fps, x.SHA256)
			sources[x.Source]++
		}
		if sources[agentproto.TrustConfigured] != 1 || tl.Roots[0].SHA256 != certs.Thumbprint(r.hub.PKI().Root.Cert) {
			t.Errorf("%v: configured anchors %+v", tc.defects, tl.Roots)
		}
		rd := certs.CheckCloudReadiness(fps)
		if rd.Ready != tc.ready || !rd.HasBaltimore {
			t.Errorf("%v: readiness %+v from %+v", tc.defects, rd, tl.Roots)
		}
	}
}

// TestTrustListFiltered: with {sha256} trust.list answers only the trusted
// roots among those fingerprints (case-insensitive), an empty list when none.
func TestTrustListFiltered(t *testing.T) {
	t.Parallel()
	r := newRig(t, "trust-list-filtered", []string{DefBundleNoG2}, nil)
	var tl agentproto.TrustList
	r.fw.must(agentproto.OpTrustList, agentproto.TrustListArgs{SHA256: []string{
		certs.DigiCertGlobalRootG2SHA256, strings.ToLower(certs.BaltimoreCyberTrustRootSHA256)}}, &tl)
	if len(tl.Roots) != 1 || tl.Roots[0].SHA256 != certs.BaltimoreCyberTrustRootSHA256 || tl.Roots[0].Source != agentproto.TrustFactory {
		t.Errorf("filtered by G2 and Baltimore under %s: %+v", DefBundleNoG2, tl.Roots)
	}
	tl = agentproto.TrustList{}
	r.fw.must(agentproto.OpTrustList, agentproto.TrustListArgs{SHA256: []string{certs.DigiCertGlobalRootG2SHA256}}, &tl)
	if tl.Roots == nil || len(tl.Roots) != 0 {
		t.Errorf("filtered by G2 under %s: want roots [], got %+v", DefBundleNoG2, tl.Roots)
	}
}

// TestVerifyIgnoringDates: tls-ignore-validity's check still needs the
// chain to lead to a trusted root and the leaf to name the host.
func TestVerifyIgnoringDates(t *testing.T) {
	t.Parallel()
	const host = "hub.example.test"
	sc, err := certs.NewScenario(host, certs.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	trust := []*x509.Certificate{sc.OldRoot.Cert}
	for _, tc := range []struct {
		root *certs.CA
		kind certs.ServerLeafKind
		ok   bool
	}{
		{sc.OldRoot, certs.Valid, true},
		{sc.OldRoot, certs.Expired, true},
		{sc.OldRoot, certs.NotYetValid, true},
		{sc.OldRoot, certs.WrongHost, false},
		{sc.NewRoot, certs.Valid, false},
	} {
		c, err := sc.Server(tc.root, 1, tc.kind)
		if err != nil {
			t.Fatal(err)
		}
		err = verifyIgnoringDates(c.Certificate, trust, host)
		if (err == nil) != tc.ok {
			t.Errorf("%s under %s: %v, want ok=%v", tc.kind, tc.root.Cert.Subject.CommonName, err, tc.ok)
		}
		if err != nil && !verificationFailed(err) {
			t.Errorf("%s: %v is not classed as a verification failure", tc.kind, err)
		}
	}
	if verificationFailed(errors.New("connection reset")) {
		t.Error("a network error classed as a verification failure")
	}
}
