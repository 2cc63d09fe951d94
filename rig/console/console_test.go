package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/rig/console/ptytest"
)

func TestRedact(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"no secrets", `{"t":"req","id":1,"op":"echo","args":{"data":"x"}}`, `{"t":"req","id":1,"op":"echo","args":{"data":"x"}}`},
		{"auth key", `{"auth":{"type":"sas","key":"c2VjcmV0"}}`, `{"auth":{"type":"sas","key":"<redacted>"}}`},
		{"wifi password", `{"wifi":{"ssid":"lab","password":"hunter2"}}`, `{"wifi":{"ssid":"lab","password":"<redacted>"}}`},
		{"keyPem", `{"pem":"-----BEGIN CERTIFICATE-----\nMII\n","keyPem":"-----BEGIN EC PRIVATE KEY-----\nMHc\n"}`, `{"pem":"-----BEGIN CERTIFICATE-----\nMII\n","keyPem":"<redacted>"}`},
		{"case-insensitive", `{"KEY":"a","Password":"b","SAS":"c","Token":"d","SIG":"e","KeyPEM":"f"}`, `{"KEY":"<redacted>","Password":"<redacted>","SAS":"<redacted>","Token":"<redacted>","SIG":"<redacted>","KeyPEM":"<redacted>"}`},
		{"number value", `{"key":12345,"x":1}`, `{"key":"<redacted>","x":1}`},
		{"object value", `{"token":{"a":[1,"}"],"b":{}},"x":1}`, `{"token":"<redacted>","x":1}`},
		{"array value", `{"sig":["a","b"],"x":[1]}`, `{"sig":"<redacted>","x":[1]}`},
		{"null and spaces", `{ "key" : null , "x": true }`, `{ "key" : "<redacted>" , "x": true }`},
		{"escaped quote in secret", `{"key":"a\"b","x":"y"}`, `{"key":"<redacted>","x":"y"}`},
		{"secret name as value is kept", `{"name":"key","kind":"token"}`, `{"name":"key","kind":"token"}`},
		{"similar names kept", `{"keys":1,"keyId":"k","tokenTtlS":3600,"passwd":"p"}`, `{"keys":1,"keyId":"k","tokenTtlS":3600,"passwd":"p"}`},
		{"creds.rotate", `{"t":"req","id":9,"op":"creds.rotate","args":{"key":"bmV3","pem":"P","keyPem":"K"}}`, `{"t":"req","id":9,"op":"creds.rotate","args":{"key":"<redacted>","pem":"P","keyPem":"<redacted>"}}`},
		{"truncated value", `{"x":1,"password":"hunt`, `{"x":1,"password":"<redacted>"`},
		{"truncated after colon", `{"key":`, `{"key":"<redacted>"`},
		{"unterminated name", `{"ke`, `{"ke`},
		{"lone quote", `"`, `"`},
		{"empty", ``, ``},
		{"not json", `hello key: world`, `hello key: world`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := string(Redact([]byte(tc.in)))
			if got != tc.want {
				t.Fatalf("Redact(%s)\n got  %s\n want %s", tc.in, got, tc.want)
			}
			if json.Valid([]byte(tc.in)) && !json.Valid([]byte(got)) {
				t.Fatalf("valid input became invalid: %s", got)
			}
		})
	}
}

