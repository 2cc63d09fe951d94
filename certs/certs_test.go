package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

const testHost = "hub.example.test"

func mustHubPKI(t *testing.T, host string) *HubPKI {
	t.Helper()
	p, err := NewHubPKI(host, ECDSAP256)
	if err != nil {
		t.Fatalf("NewHubPKI(%q): %v", host, err)
	}
	return p
}

func verify(leaf *Leaf, roots *x509.CertPool, name string, usage x509.ExtKeyUsage, at time.Time) error {
	_, err := leaf.Cert.Verify(x509.VerifyOptions{
		DNSName:       name,
		Roots:         roots,
		Intermediates: PoolOf(leaf.Chain...),
		KeyUsages:     []x509.ExtKeyUsage{usage},
		CurrentTime:   at,
	})
	return err
}

func TestParseKeyType(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want KeyType
	}{
		{"ecdsa", ECDSAP256},
		{"ecdsa-p256", ECDSAP256},
		{"ECDSA", ECDSAP256},
		{"rsa", RSA2048},
		{" rsa-2048 ", RSA2048},
	} {
		got, err := ParseKeyType(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseKeyType(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "ed25519", "rsa-4096"} {
		_, err := ParseKeyType(in)
		if err == nil {
			t.Errorf("ParseKeyType(%q) succeeded", in)
			continue
		}
		for _, v := range []string{"ecdsa", "ecdsa-p256", "rsa", "rsa-2048"} {
			if !strings.Contains(err.Error(), v) {
				t.Errorf("ParseKeyType(%q) error %q does not name %q", in, err, v)
			}
		}
	}
}

func TestCAShape(t *testing.T) {
	p := mustHubPKI(t, testHost)
	root, inter := p.Root, p.Intermediate

	if !root.Cert.IsCA || root.Cert.MaxPathLen != -1 || root.Cert.MaxPathLenZero {
		t.Errorf("root: IsCA=%v MaxPathLen=%d MaxPathLenZero=%v", root.Cert.IsCA, root.Cert.MaxPathLen, root.Cert.MaxPathLenZero)
	}
	if !inter.Cert.IsCA || inter.Cert.MaxPathLen != 0 || !inter.Cert.MaxPathLenZero {
		t.Errorf("intermediate: IsCA=%v MaxPathLen=%d MaxPathLenZero=%v", inter.Cert.IsCA, inter.Cert.MaxPathLen, inter.Cert.MaxPathLenZero)
	}
	for _, ca := range []*CA{root, inter} {
		if want := x509.KeyUsageCertSign | x509.KeyUsageCRLSign; ca.Cert.KeyUsage != want {
			t.Errorf("%s: KeyUsage = %v, want %v", ca.Cert.Subject.CommonName, ca.Cert.KeyUsage, want)
		}
		if o := ca.Cert.Subject.Organization; len(o) != 1 || o[0] != Organization {
			t.Errorf("%s: O = %v", ca.Cert.Subject.CommonName, o)
		}
		if ca.Cert.SerialNumber.Sign() <= 0 || ca.Cert.SerialNumber.BitLen() > 128 {
			t.Errorf("%s: serial %v out of range", ca.Cert.Subject.CommonName, ca.Cert.SerialNumber)
		}
		if _, ok := ca.Key.(*ecdsa.PrivateKey); !ok {
			t.Errorf("%s: key is %T", ca.Cert.Subject.CommonName, ca.Key)
		}
	}
	now := time.Now()
	if d := now.Sub(root.Cert.NotBefore); d < 59*time.Minute || d > 61*time.Minute {
		t.Errorf("root NotBefore is %v before now, want ~1h", d)
	}
	if y := root.Cert.NotAfter.Sub(root.Cert.NotBefore).Hours() / 24 / 365; y < 9.9 || y > 10.1 {
		t.Errorf("root validity %.2f years, want 10", y)
	}
	if y := inter.Cert.NotAfter.Sub(inter.Cert.NotBefore).Hours() / 24 / 365; y < 4.9 || y > 5.1 {
		t.Errorf("intermediate validity %.2f years, want 5", y)
	}

	if got := root.Chain(); len(got) != 0 {
		t.Errorf("root.Chain() has %d certs, want 0", len(got))
	}
	if got := inter.Chain(); len(got) != 1 || !got[0].Equal(inter.Cert) {
		t.Errorf("intermediate.Chain() = %v, want [intermediate]", got)
	}
	if inter.Root() != root || root.Root() != root {
		t.Error("Root() does not return the root")
	}
	if got := p.Server.Chain; len(got) != 1 || !got[0].Equal(inter.Cert) {
		t.Errorf("server leaf chain = %v, want [intermediate]", got)
	}
}

func TestServerVerify(t *testing.T) {
	p := mustHubPKI(t, testHost)
	roots := p.RootPool()
	now := time.Now()
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{testHost, true},
		{"localhost", true},
		{"127.0.0.1", true},
		{"::1", true},
		{"wrong.example", false},
		{"10.0.0.1", false},
	} {
		err := verify(p.Server, roots, tc.name, x509.ExtKeyUsageServerAuth, now)
		if (err == nil) != tc.ok {
			t.Errorf("verify server for %q: err = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
	if p.Server.Cert.Subject.CommonName != testHost {
		t.Errorf("server CN = %q", p.Server.Cert.Subject.CommonName)
	}
	if err := verify(p.Server, roots, "", x509.ExtKeyUsageClientAuth, now); err == nil {
		t.Error("server leaf verified for client auth")
	}
	if err := verify(p.Server, PoolOf(mustHubPKI(t, testHost).Root.Cert), testHost, x509.ExtKeyUsageServerAuth, now); err == nil {
		t.Error("server leaf verified against an unrelated root")
	}
	if p.Server.Cert.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("ECDSA server KeyUsage = %v", p.Server.Cert.KeyUsage)
	}
}

func TestHubServerOptionsIPHost(t *testing.T) {
	for _, host := range []string{"10.1.2.3", "[fd00::1]", "localhost", "127.0.0.1"} {
		o, err := HubServerOptions(host, "")
		if err != nil {
			t.Fatalf("HubServerOptions(%q): %v", host, err)
		}
		if len(o.DNSNames) != 1 || o.DNSNames[0] != "localhost" {
			t.Errorf("%q: DNSNames = %v, want [localhost]", host, o.DNSNames)
		}
		ip := net.ParseIP(strings.Trim(host, "[]"))
		seen := map[string]bool{}
		for _, x := range o.IPAddresses {
			if seen[x.String()] {
				t.Errorf("%q: duplicate IP %v", host, x)
			}
			seen[x.String()] = true
		}
		for _, want := range []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, ip} {
			if want != nil && !seen[want.String()] {
				t.Errorf("%q: IPAddresses %v lack %v", host, o.IPAddresses, want)
			}
		}
	}
	for _, bad := range []string{"", "  ", "hub.example:8883"} {
		if _, err := HubServerOptions(bad, ""); err == nil {
			t.Errorf("HubServerOptions(%q) succeeded", bad)
		}
	}
}

func TestClientCertificates(t *testing.T) {
	p := mustHubPKI(t, testHost)
	roots := p.RootPool()
	for _, cn := range []string{"device-1", "device-1/module-a"} {
		l, err := p.Intermediate.IssueClient(LeafOptions{CommonName: cn})
		if err != nil {
			t.Fatalf("IssueClient(%q): %v", cn, err)
		}
		if l.Cert.Subject.CommonName != cn {
			t.Errorf("CN = %q, want %q", l.Cert.Subject.CommonName, cn)
		}
		if err := verify(l, roots, "", x509.ExtKeyUsageClientAuth, time.Now()); err != nil {
			t.Errorf("verify client %q: %v", cn, err)
		}
		if err := verify(l, roots, "", x509.ExtKeyUsageServerAuth, time.Now()); err == nil {
			t.Errorf("client %q verified for server auth", cn)
		}
	}
	if _, err := p.Intermediate.IssueClient(LeafOptions{}); err == nil {
		t.Error("IssueClient without CommonName succeeded")
	}

	// A client issued straight from the root has an empty chain.
	l, err := p.Root.IssueClient(LeafOptions{CommonName: "direct"})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Chain) != 0 {
		t.Errorf("root-issued leaf chain has %d certs", len(l.Chain))
	}
	if err := verify(l, roots, "", x509.ExtKeyUsageClientAuth, time.Now()); err != nil {
		t.Errorf("verify root-issued client: %v", err)
	}
}

