// Package inventory reads hilrun.yaml, the list of boards a bench or a CI
// runner has attached: which profile drives each board, how it is found (USB
// serial number rather than a /dev path that changes on re-enumeration), how
// it is flashed and reset, which firmware image it gets, and how it reaches
// the hub (the names the hub's certificate must carry). Wi-Fi credentials
// are named by environment variable, never stored in the file.
//
// The format is documented with a commented example in docs/inventory.md.
package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/hilrun/hilrun/rig/secrets"
)

// DefaultFile is the inventory hilrun reads when --inventory is not given
// and the file exists in the working directory.
const DefaultFile = "hilrun.yaml"

// Profiles a board entry may name.
const (
	ProfileSim     = "sim"     // the virtual board (reference firmware behind a pty)
	ProfileESP32   = "esp32"   // ESP32 family over a USB-UART bridge or USB-Serial-JTAG
	ProfileGeneric = "generic" // flash and reset by command templates
	ProfileSerial  = "serial"  // already flashed, reset by DTR/RTS where wired
)

// Profiles lists the known profiles in documentation order.
var Profiles = []string{ProfileSim, ProfileESP32, ProfileGeneric, ProfileSerial}

// Flasher tools.
const (
	ToolEsptool = "esptool"
	ToolNanoff  = "nanoff"
	ToolCommand = "command"
)

// Chips the esp32 profile knows flash offsets for.
var Chips = []string{"esp32", "esp32s2", "esp32s3", "esp32c2", "esp32c3", "esp32c5", "esp32c6", "esp32h2", "esp32p4"}

// Placeholders a command template may use ({port}, {image}, …). The
// generic profile and flasher.tool=command expand them.
var Placeholders = []string{"port", "image", "baud", "serial", "chip", "id", "bootloader", "partition_table", "app"}

// DefaultBaud is the console baud rate when a board entry gives none.
const DefaultBaud = 115200

// Inventory is a parsed hilrun.yaml.
type Inventory struct {
	// Path is the file it was read from (for messages and for resolving
	// relative image paths).
	Path   string  `yaml:"-"`
	Boards []Board `yaml:"boards"`
	Hub    Hub     `yaml:"hub"`
}

// Hub says where the embedded reference hub listens for real boards.
type Hub struct {
	// Listen is the address the board-facing MQTT listener binds, e.g.
	// "0.0.0.0:8883". Empty: loopback with a free port (virtual boards).
	Listen string `yaml:"listen"`
	// Advertise are host names or IP addresses boards dial; the hub's
	// server certificate carries every one of them (and every board's
	// advertise entries).
	Advertise []string `yaml:"advertise"`
}

// Board is one inventory entry.
type Board struct {
	ID      string `yaml:"id"`
	Profile string `yaml:"profile"`
	// Serial is the USB serial number (iSerial) the board is bound by; the
	// port is looked up on every open, so re-enumeration does not matter.
	Serial string `yaml:"serial"`
	// Port is a fixed serial device (used when Serial is empty, or as the
	// first guess).
	Port string `yaml:"port"`
	// Baud is the console baud rate (default 115200).
	Baud int `yaml:"baud"`
	// Chip is the ESP32 variant (esp32, esp32s3, esp32c3, …): it selects
	// esptool's --chip and the bootloader offset.
	Chip    string  `yaml:"chip"`
	Flasher Flasher `yaml:"flasher"`
	Reset   Reset   `yaml:"reset"`
	// Image is the firmware: a merged image (written at 0x0) or, for
	// nanoff, the application image. Relative to the inventory file.
	Image string `yaml:"image"`
	// Parts is the bootloader / partition table / app set, written at the
	// chip's offsets; use either Image or Parts.
	Parts *Parts `yaml:"parts"`
	// Advertise are host names or IPs this board dials to reach the hub;
	// the hub certificate carries them.
	Advertise []string `yaml:"advertise"`
	// WiFi names the environment variables holding the credentials.
	WiFi   *WiFi    `yaml:"wifi"`
	Labels []string `yaml:"labels"`

	line int // line of the entry in the file, for messages
	file string
}

// Flasher says how a board is flashed.
type Flasher struct {
	// Tool is esptool (default for esp32), nanoff, or command.
	Tool string `yaml:"tool"`
	// Command is the template for tool=command (and overrides the
	// executable for esptool/nanoff when it has one element, e.g.
	// ["python3", "-m", "esptool"] or ["/opt/esptool/esptool"]).
	Command []string `yaml:"command"`
	// Args are appended to the flasher's command line.
	Args []string `yaml:"args"`
	// Baud is the flashing baud rate (esptool --baud; default 460800).
	Baud int `yaml:"baud"`
	// Target is nanoff's --target (e.g. ESP32_PSRAM_REV3).
	Target string `yaml:"target"`
}

