package esp32

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestEsptoolArgv(t *testing.T) {
	merged := FlashJob{Port: "/dev/ttyUSB0", Image: "m.bin"}
	parts := FlashJob{Port: "/dev/ttyUSB0", Parts: &Parts{Bootloader: "bl.bin", PartitionTable: "pt.bin", App: "app.bin"}}
	appOnly := FlashJob{Port: "/dev/ttyUSB0", Parts: &Parts{App: "app.bin"}}
	head := func(chip, baud string, legacy bool) []string {
		if legacy {
			return []string{"--chip", chip, "--port", "/dev/ttyUSB0", "--baud", baud, "--before", "default_reset", "--after", "no_reset", "write_flash"}
		}
		return []string{"--chip", chip, "--port", "/dev/ttyUSB0", "--baud", baud, "--before", "default-reset", "--after", "no-reset", "write-flash"}
	}
	for _, tc := range []struct {
		name   string
		e      *Esptool
		job    FlashJob
		chip   string
		legacy bool
		tail   []string
	}{
		{"esp32 merged", &Esptool{}, merged, "esp32", false, []string{"0x0", "m.bin"}},
		{"esp32 parts", &Esptool{}, parts, "esp32", false, []string{"0x1000", "bl.bin", "0x8000", "pt.bin", "0x10000", "app.bin"}},
		{"esp32s2 parts", &Esptool{}, parts, "esp32s2", false, []string{"0x1000", "bl.bin", "0x8000", "pt.bin", "0x10000", "app.bin"}},
		{"esp32s3 parts", &Esptool{}, parts, "esp32s3", false, []string{"0x0", "bl.bin", "0x8000", "pt.bin", "0x10000", "app.bin"}},
		{"esp32c3 parts", &Esptool{}, parts, "esp32c3", false, []string{"0x0", "bl.bin", "0x8000", "pt.bin", "0x10000", "app.bin"}},
		{"esp32c6 parts", &Esptool{}, parts, "esp32c6", false, []string{"0x0", "bl.bin", "0x8000", "pt.bin", "0x10000", "app.bin"}},
		{"esp32h2 parts", &Esptool{}, parts, "esp32h2", false, []string{"0x0", "bl.bin", "0x8000", "pt.bin", "0x10000", "app.bin"}},
		{"esp32c5 parts", &Esptool{}, parts, "esp32c5", false, []string{"0x2000", "bl.bin", "0x8000", "pt.bin", "0x10000", "app.bin"}},
		{"esp32p4 parts", &Esptool{}, parts, "esp32p4", false, []string{"0x2000", "bl.bin", "0x8000", "pt.bin", "0x10000", "app.bin"}},
		{"app only", &Esptool{}, appOnly, "esp32s3", false, []string{"0x10000", "app.bin"}},
		{"esp32s3 merged legacy", &Esptool{}, merged, "esp32s3", true, []string{"0x0", "m.bin"}},
		{"esp32 parts legacy", &Esptool{}, parts, "esp32", true, []string{"0x1000", "bl.bin", "0x8000", "pt.bin", "0x10000", "app.bin"}},
		{"baud and args", &Esptool{Baud: 921600, Args: []string{"--flash-mode", "dio"}}, merged, "esp32c3", false, []string{"--flash-mode", "dio", "0x0", "m.bin"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			job := tc.job
			job.Chip = tc.chip
			got, err := tc.e.Argv(job, tc.legacy)
			if err != nil {
				t.Fatal(err)
			}
			baud := "460800"
			if tc.e.Baud != 0 {
				baud = "921600"
			}
			want := append(head(tc.chip, baud, tc.legacy), tc.tail...)
			if !slices.Equal(got, want) {
				t.Errorf("argv\n got %q\nwant %q", got, want)
			}
		})
	}
	for _, tc := range []struct {
		name string
		job  FlashJob
		err  string
	}{
		{"no chip", FlashJob{Port: "p", Image: "m.bin"}, "needs the chip"},
		{"nothing", FlashJob{Port: "p", Chip: "esp32"}, "nothing to flash"},
		{"both", FlashJob{Port: "p", Chip: "esp32", Image: "m", Parts: &Parts{App: "a"}}, "either"},
		{"no app", FlashJob{Port: "p", Chip: "esp32", Parts: &Parts{Bootloader: "b"}}, "at least the app"},
		{"unknown chip parts", FlashJob{Port: "p", Chip: "esp8266", Parts: &Parts{Bootloader: "b", App: "a"}}, "unknown chip"},
	} {
		if _, err := (&Esptool{}).Argv(tc.job, false); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.err)
		}
	}
}

