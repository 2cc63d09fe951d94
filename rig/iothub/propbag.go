package iothub

import (
	"net/url"
	"strings"
)

// Well-known property names. System properties start with "$."; IoT Hub
// documents only that prefix, so the individual names follow the Azure SDK
// for C, which the nanoFramework client matches (TEL-009 test assumption,
// [NS-6]).
const (
	PropMessageID       = "$.mid"   // message-id (TEL-009)
	PropCorrelationID   = "$.cid"   // correlation-id
	PropContentType     = "$.ct"    // content-type (TEL-010)
	PropContentEncoding = "$.ce"    // content-encoding (TEL-010)
	PropUserID          = "$.uid"   // user-id
	PropCreationTime    = "$.ctime" // creation time, UTC (TEL-012)
	PropComponent       = "$.sub"   // DTDL component name
	PropTo              = "$.to"    // destination, set by the hub on C2D
	PropExpiry          = "$.exp"   // absolute expiry time, set on C2D

	// PropMessageType is the application property the hub adds to a Will
	// message it injects as telemetry, with the value "Will" (CONN-021).
	PropMessageType = "iothub-MessageType"
	// PropRetain is the property the hub adds when a device sets RETAIN on
	// telemetry (TEL-006).
	PropRetain = "x-opt-retain"
)

// systemPrefix starts every system property name once decoded.
const systemPrefix = "$."

// Property is one entry of a property bag, held decoded.
type Property struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	// NoValue marks a name sent without '=': IoT Hub writes a property
	// whose value is null that way. Value is then "".
	NoValue bool `json:"noValue,omitempty"`
}

// PropertyBag is the ordered list of properties carried at the end of a
// telemetry or cloud-to-device topic (TEL-001, TEL-002, C2D-002). Order and
// duplicates are kept exactly as received.
type PropertyBag []Property

// ParsePropertyBag decodes the property bag text of a topic (TEL-002,
// C2D-002).
//
// The text is split on '&' and each piece on its first '='. Names and values
// are percent-decoded with query-string rules, so '+' becomes a space, and
// "%24.mid" and "$.mid" both decode to "$.mid". A piece without '=' yields a
// NoValue property, "k=" an empty value. The empty string is an empty (nil)
// bag. Empty pieces ("a=1&&b=2", a trailing '&'), empty names and invalid
// percent escapes are errors. Nothing is stripped: a trailing '/' stays part
// of the last value.
func ParsePropertyBag(s string) (PropertyBag, error) {
	const op = "parse property bag"
	if s == "" {
		return nil, nil
	}
	bag := make(PropertyBag, 0, strings.Count(s, "&")+1)
	for piece := range strings.SplitSeq(s, "&") {
		if piece == "" {
			return nil, newError(op, s, "TEL-002", "empty entry (doubled, leading or trailing '&')")
		}
		rawName, rawValue, hasValue := strings.Cut(piece, "=")
		if rawName == "" {
			return nil, newError(op, s, "TEL-002", "entry "+quote(piece)+" has an empty name")
		}
		name, err := url.QueryUnescape(rawName)
		if err != nil {
			return nil, newError(op, s, "TEL-002", "name "+quote(rawName)+" is not validly percent-encoded")
		}
		p := Property{Name: name, NoValue: !hasValue}
		if hasValue {
			p.Value, err = url.QueryUnescape(rawValue)
			if err != nil {
				return nil, newError(op, s, "TEL-002", "value "+quote(rawValue)+" of "+quote(name)+" is not validly percent-encoded")
			}
		}
		bag = append(bag, p)
	}
	return bag, nil
}

// Encode renders the bag as topic text. Every byte other than an ASCII
// letter, digit, '-', '.', '_' or '~' is percent-encoded with upper-case hex,
// so a space becomes "%20" (never '+') and "$.mid" becomes "%24.mid". A
// NoValue property is written as its bare name (its Value is ignored). The
// result parses back to the same bag with ParsePropertyBag, provided no name
// is empty.
func (b PropertyBag) Encode() string {
	var sb strings.Builder
	for i, p := range b {
		if i > 0 {
			sb.WriteByte('&')
		}
		escapeTo(&sb, p.Name)
		if !p.NoValue {
			sb.WriteByte('=')
			escapeTo(&sb, p.Value)
		}
	}
	return sb.String()
}

// Get returns the value of the first property with exactly this name.
func (b PropertyBag) Get(name string) (string, bool) {
	for _, p := range b {
		if p.Name == name {
			return p.Value, true
		}
	}
	return "", false
}

// Has reports whether a property with exactly this name is present.
func (b PropertyBag) Has(name string) bool {
	_, ok := b.Get(name)
	return ok
}

// Set returns a bag in which the first property named name has the given
// value (and NoValue cleared), or, when there is none, the property appended.
// The receiver is not modified.
func (b PropertyBag) Set(name, value string) PropertyBag {
	out := make(PropertyBag, len(b), len(b)+1)
	copy(out, b)
	for i := range out {
		if out[i].Name == name {
			out[i] = Property{Name: name, Value: value}
			return out
		}
	}
	return append(out, Property{Name: name, Value: value})
}

// Map returns the bag as a map from name to value. When a name repeats, the
// first occurrence wins, as with Get; NoValue properties map to "".
func (b PropertyBag) Map() map[string]string {
	m := make(map[string]string, len(b))
	for _, p := range b {
		if _, dup := m[p.Name]; !dup {
			m[p.Name] = p.Value
		}
	}
	return m
}

// IsSystemProperty reports whether a decoded property name denotes a system
// property, i.e. starts with "$." (C2D-002, TEL-009).
func IsSystemProperty(name string) bool {
	return strings.HasPrefix(name, systemPrefix)
}

// MessageSize computes a message's size the way IoT Hub counts it against
// MaxTelemetryBytes (TEL-005): payload bytes, plus the value bytes of every
// system property, plus name and value bytes of every application property,
// all taken decoded.
func MessageSize(payload []byte, bag PropertyBag) int {
	n := len(payload)
	for _, p := range bag {
		if !IsSystemProperty(p.Name) {
			n += len(p.Name)
		}
		n += len(p.Value)
	}
	return n
}

// escapeTo percent-encodes s into sb, keeping only RFC 3986 unreserved bytes.
func escapeTo(sb *strings.Builder, s string) {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isUnreserved(c) {
			sb.WriteByte(c)
			continue
		}
		sb.WriteByte('%')
		sb.WriteByte(hex[c>>4])
		sb.WriteByte(hex[c&0xf])
	}
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}
