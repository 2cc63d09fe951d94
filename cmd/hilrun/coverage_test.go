package main

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/hilrun/hilrun/fixtures/catalog"
)

// `hilrun report coverage` (issue 15): the dimension table rolled up per
// area, after checking it against the suite.
func TestReportCoverage(t *testing.T) {
	t.Parallel()
	out, code := hilrun(t, "report", "coverage")
	if code != 0 {
		t.Fatalf("report coverage: exit %d\n%s", code, out)
	}
	n := catalog.MustLoad().Len()
	if !regexp.MustCompile(`(?m)^\s+all\s+` + strconv.Itoa(n) + `\s`).MatchString(out) {
		t.Errorf("no total row over %d requirements:\n%s", n, out)
	}
	for _, area := range catalog.MustLoad().Areas() {
		if !regexp.MustCompile(`(?m)^\s+` + area + `\s+\d`).MatchString(out) {
			t.Errorf("no row for area %s", area)
		}
	}
	out, code = hilrun(t, "report", "coverage", "--json", "--area", "TWIN")
	if code != 0 {
		t.Fatalf("--json: exit %d\n%s", code, out)
	}
	var j struct {
		Specs        int                      `json:"specs"`
		Areas        []catalog.AreaFigure     `json:"areas"`
		Requirements []catalog.DimensionEntry `json:"requirements"`
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &j); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	if j.Specs == 0 || len(j.Requirements) != len(catalog.MustLoad().ByArea("TWIN")) || j.Areas[len(j.Areas)-1].Requirements != n {
		t.Errorf("--json: %d specs, %d TWIN entries, areas %+v", j.Specs, len(j.Requirements), j.Areas)
	}
	if out, code := hilrun(t, "report", "coverage", "--gaps", "--area", "TWIN"); code != 0 || !strings.Contains(out, "TWIN-002   rid") {
		t.Errorf("--gaps --area TWIN: exit %d\n%s", code, out)
	}
	if out, code := hilrun(t, "report", "coverage", "--area", "NOPE"); code != 2 || !strings.Contains(out, "unknown area") {
		t.Errorf("--area NOPE: exit %d\n%s", code, out)
	}
}

// That a run's report carries each requirement's row of the table is
// checked on TestReportReRenders' run (main_test.go), which makes the same
// one-spec run.
