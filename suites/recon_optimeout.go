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
	"github.com/hilrun/hilrun/rig/agent"
	"github.com/hilrun/hilrun/rig/hub"
)

// RECON-005 (002 L16709-16710, L16753): the retries of one operation end
// after an overall timeout, and the failure is then reported. 4 minutes
// is the SDK's default (DefaultOperationTimeoutInMilliseconds); a device
// that defines its own limit is judged on that one, so the board declares
// it (hello operationTimeout, PROTOCOL.md §3).
const (
	// opTimeoutCompressed is the limit configured on a board that applies
	// retry.operationTimeoutMs, outside --strict.
	opTimeoutCompressed = 2500 * time.Millisecond
	// opTimeoutSDKDefault is the SDK default of 002 L16753.
	opTimeoutSDKDefault = 4 * time.Minute
	// opTimeoutBudget and opTimeoutBudgetStrict bound the limit this spec
	// waits out (compressed and --strict runs).
	opTimeoutBudget       = 4 * time.Second
	opTimeoutBudgetStrict = 5 * time.Minute
)

var _ = Describe("reconnect: operation timeout", func() {
	Conformance("an unacknowledged QoS 1 telemetry message is not sent again after the overall operation timeout, and its failure is reported", []string{"RECON-005"}, func(ctx SpecContext) {
		limit, how, s := opTimeoutSession(ctx)
		// "About" the limit: a tenth of it, at least 1 s (the serial line,
		// a reconnect in progress at the limit).
		tol := max(time.Second, limit/10)
		// How long a reconnected device is watched for a resend (the C SDK
		// republishes ≥ 3 s after a reconnect, device-sdk-behaviours.md §4:
		// Timing.Quiet is 3 s under --strict).
		settle := max(time.Second, 2*s.Env.Timing.Quiet)
		const mid = "recon005-withheld"
		payload := `{"recon005":"no PUBACK for this one"}`
		isCopy := func(e hub.Entry) bool {
			return e.Dir == hub.DirIn && e.Type == "PUBLISH" && strings.HasPrefix(e.Topic, "devices/") &&
				(messageID(e.Properties) == mid || string(e.Payload) == payload)
		}
		copies := func(tr []hub.Entry) []hub.Entry {
			var out []hub.Entry
			for _, e := range tr {
				if isCopy(e) {
					out = append(out, e)
				}
			}
			return out
		}

		// The hub withholds the message's PUBACK (and every other answer).
		s.Env.Hub.SetSilent(s.ID, true)
		DeferCleanup(func() { s.Env.Hub.SetSilent(s.ID, false) })
		m := s.Mark()
		one := 1
		sent := time.Now()
		endAt := sent.Add(limit + tol)
		type outcome struct {
			res agentproto.TelemetryResult
			err error
			at  time.Time
		}
		answered := make(chan outcome, 1)
		go func() {
			cctx, cancel := context.WithDeadline(ctx, endAt.Add(time.Second))
			defer cancel()
			var r agentproto.TelemetryResult
			err := s.Call(cctx, agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: payload, MessageID: mid, QoS: &one, Wait: true}, &r)
			answered <- outcome{r, err, time.Now()}
		}()
		first := must(s.WaitTrace(ctx, m, "the telemetry PUBLISH whose PUBACK the hub withholds", isCopy))
		Expect(first.QoS).To(BeEquivalentTo(1), "RECON-005: the telemetry must go out at QoS 1 (asked for; TEL-003)\n%s", traceText(s.Trace(m)))

		// Until the limit (and its tolerance) has passed, every copy seen is
		// followed by a cut of the link: an unacknowledged message is sent
		// again after a reconnect (MQTT 3.1.1 §4.4, TEL-004), so each cut
		// gives the device a chance to retry. A device that also resends on
		// the same connection is seen just the same.
		seen := 1
		cuts := 0
		for time.Now().Before(endAt) {
			s.Env.Net.Cut()
			cuts++
			wctx, cancel := context.WithDeadline(ctx, endAt)
			err := s.Env.Hub.Wait(wctx, func() bool { return len(copies(s.Trace(m))) > seen })
			cancel()
			if err != nil {
				break // no further copy before the limit ran out
			}
			seen = len(copies(s.Trace(m)))
		}
		Expect(ctx.Err()).NotTo(HaveOccurred(), "the spec was ended while the operation was pending")

		// The failure report is due by the end of the limit: the
		// telemetry.send answer or a telemetry.acked event with acked false.
		var out outcome
		select {
		case out = <-answered:
		case <-ctx.Done():
			Fail("the spec was ended while the operation was pending")
		}
		reported := ""
		if ae, ok := fixtures.IsDeviceError(out.err); ok {
			reported = fmt.Sprintf("telemetry.send answered %s (%s) after %s", ae.Code, ae.Msg, out.at.Sub(sent).Round(time.Millisecond))
		} else if out.err == nil {
			Expect(out.res.Acked).To(BeFalse(), "RECON-005: the message was reported delivered, but the hub sent no PUBACK\n%s", traceText(s.Trace(m)))
			if out.res.Error != "" {
				reported = fmt.Sprintf("telemetry.send answered %q after %s", out.res.Error, out.at.Sub(sent).Round(time.Millisecond))
			}
		}
		if reported == "" {
			ectx, cancel := context.WithTimeout(ctx, 10*time.Millisecond) // the events already received
			ev, err := s.WaitEvent(ectx, m, agentproto.EvTelemetry, func(e agent.Event) bool {
				var r agentproto.TelemetryResult
				return e.Decode(&r) == nil && !r.Acked
			})
			cancel()
			if err == nil {
				var r agentproto.TelemetryResult
				_ = ev.Decode(&r)
				reported = fmt.Sprintf("telemetry.acked event with acked false (%s)", r.Error)
			}
		}

		// After the limit the message is not sent again: the device is made
		// to reconnect once more and watched for a copy.
		last := s.Mark()
		s.Env.Net.Cut()
		cctx, cancel := context.WithTimeout(ctx, s.Env.Timing.Connect)
		_, upErr := s.WaitTrace(cctx, last, "a CONNACK 0 after the last cut", isConnack(0))
		cancel()
		if upErr == nil {
			qctx, cancel := context.WithTimeout(ctx, settle)
			_, _ = s.WaitTrace(qctx, last, "a copy of the message after the reconnect", isCopy)
			cancel()
		} else {
			AddReportEntry("RECON-005", fmt.Sprintf("no reconnect within %s after the last cut; judged on the copies seen up to then", s.Env.Timing.Connect))
		}
		tr := s.Trace(m)
		all := copies(tr)
		var late []string
		for _, e := range all {
			if e.Time.After(endAt) {
				late = append(late, fmt.Sprintf("connection %d at +%s (DUP %v)", e.ConnID, e.Time.Sub(sent).Round(time.Millisecond), e.Dup))
			}
		}
		lastAt := all[len(all)-1].Time.Sub(sent).Round(time.Millisecond)
		AddReportEntry("RECON-005", fmt.Sprintf("limit %s (%s); %d copies of %s over %d cuts, the last at +%s; report: %s", limit, how, len(all), mid, cuts, lastAt, orNone(reported)))
		Expect(late).To(BeEmpty(), "RECON-005: expected no copy of message %s after its operation timeout (%s, %s) plus %s; seen %d: %v (002 L16710: \"When the defined timeout expires, the SDK stops trying to connect or send\"; L16753)\n%s",
			mid, limit, how, tol, len(late), late, traceText(tr))
		Expect(reported).NotTo(BeEmpty(), "RECON-005: expected the device to report the failure of the send by the end of its operation timeout (%s, %s) plus %s: a telemetry.send answer (acked false with an error, or an agent error) or a telemetry.acked event with acked false; seen: no answer (%v) and no such event (002 L16710: \"It notifies the user\")\n%s",
			limit, how, tol, out.err, traceText(tr))
	}, SpecTimeout(opTimeoutBudgetStrict+2*time.Minute))
})

