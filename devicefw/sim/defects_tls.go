package sim

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hilrun/hilrun/certs"
	"github.com/hilrun/hilrun/devicefw/agentproto"
)

// Defect switches added for the TLS specs (server verification, versions,
// SNI, fallbacks, the factory trust bundle). Each needs a row in
// DEFECTS.md ("Added for the TLS specs") and acts in the client's TLS
// configuration (connect → tlsDefects, dial → afterTLSFailure) or in the
// factory bundle.
const (
	DefTLSTrustAny          = "tls-trust-any"
	DefTLSSkipHostname      = "tls-skip-hostname"
	DefTLSIgnoreValidity    = "tls-ignore-validity"
	DefTLSAllowLegacy       = "tls-allow-legacy"
	DefTLSWrongSNI          = "tls-wrong-sni"
	DefTLSPlaintextFallback = "tls-plaintext-fallback"
	DefTLSFallback1883      = "tls-fallback-1883"
	DefTLSUnverifiedRetry   = "tls-unverified-after-failures"
	DefBundleNoG2           = "trust-bundle-no-g2"
)

// tlsDefects lists them; see Defects.
var tlsDefects = []Defect{
	{DefTLSTrustAny, "CONN-003", "the server certificate is not verified at all: any chain, any name, any date is accepted"},
	{DefTLSSkipHostname, "CONN-003", "the server chain is verified against the trust anchors and the clock, but not against the hub host name"},
	{DefTLSIgnoreValidity, "CLOCK-003", "the server chain's signatures and host name are checked, but not the certificates' validity dates (expired and not-yet-valid leaves are accepted)"},
	{DefTLSAllowLegacy, "CONN-004", "the client offers and accepts TLS 1.0 and 1.1 besides 1.2 and 1.3"},
	{DefTLSWrongSNI, "CONN-004", "the ClientHello's SNI names the parent domain, not the hub host (the certificate is still verified for the hub host)"},
	{DefTLSPlaintextFallback, "CERT-004", "after a TLS handshake fails server verification, the same attempt retries as plaintext MQTT on the same endpoint (CONNECT with credentials in the clear)"},
	{DefTLSFallback1883, "CERT-004", "after a TLS handshake fails server verification, the same attempt retries as plaintext MQTT on the hub host's port 1883 (on the rig: HubConfig.PlainAddress)"},
	{DefTLSUnverifiedRetry, "CERT-004", "after three server verification failures in a row the client retries without verifying the server (until one connection succeeds)"},
	{DefBundleNoG2, "CERT-001", "the factory trust bundle is the pre-2023 one: Baltimore CyberTrust Root only, no DigiCert Global Root G2"},
}

// unverifiedAfter is how many verification failures in a row make
// tls-unverified-after-failures give up on verification.
const unverifiedAfter = 3

// tlsClientState is the TLS defects' memory across connection attempts.
type tlsClientState struct {
	verifyFails atomic.Int32 // server verification failures in a row
	nameFails   atomic.Int32 // host name mismatches in a row (tls-skip-hostname-after-failures)
	dateFails   atomic.Int32 // validity-date failures in a row (tls-ignore-dates-after-failures)
}

