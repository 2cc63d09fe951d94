package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hilrun/hilrun/fixtures/catalog"
	"github.com/hilrun/hilrun/reports"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/inventory"
)

// `hilrun run --pool` runs the suite on every board of the inventory at
// once: one child `hilrun run --board ID` per board (Ginkgo runs a suite
// once per process), each writing its own report directory, then merges the
// reports (reports.Merge) into the pool's output directory.

// exitRigFault is the exit status of a run (or a pool) whose only problem is
// the rig: the board did not come up, frames were lost, the board stopped
// responding (reports.ExitRigFault). It says nothing about the firmware.
const exitRigFault = reports.ExitRigFault

// poolChildGrace is how long a child may take to write its report after the
// pool forwards Ctrl-C (a run ends within 2 s of SIGINT, hung board or
// not) before its process group is killed: the pool itself ends within
// about this bound.
const poolChildGrace = 5 * time.Second

// boardLockedEnv tells a child that the pool holds its board's lock.
const boardLockedEnv = "HILRUN_BOARD_LOCKED"

const exitStatusHelp = `

Exit status: 0 every applicable MUST requirement that ran passed; 1 a
requirement failed (in a spec without a rig fault: the firmware is wrong,
even if the rig also faulted) or the run was interrupted (Ctrl-C, SIGTERM:
the run ends within 2 s, report written); 2 the run could not start (bad
flags or inventory); 3 rig fault and nothing failed: the board did not come
up (no hello after reset, port missing, flashing failed, crash loop), frames
were lost or corrupted on the serial line, or the board stopped responding
(after an echo probe; it is reset and the run resumes, at most twice) — not
a verdict on the firmware.

With --pool, every board of the inventory (--inventory FILE, default
./hilrun.yaml; --pool-label to pick boards by label) runs in its own child
process, in parallel: hilrun run --board ID --inventory FILE --out OUT/ID,
with the other flags of this command passed on. Their output is shown live,
each line prefixed with the board id. OUT (--out) gets the merged report
(merged.json, report.html, junit.xml, summary.md); each board's own report is
in OUT/ID. A board that fails its pre-flight check is reported as a rig fault
and does not stop the others. Pool exit status: 0 every board passed; 1 a
board failed conformance, or a board's run was interrupted (Ctrl-C: the
children get one SIGINT and stop within 2 s, a child still running 5 s later
is killed, and the merged report of what finished is still written); 3 the
only problems are rig faults; 2 the pool could not start. --lock-dir DIR holds an exclusive lock
DIR/hilrun-ID.lock (flock) per board while it runs, so two runs on one host
never share a board.`

type poolOptions struct {
	enabled bool
	jobs    int
	labels  []string
	lockDir string
}

// poolOnlyFlags are the pool's own flags; poolFixedFlags are set per child
// by the pool. Neither is passed through to the children.
var (
	poolOnlyFlags  = []string{"pool", "jobs", "pool-label", "lock-dir"}
	poolFixedFlags = []string{"out", "board", "port", "inventory", "image", "hub-listen", "baud", "chip"}
)

// withPool adds --pool and its flags to the run command.
func withPool(cmd *cobra.Command) *cobra.Command {
	p := &poolOptions{}
	f := cmd.Flags()
	f.BoolVar(&p.enabled, "pool", false, "run the suite on every board of the inventory in parallel, one child process per board, and merge the reports")
	f.IntVar(&p.jobs, "jobs", 0, "with --pool: boards run at once (default: all)")
	f.StringSliceVar(&p.labels, "pool-label", nil, "with --pool: only boards carrying every one of these inventory labels")
	f.StringVar(&p.lockDir, "lock-dir", "", "with --pool: hold an exclusive lock DIR/hilrun-<board id>.lock per board while it runs (e.g. /var/lock)")
	cmd.Long += exitStatusHelp
	cmd.Example += "\n  hilrun run --pool --inventory hilrun.yaml --out out/pool\n  hilrun run --pool --pool-label esp32s3 --lock-dir /var/lock"
	inner := cmd.RunE
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if p.enabled {
			return runPool(c, p)
		}
		for _, n := range poolOnlyFlags[1:] {
			if c.Flags().Changed(n) {
				return &exitError{2, "--" + n + " works only with --pool"}
			}
		}
		return inner(c, args)
	}
	return cmd
}

// poolBoard is one board's run in the pool.
type poolBoard struct {
	inv     inventory.Board
	dir     string
	started bool
	res     childResult
	err     error // the child could not be started or the lock not taken
	input   reports.MergeInput
}

