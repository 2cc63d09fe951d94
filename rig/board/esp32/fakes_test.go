package esp32

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/rig/console"
)

// lineEvent is one modem-line change (or the release of EN) seen by a fake.
type lineEvent struct {
	At   time.Duration // since the recorder's start
	Line byte          // 'D' or 'R'
	V    bool
}

func (e lineEvent) String() string {
	v := 0
	if e.V {
		v = 1
	}
	return fmt.Sprintf("%c%d", e.Line, v)
}

// chip is a fake ESP32 behind an auto-reset circuit: it records the DTR/RTS
// changes with their times and, when EN is released (RTS true → false)
// with IO0 high (DTR false), "boots": it writes a ROM banner and, unless
// silent, an agent hello through boot(). It stands for the hardware only.
type chip struct {
	mu     sync.Mutex
	start  time.Time
	events []lineEvent
	dtr    bool
	rts    bool
	boots  int
	dl     int // download-mode entries
	silent bool
	boot   func(banner []byte) // where the chip's output goes
	seq    uint64
}

func newChip() *chip { return &chip{start: time.Now()} }

func (c *chip) SetDTR(v bool) error { c.set('D', v); return nil }
func (c *chip) SetRTS(v bool) error { c.set('R', v); return nil }

func (c *chip) set(line byte, v bool) {
	c.mu.Lock()
	c.events = append(c.events, lineEvent{At: time.Since(c.start), Line: line, V: v})
	released := line == 'R' && c.rts && !v
	if line == 'D' {
		c.dtr = v
	} else {
		c.rts = v
	}
	var out []byte
	if released {
		if c.dtr {
			c.dl++
			out = []byte("rst:0x1 (POWERON),boot:0x0 (DOWNLOAD(USB/UART0))\nwaiting for download\n")
		} else {
			c.boots++
			out = c.bannerLocked()
		}
	}
	boot := c.boot
	c.mu.Unlock()
	if out != nil && boot != nil {
		boot(out)
	}
}

func (c *chip) bannerLocked() []byte {
	s := "ESP-ROM:esp32s3-20210327\r\nrst:0x1 (POWERON),boot:0x8 (SPI_FAST_FLASH_BOOT)\r\nI (25) boot: ESP-IDF v5.3 2nd stage bootloader\r\n"
	if c.silent {
		return []byte(s)
	}
	c.seq = 1
	line, err := agentproto.Encode(&agentproto.Frame{T: agentproto.KindEvent, Seq: c.seq, Ev: agentproto.EvHello,
		Data: []byte(`{"proto":1,"fw":"fake","caps":[]}`)})
	if err != nil {
		panic(err)
	}
	return append([]byte(s+"I (310) hil: agent up\n"), line...)
}

func (c *chip) Events() []lineEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]lineEvent(nil), c.events...)
}

func (c *chip) reset() {
	c.mu.Lock()
	c.events = nil
	c.start = time.Now()
	c.mu.Unlock()
}

func (c *chip) Boots() int { c.mu.Lock(); defer c.mu.Unlock(); return c.boots }

// fakePort is an in-memory serial port: reads come from data, Close
// interrupts a blocked Read, and the modem lines go to a chip.
type fakePort struct {
	path   string
	chip   *chip
	data   chan []byte
	closed chan struct{}
	once   sync.Once
	mu     sync.Mutex
	wrote  []byte
	rest   []byte
}

func newFakePort(path string, c *chip) *fakePort {
	return &fakePort{path: path, chip: c, data: make(chan []byte, 1024), closed: make(chan struct{})}
}

func (p *fakePort) Read(b []byte) (int, error) {
	if len(p.rest) > 0 {
		n := copy(b, p.rest)
		p.rest = p.rest[n:]
		return n, nil
	}
	select {
	case d := <-p.data:
		n := copy(b, d)
		p.rest = d[n:]
		return n, nil
	case <-p.closed:
		return 0, errors.New("fake port closed")
	}
}

func (p *fakePort) Write(b []byte) (int, error) {
	select {
	case <-p.closed:
		return 0, errors.New("fake port closed")
	default:
	}
	p.mu.Lock()
	p.wrote = append(p.wrote, b...)
	p.mu.Unlock()
	return len(b), nil
}

