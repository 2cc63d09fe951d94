package suites

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/types"

	"github.com/hilrun/hilrun/reports"
	"github.com/hilrun/hilrun/rig/agent"
)

// Rig faults are not verdicts on the firmware (PROTOCOL.md §2.2). The agent
// client records every one with its time, in order (frames lost or
// corrupted on the line, sequence gaps, a board declared hung by the
// watchdog). Each spec's window runs from ReportBeforeEach to
// ReportAfterEach, so it holds the spec's setup, body and cleanup; a spec
// that ends with a fault in its window is rig-fault, whatever its
// assertions said. Specs the run never got to (a dead board, an interrupt)
// are not-run.

// notRun prefixes the Skip message of a spec the run did not get to.
const notRun = "not run: "

var rig struct {
	mu        sync.Mutex
	faultMark int            // Agent.FaultCount() when the current spec began
	specOf    map[int]string // fault index → the spec in whose window it fell
	ended     string         // why the remaining specs are not run ("" while running)
	cutAt     time.Time      // when the run's context ended (Ctrl-C, SIGTERM)
	labels    types.LabelFilter
	focus     []*regexp.Regexp
}

// rigSetup remembers the run's filters (to tell the specs an interrupt cut
// off from those the filters left out: Ginkgo reports both as skipped
// without a message).
func rigSetup(labelFilter string, focus []string) {
	rig.mu.Lock()
	defer rig.mu.Unlock()
	rig.specOf = map[int]string{}
	if labelFilter != "" {
		if f, err := types.ParseLabelFilter(labelFilter); err == nil {
			rig.labels = f
		}
	}
	for _, f := range focus {
		if re, err := regexp.Compile(f); err == nil {
			rig.focus = append(rig.focus, re)
		}
	}
}

func selected(r SpecReport) bool {
	rig.mu.Lock()
	defer rig.mu.Unlock()
	if rig.labels != nil && !rig.labels(r.Labels()) {
		return false
	}
	if len(rig.focus) == 0 {
		return true
	}
	for _, re := range rig.focus {
		if re.MatchString(r.FullText()) {
			return true
		}
	}
	return false
}

// noteInterrupt records when ctx (the run's) ends.
func noteInterrupt(ctx context.Context) (stop func() bool) {
	return context.AfterFunc(ctx, func() {
		rig.mu.Lock()
		rig.cutAt = time.Now()
		rig.mu.Unlock()
	})
}

// applyInterrupt makes a spec that failed after Ctrl-C interrupted: the
// signal reaches the run's context (which ends every session wait) and
// Ginkgo's interrupt handler separately, so the spec may have failed on
// its ended waits before Ginkgo marked it interrupted. Either way the
// failure is the interrupt's, not the firmware's.
func applyInterrupt(res *reports.SpecResult, r SpecReport) {
	e := env
	if e == nil || !e.Interrupted() || res.Status != reports.SpecFailed {
		return
	}
	rig.mu.Lock()
	cut := rig.cutAt
	rig.mu.Unlock()
	// The context's callbacks may not have run yet: then it ended just now.
	if !cut.IsZero() && cut.Before(r.StartTime) {
		return
	}
	res.Status = reports.SpecInterrupted
	res.Failure = "interrupted (Ctrl-C or SIGTERM) during the spec; what it saw then, not a verdict: " + res.Failure
	res.Wire, res.Console = nil, nil
}

// endRun records why the remaining specs will not run (first reason wins).
func endRun(reason string) {
	rig.mu.Lock()
	if rig.ended == "" {
		rig.ended = reason
	}
	rig.mu.Unlock()
}

func runEnded() string {
	rig.mu.Lock()
	defer rig.mu.Unlock()
	return rig.ended
}

var _ = ReportBeforeEach(func(SpecReport) {
	if e := env; e != nil {
		n := e.Agent.FaultCount()
		rig.mu.Lock()
		rig.faultMark = n
		rig.mu.Unlock()
	}
})

// specCtx is a spec's SpecContext with Done, Err, Deadline and Value
// taken from a derived context that also ends when the run is interrupted
// or the board is declared hung: every wait of the spec, on the hub as
// well as on the agent, wakes at once instead of running into its
// deadline.
type specCtx struct {
	SpecContext
	ctx context.Context
}

