package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/reports"
)

// writeInventory writes a hilrun.yaml of virtual boards; images maps a
// board id to a firmware image (default: the reference firmware).
func writeInventory(t *testing.T, dir string, ids []string, images map[string]string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("boards:\n")
	for _, id := range ids {
		fmt.Fprintf(&b, "  - id: %s\n    profile: sim\n", id)
		if img := images[id]; img != "" {
			fmt.Fprintf(&b, "    image: %s\n", img)
		}
	}
	p := filepath.Join(dir, "hilrun.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPoolThreeVirtualBoards: `hilrun run --pool` runs three virtual boards
// in parallel, shows each board's progress prefixed with its id, writes a
// report directory per board and one merged report. That the boards ran
// at once is proven by their runs' own clocks (they overlap), so no single
// run is made to compare the pool's wall time against.
func TestPoolThreeVirtualBoards(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	inv := writeInventory(t, dir, []string{"sim-a", "sim-b", "sim-c"}, nil)
	// The CONN-016 spec of its own (a renewed connection starts only after
	// the previous one has ended) takes about 2 s of the board's own
	// timers: the runs overlap unless the pool started them seconds apart
	// (a loaded machine can delay a board's start by a second; quickSample
	// lasts 0.1 s). The other spec labelled CONN-016 is CONN-005's SAS
	// session lifecycle, another 4 s that proves nothing more here.
	const filter = quickSample + " || (CONN-016 && !CONN-005)"

	pool := filepath.Join(dir, "pool")
	t0 := time.Now()
	out, code := hilrun(t, "run", "--pool", "--inventory", inv, "--label-filter", filter, "--out", pool)
	wall := time.Since(t0)
	if code != 0 {
		t.Fatalf("pool: exit %d\n%s", code, out)
	}
	t.Logf("pool of three %.2fs", wall.Seconds())
	// Parallel, proven by the runs' own clocks rather than by wall time
	// (which depends on the machine's load): every board's run started
	// before any finished.
	var lastStart, firstEnd time.Time
	for _, id := range []string{"sim-a", "sim-b", "sim-c"} {
		if !strings.Contains(out, "["+id+"] PASS ") {
			t.Errorf("no live spec line prefixed [%s]", id)
		}
		rep, err := reports.Load(filepath.Join(pool, id))
		if err != nil {
			t.Fatalf("board %s: %v", id, err)
		}
		if ok, why := rep.Verdict(); !ok {
			t.Errorf("board %s: %v", id, why)
		}
		if rep.Run.Started.After(lastStart) {
			lastStart = rep.Run.Started
		}
		if firstEnd.IsZero() || rep.Run.Finished.Before(firstEnd) {
			firstEnd = rep.Run.Finished
		}
	}
	if !lastStart.Before(firstEnd) {
		t.Errorf("board runs did not overlap: last start %s, first finish %s", lastStart.Format(time.StampMilli), firstEnd.Format(time.StampMilli))
	}
	m, err := reports.LoadMerged(pool)
	if err != nil {
		t.Fatal(err)
	}
	if m.Summary.Verdict != reports.BoardPass || len(m.Boards) != 3 || m.Boards[0].ID != "sim-a" {
		t.Fatalf("merged: %+v", m.Summary)
	}
	if i := m.Column("sim-b"); i < 0 || m.Boards[i].Firmware.Name != "hilrun-sim" {
		t.Errorf("merged board sim-b lacks its hello: %+v", m.Boards)
	}
	for _, f := range []string{reports.HTMLFile, reports.JUnitFile, reports.MarkdownFile} {
		if _, err := os.Stat(filepath.Join(pool, f)); err != nil {
			t.Error(err)
		}
	}
	if !strings.Contains(out, "pool verdict: PASS") {
		t.Errorf("no pool verdict line:\n%s", out)
	}
}

// TestPoolRigFault: one board's firmware never says hello; it is reported
// as a rig fault, the others pass, and the pool exits 3.
func TestPoolRigFault(t *testing.T) {
	t.Parallel() // waits out a mute board's boot timeout (shortened to 5 s, $HILRUN_TEST_RIG_TIMING)
	dir := t.TempDir()
	mute := filepath.Join(dir, "mute-fw")
	// Stands for a board whose firmware boots but never runs the agent.
	if err := os.WriteFile(mute, []byte("#!/bin/sh\necho 'rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)'\nexec sleep 600\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	inv := writeInventory(t, dir, []string{"sim-ok-1", "sim-mute", "sim-ok-2"}, map[string]string{"sim-mute": mute})
	pool := filepath.Join(dir, "pool")
	// The mute board is given up 5 s after its flash instead of the
	// production bound (Timing.Connect, 15 s); the healthy boards say hello
	// well within it.
	out, code := hilrunEnv(t, []string{fixtures.RigTimingEnv + "=boot=5s"}, "run", "--pool", "--inventory", inv, "--label-filter", quickSample, "--out", pool)
	if code != exitRigFault {
		t.Fatalf("pool: exit %d, want %d\n%s", code, exitRigFault, out)
	}
	m, err := reports.LoadMerged(pool)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"sim-ok-1": reports.BoardPass, "sim-mute": reports.BoardRigFault, "sim-ok-2": reports.BoardPass}
	for _, b := range m.Boards {
		if b.Verdict != want[b.ID] {
			t.Errorf("board %s: verdict %s, want %s (%v)", b.ID, b.Verdict, want[b.ID], b.Why)
		}
	}
	if m.Summary.Verdict != reports.BoardRigFault {
		t.Errorf("merged verdict %s", m.Summary.Verdict)
	}
	if !strings.Contains(out, "[sim-mute] RIG FAULT") || !strings.Contains(out, "rig fault on sim-mute") {
		t.Errorf("output does not name the rig fault:\n%s", out)
	}
	// The board's report says rig fault too, so a later merge over the
	// pool directory agrees.
	merged2 := filepath.Join(dir, "again")
	if out, code := hilrun(t, "report", "merge", "--out", merged2, pool); code != exitRigFault {
		t.Fatalf("report merge over the pool: exit %d\n%s", code, out)
	}
}

// poolInterruptSample is TestPoolInterrupt's selection: defaultSample's
// areas (none judging timing) and two TWIN requirements whose specs last
// seconds each, so no board is through before Ctrl-C.
const poolInterruptSample = defaultSample + " || TWIN-010 || TWIN-011"

// TestPoolInterrupt: Ctrl-C stops every child, and the merged report of
// what finished is still written.
func TestPoolInterrupt(t *testing.T) {
	// Parallel: the selection has no spec that judges timing (the whole
	// suite's first specs may be, RECON-001's backoff cap, which the tests
	// beside this one would starve), and it lasts far longer on each board
	// than the wait for every board's first pass.
	t.Parallel()
	dir := t.TempDir()
	ids := []string{"sim-a", "sim-b", "sim-c"}
	inv := writeInventory(t, dir, ids, nil)
	pool := filepath.Join(dir, "pool")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := exec.Command(exe, "run", "--pool", "--inventory", inv, "--label-filter", poolInterruptSample, "--out", pool)
	c.Env = append(os.Environ(), asHilrunEnv+"=1")
	pr, pw := io.Pipe()
	c.Stdout, c.Stderr = pw, pw
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { err := c.Wait(); pw.Close(); exited <- err }()
	t.Cleanup(func() {
		if c.ProcessState == nil {
			_ = c.Process.Kill()
		}
	})

	// Wait until every board has finished a spec, then interrupt.
	var all bytes.Buffer
	var mu sync.Mutex
	ready := make(chan struct{})
	go func() {
		seen := map[string]bool{}
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			mu.Lock()
			all.WriteString(line + "\n")
			mu.Unlock()
			for _, id := range ids {
				if strings.HasPrefix(line, "["+id+"] PASS ") && !seen[id] {
					seen[id] = true
					if len(seen) == len(ids) {
						close(ready)
					}
				}
			}
		}
	}()
	select {
	case <-ready:
	case err := <-exited:
		t.Fatalf("pool exited before it was interrupted: %v\n%s", err, all.String())
	case <-time.After(3 * time.Minute):
		t.Fatalf("boards did not all pass a spec in time:\n%s", all.String())
	}
	t0 := time.Now()
	if err := c.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(2 * time.Minute):
		t.Fatal("pool did not stop after Ctrl-C")
	}
	t.Logf("pool stopped %.1fs after the interrupt", time.Since(t0).Seconds())
	if code := c.ProcessState.ExitCode(); code != 1 {
		mu.Lock()
		t.Errorf("exit %d, want 1\n%s", code, all.String())
		mu.Unlock()
	}
	m, err := reports.LoadMerged(pool)
	if err != nil {
		t.Fatalf("no merged report after Ctrl-C: %v", err)
	}
	if stopped := time.Since(t0); stopped > poolChildGrace+5*time.Second {
		t.Errorf("pool took %s to stop after Ctrl-C", stopped)
	}
	if len(m.Boards) != 3 || m.Summary.Verdict != reports.BoardInterrupted {
		t.Fatalf("merged after Ctrl-C: %d boards, verdict %s", len(m.Boards), m.Summary.Verdict)
	}
	for _, b := range m.Boards {
		if b.SpecCounts[reports.SpecPassed] == 0 || b.Verdict != reports.BoardInterrupted || b.SpecCounts[reports.SpecFailed] != 0 ||
			!strings.Contains(strings.Join(b.Why, " "), "interrupted") {
			t.Errorf("board %s: %v passed specs, why %q", b.ID, b.SpecCounts, b.Why)
		}
	}
}