func TestValidityWindow(t *testing.T) {
	p := mustHubPKI(t, testHost)
	now := time.Now()
	for _, tc := range []struct {
		name      string
		notBefore time.Time
		notAfter  time.Time
		reason    x509.InvalidReason
		ok        bool
	}{
		{name: "default", ok: true},
		{name: "expired", notBefore: now.Add(-48 * time.Hour), notAfter: now.Add(-24 * time.Hour), reason: x509.Expired},
		{name: "not yet valid", notBefore: now.Add(24 * time.Hour), reason: x509.Expired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := p.Intermediate.IssueServer(LeafOptions{
				CommonName: testHost, DNSNames: []string{testHost},
				NotBefore: tc.notBefore, NotAfter: tc.notAfter,
			})
			if err != nil {
				t.Fatal(err)
			}
			err = verify(l, p.RootPool(), testHost, x509.ExtKeyUsageServerAuth, now)
			if tc.ok {
				if err != nil {
					t.Fatalf("verify: %v", err)
				}
				if d := l.Cert.NotAfter.Sub(now); d < DefaultLeafValidity-time.Minute || d > DefaultLeafValidity+time.Minute {
					t.Errorf("default NotAfter is %v from now", d)
				}
				return
			}
			var ie x509.CertificateInvalidError
			if !errors.As(err, &ie) || ie.Reason != tc.reason {
				t.Fatalf("verify: err = %v, want CertificateInvalidError reason %v", err, tc.reason)
			}
		})
	}
	if _, err := p.Intermediate.IssueServer(LeafOptions{CommonName: "x", NotBefore: now, NotAfter: now.Add(-time.Hour)}); err == nil {
		t.Error("NotAfter before NotBefore accepted")
	}
	// A default leaf never outlives its issuer.
	ca := &CA{Key: p.Intermediate.Key, Parent: p.Root}
	ca.Cert = mustCopyWithNotAfter(t, p.Root, p.Intermediate, now.Add(48*time.Hour))
	l, err := ca.IssueServer(LeafOptions{CommonName: "clamped"})
	if err != nil {
		t.Fatal(err)
	}
	if !l.Cert.NotAfter.Equal(ca.Cert.NotAfter) {
		t.Errorf("leaf NotAfter %v, want issuer's %v", l.Cert.NotAfter, ca.Cert.NotAfter)
	}
}