func TestLegacyRejection(t *testing.T) {
	for _, tc := range []struct {
		out  string
		want bool
	}{
		{"esptool.py: error: argument operation: invalid choice: 'write-flash' (choose from 'load_ram', 'write_flash')", true},
		{"esptool.py: error: argument --before: invalid choice: 'default-reset' (choose from 'default_reset', 'no_reset')", true},
		{"esptool.py: error: argument --after/-a: invalid choice: 'no-reset' (choose from 'hard_reset')", true},
		{"Error: No such command 'write-flash'.", true},
		{"esptool.py: error: unrecognized arguments: --flash-mode", true},
		{"A fatal error occurred: Failed to connect to ESP32: No serial data received.", false},
		{"invalid choice: 'esp8266'", false},
		{"", false},
	} {
		if got := LegacyRejection([]byte(tc.out)); got != tc.want {
			t.Errorf("LegacyRejection(%q) = %v", tc.out, got)
		}
	}
}

func TestEsptoolRunsFakeV5(t *testing.T) {
	dir, log := fakeTool(t, "esptool", "esptool")
	t.Setenv("FAKE_ESPTOOL_MODE", "v5")
	var out bytes.Buffer
	e := &Esptool{Look: lookIn(dir)}
	job := FlashJob{Port: "/dev/ttyUSB9", Chip: "esp32s3", Image: "/fw/m.bin", Out: &out}
	if err := e.Flash(context.Background(), job); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	want, _ := e.Argv(job, false)
	if c := calls(t, log); len(c) != 1 || !slices.Equal(c[0], want) {
		t.Fatalf("calls %q, want one call %q", c, want)
	}
	for _, s := range []string{"[esptool] Writing at 0x00000000", "[esptool] Writing at 0x00010000", "[esptool] Hash of data verified.", "[hilrun] running "} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("output lacks %q:\n%s", s, out.String())
		}
	}
}

