package certs

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"testing"
	"time"
)

func TestScenarioServerLeaves(t *testing.T) {
	for _, kt := range []KeyType{ECDSAP256, RSA2048} {
		t.Run(string(kt), func(t *testing.T) {
			s, err := NewScenario(testHost, kt)
			if err != nil {
				t.Fatal(err)
			}
			oldPool, newPool := PoolOf(s.OldRoot.Cert), PoolOf(s.NewRoot.Cert)
			bothPool := PoolOf(s.OldRoot.Cert, s.NewRoot.Cert)
			now := time.Now()
			type want int
			const (
				ok want = iota
				unknownAuthority
				invalidTime
				hostname
			)
			for _, tc := range []struct {
				name string
				root *CA
				gen  int
				kind ServerLeafKind
				pool *x509.CertPool
				host string
				at   time.Time
				want want
			}{
				{"valid old root, old trust", s.OldRoot, 1, Valid, oldPool, testHost, now, ok},
				{"valid old root, localhost", s.OldRoot, 1, Valid, oldPool, "localhost", now, ok},
				{"valid old root, 127.0.0.1", s.OldRoot, 1, Valid, oldPool, "127.0.0.1", now, ok},
				{"valid old root, new trust only", s.OldRoot, 1, Valid, newPool, testHost, now, unknownAuthority},
				{"valid new root, old trust only", s.NewRoot, 1, Valid, oldPool, testHost, now, unknownAuthority},
				{"valid new root, both trusted", s.NewRoot, 1, Valid, bothPool, testHost, now, ok},
				{"rolled intermediate, root trusted", s.OldRoot, 2, Valid, oldPool, testHost, now, ok},
				{"expired", s.OldRoot, 1, Expired, oldPool, testHost, now, invalidTime},
				{"expired, checked two years ago", s.OldRoot, 1, Expired, oldPool, testHost, now.AddDate(-1, -6, 0), invalidTime /* intermediate not yet valid */},
				{"not yet valid", s.OldRoot, 1, NotYetValid, oldPool, testHost, now, invalidTime},
				{"not yet valid, checked in two days", s.OldRoot, 1, NotYetValid, oldPool, testHost, now.Add(48 * time.Hour), ok},
				{"wrong host", s.OldRoot, 1, WrongHost, oldPool, testHost, now, hostname},
				{"wrong host, localhost", s.OldRoot, 1, WrongHost, oldPool, "localhost", now, hostname},
				{"wrong host, its own name", s.OldRoot, 1, WrongHost, oldPool, WrongHostName, now, ok},
			} {
				inter, err := s.Intermediate(tc.root, tc.gen)
				if err != nil {
					t.Fatal(err)
				}
				leaf, err := s.ServerLeaf(inter, tc.kind)
				if err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				err = verify(leaf, tc.pool, tc.host, x509.ExtKeyUsageServerAuth, tc.at)
				var ua x509.UnknownAuthorityError
				var ci x509.CertificateInvalidError
				var he x509.HostnameError
				got := map[want]bool{
					ok:               err == nil,
					unknownAuthority: errors.As(err, &ua),
					invalidTime:      errors.As(err, &ci) && ci.Reason == x509.Expired,
					hostname:         errors.As(err, &he),
				}
				if !got[tc.want] {
					t.Errorf("%s: verify error %v (%T), want kind %d", tc.name, err, err, tc.want)
				}
			}
		})
	}
}

func TestScenarioShape(t *testing.T) {
	s, err := NewScenario(testHost, RSA2048)
	if err != nil {
		t.Fatal(err)
	}
	if s.OldRoot.Cert.Equal(s.NewRoot.Cert) || s.OldRoot.Cert.Subject.CommonName == s.NewRoot.Cert.Subject.CommonName {
		t.Error("old and new roots are not independent")
	}
	if _, ok := s.OldRoot.Key.(*rsa.PrivateKey); !ok {
		t.Errorf("RSA scenario root key is %T", s.OldRoot.Key)
	}
	i1, _ := s.Intermediate(s.OldRoot, 1)
	again, _ := s.Intermediate(s.OldRoot, 1)
	if i1 != again {
		t.Error("Intermediate(root, 1) is not stable")
	}
	i2, err := s.RollIntermediate(s.OldRoot)
	if err != nil {
		t.Fatal(err)
	}
	if i2.Cert.Subject.CommonName == i1.Cert.Subject.CommonName || keyMatches(i2.Key, i1.Cert.PublicKey) {
		t.Error("rolled intermediate shares name or key with its predecessor")
	}
	if i2.Parent != s.OldRoot {
		t.Error("rolled intermediate is not under the same root")
	}
	if got, _ := s.Intermediate(s.OldRoot, 2); got != i2 {
		t.Error("Intermediate(root, 2) is not the rolled one")
	}
	// An intermediate pinned as the only anchor does not validate a leaf
	// under the rolled intermediate: what a pinning device runs into.
	leaf, err := s.ServerLeaf(i2, Valid)
	if err != nil {
		t.Fatal(err)
	}
	if err := verify(leaf, PoolOf(i1.Cert), testHost, x509.ExtKeyUsageServerAuth, time.Now()); err == nil {
		t.Error("leaf under rolled intermediate verified against the pinned old intermediate")
	}
	tc, err := s.Server(s.NewRoot, 1, Valid)
	if err != nil {
		t.Fatal(err)
	}
	if len(tc.Certificate) != 2 || tc.Leaf == nil {
		t.Errorf("Server: %d certificates, leaf %v; want leaf + intermediate", len(tc.Certificate), tc.Leaf != nil)
	}
	if _, err := s.Intermediate(s.OldRoot, 0); err == nil {
		t.Error("Intermediate(root, 0) succeeded")
	}
	if ModuleCommonName("dev", "mod") != "dev/mod" {
		t.Error("ModuleCommonName")
	}
}

