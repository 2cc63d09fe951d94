package suites

import (
	"context"
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/fixtures/series"
	"github.com/hilrun/hilrun/rig/hub"
)

// TWIN-005: the {status} segment of $iothub/twin/res/{status}/?$rid=… is an
// integer, and 429 and 5xx answers are retried later. The hub answers the
// next twin requests of the session's identity with an error status
// (hub.FailTwinRequests) and the specs judge the device's requests on the
// wire. (The 400 case is in twin.go.)
var _ = Describe("device twin: error statuses", func() {
	Conformance("after a 429 answer the device sends the reported patch again, no sooner than the throttled minimum", []string{"TWIN-005", "RECON-003"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		twinResynced(ctx, s, s.Start())
		// The throttled minimum is 10 s (RECON-003), capped by the retry
		// ceiling configured on the board (2 s on the virtual board); the
		// 20 % margin is the same as for CONNACK 3 (resilience_session.go).
		minimum := min(10*time.Second, s.Env.Timing.RetryMax)
		floor := minimum * 8 / 10
		m := s.Mark()
		must(0, s.Env.Hub.FailTwinRequests(s.ID, 429, 1))
		_, err := twinReport(ctx, s, map[string]any{"throttled": 1})
		first := must(s.WaitTrace(ctx, m, "the reported PATCH", twinPublishTo(twinReportedPrefix)))
		answer := must(s.WaitTrace(ctx, m, "the 429 answer to the PATCH", twinAnswerTo(twinRID(first.Topic))))
		Expect(answer.Topic).To(HavePrefix(twinResPrefix+"429/"), "precondition: the hub answers 429\n%s", traceText(s.Trace(m)))
		// The device may retry after the call returned: wait up to twice the minimum.
		wctx, cancel := context.WithTimeout(ctx, 2*minimum+s.Env.Timing.Quiet)
		defer cancel()
		retry, werr := s.WaitTrace(wctx, m, "", func(e hub.Entry) bool {
			return e.Seq > answer.Seq && twinPublishTo(twinReportedPrefix)(e) && string(e.Payload) == string(first.Payload)
		})
		tr := s.Trace(m)
		Expect(werr).NotTo(HaveOccurred(), "TWIN-005: after the 429 answer (%s) the device must send the patch %s again, later; it did not (twin.report: %v)\n%s",
			answer.Topic, first.Payload, err, traceText(tr))
		gap := retry.Mono - answer.Mono
		Expect(gap).To(BeNumerically(">=", floor), "RECON-003: after the 429 answer the patch came again %s later; the throttled minimum here is %s (at least %s accepted)\n%s",
			gap, minimum, floor, traceText(tr))
		ok := must(s.WaitTrace(ctx, m, "the answer to the retried PATCH", twinAnswerTo(twinRID(retry.Topic))))
		Expect(ok.Topic).To(HavePrefix(twinResPrefix+"204/"), "precondition: the hub accepts the retried patch\n%s", traceText(tr))
		Expect(err).NotTo(HaveOccurred(), "TWIN-005: the retried patch was accepted (%s); twin.report must succeed\n%s", ok.Topic, traceText(tr))
	})

	Conformance("after 500 answers the device sends the reported patch again with growing gaps until the hub accepts it", []string{"TWIN-005"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		twinResynced(ctx, s, s.Start())
		m := s.Mark()
		must(0, s.Env.Hub.FailTwinRequests(s.ID, 500, 4))
		_, err := twinReport(ctx, s, map[string]any{"serverError": 1})
		twinRetriedWithBackoff(ctx, s, m, twinReportedPrefix, 500, 4, err)
	})

	Conformance("after 503 answers the device sends its twin GET again with growing gaps until the hub answers 200", []string{"TWIN-005"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		twinResynced(ctx, s, s.Start())
		m := s.Mark()
		must(0, s.Env.Hub.FailTwinRequests(s.ID, 503, 3))
		err := s.Call(ctx, agentproto.OpTwinGet, nil, nil)
		twinRetriedWithBackoff(ctx, s, m, twinGetPrefix, 503, 3, err)
	})
})

// twinRetriedWithBackoff judges the device's twin requests (topic prefix)
// since m after the hub answered the first n with status: each failed one is
// followed by a retry of the same document, the gaps between the attempts
// grow (exponential backoff, never a tight loop), and the retry after the
// last failure is answered 2xx, which the device's operation reports as
// success (callErr).
func twinRetriedWithBackoff(ctx context.Context, s *fixtures.Session, m fixtures.Marks, prefix string, status, n int, callErr error) {
	GinkgoHelper()
	t := s.Env.Timing
	first := must(s.WaitTrace(ctx, m, "the twin request", twinPublishTo(prefix)))
	// The device may retry after its call returned: the last attempt comes
	// within the backoff cap of the previous one.
	wctx, cancel := context.WithTimeout(ctx, t.RetryMax+t.Quiet)
	defer cancel()
	_, werr := s.WaitTrace(wctx, m, "", func(e hub.Entry) bool {
		return e.Dir == hub.DirOut && e.Type == "PUBLISH" && strings.HasPrefix(e.Topic, twinResPrefix+"2")
	})
	tr := s.Trace(m)
	var attempts []hub.Entry
	for _, e := range tr {
		if twinPublishTo(prefix)(e) && string(e.Payload) == string(first.Payload) {
			attempts = append(attempts, e)
		}
	}
	at := make([]time.Duration, len(attempts))
	for i, a := range attempts {
		at[i] = a.Mono
	}
	att := series.FromOffsets(fmt.Sprintf("twin requests %s… answered %d (%d times), then 2xx", prefix, status, n), at...)
	series.Record(att)
	failed := 0
	for _, a := range attempts {
		if r, ok := twinResponse(tr, twinRID(a.Topic)); ok && strings.HasPrefix(r.Topic, fmt.Sprintf("%s%d/", twinResPrefix, status)) {
			failed++
		}
	}
	Expect(failed).To(BeNumerically(">=", 1), "precondition: the hub answers %d\n%s", status, traceText(tr))
	Expect(len(attempts)).To(BeNumerically(">", n), "TWIN-005: the hub answered %d to the first %d attempts; the device must try again until it succeeds, but it sent the request %d time(s) in all (call: %v)\n%s",
		status, n, len(attempts), callErr, traceText(tr))
	Expect(werr).NotTo(HaveOccurred(), "TWIN-005: no 2xx answer to a retried request\n%s", traceText(tr))
	evidence := fmt.Sprintf("after %d answers\n%s", status, traceText(tr))
	Expect(att).To(series.HaveMinimumGap(t.RetryInitial/2), "TWIN-005: the retries must be backed off, not immediate, %s", evidence)
	Expect(att).To(series.GrowAtLeast(1.4), "TWIN-005: the gaps between retries must grow (backoff) %s", evidence)
	last := attempts[len(attempts)-1]
	r, ok := twinResponse(tr, twinRID(last.Topic))
	Expect(ok && strings.HasPrefix(r.Topic, twinResPrefix+"2")).To(BeTrue(), "TWIN-005: the last attempt %s must be the one the hub accepted\n%s", last.Topic, traceText(tr))
	Expect(callErr).NotTo(HaveOccurred(), "TWIN-005: the request succeeded on a retry (%s); the device's operation must succeed\n%s", r.Topic, traceText(tr))
}
