package sim

import (
	"fmt"
	"strconv"
)

// Defect switches added for the boundary specs (issue 15): bugs that show
// only past a count or for one value shape, modelled on integer widths and
// comparisons real device clients have shipped with. Each has a row in
// DEFECTS.md (section "Added for the boundary specs").
const (
	DefTwinVersionLexical = "twin-version-lexical"
	DefTwinVersion16      = "twin-version-uint16"
	DefTwinRIDUint8       = "twin-rid-uint8"
	DefMethodRIDUint16    = "method-rid-uint16"
	DefTwin5xxListed      = "twin-5xx-listed-only"
	DefRetryConnack4      = "retry-after-bad-credentials"
	DefRetryAuthX509      = "retry-after-auth-x509"
)

// boundsDefects lists them; see Defects.
var boundsDefects = []Defect{
	{DefTwinVersionLexical, "TWIN-010", "desired $version values are compared as decimal text, so \"10\" counts as older than \"9\" and a newer patch past a power of ten is ignored"},
	{DefTwinVersion16, "TWIN-010", "the held desired $version is kept in 16 bits (uint16), so from $version 65536 on newer patches compare as older and are ignored"},
	{DefTwinRIDUint8, "TWIN-003", "the $rid of a twin response is read back into an 8-bit request id, so from the 256th request on answers are looked up under rid mod 256, not found, and the request waits until its timeout"},
	{DefMethodRIDUint16, "METH-003", "a hex method $rid is read into a 16-bit request id and printed back zero-padded to the width it came with (non-hex rids are echoed unchanged), so rids from 0x10000 on are answered with the wrapped value (\"10000\" becomes \"00000\")"},
	{DefTwin5xxListed, "TWIN-005", "only the server errors 500 and 503 are retried (a fixed list of codes in the client); any other 5xx answer to a twin request (501, 502, 504, …) is final"},
	{DefRetryConnack4, "RECON-004", "after CONNACK 4 (bad user name or password) the device keeps retrying with normal backoff; only CONNACK 5 stops it"},
	{DefRetryAuthX509, "RECON-004", "after CONNACK 5 an X.509 device keeps retrying with normal backoff (the client's stop rule lives in its SAS-token path); SAS devices still stop"},
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
