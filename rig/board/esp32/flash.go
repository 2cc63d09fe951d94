package esp32

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// Parts is an ESP-IDF build's flash set, written at the chip's offsets.
type Parts struct {
	Bootloader     string
	PartitionTable string
	App            string
}

// FlashJob is what a Flasher is asked to write.
type FlashJob struct {
	ID     string // board id ({id})
	Port   string // the port the board is on now ({port})
	Serial string // USB serial number ({serial})
	Chip   string // {chip}
	Baud   int    // console baud (used for {baud} when the flasher sets none)
	Image  string // merged / single image ({image}); empty when Parts is used
	Parts  *Parts
	// Out receives the tool's output line by line (each line ends in
	// "\n"); the board feeds it into the console stream.
	Out io.Writer
}

// Flasher writes firmware to a board whose port the board has released.
// A flasher must leave the chip in download mode or running: the board
// resets it into the application afterwards, with the console attached.
type Flasher interface {
	Name() string
	Flash(ctx context.Context, job FlashJob) error
}

// ToolNotFoundError says which tool is missing and how to get it.
type ToolNotFoundError struct {
	Tool string
	Fix  string
}

func (e *ToolNotFoundError) Error() string { return e.Tool + " not found: " + e.Fix }

// LookPath finds executables; tests replace it through the flashers' own
// LookPath fields.
type LookPath func(string) (string, error)

// BootloaderOffset is where the second-stage bootloader goes on chip.
func BootloaderOffset(chip string) (uint32, error) {
	switch chip {
	case "esp32", "esp32s2":
		return 0x1000, nil
	case "esp32c5", "esp32p4":
		return 0x2000, nil
	case "esp32s3", "esp32c2", "esp32c3", "esp32c6", "esp32h2", "esp32c61":
		return 0x0, nil
	}
	return 0, fmt.Errorf("unknown chip %q: no bootloader offset (set chip in hilrun.yaml to esp32, esp32s3, esp32c3, …)", chip)
}

// Offsets of the partition table and the app in ESP-IDF's default layout.
const (
	PartitionTableOffset = 0x8000
	AppOffset            = 0x10000
)

// Esptool flashes with esptool. It speaks esptool v5's dashed command and
// option names (write-flash, default-reset, no-reset) and falls back to the
// v4 underscore names (write_flash) when the installed esptool rejects
// them; the fallback is remembered for later flashes.
type Esptool struct {
	// Command overrides the executable, e.g. ["python3", "-m", "esptool"].
	// Empty: "esptool", then "esptool.py", on PATH.
	Command []string
	Baud    int      // --baud; default 460800
	Args    []string // appended after the write-flash arguments' options
	Look    LookPath // default exec.LookPath

	mu     sync.Mutex
	legacy bool
}

// Name implements Flasher.
func (*Esptool) Name() string { return "esptool" }

// ErrLegacyNeeded is internal: the tool rejected the v5 names.
var errLegacyNeeded = errors.New("esptool rejected v5 command names")

// Argv returns esptool's arguments (without the executable) for job, in
// the v5 (legacy=false) or v4 spelling.
func (e *Esptool) Argv(job FlashJob, legacy bool) ([]string, error) {
	baud := e.Baud
	if baud == 0 {
		baud = 460800
	}
	if job.Chip == "" {
		return nil, errors.New("esptool needs the chip (set chip in hilrun.yaml)")
	}
	name := func(s string) string {
		if legacy {
			return strings.ReplaceAll(s, "-", "_")
		}
		return s
	}
	argv := []string{"--chip", job.Chip, "--port", job.Port, "--baud", strconv.Itoa(baud),
		"--before", name("default-reset"), "--after", name("no-reset"), name("write-flash")}
	argv = append(argv, e.Args...)
	switch {
	case job.Image != "" && job.Parts != nil:
		return nil, errors.New("esptool: give either a merged image or parts, not both")
	case job.Image != "":
		argv = append(argv, "0x0", job.Image)
	case job.Parts != nil:
		if job.Parts.App == "" {
			return nil, errors.New("esptool: parts need at least the app")
		}
		if job.Parts.Bootloader != "" {
			off, err := BootloaderOffset(job.Chip)
			if err != nil {
				return nil, err
			}
			argv = append(argv, hex(off), job.Parts.Bootloader)
		}
		if job.Parts.PartitionTable != "" {
			argv = append(argv, hex(PartitionTableOffset), job.Parts.PartitionTable)
		}
		argv = append(argv, hex(AppOffset), job.Parts.App)
	default:
		return nil, errors.New("esptool: nothing to flash: set image (merged) or parts in hilrun.yaml, or pass --image")
	}
	return argv, nil
}

