package suites

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/formatter"
	"github.com/onsi/ginkgo/v2/types"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/fixtures/catalog"
	"github.com/hilrun/hilrun/reports"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/secrets"
)

// RunOptions select what to run and where the report goes.
type RunOptions struct {
	Env         fixtures.Options
	LabelFilter string   // Ginkgo label filter, e.g. "TWIN || METH-003"
	Focus       []string // regular expressions on spec text
	OutDir      string   // report directory (created)
	Progress    io.Writer
	Command     []string
	Version     string
	// Specs, when set, are the IDs (SpecInfo.ID, from List) of exactly the
	// specs to run: one shard of a suite split across boards. Not with Focus.
	Specs []string
	// FailFast ends the run at the first failed spec (the rest are
	// skipped): enough for a mutant of `hilrun selftest --mutate`.
	FailFast bool
}

var (
	ranOnce   bool
	resultsMu sync.Mutex
	results   []reports.SpecResult
	suiteRep  *types.Report
	progress  io.Writer = io.Discard
)

// Run executes the selected specs against one board and writes the report
// directory. Ginkgo runs a suite once per process, so Run may be called
// only once; multi-board runs use one process per board.
//
// A report is written whatever happens: when the board cannot be brought up,
// the report says why and every requirement is not covered; when the run is
// interrupted (Ctrl-C, suite timeout) the specs finished so far are kept.
func Run(ctx context.Context, o RunOptions) (*reports.Report, error) {
	if ranOnce {
		return nil, errors.New("suites.Run: a process runs the suite once (Ginkgo restriction); start another process")
	}
	ranOnce = true
	if len(o.Specs) > 0 {
		if len(o.Focus) > 0 {
			return nil, errors.New("suites.Run: Specs and Focus are exclusive")
		}
		o.Focus = []string{specsFocus(o.Specs)}
	}
	if o.Progress != nil {
		progress = o.Progress
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("report directory: %w", err)
	}
	meta := reports.RunMeta{ID: time.Now().UTC().Format("20060102T150405Z"), Started: time.Now(), Version: o.Version,
		Command: o.Command, Strict: o.Env.Strict, LabelFilter: o.LabelFilter, Focus: o.Focus, Defects: o.Env.Defects, HubVersion: hub.Version}
	meta.Host, _ = os.Hostname()
	o.LabelFilter = cloudScope(&meta, o.Env, o.LabelFilter) // aws.go: the cloud judged against
	cat := catalog.MustLoad()
	var refs []reports.RequirementRef
	for _, r := range cat.All() {
		if !inCloud(o.Env, r.Area) {
			continue // another cloud's area: out of scope for this run
		}
		refs = append(refs, reports.RequirementRef{ID: r.ID, Title: r.Title, Area: r.Area, Severity: string(r.Severity),
			Text: r.Summary, Refs: r.Refs, Capability: r.Capability, Coverage: CoverageOf(r)})
	}
	var binfo reports.BoardInfo
	if b := o.Env.Board; b != nil {
		// Known before the board answers: a board that never comes up is
		// still named in the report (its profile and port).
		info := b.Info()
		binfo.Profile, binfo.Port = info.Profile, info.Port
	}
	finish := func(interrupt string) (*reports.Report, error) {
		meta.Finished = time.Now()
		meta.Wall = meta.Finished.Sub(meta.Started)
		if interrupt != "" {
			meta.Interrupted, meta.InterruptReason = true, interrupt
		}
		resultsMu.Lock()
		specs := append([]reports.SpecResult(nil), results...)
		resultsMu.Unlock()
		meta.NotSelected = notSelectedIDs()
		rep := reports.BuildWithFaults(meta, binfo, refs, specs, rigFaultEvents())
		if err := reports.Write(o.OutDir, rep); err != nil {
			return rep, fmt.Errorf("write report: %w", err)
		}
		return rep, nil
	}

	o.Env.RunContext = ctx
	e, err := fixtures.Start(ctx, o.Env)
	if err != nil {
		// Ctrl-C during flashing or boot is an interruption; anything else
		// here is the rig: the board did not come up.
		if ctx.Err() != nil {
			rep, werr := finish("interrupted during board bring-up (" + context.Cause(ctx).Error() + ")")
			return rep, errors.Join(err, werr)
		}
		meta.RigFault = "board did not come up: " + err.Error()
		rep, werr := finish("")
		return rep, errors.Join(err, werr)
	}
	defer e.Close()
	info := e.Board.Info()
	binfo = reports.BoardInfo{Profile: info.Profile, Port: info.Port, Firmware: reports.FirmwareHello{
		Name: e.Hello.Firmware, Version: e.Hello.FWVersion, Build: e.Hello.Build, Client: e.Hello.Client,
		ClientVersion: e.Hello.ClientVer, Board: e.Hello.Board, Caps: e.Hello.Caps}}
	setEnv(e)
	defer setEnv(nil)
	rigSetup(o.LabelFilter, o.Focus)
	crashSetup(o.OutDir)
	selectionReset()
	defer noteInterrupt(ctx)()
	e.StartWatchdog(func(line string) { fmt.Fprintln(progress, line) })

	// Ginkgo's own console reporter goes to a log file; the user sees one
	// line per spec from reportSpec.
	glog, err := os.Create(filepath.Join(o.OutDir, "ginkgo.log"))
	if err == nil {
		// Masked a line at a time (rig/secrets): the log repeats failure
		// messages and captured output verbatim.
		gw := secrets.NewWriter(glog)
		formatter.ColorableStdOut = gw
		defer glog.Close()
		defer gw.Flush()
	}
	RegisterFailHandler(maskedFail)
	sc, rc := GinkgoConfiguration()
	sc.LabelFilter = o.LabelFilter
	sc.FocusStrings = o.Focus
	sc.RandomSeed = 1
	sc.FailFast = o.FailFast
	sc.Timeout = 2 * time.Hour
	// After Ctrl-C/SIGTERM the cut spec and each cleanup node get at most
	// this long: every session wait ends with the run's context anyway, so
	// this only bounds code that ignores it (the run must end within 2 s).
	sc.GracePeriod = time.Second
	rc.NoColor = true
	rc.Succinct = true
	RunSpecs(testingT{}, "hilrun conformance", sc, rc)

	interrupt := ""
	if suiteRep != nil {
		for _, r := range suiteRep.SpecialSuiteFailureReasons {
			if strings.Contains(r, "Interrupted") || strings.Contains(r, "Timeout") {
				interrupt = r
			}
		}
	}
	if interrupt == "" && ctx.Err() != nil {
		interrupt = "interrupted (" + context.Cause(ctx).Error() + ")"
	}
	if dead, ok := e.Watchdog.Dead(); ok {
		meta.RigFault = dead.Reason
	}
	e.Watchdog.Stop()
	if n := len(e.Agent.Faults()); n > 0 {
		fmt.Fprintf(progress, "rig faults: %d (see the report and console.log); the specs they touched are rig-fault, not verdicts\n", n)
	}
	writeConsoleLog(o.OutDir, e)
	return finish(interrupt)
}

