package suites

import (
	"fmt"
	"slices"
	"strings"

	"github.com/hilrun/hilrun/fixtures/catalog"
	"github.com/hilrun/hilrun/reports"
)

// CoverageOf is r's row of the dimension table (fixtures/catalog/
// dimensions.yaml) in the report's shape; nil if the table has none.
func CoverageOf(r catalog.Requirement) *reports.Coverage {
	t, err := catalog.Dimensions()
	if err != nil {
		return nil
	}
	e, ok := t.Get(r.ID)
	if !ok {
		return nil
	}
	f := e.Figure()
	c := &reports.Coverage{Dimensions: f.Dimensions, Covered: f.Covered, Partial: f.Partial, Gaps: f.Gaps, Specs: f.Specs,
		SingleExample: catalog.SingleExample(r, e), Single: e.Single}
	for _, d := range e.Dimensions {
		c.Items = append(c.Items, reports.CoverageDimension{Name: d.Name, State: string(d.State()), Cases: d.Cases, CoveredBy: d.CoveredBy, Gap: d.Gap})
	}
	return c
}

// SpecText is a spec's text as Conformance was given it: its name without
// the " [IDs]" suffix Conformance appends.
func SpecText(s SpecInfo) string {
	if i := strings.LastIndex(s.Name, " ["); i >= 0 && strings.HasSuffix(s.Name, "]") {
		return s.Name[:i]
	}
	return s.Name
}

// CheckDimensions checks the dimension table against the suite's specs
// (from List): every coveredBy names a spec by its text, and that spec
// carries the requirement. It returns the problems found.
func CheckDimensions(t *catalog.DimensionTable, specs []SpecInfo) []string {
	byText := map[string][]SpecInfo{}
	for _, s := range specs {
		byText[SpecText(s)] = append(byText[SpecText(s)], s)
	}
	var out []string
	for _, e := range t.All() {
		for _, d := range e.Dimensions {
			for _, text := range d.CoveredBy {
				ss, ok := byText[text]
				if !ok {
					out = append(out, fmt.Sprintf("%s %s: coveredBy %q is no spec of the suite", e.ID, d.Name, text))
					continue
				}
				labelled := false
				for _, s := range ss {
					labelled = labelled || slices.Contains(s.Requirements, e.ID)
				}
				if !labelled {
					out = append(out, fmt.Sprintf("%s %s: spec %q does not carry %s (its requirements: %v)", e.ID, d.Name, text, e.ID, ss[0].Requirements))
				}
			}
		}
	}
	return out
}
