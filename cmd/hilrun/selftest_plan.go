package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/onsi/ginkgo/v2/types"

	"github.com/hilrun/hilrun/devicefw/sim"
	"github.com/hilrun/hilrun/reports"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/suites"
)

// selfPlan is how selftest spends its time: every child run it needs — the
// clean suite split into --jobs shards (merged into one clean report, as
// `run --shards` does) and one run per defect — goes into one queue,
// longest expected first (durations.go), --jobs at a time. The specs
// mostly wait on the board (timers, backoff), so the runs overlap well.
type selfPlan struct {
	o       selftestOptions
	exe     string
	defects []sim.Defect
	all     []suites.SpecInfo // the clean run's specs, in run order
	durs    []time.Duration   // their expected durations
	awsEst  time.Duration     // the AWS image's clean run's expected duration
	durPath string
	skipped []sim.Defect // defects --label-filter left out
}

// judgesFailability reports whether the plan can tell that no defect fails
// the spec: every defect aimed at one of its requirements ran.
func (p *selfPlan) judgesFailability(s reports.SpecResult) bool {
	for _, d := range p.skipped {
		if slices.Contains(s.Requirements, d.Requirement) {
			return false
		}
	}
	return true
}

// selfKey is the durations key of the virtual board the self-test runs.
const selfKey = "sim"

func newSelfPlan(o selftestOptions, exe string, defects []sim.Defect) (*selfPlan, error) {
	every, err := suites.List("", nil)
	if err != nil {
		return nil, &exitError{2, err.Error()}
	}
	p := &selfPlan{o: o, exe: exe, durPath: durationsPath(""), defects: defects, all: every}
	if o.labelFilter != "" {
		match, err := types.ParseLabelFilter(o.labelFilter)
		if err != nil {
			return nil, &exitError{2, "--label-filter: " + err.Error()}
		}
		p.all = slices.DeleteFunc(slices.Clone(every), func(s suites.SpecInfo) bool { return !match(s.Labels) })
		// Only the defects whose whole run (every spec of the defect's
		// requirement) lies inside the selection; a spec only such a
		// defect fails is not judged for failability (judgesFailability).
		p.defects, p.skipped = nil, nil
		for _, d := range defects {
			inside := true
			for _, s := range every {
				if slices.Contains(s.Labels, d.Requirement) && !match(s.Labels) {
					inside = false
				}
			}
			if inside && slices.ContainsFunc(p.all, func(s suites.SpecInfo) bool { return slices.Contains(s.Labels, d.Requirement) }) {
				p.defects = append(p.defects, d)
			} else {
				p.skipped = append(p.skipped, d)
			}
		}
	}
	if len(p.all) == 0 {
		return nil, &exitError{2, fmt.Sprintf("no spec matches --label-filter %q", o.labelFilter)}
	}
	seeded, _ := loadDurations(p.durPath).withSeed(durationsSeed()) // durations_seed.go
	est := seeded.estimator(selfKey, false)
	aws := seeded.estimator(selfKey+"+aws", false)
	p.durs = make([]time.Duration, len(p.all))
	for i, s := range p.all {
		p.durs[i], _ = est.of(s.Name)
		if slices.Contains(s.Labels, "AWS") {
			d, _ := aws.of(s.Name)
			p.awsEst += d
		}
	}
	return p, nil
}

// awsEstimate is the AWS image's clean run's expected duration.
func (p *selfPlan) awsEstimate() time.Duration { return p.awsEst }

// selects reports whether the plan's specs include some of an area's.
func (p *selfPlan) selects(area string) bool {
	return slices.ContainsFunc(p.all, func(s suites.SpecInfo) bool { return slices.Contains(s.Labels, area) })
}

// defectFilter is the label filter of a defect's run.
func (p *selfPlan) defectFilter(d sim.Defect) string {
	if p.o.labelFilter == "" {
		return d.Requirement
	}
	return "(" + d.Requirement + ") && (" + p.o.labelFilter + ")"
}

// defectEstimate is a defect run's expected duration: its specs' with the
// firmware clean (a failing spec often ends sooner, rarely later).
func (p *selfPlan) defectEstimate(d sim.Defect) time.Duration {
	var t time.Duration
	for i, s := range p.all {
		if slices.Contains(s.Labels, d.Requirement) {
			t += p.durs[i]
		}
	}
	return t
}

type selfJob struct {
	est time.Duration
	run func()
}

