package sim

// Defect switches added for the DPS boundary specs (issue 15): each lives at
// a boundary the one-example DPS specs did not visit (a request ID past 9, a
// retry-after above a client-side cap or absent, a throttled answer, a long
// or punctuated registration ID, a self-signed individual X.509 enrollment).
// Each has a row in DEFECTS.md ("Added for the DPS boundary specs").
const (
	DefDPSRIDHexCompare         = "dps-rid-hex-compare"
	DefDPSRetryAfterCapped      = "dps-retry-after-capped"
	DefDPSRetryAfterRequired    = "dps-retry-after-required"
	DefDPS429NoWait             = "dps-429-no-wait"
	DefDPSRetryAfterZeroRefused = "dps-retry-after-zero-refused"
	DefDPSRegIDEscaped          = "dps-regid-escaped"
	DefDPSRegIDTruncated        = "dps-regid-truncated"
	DefDPSX509TrustInChain      = "dps-x509-trust-in-chain"
	DefDPSPayloadASCII          = "dps-payload-ascii-only"
	DefDPSErrorAnswerIgnored    = "dps-error-answer-ignored"
)

var dpsBoundsDefects = []Defect{
	{DefDPSRIDHexCompare, "DPS-004", "the $rid echoed in an answer is parsed as hexadecimal while requests carry it in decimal: from $rid=10 on no answer matches the request in flight and the attempt runs into its time bound"},
	{DefDPSRetryAfterCapped, "DPS-005", "the wait before a poll is capped at 2 s on the client side, below a retry-after the service may ask for (3 s and more)"},
	{DefDPSRetryAfterRequired, "DPS-005", "a 202 answer without retry-after is taken as malformed and ends the attempt with an error, instead of polling after a default wait"},
	{DefDPSRetryAfterZeroRefused, "DPS-005", "a 202 answer with retry-after=0 is taken as malformed (a wait must be positive) and ends the attempt with an error"},
	{DefDPS429NoWait, "DPS-005", "a 429 (throttled) answer is retried at once, ignoring its retry-after"},
	{DefDPSRegIDEscaped, "DPS-002", "the registration ID is percent-encoded into the Username (\":\" becomes %3A), so an ID holding \":\" no longer names the registration"},
	{DefDPSRegIDTruncated, "DPS-002", "the registration ID is kept in a 64-byte buffer: a longer ID (DPS allows 128 characters) is cut for ClientId, Username, token and body"},
	{DefDPSPayloadASCII, "DPS-008", "custom registration data is narrowed to ASCII before it is sent: every non-ASCII character becomes '?' (a Latin-1/ASCII string buffer)"},
	{DefDPSErrorAnswerIgnored, "DPS-006", "an error answer (4xx other than 429, 5xx) is not understood and ignored: the device waits for another answer until its time bound and reports a timeout without the status or error"},
	{DefDPSX509TrustInChain, "DPS-007", "at DPS the device's Certificate message carries its trusted root certificates after its own chain (the trust and client-chain options confused), at the hub only its own chain"},
}

// asciiOnly replaces every non-ASCII character of b with '?'
// (dps-payload-ascii-only).
func asciiOnly(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for _, r := range string(b) {
		if r > 127 {
			out = append(out, '?')
			continue
		}
		out = append(out, byte(r))
	}
	return out
}
