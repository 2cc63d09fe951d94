package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hilrun/hilrun/rig/board/esp32"
	"github.com/hilrun/hilrun/rig/inventory"
)

func withLister(t *testing.T, ports ...esp32.PortInfo) {
	t.Helper()
	prev := boardsLister
	boardsLister = esp32.ListerFunc(func() ([]esp32.PortInfo, error) { return ports, nil })
	t.Cleanup(func() { boardsLister = prev })
}

func TestBoardsNone(t *testing.T) {
	withLister(t, esp32.PortInfo{Port: "/dev/ttyS0"}, esp32.PortInfo{Port: "/dev/ttyACM0", IsUSB: true, VID: "2341", PID: "0043"})
	var out bytes.Buffer
	if err := runBoards(&out, filepath.Join(t.TempDir(), "none.yaml")); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "no boards attached") {
		t.Errorf("output:\n%s", out.String())
	}
}

func TestBoardsFakeLister(t *testing.T) {
	dir := t.TempDir()
	inv := filepath.Join(dir, "hilrun.yaml")
	if err := os.WriteFile(inv, []byte("boards:\n  - {id: s3-known, profile: esp32, chip: esp32s3, serial: \"KNOWN1\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	withLister(t,
		esp32.PortInfo{Port: "/dev/ttyUSB0", IsUSB: true, VID: "10c4", PID: "ea60", Serial: "KNOWN1"},
		esp32.PortInfo{Port: "/dev/ttyACM0", IsUSB: true, VID: "303a", PID: "1001", Serial: "84:F7:03:12:34:56"},
		esp32.PortInfo{Port: "/dev/ttyUSB1", IsUSB: true, VID: "1a86", PID: "7523"},
	)
	var out bytes.Buffer
	if err := runBoards(&out, inv); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{
		"3 board(s) attached",
		"/dev/ttyUSB0  10C4:EA60  Silicon Labs CP210x",
		"KNOWN1",
		"s3-known",
		"/dev/ttyACM0  303A:1001  Espressif USB-Serial-JTAG",
		"/dev/ttyUSB1  1A86:7523  WCH CH340",
		"(none)",
		"Inventory entries",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	i := strings.Index(s, "Inventory entries")
	entries := s[strings.Index(s[i:], "\n\n")+i+2:]
	if strings.Contains(entries, "KNOWN1") {
		t.Errorf("a board already in the inventory got an entry:\n%s", entries)
	}
	parsed, err := inventory.Parse([]byte("boards:\n"+entries), "pasted")
	if err != nil {
		t.Fatalf("pasted entries do not parse: %v\n%s", err, entries)
	}
	if len(parsed.Boards) != 2 || parsed.Boards[0].Serial != "84:F7:03:12:34:56" || parsed.Boards[1].Port != "/dev/ttyUSB1" {
		t.Errorf("entries: %+v", parsed.Boards)
	}
}

// TestBoardsCommand runs `hilrun boards` on this machine: it must exit 0
// whether or not boards are attached (none on CI).
func TestBoardsCommand(t *testing.T) {
	t.Parallel()
	out, code := hilrun(t, "boards", "--inventory", filepath.Join(t.TempDir(), "absent.yaml"))
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if !strings.Contains(out, "no boards attached") && !strings.Contains(out, "attached:") {
		t.Errorf("output:\n%s", out)
	}
}

func TestRunBoardSelection(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	inv := filepath.Join(dir, "hilrun.yaml")
	if err := os.WriteFile(inv, []byte(`hub:
  listen: 127.0.0.1:0
  advertise: [hil-bench.lan]
boards:
  - id: ghost
    profile: esp32
    chip: esp32s3
    port: /dev/hilrun-no-such-tty
  - id: sim-1
    profile: sim
  - id: wifi-board
    profile: esp32
    chip: esp32
    port: /dev/hilrun-no-such-tty
    wifi: {ssid_env: HILRUN_TEST_UNSET_SSID}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"esp32 without port", []string{"--board", "esp32"}, 2, []string{"--board esp32 needs --port"}},
		{"unknown id", []string{"--board", "nope", "--inventory", inv}, 2, []string{`no board with id "nope"`, "ghost, sim-1, wifi-board"}},
		{"missing inventory", []string{"--board", "x", "--inventory", filepath.Join(dir, "absent.yaml")}, 2, []string{"no such inventory file"}},
		{"absent board is a rig fault", []string{"--board", "ghost", "--inventory", inv}, exitRigFault, []string{"rig fault", "/dev/hilrun-no-such-tty", "not a verdict on the firmware"}},
		{"wifi env missing", []string{"--board", "wifi-board", "--inventory", inv}, 2, []string{"HILRUN_TEST_UNSET_SSID", "export"}},
		{"port with inventory board", []string{"--board", "ghost", "--inventory", inv, "--port", "/dev/ttyUSB0"}, 2, []string{"--port does not apply"}},
		{"sim from inventory", []string{"--board", "sim-1", "--inventory", inv, "--label-filter", quickSample, "--out", filepath.Join(dir, "sim-1")}, 0, []string{"verdict: PASS"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code := hilrun(t, append([]string{"run"}, tc.args...)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d:\n%s", code, tc.code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}
