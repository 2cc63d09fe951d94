package suites

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/fixtures/series"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/sntp"
)

// The CLOCK specs power-cycle the board so that its RTC is lost (1970, not
// synced), as on a board without a battery-backed clock, and control what
// the suite's time server (Env.SNTP) answers. Its queries are in the hub
// trace, ordered with the board's TLS handshakes and CONNECTs.
var _ = Describe("clock", func() {
	Conformance("RTC at 1970, time server reachable: the device gets UTC over SNTP before its first ClientHello and connects with an se from correct UTC", []string{"CLOCK-001", "CLOCK-002"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{KeepClock: true, NoOpen: true})
		coldBoot(ctx, s)
		m := s.Mark()
		openErr := s.Open(ctx)
		tr := s.ClockTrace(m)
		q, hello, connect := firstOf(tr, fixtures.IsSNTPQuery), firstOf(tr, fixtures.IsHandshake), firstOf(tr, fixtures.IsConnect)
		ttl := s.Env.Timing.TokenTTL
		se, seErr := seOf(connect)
		inOrder := q != nil && (hello == nil || q.Seq < hello.Seq)
		seGood := seErr == nil && se.Sub(connect.Time) > 0 && se.Sub(connect.Time) <= ttl+fixtures.ClockTolerance
		fixtures.NoteFact(fixtures.FactClock, "RTC at 1970, SNTP reachable", clockBehaviour(tr, connect, se, seErr, 0), inOrder && openErr == nil && seGood)

		Expect(q).NotTo(BeNil(), "CLOCK-001: a board at 1970 must ask the time server before it connects; no SNTP query seen\n%s", traceText(tr))
		Expect(hello).NotTo(BeNil(), "the board never opened TLS after getting the time (open: %v)\n%s", openErr, traceText(tr))
		Expect(q.Seq).To(BeNumerically("<", hello.Seq), "CLOCK-001: the time exchange must come before the first ClientHello\n%s", traceText(tr))
		Expect(seErr).NotTo(HaveOccurred(), "CLOCK-002: the first CONNECT's token has no readable se\n%s", traceText(tr))
		Expect(se.After(fixtures.EpochNear)).To(BeTrue(), "CLOCK-001: the first CONNECT's se %s comes from an epoch-near clock: the device did not wait for the time\n%s", se.Format(time.RFC3339), traceText(tr))
		Expect(seGood).To(BeTrue(), "CLOCK-002: 0 < se − hub time ≤ token lifetime %s + %s; se is %s, the hub's time at CONNECT %s (difference %s)\n%s",
			ttl, fixtures.ClockTolerance, se.Format(time.RFC3339), connect.Time.UTC().Format(time.RFC3339), signed(se.Sub(connect.Time)), traceText(tr))
		Expect(openErr).NotTo(HaveOccurred(), "after getting the time the board must connect\n%s", traceText(tr))
	})

	Conformance("RTC at 1970, time server silent: the device opens no TLS and sends no token while it waits for the time, and asks again with backoff", []string{"CLOCK-001"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{KeepClock: true, NoOpen: true})
		s.Env.SNTP.Drop()
		DeferCleanup(s.Env.SNTP.Reset)
		o := observeWithoutTime(ctx, s)
		fixtures.NoteFact(fixtures.FactClock, "RTC at 1970, SNTP unreachable (no answer)", o.behaviour(), o.good())
		o.expectNoConnection()
		o.expectBackoff()
	})

	Conformance("RTC at 1970, time server answers kiss-o'-death DENY: the device leaves that server alone and does not connect", []string{"CLOCK-001"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{KeepClock: true, NoOpen: true})
		s.Env.SNTP.KissOfDeath(sntp.KissDeny)
		DeferCleanup(s.Env.SNTP.Reset)
		o := observeWithoutTime(ctx, s)
		fixtures.NoteFact(fixtures.FactClock, "RTC at 1970, SNTP kiss-o'-death DENY", o.behaviour(), o.good() && len(o.queries) == 1)
		o.expectNoConnection()
		// RFC 4330 §8: after DENY the client must stop sending to that server.
		Expect(len(o.queries)).To(Equal(1), "CLOCK-001: after a kiss-o'-death DENY the device must not ask that server again; %d queries in %s: %s\n%s",
			len(o.queries), o.window, o.queryTimes(), traceText(o.trace))
	})

	Conformance("RTC at 1970, time server answers kiss-o'-death RATE: the device asks again only with backoff and does not connect", []string{"CLOCK-001"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{KeepClock: true, NoOpen: true})
		s.Env.SNTP.KissOfDeath(sntp.KissRate)
		DeferCleanup(s.Env.SNTP.Reset)
		o := observeWithoutTime(ctx, s)
		fixtures.NoteFact(fixtures.FactClock, "RTC at 1970, SNTP kiss-o'-death RATE", o.behaviour(), o.good())
		o.expectNoConnection()
		o.expectBackoff()
	})

	// A skewed time server: the device cannot know that its source is
	// wrong, so CLOCK-002's "0 < se − hub time ≤ TTL + 300 s" is not its
	// fault here. What is checked is the other half of CLOCK-002: se is
	// derived from the UTC the device was given, with its token lifetime
	// (0 < se − served time ≤ TTL + 300 s). What the hub made of it is
	// recorded as a board fact.
	for _, sk := range []struct {
		name   string
		offset time.Duration
		ttl    time.Duration
	}{
		{"2 h ahead", 2 * time.Hour, 0},
		{"30 min behind, token lifetime 10 min", -30 * time.Minute, 10 * time.Minute},
	} {
		Conformance("time server "+sk.name+": the device's se follows the time it was served; the hub's verdict is recorded", []string{"CLOCK-002"}, func(ctx SpecContext) {
			s := NewSession(ctx, fixtures.SessionOptions{KeepClock: true, NoOpen: true, TokenTTL: sk.ttl}, agentproto.CapSNTP)
			ttl := s.Env.Timing.TokenTTL
			if sk.ttl > 0 {
				ttl = sk.ttl
			}
			s.Env.SNTP.SetOffset(sk.offset)
			DeferCleanup(s.Env.SNTP.Reset)
			coldBoot(ctx, s)
			m := s.Mark()
			must(0, s.Call(ctx, agentproto.OpOpen, nil, nil))
			connect := must(s.WaitClockTrace(ctx, m, fixtures.IsConnect))
			verdict := must(s.WaitClockTrace(ctx, m, func(e hub.Entry) bool {
				return e.ConnID == connect.ConnID && (e.Type == "CONNACK" || e.Type == hub.EventConnRejected)
			}))
			tr := s.ClockTrace(m)
			se, seErr := seOf(&connect)
			served := connect.Time.Add(sk.offset) // the device's clock at CONNECT, had it kept the served time
			follows := seErr == nil && se.Sub(served) > 0 && se.Sub(served) <= ttl+fixtures.ClockTolerance
			fixtures.NoteFact(fixtures.FactClock, "time server "+sk.name, clockBehaviour(tr, &connect, se, seErr, sk.offset)+"; hub: "+verdictText(verdict), follows)

			Expect(seErr).NotTo(HaveOccurred(), "CLOCK-002: the CONNECT's token has no readable se\n%s", traceText(tr))
			Expect(follows).To(BeTrue(), "CLOCK-002: se must be the device's UTC (the served time, %s from the hub's) plus its token lifetime %s (± %s); se − served time is %s\n%s",
				signed(sk.offset), ttl, fixtures.ClockTolerance, signed(se.Sub(served)), traceText(tr))
		})
	}
})

