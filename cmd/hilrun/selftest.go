package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/hilrun/hilrun/devicefw/sim"
	"github.com/hilrun/hilrun/reports"
)

// The self-test is the meta-test of the suite: a spec earns its place only
// when some defect switch in the virtual board's firmware makes it fail.
// For every defect it runs the specs of the defect's requirement with the
// defect on and requires a failure; it runs everything clean and requires a
// pass; and it requires every spec to be failed by at least one defect.
//
// Each run is a separate hilrun process (Ginkgo runs a suite once per
// process), started from this executable.

type selftestOptions struct {
	defects     []string
	jobs        int
	cleanShards int // boards the clean run is split across (0: jobs)
	out         string
	labelFilter string
	mut         mutateOptions // --mutate (selftest_mutate.go)
}

// selftestResult is written as selftest.json.
type selftestResult struct {
	OK           bool            `json:"ok"`
	Wall         float64         `json:"wallSeconds"`
	CleanPassed  bool            `json:"cleanPassed"`
	CleanFailed  []string        `json:"cleanFailed,omitempty"`
	Specs        int             `json:"specs"`
	Defects      []defectOutcome `json:"defects"`
	Unfailable   []string        `json:"unfailableSpecs,omitempty"`
	RunnerErrors []string        `json:"runnerErrors,omitempty"`
	// Subset: --defect chose the defects, so whether every spec can fail
	// was not checked.
	Subset bool `json:"subset,omitempty"`
}

type defectOutcome struct {
	Defect      string   `json:"defect"`
	Requirement string   `json:"requirement"`
	Caught      bool     `json:"caught"`
	CaughtBy    []string `json:"caughtBy"`
	Ran         int      `json:"specsRun"`
	Seconds     float64  `json:"seconds"`
	Error       string   `json:"error,omitempty"`
}

