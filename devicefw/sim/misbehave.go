package sim

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hilrun/hilrun/devicefw/agentproto"
)

// Rig misbehaviour modes. Unlike defect switches (defects.go), they do not
// break a protocol rule the specs judge: they make the virtual board behave
// like a faulty rig (a hung task, a noisy line, a crash-looping image), so
// that the host's rig-fault handling can be tested. They are therefore kept
// out of Defects: `hilrun selftest` iterates Defects expecting a spec of each
// defect's requirement to fail, and a rig fault must never be a verdict.
//
// A mode is part of the flashed image's configuration (--misbehave on the
// firmware's command line, which the virtual board repeats at every boot,
// or HILRUN_SIM_MISBEHAVE in its environment): it survives resets and power
// cycles the way a bad image on flash does, and flashing an image without it
// clears it. It is not in NVS and cannot be set over the agent protocol: a
// hung or crashing firmware could not be told to stop misbehaving anyway.
const (
	MisSilentAfterHello = "silent-after-hello" // hello event and one hello answer, then nothing
	MisHangAfter        = "hang-after"         // hang-after:DURATION: normal, then silent
	MisBadCRC           = "bad-crc"            // bad-crc:N: every Nth frame written has a wrong CRC
	MisDropEvents       = "drop-events"        // drop-events:N: every Nth event is not written (seq consumed)
	MisCrashAtBoot      = "crash-at-boot"      // panics at every start
)

// MisbehaveEnv is the environment variable a firmware process also reads
// rig misbehaviour modes from (comma-separated), for images started by
// something other than the virtual board.
const MisbehaveEnv = "HILRUN_SIM_MISBEHAVE"

// ExitCrash is the exit status of a crash-at-boot firmware: what the Go
// runtime uses for an unrecovered panic.
const ExitCrash = 2

// Misbehaviour describes one rig misbehaviour mode for humans (DEFECTS.md,
// the CLI's error message); a test keeps DEFECTS.md and this list in step.
type Misbehaviour struct {
	Mode  string // name, with ":PARAM" when it takes one
	Param string // "" or what the parameter is
	Does  string
}

// Misbehaviours is the catalog of rig misbehaviour modes.
var Misbehaviours = []Misbehaviour{
	{MisSilentAfterHello, "", "sends its hello event and answers one hello request, then never writes another byte to the UART and ignores every request; the process stays alive"},
	{MisHangAfter, "DURATION", "works normally for DURATION (Go syntax, e.g. 20s) after boot, then goes silent as silent-after-hello does (a hung task)"},
	{MisBadCRC, "N", "every Nth frame written (responses and events, counted from the first frame of a boot) carries a wrong CRC"},
	{MisDropEvents, "N", "every Nth event (counted from hello, which is never dropped) is not written, but its seq is consumed: the host sees a sequence gap"},
	{MisCrashAtBoot, "", "prints a panic to stderr and the UART and exits with status 2 at every start (a crash loop)"},
}

// misbehaviour is the parsed set of modes of one boot.
type misbehaviour struct {
	silentAfterHello bool
	hangAfter        time.Duration // 0: none
	badCRC           int           // 0: none
	dropEvents       int           // 0: none
	crashAtBoot      bool
}

// ValidateMisbehave checks mode names and parameters and returns an error
// listing the valid modes for a bad one.
func ValidateMisbehave(modes []string) error {
	_, err := parseMisbehave(modes)
	return err
}

func parseMisbehave(modes []string) (misbehaviour, error) {
	var m misbehaviour
	for _, raw := range modes {
		name, param, hasParam := strings.Cut(raw, ":")
		var err error
		switch name {
		case MisSilentAfterHello, MisCrashAtBoot:
			if hasParam {
				err = errors.New("takes no parameter")
			} else if name == MisSilentAfterHello {
				m.silentAfterHello = true
			} else {
				m.crashAtBoot = true
			}
		case MisHangAfter:
			var d time.Duration
			if d, err = time.ParseDuration(param); err == nil && d <= 0 {
				err = errors.New("duration must be positive")
			}
			m.hangAfter = d
		case MisBadCRC, MisDropEvents:
			var n int
			if n, err = strconv.Atoi(param); err == nil && n < 1 {
				err = errors.New("N must be at least 1")
			}
			if name == MisBadCRC {
				m.badCRC = n
			} else {
				m.dropEvents = n
			}
		default:
			err = errors.New("unknown mode")
		}
		if err != nil {
			return misbehaviour{}, fmt.Errorf("rig misbehaviour mode %q: %v; valid modes: %s (see devicefw/sim/DEFECTS.md)", raw, err, misbehaveUsage())
		}
	}
	return m, nil
}