// timeWatch is what a board at 1970 did while the time server would not
// give it the time.
type timeWatch struct {
	s       *fixtures.Session
	window  time.Duration // observed from the first query on
	queries []time.Time   // SNTP queries within the window
	trace   []hub.Entry
	conns   []hub.Entry // handshakes and CONNECTs within the window
}

// observeWithoutTime cold-boots the board, opens the client and watches
// for the observation window from its first SNTP query on.
func observeWithoutTime(ctx context.Context, s *fixtures.Session) *timeWatch {
	GinkgoHelper()
	coldBoot(ctx, s)
	m := s.Mark()
	must(0, s.Call(ctx, agentproto.OpOpen, nil, nil))
	first, err := s.WaitClockTrace(ctx, m, func(e hub.Entry) bool {
		return fixtures.IsSNTPQuery(e) || fixtures.IsHandshake(e) || fixtures.IsConnect(e)
	})
	if err != nil {
		Fail(fmt.Sprintf("CLOCK-001: after client.open a board at 1970 must ask the time server; nothing seen\n%s", traceText(s.ClockTrace(m))))
	}
	w := &timeWatch{s: s, window: clockWindow(s.Env.Timing)}
	// Nothing may reach the hub: observe the window with a wait that is
	// expected to time out (a handshake or CONNECT ends it early).
	wctx, cancel := context.WithDeadline(ctx, first.Time.Add(w.window))
	_, _ = s.WaitClockTrace(wctx, m, func(e hub.Entry) bool { return fixtures.IsHandshake(e) || fixtures.IsConnect(e) })
	cancel()
	if rest := time.Until(first.Time.Add(w.window)); rest > 0 {
		// A handshake ended the wait early: still count the queries of the
		// whole window (expected to time out as well).
		wctx, cancel := context.WithTimeout(ctx, rest)
		_, _ = s.WaitClockTrace(wctx, m, func(hub.Entry) bool { return false })
		cancel()
	}
	w.trace = s.ClockTrace(m)
	end := first.Time.Add(w.window)
	for _, e := range w.trace {
		switch {
		case e.Time.After(end):
		case fixtures.IsSNTPQuery(e):
			w.queries = append(w.queries, e.Time)
		case fixtures.IsHandshake(e) || fixtures.IsConnect(e):
			w.conns = append(w.conns, e)
		}
	}
	return w
}