// mustCopyWithNotAfter re-signs ca's certificate (same key) with a different
// NotAfter.
func mustCopyWithNotAfter(t *testing.T, parent, ca *CA, notAfter time.Time) *x509.Certificate {
	t.Helper()
	tmpl := *ca.Cert
	tmpl.NotAfter = notAfter
	c, err := createCertificate(&tmpl, parent, ca.Key.Public(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRSA generates exactly two RSA keys: a root and a server leaf.
func TestRSA(t *testing.T) {
	root, err := NewRoot("rsa root", "rsa")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := root.Key.(*rsa.PrivateKey); !ok {
		t.Fatalf("root key is %T", root.Key)
	}
	srv, err := root.IssueServer(LeafOptions{CommonName: testHost, DNSNames: []string{testHost}, KeyType: RSA2048})
	if err != nil {
		t.Fatal(err)
	}
	rk, ok := srv.Key.(*rsa.PrivateKey)
	if !ok || rk.N.BitLen() != 2048 {
		t.Fatalf("server key is %T", srv.Key)
	}
	if want := x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment; srv.Cert.KeyUsage != want {
		t.Errorf("RSA server KeyUsage = %v, want %v", srv.Cert.KeyUsage, want)
	}
	if err := verify(srv, PoolOf(root.Cert), testHost, x509.ExtKeyUsageServerAuth, time.Now()); err != nil {
		t.Errorf("verify RSA server: %v", err)
	}
	// ECDSA client under the RSA root.
	cl, err := root.IssueClient(LeafOptions{CommonName: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	if err := verify(cl, PoolOf(root.Cert), "", x509.ExtKeyUsageClientAuth, time.Now()); err != nil {
		t.Errorf("verify ECDSA client under RSA root: %v", err)
	}

	// Key PEM forms: PKCS#8 round-trip and PKCS#1.
	k8, err := srv.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	k1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)})
	for name, b := range map[string][]byte{"pkcs8": k8, "pkcs1": k1} {
		k, err := ParsePrivateKeyPEM(b)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !keyMatches(k, srv.Cert.PublicKey) {
			t.Errorf("%s: parsed key does not match", name)
		}
	}
}

func TestParsePrivateKeyPEM(t *testing.T) {
	k, err := GenerateKey(ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(k.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	params := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7}})
	b := append(params, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})...)
	got, err := ParsePrivateKeyPEM(b)
	if err != nil {
		t.Fatal(err)
	}
	if !keyMatches(got, k.Public()) {
		t.Error("SEC 1 key does not match")
	}
	for name, bad := range map[string][]byte{
		"empty":     nil,
		"cert only": (&CA{Cert: mustHubPKI(t, testHost).Root.Cert}).CertPEM(),
		"garbage":   pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("nope")}),
		"encrypted": pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte("x")}),
	} {
		if _, err := ParsePrivateKeyPEM(bad); err == nil {
			t.Errorf("%s: ParsePrivateKeyPEM succeeded", name)
		}
	}
}

