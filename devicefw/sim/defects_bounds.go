package sim

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/hilrun/hilrun/rig/iothub"
)

// Defect switches added for the boundary specs (issue 15): bugs that show
// only past a count or for one value shape, modelled on integer widths and
// comparisons real device clients have shipped with. Each has a row in
// DEFECTS.md (section "Added for the boundary specs").
const (
	DefTwinVersionLexical  = "twin-version-lexical"
	DefTwinVersion16       = "twin-version-uint16"
	DefTwinRIDUint8        = "twin-rid-uint8"
	DefMethodRIDUint16     = "method-rid-uint16"
	DefTwin5xxListed       = "twin-5xx-listed-only"
	DefRetryConnack4       = "retry-after-bad-credentials"
	DefRetryAuthX509       = "retry-after-auth-x509"
	DefBagPercentPassed    = "propbag-percent-passthrough"
	DefBagPlusRaw          = "propbag-plus-raw"
	DefC2DDecodedTwice     = "c2d-bag-decoded-twice"
	DefC2DPubackID8        = "c2d-puback-id-uint8"
	DefMethodObjectOnly    = "method-body-object-only"
	DefTwinNewestRID       = "twin-newest-rid"
	DefTwinNoResyncRenewal = "twin-no-resync-after-renewal"
	DefMethodAfterTwin     = "method-dispatch-after-twin"
	DefMethodStatusEnum    = "method-status-enum"
)

// boundsDefects lists them; see Defects.
var boundsDefects = []Defect{
	{DefTwinVersionLexical, "TWIN-010", "desired $version values are compared as decimal text, so \"10\" counts as older than \"9\" and a newer patch past a power of ten is ignored"},
	{DefTwinVersion16, "TWIN-009", "the held desired $version is kept in 16 bits (uint16), so from $version 65536 on newer patches compare as older and are ignored"},
	{DefTwinRIDUint8, "TWIN-003", "the $rid of a twin response is read back into an 8-bit request id, so from the 256th request on answers are looked up under rid mod 256, not found, and the request waits until its timeout"},
	{DefMethodRIDUint16, "METH-003", "a hex method $rid is read into a 16-bit request id and printed back zero-padded to the width it came with (non-hex rids are echoed unchanged), so rids from 0x10000 on are answered with the wrapped value (\"10000\" becomes \"00000\")"},
	{DefTwin5xxListed, "TWIN-005", "only the server errors 500 and 503 are retried (a fixed list of codes in the client); any other 5xx answer to a twin request (501, 502, 504, …) is final"},
	{DefRetryConnack4, "RECON-004", "after CONNACK 4 (bad user name or password) the device keeps retrying with normal backoff; only CONNACK 5 stops it"},
	{DefRetryAuthX509, "RECON-004", "after CONNACK 5 an X.509 device keeps retrying with normal backoff (the client's stop rule lives in its SAS-token path); SAS devices still stop"},
	{DefBagPercentPassed, "TEL-002", "a %XX sequence already in a property name or value is copied as it is (the text is taken as already encoded), so the value \"%41\" reaches the hub as \"A\""},
	{DefBagPlusRaw, "TEL-002", "'+' in a property name or value is left unencoded (path rules, as url.PathEscape does), so the hub, decoding with query-string rules, reads it as a space"},
	{DefC2DDecodedTwice, "C2D-002", "C2D property names and values are percent-decoded twice, so a value whose text is \"%41\" (sent as %2541) is reported as \"A\""},
	{DefC2DPubackID8, "C2D-003", "the PUBACK of a C2D delivery carries the packet id cut to 8 bits, so from packet id 256 on the hub never sees the acknowledgement of the delivery it sent"},
	{DefMethodObjectOnly, "METH-002", "a method request whose JSON body is not an object (an array, string, number, true, false or null) gets no response: the handler decodes the body into a map and gives up"},
	{DefTwinNewestRID, "TWIN-003", "twin responses complete the newest pending request, whatever their $rid (one \"current request\" slot), so answers to overlapping requests are crossed unless each comes before the next request is sent"},
	{DefTwinNoResyncRenewal, "TWIN-010", "no twin GET on the connection that replaces one closed for a SAS token renewal (the renewal path reconnects without the post-connect resync), so desired changes made during the switch are missed; other reconnects still resync"},
	{DefMethodAfterTwin, "METH-006", "method requests that arrive before the connection's start-up twin resync has ended wait for it (the client reports itself ready only after its first twin GET), so a request made right after the SUBACK is answered late, or not at all while the GET's answer is outstanding"},
	{DefMethodStatusEnum, "METH-004", "the method response status goes through a fixed list of the common codes (200, 201, 400, 404, 500), as an SDK whose API takes a status enum; any other status the handler chose is sent as 500"},
}

// methodStatusEnum is method-status-enum's mapping of a handler's status.
func methodStatusEnum(status int) int {
	switch status {
	case 200, 201, 400, 404, 500:
		return status
	}
	return 500
}

// markTwinReady ends the wait of method-dispatch-after-twin on c.
func (c *conn) markTwinReady() { c.readyOnce.Do(func() { close(c.twinReady) }) }

