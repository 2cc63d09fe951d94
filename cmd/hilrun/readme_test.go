package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/hilrun/hilrun/reports"
)

// Issue 16: the README's own `go run` commands lost the documented exit
// statuses (go run exits 1 for any failure), and the README, the code and
// reports/SCHEMA.md disagreed on what exit 0 needs. The README builds
// first, lists every exit status once, matching reports' constants, and
// SCHEMA.md maps every outcome to the same status.
func TestREADMEExitStatuses(t *testing.T) {
	readme := readRepoFile(t, "README.md")
	schema := readRepoFile(t, "reports/SCHEMA.md")
	// No document tells anyone to run hilrun with go run.
	var docs []string
	_ = filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		name := d.Name()
		if d.IsDir() {
			if path != "../.." && (name == "node_modules" || name == "out" || strings.HasPrefix(name, ".") && name != ".github") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(name, ".md") || strings.HasSuffix(name, ".yml") {
			docs = append(docs, path)
		}
		return nil
	})
	if len(docs) < 5 {
		t.Fatalf("found only %v", docs)
	}
	goRun := regexp.MustCompile(`(?m)^\s*(\$ )?go run \./cmd/hilrun\b.*$`)
	for _, p := range docs {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range goRun.FindAllString(string(b), -1) {
			t.Errorf("%s runs hilrun with go run (its exit status is lost): %s", p, strings.TrimSpace(m))
		}
	}
	if !strings.Contains(readme, "go build -o hilrun ./cmd/hilrun") {
		t.Error("README does not build hilrun first")
	}
	rows := regexp.MustCompile(`(?m)^\| ([0-9]) \| ([A-Z —-]+?) \|`).FindAllStringSubmatch(readme, -1)
	got := map[int][]string{}
	for _, r := range rows {
		n, _ := strconv.Atoi(r[1])
		got[n] = append(got[n], strings.TrimSpace(r[2]))
	}
	want := map[int][]string{
		reports.ExitPass:     {reports.OutcomePass.Label()},
		reports.ExitFail:     {reports.OutcomeFail.Label(), reports.OutcomeInterrupted.Label()},
		reports.ExitUsage:    {"—"},
		reports.ExitRigFault: {reports.OutcomeRigFault.Label()},
		reports.ExitNoSpecs:  {reports.OutcomeNoSpecs.Label()},
	}
	for code, labels := range want {
		if strings.Join(got[code], ",") != strings.Join(labels, ",") {
			t.Errorf("README exit %d rows %v, want %v", code, got[code], labels)
		}
	}
	if len(got) != len(want) {
		t.Errorf("README lists exit statuses %v", got)
	}
	if n := strings.Count(readme, "| exit | outcome | when |"); n != 1 {
		t.Errorf("README has %d exit status tables, want exactly one", n)
	}
	for _, o := range []reports.Outcome{reports.OutcomePass, reports.OutcomeFail, reports.OutcomeInterrupted, reports.OutcomeRigFault, reports.OutcomeNoSpecs} {
		row := regexp.MustCompile("(?m)^\\| `" + string(o) + "` \\|.*\\| ([0-9]) \\|$").FindStringSubmatch(schema)
		if row == nil || row[1] != strconv.Itoa(o.ExitStatus()) {
			t.Errorf("SCHEMA.md outcome %s: %v, want exit %d", o, row, o.ExitStatus())
		}
	}
	// The SHOULD rule: code, README and SCHEMA.md agree that a failed
	// SHOULD fails the run.
	r := reports.Build(reports.RunMeta{}, reports.BoardInfo{}, []reports.RequirementRef{{ID: "A-001", Area: "A", Severity: reports.Should}},
		[]reports.SpecResult{{Name: "s", Requirements: []string{"A-001"}, Status: reports.SpecFailed, Failure: "A-001: no"}})
	if r.Outcome() != reports.OutcomeFail {
		t.Errorf("a failed SHOULD gives %s", r.Outcome())
	}
	if !strings.Contains(readme, "A failed SHOULD fails the run") || !strings.Contains(schema, "A failed SHOULD requirement fails the run") {
		t.Error("README or SCHEMA.md does not say that a failed SHOULD fails the run")
	}
}

func readRepoFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile("../../" + rel)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
