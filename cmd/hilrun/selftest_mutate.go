package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/onsi/ginkgo/v2/types"
	"github.com/spf13/cobra"

	"github.com/hilrun/hilrun/devicefw/mutate"
	"github.com/hilrun/hilrun/reports"
	"github.com/hilrun/hilrun/suites"
)

// `hilrun selftest --mutate`: mutation analysis of the reference
// firmware's protocol code (devicefw/mutate). Every mutant of
// devicefw/sim is built as a firmware image of its own (devicefw/sim/simfw
// with the one changed file laid over the source by `go build -overlay`,
// so the repository is never copied or touched) and the specs of the
// mutated code's areas run against it (`run --image … --label-filter …
// --fail-fast`: one failed spec kills a mutant), --jobs mutants at a time,
// one build at a time. The score is a benchmark figure, not a verdict.

// The outcomes of a mutant.
const (
	mutKilled      = "killed"
	mutSurvived    = "survived"
	mutEquivalent  = "equivalent"   // survived, and on the reviewed list
	mutNotCompiled = "not-compiled" // not in the score
	mutRigFault    = "rig-fault"    // no verdict: the board or run failed, or the run timed out
)

var mutOutcomes = []string{mutKilled, mutSurvived, mutEquivalent, mutNotCompiled, mutRigFault}

type mutateOptions struct {
	on        bool
	files     []string
	operators []string
	sample    int
	seed      uint64
	list      bool
	ids       []string // only these mutants (IDs from --list or a report)
	wholeOnly bool     // skip the areas' specs: every mutant against the whole suite
	restOnly  bool     // hidden: only the second stage (survivors of an earlier areas-only run)
}

type mutantResult struct {
	mutate.Mutant
	Outcome     string  `json:"outcome"`
	LabelFilter string  `json:"labelFilter,omitempty"` // its areas' specs (stage 1)
	Rest        string  `json:"restFilter,omitempty"`  // the rest of its cloud's suite (stage 2, for a survivor of stage 1)
	Stage       int     `json:"stage,omitempty"`       // the stage that decided
	Cloud       string  `json:"cloud,omitempty"`
	KilledBy    string  `json:"killedBy,omitempty"` // the first failed spec
	SpecsRun    int     `json:"specsRun,omitempty"` // over both stages (areas, then the whole suite)
	Detail      string  `json:"detail,omitempty"`   // compiler error, rig fault, equivalence reason
	Seconds     float64 `json:"seconds"`
	RunDir      string  `json:"runDir,omitempty"`
}

type mutCounts map[string]int

// mutateReport is written as mutate.json.
type mutateReport struct {
	Generated int                  `json:"generated"`    // mutants of the selected files and operators
	AgentOut  int                  `json:"agentLeftOut"` // more, left out by //mutate:agent directives (the agent's contract)
	Sampled   int                  `json:"sampled"`
	Seed      uint64               `json:"seed"`
	Operators []string             `json:"operators"`
	Files     []string             `json:"files"`
	Counts    mutCounts            `json:"counts"`
	Score     float64              `json:"score"`       // killed / (compiled − equivalent)
	JudgedPct float64              `json:"scoreJudged"` // killed / (killed + survived): rig faults left out
	Wall      float64              `json:"wallSeconds"`
	ByFile    map[string]mutCounts `json:"byFile"`
	ByReq     map[string]mutCounts `json:"byRequirement"`
	ByOp      map[string]mutCounts `json:"byOperator"`
	Mutants   []mutantResult       `json:"mutants"`
}

