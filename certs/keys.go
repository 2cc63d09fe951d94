package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/hilrun/hilrun/rig/secrets"
)

// KeyType selects the algorithm and size of a generated key.
type KeyType string

const (
	// ECDSAP256 is an ECDSA key on NIST P-256. It is the default everywhere a
	// KeyType may be left empty.
	ECDSAP256 KeyType = "ecdsa-p256"
	// RSA2048 is a 2048-bit RSA key.
	RSA2048 KeyType = "rsa-2048"
)

const validKeyTypes = "ecdsa, ecdsa-p256, rsa, rsa-2048"

// ParseKeyType turns a user-supplied name into a KeyType. It accepts
// "ecdsa" and "ecdsa-p256" for [ECDSAP256] and "rsa" and "rsa-2048" for
// [RSA2048], ignoring case and surrounding space.
func ParseKeyType(s string) (KeyType, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "ecdsa", "ecdsa-p256":
		return ECDSAP256, nil
	case "rsa", "rsa-2048":
		return RSA2048, nil
	}
	return "", fmt.Errorf("certs: unknown key type %q (valid: %s)", s, validKeyTypes)
}

// resolve maps the empty KeyType to ECDSAP256 and aliases to their
// canonical names.
func (kt KeyType) resolve() (KeyType, error) {
	if kt == "" {
		return ECDSAP256, nil
	}
	return ParseKeyType(string(kt))
}

// GenerateKey creates a new private key of type kt ("" means ECDSAP256).
func GenerateKey(kt KeyType) (crypto.Signer, error) {
	kt, err := kt.resolve()
	if err != nil {
		return nil, err
	}
	// Every key is registered with rig/secrets the moment it exists, so its
	// PEM, DER or private numbers are masked in any trace, log or report.
	switch kt {
	case ECDSAP256:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("certs: generate ECDSA key: %w", err)
		}
		secrets.AddPrivateKey("generated ECDSA P-256 private key", k)
		return k, nil
	case RSA2048:
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, fmt.Errorf("certs: generate RSA key: %w", err)
		}
		secrets.AddPrivateKey("generated RSA 2048 private key", k)
		return k, nil
	}
	panic("unreachable")
}

// marshalKeyPEM encodes k as an unencrypted PKCS#8 "PRIVATE KEY" block.
func marshalKeyPEM(k crypto.Signer) ([]byte, error) {
	if k == nil {
		return nil, errors.New("certs: no private key")
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("certs: marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParsePrivateKeyPEM returns the first private key found in b. It
// understands PKCS#8 ("PRIVATE KEY"), PKCS#1 ("RSA PRIVATE KEY") and SEC 1
// ("EC PRIVATE KEY") blocks; other blocks, such as certificates or
// "EC PARAMETERS", are skipped. Encrypted keys are rejected.
func ParsePrivateKeyPEM(b []byte) (crypto.Signer, error) {
	k, err := parsePrivateKeyPEM(b)
	if err == nil {
		// A key loaded from disk (a PKI directory, a flashed board's
		// files) is as secret as a generated one.
		secrets.AddPrivateKey("private key loaded from PEM", k)
	}
	return k, err
}

func parsePrivateKeyPEM(b []byte) (crypto.Signer, error) {
	rest := b
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("certs: no private key PEM block found")
		}
		switch block.Type {
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("certs: parse PKCS#8 private key: %w", err)
			}
			s, ok := k.(crypto.Signer)
			if !ok {
				return nil, fmt.Errorf("certs: PKCS#8 key of type %T cannot sign", k)
			}
			return s, nil
		case "RSA PRIVATE KEY":
			if _, enc := block.Headers["DEK-Info"]; enc {
				return nil, errors.New("certs: encrypted RSA private keys are not supported")
			}
			k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("certs: parse PKCS#1 RSA private key: %w", err)
			}
			return k, nil
		case "EC PRIVATE KEY":
			if _, enc := block.Headers["DEK-Info"]; enc {
				return nil, errors.New("certs: encrypted EC private keys are not supported")
			}
			k, err := x509.ParseECPrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("certs: parse SEC 1 EC private key: %w", err)
			}
			return k, nil
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("certs: encrypted PKCS#8 private keys are not supported")
		}
	}
}

// ParseCertificatesPEM returns every "CERTIFICATE" block in b, in order.
// Other block types are skipped. It is an error if b holds no certificate.
func ParseCertificatesPEM(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := b
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certs: parse certificate #%d: %w", len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("certs: no CERTIFICATE PEM block found")
	}
	return out, nil
}

// PoolOf returns a new pool holding the given certificates; nil entries are
// ignored.
func PoolOf(cas ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range cas {
		if c != nil {
			p.AddCert(c)
		}
	}
	return p
}

// keyMatches reports whether k is the private half of pub.
func keyMatches(k crypto.Signer, pub crypto.PublicKey) bool {
	eq, ok := k.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(pub)
}

func certPEM(c ...*x509.Certificate) []byte {
	var out []byte
	for _, x := range c {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: x.Raw})...)
	}
	return out
}
