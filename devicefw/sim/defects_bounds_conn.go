package sim

import (
	"crypto/tls"
	"net"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hilrun/hilrun/rig/iothub"
)

// Defect switches for the CONN boundary specs (issue 15): each breaks a rule
// only at one boundary the first-connect specs never visit — a reconnect of
// the session, an ID that needs encoding, an empty Will payload, a busy link,
// a method response. Rows in DEFECTS.md ("Added for the CONN boundary specs").
const (
	DefReconnectUsernameShortHost = "reconnect-username-short-host"
	DefRenewalSEMillis            = "renewal-se-milliseconds"
	DefX509ReconnectLeafOnly      = "x509-reconnect-leaf-only"
	DefSRIDEncodedTwice           = "sas-sr-id-encoded-twice"
	DefPingSkipOnInbound          = "ping-skipped-when-receiving"
	DefWillEmptyOmitted           = "will-empty-payload-omitted"
	DefMethodResponseQoS2         = "method-response-qos2"
	DefWSSProtocol31              = "wss-mqtt-3-1"
	DefReconnectTries1883         = "reconnect-tries-1883"
	DefRenewalKeyAsPassword       = "renewal-key-as-password"
	DefReconnectKeepAliveZero     = "reconnect-keepalive-zero"
	DefReconnectWillDropped       = "reconnect-will-dropped"
)

// boundsConnDefects lists them; see Defects.
var boundsConnDefects = []Defect{
	{DefReconnectUsernameShortHost, "CONN-006", "every CONNECT after the first successful connection of a client.open (renewal, reconnect after loss) names the hub in the Username by its first DNS label instead of its full name: {hubname}/{deviceId}/?api-version=…"},
	{DefRenewalSEMillis, "CONN-010", "tokens made for reconnects after the first connection of a client.open carry se in milliseconds since 1970 (signed over that se)"},
	{DefX509ReconnectLeafOnly, "CONN-013", "an X.509 device presents its full chain on the first connection of a client.open and only the leaf on every reconnect"},
	{DefSRIDEncodedTwice, "CONN-008", "the device ID is percent-encoded before the resource URI is encoded for sr, so an ID with characters that need encoding is encoded twice (plain IDs are unchanged)"},
	{DefPingSkipOnInbound, "CONN-023", "a PINGREQ is skipped when the hub sent something within the last half keep-alive (received traffic taken as keep-alive activity); the ping stays outstanding, so a link the hub keeps busy gets no ping at all"},
	{DefWillEmptyOmitted, "CONN-021", "a configured Will with an empty payload is left out of CONNECT (no Will flag)"},
	{DefMethodResponseQoS2, "CONN-020", "direct method responses are published at QoS 2 (telemetry and twin requests keep QoS 0/1)"},
	{DefReconnectTries1883, "CONN-002", "every reconnect of a client.open (renewal, after a loss) first tries plaintext MQTT on the hub host's port 1883 (a fallback port list walked from its start), then connects over TLS as usual"},
	{DefRenewalKeyAsPassword, "CONN-011", "reconnects after the first connection of a client.open send the raw device key as the CONNECT Password instead of a fresh token (the first connection is correct)"},
	{DefReconnectKeepAliveZero, "CONN-023", "reconnects after the first connection of a client.open declare keep-alive 0 (options rebuilt from library defaults) and never ping; the first connection keeps the configured value"},
	{DefReconnectWillDropped, "CONN-021", "the configured Will is declared on the first connection of a client.open only; reconnects carry no Will"},
	{DefWSSProtocol31, "CONN-001", "over MQTT-over-WebSocket the CONNECT names MQTT 3.1 (MQIsdp, level 3), a WebSocket client's old default; over 8883 it is 3.1.1"},
}

// wsProtocolVersion applies wss-mqtt-3-1 to the MQTT level of CONNECT.
func (dc *deviceClient) wsProtocolVersion(cc connConfig, v uint) uint {
	if dc.on(DefWSSProtocol31) && cc.transport == "wss" {
		return 3
	}
	return v
}

// reconnectUsername applies reconnect-username-short-host: s.connects
// counts the session's successful connections, so > 0 is a reconnect.
func (dc *deviceClient) reconnectUsername(s *session, cc connConfig, u string) string {
	if dc.on(DefReconnectUsernameShortHost) && s.connects > 0 {
		short, _, _ := strings.Cut(cc.host, ".")
		return strings.Replace(u, cc.host+"/", short+"/", 1)
	}
	return u
}