// clockWindow is how long a board without time is watched: fifteen
// initial retry delays (1.5 s on the virtual board), at least Quiet.
func clockWindow(t fixtures.Timing) time.Duration { return max(t.Quiet, 15*t.RetryInitial) }

// maxQueries bounds the SNTP queries in the window: exponential backoff
// from the initial delay (less 20 % jitter) fits at most this many.
func (w *timeWatch) maxQueries() int {
	initial := w.s.Env.Timing.RetryInitial * 8 / 10
	return 2 + int(math.Ceil(math.Log2(float64(w.window)/float64(initial))))
}

func (w *timeWatch) good() bool {
	return len(w.conns) == 0 && len(w.queries) >= 1 && len(w.queries) <= w.maxQueries()
}

func (w *timeWatch) behaviour() string {
	if len(w.conns) > 0 {
		return fmt.Sprintf("did not wait for the time: %d TLS handshake(s) / CONNECT(s) within %s; %s", len(w.conns), w.window, w.queryTimes())
	}
	return fmt.Sprintf("waited for the time: no TLS, no CONNECT within %s; %s", w.window, w.queryTimes())
}

// queryTimes renders the queries as offsets from the first.
func (w *timeWatch) queryTimes() string {
	if len(w.queries) == 0 {
		return "no SNTP query"
	}
	var b strings.Builder
	for i, t := range w.queries {
		if i > 0 {
			b.WriteString(", ")
		}
		if i == 12 {
			fmt.Fprintf(&b, "… %d more", len(w.queries)-i)
			break
		}
		fmt.Fprintf(&b, "+%d ms", t.Sub(w.queries[0]).Milliseconds())
	}
	if len(w.queries) == 1 {
		return "1 SNTP query"
	}
	return fmt.Sprintf("%d SNTP queries at %s", len(w.queries), b.String())
}

