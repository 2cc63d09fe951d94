package iothub

import (
	"errors"
	"strings"
	"testing"
)

func TestParseClientID(t *testing.T) {
	long := strings.Repeat("a", MaxIDLength)
	tests := []struct {
		in       string
		want     Identity
		wantRule string // "" = success
	}{
		{in: "dev1", want: Identity{DeviceID: "dev1"}},
		{in: "Dev-1", want: Identity{DeviceID: "Dev-1"}},
		{in: "dev1/mod1", want: Identity{DeviceID: "dev1", ModuleID: "mod1"}},
		{in: "a.b-c_d@e$f(1)!=", want: Identity{DeviceID: "a.b-c_d@e$f(1)!="}},
		{in: "-.+%_#*?!(),=@$'", want: Identity{DeviceID: "-.+%_#*?!(),=@$'"}},
		{in: "x?y=1/m'o,d", want: Identity{DeviceID: "x?y=1", ModuleID: "m'o,d"}},
		{in: long, want: Identity{DeviceID: long}},
		{in: long + "/" + long, want: Identity{DeviceID: long, ModuleID: long}},
		{in: "", wantRule: "CONN-024"},
		{in: "/mod", wantRule: "CONN-024"},
		{in: "dev/", wantRule: "CONN-024"},
		{in: "a/b/c", wantRule: "MOD-001"},
		{in: "dev 1", wantRule: "CONN-024"},
		{in: "dev:1", wantRule: "CONN-024"},
		{in: "dev;1", wantRule: "CONN-024"},
		{in: "dév", wantRule: "CONN-024"},
		{in: "dev\x00", wantRule: "CONN-024"},
		{in: "dev/mod~", wantRule: "CONN-024"},
		{in: long + "a", wantRule: "MOD-008"},
		{in: "d/" + long + "a", wantRule: "MOD-008"},
	}
	for _, tt := range tests {
		got, err := ParseClientID(tt.in)
		if tt.wantRule != "" {
			checkRule(t, "ParseClientID("+tt.in+")", err, tt.wantRule)
			continue
		}
		if err != nil {
			t.Errorf("ParseClientID(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseClientID(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
		if got.ClientID() != tt.in || got.String() != tt.in {
			t.Errorf("ClientID of %q = %q", tt.in, got.ClientID())
		}
		if got.IsModule() != (tt.want.ModuleID != "") {
			t.Errorf("IsModule(%q) wrong", tt.in)
		}
	}
}

func TestValidateID(t *testing.T) {
	for _, ok := range []string{"a", "A1", "x'y", strings.Repeat("Z", 128)} {
		if err := ValidateID(ok); err != nil {
			t.Errorf("ValidateID(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a/b", "a b", "a\tb", "a&b", "ä", strings.Repeat("Z", 129), "a~"} {
		if err := ValidateID(bad); err == nil {
			t.Errorf("ValidateID(%q) = nil, want error", bad)
		}
	}
	if err := (Identity{DeviceID: "d", ModuleID: "m m"}).Validate(); err == nil {
		t.Error("Identity.Validate accepted a module id with a space")
	}
}

// checkRule asserts that err is an *Error carrying rule.
func checkRule(t *testing.T, what string, err error, rule string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: got no error, want one for %s", what, rule)
		return
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Errorf("%s: error %T is not *Error: %v", what, err, err)
		return
	}
	if e.Rule != rule {
		t.Errorf("%s: rule %q, want %q (%v)", what, e.Rule, rule, err)
	}
	if !strings.HasPrefix(err.Error(), "iothub: ") {
		t.Errorf("%s: message %q lacks package prefix", what, err)
	}
	if rule != "" && !strings.Contains(err.Error(), "["+rule+"]") {
		t.Errorf("%s: message %q does not name %s", what, err, rule)
	}
}

func TestErrorMessageTruncated(t *testing.T) {
	err := ValidateID(strings.Repeat("x", 1000))
	if len(err.Error()) > 400 {
		t.Errorf("error message is %d bytes long", len(err.Error()))
	}
}