func TestPEMOutput(t *testing.T) {
	p := mustHubPKI(t, testHost)
	leafOnly, err := ParseCertificatesPEM(p.Server.CertPEM())
	if err != nil || len(leafOnly) != 1 || !leafOnly[0].Equal(p.Server.Cert) {
		t.Fatalf("CertPEM: %v, %d certs", err, len(leafOnly))
	}
	chain, err := ParseCertificatesPEM(p.Server.ChainPEM())
	if err != nil || len(chain) != 2 || !chain[0].Equal(p.Server.Cert) || !chain[1].Equal(p.Intermediate.Cert) {
		t.Fatalf("ChainPEM: %v, %d certs", err, len(chain))
	}
	tc := p.ServerTLSCertificate()
	if len(tc.Certificate) != 2 || !bytes.Equal(tc.Certificate[0], p.Server.Cert.Raw) ||
		!bytes.Equal(tc.Certificate[1], p.Intermediate.Cert.Raw) || tc.Leaf != p.Server.Cert || tc.PrivateKey != p.Server.Key {
		t.Error("TLSCertificate is not leaf+intermediate with key and Leaf")
	}
	for _, ca := range []*CA{p.Root, p.Intermediate} {
		kp, err := ca.KeyPEM()
		if err != nil {
			t.Fatal(err)
		}
		if blk, _ := pem.Decode(kp); blk == nil || blk.Type != "PRIVATE KEY" {
			t.Errorf("CA KeyPEM is not a PKCS#8 block")
		}
		again, err := ParseCA(ca.CertPEM(), kp, ca.Parent)
		if err != nil {
			t.Errorf("ParseCA: %v", err)
		} else if !again.Cert.Equal(ca.Cert) {
			t.Error("ParseCA returned another certificate")
		}
	}
	rootKey, _ := p.Root.KeyPEM()
	if _, err := ParseCA(p.Intermediate.CertPEM(), rootKey, p.Root); err == nil {
		t.Error("ParseCA accepted a mismatched key")
	}
	interKey, _ := p.Intermediate.KeyPEM()
	other := mustHubPKI(t, testHost)
	if _, err := ParseCA(p.Intermediate.CertPEM(), interKey, other.Root); err == nil {
		t.Error("ParseCA accepted a wrong parent")
	}
	if _, err := ParseCertificatesPEM([]byte("not pem")); err == nil {
		t.Error("ParseCertificatesPEM accepted non-PEM input")
	}
}