func mutateFlags(cmd *cobra.Command, m *mutateOptions) {
	f := cmd.Flags()
	f.BoolVar(&m.on, "mutate", false, "mutation analysis instead: mutants of devicefw/sim's protocol code, each built as a firmware image and run against the specs of its area; prints the mutation score (a benchmark figure) and the survivors (run inside the repository)")
	f.StringSliceVar(&m.files, "files", nil, "with --mutate: only these files of devicefw/sim (default: all its protocol files, devicefw/mutate/scope.go)")
	f.StringSliceVar(&m.operators, "operators", nil, "with --mutate: only these operators ("+strings.Join(mutate.Operators, ", ")+"; default all)")
	f.IntVar(&m.sample, "sample", 0, "with --mutate: a random sample of N mutants (0: all)")
	f.Uint64Var(&m.seed, "seed", 1, "with --mutate --sample: the sample's seed")
	f.StringSliceVar(&m.ids, "ids", nil, "with --mutate: only the mutants of these IDs (as --list and mutate.json name them), e.g. to check survivors again")
	f.BoolVar(&m.wholeOnly, "whole-suite", false, "with --mutate: run each mutant against the whole suite at once (default: its areas' specs first, then the whole suite if it survives them)")
	f.BoolVar(&m.restOnly, "rest-only", false, "with --mutate --ids: only the second stage, the specs outside each mutant's areas (for the survivors of a run that judged their areas)")
	_ = f.MarkHidden("rest-only")
	f.BoolVar(&m.list, "list", false, "with --mutate: list the mutants (and each one's label filter) without building or running them")
	cmd.Long += `

With --mutate it does mutation analysis of the reference firmware's
protocol code (devicefw/sim minus the defect switches and the agent
plumbing): each mutant (a flipped comparison or boundary, a negated if,
&& and || swapped, an integer constant off by one, a dropped call or
early return, two statements swapped) is built as its own firmware image
and the specs of its area run against it, stopping at the first failure.
It writes mutate.md and mutate.json to --out and prints the score,
killed / (compiled − equivalent), and every survivor. Equivalent mutants
are listed, with a reason each, in devicefw/sim/MUTANTS-EQUIVALENT.yaml.`
}

// checkMutateFlags refuses flags of one mode given to the other.
func checkMutateFlags(cmd *cobra.Command, o selftestOptions) error {
	f := cmd.Flags()
	for _, n := range []string{"files", "operators", "sample", "seed", "list", "ids", "whole-suite", "rest-only"} {
		if f.Changed(n) && !o.mut.on {
			return &exitError{2, "--" + n + " belongs to --mutate"}
		}
	}
	for _, n := range []string{"defect", "label-filter"} {
		if f.Changed(n) && o.mut.on {
			return &exitError{2, "--" + n + " does not apply to --mutate (each mutant runs the specs of its areas; choose mutants with --files, --operators, --ids)"}
		}
	}
	return nil
}

// moduleRoot finds the hilrun repository above the working directory: the
// mutants are built from its source.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/hilrun/hilrun\n") {
			return dir, nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", errors.New("selftest --mutate builds mutants from the source: run it inside the hilrun repository")
		}
		dir = up
	}
}

// mutantFilter is the label filter (and cloud) of a mutant's run: its
// areas that have specs. The AWS image runs with --cloud aws.
func mutantFilter(m mutate.Mutant, specs []suites.SpecInfo) (filter, cloud string) {
	has := func(label string) bool {
		return slices.ContainsFunc(specs, func(s suites.SpecInfo) bool { return slices.Contains(s.Labels, label) })
	}
	var areas []string
	for _, a := range m.Areas() {
		if (a == "AWS") == (m.File == "aws.go") && has(a) {
			areas = append(areas, a)
		}
	}
	if len(areas) == 0 {
		areas = slices.Clone(mutate.Scope[m.File])
	}
	if m.File == "aws.go" {
		cloud = "aws"
	}
	return strings.Join(areas, " || "), cloud
}

// restFilter selects the specs of the mutant's cloud its areas' filter
// leaves out ("" when there are none): the AWS image's suite is one area;
// the IoT Hub suite is everything but AWS.
func restFilter(areas, cloud string, specs []suites.SpecInfo) string {
	if cloud != "" {
		return ""
	}
	rest := "!AWS && !(" + areas + ")"
	match, err := types.ParseLabelFilter(rest)
	if err != nil || !slices.ContainsFunc(specs, func(s suites.SpecInfo) bool { return match(s.Labels) }) {
		return ""
	}
	return rest
}