func (c specCtx) Deadline() (time.Time, bool) { return c.ctx.Deadline() }
func (c specCtx) Done() <-chan struct{}       { return c.ctx.Done() }
func (c specCtx) Err() error                  { return c.ctx.Err() }
func (c specCtx) Value(k any) any             { return c.ctx.Value(k) }

// guardSpec runs before a spec's body: it waits for a recovery of the
// board in progress, skips the spec as not run when the board is dead or
// the run was interrupted, and returns the spec's bounded context.
func guardSpec(ctx SpecContext) (SpecContext, context.CancelFunc) {
	e := env
	if e == nil {
		return ctx, func() {}
	}
	if reason := runEnded(); reason != "" {
		Skip(notRun + reason)
	}
	if e.Interrupted() {
		endRun("run interrupted")
		Skip(notRun + "run interrupted")
	}
	if w := e.Watchdog; w != nil {
		err := w.Ready(ctx)
		var dead *agent.DeadError
		if errors.As(err, &dead) {
			endRun(dead.Error())
			Skip(notRun + dead.Error())
		}
	}
	bctx, cancel := e.Bound(ctx)
	return specCtx{SpecContext: ctx, ctx: bctx}, cancel
}

// applyRigFaults makes res a rig-fault when a fault fell in the spec's
// window, and attributes those faults to it.
//
// A fault stamped before the spec started belongs to the spec before it
// (the hang began there, and on a loaded host its record can land after
// that spec's report): it is not this spec's, and the spec that failed on
// it was made a rig fault by its own failure (FaultError) already.
func applyRigFaults(res *reports.SpecResult, started time.Time) {
	e := env
	if e == nil {
		return
	}
	all := e.Agent.Faults()
	rig.mu.Lock()
	from := min(rig.faultMark, len(all))
	for i := from; i < len(all); i++ {
		rig.specOf[i] = res.Name
	}
	rig.faultMark = len(all)
	rig.mu.Unlock()
	var faults []agent.Fault
	for _, f := range all[from:] {
		if started.IsZero() || !f.At.Before(started) {
			faults = append(faults, f)
		}
	}
	if len(faults) == 0 {
		// A spec that failed on the agent's rig-fault error (FaultError:
		// a wait ended by a fault the watchdog declared) is a rig fault
		// even when the fault's record fell into the previous spec's
		// window (the hang began there; a loaded host stretches the gap).
		if res.Status == reports.SpecFailed && strings.Contains(res.Failure, ": rig fault: ") {
			res.Status, res.RigFault = reports.SpecRigFault, firstLineOf(res.Failure)+"\nnot a verdict on the firmware: the board stopped answering during this spec (PROTOCOL.md §2.2); see console.log"
		}
		return
	}
	switch res.Status {
	case reports.SpecPassed, reports.SpecFailed, reports.SpecInterrupted:
	default:
		return // not applicable or skipped before it touched the board
	}
	var b strings.Builder
	for i, f := range faults {
		if i == 5 {
			fmt.Fprintf(&b, "… and %d more rig faults\n", len(faults)-i)
			break
		}
		fmt.Fprintf(&b, "%s %s\n", f.At.Format("15:04:05.000"), f)
	}
	b.WriteString("not a verdict on the firmware: the rig lost or corrupted frames, or the board stopped answering, during this spec (PROTOCOL.md §2.2); see console.log")
	res.Status, res.RigFault = reports.SpecRigFault, b.String()
}

// rigFaultEvents lists the run's rig faults for the report.
func rigFaultEvents() []reports.RigFaultEvent {
	e := env
	if e == nil {
		return nil
	}
	rig.mu.Lock()
	defer rig.mu.Unlock()
	var out []reports.RigFaultEvent
	for i, f := range e.Agent.Faults() {
		out = append(out, reports.RigFaultEvent{At: f.At, Kind: f.Kind, Spec: rig.specOf[i], Message: f.String()})
	}
	return out
}

// notRunResult is the result of a spec the run did not get to (ok false
// for any other spec).
func notRunResult(r SpecReport) (reports.SpecResult, bool) {
	reason := runEnded()
	if e := env; reason == "" && e != nil && e.Interrupted() {
		reason = "run interrupted"
	}
	if reason == "" || r.State != types.SpecStateSkipped || r.Failure.Message != "" || !selected(r) {
		return reports.SpecResult{}, false
	}
	res, _ := specResult(r)
	res.Status, res.Failure = reports.SpecNotRun, reason
	return res, true
}