func newSelftestCmd() *cobra.Command {
	o := selftestOptions{}
	cmd := &cobra.Command{
		Use:   "selftest",
		Short: "Prove every spec can fail: run each defect switch against the specs of its requirement",
		Long: `selftest is the suite's meta-test. It runs the whole suite on a clean
virtual board (everything must pass), then, for every defect switch of the
reference firmware (devicefw/sim/DEFECTS.md), the specs labelled with the
defect's requirement with that defect on (at least one must fail). Finally
every spec must have been failed by at least one defect. It prints where
it writes, one progress line per defect and a short verdict; the
sensitivity table (defect → specs that caught it) goes to selftest.md,
with selftest.json, in --out.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runSelftest(cmd, o) },
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.defects, "defect", nil, "only these defects (default: all)")
	f.IntVar(&o.jobs, "jobs", 4, "runs in parallel (the specs mostly wait on the board, so more runs than cores is fine)")
	f.IntVar(&o.cleanShards, "clean-shards", 0, "boards the clean run is split across (default: --jobs); 1 runs the whole suite on one board, in one sequence, beside the defect runs")
	f.StringVar(&o.labelFilter, "label-filter", "", "only the specs matching this label filter: the clean run runs them, and only the defects of their requirements run (against them)")
	f.StringVar(&o.out, "out", "", "output directory (default out/selftest-<time>)")
	mutateFlags(cmd, &o.mut) // selftest_mutate.go
	return cmd
}

func runSelftest(cmd *cobra.Command, o selftestOptions) error {
	if err := checkMutateFlags(cmd, o); err != nil { // selftest_mutate.go
		return err
	}
	if o.mut.on {
		return runMutate(cmd, o) // selftest_mutate.go
	}
	if err := sim.ValidateDefects(o.defects); err != nil {
		return &exitError{2, err.Error()}
	}
	if o.out == "" {
		o.out = filepath.Join("out", "selftest-"+time.Now().Format("20060102-150405"))
	}
	if o.jobs < 1 {
		o.jobs = 1
	}
	exe, err := os.Executable()
	if err != nil {
		return &exitError{2, err.Error()}
	}
	w := cmd.OutOrStdout()
	start := time.Now()
	ctx := cmd.Context()
	res := selftestResult{}

	where, _ := filepath.Abs(o.out)
	fmt.Fprintf(w, "selftest: results go to %s (selftest.md: the sensitivity table; selftest.json; a run directory per defect)\n", where)
	fmt.Fprintln(w, "selftest: clean run of the whole suite")
	defects := sim.Defects
	if len(o.defects) > 0 {
		defects = nil
		for _, d := range sim.Defects {
			if slices.Contains(o.defects, d.Name) {
				defects = append(defects, d)
			}
		}
	}
	// One queue of child runs, longest expected first (selfPlan): the clean
	// run split into shards and one run per defect, o.jobs at a time.
	plan, err := newSelfPlan(o, exe, defects)
	if err != nil {
		return err
	}
	defects = plan.defects
	res.Subset = len(o.defects) > 0
	res.Defects = make([]defectOutcome, len(defects))
	failedBy := map[string][]string{} // spec → defects that failed it
	var mu sync.Mutex
	finished := 0
	var clean *reports.Report
	cleanDone := func(rep *reports.Report) {
		clean = rep
		res.Specs = len(clean.Specs)
		res.CleanPassed = true
		for _, s := range clean.Specs {
			if s.Status == reports.SpecFailed {
				res.CleanPassed = false
				res.CleanFailed = append(res.CleanFailed, s.Name)
			}
		}
		fmt.Fprintf(w, "selftest: clean run: %d specs, passed=%v (%.1fs)\n", len(clean.Specs), res.CleanPassed, clean.Run.Wall.Seconds())
	}
	defectDone := func(i int, d sim.Defect, out defectOutcome) {
		res.Defects[i] = out
		for _, s := range out.CaughtBy {
			failedBy[s] = append(failedBy[s], d.Name)
		}
		verdict := "caught"
		if !out.Caught {
			verdict = "NOT CAUGHT"
			if out.Error != "" {
				verdict += " (" + out.Error + ")"
			}
		}
		finished++
		fmt.Fprintf(w, "selftest: [%d/%d] %-30s %-10s %s by %d of %d specs (%.1fs)\n", finished, len(defects), d.Name, d.Requirement, verdict, len(out.CaughtBy), out.Ran, out.Seconds)
	}
	runDefect := func(i int, d sim.Defect) {
		t0 := time.Now()
		out := defectOutcome{Defect: d.Name, Requirement: d.Requirement, CaughtBy: []string{}}
		rep, err := selfRun(ctx, exe, filepath.Join(o.out, d.Name), []string{d.Name}, plan.defectFilter(d), cloudArgs(d.Requirement)...)
		out.Seconds = time.Since(t0).Seconds()
		if err != nil {
			out.Error = err.Error()
		} else {
			out.Ran = len(rep.Specs)
			for _, s := range rep.Specs {
				if s.Status == reports.SpecFailed {
					out.CaughtBy = append(out.CaughtBy, s.Name)
				}
			}
			out.Caught = len(out.CaughtBy) > 0
		}
		mu.Lock()
		defectDone(i, d, out)
		mu.Unlock()
	}
	// The AWS image's clean run (unless --label-filter leaves it out): one
	// more job of the queue, added to the clean report once both ended.
	var extra []selfJob
	var awsRep *reports.Report
	var awsErr error
	if plan.selects("AWS") {
		extra = append(extra, selfJob{est: plan.awsEstimate(), run: func() { awsRep, awsErr = selftestCleanAWS(ctx, exe, o.out) }}) // cloud.go
	}
	cleanErr := plan.run(ctx, runDefect, func(rep *reports.Report, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err == nil {
			cleanDone(rep)
		}
	}, extra...)
	if cleanErr != nil {
		return &exitError{2, fmt.Sprintf("clean run: %v", cleanErr)}
	}
	if len(extra) > 0 {
		if err := addCleanAWS(w, clean, awsRep, awsErr, &res); err != nil {
			return err
		}
	}
	// Whether every spec can fail is only known when every defect ran.
	if len(o.defects) == 0 {
		for _, s := range clean.Specs {
			if s.Status == reports.SpecPassed && len(failedBy[s.Name]) == 0 && plan.judgesFailability(s) {
				res.Unfailable = append(res.Unfailable, s.Name)
			}
		}
	}
	sort.Strings(res.Unfailable)
	res.OK = res.CleanPassed && len(res.Unfailable) == 0
	for _, d := range res.Defects {
		if !d.Caught {
			res.OK = false
		}
	}
	res.Wall = time.Since(start).Seconds()
	if err := writeSelftest(o.out, res); err != nil {
		return err
	}
	fmt.Fprint(w, selftestVerdict(res, where))
	if !res.OK {
		return &exitError{1, "selftest failed: see " + filepath.Join(o.out, "selftest.md")}
	}
	return nil
}

// selfRun runs `hilrun run` in a child process and loads its report. A
// failing verdict is expected with defects on; only a missing report is an
// error.
func selfRun(ctx context.Context, exe, dir string, defects []string, labelFilter string, extra ...string) (*reports.Report, error) {
	args := append([]string{"run", "--out", dir}, extra...)
	for _, d := range defects {
		args = append(args, "--defect", d)
	}
	if labelFilter != "" {
		args = append(args, "--label-filter", labelFilter)
	}
	res, err := childRun{Exe: exe, Args: args, Dir: dir, Timeout: 10 * time.Minute}.run(ctx)
	if err != nil {
		return nil, err
	}
	rep, lerr := reports.Load(filepath.Join(dir, reports.JSONFile))
	if lerr != nil {
		return nil, fmt.Errorf("no report (%v); run exited with status %d; output:\n%s", lerr, res.Code, res.Tail)
	}
	return rep, nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func writeSelftest(dir string, res selftestResult) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "selftest.json"), b, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "selftest.md"), []byte(selftestMarkdown(res)), 0o644)
}

// selftestVerdict is what selftest prints at the end: the verdict in a few
// lines and where the full table is (the table itself goes to the file).
func selftestVerdict(res selftestResult, dir string) string {
	var b strings.Builder
	verdict := "PASS"
	if !res.OK {
		verdict = "FAIL"
	}
	caught := 0
	var missed []string
	for _, d := range res.Defects {
		if d.Caught {
			caught++
		} else {
			missed = append(missed, d.Defect)
		}
	}
	fmt.Fprintf(&b, "\nselftest: %s — clean run: %d specs, all passed: %v; defects caught: %d of %d", verdict, res.Specs, res.CleanPassed, caught, len(res.Defects))
	if res.Subset {
		b.WriteString("; whether every spec can fail is checked only when every defect runs")
	} else if len(res.Unfailable) == 0 {
		b.WriteString("; every spec can fail")
	} else {
		fmt.Fprintf(&b, "; %d specs no defect makes fail", len(res.Unfailable))
	}
	fmt.Fprintf(&b, " (%.1fs)\n", res.Wall)
	list := func(what string, items []string) {
		if len(items) == 0 {
			return
		}
		shown := items
		if len(shown) > 10 {
			shown = shown[:10]
		}
		fmt.Fprintf(&b, "  %s: %s", what, strings.Join(shown, "; "))
		if len(items) > len(shown) {
			fmt.Fprintf(&b, " … and %d more", len(items)-len(shown))
		}
		b.WriteString("\n")
	}
	list("failing on the clean firmware", res.CleanFailed)
	list("defects not caught", missed)
	list("specs no defect makes fail", res.Unfailable)
	fmt.Fprintf(&b, "  table: %s (and selftest.json)\n", filepath.Join(dir, "selftest.md"))
	return b.String()
}

func selftestMarkdown(res selftestResult) string {
	var b strings.Builder
	verdict := "PASS"
	if !res.OK {
		verdict = "FAIL"
	}
	fmt.Fprintf(&b, "\n## Suite self-test: %s\n\nclean run: %d specs, all passed: %v; %d defects; %.1fs wall\n\n", verdict, res.Specs, res.CleanPassed, len(res.Defects), res.Wall)
	if len(res.CleanFailed) > 0 {
		fmt.Fprintf(&b, "specs failing on the clean firmware:\n")
		for _, s := range res.CleanFailed {
			fmt.Fprintf(&b, "- %s\n", s)
		}
		b.WriteString("\n")
	}
	b.WriteString("| defect | requirement | caught | by specs |\n|---|---|---|---|\n")
	for _, d := range res.Defects {
		caught := "yes"
		if !d.Caught {
			caught = "**NO**"
			if d.Error != "" {
				caught += " (" + firstLine(d.Error) + ")"
			}
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", d.Defect, d.Requirement, caught, strings.Join(d.CaughtBy, "; "))
	}
	if len(res.Unfailable) > 0 {
		b.WriteString("\nspecs no defect makes fail (each needs a defect switch):\n")
		for _, s := range res.Unfailable {
			fmt.Fprintf(&b, "- %s\n", s)
		}
	}
	return b.String()
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
