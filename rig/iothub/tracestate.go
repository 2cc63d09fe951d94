package iothub

import (
	"strconv"
	"strings"
	"time"
)

// Distributed tracing (TEL-014). A sampled device-to-cloud message carries
// the application property tracestate with the message's creation time in
// Unix seconds: "tracestate=timestamp=1539243209" (002 L30262); the hub
// looks for it in the application properties and checks its format (002
// L30388-30392). The captured sample of the C SDK writes the name as
// "%24.tracestate" and the value as "timestamp%3d1547666028" (002 L30286),
// so both spellings of the name are the tracestate property.
const (
	PropTraceState = "tracestate"
	// traceStateKey is the only member the docs define for the value.
	traceStateKey = "timestamp="
)

// IsTraceStateName reports whether a decoded property name is the
// tracestate property: "tracestate" or "$.tracestate" (002 L30262,
// L30286), compared ignoring case as the hub compares property names
// (002 L10417).
func IsTraceStateName(name string) bool {
	return strings.EqualFold(name, PropTraceState) || strings.EqualFold(name, systemPrefix+PropTraceState)
}

// FormatTraceState renders the tracestate value for a message created at t.
func FormatTraceState(t time.Time) string {
	return traceStateKey + strconv.FormatInt(t.Unix(), 10)
}

// ParseTraceState reads a decoded tracestate value "timestamp=<digits>"
// and returns the digits as Unix seconds. Anything else (another key, a
// sign, a fraction, a zone, an empty or over-long number) is an error: the
// docs define this one form (002 L30262).
func ParseTraceState(v string) (int64, error) {
	const op = "parse tracestate"
	digits, ok := strings.CutPrefix(v, traceStateKey)
	if !ok {
		return 0, newError(op, v, "TEL-014", "value does not start with "+quote(traceStateKey))
	}
	if digits == "" || len(digits) > 18 {
		return 0, newError(op, v, "TEL-014", "want 1 to 18 decimal digits after "+quote(traceStateKey))
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, newError(op, v, "TEL-014", describeByte(digits[i])+" is not a decimal digit")
		}
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return 0, newError(op, v, "TEL-014", err.Error())
	}
	return n, nil
}