func frameLine(t testing.TB, f *agentproto.Frame) string {
	t.Helper()
	b, err := agentproto.Encode(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func event(t testing.TB, seq uint64, name string, data any) string {
	f, err := agentproto.Event(seq, int64(seq)*10, name, data)
	if err != nil {
		t.Fatal(err)
	}
	return frameLine(t, f)
}

// drainQueue takes the frames queued by ingest (no pump runs in these tests).
func drainQueue(c *Console) []Frame {
	var out []Frame
	for {
		f, ok := c.pop()
		if !ok {
			return out
		}
		out = append(out, f)
	}
}

type wantLine struct {
	kind Kind
	text string // substring
}

func TestDemux(t *testing.T) {
	ev1 := event(t, 1, agentproto.EvHello, agentproto.Hello{Proto: 1})
	ev2 := event(t, 2, agentproto.EvConn, agentproto.ConnEvent{State: "connected"})
	secretEv := event(t, 3, agentproto.EvCreds, map[string]string{"kind": "key-rotated", "key": "s3cr3t"})
	corrupt := []byte(ev2)
	corrupt[len(agentproto.Magic)+10] ^= 0x20 // flips a letter's case inside the JSON: CRC mismatch
	big := event(t, 4, agentproto.EvLog, agentproto.LogEvent{Level: "I", Msg: strings.Repeat("y", 200)})

	cases := []struct {
		name      string
		maxLine   int
		chunks    []string
		frames    []uint64 // seqs of the frames delivered
		lines     []wantLine
		check     func(t *testing.T, st Stats)
		noPending bool
	}{
		{
			name:   "partial lines across reads",
			chunks: []string{"I (12) boo", "ting\n" + ev1[:10], ev1[10:30], ev1[30:] + "tail"},
			frames: []uint64{1},
			lines:  []wantLine{{KindText, "I (12) booting"}, {KindFrame, `"ev":"hello"`}},
			check: func(t *testing.T, st Stats) {
				if st.Lines != 2 || st.FramesIn != 1 {
					t.Errorf("stats %+v", st)
				}
			},
		},
		{
			name:   "CRLF and byte-at-a-time",
			chunks: splitEvery("line one\r\n"+strings.TrimSuffix(ev1, "\n")+"\r\nline two\r\n", 1),
			frames: []uint64{1},
			lines:  []wantLine{{KindText, "line one"}, {KindFrame, "hello"}, {KindText, "line two"}},
		},
		{
			name:   "garbage bytes and NULs",
			chunks: []string{"\x00\x00\xff\xfe\x01\n", "ok\x00line\n"},
			lines:  []wantLine{{KindGarbage, `\x00\x00\xff\xfe\x01`}, {KindText, `ok\x00line`}},
			check: func(t *testing.T, st Stats) {
				if st.GarbageBytes != 6 || st.GarbageLines != 1 || st.TextLines != 1 {
					t.Errorf("stats %+v", st)
				}
			},
		},
		{
			name:   "boot ROM banner then hello",
			chunks: []string{"\x00\xff" + ptytest.BootBanner, ev1},
			frames: []uint64{1},
			lines: []wantLine{{KindText, `\x00\xffets Jun  8 2016 00:22:57`}, {KindText, ""},
				{KindText, "rst:0x1 (POWERON_RESET),boot:0x13"}},
		},
		{
			name:   "frame glued to log text",
			chunks: []string{"\x1b[0;32mI (5) wifi: got ip\x1b[0m" + ev2},
			frames: []uint64{2},
			lines:  []wantLine{{KindText, "I (5) wifi: got ip"}, {KindFrame, `"state":"connected"`}},
			check: func(t *testing.T, st Stats) {
				if st.TextLines != 1 || st.FramesIn != 1 || st.GarbageBytes != 0 {
					t.Errorf("stats %+v", st)
				}
			},
		},
		{
			name:    "overlong line",
			maxLine: 64,
			chunks:  []string{strings.Repeat("x", 100), strings.Repeat("z", 100) + "\n", "short\n"},
			lines: []wantLine{{KindGarbage, "overlong line (more than 64 bytes), dropping it: xxx"},
				{KindNote, "overlong line ended after 200 bytes"}, {KindText, "short"}},
			check: func(t *testing.T, st Stats) {
				if st.Oversize != 1 || st.GarbageBytes != 200 || st.Lines != 2 {
					t.Errorf("stats %+v", st)
				}
			},
		},
		{
			name:    "frame longer than MaxLine",
			maxLine: 128,
			chunks:  []string{big, ev2},
			frames:  []uint64{2},
			lines:   []wantLine{{KindGarbage, "overlong"}, {KindNote, "ended"}, {KindFrame, "conn"}},
		},
		{
			name:   "CRC-corrupted frame",
			chunks: []string{string(corrupt), ev1},
			frames: []uint64{1},
			lines:  []wantLine{{KindGarbage, "bad frame (frame CRC mismatch)"}, {KindFrame, "hello"}},
			check: func(t *testing.T, st Stats) {
				if st.CRCErrors != 1 || st.FramesIn != 1 {
					t.Errorf("stats %+v", st)
				}
			},
		},
		{
			name:   "malformed frames",
			chunks: []string{"@hil1 {broken\n", "@hil1 {} *" + fmt.Sprintf("%08x", crcOf("{}")) + "\n"},
			lines:  []wantLine{{KindGarbage, "no CRC trailer"}, {KindGarbage, "kind"}},
			check: func(t *testing.T, st Stats) {
				if st.SyntaxErrors != 2 {
					t.Errorf("stats %+v", st)
				}
			},
		},
		{
			name:   "secrets redacted in frames in",
			chunks: []string{secretEv},
			frames: []uint64{3},
			lines:  []wantLine{{KindFrame, `"key":"<redacted>"`}},
		},
		{
			name:   "empty lines are kept",
			chunks: []string{"\n\r\n"},
			lines:  []wantLine{{KindText, ""}, {KindText, ""}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newConsole(nil, Options{MaxLine: tc.maxLine})
			defer c.cancel()
			for _, ch := range tc.chunks {
				c.ingest([]byte(ch), time.Now())
			}
			var seqs []uint64
			for _, f := range drainQueue(c) {
				if f.Bad != nil {
					continue // a frame line that failed to decode (rig fault): TestBadFramesDelivered
				}
				seqs = append(seqs, f.Seq)
			}
			if fmt.Sprint(seqs) != fmt.Sprint(tc.frames) {
				t.Errorf("frames %v, want %v", seqs, tc.frames)
			}
			lines := c.Lines()
			if len(lines) != len(tc.lines) && !(tc.name == "boot ROM banner then hello") {
				t.Errorf("%d lines, want %d:\n%s", len(lines), len(tc.lines), dump(lines))
			}
			for i, w := range tc.lines {
				if i >= len(lines) {
					break
				}
				if lines[i].Kind != w.kind || !strings.Contains(lines[i].Text, w.text) || lines[i].Dir != In {
					t.Errorf("line %d = %s %q, want %s containing %q\n%s", i, lines[i].Kind, lines[i].Text, w.kind, w.text, dump(lines))
				}
			}
			if strings.Contains(dump(lines), "s3cr3t") {
				t.Errorf("secret in log:\n%s", dump(lines))
			}
			if tc.check != nil {
				tc.check(t, c.Stats())
			}
		})
	}
}

func crcOf(s string) uint32 { return crc32.ChecksumIEEE([]byte(s)) }

type ioRWC = io.ReadWriteCloser

func splitEvery(s string, n int) []string {
	var out []string
	for len(s) > n {
		out = append(out, s[:n])
		s = s[n:]
	}
	return append(out, s)
}

func dump(lines []Line) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l.String())
		b.WriteByte('\n')
	}
	return b.String()
}