var upperHex64 = regexp.MustCompile(`^[0-9A-F]{64}$`)

func TestThumbprints(t *testing.T) {
	a, err := SelfSigned(LeafOptions{CommonName: "thumb-device"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := SelfSigned(LeafOptions{CommonName: "thumb-device"})
	if err != nil {
		t.Fatal(err)
	}
	if a.Cert.Subject.String() != a.Cert.Issuer.String() {
		t.Errorf("not self-signed: subject %v issuer %v", a.Cert.Subject, a.Cert.Issuer)
	}
	if err := a.Cert.CheckSignature(a.Cert.SignatureAlgorithm, a.Cert.RawTBSCertificate, a.Cert.Signature); err != nil {
		t.Errorf("self signature: %v", err)
	}
	if len(a.Cert.ExtKeyUsage) != 1 || a.Cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("ExtKeyUsage = %v", a.Cert.ExtKeyUsage)
	}
	if a.Cert.IsCA || len(a.Chain) != 0 {
		t.Errorf("IsCA=%v chain=%d", a.Cert.IsCA, len(a.Chain))
	}

	tp := Thumbprint(a.Cert)
	if !upperHex64.MatchString(tp) {
		t.Errorf("Thumbprint = %q, want 64 upper-case hex digits", tp)
	}
	if Thumbprint(a.Cert) != tp {
		t.Error("Thumbprint not stable")
	}
	reparsed, err := ParseCertificatesPEM(a.CertPEM())
	if err != nil || Thumbprint(reparsed[0]) != tp {
		t.Errorf("Thumbprint changed across PEM round-trip (%v)", err)
	}
	if Thumbprint(b.Cert) == tp {
		t.Error("two self-signed certificates share a thumbprint")
	}
	if s1 := ThumbprintSHA1(a.Cert); !regexp.MustCompile(`^[0-9A-F]{40}$`).MatchString(s1) {
		t.Errorf("ThumbprintSHA1 = %q", s1)
	}

	for in, want := range map[string]string{
		"ab:cd":             "ABCD",
		"AB CD\tef":         "ABCDEF",
		" 01:a2:B3 ":        "01A2B3",
		strings.ToLower(tp): tp,
	} {
		if got := NormalizeThumbprint(in); got != want {
			t.Errorf("NormalizeThumbprint(%q) = %q, want %q", in, got, want)
		}
	}
	if _, err := SelfSigned(LeafOptions{}); err == nil {
		t.Error("SelfSigned without CommonName succeeded")
	}
}

func TestWriteLoadRoundTrip(t *testing.T) {
	p := mustHubPKI(t, testHost)
	dir := filepath.Join(t.TempDir(), "pki")
	if err := p.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" {
		st, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o700 {
			t.Errorf("dir mode %v, want 0700", st.Mode().Perm())
		}
		for _, name := range hubFiles {
			st, err := os.Stat(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			want := fs.FileMode(0o644)
			if strings.HasSuffix(name, ".key") {
				want = 0o600
			}
			if st.Mode().Perm() != want {
				t.Errorf("%s mode %v, want %v", name, st.Mode().Perm(), want)
			}
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != len(hubFiles) {
		t.Errorf("dir holds %d entries, want %d (temp files left?)", len(ents), len(hubFiles))
	}

	q, err := LoadHubPKI(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !q.Root.Cert.Equal(p.Root.Cert) || !q.Intermediate.Cert.Equal(p.Intermediate.Cert) || !q.Server.Cert.Equal(p.Server.Cert) {
		t.Error("loaded certificates differ")
	}
	if q.Intermediate.Parent != q.Root || len(q.Server.Chain) != 1 || !q.Server.Chain[0].Equal(p.Intermediate.Cert) {
		t.Error("loaded hierarchy is wrong")
	}
	if !keyMatches(q.Root.Key, p.Root.Cert.PublicKey) || !keyMatches(q.Server.Key, p.Server.Cert.PublicKey) {
		t.Error("loaded keys differ")
	}
	if err := verify(q.Server, q.RootPool(), testHost, x509.ExtKeyUsageServerAuth, time.Now()); err != nil {
		t.Errorf("verify loaded server: %v", err)
	}

	// Overwriting an existing directory works and keeps its mode.
	if err := p.WriteDir(dir); err != nil {
		t.Fatalf("second WriteDir: %v", err)
	}
}

func TestLoadHubPKIErrors(t *testing.T) {
	p := mustHubPKI(t, testHost)
	other := mustHubPKI(t, testHost)
	otherKey, _ := other.Intermediate.KeyPEM()
	for _, tc := range []struct {
		name     string
		mutate   func(dir string) error
		file     string
		notExist bool
	}{
		{"missing server key", func(d string) error { return os.Remove(filepath.Join(d, ServerKeyFile)) }, ServerKeyFile, true},
		{"missing root", func(d string) error { return os.Remove(filepath.Join(d, RootCertFile)) }, RootCertFile, true},
		{"garbage intermediate key", func(d string) error {
			return os.WriteFile(filepath.Join(d, IntermediateKeyFile), []byte("garbage"), 0o600)
		}, IntermediateKeyFile, false},
		{"mismatched intermediate key", func(d string) error {
			return os.WriteFile(filepath.Join(d, IntermediateKeyFile), otherKey, 0o600)
		}, IntermediateKeyFile, false},
		{"intermediate from another root", func(d string) error {
			if err := os.WriteFile(filepath.Join(d, IntermediateKeyFile), otherKey, 0o600); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(d, IntermediateCertFile), other.Intermediate.CertPEM(), 0o644)
		}, IntermediateCertFile, false},
		{"server from another intermediate", func(d string) error {
			k, _ := other.Server.KeyPEM()
			if err := os.WriteFile(filepath.Join(d, ServerKeyFile), k, 0o600); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(d, ServerCertFile), other.Server.ChainPEM(), 0o644)
		}, ServerCertFile, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := p.WriteDir(dir); err != nil {
				t.Fatal(err)
			}
			if err := tc.mutate(dir); err != nil {
				t.Fatal(err)
			}
			_, err := LoadHubPKI(dir)
			if err == nil {
				t.Fatal("LoadHubPKI succeeded")
			}
			if !strings.Contains(err.Error(), tc.file) {
				t.Errorf("error %q does not name %s", err, tc.file)
			}
			if errors.Is(err, fs.ErrNotExist) != tc.notExist {
				t.Errorf("errors.Is(err, fs.ErrNotExist) = %v, want %v", !tc.notExist, tc.notExist)
			}
			// LoadOrCreate must not paper over a broken directory.
			if _, _, err := LoadOrCreateHubPKI(dir, testHost, ""); err == nil {
				t.Error("LoadOrCreateHubPKI succeeded on a broken directory")
			}
		})
	}

	// A server.pem holding only the leaf still loads, with the intermediate
	// as its chain.
	dir := t.TempDir()
	if err := p.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ServerCertFile), p.Server.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	q, err := LoadHubPKI(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(q.Server.Chain) != 1 || !q.Server.Chain[0].Equal(p.Intermediate.Cert) {
		t.Error("leaf-only server.pem did not get the intermediate as chain")
	}
}

func TestLoadOrCreateHubPKI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "hub")

	p1, created, err := LoadOrCreateHubPKI(dir, testHost, ECDSAP256)
	if err != nil || !created {
		t.Fatalf("first call: created=%v err=%v", created, err)
	}
	p2, created, err := LoadOrCreateHubPKI(dir, testHost, ECDSAP256)
	if err != nil || created {
		t.Fatalf("second call: created=%v err=%v", created, err)
	}
	if !p2.Root.Cert.Equal(p1.Root.Cert) || !p2.Server.Cert.Equal(p1.Server.Cert) {
		t.Error("second call did not reload the same root and leaf")
	}

	const newHost = "other-hub.example.test"
	p3, created, err := LoadOrCreateHubPKI(dir, newHost, ECDSAP256)
	if err != nil || created {
		t.Fatalf("new host: created=%v err=%v", created, err)
	}
	if !p3.Root.Cert.Equal(p1.Root.Cert) || !p3.Intermediate.Cert.Equal(p1.Intermediate.Cert) {
		t.Error("new host changed root or intermediate")
	}
	if p3.Server.Cert.Equal(p1.Server.Cert) {
		t.Fatal("new host did not re-issue the server leaf")
	}
	if err := verify(p3.Server, p1.RootPool(), newHost, x509.ExtKeyUsageServerAuth, time.Now()); err != nil {
		t.Errorf("re-issued leaf: %v", err)
	}
	onDisk, err := LoadHubPKI(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !onDisk.Server.Cert.Equal(p3.Server.Cert) {
		t.Error("re-issued leaf was not written")
	}

	// Asking for an IP the leaf already covers keeps it.
	p4, _, err := LoadOrCreateHubPKI(dir, "127.0.0.1", ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	if !p4.Server.Cert.Equal(p3.Server.Cert) {
		t.Error("leaf re-issued although it covers 127.0.0.1")
	}
}

func TestLoadOrCreateRenewsExpiringLeaf(t *testing.T) {
	p := mustHubPKI(t, testHost)
	o, err := HubServerOptions(testHost, "")
	if err != nil {
		t.Fatal(err)
	}
	o.NotAfter = time.Now().Add(time.Hour)
	if p.Server, err = p.Intermediate.IssueServer(o); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := p.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	q, created, err := LoadOrCreateHubPKI(dir, testHost, "")
	if err != nil || created {
		t.Fatalf("created=%v err=%v", created, err)
	}
	if q.Server.Cert.Equal(p.Server.Cert) {
		t.Fatal("leaf expiring within 24h was kept")
	}
	if time.Until(q.Server.Cert.NotAfter) < 300*24*time.Hour {
		t.Errorf("renewed leaf expires at %v", q.Server.Cert.NotAfter)
	}
	if !q.Root.Cert.Equal(p.Root.Cert) {
		t.Error("root changed")
	}
}

func TestLoadOrCreatePartialDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, RootCertFile), mustHubPKI(t, testHost).Root.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := LoadOrCreateHubPKI(dir, testHost, "")
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want a not-exist error for the missing files", err)
	}
	if _, _, err := LoadOrCreateHubPKI(t.TempDir(), testHost, "dsa"); err == nil {
		t.Error("bad key type accepted")
	}
}

