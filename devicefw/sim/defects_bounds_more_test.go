package sim

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/hilrun/hilrun/rig/iothub"
)

func TestBoundsMoreDefectHelpers(t *testing.T) {
	long := strings.Repeat("a", 128)
	for _, c := range []struct{ in, want string }{{"short", "short"}, {long[:63], long[:63]}, {long, long[:63]}} {
		if got := messageIDCut63(c.in); got != c.want {
			t.Errorf("messageIDCut63(%d chars) = %d chars, want %d", len(c.in), len(got), len(c.want))
		}
	}
	for _, c := range []struct {
		seq  uint64
		want string
	}{{1, "$iothub/twin/GET/?$rid=1"}, {255, "$iothub/twin/GET/?$rid=255"}, {256, "$iothub/twin/GET/"}, {512, "$iothub/twin/GET/"}} {
		rid := fmt.Sprint(c.seq)
		if got := ridOmitted(iothub.TwinGetTopic(rid), c.seq, rid); got != c.want {
			t.Errorf("ridOmitted(seq %d) = %q, want %q", c.seq, got, c.want)
		}
	}
	var bag iothub.PropertyBag
	for i := range 20 {
		bag = append(bag, iothub.Property{Name: fmt.Sprint("p", i), Value: "v"})
	}
	if got := bagFirst16(bag); len(got) != 16 || got["p15"] != "v" || got["p16"] != "" {
		t.Errorf("bagFirst16: %v", got)
	}
	if got := bagFirst16(bag[:3]); len(got) != 3 {
		t.Errorf("bagFirst16 of 3: %v", got)
	}
	in := map[string]any{"top": nil, "cfg": map[string]any{"a": nil, "b": 1.0}}
	want := map[string]any{"top": nil, "cfg": map[string]any{"b": 1.0}}
	if got := nestedNullsDropped(in); !reflect.DeepEqual(got, want) {
		t.Errorf("nestedNullsDropped = %v, want %v", got, want)
	}
}