func runPool(cmd *cobra.Command, p *poolOptions) error {
	flags := cmd.Flags()
	for _, n := range []string{"board", "port", "image", "chip", "baud"} {
		if flags.Changed(n) {
			return &exitError{2, fmt.Sprintf("--pool runs every board of the inventory: drop --%s (or run one board with --board ID)", n)}
		}
	}
	invPath := flagString(flags, "inventory")
	if invPath == "" {
		invPath = inventory.Default()
	}
	if invPath == "" {
		return &exitError{2, "--pool needs an inventory: --inventory FILE, or hilrun.yaml in the working directory (format: docs/inventory.md)"}
	}
	inv, err := inventory.Load(invPath)
	if err != nil {
		return &exitError{2, err.Error()}
	}
	if invPath, err = filepath.Abs(invPath); err != nil {
		return &exitError{2, err.Error()}
	}
	sel := inv.Select(p.labels...)
	if len(sel) == 0 {
		what := ""
		if len(p.labels) > 0 {
			what = " carrying labels " + strings.Join(p.labels, ", ")
		}
		return &exitError{2, fmt.Sprintf("%s: no boards%s", invPath, what)}
	}
	out := flagString(flags, "out")
	if out == "" {
		out = filepath.Join("out", "pool-"+time.Now().Format("20060102-150405"))
	}
	exe, err := os.Executable()
	if err != nil {
		return &exitError{2, err.Error()}
	}
	listen, err := poolListenAddrs(flags, inv, len(sel))
	if err != nil {
		return &exitError{2, err.Error()}
	}
	pass := passThroughArgs(flags)
	jobs := p.jobs
	if jobs <= 0 || jobs > len(sel) {
		jobs = len(sel)
	}

	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	w := cmd.OutOrStdout()
	lw := &lineWriter{w: w}
	width := 0
	ids := make([]string, len(sel))
	for i, b := range sel {
		ids[i] = b.ID
		width = max(width, len(b.ID))
	}
	lw.Printf("pool: %d boards from %s: %s (%d at once); reports in %s\n", len(sel), invPath, strings.Join(ids, ", "), jobs, out)

	t0 := time.Now()
	boards := make([]*poolBoard, len(sel))
	sem := make(chan struct{}, jobs)
	var wg sync.WaitGroup
	for i, b := range sel {
		pb := &poolBoard{inv: b, dir: filepath.Join(out, b.ID)}
		boards[i] = pb
		args := []string{"run", "--board", b.ID, "--inventory", invPath, "--out", pb.dir}
		if listen != nil {
			args = append(args, "--hub-listen", listen[i])
		}
		args = append(args, pass...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			if ctx.Err() != nil {
				return
			}
			prefix := fmt.Sprintf("[%-*s] ", width, b.ID)
			var env []string
			if p.lockDir != "" {
				unlock, err := lockBoard(ctx, p.lockDir, b.ID, func(msg string) { lw.Printf("%s%s\n", prefix, msg) })
				if err != nil {
					if ctx.Err() != nil {
						return // interrupted while waiting: not started
					}
					pb.started, pb.err = true, err
					return
				}
				defer unlock()
				env = append(env, boardLockedEnv+"="+b.ID)
			}
			pb.started = true
			pb.res, pb.err = childRun{Exe: exe, Args: args, Env: env, Dir: pb.dir, Live: lw, Prefix: prefix, Grace: poolChildGrace}.run(ctx)
			pb.input = classifyBoard(pb, inv)
			v := map[string]string{reports.BoardPass: "PASS", reports.BoardFail: "FAIL", reports.BoardRigFault: "RIG FAULT",
				reports.BoardInterrupted: "INTERRUPTED"}[boardVerdict(pb.input)]
			lw.Printf("%s%s (exit %d, %.1fs) — %s\n", prefix, v, pb.res.Code, pb.res.Wall.Seconds(), filepath.Join(pb.dir, reports.HTMLFile))
		}()
	}
	wg.Wait()
	wall := time.Since(t0)

	var inputs []reports.MergeInput
	var warnings, notStarted []string
	for _, pb := range boards {
		switch {
		case !pb.started:
			notStarted = append(notStarted, pb.inv.ID)
		case pb.err != nil:
			in := reports.MergeInput{ID: pb.inv.ID, Profile: pb.inv.Profile, RigFault: pb.err.Error()}
			in.Report, in.Path = writeStubReport(pb, "rig fault: "+pb.err.Error())
			inputs = append(inputs, in)
		default:
			inputs = append(inputs, pb.input)
		}
	}
	if len(notStarted) > 0 {
		warnings = append(warnings, "pool interrupted: boards not started: "+strings.Join(notStarted, ", "))
	}
	if len(inputs) == 0 {
		return &exitError{1, "pool interrupted before any board started"}
	}
	m, err := reports.Merge(inputs, reports.MergeOptions{Version: version, Warnings: warnings})
	if err != nil {
		return &exitError{2, err.Error()}
	}
	if err := reports.WriteMerged(out, m); err != nil {
		return &exitError{2, err.Error()}
	}
	var longest time.Duration
	for _, pb := range boards {
		longest = max(longest, pb.res.Wall)
	}
	s := m.Summary
	fmt.Fprintf(w, "\npool: %d boards: %d pass, %d fail, %d interrupted, %d rig fault — %.1fs wall (longest board %.1fs)\n",
		len(m.Boards), s.Boards[reports.BoardPass], s.Boards[reports.BoardFail], s.Boards[reports.BoardInterrupted], s.Boards[reports.BoardRigFault], wall.Seconds(), longest.Seconds())
	for _, why := range s.Why {
		fmt.Fprintf(w, "  %s\n", firstLine(why))
	}
	for _, warn := range m.Warnings {
		fmt.Fprintf(w, "  note: %s\n", warn)
	}
	fmt.Fprintf(w, "pool verdict: %s — merged report: %s\n", strings.ToUpper(strings.ReplaceAll(s.Verdict, "-", " ")), filepath.Join(out, reports.HTMLFile))
	switch {
	case ctx.Err() != nil:
		return &exitError{1, "pool interrupted; merged report of what finished: " + out}
	case s.Verdict == reports.BoardFail:
		return &exitError{1, "pool: conformance failure on " + strings.Join(boardsWith(m, reports.BoardFail), ", ")}
	case s.Verdict == reports.BoardInterrupted:
		return &exitError{1, "pool: run interrupted on " + strings.Join(boardsWith(m, reports.BoardInterrupted), ", ")}
	case s.Verdict == reports.BoardRigFault:
		return &exitError{exitRigFault, "pool: rig fault on " + strings.Join(boardsWith(m, reports.BoardRigFault), ", ") + " (the rig failed; not a firmware verdict)"}
	}
	return nil
}