// Reset says how a board is reset when DTR/RTS is not the way.
type Reset struct {
	// Command is a template run to reset the board (generic profile).
	Command []string `yaml:"command"`
}

// Parts is an ESP-IDF build's flash set.
type Parts struct {
	Bootloader     string `yaml:"bootloader"`
	PartitionTable string `yaml:"partition_table"`
	App            string `yaml:"app"`
}

// WiFi names environment variables; the values never enter the file.
type WiFi struct {
	SSIDEnv     string `yaml:"ssid_env"`
	PasswordEnv string `yaml:"password_env"`
}

// Line is the line of the entry in its file (0 when not from a file).
func (b Board) Line() int { return b.line }

// HasLabel reports whether the board carries label l.
func (b Board) HasLabel(l string) bool { return slices.Contains(b.Labels, l) }

// Where names the entry for messages: "hilrun.yaml:12: board \"esp-1\"".
func (b Board) Where() string {
	switch {
	case b.file != "" && b.line > 0:
		return fmt.Sprintf("%s:%d: board %q", b.file, b.line, b.ID)
	case b.file != "":
		return fmt.Sprintf("%s: board %q", b.file, b.ID)
	}
	return fmt.Sprintf("board %q", b.ID)
}

// WiFiCredentials reads the board's Wi-Fi credentials from the environment.
// ok is false when the board has no wifi section.
func (b Board) WiFiCredentials() (ssid, password string, ok bool, err error) {
	if b.WiFi == nil {
		return "", "", false, nil
	}
	ssid, okS := os.LookupEnv(b.WiFi.SSIDEnv)
	if !okS || ssid == "" {
		return "", "", true, fmt.Errorf("%s: environment variable %s (wifi.ssid_env) is not set: export it before the run", b.Where(), b.WiFi.SSIDEnv)
	}
	if b.WiFi.PasswordEnv != "" {
		var okP bool
		if password, okP = os.LookupEnv(b.WiFi.PasswordEnv); !okP {
			return "", "", true, fmt.Errorf("%s: environment variable %s (wifi.password_env) is not set: export it before the run", b.Where(), b.WiFi.PasswordEnv)
		}
		// The rig hands this password to the board in every session's
		// configuration: mask it wherever it could be echoed.
		secrets.AddText("Wi-Fi password of "+b.Where(), password)
	}
	return ssid, password, true, nil
}

// Find returns the board with the given id.
func (inv *Inventory) Find(id string) (Board, error) {
	for _, b := range inv.Boards {
		if b.ID == id {
			return b, nil
		}
	}
	ids := make([]string, 0, len(inv.Boards))
	for _, b := range inv.Boards {
		ids = append(ids, b.ID)
	}
	return Board{}, fmt.Errorf("%s: no board with id %q (boards: %s)", inv.name(), id, strings.Join(ids, ", "))
}

// Select returns the boards that carry every label in labels (all boards
// when labels is empty), in file order.
func (inv *Inventory) Select(labels ...string) []Board {
	var out []Board
	for _, b := range inv.Boards {
		if !slices.ContainsFunc(labels, func(l string) bool { return !b.HasLabel(l) }) {
			out = append(out, b)
		}
	}
	return out
}

