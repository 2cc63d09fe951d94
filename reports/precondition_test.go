package reports

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// preReport: TEL-001's only spec could not meet its precondition, CONN-001
// has a passed and a precondition-unmet spec, TEL-005 passed.
func preReport() *Report {
	t0 := time.Date(2025, 11, 25, 18, 0, 0, 0, time.UTC)
	meta := RunMeta{ID: "pre-1", Started: t0, Finished: t0.Add(time.Minute), Version: "v1", Host: "h", HubVersion: "hub"}
	specs := []SpecResult{
		{Name: "topic", Requirements: []string{"TEL-001"}, Status: SpecPreconditionUnmet, Duration: time.Second,
			Failure: "the board answered unsupported to configure mqtt.cleanSession true (CleanSession 1), which this spec needs"},
		{Name: "connects", Requirements: []string{"CONN-001"}, Status: SpecPassed, Duration: time.Second},
		{Name: "connects again", Requirements: []string{"CONN-001"}, Status: SpecPreconditionUnmet, Duration: time.Second, Failure: "no QoS 0"},
		{Name: "oversize", Requirements: []string{"TEL-005"}, Status: SpecPassed, Duration: time.Second},
	}
	return Build(meta, BoardInfo{Profile: "sim"}, sampleCatalog(), specs)
}

func TestPreconditionUnmetIsNotJudged(t *testing.T) {
	r := preReport()
	if got := reqStatus(r, "TEL-001"); got != PreconditionUnmet {
		t.Errorf("TEL-001 with only a precondition-unmet spec: %s, want precondition-unmet", got)
	}
	if got := reqStatus(r, "CONN-001"); got != Pass {
		t.Errorf("CONN-001 passed in one spec: %s, want pass", got)
	}
	if o := r.Outcome(); o != OutcomePass || !r.Summary.Verdict {
		t.Errorf("outcome %s verdict %v: a precondition-unmet spec is never a failure", o, r.Summary.Verdict)
	}
	if r.Summary.Specs[SpecPreconditionUnmet] != 2 || r.Summary.Specs[SpecPassed] != 2 || r.Summary.Requirements[PreconditionUnmet] != 1 {
		t.Errorf("summary %+v", r.Summary)
	}
	for _, a := range r.Summary.Areas {
		if a.Area == "TEL" && (a.MustCovered != 1 || a.MustPassed != 1) {
			t.Errorf("TEL area %+v: a precondition-unmet requirement is neither covered nor passed", a)
		}
	}
	if RequirementStatus([]SpecResult{{Status: SpecPreconditionUnmet}, {Status: SpecFailed}}) != Fail {
		t.Error("a failed spec beside a precondition-unmet one fails the requirement")
	}
	if RequirementStatus([]SpecResult{{Status: SpecPreconditionUnmet}, {Status: SpecNotApplicable}}) != PreconditionUnmet {
		t.Error("precondition-unmet and not-applicable: precondition-unmet")
	}
}

func TestPreconditionUnmetInEveryOutput(t *testing.T) {
	dir := t.TempDir()
	if err := Write(dir, preReport()); err != nil {
		t.Fatal(err)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	var j struct {
		SchemaVersion int `json:"schemaVersion"`
		Specs         []struct {
			Status  string `json:"status"`
			Failure string `json:"failure"`
		} `json:"specs"`
	}
	if err := json.Unmarshal([]byte(read("report.json")), &j); err != nil {
		t.Fatal(err)
	}
	if j.SchemaVersion != SchemaVersion || j.Specs[0].Status != "precondition-unmet" || !strings.Contains(j.Specs[0].Failure, "CleanSession 1") {
		t.Errorf("report.json: %+v", j)
	}
	junit := read("junit.xml")
	if !strings.Contains(junit, `<skipped message="precondition unmet: the board answered unsupported`) || strings.Contains(junit, "<failure") {
		t.Errorf("junit.xml: want a <skipped> with the reason and no <failure>:\n%s", junit)
	}
	if md := read("summary.md"); !strings.Contains(md, "Preconditions not met") || !strings.Contains(md, "2 precondition unmet") {
		t.Errorf("summary.md:\n%s", md)
	}
	if h := read("report.html"); !strings.Contains(h, "Preconditions not met") || !strings.Contains(h, "st-precondition-unmet") {
		t.Error("report.html lacks the precondition-unmet section")
	}
	back, err := Load(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	if reqStatus(back, "TEL-001") != PreconditionUnmet {
		t.Error("reloaded report lost the status")
	}
}
