package main

import (
	"strings"
	"testing"
)

// TestShardProgressFilter: two children's lines become one board's output.
func TestShardProgressFilter(t *testing.T) {
	p := &shardProgress{total: 12, width: 2}
	a, b := p.filter("[shard-1] "), p.filter("[shard-2] ")
	var got []string
	feed := func(f func(string) (string, bool), lines ...string) {
		for _, l := range lines {
			if out, ok := f(l); ok {
				got = append(got, out)
			}
		}
	}
	feed(a, "hilrun: starting reference hub", "hilrun: flashing the virtual board", "hilrun: board sim0: hilrun-sim 0.1.0, capabilities [sas]")
	feed(b, "hilrun: starting reference hub", "hilrun: board sim0: hilrun-sim 0.1.0, capabilities [sas]")
	feed(a, "PASS [1/6] CONN    one [CONN-001]   0.10s", "FAIL [2/6] TWIN    two [TWIN-002]   0.20s", "      TWIN-002: the why", "      wire trace: …")
	feed(b, "N/A  [1/6] AWS     three [AWS-001]   0.00s", "PRE  [2/6] LIMITS  four [LIMITS-001]   0.10s", "      precondition unmet: app.burst")
	feed(a, "", "6 specs: 5 passed, 1 failed, 0 rig fault", "requirements: 5 pass", "  CONN   MUST covered 1/19", "verdict: FAIL (filtered: focus on a list of 6 specs) — report: x", "hilrun: conformance run failed: TWIN-002 (MUST) failed")
	feed(b, "hilrun: rig fault: the board stopped answering", "W something odd")
	want := []string{
		"hilrun: board sim0: hilrun-sim 0.1.0, capabilities [sas]",
		"PASS [ 1/12] CONN    one [CONN-001]   0.10s",
		"FAIL [ 2/12] TWIN    two [TWIN-002]   0.20s",
		"      TWIN-002: the why",
		"      wire trace: …",
		"N/A  [ 3/12] AWS     three [AWS-001]   0.00s",
		"PRE  [ 4/12] LIMITS  four [LIMITS-001]   0.10s",
		"      precondition unmet: app.burst",
		"[shard-2] hilrun: rig fault: the board stopped answering",
		"[shard-2] W something odd",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestAutoShards: only the whole Azure suite on the virtual board is
// sharded by default.
func TestAutoShards(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  string
		o    runOptions
		want int
	}{
		{"default", "", runOptions{board: "sim"}, autoShardCount()},
		{"C firmware", "", runOptions{board: "sim", firmware: "c"}, autoShardCount()},
		{"label filter", "", runOptions{board: "sim", labelFilter: "TWIN"}, 1},
		{"focus", "", runOptions{board: "sim", focus: []string{"x"}}, 1},
		{"defect", "", runOptions{board: "sim", defects: []string{"d"}}, 1},
		{"real board", "", runOptions{board: "serial", port: "/dev/ttyUSB0"}, 1},
		{"SDK board", "", runOptions{board: "sdk:azure-iot-node"}, 1},
		{"aws", "", runOptions{board: "sim", cloud: "aws"}, 1},
		{"env one", "1", runOptions{board: "sim"}, 1},
		{"env three", "3", runOptions{board: "sim", labelFilter: "TWIN"}, 3},
		{"env three, defect", "3", runOptions{board: "sim", defects: []string{"d"}}, 1},
	} {
		t.Setenv(shardsEnv, tc.env)
		cmd := newRunCmd()
		got, err := autoShards(cmd.Flags(), &tc.o)
		if err != nil || got != tc.want {
			t.Errorf("%s: %d, %v; want %d", tc.name, got, err, tc.want)
		}
	}
	t.Setenv(shardsEnv, "many")
	if _, err := autoShards(newRunCmd().Flags(), &runOptions{board: "sim"}); err == nil || !strings.Contains(err.Error(), shardsEnv) {
		t.Errorf("a bad $%s: %v", shardsEnv, err)
	}
}
