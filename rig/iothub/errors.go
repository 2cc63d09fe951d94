package iothub

import "strconv"

// maxQuotedInput bounds how much of the offending input an Error repeats, so
// that a 64 KB topic does not end up verbatim in a log line.
const maxQuotedInput = 160

// Error describes wire text that could not be parsed or that breaks one of
// IoT Hub's device-facing rules. Every error returned by this package's
// parsers and checks is an *Error.
type Error struct {
	// Op names what was being parsed or checked, e.g. "parse topic".
	Op string
	// Input is the offending text (SAS signatures and keys redacted).
	Input string
	// Rule is the requirement ID the rule comes from, or "" when the
	// failure is plain malformed syntax with no specific requirement.
	Rule string
	// Reason explains the problem in words.
	Reason string
}

func (e *Error) Error() string {
	s := "iothub: " + e.Op + " " + quote(e.Input) + ": " + e.Reason
	if e.Rule != "" {
		s += " [" + e.Rule + "]"
	}
	return s
}

func newError(op, input, rule, reason string) *Error {
	return &Error{Op: op, Input: input, Rule: rule, Reason: reason}
}

// describeByte renders one byte of wire text for an error message.
func describeByte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return strconv.QuoteRune(rune(c))
	}
	const hex = "0123456789abcdef"
	return "byte 0x" + string([]byte{hex[c>>4], hex[c&0xf]})
}

// quote quotes a fragment of wire text for an error message, shortened.
func quote(s string) string {
	if len(s) > maxQuotedInput {
		s = s[:maxQuotedInput] + "..."
	}
	return strconv.Quote(s)
}
