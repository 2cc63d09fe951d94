package sim

import (
	"testing"

	"github.com/hilrun/hilrun/rig/iothub"
)

func TestBoundsDefectHelpers(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"1", "1"}, {"255", "255"}, {"256", "0"}, {"300", "44"}, {"abc", "abc"},
	} {
		if got := twinRID8(c.in); got != c.want {
			t.Errorf("twinRID8(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	for _, c := range []struct{ in, want string }{
		{"f", "f"}, {"0a", "0a"}, {"ffff", "ffff"}, {"10000", "00000"}, {"ffffffff", "0000ffff"}, {"x1", "x1"}, {"65536", "05536"},
	} {
		if got := methodRID16(c.in); got != c.want {
			t.Errorf("methodRID16(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	for _, c := range []struct {
		f         versionFlags
		v, held   int64
		orEq, new bool
	}{
		{versionFlags{}, 10, 9, false, true},
		{versionFlags{}, 9, 10, false, false},
		{versionFlags{}, 9, 9, true, true},
		{versionFlags{lexical: true}, 10, 9, false, false},
		{versionFlags{lexical: true}, 2, 1, false, true},
		{versionFlags{u16: true}, 65536, 65535, false, false},
		{versionFlags{u16: true}, 65535, 65534, false, true},
	} {
		if got := c.f.newer(c.v, c.held, c.orEq); got != c.new {
			t.Errorf("%+v.newer(%d, %d, %v) = %v, want %v", c.f, c.v, c.held, c.orEq, got, c.new)
		}
	}
	if got := (versionFlags{u16: true}).stored(65536); got != 0 {
		t.Errorf("u16 stored(65536) = %d", got)
	}
}

func TestBoundsBagText(t *testing.T) {
	bag := iothub.PropertyBag{{Name: "k+%41", Value: "a+b %41 100%"}, {Name: "n", NoValue: true}, {Name: "e", Value: ""}}
	for _, c := range []struct {
		pct, plus bool
		want      string
	}{
		{false, false, bag.Encode()},
		{true, false, "k%2B%41=a%2Bb%20%41%20100%25&n&e="},
		{false, true, "k+%2541=a+b%20%2541%20100%25&n&e="},
	} {
		if got := boundsBagText(bag, c.pct, c.plus); got != c.want {
			t.Errorf("boundsBagText(pct=%v, plus=%v) = %q, want %q", c.pct, c.plus, got, c.want)
		}
	}
	got := decodedAgain(map[string]string{"%41": "%2541", "x": "100%"})
	if len(got) != 2 || got["A"] != "%41" || got["x"] != "100%" {
		t.Errorf("decodedAgain = %q", got)
	}
}