// AdvertiseNames is every name the hub certificate must carry: the hub's
// advertise list and every board's, deduplicated, in order.
func (inv *Inventory) AdvertiseNames() []string {
	var out []string
	add := func(ns []string) {
		for _, n := range ns {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	add(inv.Hub.Advertise)
	for _, b := range inv.Boards {
		add(b.Advertise)
	}
	return out
}

func (inv *Inventory) name() string {
	if inv.Path == "" {
		return "inventory"
	}
	return inv.Path
}

// Default returns DefaultFile when it exists in the working directory, else "".
func Default() string {
	if st, err := os.Stat(DefaultFile); err == nil && !st.IsDir() {
		return DefaultFile
	}
	return ""
}

// Load reads and validates an inventory file. Relative image paths are
// resolved against the file's directory.
func Load(path string) (*Inventory, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: no such inventory file: write one (format: docs/inventory.md; `hilrun boards` prints entries for attached boards)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	inv, err := Parse(data, path)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(path)
	for i := range inv.Boards {
		b := &inv.Boards[i]
		b.Image = resolve(dir, b.Image)
		if b.Parts != nil {
			b.Parts.Bootloader = resolve(dir, b.Parts.Bootloader)
			b.Parts.PartitionTable = resolve(dir, b.Parts.PartitionTable)
			b.Parts.App = resolve(dir, b.Parts.App)
		}
	}
	return inv, nil
}

func resolve(dir, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// Parse parses and validates inventory YAML; name is used in messages.
// Unknown keys are errors (a misspelt key would otherwise be ignored
// silently), and so are keys that would store a secret.
func Parse(data []byte, name string) (*Inventory, error) {
	if name == "" {
		name = "inventory"
	}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty inventory: add a boards: list (see docs/inventory.md)", name)
		}
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	if err := secretKeys(&root, name); err != nil {
		return nil, err
	}
	inv := &Inventory{Path: name}
	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	if err := strict.Decode(inv); err != nil {
		return nil, fmt.Errorf("%s: %v (see docs/inventory.md for the keys)", name, cleanYAMLError(err))
	}
	lines := boardLines(&root)
	for i := range inv.Boards {
		inv.Boards[i].file = name
		if i < len(lines) {
			inv.Boards[i].line = lines[i]
		}
	}
	if err := inv.validate(); err != nil {
		return nil, err
	}
	return inv, nil
}

func cleanYAMLError(err error) string {
	return strings.TrimPrefix(strings.ReplaceAll(err.Error(), "\n ", ""), "yaml: ")
}

// boardLines returns the line of each item of the top-level boards list.
func boardLines(root *yaml.Node) []int {
	doc := root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		doc = doc.Content[0]
	}
	if doc.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(doc.Content); i += 2 {
		if doc.Content[i].Value == "boards" && doc.Content[i+1].Kind == yaml.SequenceNode {
			var out []int
			for _, it := range doc.Content[i+1].Content {
				out = append(out, it.Line)
			}
			return out
		}
	}
	return nil
}

// secretKeys rejects keys under wifi that would hold a credential value.
func secretKeys(n *yaml.Node, name string) error {
	var walk func(n *yaml.Node, inWiFi bool) error
	walk = func(n *yaml.Node, inWiFi bool) error {
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				if inWiFi && (k.Value == "ssid" || k.Value == "password" || k.Value == "psk") {
					return fmt.Errorf("%s:%d: wifi.%s would store a credential in the file: use wifi.%s_env with the name of an environment variable instead", name, k.Line, k.Value, map[string]string{"ssid": "ssid", "password": "password", "psk": "password"}[k.Value])
				}
				if err := walk(n.Content[i+1], k.Value == "wifi"); err != nil {
					return err
				}
			}
			return nil
		}
		for _, c := range n.Content {
			if err := walk(c, false); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(n, false)
}

var (
	idRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	envRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	phRE  = regexp.MustCompile(`\{([A-Za-z_]+)\}`)
	// host names per RFC 1123 labels (an IP literal is checked separately)
	hostRE = regexp.MustCompile(`^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$`)
)

func (inv *Inventory) validate() error {
	var errs []error
	name := inv.name()
	if len(inv.Boards) == 0 {
		errs = append(errs, fmt.Errorf("%s: no boards: add a boards: list (`hilrun boards` prints entries for attached boards)", name))
	}
	if inv.Hub.Listen != "" {
		if _, port, err := net.SplitHostPort(inv.Hub.Listen); err != nil || port == "" {
			errs = append(errs, fmt.Errorf("%s: hub.listen %q is not host:port: write e.g. \"0.0.0.0:8883\"", name, inv.Hub.Listen))
		}
	}
	for _, a := range inv.Hub.Advertise {
		if !validHost(a) {
			errs = append(errs, fmt.Errorf("%s: hub.advertise %q is not a host name or IP address: list names boards dial, without port or scheme", name, a))
		}
	}
	seen := map[string]int{}
	for i := range inv.Boards {
		b := &inv.Boards[i]
		if b.Baud == 0 {
			b.Baud = DefaultBaud
		}
		errs = append(errs, b.validate()...)
		if b.ID != "" {
			if prev, dup := seen[b.ID]; dup {
				errs = append(errs, fmt.Errorf("%s: id %q already used by the entry on line %d: give each board its own id", b.Where(), b.ID, prev))
			}
			seen[b.ID] = b.line
		}
	}
	return errors.Join(errs...)
}

func (b *Board) validate() []error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(b.Where()+": "+format, a...)) }
	switch {
	case b.ID == "":
		bad("missing id: add e.g. `id: esp32-bench-1`")
	case !idRE.MatchString(b.ID):
		bad("id %q may use letters, digits, '.', '_' and '-' only (it names report directories)", b.ID)
	}
	if b.Baud < 0 {
		bad("baud %d is negative", b.Baud)
	}
	if b.Flasher.Baud < 0 {
		bad("flasher.baud %d is negative", b.Flasher.Baud)
	}
	switch b.Profile {
	case ProfileSim:
		if b.Serial != "" || b.Port != "" {
			bad("the sim profile makes its own port: remove serial/port")
		}
	case ProfileESP32:
		if b.Serial == "" && b.Port == "" {
			bad("esp32 needs serial (USB serial number, preferred; `hilrun boards` shows it) or port")
		}
		if b.Chip == "" {
			bad("esp32 needs chip (one of %s)", strings.Join(Chips, ", "))
		} else if !slices.Contains(Chips, b.Chip) {
			bad("chip %q unknown: use one of %s", b.Chip, strings.Join(Chips, ", "))
		}
		switch b.Flasher.Tool {
		case "", ToolEsptool, ToolNanoff, ToolCommand:
		default:
			bad("flasher.tool %q unknown: use esptool, nanoff or command", b.Flasher.Tool)
		}
	case ProfileGeneric:
		if b.Serial == "" && b.Port == "" {
			bad("generic needs serial (USB serial number) or port for its console")
		}
		if len(b.Flasher.Command) == 0 && (b.Image != "" || b.Parts != nil) {
			bad("generic flashes with flasher.command: add e.g. [\"my-flasher\", \"--port\", \"{port}\", \"{image}\"], or remove image")
		}
		if b.Flasher.Tool != "" && b.Flasher.Tool != ToolCommand {
			bad("generic flashes with flasher.command only: remove flasher.tool %q or use profile esp32", b.Flasher.Tool)
		}
	case ProfileSerial:
		if b.Serial == "" && b.Port == "" {
			bad("serial needs port (or serial, the USB serial number)")
		}
	case "":
		bad("missing profile: use one of %s", strings.Join(Profiles, ", "))
	default:
		bad("profile %q unknown: use one of %s", b.Profile, strings.Join(Profiles, ", "))
	}
	if b.Flasher.Tool == ToolCommand && len(b.Flasher.Command) == 0 {
		bad("flasher.tool command needs flasher.command (a template, e.g. [\"flash.sh\", \"{port}\", \"{image}\"])")
	}
	if b.Image != "" && b.Parts != nil {
		bad("give either image (merged) or parts (bootloader/partition_table/app), not both")
	}
	if b.Parts != nil && b.Parts.App == "" {
		bad("parts needs at least app")
	}
	if b.Flasher.Tool == ToolNanoff && b.Parts != nil {
		bad("nanoff flashes one image: use image, not parts")
	}
	for _, t := range []struct {
		key string
		tpl []string
	}{{"flasher.command", b.Flasher.Command}, {"flasher.args", b.Flasher.Args}, {"reset.command", b.Reset.Command}} {
		for _, arg := range t.tpl {
			for _, m := range phRE.FindAllStringSubmatch(arg, -1) {
				if !slices.Contains(Placeholders, m[1]) {
					bad("%s: unknown placeholder {%s}: use one of {%s}", t.key, m[1], strings.Join(Placeholders, "}, {"))
				}
			}
		}
	}
	for _, a := range b.Advertise {
		if !validHost(a) {
			bad("advertise %q is not a host name or IP address: list names the board dials, without port or scheme", a)
		}
	}
	if b.WiFi != nil {
		if b.WiFi.SSIDEnv == "" {
			bad("wifi needs ssid_env (the name of an environment variable holding the SSID)")
		}
		for _, e := range []struct{ key, v string }{{"ssid_env", b.WiFi.SSIDEnv}, {"password_env", b.WiFi.PasswordEnv}} {
			if e.v != "" && !envRE.MatchString(e.v) {
				bad("wifi.%s %q is not an environment variable name: give the variable's name (e.g. HIL_WIFI_SSID), never its value", e.key, e.v)
			}
		}
	}
	return errs
}

func validHost(s string) bool {
	if net.ParseIP(s) != nil {
		return true
	}
	return len(s) <= 253 && hostRE.MatchString(s)
}