// tlsDefects adds the factory bundle to the attempt's anchors and applies
// the TLS defect switches to its config. It runs after the trust anchors and the clock (tlsc.Time) are set; the
// replacement checks read tlsc.Time at handshake time.
func (dc *deviceClient) tlsDefects(tlsc *tls.Config, cc connConfig) {
	if tlsc.RootCAs != nil {
		for _, r := range dc.fw.factoryBundle() {
			tlsc.RootCAs.AddCert(r)
		}
	}
	now := func() time.Time {
		if tlsc.Time != nil {
			return tlsc.Time()
		}
		return time.Now()
	}
	verify := func(raw [][]byte, host string, at func() time.Time) error {
		leaf, inter, err := parseChain(raw)
		if err != nil {
			return err
		}
		var t time.Time
		if at != nil {
			t = at()
		}
		_, err = leaf.Verify(x509.VerifyOptions{Roots: tlsc.RootCAs, Intermediates: inter, DNSName: host, CurrentTime: t})
		return err
	}
	switch {
	case dc.on(DefTLSTrustAny):
		tlsc.InsecureSkipVerify = true
		tlsc.VerifyPeerCertificate = nil
	case dc.on(DefTLSSkipHostname):
		tlsc.InsecureSkipVerify = true
		tlsc.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error { return verify(raw, "", now) }
	case dc.on(DefTLSIgnoreValidity):
		tlsc.InsecureSkipVerify = true
		tlsc.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			return verifyIgnoringDates(raw, cc.trust, cc.host)
		}
	case dc.on(DefTLSWrongSNI):
		// Go sends SNI from ServerName and verifies against it: send the
		// parent domain (as a client configured with the wrong endpoint
		// name for SNI would) and verify by hand for the configured host.
		if _, parent, ok := strings.Cut(cc.host, "."); ok {
			tlsc.ServerName = parent
		}
		tlsc.InsecureSkipVerify = true
		tlsc.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error { return verify(raw, cc.host, now) }
	case dc.on(DefTLSNameRetry) && dc.tls.nameFails.Load() >= unverifiedAfter:
		// Defect tls-skip-hostname-after-failures (defects_bounds_bmod.go).
		dc.fw.logf("W", "server name mismatched %d times in a row: connecting without the name check", dc.tls.nameFails.Load())
		tlsc.InsecureSkipVerify = true
		tlsc.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error { return verify(raw, "", now) }
	case dc.on(DefTLSDatesRetry) && dc.tls.dateFails.Load() >= unverifiedAfter:
		// Defect tls-ignore-dates-after-failures (defects_bounds_bmod.go).
		dc.fw.logf("W", "server certificate out of its dates %d times in a row: taking the clock for wrong, ignoring dates", dc.tls.dateFails.Load())
		tlsc.InsecureSkipVerify = true
		tlsc.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			return verifyIgnoringDates(raw, cc.trust, cc.host)
		}
	case dc.on(DefTLSUnverifiedRetry) && dc.tls.verifyFails.Load() >= unverifiedAfter:
		dc.fw.logf("W", "server verification failed %d times in a row: connecting without it", dc.tls.verifyFails.Load())
		tlsc.InsecureSkipVerify = true
		tlsc.VerifyPeerCertificate = nil
	}
	if dc.on(DefTLSAllowLegacy) {
		tlsc.MinVersion = tls.VersionTLS10
	}
}

// parseChain splits the presented chain into the leaf and a pool of the rest.
func parseChain(raw [][]byte) (*x509.Certificate, *x509.CertPool, error) {
	if len(raw) == 0 {
		return nil, nil, errors.New("tls: the server sent no certificate")
	}
	inter := x509.NewCertPool()
	var leaf *x509.Certificate
	for i, der := range raw {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, nil, err
		}
		if i == 0 {
			leaf = c
		} else {
			inter.AddCert(c)
		}
	}
	return leaf, inter, nil
}

// verifyIgnoringDates is tls-ignore-validity's check: each presented
// certificate is signed by the next, the last by a trusted root, and the
// leaf names host; validity dates are never looked at (like a TLS stack
// built without a time source).
func verifyIgnoringDates(raw [][]byte, trust []*x509.Certificate, host string) error {
	chain := make([]*x509.Certificate, 0, len(raw))
	for _, der := range raw {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return err
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		return errors.New("tls: the server sent no certificate")
	}
	if err := chain[0].VerifyHostname(host); err != nil {
		return err
	}
	for i := 0; i+1 < len(chain); i++ {
		if err := chain[i].CheckSignatureFrom(chain[i+1]); err != nil {
			return err
		}
	}
	last := chain[len(chain)-1]
	for _, r := range trust {
		if last.Equal(r) || last.CheckSignatureFrom(r) == nil {
			return nil
		}
	}
	return x509.UnknownAuthorityError{Cert: last}
}

// verificationFailed reports whether err is the client refusing the
// server's certificate.
func verificationFailed(err error) bool {
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	return errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci)
}

