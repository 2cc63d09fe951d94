package agentproto

import "testing"

func TestSpreadBuild(t *testing.T) {
	sp := Spread{Prefix: "m", Members: 3, Len: 4, Extra: 1}
	got := sp.Build()
	if len(got) != 3 {
		t.Fatalf("%d members", len(got))
	}
	for name, n := range map[string]int{"m000": 5, "m001": 4, "m002": 4} {
		v, ok := got[name].(string)
		if !ok || len(v) != n {
			t.Errorf("%s = %q, want %d characters", name, v, n)
		}
	}
	if got["m001"] != string(Generate(4, 2)) {
		t.Errorf("m001 is not Generate(4, 2)")
	}
	if m := (Spread{Prefix: "x", Members: 1000}).Build(); m["x999"] == nil {
		t.Error("member 999 is not x999")
	}
}
