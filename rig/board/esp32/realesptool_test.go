//go:build unix

package esp32

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hilrun/hilrun/rig/inventory"
)

// esptoolVersion is the esptool the command lines are checked against
// (PyPI). The venv is built once and kept under the user cache directory.
const esptoolVersion = "5.6.0"

// realEsptool returns the python of a venv holding esptool esptoolVersion,
// creating it (python3 -m venv; pip install) on first use. It skips when
// python3, its venv module or pip is missing, and fails on anything else.
func realEsptool(t *testing.T) string {
	t.Helper()
	py3, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not on PATH: the real esptool parser cannot be checked (install python3 with venv and pip)")
	}
	if out, err := exec.Command(py3, "-c", "import venv, ensurepip").CombinedOutput(); err != nil {
		t.Skipf("python3 has no venv/ensurepip module (apt install python3-venv): %v\n%s", err, out)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "hilrun", "esptool-"+esptoolVersion)
	py := filepath.Join(dir, "bin", "python")
	marker := filepath.Join(dir, ".hilrun-ok")
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	// One builder at a time (go test runs packages in parallel processes).
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck
	if _, err := os.Stat(marker); err == nil {
		return py
	}
	t.Logf("creating %s (python3 -m venv; pip install esptool==%s): once per machine", dir, esptoolVersion)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	run := func(limit time.Duration, name string, args ...string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		defer cancel()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Env = append(os.Environ(), "PIP_DISABLE_PIP_VERSION_CHECK=1")
		return cmd.CombinedOutput()
	}
	if out, err := run(2*time.Minute, py3, "-m", "venv", dir); err != nil {
		os.RemoveAll(dir)
		t.Skipf("python3 -m venv failed (venv unavailable): %v\n%s", err, out)
	}
	if out, err := run(time.Minute, py, "-m", "pip", "--version"); err != nil {
		os.RemoveAll(dir)
		t.Skipf("pip unavailable in the venv: %v\n%s", err, out)
	}
	if out, err := run(5*time.Minute, py, "-m", "pip", "install", "-q", "esptool=="+esptoolVersion); err != nil {
		os.RemoveAll(dir)
		t.Fatalf("pip install esptool==%s: %v\n%s", esptoolVersion, err, out)
	}
	out, err := run(time.Minute, py, "-c", "import esptool; print(esptool.__version__)")
	if got := strings.TrimSpace(string(out)); err != nil || got != esptoolVersion {
		os.RemoveAll(dir)
		t.Fatalf("esptool in %s: version %q, want %s (%v)", dir, got, esptoolVersion, err)
	}
	if err := os.WriteFile(marker, []byte(esptoolVersion+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return py
}

// parsed is testdata/esptool-parse.py's verdict on one command line.
type parsed struct {
	Argv    []string       `json:"argv"`
	OK      bool           `json:"ok"`
	Command string         `json:"command"`
	Params  map[string]any `json:"params"`
	Error   string         `json:"error"`
	Log     string         `json:"log"`
}

// parseWithEsptool runs esptool's own click parser (group and command
// contexts, every parameter type converted) on each argv, in dir, without
// invoking any command: no port is opened.
func parseWithEsptool(t *testing.T, py, dir string, argvs [][]string) []parsed {
	t.Helper()
	script, err := filepath.Abs("testdata/esptool-parse.py")
	if err != nil {
		t.Fatal(err)
	}
	in, err := json.Marshal(argvs)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, script)
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("esptool-parse.py: %v\n%s", err, stderr.String())
	}
	var res []parsed
	if err := json.Unmarshal(out, &res); err != nil || len(res) != len(argvs) {
		t.Fatalf("esptool-parse.py output (%v, %d results for %d lines): %s", err, len(res), len(argvs), out)
	}
	return res
}