func TestLogBoundsAndWriteLog(t *testing.T) {
	c := newConsole(nil, Options{Name: "test0", MaxLines: 3})
	defer c.cancel()
	for i := range 5 {
		c.ingest(fmt.Appendf(nil, "line %d\n", i), time.Now())
	}
	lines := c.Lines()
	if len(lines) != 3 || lines[0].Text != "line 2" || lines[2].Text != "line 4" {
		t.Fatalf("lines:\n%s", dump(lines))
	}
	if tail := c.Tail(2); len(tail) != 2 || tail[0].Text != "line 3" {
		t.Fatalf("tail:\n%s", dump(tail))
	}
	if st := c.Stats(); st.LogDropped != 2 || st.Lines != 5 {
		t.Fatalf("stats %+v", st)
	}
	var b bytes.Buffer
	if err := c.WriteLog(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if !strings.Contains(out, "# console test0") || !strings.Contains(out, "(2 older lines dropped)") ||
		strings.Count(out, "\n") != 4 || !strings.Contains(out, "in  text    line 4") {
		t.Fatalf("log:\n%s", out)
	}
}

func TestFrameQueueOverflowIsCounted(t *testing.T) {
	c := newConsole(nil, Options{FrameQueue: 2})
	defer c.cancel()
	for i := uint64(1); i <= 5; i++ {
		c.ingest([]byte(event(t, i, agentproto.EvLog, nil)), time.Now())
	}
	got := drainQueue(c)
	if len(got) != 2 || c.Stats().FramesDropped != 3 {
		t.Fatalf("got %d frames, stats %+v", len(got), c.Stats())
	}
	c.ingest([]byte(event(t, 6, agentproto.EvLog, nil)), time.Now())
	got = drainQueue(c)
	if len(got) != 1 || got[0].Seq != 6 || got[0].Lost != 3 {
		t.Fatalf("after overflow: %+v", got)
	}
	if !strings.Contains(dump(c.Lines()), "RIG FAULT: frame queue full") {
		t.Fatalf("no note:\n%s", dump(c.Lines()))
	}
}

// checkNoConsoleGoroutines fails if goroutines running Console code
// remain. Close waits for them, but a goroutine that has signalled its
// WaitGroup may still be unwinding, so look a bounded number of times.
func checkNoConsoleGoroutines(t *testing.T) {
	t.Helper()
	var left []string
	for i := 0; i < 100; i++ {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		left = left[:0]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "console.(*Console).") {
				left = append(left, g)
			}
		}
		if len(left) == 0 {
			return
		}
		runtime.Gosched()
		<-time.After(time.Millisecond)
	}
	t.Fatalf("%d console goroutines left after Close:\n%s", len(left), strings.Join(left, "\n\n"))
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startDevice opens a pty with a fake device serving on it.
func startDevice(t *testing.T) (*ptytest.Pair, *ptytest.Device) {
	t.Helper()
	p, err := ptytest.Open()
	if err != nil {
		t.Fatal(err)
	}
	d := ptytest.NewDevice(p.Master)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Serve(ctx) }()
	t.Cleanup(func() { cancel(); p.Close(); <-done })
	return p, d
}

