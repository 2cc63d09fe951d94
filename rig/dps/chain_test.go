package dps

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hilrun/hilrun/certs"
	"github.com/hilrun/hilrun/rig/hub"
)

// TestPresentChain: each bad chain of CERT-005 is refused by a client that
// trusts the hub's root and names the DPS host, for the reason it stands
// for; the own chain is accepted again afterwards; every switch is traced.
func TestPresentChain(t *testing.T) {
	h, e := start(t)
	handshake := func() (tls.ConnectionState, error) {
		tc := &tls.Config{ServerName: e.Host(), RootCAs: e.Hub().RootCAs(), MinVersion: tls.VersionTLS12}
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", e.Addr(), tc)
		if err != nil {
			return tls.ConnectionState{}, err
		}
		defer c.Close()
		return c.ConnectionState(), nil
	}
	for _, tc := range []struct {
		chain Chain
		check func(error) bool
	}{
		{ChainUntrustedRoot, func(err error) bool { var u x509.UnknownAuthorityError; return errors.As(err, &u) }},
		{ChainWrongHost, func(err error) bool { var h x509.HostnameError; return errors.As(err, &h) }},
		{ChainExpired, func(err error) bool {
			var ci x509.CertificateInvalidError
			return errors.As(err, &ci) && ci.Reason == x509.Expired && ci.Cert.NotAfter.Before(time.Now())
		}},
		{ChainNotYetValid, func(err error) bool {
			var ci x509.CertificateInvalidError
			return errors.As(err, &ci) && ci.Reason == x509.Expired && ci.Cert.NotBefore.After(time.Now())
		}},
		{ChainOwn, func(err error) bool { return err == nil }},
	} {
		t.Run(tc.chain.String(), func(t *testing.T) {
			if err := e.PresentChain(tc.chain); err != nil {
				t.Fatal(err)
			}
			st, err := handshake()
			if !tc.check(err) {
				t.Fatalf("%s: handshake error %v", tc.chain, err)
			}
			if tc.chain == ChainOwn && st.PeerCertificates[0].Subject.CommonName != e.Host() {
				t.Fatalf("own chain names %q, want %q", st.PeerCertificates[0].Subject.CommonName, e.Host())
			}
			if tc.chain == ChainUntrustedRoot || tc.chain == ChainExpired {
				// The bad leaves still name the DPS host: only the one
				// thing under test is wrong.
				leaf := e.ServerCertificate().Leaf
				if leaf == nil || leaf.VerifyHostname(e.Host()) != nil {
					t.Fatalf("%s: leaf does not name %s", tc.chain, e.Host())
				}
			}
			var traced bool
			for _, en := range h.Trace().Entries(nil) {
				if en.Type == hub.EventFault && en.Requirement == "CERT-005" && strings.HasSuffix(en.Reason, tc.chain.String()) {
					traced = true
				}
			}
			if !traced {
				t.Fatalf("no trace entry for %s", tc.chain)
			}
		})
	}
	if err := e.PresentChain(Chain(99)); err == nil {
		t.Fatal("unknown chain accepted")
	}
	if got := Chain(99).String(); got != "Chain(99)" {
		t.Fatalf("String of an unknown chain: %q", got)
	}
	if certs.WrongHostName == e.Host() {
		t.Fatal("the wrong host is the DPS host")
	}
}
