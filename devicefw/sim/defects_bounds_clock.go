package sim

// Defect switches for the CLOCK boundary specs (issue 15, suites/
// bounds_clock.go): mutation survivors of the SNTP client that showed the
// suite did not look at the request's mode, at an answer without a
// transmit timestamp, or at a firmware that crashes on a kiss-o'-death.
// Each has a row in DEFECTS.md ("Added for the CLOCK boundary specs").
const (
	DefSNTPKoDCrash          = "sntp-kod-crash"
	DefSNTPRequestMode2      = "sntp-request-mode-2"
	DefSNTPZeroTransmitTaken = "sntp-zero-transmit-accepted"
)

// clockBoundsDefects lists them; see Defects.
var clockBoundsDefects = []Defect{
	{DefSNTPKoDCrash, "CLOCK-001", "the first kiss-o'-death answer crashes the firmware (the hold-off table is written before it was made: a nil map), so the board reboots; it is judged by the suite-wide crash rule (suites/crash.go)"},
	{DefSNTPRequestMode2, "CLOCK-001", "the SNTP request goes out with mode 2 (symmetric passive) instead of mode 3 (client)"},
	{DefSNTPZeroTransmitTaken, "CLOCK-001", "an SNTP answer whose transmit timestamp is zero is not discarded: its time (the zero time) is set as UTC"},
}

// sntpRequestMode2 is sntp-request-mode-2: the request's first byte with
// mode 2 (symmetric passive) in place of the client's mode.
func sntpRequestMode2(b byte) byte { return b&^7 | 2 }

// kodCrash is sntp-kod-crash: a write into a map that was never made,
// which panics in the connection goroutine as a real firmware's bad
// pointer would fault, taking the whole process down.
func kodCrash(server string) {
	var hold map[string]int
	hold[server]++
}
