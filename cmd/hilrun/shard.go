package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/devicefw/sim"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/fixtures/catalog"
	"github.com/hilrun/hilrun/reports"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/inventory"
	"github.com/hilrun/hilrun/suites"
)

// Sharding splits one suite across several boards: `hilrun run --shards N`
// starts N virtual boards (the built-in firmware, --firmware c, --image or
// an SDK board), `hilrun run --pool --shard` uses the inventory's boards of
// one kind. The parent lists the selected specs (a Ginkgo dry run, so the
// order is a single board's), deals them out by their measured durations
// (durations.go: longest first, each to the least loaded board that can run
// it), and starts one child `hilrun run --shard-specs FILE` per board, each
// with its own board, hub and identities. It then joins the children's
// reports into one report of the same shape as a single-board run
// (reports.MergeShards), each spec naming its shard.

type shardOptions struct {
	shards    int    // --shards N: virtual boards
	pool      bool   // --shard (with --pool): the inventory's boards
	durations string // --durations FILE
	compare   bool   // --compare: also run one board, after the shards
	specsFile string // hidden --shard-specs FILE: a shard's child
	auto      bool   // the default run on the virtual board, sharded without --shards (autoShards)
}

// shardOnlyFlags are the sharded run's own; never passed to a child.
var shardOnlyFlags = []string{"shards", "shard", "durations", "compare", "shard-specs"}

// childSpecs are the spec IDs a shard's child runs (--shard-specs).
var childSpecs []string

// shardSpecsFile is the file a shard's child reads its specs from.
const shardSpecsFile = "shard-specs.json"

// withShards adds the sharding flags to the run command.
func withShards(cmd *cobra.Command, o *runOptions) *cobra.Command {
	so := &shardOptions{}
	f := cmd.Flags()
	f.IntVar(&so.shards, "shards", 0, "split the suite across N virtual boards run at once (one child process, board and hub each), balanced by measured spec durations; one merged report. 1: one board in this process. Default: the whole suite on the virtual board runs on "+fmt.Sprint(autoShardCount())+" boards ($"+shardsEnv+" overrides), a filtered run on one")
	f.BoolVar(&so.pool, "shard", false, "with --pool: split one suite run across the pool's boards (all of one profile) instead of running the whole suite on each")
	f.StringVar(&so.durations, "durations", "", "spec durations file for balancing shards (default $HILRUN_DURATIONS, else <user cache dir>/hilrun/durations.json; every run updates it)")
	f.BoolVar(&so.compare, "compare", false, "with --shards or --shard: after the sharded run, run the same specs on one board and print the measured speed-up and any verdict that differs")
	f.StringVar(&so.specsFile, "shard-specs", "", "run exactly the specs listed in FILE (JSON array of spec IDs): one shard of a sharded run")
	_ = f.MarkHidden("shard-specs")
	cmd.Long += shardHelp
	cmd.Example += "\n  hilrun run --shards 4\n  hilrun run --shards 4 --strict --compare\n  hilrun run --shards 3 --board sdk:azure-iot-node\n  hilrun run --pool --shard --pool-label esp32s3 --strict"
	inner := cmd.RunE
	cmd.RunE = func(c *cobra.Command, args []string) error {
		flags := c.Flags()
		switch {
		case so.specsFile != "":
			if so.shards != 0 || so.pool || flags.Changed("pool") || len(o.focus) > 0 {
				return &exitError{2, "--shard-specs is a shard's own list: not with --shards, --pool or --focus"}
			}
			b, err := os.ReadFile(so.specsFile)
			if err == nil {
				err = json.Unmarshal(b, &childSpecs)
			}
			if err != nil || len(childSpecs) == 0 {
				return &exitError{2, fmt.Sprintf("--shard-specs %s: %v (want a JSON array of spec IDs)", so.specsFile, err)}
			}
			return inner(c, args)
		case so.pool:
			if !flags.Changed("pool") {
				return &exitError{2, "--shard works with --pool (the inventory's boards); for virtual boards use --shards N"}
			}
			if so.shards != 0 {
				return &exitError{2, "--pool --shard uses the pool's boards: drop --shards"}
			}
			return runPoolShard(c, so, o)
		case flags.Changed("shards") && (so.shards != 1 || so.compare):
			if flags.Changed("pool") {
				return &exitError{2, "--shards runs virtual boards; to split the suite across the inventory's boards use --pool --shard"}
			}
			return runShards(c, so, o)
		case !flags.Changed("shards"):
			n, err := autoShards(flags, o)
			if err != nil {
				return err
			}
			if n > 1 {
				so.shards, so.auto = n, true
				return runShards(c, so, o)
			}
		}
		for _, n := range []string{"durations", "compare"} {
			if flags.Changed(n) {
				return &exitError{2, "--" + n + " works only with --shards or --pool --shard"}
			}
		}
		return inner(c, args)
	}
	return cmd
}