func (p *fakePort) Close() error        { p.once.Do(func() { close(p.closed) }); return nil }
func (p *fakePort) SetDTR(v bool) error { return p.chip.SetDTR(v) }
func (p *fakePort) SetRTS(v bool) error { return p.chip.SetRTS(v) }
func (p *fakePort) feed(b []byte)       { p.data <- append([]byte(nil), b...) }
func (p *fakePort) isClosed() bool {
	select {
	case <-p.closed:
		return true
	default:
		return false
	}
}

// fakeUSB is an injected lister plus port opener: a set of attached
// devices whose paths can change (re-enumeration).
type fakeUSB struct {
	mu    sync.Mutex
	ports []PortInfo
	chip  *chip
	open  map[string]*fakePort
	opens int
}

func newFakeUSB(c *chip, ports ...PortInfo) *fakeUSB {
	u := &fakeUSB{ports: ports, chip: c, open: map[string]*fakePort{}}
	c.boot = func(b []byte) { u.feedAll(b) }
	return u
}

func (u *fakeUSB) List() ([]PortInfo, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]PortInfo(nil), u.ports...), nil
}

func (u *fakeUSB) Open(path string, baud int) (Port, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, p := range u.ports {
		if p.Port == path {
			fp := newFakePort(path, u.chip)
			u.open[path] = fp
			u.opens++
			return fp, nil
		}
	}
	return nil, fmt.Errorf("open %s: no such file or directory", path)
}

// current is the most recently opened port that is still open.
func (u *fakeUSB) current() *fakePort {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, p := range u.ports {
		if fp := u.open[p.Port]; fp != nil && !fp.isClosed() {
			return fp
		}
	}
	return nil
}

func (u *fakeUSB) feedAll(b []byte) {
	if fp := u.current(); fp != nil {
		fp.feed(b)
	}
}

// replug simulates re-enumeration: the device disappears (its open port
// fails) and comes back at newPath.
func (u *fakeUSB) replug(newPath string) {
	u.mu.Lock()
	old := u.ports[0]
	if fp := u.open[old.Port]; fp != nil {
		fp.Close()
	}
	u.ports[0].Port = newPath
	u.mu.Unlock()
}

// lineWatch collects console log lines and waits for one.
type lineWatch struct {
	mu    sync.Mutex
	lines []console.Line
	ch    chan struct{}
}

func newLineWatch() *lineWatch { return &lineWatch{ch: make(chan struct{}, 1)} }

func (w *lineWatch) OnLine(l console.Line) {
	w.mu.Lock()
	w.lines = append(w.lines, l)
	w.mu.Unlock()
	select {
	case w.ch <- struct{}{}:
	default:
	}
}

func (w *lineWatch) texts() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, l := range w.lines {
		out = append(out, l.Text)
	}
	return out
}

// waitFor waits for a line containing sub and returns its index.
func (w *lineWatch) waitFor(t *testing.T, sub string, d time.Duration) int {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		for i, s := range w.texts() {
			if strings.Contains(s, sub) {
				return i
			}
		}
		select {
		case <-w.ch:
		case <-deadline.C:
			t.Fatalf("no console line containing %q within %v; lines:\n%s", sub, d, strings.Join(w.texts(), "\n"))
		}
	}
}

// fakeTool installs testdata/fake-<name> as <dir>/<as> and returns the
// directory and the argument log path.
func fakeTool(t *testing.T, name, as string) (dir, log string) {
	t.Helper()
	src, err := filepath.Abs(filepath.Join("testdata", "fake-"+name))
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	if err := os.Symlink(src, filepath.Join(dir, as)); err != nil {
		t.Fatal(err)
	}
	log = filepath.Join(dir, "args.log")
	t.Setenv("FAKE_TOOL_LOG", log)
	return dir, log
}

// calls parses the fake tools' argument log: one []string per invocation.
func calls(t *testing.T, log string) [][]string {
	t.Helper()
	data, err := os.ReadFile(log)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		t.Fatal(err)
	}
	var out [][]string
	var cur []string
	for _, l := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if l == "----" {
			out = append(out, cur)
			cur = nil
			continue
		}
		cur = append(cur, l)
	}
	return out
}

// lookIn finds executables only in dir (so PATH never matters).
func lookIn(dir string) LookPath {
	return func(name string) (string, error) {
		if filepath.IsAbs(name) {
			return name, nil
		}
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
		return "", fmt.Errorf("exec: %q: executable file not found in $PATH", name)
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
