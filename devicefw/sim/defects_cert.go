package sim

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"

	"github.com/hilrun/hilrun/devicefw/agentproto"
)

// Defect switches added for the CERT and X.509 specs (certificate rotation,
// root migration, trust updates, X.509 identities). Each has a row in
// DEFECTS.md ("Added for the CERT and X.509 specs").
const (
	DefPinIntermediate   = "tls-pin-intermediate"
	DefTrustSingleRoot   = "trust-single-root"
	DefTrustNeedsReset   = "trust-update-needs-reset"
	DefCertRotateKeepOld = "cert-rotate-keeps-old"
	DefX509PrimaryOnly   = "x509-primary-only"
	DefSASRotateIgnored  = "sas-rotate-ignored"
	DefX509FactoryCert   = "x509-factory-cert"
	DefModuleClientID    = "module-clientid-device-only"
	DefModuleCertDevCN   = "module-cert-device-cn"
)

// certDefects lists them; see Defects.
var certDefects = []Defect{
	{DefPinIntermediate, "CERT-001", "after the first verified handshake the client pins the intermediate CA the hub presented: later chains without that intermediate are refused, even under a trusted root (until trust.clear)"},
	{DefTrustSingleRoot, "CERT-002", "the trust store has one slot: after trust.clear only the first trust.add is kept, further roots are acknowledged but dropped, so the first root is the sole anchor"},
	{DefTrustNeedsReset, "CERT-003", "the TLS stack reads the trust store once per boot (at the first connection attempt): trust.clear and trust.add are stored but take effect only after a reset"},
	{DefCertRotateKeepOld, "CERT-006", "creds.rotate with a certificate is acknowledged (cert-rotated event, reconnect) but the new certificate is not installed: the client keeps presenting the old one"},
	{DefX509PrimaryOnly, "CERT-006", "a secondary device certificate (cert.set slot secondary) is stored but never presented: after CONNACK 5 for the first certificate the client stops"},
	{DefSASRotateIgnored, "CERT-007", "creds.rotate with a key is acknowledged (key-rotated event, reconnect) but tokens keep being signed with the previous key"},
	{DefX509FactoryCert, "CONN-015", "the device presents its factory certificate (self-signed, CN hilrun-factory-{board}) instead of the certificate provisioned for its identity"},
	{DefModuleClientID, "MOD-001", "a module connects with ClientId {deviceId}: the module ID is only in the Username"},
	{DefModuleCertDevCN, "MOD-006", "a module authenticating with X.509 presents a self-signed certificate whose CN is its parent device ID (the device's certificate reused for its modules) instead of the provisioned {deviceId}/{moduleId} one"},
}

// certClientState is the client's state for this file's defects and the
// secondary certificate fallback (guarded by deviceClient.mu).
type certClientState struct {
	pinned       []byte              // tls-pin-intermediate: DER of the pinned intermediate
	bootTrust    []*x509.Certificate // trust-update-needs-reset: the roots read at the first attempt
	trustLoaded  bool
	swapped      bool // the secondary certificate was switched to after a refusal ...
	swapConnects int  // ... when the client had this many successful connections
}

// certTLS applies the trust defects to an attempt's TLS configuration.
func (dc *deviceClient) certTLS(tlsc *tls.Config, cc connConfig) {
	if dc.on(DefTrustNeedsReset) {
		dc.mu.Lock()
		if !dc.cert.trustLoaded {
			dc.cert.bootTrust, dc.cert.trustLoaded = cc.trust, true
		}
		roots := dc.cert.bootTrust
		dc.mu.Unlock()
		tlsc.RootCAs = x509.NewCertPool()
		for _, r := range roots {
			tlsc.RootCAs.AddCert(r)
		}
	}
	if dc.on(DefPinIntermediate) {
		prev := tlsc.VerifyConnection
		tlsc.VerifyConnection = func(st tls.ConnectionState) error {
			if prev != nil {
				if err := prev(st); err != nil {
					return err
				}
			}
			if len(st.PeerCertificates) < 2 {
				return nil
			}
			dc.mu.Lock()
			defer dc.mu.Unlock()
			if dc.cert.pinned == nil {
				dc.cert.pinned = st.PeerCertificates[1].Raw
				return nil
			}
			for _, c := range st.PeerCertificates[1:] {
				if bytes.Equal(c.Raw, dc.cert.pinned) {
					return nil
				}
			}
			// Reported like any failed chain check (unrecoverable, RECON-004).
			return x509.CertificateInvalidError{Cert: st.PeerCertificates[0], Reason: x509.NoValidChains,
				Detail: "the server chain does not contain the pinned intermediate certificate"}
		}
	}
}

