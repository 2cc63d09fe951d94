package inventory

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const good = `
hub:
  listen: 0.0.0.0:8883
  advertise: [hil-host.lan, 192.168.1.20]
boards:
  - id: esp32-a
    profile: esp32
    chip: esp32s3
    serial: "5A7B0123"
    image: fw/merged.bin
    advertise: [hil-host.local]
    wifi: {ssid_env: HIL_WIFI_SSID, password_env: HIL_WIFI_PASSWORD}
    labels: [esp32s3, wifi]
  - id: nf-1
    profile: esp32
    chip: esp32
    port: /dev/ttyUSB3
    flasher: {tool: nanoff, target: ESP32_PSRAM_REV3}
    image: /abs/nf.bin
  - id: other
    profile: generic
    port: /dev/ttyACM0
    baud: 921600
    flasher: {command: [my-flash, --port, "{port}", "{image}"]}
    reset: {command: [my-reset, "{serial}"]}
    image: app.hex
  - id: sim-1
    profile: sim
    labels: [wifi]
`

func TestLoadGood(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "hilrun.yaml")
	if err := os.WriteFile(p, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	inv, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Boards) != 4 {
		t.Fatalf("boards = %d", len(inv.Boards))
	}
	a, err := inv.Find("esp32-a")
	if err != nil {
		t.Fatal(err)
	}
	if a.Image != filepath.Join(dir, "fw/merged.bin") || a.Baud != DefaultBaud || a.Line() != 6 {
		t.Errorf("esp32-a = %+v line %d", a, a.Line())
	}
	nf, _ := inv.Find("nf-1")
	if nf.Image != "/abs/nf.bin" {
		t.Errorf("absolute image rewritten: %q", nf.Image)
	}
	g, _ := inv.Find("other")
	if g.Baud != 921600 {
		t.Errorf("baud %d", g.Baud)
	}
	if _, err := inv.Find("nope"); err == nil || !strings.Contains(err.Error(), "esp32-a, nf-1, other, sim-1") {
		t.Errorf("Find(nope) = %v", err)
	}
	if got := inv.Select("wifi"); len(got) != 2 || got[0].ID != "esp32-a" || got[1].ID != "sim-1" {
		t.Errorf("Select(wifi) = %v", got)
	}
	if got := inv.AdvertiseNames(); strings.Join(got, ",") != "hil-host.lan,192.168.1.20,hil-host.local" {
		t.Errorf("AdvertiseNames = %v", got)
	}
	t.Setenv("HIL_WIFI_SSID", "bench")
	t.Setenv("HIL_WIFI_PASSWORD", "pw")
	ssid, pw, ok, err := a.WiFiCredentials()
	if err != nil || !ok || ssid != "bench" || pw != "pw" {
		t.Errorf("WiFiCredentials = %q %q %v %v", ssid, pw, ok, err)
	}
}

