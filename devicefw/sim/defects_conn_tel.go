package sim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"math/big"
	"net"
	"strings"
	"time"

	"github.com/hilrun/hilrun/rig/iothub"
)

// Defect switches added for the CONN and TEL conformance specs. Each needs a row
// in DEFECTS.md (section "CONN and TEL specs") and an implementation at the point
// in the client where the rule is kept.
const (
	DefPlaintext        = "mqtt-plaintext"
	DefProtocol31       = "mqtt-protocol-3"
	DefSASNoPrefix      = "sas-no-prefix"
	DefSASResourceLower = "sas-sr-lowercase"
	DefKeyAsPassword    = "sas-key-as-password"
	DefX509AlsoSAS      = "x509-also-sas"
	DefX509LeafOnly     = "x509-leaf-only"
	DefX509WrongCert    = "x509-wrong-cert"
	DefReconnectOverlap = "reconnect-overlap"
	DefSubscribeSix     = "subscribe-six-filters"
	DefKeepAliveZero    = "keepalive-zero"
	DefNoPing           = "no-ping"
	DefMessageIDBraces  = "message-id-braces"
)

// connTelDefects lists them; see Defects.
var connTelDefects = []Defect{
	{DefPlaintext, "CONN-002", "MQTT is spoken in plaintext: the client dials TCP to the hub endpoint without TLS"},
	{DefProtocol31, "CONN-001", "CONNECT uses MQTT 3.1 (protocol name MQIsdp, level 3) instead of 3.1.1"},
	{DefSASNoPrefix, "CONN-007", "the CONNECT Password is the bare token sr=…&sig=…&se=… without the \"SharedAccessSignature \" prefix"},
	{DefSASResourceLower, "CONN-008", "the SAS sr names the device ID lower-cased (the token is signed over that sr)"},
	{DefKeyAsPassword, "CONN-011", "the CONNECT Password is the raw device key instead of a SAS token"},
	{DefX509AlsoSAS, "CONN-012", "an X.509 device also sends a SAS token (signed with a made-up key) as the CONNECT Password"},
	{DefX509LeafOnly, "CONN-013", "the TLS Certificate message carries only the leaf, without its intermediates"},
	{DefX509WrongCert, "CONN-014", "the device presents a freshly generated self-signed certificate instead of the configured one"},
	{DefReconnectOverlap, "CONN-016", "on a deliberate reconnect (token renewal, rotated credentials) the new connection is opened before the old one is closed; the old one is closed after the new CONNACK"},
	{DefSubscribeSix, "CONN-019", "the SUBSCRIBE also asks for $iothub/twin/# and $iothub/methods/POST/reboot/#: six filters"},
	{DefKeepAliveZero, "CONN-023", "CONNECT declares keep-alive 0 and the client never pings"},
	{DefNoPing, "CONN-023", "CONNECT declares the configured keep-alive but no PINGREQ is ever sent"},
	{DefMessageIDBraces, "TEL-009", "message IDs are sent wrapped in braces (\"{id}\", .NET Guid \"B\" style); '{' and '}' are outside TEL-009's character set"},
}

// passwordDefects applies the CONNECT Password defects to the password the
// client built (a SAS token, or "" for X.509).
func (dc *deviceClient) passwordDefects(cc connConfig, password string) string {
	switch {
	case cc.authType == "sas" && dc.on(DefKeyAsPassword):
		return cc.key
	case cc.authType == "sas" && dc.on(DefSASNoPrefix):
		return strings.TrimPrefix(password, "SharedAccessSignature ")
	case cc.authType == "x509" && dc.on(DefX509AlsoSAS):
		made := base64.StdEncoding.EncodeToString([]byte("hilrun made-up key, not the device's"))
		tok, err := iothub.NewSASToken(iothub.DeviceResourceURI(cc.host, cc.id), made, dc.fw.rtc.Now().Add(cc.ttl), "")
		if err == nil {
			return tok
		}
	}
	return password
}

// resourceURI is the SAS sr the client signs (CONN-008).
func (dc *deviceClient) resourceURI(cc connConfig) string {
	id := cc.id
	if dc.on(DefSASResourceLower) {
		id.DeviceID = strings.ToLower(id.DeviceID)
	}
	id.DeviceID = dc.srDeviceID(id.DeviceID) // sas-sr-id-encoded-twice
	return iothub.DeviceResourceURI(cc.host, id)
}

// clientCert is the certificate presented in the TLS handshake (CONN-013, CONN-014).
func (dc *deviceClient) clientCert(cert *tls.Certificate) *tls.Certificate {
	switch {
	case dc.on(DefX509LeafOnly) && len(cert.Certificate) > 1:
		leaf := *cert
		leaf.Certificate = cert.Certificate[:1]
		return &leaf
	case dc.on(DefX509WrongCert):
		if other, err := selfSignedLike(cert); err == nil {
			return other
		}
	}
	return cert
}

// selfSignedLike makes a new self-signed client certificate with the same
// subject as cert (defect x509-wrong-cert).
func selfSignedLike(cert *tls.Certificate) (*tls.Certificate, error) {
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: leaf.Subject,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// protocolVersion is the MQTT protocol level of CONNECT (CONN-001).
func (dc *deviceClient) protocolVersion() uint {
	if dc.on(DefProtocol31) {
		return 3
	}
	return 4
}

// keepAlive is the keep-alive declared in CONNECT (CONN-023).
func (dc *deviceClient) keepAlive(cc connConfig) time.Duration {
	if dc.on(DefKeepAliveZero) {
		return 0
	}
	return cc.keepAlive
}

// dial opens the MQTT transport to addr: TLS (CONN-002), or with defects
// plain TCP or a connection that swallows PINGREQ (CONN-023).
func (dc *deviceClient) dial(addr string, tlsc *tls.Config, plainAddr string) (net.Conn, error) {
	var nc net.Conn
	var err error
	if dc.on(DefPlaintext) {
		nc, err = net.DialTimeout("tcp", addr, connectTimeout)
	} else {
		nc, err = tls.DialWithDialer(&net.Dialer{Timeout: connectTimeout}, "tcp", addr, tlsc)
		if pc, perr := dc.afterTLSFailure(addr, plainAddr, err); pc != nil || err != nil { // defects_tls.go
			nc, err = pc, perr
		}
	}
	if err == nil && dc.on(DefNoPing) {
		nc = noPingConn{nc}
	}
	return nc, err
}

// noPingConn drops PINGREQ packets: paho writes each packet with one Write,
// and a PINGREQ is exactly the two bytes C0 00.
type noPingConn struct{ net.Conn }

func (c noPingConn) Write(p []byte) (int, error) {
	if len(p) == 2 && p[0] == 0xC0 && p[1] == 0x00 {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// extraFilters adds the filters of defect subscribe-six-filters (CONN-019).
func (dc *deviceClient) extraFilters(filters map[string]byte) {
	if dc.on(DefSubscribeSix) {
		filters[iothub.TwinWildcardFilter] = 0
		filters["$iothub/methods/POST/reboot/#"] = 0
	}
}

// messageID is the $.mid value sent for id (TEL-009).
func (dc *deviceClient) messageID(id string) string {
	if dc.on(DefMessageIDBraces) {
		return "{" + id + "}"
	}
	if dc.on(DefMessageIDCut63) {
		return messageIDCut63(id) // defect: a 64-byte buffer
	}
	return id
}
