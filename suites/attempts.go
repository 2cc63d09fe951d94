package suites

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hilrun/hilrun/rig/hub"
)

// attempt is one connection attempt of the device as the hub saw it.
type attempt struct {
	conn uint64
	// start is when the hub's listener accepted the attempt's TCP
	// connection (hub.Entry.AcceptMono), before TLS; the CONNECT's Mono
	// when the hub recorded no accept (a connection it did not accept
	// itself).
	start time.Duration
	// end is the first sign the hub gave that the attempt failed: its
	// refusal (conn-rejected, recorded before the CONNACK is written, or
	// a CONNACK with a return code), a violation, or the close; -1 while
	// the connection is open.
	end     time.Duration
	connect hub.Entry
	// refused is the CONNACK return code the hub refused the attempt
	// with; 0 when it did not refuse it with one.
	refused byte
}

// connAttempts returns the attempts whose CONNECT lies in tr with a Seq
// after after and before before (0: no bound), in the order they reached
// the hub (TCP accept).
func connAttempts(tr []hub.Entry, after, before uint64) []attempt {
	var out []attempt
	idx := map[uint64]int{}
	for _, e := range tr {
		if isConnect(e) && e.Seq > after && (before == 0 || e.Seq < before) {
			if _, dup := idx[e.ConnID]; dup {
				continue // a second CONNECT on the connection: not a new attempt
			}
			start := e.Mono
			if !e.AcceptTime.IsZero() {
				start = e.AcceptMono
			}
			idx[e.ConnID] = len(out)
			out = append(out, attempt{conn: e.ConnID, start: start, end: -1, connect: e})
		}
	}
	for _, e := range tr {
		i, ok := idx[e.ConnID]
		if !ok || !attemptEnded(e) {
			continue
		}
		if (e.Type == hub.EventConnRejected || e.Type == "CONNACK") && e.ReturnCode != 0 {
			out[i].refused = e.ReturnCode
		}
		if out[i].end < 0 || e.Mono < out[i].end {
			out[i].end = e.Mono
		}
	}
	slices.SortStableFunc(out, func(a, b attempt) int { return int(a.start - b.start) })
	return out
}

// attemptEnded: e tells the device its attempt failed or its connection ended.
func attemptEnded(e hub.Entry) bool {
	switch {
	case e.Type == hub.EventConnRejected, e.Type == hub.EventConnClosed, e.Type == hub.EventViolation, e.Type == hub.EventTLSFailed:
		return true
	case e.Dir == hub.DirOut && e.Type == "CONNACK" && e.ReturnCode != 0:
		return true
	}
	return false
}

// attemptWaits is the device's wait before each attempt: from the loss
// (lost, on the trace's Mono clock) to the first attempt's start, then from
// each attempt's end to the next one's start. That is the delay the
// backoff of 002 L16709, L16715 governs (between a failure and the next
// try), without the TCP connect, TLS handshake and CONNECT of each attempt,
// which a loaded rig can stretch (a rig matter, never a firmware verdict).
// An attempt the hub saw start before the previous one ended, or whose
// predecessor never ended, waited 0.
func attemptWaits(lost time.Duration, atts []attempt) []time.Duration {
	out := make([]time.Duration, len(atts))
	prev := lost
	for i, a := range atts {
		if prev < 0 || a.start < prev {
			out[i] = 0
		} else {
			out[i] = a.start - prev
		}
		prev = a.end
	}
	return out
}

// attemptsText lists attempts for failure messages: connection, start, end, wait.
func attemptsText(atts []attempt, waits []time.Duration) string {
	var b strings.Builder
	b.WriteString("attempts (hub clock: TCP accept → the hub's refusal or close; wait since the previous end):\n")
	for i, a := range atts {
		end := "open"
		if a.end >= 0 {
			end = a.end.Round(time.Millisecond).String()
		}
		w := ""
		if i < len(waits) {
			w = waits[i].Round(time.Millisecond).String()
		}
		fmt.Fprintf(&b, "  conn %d: accept %s, end %s, waited %s\n", a.conn, a.start.Round(time.Millisecond), end, w)
	}
	return b.String()
}
