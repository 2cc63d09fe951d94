package suites

import (
	"slices"
	"testing"
	"time"

	"github.com/hilrun/hilrun/rig/hub"
)

// traceB builds hub entries with sequence numbers in order and Mono in ms.
type traceB struct{ es []hub.Entry }

func (b *traceB) add(e hub.Entry, monoMS int) *traceB {
	e.Seq = uint64(len(b.es) + 1)
	e.Mono = time.Duration(monoMS) * time.Millisecond
	b.es = append(b.es, e)
	return b
}

// attemptT is one attempt: TCP accept at acc, CONNECT at conn, then the
// hub's answer at ans (rc 0: accepted, else refused and closed at ans+1);
// acc < 0: no accept recorded.
func (b *traceB) attempt(id uint64, acc, conn, ans int, rc byte) *traceB {
	c := hub.Entry{ConnID: id, Dir: hub.DirIn, Type: "CONNECT"}
	if acc >= 0 {
		c.AcceptTime = time.Unix(0, 0).Add(time.Duration(acc) * time.Millisecond)
		c.AcceptMono = time.Duration(acc) * time.Millisecond
		b.add(hub.Entry{ConnID: id, Dir: hub.DirEvent, Type: hub.EventTLS, AcceptTime: c.AcceptTime, AcceptMono: c.AcceptMono}, conn-1)
	}
	b.add(c, conn)
	if rc != 0 {
		b.add(hub.Entry{ConnID: id, Dir: hub.DirEvent, Type: hub.EventConnRejected, ReturnCode: rc}, ans)
	}
	b.add(hub.Entry{ConnID: id, Dir: hub.DirOut, Type: "CONNACK", ReturnCode: rc}, ans)
	if rc != 0 {
		b.add(hub.Entry{ConnID: id, Dir: hub.DirEvent, Type: hub.EventConnClosed}, ans+1)
	}
	return b
}

func msList(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

func TestAttemptWaits(t *testing.T) {
	cases := []struct {
		name  string
		tr    *traceB
		lost  int
		waits []time.Duration
	}{{
		// The RECON-001 flake: attempt 2's handshake took 300 ms on a
		// loaded rig. CONNECT to CONNECT the gaps are 120, 500, 300 (the
		// last "shrank"); from refusal to accept the device waited 100,
		// 200, 200 each time.
		name: "slow handshake is not a wait",
		tr: new(traceB).
			attempt(2, 10, 15, 16, 3).
			attempt(3, 116, 135, 136, 3).
			attempt(4, 336, 636, 637, 3).
			attempt(5, 837, 855, 856, 0),
		lost: 5, waits: msList(5, 100, 200, 200),
	}, {
		name: "a device without backoff waits nothing",
		tr: new(traceB).
			attempt(2, 1, 20, 21, 3).
			attempt(3, 22, 40, 41, 3).
			attempt(4, 42, 60, 61, 0),
		lost: 0, waits: msList(1, 1, 1),
	}, {
		name: "no accept recorded: the CONNECT starts the attempt",
		tr: new(traceB).
			attempt(2, -1, 30, 31, 3).
			attempt(3, -1, 150, 151, 0),
		lost: 0, waits: msList(30, 119),
	}, {
		name: "an attempt started before the hub ended the previous one waited 0",
		tr: new(traceB).
			attempt(2, 10, 20, 200, 3).
			attempt(3, 100, 120, 121, 0),
		lost: 0, waits: msList(10, 0),
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			atts := connAttempts(c.tr.es, 0, 0)
			got := attemptWaits(time.Duration(c.lost)*time.Millisecond, atts)
			if !slices.Equal(got, c.waits) {
				t.Errorf("waits %v, want %v\n%s", got, c.waits, attemptsText(atts, got))
			}
		})
	}
}

// connAttempts: bounds by Seq, one attempt per connection, the earliest
// sign of failure as the end, accept order.
func TestConnAttempts(t *testing.T) {
	b := new(traceB).
		attempt(1, 0, 5, 6, 0). // before the mark
		attempt(7, 50, 60, 70, 3).
		attempt(8, 100, 110, 111, 0)
	// A second CONNECT on connection 8 is no new attempt.
	b.add(hub.Entry{ConnID: 8, Dir: hub.DirIn, Type: "CONNECT"}, 120)
	mark := b.es[2].Seq // connection 1's CONNACK, its last entry
	atts := connAttempts(b.es, mark, 0)
	if len(atts) != 2 || atts[0].conn != 7 || atts[1].conn != 8 {
		t.Fatalf("attempts %+v", atts)
	}
	if atts[0].start != 50*time.Millisecond || atts[0].end != 70*time.Millisecond {
		t.Errorf("attempt 7: start %s end %s, want 50ms 70ms (the refusal, not the close at 71ms)", atts[0].start, atts[0].end)
	}
	if atts[0].refused != 3 || atts[1].refused != 0 {
		t.Errorf("refusal codes %d, %d; want 3, 0", atts[0].refused, atts[1].refused)
	}
	if atts[1].end != -1 {
		t.Errorf("accepted attempt ended at %s", atts[1].end)
	}
	// before: the accepted attempt's CONNACK bounds the set.
	upTo := connAttempts(b.es, mark, atts[1].connect.Seq)
	if len(upTo) != 1 || upTo[0].conn != 7 {
		t.Errorf("bounded by Seq %d: %+v", atts[1].connect.Seq, upTo)
	}
}
