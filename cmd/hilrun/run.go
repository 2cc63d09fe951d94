package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/hilrun/hilrun/devicefw/sim"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/reports"
	"github.com/hilrun/hilrun/rig/board"
	"github.com/hilrun/hilrun/suites"
)

// exitError carries a process exit status through cobra.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

type runOptions struct {
	board       string
	port        string
	baud        int
	labelFilter string
	focus       []string
	out         string
	strict      bool
	defects     []string
	misbehave   []string // hidden --sim-misbehave: rig misbehaviour modes
	image       string
	firmware    string // --firmware go|c (firmwarec.go)
	// real boards (boards.go)
	inventory string
	hubListen string
	advertise string
	chip      string
	noFlash   bool
	cloud     string // --cloud azure|aws (cloud.go)
	failFast  bool   // hidden --fail-fast: stop at the first failed spec (selftest --mutate)
}

func newRunCmd() *cobra.Command {
	o := runOptions{}
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the conformance suite against a board (default: the virtual board)",
		Long: `Run drives a board through the conformance specs against the embedded
reference hub and writes a report directory (report.json, junit.xml,
report.html, summary.md, console.log).

Without flags it uses the virtual board: the reference firmware built into
this binary, behind a pseudo-terminal.`,
		Example: `  hilrun run
  hilrun run --label-filter TWIN
  hilrun run --cloud aws                           # the AWS IoT Core specs against the reference AWS endpoint
  hilrun run --defect twin-no-resync --label-filter TWIN-010
  hilrun run --board serial --port /dev/ttyUSB0 --strict
  hilrun run --board s3-devkit-1 --strict          # a board from ./hilrun.yaml (docs/inventory.md)
  hilrun run --board esp32 --port /dev/ttyUSB0 --chip esp32s3 --image fw.bin --hub-listen 0.0.0.0:8883 --advertise 192.168.1.20 --strict`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runRun(cmd, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.board, "board", "sim", "board: sim (virtual board), serial (a board already running instrumented firmware on --port), esp32 (with --port), sdk:azure-iot-node or sdk:azure-iot-python (an official device SDK as the virtual board), or the id of a board in the inventory")
	f.StringVar(&o.port, "port", "", "serial port of a real board, e.g. /dev/ttyUSB0")
	f.IntVar(&o.baud, "baud", 115200, "serial baud rate of a real board")
	f.StringVar(&o.labelFilter, "label-filter", "", "run only specs whose labels match (requirement IDs and areas, e.g. \"TWIN && !TWIN-018\")")
	f.StringSliceVar(&o.focus, "focus", nil, "run only specs whose text matches this regular expression (repeatable)")
	f.StringVar(&o.out, "out", "", "report directory (default out/run-<time>)")
	f.BoolVar(&o.strict, "strict", false, "real-world timings (for real boards); the default compresses time on the virtual board")
	f.StringArrayVar(&o.defects, "defect", nil, "switch on a defect in the virtual board's firmware (repeatable; see devicefw/sim/DEFECTS.md)")
	f.StringArrayVar(&o.misbehave, "sim-misbehave", nil, "flash the virtual board's firmware with a rig misbehaviour mode, not a defect (repeatable; devicefw/sim/DEFECTS.md)")
	_ = f.MarkHidden("sim-misbehave") // for testing the rig's own fault handling, not for users
	f.BoolVar(&o.failFast, "fail-fast", false, "stop at the first failed spec (the rest are skipped)")
	_ = f.MarkHidden("fail-fast") // for selftest --mutate (selftest_mutate.go): one failure kills a mutant
	f.StringVar(&o.image, "image", "", "firmware to flash: for the virtual board an executable instead of the one built into hilrun; for esp32 a merged image (esptool, at 0x0)")
	f.StringVar(&o.firmware, "firmware", "go", "virtual board firmware: go (built into hilrun) or c (devicefw/esp32 built for the host with cmake+clang, cached; run from the repository)")
	f.StringVar(&o.inventory, "inventory", "", "board inventory (default ./hilrun.yaml if present; format: docs/inventory.md)")
	f.StringVar(&o.hubListen, "hub-listen", "", "address the hub (behind its fault proxy) listens on for real boards, e.g. 0.0.0.0:8883 (default: inventory hub.listen, else loopback)")
	f.StringVar(&o.advertise, "advertise", "", "host name or IP a real board dials to reach the hub; added to the hub certificate (default: inventory advertise)")
	f.StringVar(&o.chip, "chip", "esp32", "with --board esp32: the chip (esp32, esp32s3, esp32c3, …)")
	f.StringVar(&o.cloud, "cloud", "azure", "the cloud to judge against: azure (the reference IoT Hub) or aws (the reference AWS IoT endpoint and the AWS specs)")
	f.BoolVar(&o.noFlash, "no-flash", false, "inventory boards: do not flash the configured image (the pre-flight check still runs)")
	return withShards(withPool(cmd), &o) // --pool: pool.go; --shards, --pool --shard: shard.go
}

