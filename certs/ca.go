package certs

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// Organization is the subject organization of every CA this package creates.
const Organization = "hilrun test PKI"

const (
	rootValidityYears         = 10
	intermediateValidityYears = 5
	// backdate shifts NotBefore into the past so that peers whose clocks lag
	// a little still accept freshly issued certificates.
	backdate = time.Hour
)

// CA is a certificate authority: a CA certificate with its private key.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// Parent is the CA that signed Cert, or nil for a root.
	Parent *CA
}

// NewRoot creates a self-signed root CA valid for ten years, starting one
// hour in the past. Its path length is unconstrained. An empty kt means
// ECDSAP256.
func NewRoot(commonName string, kt KeyType) (*CA, error) {
	key, err := GenerateKey(kt)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		Subject:               caSubject(commonName),
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(-backdate).AddDate(rootValidityYears, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            -1,
	}
	cert, err := createCertificate(tmpl, nil, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("certs: create root %q: %w", commonName, err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// NewIntermediate creates a CA signed by ca, valid for five years from one
// hour ago (cut short if ca expires sooner), with a path length of zero: it
// may sign leaves but not further CAs. A chain that puts another CA below
// it therefore fails verification, which a negative test may want.
func (ca *CA) NewIntermediate(commonName string, kt KeyType) (*CA, error) {
	key, err := GenerateKey(kt)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	notBefore := now.Add(-backdate)
	notAfter := notBefore.AddDate(intermediateValidityYears, 0, 0)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		Subject:               caSubject(commonName),
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	cert, err := createCertificate(tmpl, ca, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("certs: create intermediate %q: %w", commonName, err)
	}
	return &CA{Cert: cert, Key: key, Parent: ca}, nil
}

// ParseCA builds a CA from PEM-encoded certificate and key. The first
// certificate in certPEM is used; the key must match it. parent may be nil
// for a root; otherwise the certificate must carry a valid signature from
// parent.
func ParseCA(certPEM, keyPEM []byte, parent *CA) (*CA, error) {
	cs, err := ParseCertificatesPEM(certPEM)
	if err != nil {
		return nil, err
	}
	key, err := ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, err
	}
	c := cs[0]
	if !c.IsCA {
		return nil, fmt.Errorf("certs: certificate %q is not a CA", c.Subject.CommonName)
	}
	if !keyMatches(key, c.PublicKey) {
		return nil, fmt.Errorf("certs: private key does not match certificate %q", c.Subject.CommonName)
	}
	if parent != nil {
		if err := c.CheckSignatureFrom(parent.Cert); err != nil {
			return nil, fmt.Errorf("certs: certificate %q is not signed by %q: %w",
				c.Subject.CommonName, parent.Cert.Subject.CommonName, err)
		}
	}
	return &CA{Cert: c, Key: key, Parent: parent}, nil
}

// Chain returns ca and its ancestors, nearest first, stopping before the
// root. This is what a peer presenting a certificate issued by ca must send
// after its own certificate. It is empty for a root.
func (ca *CA) Chain() []*x509.Certificate {
	var out []*x509.Certificate
	for c := ca; c != nil && c.Parent != nil; c = c.Parent {
		out = append(out, c.Cert)
	}
	return out
}

// Root returns the top of ca's hierarchy (ca itself for a root).
func (ca *CA) Root() *CA {
	c := ca
	for c.Parent != nil {
		c = c.Parent
	}
	return c
}

// CertPEM returns ca's certificate as a PEM "CERTIFICATE" block.
func (ca *CA) CertPEM() []byte { return certPEM(ca.Cert) }

// KeyPEM returns ca's private key as an unencrypted PKCS#8 PEM block.
func (ca *CA) KeyPEM() ([]byte, error) { return marshalKeyPEM(ca.Key) }

func caSubject(cn string) pkix.Name {
	return pkix.Name{CommonName: cn, Organization: []string{Organization}}
}

var serialLimit = new(big.Int).Lsh(big.NewInt(1), 128)

// newSerial returns a random positive serial number below 2^128.
func newSerial() (*big.Int, error) {
	for {
		n, err := rand.Int(rand.Reader, serialLimit)
		if err != nil {
			return nil, fmt.Errorf("certs: serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// createCertificate signs tmpl with issuer (self-signs with selfKey when
// issuer is nil) and parses the result.
func createCertificate(tmpl *x509.Certificate, issuer *CA, pub crypto.PublicKey, selfKey crypto.Signer) (*x509.Certificate, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	parent, signer := tmpl, selfKey
	if issuer != nil {
		if issuer.Cert == nil || issuer.Key == nil {
			return nil, errors.New("issuing CA has no certificate or key")
		}
		parent, signer = issuer.Cert, issuer.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}