// shardsEnv sets how many boards the default run uses (1: one board).
const shardsEnv = "HILRUN_SHARDS"

// autoShardCount is how many virtual boards the default run uses: the
// specs mostly wait on timers, so four boards on two cores finish in about
// a quarter of one board's time (measured: 84 s on one board, 22 s on four,
// same verdicts).
func autoShardCount() int { return min(4, 2*runtime.NumCPU()) }

// autoShards decides the default run's sharding: the whole Azure suite on
// the built-in virtual board (or --firmware c, --image) with nothing else
// asked for runs on autoShardCount boards, unless $HILRUN_SHARDS says
// otherwise. A filtered run, a defect, a real board, an SDK board, the AWS
// profile or a pool run on one board as asked; so does every run the suite
// starts for itself (selftest, a shard's child).
func autoShards(flags *pflag.FlagSet, o *runOptions) (int, error) {
	virtual := o.board == "sim" && o.port == "" && !flags.Changed("pool") && len(o.defects) == 0 && len(o.misbehave) == 0 && o.cloud != fixtures.CloudAWS
	if v := os.Getenv(shardsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return 0, &exitError{2, fmt.Sprintf("$%s=%q: want a number of virtual boards ≥ 1 (1: one board)", shardsEnv, v)}
		}
		if !virtual {
			return 1, nil
		}
		return n, nil
	}
	if !virtual || o.labelFilter != "" || len(o.focus) > 0 {
		return 1, nil
	}
	return autoShardCount(), nil
}

const shardHelp = `

Without --shards, the whole suite on the virtual board is split across
several virtual boards (four on two or more cores) and the live output is
one line per spec, as on one board; --shards 1 (or $HILRUN_SHARDS=1) runs it
on one board in this process.
With --shards N, one suite run is split across N virtual boards at once
(each its own child process, board firmware, hub and device identities):
the specs are dealt out by their durations measured in earlier runs
(--durations FILE; on a first run every spec counts the same), each child
runs its share (OUT/shard-K holds its own report), and OUT gets ONE report
of the same shape as a single-board run, each spec naming the shard that
ran it. It works with --firmware c, --image and --board sdk:NAME. With
--pool --shard the pool's boards (one profile) share one suite run the same
way; a spec needing a capability goes to a board that declared it in its
last run (and one that came back not applicable runs again on a board
whose hello declared it). The run prints its speed-up against one board (estimated from the
specs' durations; --compare runs one board after the shards and measures
it). A shard whose board has a rig fault leaves its specs not-run: the run
is a rig fault (exit 3), not a failure. Ctrl-C stops every shard within
about 5 s, and the report of what finished is written.`

// shardChild is one board's child run of a sharded run.
type shardChild struct {
	id    string
	dir   string
	args  []string
	env   []string
	specs []suites.SpecInfo
	lock  func(ctx context.Context, say func(string)) (func(), error) // optional board lock
	est   time.Duration
	// mkArgs, for a pool board, builds its `hilrun run` arguments for a
	// report directory: a second round on the same board (reruns).
	mkArgs func(dir string) []string

	started bool
	res     childResult
	err     error
}

// shardPlan is a sharded run ready to start.
type shardPlan struct {
	out      string
	exe      string
	key      string // durations key
	durPath  string
	all      []suites.SpecInfo // run order
	children []*shardChild
	single   []string // `hilrun run` args of the one-board comparison (--compare)
	o        *runOptions
	known    int  // specs with a measured duration
	seeded   int  // specs timed only by the checked-in seed (durations_seed.go)
	pool     bool // the workers are inventory boards: remember their capabilities
	// compact: the children's live output is their spec lines only,
	// counted across the run (the default run, autoShards); otherwise
	// every line, prefixed with its shard.
	compact  bool
	progress *shardProgress
}

