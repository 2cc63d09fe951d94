package suites

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/types"

	"github.com/hilrun/hilrun/fixtures/catalog"
)

// The run's selection and live progress: which requirements the filter
// left out (reported as not-run, not as not-covered), the `[n/N]` counter
// with an area header whenever the area changes, and a marker line in the
// console log at each spec's start and end.

var sel struct {
	mu          sync.Mutex
	total       int                 // specs that will run (Ginkgo's pre-run count)
	done        int                 // specs finished so far
	notSelected map[string]struct{} // requirement IDs of specs the filter left out
}

func selectionReset() {
	sel.mu.Lock()
	defer sel.mu.Unlock()
	sel.total, sel.done, sel.notSelected = 0, 0, map[string]struct{}{}
}

// notSelectedIDs returns the requirement IDs of the filtered-out specs, sorted.
func notSelectedIDs() []string {
	sel.mu.Lock()
	defer sel.mu.Unlock()
	out := make([]string, 0, len(sel.notSelected))
	for id := range sel.notSelected {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// noteFilteredOut records a spec the filter left out.
func noteFilteredOut(r SpecReport) {
	if r.State != types.SpecStateSkipped || r.Failure.Message != "" || selected(r) {
		return
	}
	cat := catalog.MustLoad()
	sel.mu.Lock()
	defer sel.mu.Unlock()
	if sel.notSelected == nil {
		sel.notSelected = map[string]struct{}{}
	}
	for _, l := range r.Labels() {
		if _, ok := cat.Get(l); ok {
			sel.notSelected[l] = struct{}{}
		}
	}
}

// progressPrefix counts a finished spec and returns its "[n/N] AREA"
// column. Ginkgo runs the specs in its own order (top-level containers
// shuffled by the seed), in which the areas interleave; the area column
// groups each line by its area, and the summary then counts by area.
func progressPrefix(area string) string {
	sel.mu.Lock()
	defer sel.mu.Unlock()
	sel.done++
	if sel.total <= 0 {
		return fmt.Sprintf("[%d] %-6s", sel.done, area)
	}
	w := len(fmt.Sprint(sel.total))
	return fmt.Sprintf("[%*d/%d] %-6s", w, sel.done, sel.total, area)
}

var _ = ReportBeforeSuite(func(r Report) {
	sel.mu.Lock()
	sel.total = r.PreRunStats.SpecsThatWillRun
	sel.mu.Unlock()
})

// specMarker is the console-log line that opens or closes a spec's window.
func specMarker(edge string, r SpecReport) string {
	var reqs []string
	cat := catalog.MustLoad()
	for _, l := range r.Labels() {
		if _, ok := cat.Get(l); ok {
			reqs = append(reqs, l)
		}
	}
	s := fmt.Sprintf("==== spec %s: %s [%s]", edge, r.LeafNodeText, strings.Join(reqs, " "))
	if edge == "end" {
		s += " — " + r.State.String()
	}
	return s
}

var _ = ReportBeforeEach(func(r SpecReport) {
	if e := env; e != nil && e.Console != nil && r.State != types.SpecStateSkipped {
		e.Console.Notef("%s", specMarker("start", r))
	}
})

var _ = ReportAfterEach(func(r SpecReport) {
	if e := env; e != nil && e.Console != nil && !(r.State == types.SpecStateSkipped && r.RunTime == 0 && r.Failure.Message == "") {
		e.Console.Notef("%s", specMarker("end", r))
	}
})

var leadingID = regexp.MustCompile(`^[A-Z0-9]+-\d{3}\b`)

// withRequirement makes a failure message from a helper's error (a wait
// that ran into its deadline, a hub call that failed) start the way every
// assertion message does: with the spec's requirement IDs and the
// documentation line of the first (the catalog's first reference), e.g.
// "TWIN-010 (002 L12094): expected on the wire: …". A message that already
// starts with a requirement ID is kept as it is.
func withRequirement(msg string, labels []string) string {
	if leadingID.MatchString(msg) {
		return msg
	}
	cat := catalog.MustLoad()
	var ids []string
	ref := ""
	for _, l := range labels {
		if r, ok := cat.Get(l); ok {
			ids = append(ids, l)
			if ref == "" && len(r.Refs) > 0 {
				ref, _, _ = strings.Cut(r.Refs[0], ",")
			}
		}
	}
	if len(ids) == 0 {
		return msg
	}
	head := strings.Join(ids, ", ")
	if ref != "" {
		head += " (" + strings.TrimSpace(ref) + ")"
	}
	return head + ": " + msg
}
