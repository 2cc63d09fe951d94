package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hilrun/hilrun/reports"
)

// TestMutateSmall is `selftest --mutate` end to end on a tiny sample: two
// mutants of pnp.go built as firmware images (go build -overlay) and
// judged by the PNP specs. The full analysis is a benchmark, never a test.
func TestMutateSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds firmware images and runs specs")
	}
	dir := t.TempDir()
	out, code := hilrun(t, "selftest", "--mutate", "--files", "pnp.go", "--operators", "const,drop-call", "--sample", "2", "--seed", "1", "--jobs", "2", "--out", dir)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if !strings.Contains(out, "mutation score") {
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
	if rep.Sampled != 2 || len(rep.Mutants) != 2 || rep.Generated < 10 {
		t.Fatalf("sampled %d of %d: %+v", rep.Sampled, rep.Generated, rep.Mutants)
	}
	for _, m := range rep.Mutants {
		if m.Outcome != mutKilled && m.Outcome != mutSurvived {
			t.Errorf("%s %s: outcome %s (%s)", m.ID, m.Key(), m.Outcome, m.Detail)
		}
		if m.LabelFilter != "PNP" || m.File != "pnp.go" {
			t.Errorf("%s: filter %q, file %s", m.ID, m.LabelFilter, m.File)
		}
	}
	if md, err := os.ReadFile(filepath.Join(dir, "mutate.md")); err != nil || !strings.Contains(string(md), "| pnp.go |") {
		t.Errorf("mutate.md: %v\n%s", err, md)
	}
	// --list builds and runs nothing.
	out, code = hilrun(t, "selftest", "--mutate", "--list", "--files", "pnp.go", "--sample", "3")
	if code != 0 || strings.Count(out, "pnp.go:") != 3 {
		t.Errorf("--list: exit %d\n%s", code, out)
	}
	if _, code := hilrun(t, "selftest", "--mutate", "--list", "--files", "defects.go"); code != 2 {
		t.Errorf("a defect file: exit %d, want 2", code)
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