func runShards(cmd *cobra.Command, so *shardOptions, o *runOptions) error {
	if so.shards < 1 {
		return &exitError{2, "--shards needs a number of boards ≥ 1"}
	}
	if o.board != "sim" && !strings.HasPrefix(o.board, sdkBoardPrefix) {
		return &exitError{2, "--shards runs virtual boards (--board sim or sdk:NAME); to split the suite across the boards of an inventory use --pool --shard"}
	}
	if o.port != "" {
		return &exitError{2, "--shards runs virtual boards: drop --port"}
	}
	if err := sim.ValidateDefects(o.defects); err != nil {
		return &exitError{2, err.Error()}
	}
	if err := sim.ValidateMisbehave(o.misbehave); err != nil {
		return &exitError{2, err.Error()}
	}
	if err := cloudHook(o); err != nil { // --cloud (cloud.go)
		return err
	}
	key := durationsKey(o)
	// Build or install the board once (the C firmware, an SDK shim):
	// the children then flash the same image.
	if err := firmwareHook(cmd.Context(), o, cmd.ErrOrStderr()); err != nil {
		return err
	}
	if err := sdkBoardHook(cmd.Context(), o, cmd.ErrOrStderr()); err != nil {
		return err
	}
	all, err := suites.List(listFilter(o), o.focus)
	if err != nil {
		return &exitError{2, "selecting specs: " + err.Error()}
	}
	exe, err := os.Executable()
	if err != nil {
		return &exitError{2, err.Error()}
	}
	plan := &shardPlan{out: o.out, exe: exe, key: key, durPath: durationsPath(so.durations), all: all, o: o, compact: so.auto}
	if plan.out == "" {
		plan.out = filepath.Join("out", "run-"+time.Now().Format("20060102-150405"))
	}
	pass := shardPassArgs(cmd.Flags(), o)
	n := max(1, min(so.shards, len(all)))
	workers := make([]shardWorker, n)
	for i := range workers {
		workers[i] = shardWorker{id: fmt.Sprintf("shard-%d", i+1)}
	}
	plan.assign(workers, nil)
	for _, c := range plan.children {
		c.args = append([]string{"run", "--out", c.dir, "--shard-specs", filepath.Join(c.dir, shardSpecsFile)}, pass...)
	}
	if so.compare {
		plan.single = append([]string{"run", "--out", filepath.Join(plan.out, "one-board")}, pass...)
		plan.single = append(plan.single, focusArgs(o)...)
	}
	return plan.run(cmd)
}

// listFilter is the label filter a child run applies: with --cloud aws
// the run is narrowed to the AWS area (suites.cloudScope does the same in
// the child).
func listFilter(o *runOptions) string {
	if o.cloud != fixtures.CloudAWS {
		return o.labelFilter
	}
	if o.labelFilter == "" {
		return "AWS"
	}
	return "(" + o.labelFilter + ") && AWS"
}

// shardPassArgs are the flags every child gets: the user's, except the
// sharded run's own, the per-child ones and those the parent resolved
// (--firmware c and --board sdk:NAME become --image).
func shardPassArgs(flags *pflag.FlagSet, o *runOptions) []string {
	skip := append(slices.Clone(shardOnlyFlags), poolOnlyFlags...)
	skip = append(skip, "out", "focus", "firmware", "board", "image")
	var args []string
	flags.Visit(func(f *pflag.Flag) {
		if slices.Contains(skip, f.Name) {
			return
		}
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			for _, v := range sv.GetSlice() {
				args = append(args, "--"+f.Name+"="+v)
			}
			return
		}
		args = append(args, "--"+f.Name+"="+f.Value.String())
	})
	if o.image != "" {
		args = append(args, "--image", o.image)
	}
	return args
}

func focusArgs(o *runOptions) []string {
	var a []string
	for _, f := range o.focus {
		a = append(a, "--focus="+f)
	}
	return a
}

// shardWorker is a board a plan deals specs to.
type shardWorker struct {
	id   string
	caps []string // declared capabilities, when known; nil: unknown
}

// assign deals the specs to the workers: longest expected duration first,
// each to the least loaded worker that can run it (one whose known
// capabilities include the spec's; when no worker is known to have them,
// any worker whose capabilities are unknown, else any worker: the spec is
// then not applicable wherever it runs). Each worker runs its specs in
// run order.
func (p *shardPlan) assign(workers []shardWorker, _ []string) {
	d := loadDurations(p.durPath)
	own := d.estimator(p.key, p.o.strict)
	seeded, _ := d.withSeed(durationsSeed()) // durations_seed.go: for specs this file has not timed
	est := seeded.estimator(p.key, p.o.strict)
	durs := make([]time.Duration, len(p.all))
	p.known, p.seeded = 0, 0
	for i, s := range p.all {
		var ok bool
		durs[i], ok = est.of(s.Name)
		if _, mine := own.of(s.Name); mine {
			p.known++
		} else if ok {
			p.seeded++
		}
	}
	bins, loads := dealSpecs(p.all, durs, workers)
	p.children = nil
	for w, bin := range bins {
		if len(bin) == 0 && (len(p.all) > 0 || w > 0) {
			continue // nothing for it (with nothing selected, one child runs the filters)
		}
		c := &shardChild{id: workers[w].id, dir: filepath.Join(p.out, workers[w].id), est: loads[w]}
		for _, i := range bin {
			c.specs = append(c.specs, p.all[i])
		}
		p.children = append(p.children, c)
	}
}

