package reports

import (
	"strings"
	"testing"
)

// Issue 16: failure messages were cut mid-sentence ("… not seen within the
// deadline. Seen:") on every one-line surface.
func TestClaim(t *testing.T) {
	for _, tc := range []struct{ name, msg, claim, evidence string }{
		{"dangling Seen label", "expected on the wire: a twin GET on the new connection; not seen within the deadline. Seen:\n  +  0.000s   hub   fault\n  +  0.084s dev→hub CONNECT",
			"expected on the wire: a twin GET on the new connection; not seen within the deadline.", "  +  0.000s   hub   fault\n  +  0.084s dev→hub CONNECT"},
		{"one line", "TWIN-010: the device must GET the twin (002 L14007)", "TWIN-010: the device must GET the twin (002 L14007)", ""},
		{"evidence label got", "METH-005: the response must be JSON or empty (002 L1); got:\n    {bad", "METH-005: the response must be JSON or empty (002 L1)", "    {bad"},
		{"gomega without description", "Expected\n    <int>: 1\nto equal\n    <int>: 2", "Expected <int>: 1 to equal <int>: 2", ""},
		{"description then gomega", "TWIN-004: version taken (002 L5)\nExpected\n    <int>: 1", "TWIN-004: version taken (002 L5)", "Expected\n    <int>: 1"},
		{"blank line ends the claim", "CONN-003: no CONNECT.\n\nlast console lines:\nx", "CONN-003: no CONNECT.", "last console lines:\nx"},
		{"empty", "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Claim(tc.msg); got != tc.claim {
				t.Errorf("Claim = %q, want %q", got, tc.claim)
			}
			if got := Evidence(tc.msg); got != tc.evidence {
				t.Errorf("Evidence = %q, want %q", got, tc.evidence)
			}
		})
	}
}

func FuzzClaim(f *testing.F) {
	f.Add("expected x; not seen. Seen:\n  a\n  b")
	f.Add("Expected\n  <int>: 1")
	f.Fuzz(func(t *testing.T, msg string) {
		c := Claim(msg)
		if strings.Contains(c, "\n") {
			t.Fatalf("claim %q has a newline", c)
		}
		_ = Evidence(msg)
	})
}
