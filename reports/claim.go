package reports

import (
	"strings"
	"unicode"
)

// Claim is a failure message's claim: what was expected and not seen (or
// seen instead), in whole sentences, without the evidence that follows it
// (trace excerpts, event lists, console lines). Every one-line surface —
// the terminal, the Markdown summary, the JUnit message attribute, the
// HTML requirement table — shows the claim; shortening happens to the
// evidence, never to the claim (a message is never cut mid-sentence).
//
// The claim is the message's first line (the suites write the claim on
// one line and the evidence below it), with a trailing label that only
// introduces the evidence ("Seen:", "got:") dropped. A Gomega
// message without a description ("Expected\n    <int>: 1\nto equal…")
// has no sentence of its own, so its parts are joined instead.
func Claim(msg string) string {
	msg = strings.TrimSpace(strings.ReplaceAll(msg, "\r\n", "\n"))
	if msg == "" {
		return ""
	}
	lines := strings.Split(msg, "\n")
	if strings.TrimSpace(lines[0]) == "Expected" {
		return collapseSpace(msg)
	}
	c := strings.TrimSpace(lines[0])
	for {
		trimmed := trimEvidenceLabel(c)
		if trimmed == c {
			break
		}
		c = trimmed
	}
	return c
}

// Evidence is what follows the claim in a failure message (empty when the
// message is only a claim).
func Evidence(msg string) string {
	msg = strings.TrimSpace(strings.ReplaceAll(msg, "\r\n", "\n"))
	lines := strings.Split(msg, "\n")
	if len(lines) == 0 || strings.TrimSpace(lines[0]) == "Expected" {
		return ""
	}
	return strings.Trim(strings.Join(lines[1:], "\n"), "\n")
}

// trimEvidenceLabel drops a trailing "Seen:"-style label or a dangling
// colon or semicolon, which only announce the evidence below.
func trimEvidenceLabel(c string) string {
	c = strings.TrimRightFunc(c, unicode.IsSpace)
	for _, label := range []string{"Seen:", "seen:", "Got:", "got:", "Trace:", "trace:", "wire:", "Wire:"} {
		if strings.HasSuffix(c, label) {
			return strings.TrimRightFunc(strings.TrimSuffix(c, label), unicode.IsSpace)
		}
	}
	if strings.HasSuffix(c, ":") || strings.HasSuffix(c, ";") {
		return strings.TrimSuffix(strings.TrimSuffix(c, ":"), ";")
	}
	return c
}

func collapseSpace(s string) string { return strings.Join(strings.Fields(s), " ") }