func (c *conn) isTwinReady() bool {
	select {
	case <-c.twinReady:
		return true
	default:
		return false
	}
}

// methodAfterTwin answers a method request once c's resync has ended
// (method-dispatch-after-twin); nothing when the connection goes first.
func (dc *deviceClient) methodAfterTwin(c *conn, t iothub.Topic, body []byte) {
	select {
	case <-c.twinReady:
		dc.onMethod(c, t, body)
	case <-c.lost:
	}
}

// methodBodyNotObject is method-body-object-only's verdict: a non-empty
// body that does not decode into a JSON object.
func methodBodyNotObject(body []byte) bool {
	var m map[string]any
	return len(body) > 0 && json.Unmarshal(body, &m) != nil
}

// pubackID8 writes c2d-puback-id-uint8's PUBACK for packet id pid (its
// low 8 bits) on the connection under paho; false when pid fits 8 bits
// and the normal acknowledgement should go out.
func pubackID8(c *conn, pid uint16) bool {
	if pid <= 0xff || c.netConn == nil {
		return false
	}
	_, _ = c.netConn.Write([]byte{0x40, 0x02, 0x00, byte(pid)}) // defect: 8-bit packet id
	return true
}

// boundsBagText encodes a telemetry property bag the way the TEL-002
// value-shape switches do (percentPassed: an existing %XX stays as it is;
// plusRaw: '+' is not encoded); otherwise as iothub.PropertyBag.Encode.
func boundsBagText(bag iothub.PropertyBag, percentPassed, plusRaw bool) string {
	const hexDigits = "0123456789ABCDEF"
	isHex := func(c byte) bool { return strings.IndexByte(hexDigits, c) >= 0 || 'a' <= c && c <= 'f' }
	escape := func(sb *strings.Builder, s string) {
		for i := 0; i < len(s); i++ {
			c := s[i]
			switch {
			case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0,
				percentPassed && c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]),
				plusRaw && c == '+':
				sb.WriteByte(c)
			default:
				sb.WriteByte('%')
				sb.WriteByte(hexDigits[c>>4])
				sb.WriteByte(hexDigits[c&0xf])
			}
		}
	}
	var sb strings.Builder
	for i, p := range bag {
		if i > 0 {
			sb.WriteByte('&')
		}
		escape(&sb, p.Name)
		if !p.NoValue {
			sb.WriteByte('=')
			escape(&sb, p.Value)
		}
	}
	return sb.String()
}

// decodedAgain is c2d-bag-decoded-twice's second pass over decoded
// properties (a text that does not decode stays as it is).
func decodedAgain(props map[string]string) map[string]string {
	out := make(map[string]string, len(props))
	for k, v := range props {
		if d, err := url.QueryUnescape(k); err == nil {
			k = d
		}
		if d, err := url.QueryUnescape(v); err == nil {
			v = d
		}
		out[k] = v
	}
	return out
}

// authRetried reports whether a switch makes a refusal with return code rc,
// which RECON-004 counts as final, be retried instead.
func (dc *deviceClient) authRetried(cc connConfig, rc byte) bool {
	return rc == 4 && dc.on(DefRetryConnack4) || rc == 5 && cc.authType == "x509" && dc.on(DefRetryAuthX509)
}

// twinRetriedServerError is twin-5xx-listed-only's list of retried 5xx codes.
func twinRetriedServerError(status int) bool { return status == 500 || status == 503 }

// versionFlags are the version-comparison switches, read before dc.mu is taken.
type versionFlags struct{ lexical, u16 bool }

func (dc *deviceClient) versionFlags() versionFlags {
	return versionFlags{lexical: dc.on(DefTwinVersionLexical), u16: dc.on(DefTwinVersion16)}
}

// newer reports whether $version v is newer than held (orEqual: or the
// same), the way the active switches compare; without them as integers.
func (f versionFlags) newer(v, held int64, orEqual bool) bool {
	switch {
	case f.lexical:
		a, b := strconv.FormatInt(v, 10), strconv.FormatInt(held, 10)
		return a > b || orEqual && a == b
	case f.u16:
		a, b := uint16(v), uint16(held)
		return a > b || orEqual && a == b
	}
	return v > held || orEqual && v == held
}

// stored is the $version as the device keeps it.
func (f versionFlags) stored(v int64) int64 {
	if f.u16 {
		return int64(uint16(v))
	}
	return v
}

// twinRID8 is twin-rid-uint8's read-back of a response $rid: a decimal
// rid cut to 8 bits ("256" is looked up as "0"); others unchanged.
func twinRID8(rid string) string {
	n, err := strconv.ParseUint(rid, 10, 64)
	if err != nil {
		return rid
	}
	return strconv.FormatUint(uint64(uint8(n)), 10)
}

// methodRID16 is method-rid-uint16's echo of a method $rid.
func methodRID16(rid string) string {
	n, err := strconv.ParseUint(rid, 16, 64)
	if err != nil {
		return rid
	}
	return fmt.Sprintf("%0*x", len(rid), uint16(n))
}
