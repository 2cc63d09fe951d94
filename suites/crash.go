package suites

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"

	"github.com/hilrun/hilrun/reports"
	"github.com/hilrun/hilrun/rig/board"
	"github.com/hilrun/hilrun/rig/secrets"
)

// The crash rule. A firmware that crashes while a spec drives it (a panic,
// a fault) reboots, and its hello comes back: most specs then see nothing
// wrong, or judge only what they asked for before the crash, and pass. A
// device that crashes on a documented input does not keep the requirement
// that input belongs to, so every spec in whose window (ReportBeforeEach to
// ReportAfterEach: setup, body and cleanup) the firmware crashed fails,
// naming the crash, the spec's requirements and where the logs are.
//
// What counts as a crash is what the board itself saw: the virtual board
// (rig/board.Sim) records every exit of its firmware process, and only the
// ones it calls "crashed" count. The reboots a spec asks for are not
// crashes there: a reset over the agent protocol exits with ExitReset
// ("reset requested"), and a reset line, a power cycle or a flash kills the
// process ("killed by board"), as does the watchdog's recovery of a hung
// board (which stays a rig fault, applyRigFaults).
//
// Rig faults stay rig faults where the rig is to blame:
//   - a crash loop (the image crashes again at every start: the board gives
//     up on it, board.ErrCrashLoop) is the board not coming up, as with
//     --sim-misbehave crash-at-boot before any spec; a spec in whose window
//     it began keeps the rig-fault outcome (and the run ends on it);
//   - frames lost or cut on the line in the same window do not make a crash
//     a rig fault: a process that dies mid-write cuts its last frame, so
//     those faults are the crash's consequence, and the crash is the
//     firmware's.
//
// Serial boards (rig/board.Serial, esp32) are outside the rule for now: the
// rig does not parse the console for a reset banner ("rst:0x…") or a
// panic line ("Guru Meditation Error"), and an unsolicited hello cannot yet
// be told from the reboots the firmware makes on its own by design.

// exitRecorder is a board that knows how its firmware process ended.
type exitRecorder interface {
	Exits() []board.Exit
	LogPath() string
}

var crashWatch struct {
	mu     sync.Mutex
	mark   int    // len(Exits()) when the current spec began
	outDir string // the report directory, where console.log is written
}

func crashSetup(outDir string) {
	crashWatch.mu.Lock()
	crashWatch.outDir = outDir
	crashWatch.mu.Unlock()
}

var _ = ReportBeforeEach(func(SpecReport) {
	if er, ok := boardExits(); ok {
		n := len(er.Exits())
		crashWatch.mu.Lock()
		crashWatch.mark = n
		crashWatch.mu.Unlock()
	}
})

func boardExits() (exitRecorder, bool) {
	e := env
	if e == nil || e.Board == nil {
		return nil, false
	}
	er, ok := e.Board.(exitRecorder)
	return er, ok
}

// applyCrash fails res when the firmware crashed in the spec's window.
func applyCrash(res *reports.SpecResult, started time.Time) {
	er, ok := boardExits()
	if !ok {
		return
	}
	all := er.Exits()
	crashWatch.mu.Lock()
	from := min(crashWatch.mark, len(all))
	crashWatch.mark = len(all)
	outDir := crashWatch.outDir
	crashWatch.mu.Unlock()
	loop := false
	if fr, ok := env.Board.(board.FaultReporter); ok {
		loop = errors.Is(fr.Fault(), board.ErrCrashLoop)
	}
	consoleLog := "console.log in the report directory"
	if outDir != "" {
		consoleLog = filepath.Join(outDir, "console.log")
	}
	judgeCrash(res, all[from:], started, loop, consoleLog, er.LogPath())
}

// judgeCrash is the rule on the exits of one spec's window.
func judgeCrash(res *reports.SpecResult, exits []board.Exit, started time.Time, loop bool, consoleLog, firmwareLog string) {
	var crashes []board.Exit
	for _, x := range exits {
		// An exit stamped before the spec began is the previous spec's
		// (its record can land after that spec's report on a busy host).
		if strings.HasPrefix(x.Reason, "crashed") && (started.IsZero() || !x.At.Before(started)) {
			crashes = append(crashes, x)
		}
	}
	if len(crashes) == 0 {
		return
	}
	switch res.Status {
	case reports.SpecPassed, reports.SpecFailed:
	case reports.SpecRigFault:
		// A recovery (reset, power cycle) clears the board's fault, so
		// the rig fault's own text also tells of a crash loop.
		if loop || strings.Contains(res.RigFault, board.ErrCrashLoop.Error()) || strings.Contains(res.Failure, board.ErrCrashLoop.Error()) {
			return // the board no longer comes up: a rig fault, see above
		}
	default:
		// Not applicable, precondition unmet, skipped, interrupted, not
		// run: no verdict was being made, so none is made now.
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "the firmware crashed during this spec and the board rebooted: %s; a device that crashes on a documented input does not keep the requirement",
		crashText(crashes[0]))
	if len(crashes) > 1 {
		fmt.Fprintf(&b, " (%d crashes in the spec)", len(crashes))
	}
	fmt.Fprintf(&b, "; console log: %s, firmware log: %s", consoleLog, firmwareLog)
	switch res.Status {
	case reports.SpecFailed:
		b.WriteString("\nthe spec's own failure: " + res.Failure)
	case reports.SpecRigFault:
		b.WriteString("\nrig faults in the same window, taken as the crash's consequence: " + res.RigFault)
		res.RigFault = ""
	}
	res.Status = reports.SpecFailed
	res.Failure = secrets.Mask(withRequirement(b.String(), res.Requirements))
}

// crashText renders one crash: when, how, and the panic line of its
// stderr (or its last line).
func crashText(x board.Exit) string {
	s := fmt.Sprintf("firmware process exited (%s) at %s", x.Reason, x.At.Format("15:04:05.000"))
	line := ""
	for _, l := range x.Stderr {
		if strings.HasPrefix(strings.TrimSpace(l), "panic:") || strings.HasPrefix(strings.TrimSpace(l), "fatal error:") {
			line = strings.TrimSpace(l)
			break
		}
	}
	if line == "" && len(x.Stderr) > 0 {
		line = strings.TrimSpace(x.Stderr[len(x.Stderr)-1])
	}
	if line != "" {
		if len(line) > 200 {
			line = line[:200] + "…"
		}
		s += ", stderr: " + line
	}
	return s
}