func misbehaveUsage() string {
	var out []string
	for _, b := range Misbehaviours {
		if b.Param != "" {
			out = append(out, b.Mode+":"+b.Param)
		} else {
			out = append(out, b.Mode)
		}
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// misbehaveFromEnv returns the modes in MisbehaveEnv.
func misbehaveFromEnv() []string {
	var out []string
	for _, m := range strings.Split(os.Getenv(MisbehaveEnv), ",") {
		if m = strings.TrimSpace(m); m != "" {
			out = append(out, m)
		}
	}
	return out
}

// ErrCrashAtBoot is returned by Boot for the crash-at-boot mode, after the
// panic message was written to the UART.
var ErrCrashAtBoot = errors.New("rig misbehaviour crash-at-boot: the image crashes at every boot")

// crashAtBootUART writes what a crashing ESP32 prints before its reboot, so
// the host console log shows a crash as it would on a real board.
func crashAtBootUART(w io.Writer) {
	_, _ = fmt.Fprintf(w, "panic: hilrun-sim: %v\r\nGuru Meditation Error: Core  0 panic'ed (LoadProhibited). Exception was unhandled.\r\nRebooting...\r\n", ErrCrashAtBoot)
}

// crashAtBootStderr writes a Go runtime panic's shape to the process's
// stderr, which the virtual board keeps as the stderr tail of the crash.
func crashAtBootStderr(w io.Writer) {
	_, _ = fmt.Fprintf(w, "panic: hilrun-sim: %v\n\ngoroutine 1 [running]:\ngithub.com/hilrun/hilrun/devicefw/sim.Boot(...)\n\tdevicefw/sim/misbehave.go\n", ErrCrashAtBoot)
}

// silencedLocked reports whether the UART is muted: the firmware hangs
// (hang-after elapsed, or silent-after-hello past its hello). Called with
// fw.wmu held.
func (fw *Firmware) silencedLocked() bool {
	if !fw.silenced && fw.mis.hangAfter > 0 && time.Since(fw.start) >= fw.mis.hangAfter {
		fw.silenced = true
	}
	return fw.silenced
}

// silencedNow is silencedLocked for callers without fw.wmu.
func (fw *Firmware) silencedNow() bool {
	fw.wmu.Lock()
	defer fw.wmu.Unlock()
	return fw.silencedLocked()
}

// corruptCRC replaces the last hex digit of a frame line's CRC with another
// one, so the CRC no longer matches (a bit error on the line).
func corruptCRC(line []byte) []byte {
	out := append([]byte(nil), line...)
	i := len(out) - 2 // the last CRC digit, before '\n'
	if i < 0 {
		return out
	}
	if out[i] == '0' {
		out[i] = '1'
	} else {
		out[i] = '0'
	}
	return out
}

// answerLastHello is silent-after-hello's one exception: the first hello
// request after the hello event is still answered (so the host's bring-up
// succeeds and the hang shows up later, in the middle of a run), then the
// firmware is silent for good.
func (fw *Firmware) answerLastHello(f *agentproto.Frame, decodeErr error) {
	if decodeErr != nil || !fw.mis.silentAfterHello || f.T != agentproto.KindRequest || f.Op != agentproto.OpHello {
		return
	}
	res, err := agentproto.Response(f.ID, fw.hello()) // before wmu: hello takes the client's lock
	if err != nil {
		return
	}
	fw.wmu.Lock()
	defer fw.wmu.Unlock()
	if !fw.helloAnswered {
		fw.helloAnswered = true
		fw.writeFrameAlwaysLocked(res)
	}
}
