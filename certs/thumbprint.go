package certs

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"strings"
	"unicode"
)

// Thumbprint returns the SHA-256 digest of cert's DER encoding as 64
// upper-case hex digits without separators, the form IoT Hub uses for
// thumbprint (self-signed) authentication (CONN-014).
func Thumbprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

// ThumbprintSHA1 is like [Thumbprint] but uses SHA-1 (40 hex digits). IoT Hub
// still displays and accepts SHA-1 thumbprints for older registrations.
func ThumbprintSHA1(cert *x509.Certificate) string {
	sum := sha1.Sum(cert.Raw)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

// NormalizeThumbprint brings a thumbprint as people paste it ("ab:cd:..",
// "AB CD ..") into the canonical form: colons and white space removed,
// letters upper-cased. It does not check that the result is valid hex.
func NormalizeThumbprint(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ':' || unicode.IsSpace(r) {
			return -1
		}
		return unicode.ToUpper(r)
	}, s)
}