func TestTLSHandshake(t *testing.T) {
	p := mustHubPKI(t, testHost)
	device, err := p.Intermediate.IssueClient(LeafOptions{CommonName: "dev-1"})
	if err != nil {
		t.Fatal(err)
	}
	selfSigned, err := SelfSigned(LeafOptions{CommonName: "dev-2"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		serverName string
		clientAuth tls.ClientAuthType
		noCAs      bool // server advertises no acceptable CAs
		client     *Leaf
		goSelect   bool // let crypto/tls pick the client certificate
		ok         bool
	}{
		{name: "host", serverName: testHost, ok: true},
		{name: "localhost", serverName: "localhost", ok: true},
		{name: "ip", serverName: "127.0.0.1", ok: true},
		{name: "wrong host", serverName: "wrong.example", ok: false},
		{name: "mutual CA", serverName: testHost, clientAuth: tls.RequireAndVerifyClientCert, client: device, ok: true},
		{name: "mutual CA rejects self-signed", serverName: testHost, clientAuth: tls.RequireAndVerifyClientCert, client: selfSigned, ok: false},
		{name: "thumbprint", serverName: testHost, clientAuth: tls.RequireAnyClientCert, noCAs: true, client: selfSigned, ok: true},
		// crypto/tls clients only send a certificate whose issuer is among
		// the CAs the server advertises, so a server that sets ClientCAs
		// never sees a self-signed certificate from a Go client.
		{name: "thumbprint with advertised CAs", serverName: testHost, clientAuth: tls.RequireAnyClientCert, client: selfSigned, goSelect: true, ok: false},
		{name: "thumbprint with advertised CAs, always send", serverName: testHost, clientAuth: tls.RequireAnyClientCert, client: selfSigned, ok: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scfg := &tls.Config{
				Certificates: []tls.Certificate{p.ServerTLSCertificate()},
				ClientAuth:   tc.clientAuth,
				ClientCAs:    p.RootPool(),
				MinVersion:   tls.VersionTLS12,
			}
			if tc.noCAs {
				scfg.ClientCAs = nil
			}
			ccfg := &tls.Config{RootCAs: p.RootPool(), ServerName: tc.serverName, MinVersion: tls.VersionTLS12}
			if tc.client != nil {
				tlsCert := tc.client.TLSCertificate()
				if tc.goSelect {
					ccfg.Certificates = []tls.Certificate{tlsCert}
				} else {
					// Like most device SDKs: send the configured
					// certificate whatever CAs the server names.
					ccfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
						return &tlsCert, nil
					}
				}
			}
			peer, cerr, serr := handshake(t, scfg, ccfg)
			if tc.ok {
				if cerr != nil || serr != nil {
					t.Fatalf("handshake failed: client %v, server %v", cerr, serr)
				}
				if tc.client != nil && Thumbprint(peer) != Thumbprint(tc.client.Cert) {
					t.Error("server saw another client certificate")
				}
				return
			}
			if cerr == nil && serr == nil {
				t.Fatal("handshake succeeded")
			}
			if tc.serverName == "wrong.example" {
				var he x509.HostnameError
				if !errors.As(cerr, &he) {
					t.Errorf("client error = %v, want x509.HostnameError", cerr)
				}
			}
		})
	}
}

