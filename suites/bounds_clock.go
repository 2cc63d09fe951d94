package suites

import (
	"context"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/rig/sntp"
)

// CLOCK boundary specs (issue 15): the time exchange CLOCK-001 asks for is
// SNTP (RFC 4330) against the suite's time server, and two of its rules
// were not looked at: the device's request must be a client request
// (mode 3, §5), and an answer whose transmit timestamp is zero carries no
// time and must be discarded (§5). Taking such an answer's time is not
// "valid UTC before the first TLS handshake" (CLOCK-001). A crash on a
// kiss-o'-death is judged by the suite-wide crash rule (crash.go) on the
// kiss-o'-death specs of clock.go.
var _ = Describe("clock boundaries", func() {
	Conformance("RTC at 1970: the device's SNTP request is a client request (mode 3)", []string{"CLOCK-001"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{KeepClock: true, NoOpen: true})
		coldBoot(ctx, s)
		n := s.Env.SNTP.Count()
		m := s.Mark()
		must(0, s.Call(ctx, agentproto.OpOpen, nil, nil))
		wctx, cancel := context.WithTimeout(ctx, s.Env.Timing.Connect)
		defer cancel()
		q, err := s.Env.SNTP.WaitQuery(wctx, n+1)
		if err != nil {
			Fail("CLOCK-001 (000 L30): after client.open a board at 1970 must ask the time server: " + err.Error() + "\n" + traceText(s.ClockTrace(m)))
		}
		// RFC 4330 §5: a unicast client sets Mode 3 (client); a server
		// answers nothing else (mode 0 only from version 1 clients).
		Expect(q.Mode).To(Equal(uint8(sntp.ModeClient)), "CLOCK-001 (000 L30; RFC 4330 §5): an SNTP request must have mode 3 (client); the device's first request is mode %d: %s\n%s",
			q.Mode, q, traceText(s.ClockTrace(m)))
	})

	Conformance("RTC at 1970, time server answers with a zero transmit timestamp: the device discards the answer, opens no TLS meanwhile, and connects once the server answers with the time", []string{"CLOCK-001"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{KeepClock: true, NoOpen: true})
		s.Env.SNTP.ZeroTransmit()
		DeferCleanup(s.Env.SNTP.Reset)
		o := observeWithoutTime(ctx, s)
		fixtures.NoteFact(fixtures.FactClock, "RTC at 1970, SNTP answer with a zero transmit timestamp", o.behaviour(), o.good())
		// RFC 4330 §5: an answer whose transmit timestamp is zero is
		// discarded. The device then has no time, as with a silent
		// server: it may not open TLS (CLOCK-001), and asking again
		// follows the same backoff.
		Expect(o.conns).To(BeEmpty(), "CLOCK-001 (000 L30; RFC 4330 §5): an answer whose transmit timestamp is zero must be discarded, leaving the device without UTC; within %s of such answers it opened TLS or connected %d time(s), so it took their time; %s\n%s",
			o.window, len(o.conns), o.queryTimes(), traceText(o.trace))
		o.expectBackoff()

		// A device that took such an answer's time believes its clock
		// set and need not ask again, though it has no UTC (on the
		// virtual board it then cannot even sign a token, so nothing of
		// it reaches the wire above). Once the server answers with the
		// time, a device that discarded the answers still asks, gets UTC
		// and connects with an se from it.
		m := s.Mark()
		s.Env.SNTP.Answer()
		wctx, cancel := context.WithTimeout(ctx, s.Env.Timing.Connect)
		defer cancel()
		connect, err := s.WaitClockTrace(wctx, m, fixtures.IsConnect)
		if err != nil {
			clock := "unreadable"
			if c, cerr := s.Clock(ctx); cerr == nil {
				clock = fmt.Sprintf("%s, synced %v", time.UnixMilli(c.UnixMS).UTC().Format(time.RFC3339), c.Synced)
			}
			Fail(fmt.Sprintf("CLOCK-001 (000 L30; RFC 4330 §5): after answers with a zero transmit timestamp, which must be discarded, the device still needs UTC; once the server answered with the time it did not get it and connect within %s (before: %s; the board's clock reads %s)\n%s",
				s.Env.Timing.Connect, o.queryTimes(), clock, traceText(s.ClockTrace(m))))
		}
		se, seErr := seOf(&connect)
		Expect(seErr == nil && se.After(fixtures.EpochNear)).To(BeTrue(), "CLOCK-001 (000 L30): the CONNECT after the time server recovered must carry an se from UTC; se %s (%v)\n%s",
			se.Format(time.RFC3339), seErr, traceText(s.ClockTrace(m)))
	})
})