// dealSpecs splits specs (with expected durations durs) across workers:
// longest first, each to the least loaded worker that can run it
// (candidates). A worker's indices are in run order.
func dealSpecs(specs []suites.SpecInfo, durs []time.Duration, workers []shardWorker) (bins [][]int, loads []time.Duration) {
	n := len(workers)
	loads = make([]time.Duration, n)
	bins = make([][]int, n)
	order := make([]int, len(specs))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return durs[order[a]] > durs[order[b]] })
	for _, i := range order {
		cand := candidates(specs[i].Capabilities, workers)
		best := cand[0]
		for _, w := range cand[1:] {
			if loads[w] < loads[best] {
				best = w
			}
		}
		loads[best] += durs[i]
		bins[best] = append(bins[best], i)
	}
	for _, bin := range bins {
		sort.Ints(bin)
	}
	return bins, loads
}

// candidates are the workers that may run a spec needing caps.
func candidates(caps []string, workers []shardWorker) []int {
	all := make([]int, len(workers))
	for i := range all {
		all[i] = i
	}
	if len(caps) == 0 {
		return all
	}
	var has, unknown []int
	for i, w := range workers {
		if w.caps == nil {
			unknown = append(unknown, i)
			continue
		}
		ok := true
		for _, c := range caps {
			ok = ok && agentproto.HasCap(w.caps, c)
		}
		if ok {
			has = append(has, i)
		}
	}
	switch {
	case len(has) > 0:
		return has
	case len(unknown) > 0:
		return unknown
	}
	return all
}

// run starts the children, waits for them, writes the merged report and
// returns the run's exit status as `hilrun run` does.
func (p *shardPlan) run(cmd *cobra.Command) error {
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	w := cmd.OutOrStdout()
	lw := &lineWriter{w: w}
	if err := os.MkdirAll(p.out, 0o755); err != nil {
		return &exitError{2, err.Error()}
	}
	balance := fmt.Sprintf("balanced by measured durations (%d of %d specs known, %s)", p.known, len(p.all), p.durPath)
	switch {
	case p.known == 0 && p.seeded > 0:
		balance = fmt.Sprintf("balanced by the checked-in durations seed (%d of %d specs; %s is written after this run)", p.seeded, len(p.all), p.durPath)
	case p.known == 0:
		balance = "no measured durations yet: balanced by count (" + p.durPath + " is written after this run)"
	case p.seeded > 0:
		balance = fmt.Sprintf("balanced by measured durations (%d of %d specs known, %s; %d more from the checked-in seed)", p.known, len(p.all), p.durPath, p.seeded)
	}
	if p.compact {
		lw.Printf("%d specs on %d virtual boards at once (the default; --shards 1 for one board), %s; report in %s, each board's own output in shard-K/output.txt\n", len(p.all), len(p.children), balance, p.out)
	} else {
		lw.Printf("shards: %d specs on %d boards, %s; report in %s\n", len(p.all), len(p.children), balance, p.out)
	}
	width := 0
	for _, c := range p.children {
		width = max(width, len(c.id))
		ids := make([]string, len(c.specs))
		for i, s := range c.specs {
			ids[i] = s.ID
		}
		if err := os.MkdirAll(c.dir, 0o755); err != nil {
			return &exitError{2, err.Error()}
		}
		b, _ := json.MarshalIndent(ids, "", " ")
		if len(ids) > 0 {
			if err := os.WriteFile(filepath.Join(c.dir, shardSpecsFile), b, 0o644); err != nil {
				return &exitError{2, err.Error()}
			}
		} else {
			// Nothing selected: one child runs the filters as given, so
			// the report says so as a single run would.
			c.args = slices.DeleteFunc(c.args, func(a string) bool { return a == "--shard-specs" || strings.HasSuffix(a, shardSpecsFile) })
			c.args = append(c.args, focusArgs(p.o)...)
		}
	}
	if p.compact {
		p.progress = &shardProgress{total: len(p.all), width: len(fmt.Sprint(len(p.all)))}
	} else {
		for _, c := range p.children {
			lw.Printf("[%-*s] %d specs, ≈%.1fs expected\n", width, c.id, len(c.specs), c.est.Seconds())
		}
	}
	t0 := time.Now()
	p.start(ctx, lw, width, p.children)
	if p.pool && ctx.Err() == nil {
		if again := p.reruns(); len(again) > 0 {
			for _, c := range again {
				lw.Printf("[%-*s] again: %d specs another board could not run for a capability this board declares\n", width, c.id, len(c.specs))
			}
			p.children = append(p.children, again...)
			p.start(ctx, lw, width, again)
		}
	}
	wall := time.Since(t0)

	rep := p.merge(ctx, t0)
	if err := reports.Write(p.out, rep); err != nil {
		return &exitError{2, "write report: " + err.Error()}
	}
	p.joinLogs()
	boards := map[string][]string{}
	for _, sr := range rep.Run.Shards {
		if p.pool && sr.Board.Firmware.Caps != nil {
			boards[sr.ID] = sr.Board.Firmware.Caps
		}
	}
	if len(p.o.defects) == 0 && len(p.o.misbehave) == 0 {
		if err := updateDurations(p.durPath, p.key, rep, boards); err != nil {
			lw.Printf("note: durations file %s not updated: %v\n", p.durPath, err)
		}
	}
	printSummary(cmd, rep, p.out)
	p.printSpeedup(w, rep, wall)
	if len(p.single) > 0 && ctx.Err() == nil {
		p.compareOne(ctx, w, rep, wall)
	}
	return outcomeError(rep)
}