func boardsWith(m *reports.Merged, verdict string) []string {
	var ids []string
	for _, b := range m.Boards {
		if b.Verdict == verdict {
			ids = append(ids, b.ID)
		}
	}
	return ids
}

func boardVerdict(in reports.MergeInput) string {
	if in.Report == nil {
		return reports.BoardRigFault
	}
	switch in.Report.Outcome() {
	case reports.OutcomeFail:
		return reports.BoardFail
	case reports.OutcomeInterrupted:
		return reports.BoardInterrupted
	case reports.OutcomeRigFault:
		return reports.BoardRigFault
	case reports.OutcomeNoSpecs:
		return reports.BoardFail // judged nothing: never a pass (issue 16)
	}
	if in.RigFault != "" {
		return reports.BoardRigFault
	}
	return reports.BoardPass
}

// classifyBoard turns a finished child into a merge input. The child's
// report decides, except that exit status 3 always means a rig fault, and a
// child that left no report is a rig fault (or, when the pool was
// interrupted, an interrupted run) with a stub report written for it.
func classifyBoard(pb *poolBoard, inv *inventory.Inventory) reports.MergeInput {
	in := reports.MergeInput{ID: pb.inv.ID, Profile: pb.inv.Profile}
	path := filepath.Join(pb.dir, reports.JSONFile)
	rep, err := reports.LoadForMerge(path)
	if err != nil {
		reason := fmt.Sprintf("hilrun run exited with status %d without a report (%v); last output:\n%s", pb.res.Code, err, pb.res.Tail)
		if pb.res.Interrupted {
			in.Report, in.Path = writeStubReport(pb, "interrupted before the board reported: "+reason)
			return in
		}
		in.RigFault = reason
		in.Report, in.Path = writeStubReport(pb, "rig fault: "+reason)
		return in
	}
	in.Report, in.Path = rep, path
	if pb.res.Code == exitRigFault {
		if reason, ok := reports.RigFault(rep); ok {
			in.RigFault = reason
		} else {
			in.RigFault = firstNonEmpty(rep.Run.InterruptReason, "hilrun run exited with the rig-fault status 3:\n"+pb.res.Tail)
		}
	}
	return in
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// writeStubReport writes a report.json for a board whose run left none, so
// that a later `hilrun report merge` over the pool's directory sees the board
// too. Every requirement is not covered.
func writeStubReport(pb *poolBoard, reason string) (*reports.Report, string) {
	now := time.Now()
	meta := reports.RunMeta{ID: now.UTC().Format("20060102T150405Z"), Started: now.Add(-pb.res.Wall), Finished: now,
		Version: version, Command: []string{"hilrun", "run", "--board", pb.inv.ID}, HubVersion: hub.Version,
		Interrupted: true, InterruptReason: reason}
	meta.Host, _ = os.Hostname()
	var refs []reports.RequirementRef
	for _, r := range catalog.MustLoad().All() {
		refs = append(refs, reports.RequirementRef{ID: r.ID, Title: r.Title, Area: r.Area, Severity: string(r.Severity)})
	}
	rep := reports.Build(meta, reports.BoardInfo{Profile: pb.inv.Profile, Port: pb.inv.Port}, refs, nil)
	path := filepath.Join(pb.dir, reports.JSONFile)
	if err := reports.Write(pb.dir, rep); err != nil {
		return rep, ""
	}
	return rep, path
}

// passThroughArgs repeats the flags the user set on `hilrun run --pool` for
// every child, except the pool's own and those the pool sets per board.
func passThroughArgs(flags *pflag.FlagSet) []string {
	var args []string
	flags.Visit(func(f *pflag.Flag) {
		for _, n := range append(poolOnlyFlags, poolFixedFlags...) {
			if f.Name == n {
				return
			}
		}
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			for _, v := range sv.GetSlice() {
				args = append(args, "--"+f.Name+"="+v)
			}
			return
		}
		args = append(args, "--"+f.Name+"="+f.Value.String())
	})
	return args
}