func writeConsoleLog(dir string, e *fixtures.Env) {
	f, err := os.Create(filepath.Join(dir, "console.log"))
	if err != nil {
		return
	}
	defer f.Close()
	_ = e.Console.WriteLog(f)
}

// maskedFail is Ginkgo's Fail with every registered secret masked out of
// the message first, so a failure that quotes what it saw (a password, a
// payload) records no secret in the spec report, the log or the report
// files. The extra frame is skipped so the failure points at the spec.
func maskedFail(message string, callerSkip ...int) {
	skip := 1
	if len(callerSkip) > 0 {
		skip += callerSkip[0]
	}
	Fail(secrets.Mask(message), skip)
}

// testingT satisfies Ginkgo's GinkgoTestingT outside `go test`.
type testingT struct{}

func (testingT) Fail() {}

var _ = ReportAfterEach(func(r SpecReport) {
	if listing {
		return
	}
	res, keep := specResult(r)
	if nr, ok := notRunResult(r); ok {
		res, keep = nr, true
	}
	if keep {
		applyInterrupt(&res, r)
		applyRigFaults(&res, r.StartTime)
		applyCrash(&res, r.StartTime) // crash.go: after the rig faults, which it may overrule
	}
	if a := awsCurrent; a != nil && (res.Status == reports.SpecFailed || res.Status == reports.SpecRigFault) {
		res.Wire, res.Console = a.Evidence(40) // an AWS session (aws_framework.go)
	}
	awsCurrent = nil
	if s := current; s != nil {
		// RECON specs keep a longer wire excerpt, passed or not: the
		// report draws their reconnection timeline from it.
		recon := slices.ContainsFunc(r.Labels(), func(l string) bool { return strings.HasPrefix(l, "RECON") })
		switch {
		case res.Status == reports.SpecFailed && recon:
			res.Wire, res.Console = s.Evidence(60)
		case res.Status == reports.SpecFailed || res.Status == reports.SpecRigFault:
			res.Wire, res.Console = s.Evidence(40)
		case recon && res.Status == reports.SpecPassed:
			res.Wire, _ = s.Evidence(60)
		}
	}
	current = nil
	if !keep {
		noteFilteredOut(r)
		return
	}
	resultsMu.Lock()
	results = append(results, res)
	resultsMu.Unlock()
	if res.Status == reports.SpecNotRun {
		return // one line for all of them: the run's summary counts them
	}
	mark := map[reports.SpecStatus]string{reports.SpecPassed: "PASS", reports.SpecFailed: "FAIL",
		reports.SpecNotApplicable: "N/A ", reports.SpecSkipped: "SKIP", reports.SpecRigFault: "RIG ",
		reports.SpecInterrupted: "INT ", reports.SpecPreconditionUnmet: "PRE "}[res.Status]
	// The outcome mark stays first (tools and the pool's tests match
	// "PASS " at the start of a line), then the [n/N] counter.
	fmt.Fprintf(progress, "%s %s  %-70s %6.2fs\n", mark, progressPrefix(res.Area), res.Name, res.Duration.Seconds())
	msg := ""
	switch res.Status {
	case reports.SpecFailed, reports.SpecInterrupted:
		msg = res.Failure
	case reports.SpecRigFault:
		msg = res.RigFault
	case reports.SpecPreconditionUnmet:
		msg = "precondition unmet: " + res.Failure
	}
	if msg != "" {
		fmt.Fprintf(progress, "      %s\n", reports.Claim(msg))
	}
})