// trustReset forgets the pinned intermediate (trust.clear).
func (dc *deviceClient) trustReset() {
	dc.mu.Lock()
	dc.cert.pinned = nil
	dc.mu.Unlock()
}

// trustAddDropped reports whether trust.add must drop its root
// (trust-single-root) and the number of roots held.
func (fw *Firmware) trustAddDropped() (bool, int) {
	on := fw.client.on(DefTrustSingleRoot)
	fw.nvs.mu.Lock()
	defer fw.nvs.mu.Unlock()
	return on && len(fw.nvs.Trust) > 0, len(fw.nvs.Trust)
}

// setCert stores a cert.set certificate in its slot.
// A new device certificate also re-arms the fallback to the secondary one.
func (fw *Firmware) setCert(slot string, cert *tls.Certificate) *agentproto.Error {
	fw.nvs.mu.Lock()
	switch slot {
	case "":
		fw.nvs.Cert, fw.nvs.Cert2 = cert, nil
	case agentproto.SlotSecondary:
		fw.nvs.Cert2 = cert
	default:
		fw.nvs.mu.Unlock()
		return agentproto.Errorf(agentproto.ErrBadArgs, "cert.set slot %q: want \"\" or %q", slot, agentproto.SlotSecondary)
	}
	fw.nvs.mu.Unlock()
	fw.client.mu.Lock()
	fw.client.cert.swapped = false
	fw.client.mu.Unlock()
	return nil
}

// useSecondaryCert switches to the secondary device certificate after the
// hub refused the current one (CONNACK 4 or 5, CERT-006) and reports
// whether it did; at most once until the next successful connection.
func (dc *deviceClient) useSecondaryCert(cc connConfig, rc byte) bool {
	if cc.authType != "x509" || (rc != 4 && rc != 5) || dc.on(DefX509PrimaryOnly) {
		return false
	}
	dc.mu.Lock()
	if dc.cert.swapped && dc.connects <= dc.cert.swapConnects {
		dc.mu.Unlock()
		return false
	}
	n := dc.fw.nvs
	n.mu.Lock()
	if n.Cert2 == nil {
		n.mu.Unlock()
		dc.mu.Unlock()
		return false
	}
	n.Cert, n.Cert2 = n.Cert2, n.Cert
	n.mu.Unlock()
	dc.cert.swapped, dc.cert.swapConnects = true, dc.connects
	dc.mu.Unlock()
	dc.fw.changed(changedNVS)
	dc.fw.logf("W", "hub refused the device certificate (CONNACK %d): switching to the secondary certificate", rc)
	dc.emit(agentproto.EvCreds, agentproto.CredsEvent{Kind: "cert-rotated"})
	return true
}

// rotationIgnored reports whether creds.rotate must acknowledge a
// rotation without installing it (cert-rotate-keeps-old, sas-rotate-ignored).
func (dc *deviceClient) rotationIgnored(a agentproto.RotateArgs) bool {
	if a.Key != "" {
		return dc.on(DefSASRotateIgnored)
	}
	return dc.on(DefCertRotateKeepOld)
}

// factoryCert replaces the presented certificate with the board's factory
// certificate (x509-factory-cert, CONN-015).
func (dc *deviceClient) factoryCert(cert *tls.Certificate) *tls.Certificate {
	if !dc.on(DefX509FactoryCert) {
		return cert
	}
	return selfSignedCN(cert, "hilrun-factory-"+dc.fw.opts.Board)
}

// moduleDeviceCert replaces a module's certificate with a self-signed one
// whose CN is the parent device ID (module-cert-device-cn, MOD-006).
func (dc *deviceClient) moduleDeviceCert(cc connConfig, cert *tls.Certificate) *tls.Certificate {
	if !cc.id.IsModule() || !dc.on(DefModuleCertDevCN) {
		return cert
	}
	return selfSignedCN(cert, cc.id.DeviceID)
}

// selfSignedCN returns a fresh self-signed client certificate with CN cn
// (cert itself if one cannot be made).
func selfSignedCN(cert *tls.Certificate, cn string) *tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return cert
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:   pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return cert
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// moduleClientID is the CONNECT ClientId of a module (MOD-001).
func (dc *deviceClient) moduleClientID(cc connConfig, clientID string) string {
	if cc.id.IsModule() && dc.on(DefModuleClientID) {
		return cc.id.DeviceID
	}
	return clientID
}

// certPEMs encodes a certificate chain and its key as PEM (NVS).
func certPEMs(cert *tls.Certificate) (string, string, error) {
	var chain bytes.Buffer
	for _, der := range cert.Certificate {
		chain.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	}
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return "", "", fmt.Errorf("device key: %w", err)
	}
	return chain.String(), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key})), nil
}