func hex(v uint32) string { return fmt.Sprintf("0x%x", v) }

// unknownCommand matches esptool v4's argparse rejection of v5 names
// ("argument operation: invalid choice: 'write-flash'", "argument --before:
// invalid choice: 'default-reset'") and click's "No such command".
var unknownCommand = regexp.MustCompile(`invalid choice: '(write-flash|default-reset|no-reset)'|No such command '?write-flash|unrecognized arguments`)

// LegacyRejection reports whether tool output says the v5 names are unknown.
func LegacyRejection(out []byte) bool { return unknownCommand.Match(out) }

// Flash implements Flasher.
func (e *Esptool) Flash(ctx context.Context, job FlashJob) error {
	exe, err := e.executable()
	if err != nil {
		return err
	}
	e.mu.Lock()
	legacy := e.legacy
	e.mu.Unlock()
	for {
		argv, err := e.Argv(job, legacy)
		if err != nil {
			return err
		}
		out, err := runTool(ctx, "esptool", append(exe[1:len(exe):len(exe)], argv...), exe[0], job.Out)
		if err == nil {
			return nil
		}
		if !legacy && LegacyRejection(out) {
			legacy = true
			e.mu.Lock()
			e.legacy = true
			e.mu.Unlock()
			fmt.Fprintf(job.Out, "[hilrun] esptool rejected the v5 command names: retrying with write_flash (esptool v4)\n")
			continue
		}
		return err
	}
}

func (e *Esptool) executable() ([]string, error) {
	look := e.Look
	if look == nil {
		look = exec.LookPath
	}
	if len(e.Command) > 0 {
		p, err := look(e.Command[0])
		if err != nil {
			return nil, &ToolNotFoundError{Tool: e.Command[0], Fix: "install it, or fix flasher.command in hilrun.yaml"}
		}
		return append([]string{p}, e.Command[1:]...), nil
	}
	for _, name := range []string{"esptool", "esptool.py"} {
		if p, err := look(name); err == nil {
			return []string{p}, nil
		}
	}
	return nil, &ToolNotFoundError{Tool: "esptool", Fix: "pip install esptool, or set flasher.command in hilrun.yaml"}
}

// Nanoff flashes nanoFramework images with nanoff (the .NET nanoFramework
// firmware flasher): "nanoff --target T --serialport P --deploy --image F".
type Nanoff struct {
	Command []string // executable override; default "nanoff" on PATH
	Target  string   // --target (e.g. ESP32_PSRAM_REV3); empty: --platform esp32
	Baud    int      // --baud when non-zero
	Args    []string // appended
	Look    LookPath
}

// Name implements Flasher.
func (*Nanoff) Name() string { return "nanoff" }

// Argv returns nanoff's arguments for job.
func (n *Nanoff) Argv(job FlashJob) ([]string, error) {
	if job.Image == "" {
		return nil, errors.New("nanoff: nothing to flash: set image in hilrun.yaml, or pass --image")
	}
	var argv []string
	if n.Target != "" {
		argv = append(argv, "--target", n.Target)
	} else {
		argv = append(argv, "--platform", "esp32")
	}
	argv = append(argv, "--serialport", job.Port)
	if n.Baud != 0 {
		argv = append(argv, "--baud", strconv.Itoa(n.Baud))
	}
	argv = append(argv, "--deploy", "--image", job.Image)
	return append(argv, n.Args...), nil
}

// Flash implements Flasher.
func (n *Nanoff) Flash(ctx context.Context, job FlashJob) error {
	look := n.Look
	if look == nil {
		look = exec.LookPath
	}
	cmd := n.Command
	if len(cmd) == 0 {
		cmd = []string{"nanoff"}
	}
	exe, err := look(cmd[0])
	if err != nil {
		if len(n.Command) == 0 {
			return &ToolNotFoundError{Tool: "nanoff", Fix: "dotnet tool install -g nanoff, or set flasher.command in hilrun.yaml"}
		}
		return &ToolNotFoundError{Tool: cmd[0], Fix: "install it, or fix flasher.command in hilrun.yaml"}
	}
	argv, err := n.Argv(job)
	if err != nil {
		return err
	}
	_, err = runTool(ctx, "nanoff", append(cmd[1:len(cmd):len(cmd)], argv...), exe, job.Out)
	return err
}