func TestScenarioFromHub(t *testing.T) {
	p := mustHubPKI(t, testHost)
	s, err := NewScenarioFromHub(p, ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	if s.OldRoot != p.Root || s.Host != testHost {
		t.Error("old root / host not taken from the hub PKI")
	}
	if i, _ := s.Intermediate(s.OldRoot, 1); i != p.Intermediate {
		t.Error("intermediate 1 is not the hub's")
	}
	l, err := s.ServerLeaf(p.Intermediate, Valid)
	if err != nil {
		t.Fatal(err)
	}
	if err := verify(l, p.RootPool(), testHost, x509.ExtKeyUsageServerAuth, time.Now()); err != nil {
		t.Errorf("valid leaf under the hub root: %v", err)
	}
	if _, ok := s.NewRoot.Key.(*ecdsa.PrivateKey); !ok {
		t.Errorf("new root key %T", s.NewRoot.Key)
	}
	if _, err := NewScenarioFromHub(&HubPKI{}, ""); err == nil {
		t.Error("incomplete hub PKI accepted")
	}
}

func TestPublicRoots(t *testing.T) {
	g2, balt := DigiCertGlobalRootG2(), BaltimoreCyberTrustRoot()
	for _, tc := range []struct {
		c      *x509.Certificate
		fp, cn string
	}{
		{g2, "CB:3C:CB:B7:60:31:E5:E0:13:8F:8D:D3:9A:23:F9:DE:47:FF:C3:5E:43:C1:14:4C:EA:27:D4:6A:5A:B1:CB:5F", "DigiCert Global Root G2"},
		{balt, "16:AF:57:A9:F6:76:B0:AB:12:60:95:AA:5E:BA:DE:F2:2A:B3:11:19:D6:44:AC:95:CD:4B:93:DB:F3:F2:6A:EB", "Baltimore CyberTrust Root"},
	} {
		if got := Thumbprint(tc.c); got != NormalizeThumbprint(tc.fp) {
			t.Errorf("%s fingerprint %s, want %s", tc.cn, got, tc.fp)
		}
		if tc.c.Subject.CommonName != tc.cn || !tc.c.IsCA {
			t.Errorf("subject %q, IsCA %v", tc.c.Subject.CommonName, tc.c.IsCA)
		}
		if IsPublicCloudRoot(tc.fp) != tc.cn {
			t.Errorf("IsPublicCloudRoot(%s) = %q", tc.fp, IsPublicCloudRoot(tc.fp))
		}
	}
	other := mustHubPKI(t, testHost).Root.Cert
	for _, tc := range []struct {
		name        string
		store       []*x509.Certificate
		ready, safe bool
	}{
		{"empty", nil, false, false},
		{"test root only", []*x509.Certificate{other}, false, false},
		{"Baltimore only", []*x509.Certificate{balt, other}, false, false},
		{"G2 only", []*x509.Certificate{g2}, true, false},
		{"both", []*x509.Certificate{balt, other, g2}, true, true},
	} {
		r := CheckCloudReadinessCerts(tc.store)
		if r.Ready != tc.ready || r.MigrationSafe != tc.safe {
			t.Errorf("%s: %+v (%s), want ready=%v safe=%v", tc.name, r, r.Summary(), tc.ready, tc.safe)
		}
	}
	if r := CheckCloudReadiness([]string{"cb:3c:cb:b7:60:31:e5:e0:13:8f:8d:d3:9a:23:f9:de:47:ff:c3:5e:43:c1:14:4c:ea:27:d4:6a:5a:b1:cb:5f"}); !r.Ready {
		t.Error("lower-case colon fingerprint of G2 not recognised")
	}
}