func runMutate(cmd *cobra.Command, o selftestOptions) error {
	w := cmd.OutOrStdout()
	root, err := moduleRoot()
	if err != nil {
		return &exitError{2, err.Error()}
	}
	simDir := filepath.Join(root, "devicefw", "sim")
	all, agent, err := mutate.Split(simDir, o.mut.files, o.mut.operators)
	if err != nil {
		return &exitError{2, err.Error()}
	}
	eq, err := mutate.LoadEquivalent(filepath.Join(root, mutate.EquivalentFile))
	if err != nil {
		return &exitError{2, err.Error()}
	}
	if len(o.mut.ids) > 0 {
		all = slices.DeleteFunc(all, func(m mutate.Mutant) bool { return !slices.Contains(o.mut.ids, m.ID) })
		if len(all) != len(o.mut.ids) {
			return &exitError{2, fmt.Sprintf("--ids: %d of %d IDs name a mutant of the selected files and operators", len(all), len(o.mut.ids))}
		}
	}
	chosen := mutate.Sample(all, o.mut.sample, o.mut.seed)
	specs, err := suites.List("", nil)
	if err != nil {
		return &exitError{2, err.Error()}
	}
	rep := mutateReport{Generated: len(all), AgentOut: len(agent), Sampled: len(chosen), Seed: o.mut.seed, Operators: o.mut.operators, Files: o.mut.files,
		ByFile: map[string]mutCounts{}, ByReq: map[string]mutCounts{}, ByOp: map[string]mutCounts{}, Counts: mutCounts{}}
	if len(rep.Operators) == 0 {
		rep.Operators = mutate.Operators
	}
	if len(rep.Files) == 0 {
		rep.Files = mutate.ScopeFiles()
	}
	rep.Mutants = make([]mutantResult, len(chosen))
	for i, m := range chosen {
		r := mutantResult{Mutant: m}
		r.LabelFilter, r.Cloud = mutantFilter(m, specs)
		r.Rest = restFilter(r.LabelFilter, r.Cloud, specs)
		rep.Mutants[i] = r
	}
	if o.mut.list {
		fmt.Fprintf(w, "selftest --mutate: %d mutants of %s (%d listed; %d more left out by //mutate:agent directives)\n", len(all), strings.Join(rep.Files, ", "), len(chosen), len(agent))
		for _, r := range rep.Mutants {
			fmt.Fprintf(w, "%s %s:%d %s %s: %s → %s [%s]\n", r.ID, r.File, r.Line, r.Func, r.Operator, r.Original, orRemoved(r.Mutated), r.LabelFilter)
		}
		return nil
	}
	if o.out == "" {
		o.out = filepath.Join("out", "mutate-"+time.Now().Format("20060102-150405"))
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return &exitError{2, err.Error()}
	}
	where, _ := filepath.Abs(o.out)
	exe, err := os.Executable()
	if err != nil {
		return &exitError{2, err.Error()}
	}
	tmp, err := os.MkdirTemp("", "hilrun-mutate-")
	if err != nil {
		return &exitError{2, err.Error()}
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintf(w, "selftest --mutate: %d of %d mutants of devicefw/sim (%s), %d at a time; results go to %s\n", len(chosen), len(all), strings.Join(rep.Files, ", "), max(1, o.jobs), where)

	start := time.Now()
	// Ctrl-C or SIGTERM: no new mutant starts, the running ones end (their
	// runs are interrupted: no verdict), the report of what finished is
	// written.
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The unmutated image: a kill counts only when the killing spec passes
	// on it (the machine is shared; a spec that fails under load is not a
	// verdict on the mutant).
	cleanImg := filepath.Join(tmp, "clean", "fw")
	if err := goBuild(ctx, root, "", cleanImg); err != nil {
		return &exitError{2, "the unmutated firmware does not build: " + err.Error()}
	}
	var buildMu, mu sync.Mutex // one build at a time: the builds are CPU-bound, the runs mostly wait
	done := 0
	work := make(chan int)
	var wg sync.WaitGroup
	for range max(1, o.jobs) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				r := &rep.Mutants[i]
				runMutant(ctx, r, root, simDir, exe, tmp, o.out, cleanImg, !o.mut.wholeOnly, o.mut.restOnly, eq, &buildMu)
				mu.Lock()
				done++
				fmt.Fprintf(w, "selftest --mutate: [%d/%d] %s %s:%d %s %-12s %s (%.0fs)\n", done, len(chosen), r.ID, r.File, r.Line, r.Operator, r.Outcome, firstLine(r.KilledBy+r.Detail), r.Seconds)
				mu.Unlock()
			}
		}()
	}
	for i := range rep.Mutants {
		if ctx.Err() != nil {
			break
		}
		work <- i
	}
	close(work)
	wg.Wait()
	rep.Wall = time.Since(start).Seconds()
	rep.tally()
	b, _ := json.MarshalIndent(rep, "", "  ")
	if err := os.WriteFile(filepath.Join(o.out, "mutate.json"), b, 0o644); err != nil {
		return &exitError{2, err.Error()}
	}
	if err := os.WriteFile(filepath.Join(o.out, "mutate.md"), []byte(rep.markdown()), 0o644); err != nil {
		return &exitError{2, err.Error()}
	}
	fmt.Fprint(w, rep.verdict(where))
	return nil
}