var _ = ReportAfterSuite("hilrun report", func(r Report) { suiteRep = &r })

// specResult converts a Ginkgo spec report; keep is false for specs the
// filters left out (they are not part of this run).
func specResult(r SpecReport) (reports.SpecResult, bool) {
	cat := catalog.MustLoad()
	var reqs []string
	for _, l := range r.Labels() {
		if _, ok := cat.Get(l); ok {
			reqs = append(reqs, l)
		}
	}
	res := reports.SpecResult{Name: r.LeafNodeText, Requirements: reqs, Duration: r.RunTime}
	if len(reqs) > 0 {
		res.Area = areaOf(reqs[0])
	}
	switch r.State {
	case types.SpecStatePassed:
		res.Status = reports.SpecPassed
	case types.SpecStateSkipped, types.SpecStatePending:
		if r.Failure.Message == "" {
			return res, false
		}
		res.Status = reports.SpecSkipped
		if strings.HasPrefix(r.Failure.Message, notApplicable) {
			res.Status = reports.SpecNotApplicable
		}
		if reason, ok := strings.CutPrefix(r.Failure.Message, preconditionUnmet); ok {
			res.Status, res.Failure = reports.SpecPreconditionUnmet, reason
			break
		}
		res.Failure = r.Failure.Message
		if reason, ok := strings.CutPrefix(r.Failure.Message, notRun); ok {
			res.Status, res.Failure = reports.SpecNotRun, reason
		}
	case types.SpecStateInterrupted:
		// Cut by Ctrl-C, SIGTERM or the suite timeout: not a verdict.
		res.Status = reports.SpecInterrupted
		res.Failure = "interrupted: " + firstLineOf(r.Failure.Message)
	default:
		res.Status = reports.SpecFailed
		res.Failure = r.Failure.Message
		if r.Failure.Location.FileName != "" {
			res.Location = fmt.Sprintf("%s:%d", filepath.Base(r.Failure.Location.FileName), r.Failure.Location.LineNumber)
		}
		if r.State != types.SpecStateFailed {
			res.Failure = r.State.String() + ": " + res.Failure
		}
	}
	// Timing series attached with fixtures/series.Record. In process the
	// entry holds the reports.SeriesResult itself; otherwise (a report
	// rehydrated from JSON) its JSON form is decoded.
	for _, e := range r.ReportEntries {
		if strings.HasPrefix(e.Name, reports.FactEntryPrefix) {
			if f, ok := entryValue[reports.Fact](e); ok {
				res.Facts = append(res.Facts, f)
			}
			continue
		}
		name, ok := strings.CutPrefix(e.Name, "series:")
		if !ok {
			continue
		}
		sr, ok := entryValue[reports.SeriesResult](e)
		if !ok {
			continue
		}
		if sr.Name == "" {
			sr.Name = name
		}
		res.Series = append(res.Series, sr)
	}
	return res, true
}

func firstLineOf(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// entryValue returns a report entry's value as a T: in process the entry
// holds the T itself; a report rehydrated from JSON holds its JSON form.
func entryValue[T any](e types.ReportEntry) (T, bool) {
	if v, ok := e.Value.GetRawValue().(T); ok {
		return v, true
	}
	var v T
	raw := []byte(e.Value.AsJSON)
	if len(raw) == 0 {
		raw, _ = json.Marshal(e.Value.GetRawValue())
	}
	return v, json.Unmarshal(raw, &v) == nil
}