// start runs children at once and waits for them.
func (p *shardPlan) start(ctx context.Context, lw *lineWriter, width int, children []*shardChild) {
	var wg sync.WaitGroup
	for _, c := range children {
		wg.Add(1)
		go func() {
			defer wg.Done()
			prefix := fmt.Sprintf("[%-*s] ", width, c.id)
			var env []string
			if c.lock != nil {
				unlock, err := c.lock(ctx, func(msg string) { lw.Printf("%s%s\n", prefix, msg) })
				if err != nil {
					if ctx.Err() == nil {
						c.started, c.err = true, err
					}
					return
				}
				defer unlock()
				env = append(env, boardLockedEnv+"="+c.id)
			}
			c.started = true
			run := childRun{Exe: p.exe, Args: c.args, Env: append(env, c.env...), Dir: c.dir, Live: lw, Prefix: prefix, Grace: poolChildGrace}
			if p.progress != nil {
				run.Filter = p.progress.filter(prefix)
			}
			c.res, c.err = run.run(ctx)
			if p.progress == nil || (c.res.Code != 0 && c.res.Code != 1) || c.err != nil {
				lw.Printf("%sdone: exit %d, %.1fs\n", prefix, c.res.Code, c.res.Wall.Seconds())
			}
		}()
	}
	wg.Wait()
}

// reruns is the second round of a pool shard: a spec that came back
// not applicable from a board lacking a capability it needs goes to
// another board of the run whose hello declared it (the first round could
// only guess from earlier runs).
func (p *shardPlan) reruns() []*shardChild {
	caps := map[string][]string{}
	na := map[string][]string{} // board → spec names not applicable there
	for _, c := range p.children {
		rep, err := reports.LoadForMerge(filepath.Join(c.dir, reports.JSONFile))
		if err != nil {
			continue
		}
		caps[c.id] = rep.Board.Firmware.Caps
		for _, s := range rep.Specs {
			if s.Status == reports.SpecNotApplicable {
				na[c.id] = append(na[c.id], s.Name)
			}
		}
	}
	plan := planReruns(p.children, caps, na)
	var out []*shardChild
	for _, c := range p.children {
		specs := plan[c.id]
		if len(specs) == 0 || c.mkArgs == nil {
			continue
		}
		dir := c.dir + "-again"
		ids := make([]string, len(specs))
		for i, s := range specs {
			ids[i] = s.ID
		}
		b, _ := json.MarshalIndent(ids, "", " ")
		if os.MkdirAll(dir, 0o755) != nil || os.WriteFile(filepath.Join(dir, shardSpecsFile), b, 0o644) != nil {
			continue // the first round's not-applicable stands
		}
		out = append(out, &shardChild{id: c.id, dir: dir, args: c.mkArgs(dir), env: c.env, specs: specs, lock: c.lock})
	}
	return out
}

// planReruns assigns each not-applicable spec (na: board → spec names) to
// the least loaded other board whose capabilities (caps: board → its
// hello's) include every capability the spec needs.
func planReruns(children []*shardChild, caps map[string][]string, na map[string][]string) map[string][]suites.SpecInfo {
	info := map[string]suites.SpecInfo{}
	for _, c := range children {
		for _, s := range c.specs {
			info[s.Name] = s
		}
	}
	out := map[string][]suites.SpecInfo{}
	for _, c := range children {
		for _, name := range na[c.id] {
			s, ok := info[name]
			if !ok || len(s.Capabilities) == 0 {
				continue
			}
			best := ""
			for _, d := range children {
				if d.id == c.id || caps[d.id] == nil || (best != "" && len(out[d.id]) >= len(out[best])) {
					continue
				}
				if !slices.ContainsFunc(s.Capabilities, func(cp string) bool { return !agentproto.HasCap(caps[d.id], cp) }) {
					best = d.id
				}
			}
			if best != "" {
				out[best] = append(out[best], s)
			}
		}
	}
	return out
}