func TestEsptoolFallsBackToLegacyNames(t *testing.T) {
	dir, log := fakeTool(t, "esptool", "esptool.py") // v4 installs esptool.py only
	t.Setenv("FAKE_ESPTOOL_MODE", "v4")
	var out bytes.Buffer
	e := &Esptool{Look: lookIn(dir)}
	job := FlashJob{Port: "/dev/ttyUSB9", Chip: "esp32", Parts: &Parts{Bootloader: "bl", PartitionTable: "pt", App: "app"}, Out: &out}
	if err := e.Flash(context.Background(), job); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	v5, _ := e.Argv(job, false)
	v4, _ := e.Argv(job, true)
	c := calls(t, log)
	if len(c) != 2 || !slices.Equal(c[0], v5) || !slices.Equal(c[1], v4) {
		t.Fatalf("calls %q, want v5 then v4", c)
	}
	if !strings.Contains(out.String(), "retrying with write_flash") {
		t.Errorf("output does not say it fell back:\n%s", out.String())
	}
	// Remembered: the next flash goes straight to the old names.
	if err := e.Flash(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	if c := calls(t, log); len(c) != 3 || !slices.Equal(c[2], v4) {
		t.Fatalf("third call %q, want legacy", c[len(c)-1])
	}
}

func TestEsptoolFailureIsNotRetried(t *testing.T) {
	dir, log := fakeTool(t, "esptool", "esptool")
	t.Setenv("FAKE_ESPTOOL_MODE", "fail")
	err := (&Esptool{Look: lookIn(dir)}).Flash(context.Background(), FlashJob{Port: "p", Chip: "esp32", Image: "m", Out: &bytes.Buffer{}})
	if err == nil || !strings.Contains(err.Error(), "Failed to connect") || !strings.Contains(err.Error(), "esptool failed") {
		t.Fatalf("err = %v", err)
	}
	if c := calls(t, log); len(c) != 1 {
		t.Errorf("%d calls, want 1 (a connection failure is not a naming problem)", len(c))
	}
}

func TestMissingTools(t *testing.T) {
	empty := lookIn(t.TempDir())
	job := FlashJob{Port: "p", Chip: "esp32", Image: "m", Out: &bytes.Buffer{}}
	for _, tc := range []struct {
		name string
		f    Flasher
		want string
	}{
		{"esptool", &Esptool{Look: empty}, "esptool not found: pip install esptool, or set flasher.command in hilrun.yaml"},
		{"esptool override", &Esptool{Command: []string{"my-esptool"}, Look: empty}, "my-esptool not found: install it, or fix flasher.command in hilrun.yaml"},
		{"nanoff", &Nanoff{Look: empty}, "nanoff not found: dotnet tool install -g nanoff, or set flasher.command in hilrun.yaml"},
		{"command", &Command{Template: []string{"vendor-flash", "{port}"}, Look: empty}, "vendor-flash not found: install it, or fix the command template in hilrun.yaml"},
	} {
		err := tc.f.Flash(context.Background(), job)
		var nf *ToolNotFoundError
		if !errors.As(err, &nf) || err.Error() != tc.want {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestNanoff(t *testing.T) {
	for _, tc := range []struct {
		n    Nanoff
		want []string
	}{
		{Nanoff{Target: "ESP32_PSRAM_REV3"}, []string{"--target", "ESP32_PSRAM_REV3", "--serialport", "/dev/ttyUSB0", "--deploy", "--image", "app.bin"}},
		{Nanoff{}, []string{"--platform", "esp32", "--serialport", "/dev/ttyUSB0", "--deploy", "--image", "app.bin"}},
		{Nanoff{Target: "ESP32_C3", Baud: 1500000, Args: []string{"--update"}}, []string{"--target", "ESP32_C3", "--serialport", "/dev/ttyUSB0", "--baud", "1500000", "--deploy", "--image", "app.bin", "--update"}},
	} {
		got, err := tc.n.Argv(FlashJob{Port: "/dev/ttyUSB0", Image: "app.bin"})
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("argv %q, %v; want %q", got, err, tc.want)
		}
	}
	if _, err := (&Nanoff{}).Argv(FlashJob{Port: "p"}); err == nil {
		t.Error("nanoff without image: no error")
	}
	dir, log := fakeTool(t, "nanoff", "nanoff")
	var out bytes.Buffer
	n := &Nanoff{Target: "ESP32_PSRAM_REV3", Look: lookIn(dir)}
	if err := n.Flash(context.Background(), FlashJob{Port: "/dev/ttyUSB0", Image: "app.bin", Out: &out}); err != nil {
		t.Fatal(err)
	}
	if c := calls(t, log); len(c) != 1 || !slices.Equal(c[0], []string{"--target", "ESP32_PSRAM_REV3", "--serialport", "/dev/ttyUSB0", "--deploy", "--image", "app.bin"}) {
		t.Errorf("calls %q", c)
	}
	if !strings.Contains(out.String(), "[nanoff] Deploying managed application...") {
		t.Errorf("output:\n%s", out.String())
	}
}

func TestExpand(t *testing.T) {
	job := FlashJob{ID: "b1", Port: "/dev/ttyACM0", Serial: "S1", Chip: "esp32c3", Baud: 115200, Image: "fw.hex"}
	got, err := Expand([]string{"flash", "--port={port}", "{image}", "-b", "{baud}", "{serial}/{chip}/{id}", "literal{"}, job.Vars())
	want := []string{"flash", "--port=/dev/ttyACM0", "fw.hex", "-b", "115200", "S1/esp32c3/b1", "literal{"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("Expand = %q, %v", got, err)
	}
	if _, err := Expand([]string{"x", "{prot}"}, job.Vars()); err == nil || !strings.Contains(err.Error(), "unknown placeholder {prot}") {
		t.Errorf("unknown placeholder: %v", err)
	}
	if _, err := Expand([]string{"x", "{bootloader}"}, job.Vars()); err == nil || !strings.Contains(err.Error(), "{bootloader}") {
		t.Errorf("placeholder without value: %v", err)
	}
	pj := FlashJob{Parts: &Parts{Bootloader: "b", PartitionTable: "p", App: "a"}}
	if got, err := Expand([]string{"{bootloader}", "{partition_table}", "{app}", "{image}"}, pj.Vars()); err != nil || !slices.Equal(got, []string{"b", "p", "a", "a"}) {
		t.Errorf("parts = %q, %v", got, err)
	}
	// One template argument stays one argument: no shell splitting.
	sp := FlashJob{Image: "my fw.bin"}
	if got, _ := Expand([]string{"{image}"}, sp.Vars()); len(got) != 1 || got[0] != "my fw.bin" {
		t.Errorf("split: %q", got)
	}
}

func TestCommandFlasherRunsTemplate(t *testing.T) {
	dir, log := fakeTool(t, "nanoff", "vendor-flash") // any recording tool will do
	var out bytes.Buffer
	c := &Command{Template: []string{"vendor-flash", "--device", "{port}", "--speed", "{baud}", "{image}"}, Baud: 921600, Look: lookIn(dir)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Flash(ctx, FlashJob{Port: "/dev/ttyACM3", Baud: 115200, Image: "out/fw.hex", Out: &out}); err != nil {
		t.Fatal(err)
	}
	if got := calls(t, log); len(got) != 1 || !slices.Equal(got[0], []string{"--device", "/dev/ttyACM3", "--speed", "921600", "out/fw.hex"}) {
		t.Errorf("calls %q", got)
	}
	if !strings.Contains(out.String(), "[vendor-flash] ") {
		t.Errorf("output not labelled with the tool:\n%s", out.String())
	}
}

func FuzzLegacyRejection(f *testing.F) {
	f.Add([]byte("esptool.py: error: argument operation: invalid choice: 'write-flash'"))
	f.Add([]byte("Writing at 0x00010000 [====]\r50%\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = LegacyRejection(b)
		// Splitting tool output must consume everything without looping.
		for rest := b; len(rest) > 0; {
			adv, _, err := scanCRLF(rest, true)
			if err != nil || adv <= 0 || adv > len(rest) {
				t.Fatalf("scanCRLF advanced %d of %d (%v)", adv, len(rest), err)
			}
			rest = rest[adv:]
		}
	})
}
