package certs

import (
	"crypto/x509"
	_ "embed"
	"fmt"
	"strings"
)

// The public roots of the 2023 Azure IoT root migration, as published by
// their CAs (copied from the Mozilla CA bundle, checked by fingerprint in
// the tests).
var (
	//go:embed public/digicert-global-root-g2.pem
	digiCertG2PEM []byte
	//go:embed public/baltimore-cybertrust-root.pem
	baltimorePEM []byte
)

// SHA-256 fingerprints of the public roots, in [Thumbprint] form.
const (
	DigiCertGlobalRootG2SHA256    = "CB3CCBB76031E5E0138F8DD39A23F9DE47FFC35E43C1144CEA27D46A5AB1CB5F"
	BaltimoreCyberTrustRootSHA256 = "16AF57A9F676B0AB126095AA5EBADEF22AB31119D644AC95CD4B93DBF3F26AEB"
)

// DigiCertGlobalRootG2PEM returns the PEM of DigiCert Global Root G2, the
// root Azure IoT Hub's server chains lead to since the 2023 migration.
func DigiCertGlobalRootG2PEM() []byte { return append([]byte(nil), digiCertG2PEM...) }

// BaltimoreCyberTrustRootPEM returns the PEM of Baltimore CyberTrust Root,
// the root Azure IoT Hub used before 2023 (expired May 2025).
func BaltimoreCyberTrustRootPEM() []byte { return append([]byte(nil), baltimorePEM...) }

// DigiCertGlobalRootG2 returns the parsed DigiCert Global Root G2.
func DigiCertGlobalRootG2() *x509.Certificate { return mustParseEmbedded(digiCertG2PEM) }

// BaltimoreCyberTrustRoot returns the parsed Baltimore CyberTrust Root.
func BaltimoreCyberTrustRoot() *x509.Certificate { return mustParseEmbedded(baltimorePEM) }

func mustParseEmbedded(b []byte) *x509.Certificate {
	cs, err := ParseCertificatesPEM(b)
	if err != nil {
		panic(fmt.Sprintf("certs: embedded public root: %v", err))
	}
	return cs[0]
}

// CloudReadiness is the verdict on a trust store for the real Azure IoT Hub.
type CloudReadiness struct {
	// HasG2 and HasBaltimore say which public roots the store holds.
	HasG2, HasBaltimore bool
	// Ready: the store holds DigiCert Global Root G2, so it validates
	// today's IoT Hub server chains.
	Ready bool
	// MigrationSafe: the store holds both roots, so it validated the hub
	// before and after the 2023 migration.
	MigrationSafe bool
}

// Summary is a one-line human verdict, e.g. for a report.
func (r CloudReadiness) Summary() string {
	switch {
	case r.MigrationSafe:
		return "ready: DigiCert Global Root G2 and Baltimore CyberTrust Root present (migration-safe)"
	case r.Ready:
		return "ready: DigiCert Global Root G2 present"
	case r.HasBaltimore:
		return "NOT ready: only Baltimore CyberTrust Root, DigiCert Global Root G2 missing"
	}
	return "NOT ready: neither DigiCert Global Root G2 nor Baltimore CyberTrust Root present"
}

// CheckCloudReadiness judges a trust store given as SHA-256 fingerprints
// (any case, colons or spaces allowed; see [NormalizeThumbprint]).
func CheckCloudReadiness(fingerprints []string) CloudReadiness {
	var r CloudReadiness
	for _, f := range fingerprints {
		switch NormalizeThumbprint(f) {
		case DigiCertGlobalRootG2SHA256:
			r.HasG2 = true
		case BaltimoreCyberTrustRootSHA256:
			r.HasBaltimore = true
		}
	}
	r.Ready = r.HasG2
	r.MigrationSafe = r.HasG2 && r.HasBaltimore
	return r
}

// CheckCloudReadinessCerts is [CheckCloudReadiness] for parsed certificates.
func CheckCloudReadinessCerts(store []*x509.Certificate) CloudReadiness {
	fps := make([]string, 0, len(store))
	for _, c := range store {
		if c != nil {
			fps = append(fps, Thumbprint(c))
		}
	}
	return CheckCloudReadiness(fps)
}

// IsPublicCloudRoot names a fingerprint if it is one of the public roots
// this package knows ("" otherwise).
func IsPublicCloudRoot(fingerprint string) string {
	switch strings.ToUpper(NormalizeThumbprint(fingerprint)) {
	case DigiCertGlobalRootG2SHA256:
		return "DigiCert Global Root G2"
	case BaltimoreCyberTrustRootSHA256:
		return "Baltimore CyberTrust Root"
	}
	return ""
}