// expectNoConnection: without UTC no TLS handshake (CLOCK-001) and, in
// particular, no CONNECT with a token from an epoch-near clock.
func (w *timeWatch) expectNoConnection() {
	GinkgoHelper()
	for _, e := range w.conns {
		if fixtures.IsConnect(e) {
			se, err := fixtures.TokenExpiry(e)
			if err == nil && se.Before(fixtures.EpochNear) {
				Fail(fmt.Sprintf("CLOCK-001: CONNECT with an se from an epoch-near clock (%s): the device did not wait for the time\n%s", se.Format(time.RFC3339), traceText(w.trace)))
			}
		}
	}
	Expect(w.conns).To(BeEmpty(), "CLOCK-001: without UTC time the device must not open TLS or connect; within %s it did %d time(s)\n%s", w.window, len(w.conns), traceText(w.trace))
}

// expectBackoff: the device keeps asking, but with backoff (no hammering).
func (w *timeWatch) expectBackoff() {
	GinkgoHelper()
	Expect(w.queries).NotTo(BeEmpty(), "CLOCK-001: the device must ask the time server\n%s", traceText(w.trace))
	qs := series.Series{Name: "SNTP queries of a board at 1970 without an answer", Times: w.queries}
	series.Record(qs)
	initial := w.s.Env.Timing.RetryInitial
	if len(w.queries) >= 2 {
		Expect(qs).To(series.HaveMinimumGap(initial*8/10), "CLOCK-001: SNTP queries must not follow each other sooner than the initial retry delay %s less its jitter\n%s", initial, traceText(w.trace))
	}
	Expect(len(w.queries)).To(BeNumerically("<=", w.maxQueries()), "CLOCK-001: at most %d SNTP queries fit into %s with exponential backoff from %s; saw %d (%s)\n%s",
		w.maxQueries(), w.window, initial, len(w.queries), w.queryTimes(), traceText(w.trace))
}

// firstOf returns the first entry that matches, or nil.
func firstOf(tr []hub.Entry, match func(hub.Entry) bool) *hub.Entry {
	for i := range tr {
		if match(tr[i]) {
			return &tr[i]
		}
	}
	return nil
}

func seOf(connect *hub.Entry) (time.Time, error) {
	if connect == nil {
		return time.Time{}, fmt.Errorf("no CONNECT")
	}
	return fixtures.TokenExpiry(*connect)
}

// clockBehaviour summarises a clock scenario for the report.
func clockBehaviour(tr []hub.Entry, connect *hub.Entry, se time.Time, seErr error, offset time.Duration) string {
	q, hello := firstOf(tr, fixtures.IsSNTPQuery), firstOf(tr, fixtures.IsHandshake)
	var parts []string
	switch {
	case q == nil:
		parts = append(parts, "no SNTP query")
	case hello == nil || q.Seq < hello.Seq:
		parts = append(parts, "queried SNTP before the first ClientHello")
	default:
		parts = append(parts, "first ClientHello before any SNTP query")
	}
	switch {
	case connect == nil:
		parts = append(parts, "no CONNECT")
	case seErr != nil:
		parts = append(parts, "CONNECT without a readable se")
	default:
		p := "se − hub time " + signed(se.Sub(connect.Time))
		if offset != 0 {
			p += ", se − served time " + signed(se.Sub(connect.Time.Add(offset)))
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "; ")
}

func verdictText(v hub.Entry) string {
	if v.Type == hub.EventConnRejected {
		return fmt.Sprintf("refused (CONNACK %d, %s %s)", v.ReturnCode, v.Requirement, v.Reason)
	}
	return fmt.Sprintf("CONNACK %d", v.ReturnCode)
}

// signed renders a duration in whole seconds with its sign.
func signed(d time.Duration) string {
	return fmt.Sprintf("%+d s", int64(d.Round(time.Second)/time.Second))
}

// coldBoot loses the board's clock, or skips the spec as not applicable when
// the rig cannot (no power switch and a reset that keeps the RTC).
func coldBoot(ctx context.Context, s *fixtures.Session) {
	GinkgoHelper()
	err := s.ColdBoot(ctx)
	if errors.Is(err, fixtures.ErrClockSurvives) {
		Skip(notApplicable + err.Error())
	}
	must(0, err)
}