// renewalToken applies renewal-key-as-password and renewal-se-milliseconds
// to the password of a reconnect: the raw key, or the token signed again
// with se in milliseconds.
func (dc *deviceClient) renewalToken(s *session, cc connConfig, password string, exp time.Time) string {
	if dc.on(DefRenewalKeyAsPassword) && s.connects > 0 && cc.authType == "sas" {
		return cc.key
	}
	if !dc.on(DefRenewalSEMillis) || s.connects == 0 || cc.authType != "sas" {
		return password
	}
	tok, err := iothub.NewSASToken(dc.moduleResource(cc, dc.resourceURI(cc)), cc.key, time.Unix(exp.UnixMilli(), 0), "")
	if err != nil {
		return password
	}
	return tok
}

// reconnectCert applies x509-reconnect-leaf-only to the certificate of a
// reconnect.
func (dc *deviceClient) reconnectCert(s *session, cert *tls.Certificate) *tls.Certificate {
	if dc.on(DefX509ReconnectLeafOnly) && s.connects > 0 && len(cert.Certificate) > 1 {
		leaf := *cert
		leaf.Certificate = cert.Certificate[:1]
		return &leaf
	}
	return cert
}

// srDeviceID is the device ID as it goes into the resource URI before the
// URI is encoded for sr (CONN-008).
func (dc *deviceClient) srDeviceID(id string) string {
	if dc.on(DefSRIDEncodedTwice) {
		return url.PathEscape(id)
	}
	return id
}

// willDeclared reports whether the configured Will goes into CONNECT.
func (dc *deviceClient) willDeclared(s *session, cc connConfig) bool {
	if cc.will == nil || (dc.on(DefReconnectWillDropped) && s.connects > 0) {
		return false
	}
	return !(dc.on(DefWillEmptyOmitted) && cc.will.Payload == "")
}

// methodResponseQoS is the QoS of a direct method response PUBLISH.
func (dc *deviceClient) methodResponseQoS() byte {
	if dc.on(DefMethodResponseQoS2) {
		return 2
	}
	return 0
}

// keepAliveConn applies ping-skipped-when-receiving to a new connection,
// and the ping timeout that goes with it (the skipped ping stays
// outstanding; paho must not give the connection up over it).
func (dc *deviceClient) keepAliveConn(nc net.Conn, cc connConfig) net.Conn {
	if dc.on(DefPingSkipOnInbound) && cc.keepAlive > 0 {
		return &inboundPingConn{Conn: nc, window: cc.keepAlive / 2}
	}
	return nc
}

func (dc *deviceClient) boundsPingTimeout(cc connConfig, d time.Duration) time.Duration {
	if dc.on(DefPingSkipOnInbound) {
		return deadLinkLateFactor * cc.keepAlive
	}
	return d
}

// inboundPingConn drops a PINGREQ (paho writes it as the two bytes C0 00 in
// one Write) when a read returned data within window.
type inboundPingConn struct {
	net.Conn
	window   time.Duration
	lastRead atomic.Int64 // unix nanoseconds
}

func (c *inboundPingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.lastRead.Store(time.Now().UnixNano())
	}
	return n, err
}

func (c *inboundPingConn) Write(p []byte) (int, error) {
	if len(p) == 2 && p[0] == 0xC0 && p[1] == 0x00 && time.Since(time.Unix(0, c.lastRead.Load())) < c.window {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// reconnectPlainProbe applies reconnect-tries-1883: before a reconnect the
// client dials the hub host's port 1883 (the rig's trap, PlainAddress) and
// sends its CONNECT in plaintext; the trap closes it, and the client goes
// on over TLS.
func (dc *deviceClient) reconnectPlainProbe(s *session, cc connConfig, connect []byte) {
	if !dc.on(DefReconnectTries1883) || s.connects == 0 || cc.plainAddr == "" {
		return
	}
	nc, err := net.DialTimeout("tcp", cc.plainAddr, connectTimeout)
	if err != nil {
		return
	}
	_ = nc.SetDeadline(time.Now().Add(time.Second))
	_, _ = nc.Write(connect)
	_ = nc.Close()
}

// reconnectKeepAlive applies reconnect-keepalive-zero to the keep-alive of
// CONNECT.
func (dc *deviceClient) reconnectKeepAlive(s *session, d time.Duration) time.Duration {
	if dc.on(DefReconnectKeepAliveZero) && s.connects > 0 {
		return 0
	}
	return d
}