func runRun(cmd *cobra.Command, o runOptions) error {
	if err := validateSelection(o.labelFilter, o.focus); err != nil { // before anything starts (validate.go)
		return err
	}
	if err := sim.ValidateDefects(o.defects); err != nil {
		return &exitError{2, err.Error()}
	}
	if err := sim.ValidateMisbehave(o.misbehave); err != nil {
		return &exitError{2, err.Error()}
	}
	if err := cloudHook(&o); err != nil { // --cloud (cloud.go)
		return err
	}
	// The board kind whose spec durations this run measures, named before
	// the hooks resolve the board (durations.go).
	durKey := durationsKey(&o)
	if err := firmwareHook(cmd.Context(), &o, cmd.ErrOrStderr()); err != nil { // --firmware c (firmwarec.go)
		return err
	}
	if err := sdkBoardHook(cmd.Context(), &o, cmd.ErrOrStderr()); err != nil { // --board sdk:NAME (sdkboard.go)
		return err
	}
	opts := fixtures.Options{Strict: o.strict, Defects: o.defects, SimMisbehave: o.misbehave, Log: cmd.ErrOrStderr()}
	opts.Cloud = o.cloud
	rb, handled, err := resolveBoard(cmd, &o, &opts) // inventory ids and esp32: boards.go
	if err != nil {
		return err
	}
	if rb != nil {
		defer rb.b.Close()
	}
	profile := o.board
	if handled {
		profile = "resolved"
	}
	switch profile {
	case "resolved":
	case "sim":
		if o.port != "" {
			return &exitError{2, "--port is for real boards; the virtual board makes its own port (use --board serial)"}
		}
		if o.image != "" {
			opts.Image = &board.Image{Path: o.image}
		}
	case "serial":
		if o.port == "" {
			return &exitError{2, "--board serial needs --port (e.g. --port /dev/ttyUSB0)"}
		}
		if len(o.defects) > 0 {
			return &exitError{2, "--defect works only with the virtual board (--board sim)"}
		}
		opts.Board = board.NewSerial(board.SerialConfig{Port: o.port, Baud: o.baud})
	default:
		return &exitError{2, fmt.Sprintf("unknown board %q: use sim, serial, esp32, or a board id from the inventory", o.board)}
	}
	if len(o.misbehave) > 0 && opts.Board != nil {
		// Only the virtual board's own firmware image takes the modes.
		return &exitError{2, "--sim-misbehave works only with the virtual board (--board sim)"}
	}
	if o.out == "" {
		o.out = filepath.Join("out", "run-"+time.Now().Format("20060102-150405"))
	}
	opts.LogDir = o.out // the virtual board's firmware log outlives its temporary state
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	out := cmd.OutOrStdout()
	if err := rb.prepare(ctx, cmd.ErrOrStderr()); err != nil { // flash, pre-flight (boards.go)
		return err
	}
	rep, err := suites.Run(ctx, suites.RunOptions{Env: opts, LabelFilter: o.labelFilter, Focus: o.focus, OutDir: o.out,
		Progress: out, Command: os.Args, Version: version, Specs: childSpecs, FailFast: o.failFast}) // childSpecs: a shard's (shard.go)
	if rep == nil {
		return &exitError{2, err.Error()}
	}
	recordRun(&o, durKey, rep) // spec durations for balancing shards (durations.go)
	printSummary(cmd, rep, o.out)
	// The outcome decides (reports.Outcome): a confirmed firmware failure
	// is 1 even if the rig also faulted; an interruption is 1; a rig fault
	// alone is 3; an error with nothing else wrong (the report could not be
	// written) is 2.
	_, why := rep.Verdict()
	switch out := rep.Outcome(); out {
	case reports.OutcomeFail:
		return &exitError{out.ExitStatus(), "conformance run failed: " + strings.Join(why, "; ")}
	case reports.OutcomeInterrupted:
		return &exitError{out.ExitStatus(), "run interrupted: " + rep.Run.InterruptReason}
	case reports.OutcomeRigFault:
		return &exitError{out.ExitStatus(), "rig fault: " + rep.RigFaultReason() + " (not a verdict on the firmware)"}
	case reports.OutcomeNoSpecs:
		return &exitError{out.ExitStatus(), rep.NoSpecsReason()}
	}
	if err != nil {
		return &exitError{2, err.Error()}
	}
	return nil
}

