package suites

import "testing"

func TestWithRequirement(t *testing.T) {
	for _, tc := range []struct {
		msg    string
		labels []string
		want   string
	}{
		{"expected on the wire: a twin GET", []string{"TWIN-010", "TWIN"}, "TWIN-010 (002 L12094): expected on the wire: a twin GET"},
		{"TWIN-010: already says it", []string{"TWIN-010"}, "TWIN-010: already says it"},
		{"no labels", nil, "no labels"},
	} {
		if got := withRequirement(tc.msg, tc.labels); got != tc.want {
			t.Errorf("withRequirement(%q) = %q, want %q", tc.msg, got, tc.want)
		}
	}
}
