package iothub

import (
	"strconv"
	"strings"
)

// ConnectionString is a parsed IoT Hub connection string, the
// "HostName=...;DeviceId=...;SharedAccessKey=..." text the Azure portal and
// CLI print for a device, module or hub policy.
type ConnectionString struct {
	HostName            string
	DeviceID            string // DeviceId
	ModuleID            string // ModuleId
	SharedAccessKeyName string // hub-level policy name
	SharedAccessKey     string // Base64 symmetric key
	X509                bool   // x509=true: certificate authentication
	GatewayHostName     string
}

// connection-string keys, spelled as Azure prints them.
const (
	csHostName        = "HostName"
	csDeviceID        = "DeviceId"
	csModuleID        = "ModuleId"
	csKeyName         = "SharedAccessKeyName"
	csKey             = "SharedAccessKey"
	csX509            = "x509"
	csGatewayHostName = "GatewayHostName"
)

// ParseConnectionString parses ';'-separated Key=Value pairs; a value may
// itself contain '=' (Base64 padding). Keys are case-sensitive and must be
// one of HostName, DeviceId, ModuleId, SharedAccessKeyName, SharedAccessKey,
// x509 and GatewayHostName, each at most once; empty pieces (a trailing ';')
// are ignored. HostName is required, and so is one of SharedAccessKey, x509
// and SharedAccessKeyName. ModuleId requires DeviceId. IDs must pass
// ValidateID. Error messages never contain the key.
func ParseConnectionString(s string) (ConnectionString, error) {
	const op = "parse connection string"
	fail := func(reason string) (ConnectionString, error) {
		return ConnectionString{}, newError(op, RedactSAS(s), "", reason)
	}
	var c ConnectionString
	seen := map[string]bool{}
	n := 0
	for piece := range strings.SplitSeq(s, ";") {
		n++
		if strings.TrimSpace(piece) == "" {
			continue
		}
		k, v, ok := strings.Cut(piece, "=")
		if !ok {
			// The text is not echoed: it could be a key.
			return fail("entry " + strconv.Itoa(n) + " has no '='")
		}
		if seen[k] {
			return fail("key " + quote(k) + " appears more than once")
		}
		seen[k] = true
		if v == "" {
			return fail("key " + quote(k) + " has an empty value")
		}
		switch k {
		case csHostName:
			c.HostName = v
		case csDeviceID:
			c.DeviceID = v
		case csModuleID:
			c.ModuleID = v
		case csKeyName:
			c.SharedAccessKeyName = v
		case csKey:
			c.SharedAccessKey = v
		case csGatewayHostName:
			c.GatewayHostName = v
		case csX509:
			switch {
			case strings.EqualFold(v, "true"):
				c.X509 = true
			case strings.EqualFold(v, "false"):
				c.X509 = false
			default:
				return fail("x509 must be true or false, not " + quote(v))
			}
		default:
			return fail("unknown key " + quote(k) + " (keys are case-sensitive)")
		}
	}
	switch {
	case c.HostName == "":
		return fail("HostName is missing")
	case c.SharedAccessKey == "" && !c.X509 && c.SharedAccessKeyName == "":
		return fail("none of SharedAccessKey, x509=true and SharedAccessKeyName is present")
	case c.ModuleID != "" && c.DeviceID == "":
		return fail("ModuleId without DeviceId")
	}
	if c.DeviceID != "" {
		if err := (Identity{DeviceID: c.DeviceID, ModuleID: c.ModuleID}).Validate(); err != nil {
			return fail(err.(*Error).Reason)
		}
	}
	return c, nil
}

// Identity returns the device or module identity the string names.
func (c ConnectionString) Identity() Identity {
	return Identity{DeviceID: c.DeviceID, ModuleID: c.ModuleID}
}

// String renders the connection string in canonical order: HostName,
// DeviceId, ModuleId, SharedAccessKeyName, SharedAccessKey, x509,
// GatewayHostName, leaving out empty fields. It includes the key; pass the
// result through RedactSAS before logging it.
func (c ConnectionString) String() string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	add(csHostName, c.HostName)
	add(csDeviceID, c.DeviceID)
	add(csModuleID, c.ModuleID)
	add(csKeyName, c.SharedAccessKeyName)
	add(csKey, c.SharedAccessKey)
	if c.X509 {
		add(csX509, "true")
	}
	add(csGatewayHostName, c.GatewayHostName)
	return strings.Join(parts, ";")
}
