package console

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/rig/console/ptytest"
)

// FuzzLineSplitter feeds arbitrary bytes, cut into arbitrary chunks, into
// the console's line reader. It must never panic, its line buffer must stay
// within MaxLine, every logged line must be printable, and the frames it
// delivers must be exactly those agentproto.Split finds in the complete
// lines no longer than MaxLine.
func FuzzLineSplitter(f *testing.F) {
	ev, _ := agentproto.Event(7, 1234, agentproto.EvConn, agentproto.ConnEvent{State: "connected"})
	evLine, _ := agentproto.Encode(ev)
	req, _ := agentproto.Request(3, agentproto.OpConfigure, agentproto.Config{Auth: &agentproto.AuthConfig{Type: "sas", Key: "k"}})
	reqLine, _ := agentproto.Encode(req)
	f.Add(evLine, []byte{3, 10, 1}, uint16(100))
	f.Add(append([]byte("log text glued "), evLine...), []byte{200}, uint16(64))
	f.Add(append(append([]byte(ptytest.BootBanner), reqLine...), "\x00\xff\r\n"...), []byte{1, 2, 3, 4, 5}, uint16(8192))
	f.Add([]byte(strings.Repeat("A", 300)+"\n"+string(evLine)), []byte{7}, uint16(32))
	f.Add([]byte("@hil1 {\"t\":\"evt\"} *00000000\n@hil1 \n\x1b[0;32mI\x1b[0m\n"), []byte{0}, uint16(0))

	f.Fuzz(func(t *testing.T, data, cuts []byte, maxLine uint16) {
		max := int(maxLine)%(2*agentproto.MaxFrame) + 1
		c := newConsole(nil, Options{MaxLine: max, MaxLines: 1 << 20, FrameQueue: 1 << 20})
		defer c.cancel()
		rest := data
		for i := 0; len(rest) > 0; i++ {
			n := len(rest)
			if len(cuts) > 0 {
				n = min(n, int(cuts[i%len(cuts)])+1)
			}
			c.ingest(rest[:n], time.Now())
			rest = rest[n:]
			if cap(c.sp.buf) > max || len(c.sp.buf) > max {
				t.Fatalf("line buffer grew to %d (cap %d) > MaxLine %d", len(c.sp.buf), cap(c.sp.buf), max)
			}
		}

		var want []*agentproto.Frame
		lines := bytes.Split(data, []byte("\n"))
		complete := lines[:len(lines)-1] // the last piece has no newline yet
		for _, l := range complete {
			if len(l) > max {
				continue
			}
			if _, fr, err := agentproto.Split(l); err == nil {
				want = append(want, fr)
			}
		}
		var got []*agentproto.Frame
		for _, fr := range drainQueue(c) {
			got = append(got, fr.Frame)
		}
		if len(got) != len(want) {
			t.Fatalf("%d frames, agentproto.Split finds %d", len(got), len(want))
		}
		for i := range got {
			if !reflect.DeepEqual(got[i], want[i]) {
				t.Fatalf("frame %d: %+v, want %+v", i, got[i], want[i])
			}
		}
		st := c.Stats()
		if st.Lines != uint64(len(complete)) || st.FramesIn != uint64(len(want)) {
			t.Fatalf("stats %+v for %d lines, %d frames", st, len(complete), len(want))
		}
		for _, l := range c.Lines() {
			if !utf8.ValidString(l.Text) {
				t.Fatalf("log line not UTF-8: %q", l.Text)
			}
			for _, r := range l.Text {
				if r < 0x20 && r != '\t' || r == 0x7f {
					t.Fatalf("control character %U in log line %q", r, l.Text)
				}
			}
		}
	})
}
