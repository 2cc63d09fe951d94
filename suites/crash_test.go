package suites

import (
	"strings"
	"testing"
	"time"

	"github.com/hilrun/hilrun/reports"
	"github.com/hilrun/hilrun/rig/board"
)

func TestJudgeCrash(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	crash := board.Exit{At: start.Add(time.Second), Code: 2, Reason: "crashed: exit status 2",
		Stderr: []string{"I log line", "panic: assignment to entry in nil map", "", "goroutine 7 [running]:"}}
	reset := board.Exit{At: start.Add(time.Second), Code: 3, Reason: "reset requested"}
	killed := board.Exit{At: start.Add(time.Second), Code: -1, Reason: "killed by board"}
	earlier := crash
	earlier.At = start.Add(-time.Second)
	for _, tc := range []struct {
		name   string
		status reports.SpecStatus
		exits  []board.Exit
		loop   bool
		want   reports.SpecStatus
	}{
		{"pass, crash", reports.SpecPassed, []board.Exit{crash}, false, reports.SpecFailed},
		{"pass, deliberate reboots", reports.SpecPassed, []board.Exit{reset, killed}, false, reports.SpecPassed},
		{"pass, the previous spec's crash", reports.SpecPassed, []board.Exit{earlier}, false, reports.SpecPassed},
		{"failed, crash", reports.SpecFailed, []board.Exit{crash}, false, reports.SpecFailed},
		{"rig fault from a crash's cut frame", reports.SpecRigFault, []board.Exit{crash}, false, reports.SpecFailed},
		{"rig fault, crash loop", reports.SpecRigFault, []board.Exit{crash, crash, crash}, true, reports.SpecRigFault},
		{"rig fault, crash loop recovered since", reports.SpecRigFault, []board.Exit{crash}, false, reports.SpecRigFault},
		{"not applicable", reports.SpecNotApplicable, []board.Exit{crash}, false, reports.SpecNotApplicable},
		{"interrupted", reports.SpecInterrupted, []board.Exit{crash}, false, reports.SpecInterrupted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := reports.SpecResult{Status: tc.status, Requirements: []string{"CLOCK-001"}, Failure: "own failure", RigFault: "frame cut"}
			if strings.Contains(tc.name, "recovered") {
				res.RigFault = "board sim0: crash loop: firmware crashed 3 times in 1.2s"
			}
			judgeCrash(&res, tc.exits, start, tc.loop, "/out/console.log", "/out/firmware.log")
			if res.Status != tc.want {
				t.Fatalf("status %s, want %s (%s)", res.Status, tc.want, res.Failure)
			}
			if tc.want != reports.SpecFailed || tc.status == tc.want && len(tc.exits) == 0 {
				return
			}
			for _, w := range []string{"CLOCK-001", "crashed: exit status 2", "panic: assignment to entry in nil map", "/out/console.log", "/out/firmware.log"} {
				if !strings.Contains(res.Failure, w) {
					t.Errorf("failure %q does not name %q", res.Failure, w)
				}
			}
			if tc.status == reports.SpecFailed && !strings.Contains(res.Failure, "own failure") {
				t.Errorf("the spec's own failure is lost: %q", res.Failure)
			}
		})
	}
}