func orRemoved(s string) string {
	if s == "" {
		return "(removed)"
	}
	return s
}

// runMutant builds one mutant and runs its specs against it.
func runMutant(ctx context.Context, r *mutantResult, root, simDir, exe, tmp, out, cleanImg string, areasFirst, restOnly bool, eq map[string]mutate.Equivalent, buildMu *sync.Mutex) {
	t0 := time.Now()
	defer func() { r.Seconds = time.Since(t0).Seconds() }()
	dir := filepath.Join(tmp, r.ID)
	img, err := buildMutant(ctx, r.Mutant, root, simDir, dir, buildMu)
	if err != nil {
		r.Outcome, r.Detail = mutNotCompiled, err.Error()
		return
	}
	defer os.RemoveAll(dir)
	base := filepath.Join(out, "mutants", r.ID)
	r.RunDir = base
	// First the specs of the mutant's areas; a survivor then meets the
	// rest of its cloud's suite (the areas are a guess from comments: a
	// configuration parser serves every area). The AWS image's suite is
	// one area.
	stages := []string{r.LabelFilter}
	if r.Rest != "" {
		stages = append(stages, r.Rest)
	}
	if !areasFirst {
		stages = []string{r.LabelFilter + " || " + r.Rest}
	}
	if restOnly && r.Rest != "" {
		stages = []string{r.Rest}
	}
	for k, filter := range stages {
		runDir := filepath.Join(base, fmt.Sprintf("stage-%d", k+1))
		rep, interrupted, err := mutantRun(ctx, exe, runDir, img, r.Cloud, filepath.Join(dir, "durations.json"), "--label-filter", filter, "--fail-fast")
		if err != nil {
			r.Outcome, r.Detail = mutRigFault, err.Error()
			return
		}
		r.Stage = k + 1
		if len(stages) == 1 && r.Rest != "" && filter == r.Rest {
			r.Stage = 2
		}
		var ran int
		r.Outcome, r.KilledBy, ran, r.Detail = judgeMutant(rep, interrupted)
		r.SpecsRun += ran
		if r.Outcome == mutKilled {
			if k > 0 {
				r.Detail = "killed outside its areas (" + r.LabelFilter + ")"
			}
			// Confirmation (confirmKill): the mutant fails again, the
			// killing spec passes on the unmutated image.
			name := r.killer(rep)
			if why := confirmKill(ctx, exe, runDir, img, cleanImg, r.Cloud, filepath.Join(dir, "durations.json"), filter, name); why != "" {
				r.Outcome, r.Detail = mutRigFault, why
			}
		}
		if r.Outcome != mutSurvived {
			break
		}
		if crash := crashNote(runDir); crash != "" {
			r.Detail = crash
		}
	}
	if r.Outcome == mutSurvived {
		if e, ok := eq[r.Key()]; ok {
			r.Outcome, r.Detail = mutEquivalent, e.Reason
		}
	}
}