// afterTLSFailure runs when the TLS dial of one attempt ended: it counts
// verification failures in a row (tls-unverified-after-failures) and, for
// tls-plaintext-fallback, redials the same endpoint without TLS.
func (dc *deviceClient) afterTLSFailure(addr, plainAddr string, err error) (net.Conn, error) {
	if err == nil {
		dc.tls.verifyFails.Store(0)
		dc.tls.nameFails.Store(0)
		dc.tls.dateFails.Store(0)
		return nil, nil
	}
	if !verificationFailed(err) {
		return nil, err
	}
	dc.tls.verifyFails.Add(1)
	if he := (x509.HostnameError{}); errors.As(err, &he) {
		dc.tls.nameFails.Add(1)
	} else {
		dc.tls.nameFails.Store(0)
	}
	if ci := (x509.CertificateInvalidError{}); errors.As(err, &ci) && ci.Reason == x509.Expired {
		dc.tls.dateFails.Add(1)
	} else {
		dc.tls.dateFails.Store(0)
	}
	if dc.on(DefTLSFallback1883) {
		// The classic fallback: plain MQTT on the hub host's port 1883
		// (on the rig, PlainAddress stands for it).
		addr = plainAddr
	} else if !dc.on(DefTLSPlaintextFallback) {
		return nil, err
	}
	dc.fw.logf("W", "TLS failed (%v): retrying without TLS on %s", err, addr)
	nc, perr := net.DialTimeout("tcp", addr, connectTimeout)
	if perr != nil {
		return nil, fmt.Errorf("%w (plaintext fallback: %v)", err, perr)
	}
	return nc, nil
}

// factoryBundle is the trust bundle built into the firmware image (like
// ESP-IDF's certificate bundle): the public roots Azure IoT Hub's chains
// lead to. It is kept apart from the configured anchors (trust.add), is
// used in addition to them for server verification, and is listed by
// trust.list. trust-bundle-no-g2 makes it the pre-2023 bundle.
func (fw *Firmware) factoryBundle() []*x509.Certificate {
	if fw.client.on(DefBundleNoG2) {
		return []*x509.Certificate{certs.BaltimoreCyberTrustRoot()}
	}
	return []*x509.Certificate{certs.DigiCertGlobalRootG2(), certs.BaltimoreCyberTrustRoot()}
}

// trustList answers trust.list: the configured anchors, then the factory
// bundle; with filter given (upper- or lower-case hex fingerprints), only
// the roots among those.
func (fw *Firmware) trustList(filter []string) agentproto.TrustList {
	out := agentproto.TrustList{Roots: []agentproto.TrustedRoot{}}
	fw.nvs.mu.Lock()
	configured := append([]*x509.Certificate(nil), fw.nvs.Trust...)
	fw.nvs.mu.Unlock()
	want := map[string]bool{}
	for _, f := range filter {
		want[strings.ToUpper(f)] = true
	}
	add := func(c *x509.Certificate, source string) {
		fp := certs.Thumbprint(c)
		if len(filter) > 0 && !want[fp] {
			return
		}
		out.Roots = append(out.Roots, agentproto.TrustedRoot{Subject: c.Subject.String(), SHA256: fp, Source: source})
	}
	for _, c := range configured {
		add(c, agentproto.TrustConfigured)
	}
	for _, c := range fw.factoryBundle() {
		add(c, agentproto.TrustFactory)
	}
	return out
}

// verifyChainSkippingHostname makes tlsc check the server chain against its
// roots and the clock but not the host name: the hand-rolled verifier of
// the skip-hostname defects (dps-skip-hostname, aws-skip-hostname).
func verifyChainSkippingHostname(tlsc *tls.Config, now func() time.Time) {
	tlsc.InsecureSkipVerify = true
	tlsc.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		leaf, inter, err := parseChain(raw)
		if err != nil {
			return err
		}
		_, err = leaf.Verify(x509.VerifyOptions{Roots: tlsc.RootCAs, Intermediates: inter, CurrentTime: now()}) // defect: no DNSName
		return err
	}
}