// poolListenAddrs gives every child its own hub address when the hub
// listens on a fixed port for real boards (hub.listen in the inventory, or
// --hub-listen): the i-th board gets port+i. Boards learn the address per
// session from the agent, so distinct ports are fine. nil: the children
// choose (loopback with a free port), or this hilrun has no --hub-listen.
func poolListenAddrs(flags *pflag.FlagSet, inv *inventory.Inventory, n int) ([]string, error) {
	if flags.Lookup("hub-listen") == nil {
		return nil, nil
	}
	base := flagString(flags, "hub-listen")
	if base == "" && inv != nil {
		base = inv.Hub.Listen
	}
	if base == "" {
		return nil, nil
	}
	host, port, err := net.SplitHostPort(base)
	if err != nil {
		return nil, fmt.Errorf("hub listen address %q: %v", base, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p+n-1 > 65535 {
		return nil, fmt.Errorf("hub listen address %q: bad port", base)
	}
	out := make([]string, n)
	for i := range out {
		pi := p
		if p != 0 {
			pi = p + i
		}
		out[i] = net.JoinHostPort(host, strconv.Itoa(pi))
	}
	return out, nil
}

func flagString(flags *pflag.FlagSet, name string) string {
	if f := flags.Lookup(name); f != nil {
		return f.Value.String()
	}
	return ""
}

// lockBoard takes an exclusive flock(2) on dir/hilrun-<id>.lock, waiting
// (and saying so) while another run holds it. The lock is the host's: it
// holds against any process using the same file (another CI job, a
// developer's run, flock(1) in a script), and the kernel drops it when the
// holder dies.
func lockBoard(ctx context.Context, dir, id string, say func(string)) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lock directory: %w", err)
	}
	path := filepath.Join(dir, "hilrun-"+id+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if errors.Is(err, os.ErrPermission) {
		f, err = os.Open(path)
	}
	if err != nil {
		return nil, fmt.Errorf("board lock: %w (is %s writable by this user?)", err, dir)
	}
	fd := int(f.Fd())
	waitSaid := false
	wait := 100 * time.Millisecond
	for {
		err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("board lock %s: %w", path, err)
		}
		if !waitSaid {
			holder, _ := os.ReadFile(path)
			say(fmt.Sprintf("waiting for the board lock %s (held by %s)", path, strings.TrimSpace(firstNonEmpty(string(holder), "another process"))))
			waitSaid = true
		}
		// flock(2) has no wake-up to wait on with a deadline: poll, backing off.
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, 2*time.Second)
	}
	host, _ := os.Hostname()
	if f.Truncate(0) == nil {
		_, _ = f.WriteAt([]byte(fmt.Sprintf("pid %d on %s since %s\n", os.Getpid(), host, time.Now().Format(time.RFC3339))), 0)
	}
	if waitSaid {
		say("board lock acquired")
	}
	return func() {
		_ = f.Truncate(0)
		_ = syscall.Flock(fd, syscall.LOCK_UN)
		f.Close()
	}, nil
}