// flashFiles writes image files of plausible sizes (esptool opens them and
// checks the regions for overlap while parsing). The 20 KiB bootloader ends
// below the partition table at 0x8000 from every bootloader offset (0x2000
// on esp32c5/esp32p4 leaves 24 KiB, ESP-IDF's limit there).
func flashFiles(t *testing.T) (dir string, merged string, parts Parts) {
	dir = t.TempDir()
	write := func(name string, size int) string {
		p := filepath.Join(dir, name)
		b := make([]byte, size)
		b[0] = 0xe9 // ESP image magic; not Intel HEX
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	merged = write("hilfw-merged.bin", 1<<20)
	parts = Parts{Bootloader: write("bootloader.bin", 20*1024), PartitionTable: write("partition-table.bin", 3072), App: write("hilfw.bin", 900*1024)}
	return dir, merged, parts
}

// chipsWithOffsets are the chips BootloaderOffset knows.
var chipsWithOffsets = []string{"esp32", "esp32s3", "esp32c3", "esp32s2", "esp32c2", "esp32c5", "esp32c6", "esp32c61", "esp32h2", "esp32p4"}

// TestRealEsptoolParsesProfileCommandLines: every write-flash line the
// profile builds (Esptool.Argv, through FromInventory as a board gets it,
// v5 names and the v4 fallback, merged image and parts, every chip with a
// bootloader offset) is accepted by esptool's own parser, which reads back
// the chip, port, baud, reset modes and address/file pairs the profile
// meant; the v4 names only through v5's deprecated aliases.
func TestRealEsptoolParsesProfileCommandLines(t *testing.T) {
	py := realEsptool(t)
	dir, merged, parts := flashFiles(t)
	port := filepath.Join(dir, "ttyNONE") // never opened: nothing is invoked

	fromInv := func(chip string, baud int) *Esptool {
		b, err := FromInventory(inventory.Board{ID: "b", Profile: inventory.ProfileESP32, Chip: chip, Port: port,
			Flasher: inventory.Flasher{Baud: baud}}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		e, ok := b.cfg.Flasher.(*Esptool)
		if !ok {
			t.Fatalf("FromInventory flasher %T, want *Esptool", b.cfg.Flasher)
		}
		return e
	}
	type want struct {
		chip  string
		baud  int
		pairs [][2]any // address, file
	}
	var argvs [][]string
	var wants []want
	var legacy []bool
	for _, chip := range chipsWithOffsets {
		bootOff, err := BootloaderOffset(chip)
		if err != nil {
			t.Fatal(err)
		}
		layouts := []struct {
			job   FlashJob
			pairs [][2]any
		}{
			{FlashJob{Image: merged}, [][2]any{{0, merged}}},
			{FlashJob{Parts: &parts}, [][2]any{{int(bootOff), parts.Bootloader}, {PartitionTableOffset, parts.PartitionTable}, {AppOffset, parts.App}}},
			{FlashJob{Parts: &Parts{App: parts.App}}, [][2]any{{AppOffset, parts.App}}},
		}
		for _, fl := range []struct {
			e    *Esptool
			baud int
		}{{fromInv(chip, 0), 460800}, {fromInv(chip, 921600), 921600}} {
			for _, lay := range layouts {
				for _, leg := range []bool{false, true} {
					job := lay.job
					job.Chip, job.Port, job.ID = chip, port, "b"
					argv, err := fl.e.Argv(job, leg)
					if err != nil {
						t.Fatalf("%s: Argv: %v", chip, err)
					}
					argvs = append(argvs, argv)
					wants = append(wants, want{chip, fl.baud, lay.pairs})
					legacy = append(legacy, leg)
				}
			}
		}
	}
	// Controls: the harness must refuse what esptool refuses.
	bad := [][]string{
		{"--chip", "esp32", "--port", port, "write-flashx", "0x0", merged},
		{"--chip", "esp32", "--port", port, "--before", "default-resetx", "write-flash", "0x0", merged},
		{"--chip", "esp32x", "--port", port, "write-flash", "0x0", merged},
		{"--chip", "esp32", "--port", port, "write-flash", "0x0", merged, "0x1000", parts.App}, // overlap
		{"--chip", "esp32", "--port", port, "write-flash", "0x0", filepath.Join(dir, "missing.bin")},
	}
	res := parseWithEsptool(t, py, dir, append(append([][]string(nil), argvs...), bad...))
	for i, r := range res[:len(argvs)] {
		w := wants[i]
		line := "esptool " + strings.Join(r.Argv, " ")
		if !r.OK {
			t.Errorf("REFUSED by esptool %s: %s\n  %s\n  %s", esptoolVersion, line, r.Error, r.Log)
			continue
		}
		t.Logf("accepted (-> %s): %s", r.Command, line)
		p := r.Params
		check := func(k string, v any) {
			if fmt.Sprint(p[k]) != fmt.Sprint(v) {
				t.Errorf("%s: esptool read %s=%v, want %v", line, k, p[k], v)
			}
		}
		if r.Command != "write-flash" {
			t.Errorf("%s: esptool resolved command %q, want write-flash", line, r.Command)
		}
		check("chip", w.chip)
		check("port", port)
		check("baud", w.baud)
		check("before", "default-reset")
		check("after", "no-reset")
		check("addr_filename", pairsOf(w.pairs))
		deprecated := strings.Contains(r.Log, "Deprecated")
		if legacy[i] {
			for _, s := range []string{"Command 'write_flash' is deprecated", "Choice 'default_reset'", "Choice 'no_reset'"} {
				if !strings.Contains(r.Log, s) {
					t.Errorf("%s: v4 name accepted without esptool's deprecation warning %q; log:\n%s", line, s, r.Log)
				}
			}
		} else if deprecated {
			t.Errorf("%s: v5 line uses deprecated names:\n%s", line, r.Log)
		}
	}
	for _, r := range res[len(argvs):] {
		if r.OK {
			t.Errorf("control accepted, the harness proves nothing: esptool %s", strings.Join(r.Argv, " "))
		} else {
			t.Logf("control refused as expected: %s", r.Error)
		}
	}
	t.Logf("%d profile command lines checked with esptool %s's parser", len(argvs), esptoolVersion)
}

func pairsOf(ps [][2]any) []any {
	out := make([]any, len(ps))
	for i, p := range ps {
		out[i] = []any{p[0], p[1]}
	}
	return out
}

// TestRealEsptoolFlashReachesThePort runs Esptool.Flash with the real
// esptool (flasher.command [python, -m, esptool]) on a port that does not
// exist: the v5 line and the v4 fallback both get through the whole CLI to
// opening the port (a connection error, not a usage error), and the
// profile's v4-rejection detector does not fire on esptool v5's output.
func TestRealEsptoolFlashReachesThePort(t *testing.T) {
	py := realEsptool(t)
	dir, merged, parts := flashFiles(t)
	port := filepath.Join(dir, "ttyNONE")
	usage := regexp.MustCompile(`Usage:|No such (option|command)|Invalid value|Got unexpected|Missing argument`)
	for _, tc := range []struct {
		name   string
		legacy bool
		job    FlashJob
	}{
		{"v5 merged esp32s3", false, FlashJob{Chip: "esp32s3", Image: merged}},
		{"v5 parts esp32", false, FlashJob{Chip: "esp32", Parts: &parts}},
		{"v4 names parts esp32c3", true, FlashJob{Chip: "esp32c3", Parts: &parts}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			job := tc.job
			job.Port, job.ID, job.Out = port, "b", &out
			e := &Esptool{Command: []string{py, "-m", "esptool"}, legacy: tc.legacy}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := e.Flash(ctx, job)
			if err == nil {
				t.Fatalf("flash to a missing port succeeded:\n%s", out.String())
			}
			o := out.String()
			if usage.MatchString(o) || LegacyRejection(out.Bytes()) || strings.Contains(o, "retrying with write_flash") {
				t.Fatalf("esptool refused the command line (usage error), want a connection error:\n%s", o)
			}
			if !strings.Contains(o, "Could not open "+port) {
				t.Fatalf("esptool did not get as far as opening %s:\n%s", port, o)
			}
			t.Logf("connection error as expected: %s", firstLine(err))
		})
	}
}

// TestRealEsptoolParsesFirmwareWorkflowMerge: the merge command of
// .github/workflows/firmware.yml, with the flash_args file ESP-IDF writes
// (v4 option spellings), is accepted by esptool v5's parser for each chip
// the workflow builds, and merges the regions at the expected offsets.
func TestRealEsptoolParsesFirmwareWorkflowMerge(t *testing.T) {
	py := realEsptool(t)
	wf, err := os.ReadFile("../../../.github/workflows/firmware.yml")
	if err != nil {
		t.Fatal(err)
	}
	var merge []string
	// The command is one shell line: "... && esptool.py --chip ... @flash_args".
	for _, l := range strings.Split(string(wf), "\n") {
		if !strings.Contains(l, "merge") {
			continue
		}
		f := strings.Fields(l)
		for i, w := range f {
			if strings.HasPrefix(w, "esptool") {
				merge = nil
				for _, a := range f[i+1:] {
					if a == "&&" || a == ";" {
						break
					}
					merge = append(merge, a)
				}
				break
			}
		}
	}
	if merge == nil {
		t.Fatal("no esptool merge line in firmware.yml")
	}
	for _, chip := range []string{"esp32", "esp32s3", "esp32c3"} {
		dir := t.TempDir()
		bootOff, _ := BootloaderOffset(chip)
		freq := "80m"
		if chip == "esp32" {
			freq = "40m"
		}
		files := map[string]int{"bootloader/bootloader.bin": 20 * 1024, "partition_table/partition-table.bin": 3072, "hilfw.bin": 900 * 1024}
		for name, size := range files {
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			b := make([]byte, size)
			b[0] = 0xe9 // image magic (merge-bin patches the bootloader's flash parameters)
			if name == "partition_table/partition-table.bin" {
				b[0] = 0xaa
			}
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		flashArgs := fmt.Sprintf("--flash_mode dio --flash_freq %s --flash_size 4MB\n%s bootloader/bootloader.bin\n0x10000 hilfw.bin\n0x8000 partition_table/partition-table.bin\n", freq, hex(bootOff))
		if err := os.WriteFile(filepath.Join(dir, "flash_args"), []byte(flashArgs), 0o644); err != nil {
			t.Fatal(err)
		}
		argv := make([]string, len(merge))
		for i, a := range merge {
			a = strings.Trim(a, `"'`)
			argv[i] = strings.NewReplacer("${IDF_TARGET}", chip, "$IDF_TARGET", chip).Replace(a)
		}
		r := parseWithEsptool(t, py, dir, [][]string{argv})[0]
		line := "esptool " + strings.Join(argv, " ")
		if !r.OK {
			t.Errorf("REFUSED by esptool %s: %s\n  %s", esptoolVersion, line, r.Error)
			continue
		}
		if r.Command != "merge-bin" || fmt.Sprint(r.Params["chip"]) != chip || fmt.Sprint(r.Params["output"]) != "hilfw-"+chip+".bin" ||
			fmt.Sprint(r.Params["flash_size"]) != "4MB" || fmt.Sprint(r.Params["flash_freq"]) != freq {
			t.Errorf("%s: esptool read %s %v", line, r.Command, r.Params)
		}
		got := fmt.Sprint(r.Params["addr_filename"])
		for _, w := range []string{strconv.Itoa(int(bootOff)) + " bootloader/bootloader.bin", "32768 partition_table/partition-table.bin", "65536 hilfw.bin"} {
			if !strings.Contains(got, w) {
				t.Errorf("%s: regions %s lack %s", line, got, w)
			}
		}
		t.Logf("accepted (-> %s): %s with flash_args %q", r.Command, line, flashArgs)

		// And run it (merging files needs no board): the regions land at
		// the chip's offsets in one image written at 0x0.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, py, append([]string{"-m", "esptool"}, argv...)...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("%s: %v\n%s", line, err, out)
		}
		img, err := os.ReadFile(filepath.Join(dir, "hilfw-"+chip+".bin"))
		if err != nil {
			t.Fatal(err)
		}
		if len(img) != AppOffset+900*1024 || img[bootOff] != 0xe9 || img[PartitionTableOffset] != 0xaa || img[AppOffset] != 0xe9 {
			t.Errorf("%s: merged image of %d bytes does not hold bootloader@%s, partition table@0x8000, app@0x10000", line, len(img), hex(bootOff))
		}
	}
}