// Command flashes by running a command template (flasher.tool: command,
// and the generic profile). Placeholders: see Expand.
type Command struct {
	Template []string
	Args     []string // appended, expanded too
	Baud     int      // {baud}; default the console baud
	Look     LookPath
}

// Name implements Flasher.
func (c *Command) Name() string {
	if len(c.Template) > 0 {
		return c.Template[0]
	}
	return "command"
}

// Flash implements Flasher.
func (c *Command) Flash(ctx context.Context, job FlashJob) error {
	if len(c.Template) == 0 {
		return errors.New("flasher.command is empty: set it in hilrun.yaml")
	}
	vars := job.Vars()
	if c.Baud != 0 {
		vars["baud"] = strconv.Itoa(c.Baud)
	}
	argv, err := Expand(append(append([]string(nil), c.Template...), c.Args...), vars)
	if err != nil {
		return err
	}
	return RunTemplate(ctx, c.Look, argv, job.Out)
}

// RunTemplate runs an expanded command line, its output to out.
func RunTemplate(ctx context.Context, look LookPath, argv []string, out io.Writer) error {
	if look == nil {
		look = exec.LookPath
	}
	exe, err := look(argv[0])
	if err != nil {
		return &ToolNotFoundError{Tool: argv[0], Fix: "install it, or fix the command template in hilrun.yaml"}
	}
	_, err = runTool(ctx, baseName(argv[0]), argv[1:], exe, out)
	return err
}

func baseName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

// Vars are the template placeholders for job.
func (job FlashJob) Vars() map[string]string {
	v := map[string]string{"port": job.Port, "image": job.Image, "baud": strconv.Itoa(job.Baud),
		"serial": job.Serial, "chip": job.Chip, "id": job.ID}
	if job.Parts != nil {
		v["bootloader"], v["partition_table"], v["app"] = job.Parts.Bootloader, job.Parts.PartitionTable, job.Parts.App
		if job.Image == "" {
			v["image"] = job.Parts.App
		}
	}
	return v
}

var placeholder = regexp.MustCompile(`\{([A-Za-z_]+)\}`)

// Expand substitutes {name} placeholders in every argument. An unknown
// placeholder, or one whose value is empty, is an error naming it. Each
// template argument stays one argument (no shell, no word splitting).
func Expand(tmpl []string, vars map[string]string) ([]string, error) {
	out := make([]string, 0, len(tmpl))
	var errs []error
	for _, a := range tmpl {
		out = append(out, placeholder.ReplaceAllStringFunc(a, func(m string) string {
			name := m[1 : len(m)-1]
			v, ok := vars[name]
			if !ok {
				errs = append(errs, fmt.Errorf("unknown placeholder %s in %q", m, a))
				return m
			}
			if v == "" {
				errs = append(errs, fmt.Errorf("placeholder %s in %q has no value for this board (set it in hilrun.yaml)", m, a))
			}
			return v
		}))
	}
	if len(tmpl) == 0 {
		errs = append(errs, errors.New("empty command template"))
	}
	return out, errors.Join(errs...)
}

// runTool runs exe with args, copying its output line by line to out as
// "[name] line\n" (progress lines ending in '\r' count as lines), and
// returns the output. A failure carries the last lines.
func runTool(ctx context.Context, name string, args []string, exe string, out io.Writer) ([]byte, error) {
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.WaitDelay = 0
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	var all bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		sc.Split(scanCRLF)
		for sc.Scan() {
			line := sc.Bytes()
			all.Write(line)
			all.WriteByte('\n')
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			if out != nil {
				fmt.Fprintf(out, "[%s] %s\n", name, line)
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	if out != nil {
		fmt.Fprintf(out, "[hilrun] running %s %s\n", exe, strings.Join(args, " "))
	}
	err := cmd.Start()
	if err != nil {
		pw.Close()
		<-done
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	err = cmd.Wait()
	pw.Close()
	<-done
	if err != nil {
		if ctx.Err() != nil {
			return all.Bytes(), fmt.Errorf("%s interrupted: %w", name, ctx.Err())
		}
		return all.Bytes(), fmt.Errorf("%s failed (%v); last output:\n%s", name, err, tail(all.Bytes(), 12))
	}
	return all.Bytes(), nil
}

// scanCRLF splits on '\n' or '\r' (esptool redraws its progress with '\r').
func scanCRLF(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}
