package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hilrun/hilrun/reports"
)

// TestMutateSmall is `selftest --mutate` end to end on a tiny sample:
// mutants of pnp.go built as firmware images (go build -overlay) and judged
// by the PNP specs; the one run is a mutant the PNP-005 spec kills (the
// default status of a Plug and Play command, 200, off by one), found by
// its key in --list. The full analysis is a benchmark, never a test.
func TestMutateSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds firmware images and runs specs")
	}
	t.Parallel() // its own output directory; the image builds share only Go's build cache
	out, code := hilrun(t, "selftest", "--mutate", "--list", "--files", "pnp.go")
	if code != 0 {
		t.Fatalf("--list: exit %d\n%s", code, out)
	}
	id := ""
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, " Firmware.pnpDefine const: 200 → 201 ") {
			id = strings.Fields(l)[0]
		}
	}
	if !strings.Contains(strings.SplitN(out, "\n", 2)[0], "more left out by //mutate:agent directives") {
		t.Errorf("--list does not count the mutants the agent directives leave out:\n%s", strings.SplitN(out, "\n", 2)[0])
	}
	if id == "" || strings.Count(out, "pnp.go:") < 10 {
		t.Fatalf("no mutant of pnpDefine's default status 200 in --list:\n%s", out)
	}
	dir := t.TempDir()
	out, code = hilrun(t, "selftest", "--mutate", "--files", "pnp.go", "--ids", id, "--out", dir)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if !strings.Contains(out, "mutation score 100.0 %") {
		t.Errorf("no score printed:\n%s", out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "mutate.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep mutateReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Sampled != 1 || len(rep.Mutants) != 1 {
		t.Fatalf("ran %d mutants: %+v", rep.Sampled, rep.Mutants)
	}
	m := rep.Mutants[0]
	if m.Outcome != mutKilled || !strings.HasPrefix(m.KilledBy, "PNP-005") || m.LabelFilter != "PNP" {
		t.Errorf("%s %s: outcome %s by %q under %q (%s)", m.ID, m.Key(), m.Outcome, m.KilledBy, m.LabelFilter, m.Detail)
	}
	if md, err := os.ReadFile(filepath.Join(dir, "mutate.md")); err != nil || !strings.Contains(string(md), "| pnp.go |") {
		t.Errorf("mutate.md: %v\n%s", err, md)
	}
	if _, code := hilrun(t, "selftest", "--mutate", "--list", "--files", "defects.go"); code != 2 {
		t.Errorf("a defect file: exit %d, want 2", code)
	}
	if _, code := hilrun(t, "selftest", "--mutate", "--list", "--files", "pnp.go", "--ids", "0000000000"); code != 2 {
		t.Errorf("an unknown id: exit %d, want 2", code)
	}
	if _, code := hilrun(t, "selftest", "--sample", "3"); code != 2 {
		t.Errorf("--sample without --mutate: exit %d, want 2", code)
	}
	if _, code := hilrun(t, "selftest", "--mutate", "--list", "--label-filter", "TWIN"); code != 2 {
		t.Errorf("--label-filter with --mutate: exit %d, want 2", code)
	}
}

func TestJudgeMutant(t *testing.T) {
	failed := &reports.Report{Specs: []reports.SpecResult{
		{Name: "a", Status: reports.SpecPassed},
		{Name: "b", Status: reports.SpecFailed, Requirements: []string{"TWIN-010"}},
		{Name: "c", Status: reports.SpecSkipped}}}
	if o, by, ran, _ := judgeMutant(failed, false); o != mutKilled || by != "TWIN-010: b" || ran != 2 {
		t.Errorf("failed spec: %s %q %d", o, by, ran)
	}
	rig := &reports.Report{Run: reports.RunMeta{RigFault: "board did not come up"}}
	if o, _, _, d := judgeMutant(rig, false); o != mutRigFault || !strings.Contains(d, "board did not come up") {
		t.Errorf("rig fault: %s %q", o, d)
	}
	passed := &reports.Report{Specs: []reports.SpecResult{{Name: "a", Status: reports.SpecPassed}}}
	if o, _, _, _ := judgeMutant(passed, true); o != mutRigFault {
		t.Errorf("timed out: %s", o)
	}
	c := mutCounts{mutKilled: 9, mutSurvived: 1, mutEquivalent: 5, mutNotCompiled: 7}
	if s := c.score(); s != 90 {
		t.Errorf("score %v, want 90 (equivalent and not compiled left out)", s)
	}
}

func TestCrashNote(t *testing.T) {
	dir := t.TempDir()
	if n := crashNote(dir); n != "" {
		t.Errorf("no console log: %q", n)
	}
	os.WriteFile(filepath.Join(dir, "console.log"), []byte("   +0.1s in text ok\n   +1.7s in  text    [hilrun-sim board] firmware process exited (crashed: exit status 2); last stderr: panic: x\n"), 0o644)
	if n := crashNote(dir); !strings.Contains(n, "crashed: exit status 2") {
		t.Errorf("crash not noted: %q", n)
	}
}