func nextFrame(t *testing.T, c *Console) Frame {
	t.Helper()
	select {
	case f, ok := <-c.Frames():
		if !ok {
			t.Fatal("frames closed")
		}
		return f
	case <-time.After(5 * time.Second):
		t.Fatalf("no frame within 5s; console:\n%s", dump(c.Tail(20)))
	}
	panic("unreachable")
}

func TestPTYRoundTrip(t *testing.T) {
	p, d := startDevice(t)
	d.SetNoise(true)
	mirror := &syncBuffer{}
	c, err := Open(context.Background(), SerialOpener(p.Path, 115200), Options{Name: p.Path, Mirror: mirror})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Boot(); err != nil {
		t.Fatal(err)
	}
	if f := nextFrame(t, c); f.Ev != agentproto.EvHello || f.Seq != 1 {
		t.Fatalf("first frame %+v", f.Frame)
	}
	for i := uint32(1); i <= 20; i++ {
		req, _ := agentproto.Request(i, agentproto.OpEcho, agentproto.EchoArgs{Data: fmt.Sprint("ping ", i)})
		if err := c.WriteFrame(req); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Emit(agentproto.EvLog, agentproto.LogEvent{Level: "I", Msg: "tick"}); err != nil {
			t.Fatal(err)
		}
	}
	// Responses and events interleave; each stream stays in order.
	var ids []uint32
	var seqs []uint64
	for len(ids) < 20 || len(seqs) < 20 {
		f := nextFrame(t, c)
		switch f.T {
		case agentproto.KindResponse:
			var e agentproto.EchoArgs
			json.Unmarshal(f.Data, &e)
			if e.Data != fmt.Sprint("ping ", f.ID) {
				t.Fatalf("echo %d = %q", f.ID, e.Data)
			}
			ids = append(ids, f.ID)
		case agentproto.KindEvent:
			seqs = append(seqs, f.Seq)
		}
	}
	for i := range 20 {
		if ids[i] != uint32(i+1) || seqs[i] != uint64(i+2) {
			t.Fatalf("order: ids %v seqs %v", ids, seqs)
		}
	}
	// A configure with secrets: the device gets them, the log does not.
	cfg, _ := agentproto.Request(99, agentproto.OpConfigure, agentproto.Config{
		Auth: &agentproto.AuthConfig{Type: "sas", Key: "U0VDUkVULUtFWQ=="},
		WiFi: &agentproto.WiFiConfig{SSID: "lab", Password: "wifi-pass-123"}})
	if err := c.WriteFrame(cfg); err != nil {
		t.Fatal(err)
	}
	if f := nextFrame(t, c); f.ID != 99 || f.Err == nil || f.Err.Code != agentproto.ErrUnknownOp {
		t.Fatalf("configure answer %+v", f.Frame)
	}
	reqs := d.Requests()
	if last := reqs[len(reqs)-1]; !strings.Contains(string(last.Args), "U0VDUkVULUtFWQ==") {
		t.Fatalf("device got %s", last.Args)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-c.Frames(); ok {
		t.Fatal("Frames not closed after Close")
	}
	var log bytes.Buffer
	c.WriteLog(&log)
	for _, secret := range []string{"U0VDUkVULUtFWQ==", "wifi-pass-123"} {
		if strings.Contains(log.String(), secret) || strings.Contains(mirror.String(), secret) {
			t.Fatalf("secret %q in log", secret)
		}
	}
	for _, want := range []string{"rst:0x1 (POWERON_RESET)", "I (", "glued:", `"password":"<redacted>"`, "out frame"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
	if !strings.Contains(mirror.String(), "rst:0x1") {
		t.Errorf("mirror lacks banner:\n%s", mirror.String())
	}
	st := c.Stats()
	if st.FramesIn != 42 || st.FramesOut != 21 || st.CRCErrors+st.SyntaxErrors+st.Oversize != 0 || st.GarbageBytes != 3 {
		t.Errorf("stats %+v", st)
	}
	checkNoConsoleGoroutines(t)
	t.Logf("stats %+v", st)
}

func TestReopenAfterUnplug(t *testing.T) {
	p1, d1 := startDevice(t)
	var path atomic.Value
	path.Store(p1.Path)
	var opens atomic.Int32
	opener := func(ctx context.Context) (ioRWC, error) {
		opens.Add(1)
		return SerialOpener(path.Load().(string), 115200)(ctx)
	}
	c, err := Open(context.Background(), opener, Options{Name: "vboard0", ReopenMin: time.Millisecond, ReopenMax: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d1.Boot()
	if f := nextFrame(t, c); f.Ev != agentproto.EvHello {
		t.Fatalf("got %+v", f.Frame)
	}
	p1.Close() // USB unplug: the slave path disappears

	p2, d2 := startDevice(t)
	path.Store(p2.Path)
	d2.Boot()
	if f := nextFrame(t, c); f.Ev != agentproto.EvHello || f.Seq != 1 {
		t.Fatalf("after reopen got %+v", f.Frame)
	}
	req, _ := agentproto.Request(1, agentproto.OpEcho, agentproto.EchoArgs{Data: "again"})
	if err := c.WriteFrame(req); err != nil {
		t.Fatal(err)
	}
	if f := nextFrame(t, c); f.ID != 1 || !f.OK {
		t.Fatalf("echo after reopen %+v", f.Frame)
	}
	st := c.Stats()
	if st.Reopens != 1 || st.Outages != 1 {
		t.Fatalf("stats %+v", st)
	}
	log := dump(c.Lines())
	for _, want := range []string{"vboard0: port lost", "vboard0: port reopened"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	c.Close()
	checkNoConsoleGoroutines(t)
	t.Logf("opener called %d times", opens.Load())
}

func TestWriteDuringOutage(t *testing.T) {
	p, _ := startDevice(t)
	var gone atomic.Bool
	opener := func(ctx context.Context) (ioRWC, error) {
		if gone.Load() {
			return nil, errors.New("no such device")
		}
		return SerialOpener(p.Path, 115200)(ctx)
	}
	lost, failed := make(chan struct{}, 1), make(chan struct{}, 1)
	onLine := func(l Line) {
		if l.Kind != KindNote {
			return
		}
		if strings.Contains(l.Text, "port lost: ") {
			lost <- struct{}{}
		}
		if strings.Contains(l.Text, "reopen attempt 1 failed") {
			failed <- struct{}{}
		}
	}
	c, err := Open(context.Background(), opener, Options{OnLine: onLine, ReopenMin: time.Millisecond, ReopenMax: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	gone.Store(true)
	p.Close()
	<-lost
	req, _ := agentproto.Request(1, agentproto.OpEcho, nil)
	if err := c.WriteFrame(req); !errors.Is(err, ErrPortDown) {
		t.Fatalf("write during outage: %v", err)
	}
	<-failed
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteFrame(req); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
	if !strings.Contains(dump(c.Lines()), "serial: reopen attempt 1 failed: no such device") {
		t.Fatalf("log:\n%s", dump(c.Lines()))
	}
	checkNoConsoleGoroutines(t)
}

func TestFirstOpenFailureNamesPort(t *testing.T) {
	_, err := Open(context.Background(), SerialOpener("/dev/ttyNOPE9", 115200), Options{})
	if err == nil || !strings.Contains(err.Error(), "/dev/ttyNOPE9") {
		t.Fatalf("err = %v", err)
	}
	t.Log(err)
}

// fakePort is an in-memory port: reads come from a pipe the test writes.
type fakePort struct {
	*io.PipeReader
	w *io.PipeWriter
}

func (f fakePort) Write(p []byte) (int, error) { return len(p), nil }

func newFakePort() fakePort {
	r, w := io.Pipe()
	return fakePort{r, w}
}

func TestOutageFlushesPartialLine(t *testing.T) {
	ports := make(chan fakePort, 2)
	p1, p2 := newFakePort(), newFakePort()
	ports <- p1
	ports <- p2
	opener := func(ctx context.Context) (ioRWC, error) {
		select {
		case p := <-ports:
			return p, nil
		default:
			return nil, errors.New("no more ports")
		}
	}
	c, err := Open(context.Background(), opener, Options{Name: "fake", ReopenMin: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	p1.w.Write([]byte("complete\nhalf a line before the unplug"))
	p1.w.CloseWithError(errors.New("device unplugged"))
	p2.w.Write([]byte(event(t, 1, agentproto.EvHello, nil)))
	if f := nextFrame(t, c); f.Seq != 1 {
		t.Fatalf("frame %+v", f.Frame)
	}
	c.Close()
	log := dump(c.Lines())
	i := strings.Index(log, "half a line before the unplug")
	j := strings.Index(log, "fake: port lost: device unplugged")
	k := strings.Index(log, "fake: port reopened")
	if i < 0 || j < i || k < j {
		t.Fatalf("log:\n%s", log)
	}
	if st := c.Stats(); st.Reopens != 1 || st.Lines != 3 {
		t.Fatalf("stats %+v", st)
	}
	checkNoConsoleGoroutines(t)
}

// TestBadFramesDelivered: a frame line that fails to decode reaches the
// consumer in order, marked Bad, so that it can record the loss where it
// happened (PROTOCOL.md §2).
func TestBadFramesDelivered(t *testing.T) {
	c := newConsole(nil, Options{})
	defer c.cancel()
	good, _ := agentproto.Event(1, 5, agentproto.EvHello, nil)
	line, _ := agentproto.Encode(good)
	bad := bytes.Replace(line, []byte(" *"), []byte(" *f"), 1)
	bad = append(bad[:len(bad)-2], '\n')
	c.ingest(bad, time.Now())
	c.ingest(line, time.Now())
	fs := drainQueue(c)
	if len(fs) != 2 || fs[0].Bad == nil || !errors.Is(fs[0].Bad, agentproto.ErrCRC) || fs[1].Bad != nil || fs[1].Seq != 1 {
		t.Fatalf("frames %+v", fs)
	}
}
