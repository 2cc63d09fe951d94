package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/hilrun/hilrun/reports"
)

// writeRun writes a small report.json as a board's run would.
func writeRun(t *testing.T, dir, host string, failed bool, interrupt string) {
	t.Helper()
	t0 := time.Date(2025, 11, 25, 18, 0, 0, 0, time.UTC)
	meta := reports.RunMeta{ID: "r", Started: t0, Finished: t0.Add(time.Minute), Version: "test", Host: host}
	if interrupt != "" {
		meta.Interrupted, meta.InterruptReason = true, interrupt
	}
	cat := []reports.RequirementRef{{ID: "CONN-001", Title: "t", Area: "CONN", Severity: reports.Must}}
	var specs []reports.SpecResult
	if interrupt == "" {
		st := reports.SpecPassed
		if failed {
			st = reports.SpecFailed
		}
		specs = []reports.SpecResult{{Name: "connects", Requirements: []string{"CONN-001"}, Status: st, Failure: "boom"}}
	}
	if err := reports.Write(dir, reports.Build(meta, reports.BoardInfo{Profile: "esp32"}, cat, specs)); err != nil {
		t.Fatal(err)
	}
}

// TestReportMergeExitStatus: `hilrun report merge` over directories of runs
// from two hosts; exit status 0 / 1 / 3 by the merged verdict, 2 when a
// report has another schema version.
func TestReportMergeExitStatus(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, root string)
		code  int
		want  []string
	}{
		{"all pass", func(t *testing.T, root string) {
			writeRun(t, filepath.Join(root, "host-a", "esp-1"), "host-a", false, "")
			writeRun(t, filepath.Join(root, "host-b", "s3-1"), "host-b", false, "")
		}, 0, []string{"merged 2 boards: 2 pass, 0 fail, 0 interrupted, 0 rig fault"}},
		{"one fails", func(t *testing.T, root string) {
			writeRun(t, filepath.Join(root, "host-a", "esp-1"), "host-a", true, "")
			writeRun(t, filepath.Join(root, "host-b", "s3-1"), "host-b", false, "")
			writeRun(t, filepath.Join(root, "host-b", "s3-2"), "host-b", false, "environment: rig fault on board s3-2 (preflight): board: no hello after reset")
		}, 1, []string{"1 pass, 1 fail, 0 interrupted, 1 rig fault", "conformance failure on esp-1"}},
		{"only rig faults", func(t *testing.T, root string) {
			writeRun(t, filepath.Join(root, "host-a", "esp-1"), "host-a", false, "")
			writeRun(t, filepath.Join(root, "host-b", "s3-2"), "host-b", false, "environment: rig fault on board s3-2 (preflight): board: no hello after reset")
		}, exitRigFault, []string{"rig fault on s3-2"}},
		{"schema mismatch", func(t *testing.T, root string) {
			writeRun(t, filepath.Join(root, "host-a", "esp-1"), "host-a", false, "")
			d := filepath.Join(root, "host-b", "old")
			_ = os.MkdirAll(d, 0o755)
			_ = os.WriteFile(filepath.Join(d, reports.JSONFile), []byte(`{"schemaVersion":7,"run":{"hilrunVersion":"v7"}}`), 0o644)
		}, 2, []string{"schemaVersion is 7, this hilrun reads schemaVersion 1 to " + fmt.Sprint(reports.SchemaVersion), "hilrunVersion v7"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			tc.setup(t, root)
			out := filepath.Join(root, "merged")
			got, code := hilrun(t, "report", "merge", "--out", out, root)
			if code != tc.code {
				t.Fatalf("exit %d, want %d:\n%s", code, tc.code, got)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("output lacks %q:\n%s", w, got)
				}
			}
			if tc.code == 2 {
				return
			}
			// `hilrun report DIR` re-renders a merged report too.
			_ = os.Remove(filepath.Join(out, reports.HTMLFile))
			if got, code := hilrun(t, "report", out); code != 0 || !strings.Contains(got, "merged") {
				t.Fatalf("re-render: %d\n%s", code, got)
			}
			if _, err := os.Stat(filepath.Join(out, reports.HTMLFile)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestPassThroughArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--pool", "--out", "x", "--jobs", "2"}, nil},
		{[]string{"--pool", "--label-filter", "CONN && !CONN-003", "--strict"}, []string{"--label-filter=CONN && !CONN-003", "--strict=true"}},
		{[]string{"--focus", "a", "--focus", "b,c", "--defect", "x", "--defect", "y"}, []string{"--defect=x", "--defect=y", "--focus=a", "--focus=b", "--focus=c"}},
		{[]string{"--board", "b", "--port", "/dev/x", "--image", "i", "--pool-label", "esp32", "--lock-dir", "/var/lock"}, nil},
	} {
		cmd := newRunCmd()
		cmd.RunE = func(*cobra.Command, []string) error { return nil }
		if err := cmd.ParseFlags(tc.args); err != nil {
			t.Fatal(err)
		}
		if got := passThroughArgs(cmd.Flags()); !slices.Equal(got, tc.want) {
			t.Errorf("%q: got %q, want %q", tc.args, got, tc.want)
		}
	}
}

func TestPoolListenAddrs(t *testing.T) {
	cmd := newRunCmd()
	if cmd.Flags().Lookup("hub-listen") == nil {
		cmd.Flags().String("hub-listen", "", "")
	}
	for _, tc := range []struct {
		flag string
		n    int
		want []string
		err  bool
	}{
		{"", 3, nil, false},
		{"0.0.0.0:8883", 3, []string{"0.0.0.0:8883", "0.0.0.0:8884", "0.0.0.0:8885"}, false},
		{"[::]:0", 2, []string{"[::]:0", "[::]:0"}, false},
		{"0.0.0.0:65535", 2, nil, true},
		{"nonsense", 1, nil, true},
	} {
		f := cmd.Flags()
		_ = f.Set("hub-listen", tc.flag)
		got, err := poolListenAddrs(f, nil, tc.n)
		if (err != nil) != tc.err || !slices.Equal(got, tc.want) {
			t.Errorf("%q×%d: %q, %v; want %q (err %v)", tc.flag, tc.n, got, err, tc.want, tc.err)
		}
	}
}

// TestLockBoard: a second holder waits until the first unlocks, and gives
// up when its context ends.
func TestLockBoard(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	unlock, err := lockBoard(ctx, dir, "esp-1", func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "hilrun-esp-1.lock"))
	if !strings.HasPrefix(string(b), "pid ") {
		t.Errorf("lock file content %q", b)
	}
	// Blocked, then cancelled.
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	said := make(chan string, 4)
	if _, err := lockBoard(cctx, dir, "esp-1", func(s string) { said <- s }); err == nil {
		t.Fatal("second lock taken while the first is held")
	}
	if s := <-said; !strings.Contains(s, "waiting for the board lock") || !strings.Contains(s, "pid ") {
		t.Errorf("wait message %q", s)
	}
	// Another board is independent.
	u2, err := lockBoard(ctx, dir, "esp-2", func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	u2()
	// Blocked, then granted when the holder unlocks.
	got := make(chan error, 1)
	waiting := make(chan string, 4)
	go func() {
		u, err := lockBoard(ctx, dir, "esp-1", func(s string) { waiting <- s })
		if err == nil {
			u()
		}
		got <- err
	}()
	select {
	case <-waiting:
	case <-time.After(10 * time.Second):
		t.Fatal("second holder never reported waiting")
	}
	unlock()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("lock not granted after unlock")
	}
}