func printSummary(cmd *cobra.Command, rep *reports.Report, dir string) {
	w := cmd.OutOrStdout()
	s := rep.Summary
	fmt.Fprintf(w, "\n%d specs: %d passed, %d failed, %d rig fault, %d interrupted, %d not run, %d precondition unmet, %d not applicable, %d skipped — %.1fs wall\n",
		len(rep.Specs), s.Specs[reports.SpecPassed], s.Specs[reports.SpecFailed], s.Specs[reports.SpecRigFault], s.Specs[reports.SpecInterrupted],
		s.Specs[reports.SpecNotRun], s.Specs[reports.SpecPreconditionUnmet], s.Specs[reports.SpecNotApplicable], s.Specs[reports.SpecSkipped], rep.Run.Wall.Seconds())
	if rep.Run.RigFault != "" && len(rep.Specs) == 0 {
		fmt.Fprintln(w, "requirements: none judged (the run ended before the first spec)")
	} else {
		printRequirementCounts(w, s)
	}
	for _, a := range s.Areas {
		if a.MustCovered == 0 && a.MustFailed == 0 {
			continue
		}
		fmt.Fprintf(w, "  %-6s MUST covered %d/%d, passed %d, failed %d\n", a.Area, a.MustCovered, a.Must, a.MustPassed, a.MustFailed)
	}
	if rep.Run.Interrupted {
		fmt.Fprintf(w, "run interrupted: %s\n", rep.Run.InterruptReason)
	}
	if rep.Run.RigFault != "" {
		fmt.Fprintf(w, "rig fault ended the run: %s\n", rep.Run.RigFault)
	}
	out := rep.Outcome()
	verdict := out.Label()
	printSelection(w, rep) // filtered runs (summary.go)
	switch out {
	case reports.OutcomeRigFault:
		verdict += " (not a verdict on the firmware)"
	case reports.OutcomeFail:
		if n := s.Specs[reports.SpecRigFault]; n > 0 {
			verdict += fmt.Sprintf(" (and %d specs hit a rig fault)", n)
		}
	}
	if rep.Filtered() && out != reports.OutcomeNoSpecs {
		verdict += " (filtered: " + rep.Selection() + ")"
	}
	fmt.Fprintf(w, "verdict: %s — report: %s\n", verdict, filepath.Join(dir, reports.HTMLFile))
}

// exitCode maps an error from a command to the process exit status.
func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if errors.Is(err, context.Canceled) {
		return 1
	}
	return 1
}