// run executes the plan: runDefect(i, defect) for every defect, and the
// clean shards, whose merged report goes to cleanDone once all of them
// ended. The error is the clean run's: a shard that left no report.
func (p *selfPlan) run(ctx context.Context, runDefect func(int, sim.Defect), cleanDone func(*reports.Report, error), extra ...selfJob) error {
	jobs := p.o.jobs
	shards := jobs
	if p.o.cleanShards > 0 {
		shards = p.o.cleanShards
	}
	workers := make([]shardWorker, max(1, min(shards, len(p.all))))
	for i := range workers {
		workers[i] = shardWorker{id: fmt.Sprintf("shard-%d", i+1)}
	}
	bins, loads := dealSpecs(p.all, p.durs, workers)
	cleanDir := filepath.Join(p.o.out, "clean")
	parts := make([]reports.ShardPart, len(bins))
	var cleanMu sync.Mutex
	remaining := len(bins)
	t0 := time.Now()
	var cleanErr error
	var queue []selfJob
	for k, bin := range bins {
		id := workers[k].id
		dir := filepath.Join(cleanDir, id)
		var ids, names []string
		for _, i := range bin {
			ids, names = append(ids, p.all[i].ID), append(names, p.all[i].Name)
		}
		parts[k] = reports.ShardPart{ID: id, Dir: dir, Specs: names}
		queue = append(queue, selfJob{est: loads[k], run: func() {
			part := &parts[k]
			if err := os.MkdirAll(dir, 0o755); err != nil {
				part.Missing = err.Error()
			} else if b, _ := json.Marshal(ids); os.WriteFile(filepath.Join(dir, shardSpecsFile), b, 0o644) != nil {
				part.Missing = "cannot write " + filepath.Join(dir, shardSpecsFile)
			} else {
				args := []string{"run", "--out", dir, "--shard-specs", filepath.Join(dir, shardSpecsFile)}
				if p.o.labelFilter != "" {
					args = append(args, "--label-filter", p.o.labelFilter)
				}
				res, err := childRun{Exe: p.exe, Args: args, Dir: dir, Timeout: 10 * time.Minute}.run(ctx)
				switch rep, lerr := reports.LoadForMerge(filepath.Join(dir, reports.JSONFile)); {
				case err != nil:
					part.Missing = err.Error()
				case lerr != nil:
					part.Missing = fmt.Sprintf("no report (%v); run exited with status %d; output:\n%s", lerr, res.Code, res.Tail)
				default:
					part.Report = rep
				}
				part.Interrupted = ctx.Err() != nil
			}
			cleanMu.Lock()
			defer cleanMu.Unlock()
			if remaining--; remaining > 0 {
				return
			}
			rep, err := p.mergeClean(cleanDir, parts, t0)
			cleanErr = err
			cleanDone(rep, err)
		}})
	}
	for i, d := range p.defects {
		queue = append(queue, selfJob{est: p.defectEstimate(d), run: func() { runDefect(i, d) }})
	}
	queue = append(queue, extra...)
	sort.SliceStable(queue, func(a, b int) bool { return queue[a].est > queue[b].est })
	next := make(chan selfJob)
	var wg sync.WaitGroup
	for range max(1, jobs) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				j.run()
			}
		}()
	}
	for _, j := range queue {
		next <- j
	}
	close(next)
	wg.Wait()
	return cleanErr
}

// mergeClean joins the clean shards into OUT/clean/report.json.
func (p *selfPlan) mergeClean(dir string, parts []reports.ShardPart, t0 time.Time) (*reports.Report, error) {
	for _, pt := range parts {
		if pt.Report == nil {
			return nil, fmt.Errorf("%s: %s", pt.ID, pt.Missing)
		}
	}
	now := time.Now()
	meta := reports.RunMeta{ID: now.UTC().Format("20060102T150405Z"), Started: t0, Finished: now, Wall: now.Sub(t0),
		Version: version, Command: os.Args, LabelFilter: p.o.labelFilter, HubVersion: hub.Version}
	meta.Host, _ = os.Hostname()
	refs := shardRefs(&meta, parts)
	order := make([]string, len(p.all))
	for i, s := range p.all {
		order[i] = s.Name
	}
	rep := reports.MergeShards(meta, refs, order, parts)
	if err := reports.Write(dir, rep); err != nil {
		return nil, err
	}
	_ = updateDurations(p.durPath, selfKey, rep, nil)
	return rep, nil
}
