package main

import (
	"strings"
	"testing"
)

// TestRunSimMisbehave: the hidden --sim-misbehave flag is validated (exit 2
// with the valid modes) and refused for real boards.
func TestRunSimMisbehave(t *testing.T) {
	t.Parallel()
	out, code := hilrun(t, "run", "--sim-misbehave", "bad-crc:0", "--out", t.TempDir())
	if code != 2 || !strings.Contains(out, "silent-after-hello") || !strings.Contains(out, "hang-after:DURATION") {
		t.Fatalf("bad mode: exit %d, want 2 listing the valid modes:\n%s", code, out)
	}
	out, code = hilrun(t, "run", "--board", "serial", "--port", "/dev/null", "--sim-misbehave", "crash-at-boot", "--out", t.TempDir())
	if code != 2 || !strings.Contains(out, "only with the virtual board") {
		t.Fatalf("real board: exit %d, want 2:\n%s", code, out)
	}
	// That a crash-at-boot image is a rig fault within seconds, with its
	// firmware log kept and named, is TestRigFaultCrashAtBoot's run.
}
