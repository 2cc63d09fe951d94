package suites

import (
	"context"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/fixtures/series"
	"github.com/hilrun/hilrun/rig/netem"
)

// RECON-002 (002 L16737-16738, L16742): the default backoff resembles the
// SDK reference, and attempts that fail at once are at least 1 s apart.
// Only the board's default policy is judged, so the spec asks for it
// (configure retry {}), which a board declaring hello retryDefaults
// honours. The reference parameters (100 ms, 10 s, 100 ms) are one SDK's
// code sample and the docs put no bound on "resembles": the spec records
// the measured gaps and the declared defaults in the report, and judges
// the one bound the docs state, L16742's 1 s.
const (
	// instantMinGap is L16742's minimum between attempts that fail at once,
	// less 5 % for the distance between the device's timer (from its
	// failure) and the proxy's stamp (at its accept).
	instantMinGap = 950 * time.Millisecond
)

var _ = Describe("reconnect: default backoff", func() {
	Conformance("with its default policy the device spaces attempts that fail at once by at least 1 s", []string{"RECON-002"}, func(ctx SpecContext) {
		def := Env().Hello.RetryDefaults
		if def == nil {
			PreconditionUnmet("RECON-002: the board does not declare its default backoff (hello retryDefaults, PROTOCOL.md §3): every other spec configures a compressed policy, and without the declaration the suite cannot ask the board for its default one (configure retry {}); not judged")
		}
		// Attempts wanted (3 gaps between instant failures) and how long
		// they are waited for: at 1 s apart 4 attempts take about 3 s; a
		// real board's default may start slower (--strict).
		want, window := 4, 4500*time.Millisecond
		if Env().Options.Strict {
			want, window = 6, 40*time.Second
		}
		s := NewSession(ctx, fixtures.SessionOptions{Retry: &agentproto.RetryConfig{}})
		net := s.Env.Net
		m, nm := s.Mark(), net.Mark()
		// Every new TCP connection is reset at once (no route, RST: the
		// instant failures of L16742); the live one is cut.
		net.RefuseNew(true)
		DeferCleanup(func() { net.RefuseNew(false) })
		Expect(net.Cut()).To(BeNumerically(">=", 1), "rig: no live connection to cut")
		cut := must(waitNet(ctx, net, nm, "the cut", func(e netem.Event) bool { return e.Kind == netem.EvCut }))
		wctx, cancel := context.WithDeadline(ctx, cut.At.Add(window))
		defer cancel()
		times := refusedAfter(wctx, net, cut, want, nil)
		net.RefuseNew(false)
		Expect(ctx.Err()).NotTo(HaveOccurred(), "the spec was ended while attempts were collected")
		att := series.Series{Name: "loss, then attempts reset at once (the board's default policy)", Times: times}
		series.Record(att)
		retries := att.Retries()
		series.Record(retries)
		evidence := netText(net.Events(), nm) + traceText(s.Trace(m))
		if len(times) < 2 {
			PreconditionUnmet(fmt.Sprintf("RECON-002: the device made no reconnect attempt within %s of the cut (a RECON-001 matter): no gap to judge", window))
		}
		gaps := roundAll(retries.Gaps())
		AddReportEntry("RECON-002", fmt.Sprintf("declared defaults initial %d ms, ceiling %d ms, jitter %d %% (SDK reference 100 ms, 10 s, 100 ms step, 002 L16737-16738); first attempt %s after the loss; gaps between instant failures %v",
			def.InitialMS, def.MaxMS, def.JitterPct, times[1].Sub(times[0]).Round(time.Millisecond), gaps))
		if len(retries.Times) < 2 {
			return // one attempt within the window: none followed it sooner than 1 s
		}
		Expect(retries).To(series.HaveMinimumGap(instantMinGap), "RECON-002: expected at least 1 s (less 5 %%) between attempts that fail at once under the default policy; seen gaps %v (002 L16742: \"the retries are throttled if the code fails immediately … The minimum time to execute the next retry is 1 second\")\n%s",
			gaps, evidence)
	})
})
