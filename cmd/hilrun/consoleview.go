package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"

	"github.com/hilrun/hilrun/reports"
)

// consoleView is what `hilrun console` shows of the board's line, for a
// person: the board's own log text, rig notes and agent events, each once;
// the agent requests the user typed and their responses are not echoed as
// raw frames (the command prints its reply), PEM blocks are folded and
// long frames shortened. `:frames` switches raw frames on (still redacted
// and folded). Lines come from rig/console's mirror, one Write per line,
// already masked (rig/secrets).
type consoleView struct {
	mu     sync.Mutex
	w      io.Writer
	frames bool // :frames on: show every raw frame
}

var mirrorLine = regexp.MustCompile(`^\s*([+-]?[0-9.]+s) (\S+)\s+(\S+)\s+(.*)$`)

const maxShown = 240 // characters of an event or raw frame shown

func (v *consoleView) Write(p []byte) (int, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if s, ok := v.render(line); ok {
			fmt.Fprintln(v.w, s)
		}
	}
	return len(p), nil
}

func (v *consoleView) setFrames(on bool) {
	v.mu.Lock()
	v.frames = on
	v.mu.Unlock()
}

// render turns one mirror line into what the user sees (ok false: hidden).
func (v *consoleView) render(line string) (string, bool) {
	m := mirrorLine.FindStringSubmatch(line)
	if m == nil {
		return reports.FoldPEM(line), true
	}
	at, dir, kind, text := m[1], m[2], m[3], m[4]
	text = reports.FoldPEM(text)
	switch kind {
	case "text":
		return fmt.Sprintf("%s │ %s", at, text), true
	case "note":
		return fmt.Sprintf("%s # %s", at, text), true
	case "frame":
		if v.frames {
			return fmt.Sprintf("%s %s %s", at, map[string]string{"in": "◀", "out": "▶"}[dir], shorten(text)), true
		}
		if dir != "in" {
			return "", false // a request: the user typed it, or the rig set the board up
		}
		var f struct {
			T    string          `json:"t"`
			Ev   string          `json:"ev"`
			Data json.RawMessage `json:"data"`
		}
		if json.Unmarshal([]byte(text), &f) != nil || f.T != "evt" {
			return "", false // a response: the command prints it
		}
		return fmt.Sprintf("%s ⚑ event %s %s", at, f.Ev, shorten(string(f.Data))), true
	}
	return fmt.Sprintf("%s %s", at, text), true
}

// shorten keeps the start of s, saying how much was left out.
func shorten(s string) string {
	if len(s) <= maxShown {
		return s
	}
	cut := maxShown
	for cut > 0 && s[cut]&0xC0 == 0x80 { // not inside a UTF-8 sequence
		cut--
	}
	return s[:cut] + fmt.Sprintf("… (%d more bytes; :frames shows all)", len(s)-cut)
}

// consoleHelp is `:help`: every command with its argument syntax.
const consoleHelp = `agent operations (sent to the board; arguments are one JSON object):
  hello                                   the firmware's identity and capabilities
  status                                  connection state, connects, desired $version, clock
  client.open                             start connecting (retries per the configured policy)
  client.close [{"graceful":true}]        disconnect
  telemetry.send {"payload":"TEXT","props":{"k":"v"},"qos":1,"wait":true}
  twin.get                                the twin as the device holds it
  twin.report {"patch":{"k":"v"}}         send a reported-properties patch
  method.define {"name":"NAME","status":200,"payload":"{}"}
  method.clear                            forget every defined method
  clock.get | clock.set {"unixMs":N}      the board's clock
  trust.list | trust.clear                the board's trusted roots
  reset                                   restart the firmware (a hello event follows)
  echo {"data":"TEXT"}                    round trip
hub commands (virtual board with the embedded hub):
  :open | :close                          client.open / client.close
  :c2d TEXT                               send a cloud-to-device message with body TEXT
  :invoke NAME [JSON]                     invoke direct method NAME with payload JSON (10 s timeout)
  :desired JSON                           patch the desired properties, e.g. :desired {"fw":"2.0"}
  :trace                                  the hub's wire trace of this device
console:
  :frames on|off                          show raw agent frames (redacted, PEMs folded)
  :reset                                  reset the board (EN pin)
  :help                                   this list
  :quit | :q                              leave (also Ctrl-D)`

// interactive reports whether r is a terminal (the prompt is shown only
// to a person).
func interactive(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
