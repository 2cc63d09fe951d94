package iothub

import (
	"strings"
	"testing"
)

func TestValidDTMI(t *testing.T) {
	for s, want := range map[string]bool{
		"dtmi:com:example:Thermostat;1":            true,
		"dtmi:orgpal:palthree:palthree_demo_0;1":   true,
		"dtmi:a;12":                                true,
		"dtmi:com:example:Thermostat":              false,
		"dtmi:com:example:Thermostat;0":            false,
		"dtmi:com:example:Thermostat;1.0":          false,
		"dtmi:1com:x;1":                            false,
		"DTMI:com:x;1":                             false,
		"dtmi:com::x;1":                            false,
		"dtmi:" + strings.Repeat("a", 5000) + ";1": false,
		"": false,
	} {
		if ValidDTMI(s) != want {
			t.Errorf("ValidDTMI(%.40q) = %v", s, !want)
		}
	}
}

func TestCommandNames(t *testing.T) {
	if n := CommandMethodName("thermostat1", "getMaxMinReport"); n != "thermostat1*getMaxMinReport" {
		t.Errorf("CommandMethodName = %q", n)
	}
	if n := CommandMethodName("", "reboot"); n != "reboot" {
		t.Errorf("CommandMethodName default component = %q", n)
	}
	for in, want := range map[string][2]string{"a*b": {"a", "b"}, "b": {"", "b"}, "a*b*c": {"a", "b*c"}} {
		c, cmd := SplitCommand(in)
		if c != want[0] || cmd != want[1] {
			t.Errorf("SplitCommand(%q) = %q, %q", in, c, cmd)
		}
	}
}

func TestAckMap(t *testing.T) {
	m := Ack{Value: 25, Code: AckCompleted, Version: 7, Description: "ok"}.Map()
	if m["value"] != 25 || m["ac"] != 200 || m["av"] != int64(7) || m["ad"] != "ok" {
		t.Errorf("Ack.Map = %v", m)
	}
	if _, ok := (Ack{Value: 1}).Map()["ad"]; ok {
		t.Error("empty ad is written")
	}
}
