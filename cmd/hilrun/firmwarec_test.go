package main

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFirmwareCMissingPackages: with the header search pointed at an empty
// directory, `hilrun run --firmware c` exits 2 naming the Debian packages
// of every missing header, and runs nothing.
func TestFirmwareCMissingPackages(t *testing.T) {
	t.Setenv(fwCIncludeEnv, t.TempDir())
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	out, code := hilrun(t, "run", "--firmware", "c", "--out", t.TempDir())
	if code != 2 {
		t.Fatalf("exit %d, want 2:\n%s", code, out)
	}
	for _, p := range []string{"libpaho-mqtt-dev", "libcjson-dev", "libmbedtls-dev", "libssl-dev", "apt-get install -y"} {
		if !strings.Contains(out, p) {
			t.Errorf("output does not name %s:\n%s", p, out)
		}
	}
	if strings.Contains(out, "flashing") || strings.Contains(out, "building") {
		t.Errorf("something ran:\n%s", out)
	}
}

func TestFirmwareFlagRejects(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"run", "--firmware", "rust"},
		{"run", "--firmware", "c", "--image", "/bin/true"},
		{"run", "--firmware", "c", "--board", "serial", "--port", "/dev/null"},
	} {
		out, code := hilrun(t, append(args, "--out", t.TempDir())...)
		if code != 2 || !strings.Contains(out, "--firmware") {
			t.Errorf("%v: exit %d, want 2 about --firmware:\n%s", args, code, out)
		}
	}
}

// TestFirmwareCBuilds builds the host firmware into a fresh cache, finds it
// there the second time, and rebuilds when the sources change (a copy of
// the tree with one edit). Skipped without cmake/clang/the -dev packages.
func TestFirmwareCBuilds(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the C firmware")
	}
	if m := fwCMissing(); len(m) > 0 {
		t.Skipf("missing %v", m)
	}
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	exe, err := buildCFirmware(ctx, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(exe); err != nil || st.Mode()&0o111 == 0 {
		t.Fatalf("%s: not an executable (%v)", exe, err)
	}
	t0 := time.Now()
	again, err := buildCFirmware(ctx, io.Discard)
	if err != nil || again != exe || time.Since(t0) > 5*time.Second {
		t.Fatalf("second resolution: %q, %v after %v; want the cached %q", again, err, time.Since(t0), exe)
	}
	root, err := fwCSource()
	if err != nil {
		t.Fatal(err)
	}
	sum, err := fwCHash(root)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(filepath.Dir(exe)) != "fw-c-"+sum {
		t.Errorf("%s is not in fw-c-%s", exe, sum)
	}
	// An edited tree hashes differently (the build itself is not repeated).
	cp := t.TempDir()
	if out, err := exec.Command("cp", "-r", filepath.Join(root, "devicefw"), filepath.Join(root, "certs"), filepath.Join(root, "go.mod"), cp).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	os.RemoveAll(filepath.Join(cp, "devicefw", "esp32", "build"))
	same, err := fwCHash(cp)
	if err != nil || same != sum {
		t.Fatalf("copy hashes %s (%v), want %s", same, err, sum)
	}
	f := filepath.Join(cp, "devicefw", "esp32", "components", "hil_iothub", "hil_trust.c")
	b, _ := os.ReadFile(f)
	if err := os.WriteFile(f, append(b, "\n/* edit */\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	if edited, _ := fwCHash(cp); edited == sum {
		t.Errorf("an edit does not change the hash")
	}
}