// opTimeoutSession opens a session for a RECON-005 spec: the operation
// timeout the board is judged on (opTimeoutLimit) and how it was chosen,
// configured on the board with the rig's retry timing when the limit is
// the suite's own.
func opTimeoutSession(ctx SpecContext) (time.Duration, string, *fixtures.Session) {
	GinkgoHelper()
	limit, how, configure := opTimeoutLimit(Env())
	var retry *agentproto.RetryConfig
	if configure {
		t := Env().Timing
		retry = &agentproto.RetryConfig{InitialMS: int(t.RetryInitial / time.Millisecond), MaxMS: int(t.RetryMax / time.Millisecond), JitterPct: 20,
			OperationTimeoutMS: int(limit / time.Millisecond)}
	}
	return limit, how, NewSession(ctx, fixtures.SessionOptions{Retry: retry})
}

// opTimeoutLimit is the limit RECON-005 judges the board on, how it was
// chosen, and whether the spec configures it. It ends the spec as
// precondition-unmet when the board declares none or one longer than the
// spec can wait.
func opTimeoutLimit(e *fixtures.Env) (time.Duration, string, bool) {
	GinkgoHelper()
	ot := e.Hello.OperationTimeout
	strict := e.Options.Strict
	if ot == nil {
		PreconditionUnmet("RECON-005: the board does not declare its overall operation limit (hello operationTimeout, PROTOCOL.md §3); 4 minutes is only the SDK default (002 L16753) and a device may define its own (L16709-16710), so without the declaration the spec cannot tell how long the device may keep resending; not judged")
	}
	if ot.Configurable && !strict {
		return opTimeoutCompressed, "configured through retry.operationTimeoutMs", true
	}
	limit, how := time.Duration(ot.DefaultMS)*time.Millisecond, "the board's declared default"
	switch {
	case ot.DefaultMS < 0:
		limit, how = opTimeoutSDKDefault, "the SDK default of 002 L16753; the board declares no limit of its own"
	case ot.DefaultMS == 0:
		PreconditionUnmet("RECON-005: the board declares an operation limit of 0 ms that cannot be configured (hello operationTimeout); not judged")
	}
	budget := opTimeoutBudget
	if strict {
		budget = opTimeoutBudgetStrict
	}
	if limit > budget {
		PreconditionUnmet(fmt.Sprintf("RECON-005: the operation limit to judge is %s (%s), longer than the %s this spec waits out on this run (--strict waits up to %s); not judged", limit, how, budget, opTimeoutBudgetStrict))
	}
	return limit, how, false
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
