package reports

import (
	"strings"
	"testing"
	"time"
)

// TestMergeShards: specs come back in run order whichever shard ran them,
// each naming its shard; a shard without a report leaves its specs not-run
// and the run a rig fault, not a failure; a shard's interruption is the
// run's.
func TestMergeShards(t *testing.T) {
	refs := []RequirementRef{{ID: "CONN-001", Area: "CONN", Severity: Must}, {ID: "TEL-001", Area: "TEL", Severity: Must}}
	t0 := time.Now()
	rep1 := Build(RunMeta{Started: t0, Finished: t0.Add(time.Second)}, BoardInfo{Profile: "sim", Port: "/dev/pts/1"}, refs,
		[]SpecResult{{Name: "c [TEL-001]", Requirements: []string{"TEL-001"}, Status: SpecPassed, Duration: time.Second}})
	order := []string{"a [CONN-001]", "b [CONN-001]", "c [TEL-001]"}

	r := MergeShards(RunMeta{}, refs, order, []ShardPart{
		{ID: "shard-1", Specs: []string{"c [TEL-001]"}, Report: rep1},
		{ID: "shard-2", Specs: []string{"a [CONN-001]", "b [CONN-001]"}, Missing: "hilrun run exited with status 2 without a report"},
	})
	if len(r.Specs) != 3 || r.Specs[0].Name != "a [CONN-001]" || r.Specs[2].Name != "c [TEL-001]" {
		t.Fatalf("specs %+v", r.Specs)
	}
	if r.Specs[0].Status != SpecNotRun || r.Specs[0].Board != "shard-2" || r.Specs[0].Requirements[0] != "CONN-001" || r.Specs[2].Board != "shard-1" {
		t.Errorf("specs %+v", r.Specs)
	}
	if r.Outcome() != OutcomeRigFault || !strings.HasPrefix(r.Run.RigFault, "shard-2: hilrun run exited") {
		t.Errorf("outcome %s, rig fault %q", r.Outcome(), r.Run.RigFault)
	}
	if len(r.Run.Shards) != 2 || r.Run.Shards[0].Wall != time.Second || r.Run.Shards[1].Outcome != OutcomeRigFault {
		t.Errorf("shards %+v", r.Run.Shards)
	}
	if r.Requirements[0].Status != NotCovered || r.Requirements[1].Status != Pass {
		t.Errorf("requirements %s %s", r.Requirements[0].Status, r.Requirements[1].Status)
	}

	r = MergeShards(RunMeta{}, refs, order, []ShardPart{
		{ID: "shard-1", Specs: []string{"c [TEL-001]"}, Report: rep1},
		{ID: "shard-2", Specs: []string{"a [CONN-001]", "b [CONN-001]"}, Missing: "killed", Interrupted: true},
	})
	if r.Outcome() != OutcomeInterrupted || r.Run.RigFault != "" {
		t.Errorf("interrupted: outcome %s, rig fault %q", r.Outcome(), r.Run.RigFault)
	}
}

func TestRequirementsInName(t *testing.T) {
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"text [CONN-001]", []string{"CONN-001"}},
		{"text [TWIN-005,RECON-003]", []string{"TWIN-005", "RECON-003"}},
		{"a [b] c [TEL-001, TEL-002]", []string{"TEL-001", "TEL-002"}},
		{"no brackets", nil},
		{"open [CONN-001", nil},
		{"empty []", nil},
		{"", nil},
	} {
		got := RequirementsInName(tc.name)
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%q: %q, want %q", tc.name, got, tc.want)
		}
	}
}
