package certs

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"time"
)

// DefaultLeafValidity is how long a leaf stays valid when LeafOptions.NotAfter
// is zero.
const DefaultLeafValidity = 365 * 24 * time.Hour

// LeafOptions describes an end-entity certificate.
type LeafOptions struct {
	// CommonName is the subject CN. For device and module client
	// certificates IoT Hub expects the device ID, or "deviceId/moduleId".
	// Note that Go and most modern TLS stacks ignore the CN when checking a
	// server's host name: only DNSNames and IPAddresses count.
	CommonName  string
	DNSNames    []string
	IPAddresses []net.IP
	// NotBefore defaults to one hour ago. NotAfter defaults to one year from
	// now (or one year after NotBefore, if that is later), shortened to the
	// issuer's own expiry. Explicit values are used as given, so a test can
	// create expired, not-yet-valid or issuer-outliving certificates.
	NotBefore, NotAfter time.Time
	// KeyType defaults to ECDSAP256.
	KeyType KeyType
}

// Leaf is an end-entity certificate with its key.
type Leaf struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// Chain holds the intermediates between Cert and the root, nearest
	// first. It excludes both Cert and the root and is empty for leaves
	// signed directly by a root or self-signed.
	Chain []*x509.Certificate
}

type leafKind int

const (
	serverLeaf leafKind = iota
	clientLeaf
)

// IssueServer issues a TLS server certificate signed by ca. It carries the
// serverAuth extended key usage and the digitalSignature key usage, plus
// keyEncipherment for RSA keys. At least a CommonName or one SAN is
// required.
func (ca *CA) IssueServer(o LeafOptions) (*Leaf, error) {
	if o.CommonName == "" && len(o.DNSNames) == 0 && len(o.IPAddresses) == 0 {
		return nil, errors.New("certs: server certificate needs a CommonName, DNSNames or IPAddresses")
	}
	return issueLeaf(ca, o, serverLeaf)
}

// IssueClient issues a TLS client certificate signed by ca, for X.509 CA
// authentication of a device ("deviceId") or module ("deviceId/moduleId");
// the identity goes in CommonName, which is required. It carries the
// clientAuth extended key usage and the digitalSignature key usage.
func (ca *CA) IssueClient(o LeafOptions) (*Leaf, error) {
	if o.CommonName == "" {
		return nil, errors.New("certs: client certificate needs a CommonName (device or device/module ID)")
	}
	return issueLeaf(ca, o, clientLeaf)
}

// SelfSigned creates a self-signed client certificate, as used for
// thumbprint authentication (CONN-014): the hub trusts it by its
// [Thumbprint], not by any chain. CommonName is required.
func SelfSigned(o LeafOptions) (*Leaf, error) {
	if o.CommonName == "" {
		return nil, errors.New("certs: self-signed certificate needs a CommonName (device or device/module ID)")
	}
	return issueLeaf(nil, o, clientLeaf)
}

func issueLeaf(ca *CA, o LeafOptions, kind leafKind) (*Leaf, error) {
	if ca != nil && (ca.Cert == nil || ca.Key == nil) {
		return nil, errors.New("certs: issuing CA has no certificate or key")
	}
	kt, err := o.KeyType.resolve()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	notBefore := o.NotBefore
	if notBefore.IsZero() {
		notBefore = now.Add(-backdate)
	}
	notAfter := o.NotAfter
	if notAfter.IsZero() {
		notAfter = now.Add(DefaultLeafValidity)
		if !notAfter.After(notBefore) {
			notAfter = notBefore.Add(DefaultLeafValidity)
		}
		if ca != nil && notAfter.After(ca.Cert.NotAfter) {
			notAfter = ca.Cert.NotAfter
		}
	}
	if !notAfter.After(notBefore) {
		return nil, fmt.Errorf("certs: leaf %q: NotAfter %s is not after NotBefore %s",
			o.CommonName, notAfter.Format(time.RFC3339), notBefore.Format(time.RFC3339))
	}

	key, err := GenerateKey(kt)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: o.CommonName},
		DNSNames:              append([]string(nil), o.DNSNames...),
		IPAddresses:           append([]net.IP(nil), o.IPAddresses...),
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	switch kind {
	case serverLeaf:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		if kt == RSA2048 {
			tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
		}
	case clientLeaf:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	cert, err := createCertificate(tmpl, ca, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("certs: create leaf %q: %w", o.CommonName, err)
	}
	l := &Leaf{Cert: cert, Key: key}
	if ca != nil {
		l.Chain = ca.Chain()
	}
	return l, nil
}

// TLSCertificate returns l in the form crypto/tls wants: the leaf followed by
// its chain, the private key, and the parsed leaf.
func (l *Leaf) TLSCertificate() tls.Certificate {
	raw := make([][]byte, 0, 1+len(l.Chain))
	raw = append(raw, l.Cert.Raw)
	for _, c := range l.Chain {
		raw = append(raw, c.Raw)
	}
	return tls.Certificate{Certificate: raw, PrivateKey: l.Key, Leaf: l.Cert}
}

// CertPEM returns only the leaf certificate in PEM form.
func (l *Leaf) CertPEM() []byte { return certPEM(l.Cert) }

// ChainPEM returns the leaf followed by its intermediates in PEM form, the
// usual content of a server's or device's certificate file.
func (l *Leaf) ChainPEM() []byte {
	return certPEM(append([]*x509.Certificate{l.Cert}, l.Chain...)...)
}

// KeyPEM returns the leaf's private key as an unencrypted PKCS#8 PEM block.
func (l *Leaf) KeyPEM() ([]byte, error) { return marshalKeyPEM(l.Key) }