func TestWiFiEnvMissing(t *testing.T) {
	inv, err := Parse([]byte("boards: [{id: a, profile: sim, wifi: {ssid_env: HILRUN_TEST_SURELY_UNSET}}]"), "x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, _, _, err = inv.Boards[0].WiFiCredentials()
	if err == nil || !strings.Contains(err.Error(), "HILRUN_TEST_SURELY_UNSET") || !strings.Contains(err.Error(), "export") {
		t.Errorf("err = %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string // substrings of the error
	}{
		{"empty", "", []string{"x.yaml", "empty inventory"}},
		{"no boards", "hub: {listen: 0.0.0.0:8883}", []string{"no boards"}},
		{"not yaml", "boards: [", []string{"x.yaml"}},
		{"unknown key", "boards: [{id: a, profile: sim, colour: red}]", []string{"x.yaml", "colour", "docs/inventory.md"}},
		{"missing id", "boards: [{profile: sim}]", []string{"x.yaml:1", "missing id"}},
		{"bad id", "boards: [{id: 'a b', profile: sim}]", []string{"id \"a b\""}},
		{"dup id", "boards:\n - {id: a, profile: sim}\n - {id: a, profile: sim}", []string{"x.yaml:3: board \"a\"", "line 2"}},
		{"missing profile", "boards: [{id: a}]", []string{"missing profile", "sim, esp32, generic, serial"}},
		{"unknown profile", "boards: [{id: a, profile: esp23}]", []string{"profile \"esp23\" unknown"}},
		{"esp32 no port", "boards: [{id: a, profile: esp32, chip: esp32}]", []string{"serial (USB serial number"}},
		{"esp32 no chip", "boards: [{id: a, profile: esp32, port: /dev/ttyUSB0}]", []string{"needs chip"}},
		{"esp32 bad chip", "boards: [{id: a, profile: esp32, port: p, chip: esp8266}]", []string{"chip \"esp8266\" unknown"}},
		{"bad tool", "boards: [{id: a, profile: esp32, port: p, chip: esp32, flasher: {tool: openocd}}]", []string{"flasher.tool \"openocd\""}},
		{"command no template", "boards: [{id: a, profile: esp32, port: p, chip: esp32, flasher: {tool: command}}]", []string{"needs flasher.command"}},
		{"generic no flasher", "boards: [{id: a, profile: generic, port: p, image: x.bin}]", []string{"flasher.command"}},
		{"generic tool", "boards: [{id: a, profile: generic, port: p, flasher: {tool: esptool}}]", []string{"use profile esp32"}},
		{"placeholder", "boards: [{id: a, profile: generic, port: p, reset: {command: [r, '{prot}']}}]", []string{"unknown placeholder {prot}", "{port}"}},
		{"image and parts", "boards: [{id: a, profile: esp32, port: p, chip: esp32, image: m.bin, parts: {app: a.bin}}]", []string{"either image"}},
		{"parts no app", "boards: [{id: a, profile: esp32, port: p, chip: esp32, parts: {bootloader: b.bin}}]", []string{"at least app"}},
		{"nanoff parts", "boards: [{id: a, profile: esp32, port: p, chip: esp32, flasher: {tool: nanoff}, parts: {app: a.bin}}]", []string{"nanoff flashes one image"}},
		{"wifi value", "boards: [{id: a, profile: sim, wifi: {ssid: home, password: hunter2}}]", []string{"x.yaml:1", "wifi.ssid", "ssid_env"}},
		{"wifi env name", "boards: [{id: a, profile: sim, wifi: {ssid_env: 'my ssid'}}]", []string{"not an environment variable name"}},
		{"wifi no ssid", "boards: [{id: a, profile: sim, wifi: {password_env: P}}]", []string{"needs ssid_env"}},
		{"advertise url", "boards: [{id: a, profile: sim, advertise: ['mqtts://h:8883']}]", []string{"advertise \"mqtts://h:8883\""}},
		{"hub listen", "hub: {listen: '8883'}\nboards: [{id: a, profile: sim}]", []string{"hub.listen \"8883\"", "0.0.0.0:8883"}},
		{"hub advertise", "hub: {advertise: ['a b']}\nboards: [{id: a, profile: sim}]", []string{"hub.advertise"}},
		{"sim port", "boards: [{id: a, profile: sim, port: /dev/ttyUSB0}]", []string{"makes its own port"}},
		{"negative baud", "boards: [{id: a, profile: serial, port: p, baud: -1}]", []string{"baud -1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "x.yaml")
			if err == nil {
				t.Fatalf("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestLoadMissing(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "hilrun.yaml"))
	if err == nil || !strings.Contains(err.Error(), "hilrun boards") {
		t.Errorf("err = %v", err)
	}
}

func TestDocExampleParses(t *testing.T) {
	// docs/inventory.md's example must stay valid.
	data, err := os.ReadFile("../../docs/inventory.md")
	if err != nil {
		t.Skip("docs/inventory.md not found")
	}
	s := string(data)
	i := strings.Index(s, "```yaml\n")
	if i < 0 {
		t.Fatal("no yaml block in docs/inventory.md")
	}
	s = s[i+len("```yaml\n"):]
	s = s[:strings.Index(s, "```")]
	if _, err := Parse([]byte(s), "docs/inventory.md"); err != nil {
		t.Fatal(err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("boards: [{id: a, profile: sim}]"))
	f.Add([]byte("boards: [{id: a, profile: sim, wifi: {ssid: x}}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		inv, err := Parse(data, "f.yaml")
		if err == nil && len(inv.Boards) == 0 {
			t.Fatal("valid inventory without boards")
		}
	})
}