// killer is the name of the first failed spec.
func (r *mutantResult) killer(rep *reports.Report) string {
	for _, s := range rep.Specs {
		if s.Status == reports.SpecFailed {
			return s.Name
		}
	}
	return ""
}

// focusOf is the --focus value selecting exactly the spec of that name: a
// regular expression, quoted as one CSV field (the flag is a list split
// at commas).
func focusOf(name string) string {
	return `"` + strings.ReplaceAll(regexp.QuoteMeta(name)+"$", `"`, `""`) + `"`
}

// mutantRun is one `hilrun run` of an image on one virtual board, its
// spec durations kept out of the user's cache.
func mutantRun(ctx context.Context, exe, runDir, img, cloud, durations string, sel ...string) (*reports.Report, bool, error) {
	args := append([]string{"run", "--out", runDir, "--image", img, "--shards", "1"}, sel...)
	if cloud != "" {
		args = append(args, "--cloud", cloud)
	}
	res, err := childRun{Exe: exe, Args: args, Dir: runDir, Timeout: 10 * time.Minute, Env: []string{durationsEnv + "=" + durations}}.run(ctx)
	if err != nil {
		return nil, false, err
	}
	rep, lerr := reports.Load(filepath.Join(runDir, reports.JSONFile))
	if lerr != nil {
		return nil, false, fmt.Errorf("no report (%v); run exited with status %d: %s", lerr, res.Code, tail(res.Tail, 3))
	}
	return rep, res.Interrupted, nil
}

// confirmKill repeats the run that killed the mutant (the same specs in
// the same order: a mutant may fail a spec only after an earlier one left
// its state) and runs the killing spec alone on the unmutated image; ""
// when the mutant fails again and the spec passes unmutated, else why the
// kill is no verdict (on a shared machine a timing spec can fail once
// under load).
func confirmKill(ctx context.Context, exe, runDir, img, cleanImg, cloud, durations, filter, name string) string {
	defer os.RemoveAll(runDir + "-again")
	defer os.RemoveAll(runDir + "-clean")
	again, aint, err := mutantRun(ctx, exe, runDir+"-again", img, cloud, durations, "--label-filter", filter, "--fail-fast")
	if err != nil {
		return "confirmation on the mutant: " + err.Error()
	}
	if o, _, _, d := judgeMutant(again, aint); o != mutKilled {
		return fmt.Sprintf("%q failed once, but a second run on the mutant failed nothing (%s %s): not a verdict", name, o, d)
	}
	clean, cint, err := mutantRun(ctx, exe, runDir+"-clean", cleanImg, cloud, durations, "--focus", focusOf(name))
	if err != nil {
		return "confirmation on the unmutated image: " + err.Error()
	}
	if o, _, ran, d := judgeMutant(clean, cint); o != mutSurvived || ran == 0 {
		return fmt.Sprintf("%q fails on the unmutated image too (%s %s): not a verdict on the mutant", name, o, d)
	}
	return ""
}

// crashNote says whether the firmware crashed during a run no spec
// failed: the virtual board notes every exit of its firmware process in
// the console log. A survivor that crashed shows a gap no mutation score
// can: no spec noticed the board go down.
func crashNote(runDir string) string {
	b, err := os.ReadFile(filepath.Join(runDir, "console.log"))
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if i := strings.Index(l, "firmware process exited (crashed"); i >= 0 {
			return "no spec failed, but the firmware crashed during the run: " + truncateText(l[i:], 160)
		}
	}
	return ""
}