// handshake runs a TLS handshake over net.Pipe and returns the client
// certificate the server saw along with both sides' errors.
func handshake(t *testing.T, scfg, ccfg *tls.Config) (*x509.Certificate, error, error) {
	t.Helper()
	sc, cc := net.Pipe()
	deadline := time.Now().Add(10 * time.Second)
	sc.SetDeadline(deadline)
	cc.SetDeadline(deadline)
	srv := tls.Server(sc, scfg)
	cli := tls.Client(cc, ccfg)
	type result struct {
		peer *x509.Certificate
		err  error
	}
	done := make(chan result, 1)
	go func() {
		err := srv.Handshake()
		var peer *x509.Certificate
		if err == nil {
			if pc := srv.ConnectionState().PeerCertificates; len(pc) > 0 {
				peer = pc[0]
			}
		}
		sc.Close()
		done <- result{peer, err}
	}()
	cerr := cli.Handshake()
	if cerr == nil {
		// In TLS 1.3 the client finishes before the server has checked the
		// client certificate; read once so that a rejection reaches us.
		_, cerr = cli.Read(make([]byte, 1))
		if errors.Is(cerr, os.ErrDeadlineExceeded) {
			t.Fatal("client read timed out")
		}
		if cerr != nil && (strings.Contains(cerr.Error(), "EOF") || errors.Is(cerr, net.ErrClosed) || strings.Contains(cerr.Error(), "closed pipe")) {
			cerr = nil
		}
	}
	cc.Close()
	r := <-done
	return r.peer, cerr, r.err
}
