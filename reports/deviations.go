package reports

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Deviations is the list of a client's known, documented deviations: the
// requirements (and optionally the specs) that are expected to fail when
// the suite judges that client. A CI job for an official SDK gates on
// "these and only these fail": a new failure, or a listed deviation that
// stops failing, turns it red. Each entry carries the documentation line
// the client breaks, so the list doubles as the client's conformance
// statement.
type Deviations struct {
	// Client and ClientVersion name the client the list was recorded for
	// (the hello's client and clientVersion); a report of another client
	// or version is refused rather than compared.
	Client        string      `yaml:"client"`
	ClientVersion string      `yaml:"clientVersion"`
	Deviations    []Deviation `yaml:"deviations"`
}

// Deviation is one known failure.
type Deviation struct {
	Requirement string `yaml:"requirement"`
	// Specs, when given, are the failing specs this entry stands for
	// (substrings of the spec name); empty means every failing spec of
	// the requirement.
	Specs []string `yaml:"specs,omitempty"`
	// Doc is the documentation line the client breaks ("002 L16709: …").
	Doc string `yaml:"doc"`
	// Why says what the client does instead, in a sentence.
	Why string `yaml:"why"`
	// Intermittent marks a deviation the client shows on some runs only,
	// because it comes from a race inside the client (Why says which): a
	// run in which it does not show is not "now passing". A new failure
	// still turns the check red; the entry never makes a failure pass.
	Intermittent bool `yaml:"intermittent,omitempty"`
}

// LoadDeviations reads a deviations file (YAML).
func LoadDeviations(path string) (*Deviations, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var d Deviations
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for i, e := range d.Deviations {
		if e.Requirement == "" || e.Doc == "" || e.Why == "" {
			return nil, fmt.Errorf("%s: deviation %d: requirement, doc and why are all required", path, i+1)
		}
	}
	return &d, nil
}

// DeviationCheck is the comparison of a report with a deviations list.
type DeviationCheck struct {
	// Unexpected are failing specs no entry stands for (a new failure).
	Unexpected []SpecResult
	// Fixed are entries none of whose specs failed, although the
	// requirement was judged (a deviation that stopped failing).
	Fixed []Deviation
	// NotJudged are entries whose requirement had no passed or failed spec
	// in this run (filtered out, not applicable, rig fault): not compared.
	NotJudged []Deviation
	// NotShown are intermittent entries that did not show in this run.
	NotShown []Deviation
	// Expected counts the failing specs an entry stands for.
	Expected int
}

// OK reports whether the report failed exactly the listed deviations.
func (c DeviationCheck) OK() bool { return len(c.Unexpected) == 0 && len(c.Fixed) == 0 }

// ErrOtherClient is returned when the report judged another client or
// version than the deviations list was recorded for.
var ErrOtherClient = errors.New("the deviations were recorded for another client")

// CheckDeviations compares the failed specs of rep with d.
func CheckDeviations(rep *Report, d *Deviations) (DeviationCheck, error) {
	var c DeviationCheck
	fw := rep.Board.Firmware
	if d.Client != "" && (fw.Client != d.Client || (d.ClientVersion != "" && fw.ClientVersion != d.ClientVersion)) {
		return c, fmt.Errorf("%w: list for %s %s, report of %s %s (record the deviations again for this version)",
			ErrOtherClient, d.Client, d.ClientVersion, fw.Client, fw.ClientVersion)
	}
	matches := func(e Deviation, s SpecResult) bool {
		if !slices.Contains(s.Requirements, e.Requirement) {
			return false
		}
		if len(e.Specs) == 0 {
			return true
		}
		return slices.ContainsFunc(e.Specs, func(sub string) bool { return strings.Contains(s.Name, sub) })
	}
	judged := map[string]bool{}
	for _, s := range rep.Specs {
		if s.Status == SpecPassed || s.Status == SpecFailed {
			for _, r := range s.Requirements {
				judged[r] = true
			}
		}
	}
	used := make([]bool, len(d.Deviations))
	for _, s := range rep.Specs {
		if s.Status != SpecFailed {
			continue
		}
		hit := false
		for i, e := range d.Deviations {
			if matches(e, s) {
				used[i], hit = true, true
			}
		}
		if hit {
			c.Expected++
		} else {
			c.Unexpected = append(c.Unexpected, s)
		}
	}
	for i, e := range d.Deviations {
		switch {
		case used[i]:
		case !judged[e.Requirement]:
			c.NotJudged = append(c.NotJudged, e)
		case e.Intermittent:
			c.NotShown = append(c.NotShown, e)
		default:
			c.Fixed = append(c.Fixed, e)
		}
	}
	sort.SliceStable(c.Fixed, func(i, j int) bool { return c.Fixed[i].Requirement < c.Fixed[j].Requirement })
	return c, nil
}

// String renders the check for a terminal or a CI log.
func (c DeviationCheck) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "known deviations: %d failing specs expected", c.Expected)
	if len(c.NotJudged) > 0 {
		fmt.Fprintf(&b, ", %d entries not judged in this run", len(c.NotJudged))
	}
	b.WriteString("\n")
	for _, s := range c.Unexpected {
		msg := s.Failure
		if i := strings.IndexByte(msg, '\n'); i > 0 {
			msg = msg[:i]
		}
		fmt.Fprintf(&b, "NEW FAILURE  %s\n             %s\n", s.Name, msg)
	}
	for _, e := range c.NotShown {
		fmt.Fprintf(&b, "NOT SHOWN    %s (intermittent: %s) — passed this run\n", e.Requirement, e.Why)
	}
	for _, e := range c.Fixed {
		fmt.Fprintf(&b, "NOW PASSING  %s (listed: %s) — remove it from the list if the client was fixed\n", e.Requirement, e.Why)
	}
	if c.OK() {
		b.WriteString("verdict: the client fails exactly its known deviations\n")
	} else {
		b.WriteString("verdict: the failures differ from the known deviations\n")
	}
	return b.String()
}