// merge joins the children's reports.
func (p *shardPlan) merge(ctx context.Context, t0 time.Time) *reports.Report {
	now := time.Now()
	meta := reports.RunMeta{ID: now.UTC().Format("20060102T150405Z"), Started: t0, Finished: now, Wall: now.Sub(t0),
		Version: version, Command: os.Args, Strict: p.o.strict, LabelFilter: p.o.labelFilter, Defects: p.o.defects, HubVersion: hub.Version}
	meta.Host, _ = os.Hostname()
	order := make([]string, len(p.all))
	for i, s := range p.all {
		order[i] = s.Name
	}
	var parts []reports.ShardPart
	for _, c := range p.children {
		part := reports.ShardPart{ID: c.id, Dir: c.dir, Interrupted: ctx.Err() != nil}
		for _, s := range c.specs {
			part.Specs = append(part.Specs, s.Name)
		}
		switch {
		case !c.started:
			part.Missing, part.Interrupted = "interrupted before it started", true
		case c.err != nil:
			part.Missing = c.err.Error()
		default:
			rep, err := reports.LoadForMerge(filepath.Join(c.dir, reports.JSONFile))
			if err != nil {
				part.Missing = fmt.Sprintf("hilrun run exited with status %d without a report (%v); last output:\n%s", c.res.Code, err, c.res.Tail)
				part.Interrupted = part.Interrupted || c.res.Interrupted
			} else {
				part.Report = rep
			}
		}
		parts = append(parts, part)
	}
	refs := shardRefs(&meta, parts)
	// Requirements whose specs no shard ran because the run's filter left
	// them out (each child lists what its own selection skipped; a
	// requirement a shard did judge has specs and is unaffected): not run,
	// as in a one-board run, not "not covered".
	seen := map[string]bool{}
	for _, pt := range parts {
		if pt.Report == nil {
			continue
		}
		for _, sp := range pt.Report.Specs {
			for _, id := range sp.Requirements {
				seen[id] = true // some shard has its specs
			}
		}
	}
	for _, n := range order {
		for _, id := range reports.RequirementsInName(n) {
			seen[id] = true
		}
	}
	for _, pt := range parts {
		if pt.Report == nil {
			continue
		}
		for _, id := range pt.Report.Run.NotSelected {
			if !seen[id] {
				seen[id] = true
				meta.NotSelected = append(meta.NotSelected, id)
			}
		}
	}
	slices.Sort(meta.NotSelected)
	return reports.MergeShards(meta, refs, order, parts)
}

// shardRefs are the requirement rows of a sharded run: a shard's own (the
// run's scope, e.g. the AWS area only with --cloud aws), with its cloud and
// hub version; the whole catalog when no shard reported.
func shardRefs(meta *reports.RunMeta, parts []reports.ShardPart) []reports.RequirementRef {
	var refs []reports.RequirementRef
	for _, pt := range parts {
		if pt.Report == nil {
			continue
		}
		meta.Cloud, meta.HubVersion = pt.Report.Run.Cloud, pt.Report.Run.HubVersion
		if pt.Report.Run.LabelFilter != "" {
			meta.LabelFilter = pt.Report.Run.LabelFilter
		}
		for _, q := range pt.Report.Requirements {
			refs = append(refs, q.RequirementRef)
		}
		return refs
	}
	for _, r := range catalog.MustLoad().All() {
		refs = append(refs, reports.RequirementRef{ID: r.ID, Title: r.Title, Area: r.Area, Severity: string(r.Severity)})
	}
	return refs
}

// joinLogs writes OUT/console.log and OUT/ginkgo.log: the shards' own, one
// after the other under a heading each (each shard's stays in its
// directory).
func (p *shardPlan) joinLogs() {
	for _, name := range []string{"console.log", "ginkgo.log", "firmware.log"} {
		var b strings.Builder
		for _, c := range p.children {
			data, err := os.ReadFile(filepath.Join(c.dir, name))
			if err != nil {
				continue
			}
			fmt.Fprintf(&b, "===== %s (%s)\n", c.id, filepath.Join(c.dir, name))
			b.Write(data)
			if len(data) > 0 && data[len(data)-1] != '\n' {
				b.WriteByte('\n')
			}
		}
		if b.Len() > 0 {
			_ = os.WriteFile(filepath.Join(p.out, name), []byte(b.String()), 0o644)
		}
	}
}