func truncateText(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// judgeMutant reads a mutant's run: a failed spec kills it; a clean pass
// lets it survive; anything else (a rig fault, an interruption, a timeout)
// is no verdict.
func judgeMutant(rep *reports.Report, interrupted bool) (outcome, killedBy string, ran int, detail string) {
	for _, s := range rep.Specs {
		if s.Status != reports.SpecSkipped && s.Status != reports.SpecNotRun {
			ran++
		}
		if s.Status == reports.SpecFailed && killedBy == "" {
			killedBy = s.Name
			if len(s.Requirements) > 0 {
				killedBy = s.Requirements[0] + ": " + s.Name
			}
		}
	}
	if killedBy != "" {
		return mutKilled, killedBy, ran, ""
	}
	switch out := rep.Outcome(); {
	case interrupted:
		return mutRigFault, "", ran, "run timed out or was interrupted"
	case out == reports.OutcomePass:
		return mutSurvived, "", ran, ""
	default:
		why := out.Label()
		if rep.Run.RigFault != "" {
			why += ": " + rep.Run.RigFault
		} else if rep.Run.InterruptReason != "" {
			why += ": " + rep.Run.InterruptReason
		}
		return mutRigFault, "", ran, why
	}
}

// buildMutant builds devicefw/sim/simfw with the mutated file laid over
// the original (go build -overlay) into dir/fw.
func buildMutant(ctx context.Context, m mutate.Mutant, root, simDir, dir string, buildMu *sync.Mutex) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	src := filepath.Join(dir, m.File)
	if err := os.WriteFile(src, m.Source(), 0o644); err != nil {
		return "", err
	}
	ov, _ := json.Marshal(map[string]map[string]string{"Replace": {filepath.Join(simDir, m.File): src}})
	ovPath := filepath.Join(dir, "overlay.json")
	if err := os.WriteFile(ovPath, ov, 0o644); err != nil {
		return "", err
	}
	img := filepath.Join(dir, "fw")
	buildMu.Lock()
	defer buildMu.Unlock()
	if err := goBuild(ctx, root, ovPath, img); err != nil {
		return "", errors.New(strings.ReplaceAll(err.Error(), dir+string(os.PathSeparator), ""))
	}
	return img, nil
}

// goBuild builds the firmware image devicefw/sim/simfw (with an overlay
// when ovPath is set); the error is the first compiler message.
func goBuild(ctx context.Context, root, ovPath, img string) error {
	args := []string{"build"}
	if ovPath != "" {
		args = append(args, "-overlay", ovPath)
	}
	c := exec.CommandContext(ctx, "go", append(args, "-o", img, "./devicefw/sim/simfw")...)
	c.Dir = root
	if b, err := c.CombinedOutput(); err != nil {
		msg := strings.TrimSpace(string(b))
		if msg == "" {
			msg = err.Error()
		}
		return errors.New(firstCompileError(msg))
	}
	return nil
}

// firstCompileError keeps the first compiler message (not the package
// header line).
func firstCompileError(msg string) string {
	for _, l := range strings.Split(msg, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			return l
		}
	}
	return msg
}

func (r *mutateReport) tally() {
	add := func(m map[string]mutCounts, k, outcome string) {
		if m[k] == nil {
			m[k] = mutCounts{}
		}
		m[k][outcome]++
	}
	for _, x := range r.Mutants {
		if x.Outcome == "" {
			continue // not run (interrupted)
		}
		r.Counts[x.Outcome]++
		add(r.ByFile, x.File, x.Outcome)
		add(r.ByOp, x.Operator, x.Outcome)
		reqs := x.Requirements
		if len(reqs) == 0 {
			reqs = x.Areas()
		}
		for _, q := range reqs {
			add(r.ByReq, q, x.Outcome)
		}
	}
	r.Score = r.Counts.score()
	if j := r.Counts[mutKilled] + r.Counts[mutSurvived]; j > 0 {
		r.JudgedPct = 100 * float64(r.Counts[mutKilled]) / float64(j)
	}
}

// score is killed / (compiled − equivalent), in per cent; compiled
// counts every mutant that built, rig faults included.
func (c mutCounts) score() float64 {
	d := c[mutKilled] + c[mutSurvived] + c[mutRigFault]
	if d == 0 {
		return 0
	}
	return 100 * float64(c[mutKilled]) / float64(d)
}

func (c mutCounts) row() string {
	var b strings.Builder
	for _, o := range mutOutcomes {
		fmt.Fprintf(&b, " %d |", c[o])
	}
	fmt.Fprintf(&b, " %.1f %% |", c.score())
	return b.String()
}

