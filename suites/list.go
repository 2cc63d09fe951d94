package suites

import (
	"errors"
	"io"
	"regexp"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/formatter"
	"github.com/onsi/ginkgo/v2/types"

	"github.com/hilrun/hilrun/fixtures/catalog"
)

// SpecInfo is one spec of the suite as List sees it, without running it.
type SpecInfo struct {
	// ID is the spec's full text (container texts and the spec's own text):
	// what RunOptions.Specs takes to select it.
	ID string `json:"id"`
	// Name is the spec's own text, the name a report gives it.
	Name         string   `json:"name"`
	Labels       []string `json:"labels"`
	Requirements []string `json:"requirements"`
	// Capabilities are what the spec's requirements need the board to
	// declare (catalog `capability`); without one the spec is not
	// applicable on that board.
	Capabilities []string `json:"capabilities,omitempty"`
}

// listing is set while List runs the suite as a dry run: the reporting
// nodes record nothing.
var listing bool

// List returns the specs a run with this label filter and focus would run,
// in the order a run runs them (the order is fixed: the same seed every
// run, and filtering never reorders). It uses Ginkgo's dry run, so like Run
// it may be called once per process, and not together with Run.
func List(labelFilter string, focus []string) ([]SpecInfo, error) {
	if ranOnce {
		return nil, errors.New("suites.List: a process runs the suite once (Ginkgo restriction); start another process")
	}
	ranOnce = true
	listing = true
	defer func() { listing = false }()
	if labelFilter != "" {
		if _, err := types.ParseLabelFilter(labelFilter); err != nil {
			return nil, err
		}
	}
	for _, f := range focus {
		if _, err := regexp.Compile(f); err != nil {
			return nil, err
		}
	}
	formatter.ColorableStdOut = io.Discard
	sc, rc := GinkgoConfiguration()
	sc.LabelFilter = labelFilter
	sc.FocusStrings = focus
	sc.RandomSeed = 1 // as Run: the order is the run's
	sc.DryRun = true
	sc.Timeout = time.Hour
	rc.NoColor, rc.Succinct = true, true
	RunSpecs(testingT{}, "hilrun conformance", sc, rc)
	if suiteRep == nil {
		return nil, errors.New("suites.List: the dry run gave no report")
	}
	cat := catalog.MustLoad()
	var out []SpecInfo
	for _, r := range suiteRep.SpecReports {
		if r.LeafNodeType != types.NodeTypeIt || r.State != types.SpecStatePassed {
			continue // left out by the filters
		}
		s := SpecInfo{ID: r.FullText(), Name: r.LeafNodeText, Labels: r.Labels()}
		for _, l := range s.Labels {
			if q, ok := cat.Get(l); ok {
				s.Requirements = append(s.Requirements, l)
				if q.Capability != "" && !containsString(s.Capabilities, q.Capability) {
					s.Capabilities = append(s.Capabilities, q.Capability)
				}
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// specsFocus is the focus expression selecting exactly the specs with
// these IDs (full texts). Ginkgo matches focus against the suite
// description and the full text; rig.selected against the full text only.
func specsFocus(ids []string) string {
	q := make([]string, len(ids))
	for i, id := range ids {
		q[i] = regexp.QuoteMeta(id)
	}
	return `^(?:hilrun conformance )?(?:` + strings.Join(q, "|") + `)$`
}
