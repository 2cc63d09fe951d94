package suites

import (
	"strings"
	"testing"

	"github.com/hilrun/hilrun/fixtures/catalog"
)

// Every spec named in the dimension table exists and carries the
// requirement it is said to cover (so the report's verdict for that
// requirement includes it). suites.List runs once per process: this is the
// package's only test that calls it.
func TestDimensionTableNamesSpecs(t *testing.T) {
	specs, err := List("", nil)
	if err != nil {
		t.Fatal(err)
	}
	problems := CheckDimensions(catalog.MustDimensions(), specs)
	for _, p := range problems {
		t.Error(p)
	}
	// The check can fail: a spec gone, or one no longer carrying the
	// requirement, is reported.
	named := catalog.MustDimensions().All()[0].Specs()[0]
	var without, unlabelled []SpecInfo
	for _, s := range specs {
		if SpecText(s) == named {
			u := s
			u.Requirements = nil
			unlabelled = append(unlabelled, u)
			continue
		}
		without = append(without, s)
		unlabelled = append(unlabelled, s)
	}
	if p := CheckDimensions(catalog.MustDimensions(), without); len(p) == 0 || !strings.Contains(p[0], "is no spec") {
		t.Errorf("a missing spec went unnoticed: %v", p)
	}
	if p := CheckDimensions(catalog.MustDimensions(), unlabelled); len(p) == 0 || !strings.Contains(p[0], "does not carry") {
		t.Errorf("an unlabelled spec went unnoticed: %v", p)
	}
}

func TestSpecText(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"a b [TWIN-001]", "a b"},
		{"a [b] [TWIN-001,TWIN-002]", "a [b]"},
		{"no suffix", "no suffix"},
	} {
		if got := SpecText(SpecInfo{Name: tc.name}); got != tc.want {
			t.Errorf("SpecText(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
	if !strings.HasPrefix(CoverageOf(catalog.MustLoad().All()[0]).Label(), "dimensions ") {
		t.Error("CoverageOf gives no label for the first requirement")
	}
}