// printSpeedup prints each shard's time and the speed-up against one
// board, estimated from this run: one board would run every spec one after
// the other (their measured durations) plus one board start-up.
func (p *shardPlan) printSpeedup(w io.Writer, rep *reports.Report, wall time.Duration) {
	var sum, overhead time.Duration
	nOver := 0
	perShard := map[string]time.Duration{}
	for _, s := range rep.Specs {
		sum += s.Duration
		perShard[s.Board] += s.Duration
	}
	for _, sr := range rep.Run.Shards {
		if sr.Wall > 0 {
			overhead += max(0, sr.Wall-perShard[sr.ID])
			nOver++
		}
		fmt.Fprintf(w, "  %-12s %3d specs  %6.1fs wall (specs %.1fs)  %s%s\n", sr.ID, sr.Specs, sr.Wall.Seconds(), perShard[sr.ID].Seconds(), sr.Outcome.Label(), noteSuffix(sr.Note))
	}
	if nOver > 0 {
		overhead /= time.Duration(nOver)
	}
	one := sum + overhead
	if wall > 0 && len(rep.Specs) > 0 {
		fmt.Fprintf(w, "shards: %.1fs wall on %d boards; one board ≈ %.1fs (the specs' %.1fs + %.1fs start-up) → speed-up ≈ %.1f× (estimated; --compare measures it)\n",
			wall.Seconds(), len(rep.Run.Shards), one.Seconds(), sum.Seconds(), overhead.Seconds(), one.Seconds()/wall.Seconds())
	}
}

func noteSuffix(n string) string {
	if n == "" {
		return ""
	}
	return " — " + n
}

// compareOne runs the specs on one board and prints the measured speed-up
// and every spec whose verdict differs from the sharded run's.
func (p *shardPlan) compareOne(ctx context.Context, w io.Writer, sharded *reports.Report, wall time.Duration) {
	dir := filepath.Join(p.out, "one-board")
	fmt.Fprintf(w, "compare: the same specs on one board (%s) …\n", dir)
	res, err := childRun{Exe: p.exe, Args: p.single, Dir: dir, Grace: poolChildGrace}.run(ctx)
	if err != nil {
		fmt.Fprintf(w, "compare: %v\n", err)
		return
	}
	one, err := reports.Load(filepath.Join(dir, reports.JSONFile))
	if err != nil {
		fmt.Fprintf(w, "compare: the one-board run left no report (exit %d): %v\n", res.Code, err)
		return
	}
	diffs := verdictDiffs(one, sharded)
	fmt.Fprintf(w, "compare: one board %.1fs (exit %d), %d boards %.1fs → measured speed-up %.2f×; verdicts: %d specs, %d differ\n",
		res.Wall.Seconds(), res.Code, len(sharded.Run.Shards), wall.Seconds(), res.Wall.Seconds()/wall.Seconds(), len(one.Specs), len(diffs))
	for _, d := range diffs {
		fmt.Fprintf(w, "  differs: %s\n", d)
	}
}

// verdictDiffs compares two reports spec by spec and requirement by
// requirement: what a sharded run must not change.
func verdictDiffs(a, b *reports.Report) []string {
	var out []string
	bs := map[string]reports.SpecStatus{}
	for _, s := range b.Specs {
		bs[s.Name] = s.Status
	}
	as := map[string]bool{}
	for _, s := range a.Specs {
		as[s.Name] = true
		if st, ok := bs[s.Name]; !ok {
			out = append(out, fmt.Sprintf("spec %s: %s vs absent", s.Name, s.Status))
		} else if st != s.Status {
			out = append(out, fmt.Sprintf("spec %s: %s vs %s", s.Name, s.Status, st))
		}
	}
	for _, s := range b.Specs {
		if !as[s.Name] {
			out = append(out, fmt.Sprintf("spec %s: absent vs %s", s.Name, s.Status))
		}
	}
	br := map[string]reports.Status{}
	for _, q := range b.Requirements {
		br[q.ID] = q.Status
	}
	for _, q := range a.Requirements {
		if br[q.ID] != q.Status {
			out = append(out, fmt.Sprintf("requirement %s: %s vs %s", q.ID, q.Status, br[q.ID]))
		}
	}
	if a.Outcome() != b.Outcome() {
		out = append(out, fmt.Sprintf("outcome: %s vs %s", a.Outcome(), b.Outcome()))
	}
	return out
}