func (r *mutateReport) survivors() []mutantResult {
	var out []mutantResult
	for _, m := range r.Mutants {
		if m.Outcome == mutSurvived {
			out = append(out, m)
		}
	}
	return out
}

func (r *mutateReport) verdict(where string) string {
	var b strings.Builder
	c := r.Counts
	fmt.Fprintf(&b, "\nselftest --mutate: mutation score %.1f %% (killed %d / (compiled %d − equivalent %d)); killed %d, survived %d, equivalent %d, not compiled %d, rig fault %d; %d of %d mutants (seed %d), %.0fs\n",
		r.Score, c[mutKilled], c[mutKilled]+c[mutSurvived]+c[mutEquivalent]+c[mutRigFault], c[mutEquivalent],
		c[mutKilled], c[mutSurvived], c[mutEquivalent], c[mutNotCompiled], c[mutRigFault], r.Sampled, r.Generated, r.Seed, r.Wall)
	for _, s := range r.survivors() {
		fmt.Fprintf(&b, "  survived %s %s:%d %s %s: %s → %s\n", s.ID, s.File, s.Line, s.Func, s.Operator, s.Original, orRemoved(s.Mutated))
	}
	fmt.Fprintf(&b, "  report: %s (and mutate.json)\n", filepath.Join(where, "mutate.md"))
	return b.String()
}

func (r *mutateReport) markdown() string {
	var b strings.Builder
	c := r.Counts
	fmt.Fprintf(&b, "# Mutation analysis of devicefw/sim\n\nmutation score: **%.1f %%** = killed %d / (compiled %d − equivalent %d); over judged mutants only (rig faults left out): %.1f %%\n\n",
		r.Score, c[mutKilled], c[mutKilled]+c[mutSurvived]+c[mutEquivalent]+c[mutRigFault], c[mutEquivalent], r.JudgedPct)
	fmt.Fprintf(&b, "%d of %d mutants (seed %d; operators %s; %d more left out by //mutate:agent), %.0f s wall. A benchmark figure, not a test.\n\n", r.Sampled, r.Generated, r.Seed, strings.Join(r.Operators, ", "), r.AgentOut, r.Wall)
	table := func(title string, m map[string]mutCounts) {
		fmt.Fprintf(&b, "## %s\n\n| %s | killed | survived | equivalent | not compiled | rig fault | score |\n|---|---|---|---|---|---|---|\n", title, strings.ToLower(strings.TrimPrefix(title, "By ")))
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "| %s |%s\n", k, m[k].row())
		}
		b.WriteString("\n")
	}
	table("By file", r.ByFile)
	table("By requirement", r.ByReq)
	table("By operator", r.ByOp)
	list := func(title, outcome string) {
		first := true
		for _, m := range r.Mutants {
			if m.Outcome != outcome {
				continue
			}
			if first {
				fmt.Fprintf(&b, "## %s\n\n| id | where | func | operator | original → mutated | specs | detail |\n|---|---|---|---|---|---|---|\n", title)
				first = false
			}
			fmt.Fprintf(&b, "| %s | %s:%d | %s | %s | `%s` → `%s` | %s | %s |\n", m.ID, m.File, m.Line, m.Func, m.Operator,
				mdCell(m.Original), mdCell(orRemoved(m.Mutated)), mdCell(m.specsRun()), mdCell(firstLine(m.Detail)))
		}
		if !first {
			b.WriteString("\n")
		}
	}
	list("Survivors", mutSurvived)
	list("Equivalent (reviewed: "+mutate.EquivalentFile+")", mutEquivalent)
	list("Rig faults (no verdict)", mutRigFault)
	list("Not compiled", mutNotCompiled)
	return b.String()
}

// specsRun says which specs judged the mutant.
func (m mutantResult) specsRun() string {
	switch {
	case m.Stage == 2:
		return m.LabelFilter + ", then the rest of the suite"
	case m.Rest == "" || m.Outcome != mutSurvived:
		return m.LabelFilter
	}
	return m.LabelFilter + " only"
}

func mdCell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
