package reports

import (
	"fmt"
	"strings"
)

// Coverage is a requirement's row of the dimension table
// (fixtures/catalog/dimensions.yaml, issue 15): the dimensions along which a
// client can get the requirement wrong, and which specs exercise them. It is
// a property of the suite, not of the run: the same for every board.
type Coverage struct {
	Dimensions int `json:"dimensions"`
	Covered    int `json:"covered"`           // every case exercised
	Partial    int `json:"partial,omitempty"` // some cases exercised, a gap names the rest
	Gaps       int `json:"gaps,omitempty"`    // nothing exercises it
	Specs      int `json:"specs"`             // distinct covering specs
	// SingleExample: a MUST resting on one spec while some dimension is
	// not fully covered.
	SingleExample bool `json:"singleExample,omitempty"`
	// Single is the reason a requirement has one dimension only.
	Single string              `json:"single,omitempty"`
	Items  []CoverageDimension `json:"items"`
}

// CoverageDimension is one dimension of a Coverage.
type CoverageDimension struct {
	Name      string   `json:"name"`
	State     string   `json:"state"` // covered | partial | gap
	Cases     []string `json:"cases"`
	CoveredBy []string `json:"coveredBy,omitempty"` // spec texts
	Gap       string   `json:"gap,omitempty"`
}

// Label is the short figure a report row shows, e.g. "dimensions 3/5
// covered (1 partial)".
func (c *Coverage) Label() string {
	if c == nil {
		return ""
	}
	s := fmt.Sprintf("dimensions %d/%d covered", c.Covered, c.Dimensions)
	var extra []string
	if c.Partial > 0 {
		extra = append(extra, fmt.Sprintf("%d partial", c.Partial))
	}
	if c.SingleExample {
		extra = append(extra, "single example")
	}
	if len(extra) > 0 {
		s += " (" + strings.Join(extra, ", ") + ")"
	}
	return s
}

// CoverageArea is one area's roll-up of the dimension table.
type CoverageArea struct {
	Area          string
	Requirements  int // with a dimension row
	Dimensions    int
	Covered       int
	Partial       int
	Gaps          int
	SingleExample []string // MUST IDs resting on a single example
}

// CoverageByArea rolls the requirements' Coverage up per area, in the
// report's area order; nil when no requirement carries one (a report
// written before schema version 5).
func (r *Report) CoverageByArea() []CoverageArea {
	var out []CoverageArea
	idx := map[string]int{}
	for _, q := range r.Requirements {
		c := q.Coverage
		if c == nil || r.OutsideCloud(q.Area) {
			continue
		}
		i, ok := idx[q.Area]
		if !ok {
			i = len(out)
			idx[q.Area] = i
			out = append(out, CoverageArea{Area: q.Area})
		}
		a := &out[i]
		a.Requirements++
		a.Dimensions += c.Dimensions
		a.Covered += c.Covered
		a.Partial += c.Partial
		a.Gaps += c.Gaps
		if c.SingleExample {
			a.SingleExample = append(a.SingleExample, q.ID)
		}
	}
	return out
}