// outcomeError maps a report's outcome to the exit status, as runRun does.
func outcomeError(rep *reports.Report) error {
	_, why := rep.Verdict()
	switch out := rep.Outcome(); out {
	case reports.OutcomeFail:
		return &exitError{out.ExitStatus(), "conformance run failed: " + strings.Join(why, "; ")}
	case reports.OutcomeInterrupted:
		return &exitError{out.ExitStatus(), "run interrupted: " + rep.Run.InterruptReason}
	case reports.OutcomeRigFault:
		return &exitError{out.ExitStatus(), "rig fault: " + rep.RigFaultReason() + " (not a verdict on the firmware)"}
	}
	return nil
}

// runPoolShard splits one suite run across the inventory's boards of one
// profile (`hilrun run --pool --shard`).
func runPoolShard(cmd *cobra.Command, so *shardOptions, o *runOptions) error {
	flags := cmd.Flags()
	for _, n := range []string{"board", "port", "image", "chip", "baud", "firmware"} {
		if flags.Changed(n) {
			return &exitError{2, fmt.Sprintf("--pool --shard uses the inventory's boards: drop --%s", n)}
		}
	}
	labels, _ := flags.GetStringSlice("pool-label")
	lockDir := flagString(flags, "lock-dir")
	invPath := o.inventory
	if invPath == "" {
		invPath = inventory.Default()
	}
	if invPath == "" {
		return &exitError{2, "--pool --shard needs an inventory: --inventory FILE, or hilrun.yaml in the working directory (format: docs/inventory.md)"}
	}
	inv, err := inventory.Load(invPath)
	if err != nil {
		return &exitError{2, err.Error()}
	}
	if invPath, err = filepath.Abs(invPath); err != nil {
		return &exitError{2, err.Error()}
	}
	sel := inv.Select(labels...)
	if len(sel) == 0 {
		return &exitError{2, fmt.Sprintf("%s: no boards carrying labels %s", invPath, strings.Join(labels, ", "))}
	}
	for _, b := range sel[1:] {
		if b.Profile != sel[0].Profile {
			return &exitError{2, fmt.Sprintf("--pool --shard splits one suite across boards of one kind, but %s is %s and %s is %s: pick one kind with --pool-label", sel[0].ID, sel[0].Profile, b.ID, b.Profile)}
		}
	}
	if err := sim.ValidateDefects(o.defects); err != nil {
		return &exitError{2, err.Error()}
	}
	if err := cloudHook(o); err != nil { // --cloud (cloud.go)
		return err
	}
	all, err := suites.List(listFilter(o), o.focus)
	if err != nil {
		return &exitError{2, "selecting specs: " + err.Error()}
	}
	exe, err := os.Executable()
	if err != nil {
		return &exitError{2, err.Error()}
	}
	listen, err := poolListenAddrs(flags, inv, len(sel))
	if err != nil {
		return &exitError{2, err.Error()}
	}
	key := sel[0].Profile
	if o.cloud == fixtures.CloudAWS {
		key += "+aws"
	}
	if o.strict {
		key += "/strict"
	}
	plan := &shardPlan{out: o.out, exe: exe, key: key, durPath: durationsPath(so.durations), all: all, o: o, pool: true}
	if plan.out == "" {
		plan.out = filepath.Join("out", "pool-"+time.Now().Format("20060102-150405"))
	}
	mem := loadDurations(plan.durPath)
	workers := make([]shardWorker, len(sel))
	for i, b := range sel {
		workers[i] = shardWorker{id: b.ID}
		if m, ok := mem.Boards[b.ID]; ok {
			workers[i].caps = m.Caps
		}
	}
	plan.assign(workers, nil)
	pass := passThroughArgs(flags)
	pass = slices.DeleteFunc(pass, func(a string) bool {
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		return slices.Contains(shardOnlyFlags, name) || name == "focus"
	})
	for _, c := range plan.children {
		i := slices.IndexFunc(sel, func(b inventory.Board) bool { return b.ID == c.id })
		id := c.id
		c.mkArgs = func(dir string) []string {
			args := []string{"run", "--board", id, "--inventory", invPath, "--out", dir, "--shard-specs", filepath.Join(dir, shardSpecsFile)}
			if listen != nil {
				args = append(args, "--hub-listen", listen[i])
			}
			return append(args, pass...)
		}
		c.args = c.mkArgs(c.dir)
		if lockDir != "" {
			id := c.id
			c.lock = func(ctx context.Context, say func(string)) (func(), error) { return lockBoard(ctx, lockDir, id, say) }
		}
	}
	if so.compare {
		fmt.Fprintln(cmd.ErrOrStderr(), "note: --compare with --pool --shard runs the one-board comparison on "+sel[0].ID)
		plan.single = append([]string{"run", "--board", sel[0].ID, "--inventory", invPath, "--out", filepath.Join(plan.out, "one-board")}, pass...)
		plan.single = append(plan.single, focusArgs(o)...)
	}
	return plan.run(cmd)
}
