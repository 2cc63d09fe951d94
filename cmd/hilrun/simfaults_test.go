package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRunSimMisbehave: the hidden --sim-misbehave flag is validated (exit 2
// with the valid modes), refused for real boards, and a crash-at-boot image
// is a rig fault (exit 3) within seconds whose firmware log is kept in the
// report directory.
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
	dir := t.TempDir()
	start := time.Now()
	out, code = hilrun(t, "run", "--sim-misbehave", "crash-at-boot", "--label-filter", "CONN-005", "--out", dir)
	if code != exitRigFault || !strings.Contains(out, "crash loop: firmware crashed 3 times") {
		t.Fatalf("crash-at-boot: exit %d, want %d with the crash loop:\n%s", code, exitRigFault, out)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("crash-looping board took %s to be a rig fault", took)
	}
	log := filepath.Join(dir, "firmware.log")
	if b, err := os.ReadFile(log); err != nil || !strings.Contains(string(b), "panic: hilrun-sim") {
		t.Fatalf("firmware log %s: %v\n%s", log, err, b)
	}
	if !strings.Contains(out, log) {
		t.Errorf("the error does not point at the kept log %s:\n%s", log, out)
	}
}
