package esp32

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/rig/agent"
	"github.com/hilrun/hilrun/rig/board"
	"github.com/hilrun/hilrun/rig/console"
	"github.com/hilrun/hilrun/rig/console/ptytest"
	"github.com/hilrun/hilrun/rig/inventory"
)

const cp2102Serial = "0001A2B3"

func cp2102(path string) PortInfo {
	return PortInfo{Port: path, IsUSB: true, VID: "10c4", PID: "ea60", Serial: cp2102Serial}
}

func newTestBoard(t *testing.T, usb *fakeUSB, mod func(*Config)) *Board {
	t.Helper()
	dir, _ := fakeTool(t, "esptool", "esptool")
	cfg := Config{ID: "s3-1", Serial: cp2102Serial, Chip: "esp32s3", Image: "/fw/merged.bin",
		Flasher: &Esptool{Look: lookIn(dir)}, Lister: usb, OpenPort: usb.Open,
		ReturnTimeout: 5 * time.Second, HelloTimeout: 5 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func openConsole(t *testing.T, b *Board) (*console.Console, *lineWatch) {
	t.Helper()
	w := newLineWatch()
	con, err := console.Open(ctxT(t, 5*time.Second), b.Open, console.Options{Name: "s3-1", OnLine: w.OnLine})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { con.Close() })
	return con, w
}

// inOrder asserts that the console lines contain each substring, in order.
func inOrder(t *testing.T, w *lineWatch, subs ...string) {
	t.Helper()
	lines := w.texts()
	i := 0
	for _, s := range subs {
		for i < len(lines) && !strings.Contains(lines[i], s) {
			i++
		}
		if i == len(lines) {
			t.Fatalf("console log lacks %q (in order %q); lines:\n%s", s, subs, strings.Join(lines, "\n"))
		}
		i++
	}
}

func TestFlashKeepsConsoleAcrossFlashAndReset(t *testing.T) {
	c := newChip()
	usb := newFakeUSB(c, cp2102("/dev/ttyUSB0"))
	b := newTestBoard(t, usb, nil)
	_, w := openConsole(t, b)
	w.waitFor(t, "port /dev/ttyUSB0 open", 5*time.Second)
	usb.current().feed([]byte("old firmware chatter\n"))
	w.waitFor(t, "old firmware chatter", 5*time.Second)
	c.reset()

	if err := b.Flash(ctxT(t, 20*time.Second), board.Image{}); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, `"ev":"hello"`, 5*time.Second)
	inOrder(t, w,
		"[hilrun] flashing /fw/merged.bin with esptool on /dev/ttyUSB0",
		"[esptool] Connecting",
		"[esptool] Writing at 0x00000000",
		"[esptool] Writing at 0x00010000",
		"[esptool] Hash of data verified.",
		"[hilrun] flashed in",
		"[hilrun] reset (classic DTR/RTS sequence)",
		"ESP-ROM:esp32s3",
		"2nd stage bootloader",
		`"ev":"hello"`,
	)
	// The board itself reset the chip into the application after esptool
	// left it alone (--after no-reset), with the console attached.
	var seq []string
	for _, e := range c.Events() {
		seq = append(seq, e.String())
	}
	if strings.Join(seq, " ") != "D0 R1 R0" || c.Boots() != 1 {
		t.Errorf("line changes after flash %v, boots %d", seq, c.Boots())
	}
	if b.Hellos() != 1 {
		t.Errorf("hellos %d", b.Hellos())
	}
}

func TestBootLogKeptUntilConsoleAttaches(t *testing.T) {
	c := newChip()
	usb := newFakeUSB(c, cp2102("/dev/ttyUSB0"))
	b := newTestBoard(t, usb, nil)
	// Flash before any console is attached (as `hilrun run` does before
	// the suite starts): nothing may be lost.
	if err := b.Flash(ctxT(t, 20*time.Second), board.Image{Path: "/fw/other.bin"}); err != nil {
		t.Fatal(err)
	}
	con, w := openConsole(t, b)
	ag := agent.New(con, agent.Options{CallTimeout: 5 * time.Second, WaitTimeout: 5 * time.Second})
	defer ag.Close()
	w.waitFor(t, `"ev":"hello"`, 5*time.Second)
	inOrder(t, w, "[hilrun] flashing /fw/other.bin", "[esptool] Hash of data verified.", "ESP-ROM:esp32s3", `"ev":"hello"`)
	if _, err := ag.WaitEvent(ctxT(t, 5*time.Second), agent.Cursor{}, agentproto.EvHello, nil); err != nil {
		t.Fatalf("agent did not see the boot hello: %v", err)
	}
}

func TestRebindBySerialAfterReenumeration(t *testing.T) {
	c := newChip()
	usb := newFakeUSB(c, cp2102("/dev/ttyUSB0"))
	b := newTestBoard(t, usb, nil)
	_, w := openConsole(t, b)
	w.waitFor(t, "port /dev/ttyUSB0 open", 5*time.Second)

	usb.replug("/dev/ttyUSB3") // unplugged, back under another name
	w.waitFor(t, "port /dev/ttyUSB0 lost", 5*time.Second)
	w.waitFor(t, "port /dev/ttyUSB3 open", 5*time.Second)
	if got := b.Info().Port; got != "/dev/ttyUSB3" {
		t.Errorf("Info().Port = %q", got)
	}
	// The same console keeps reading: a reset's banner arrives.
	if err := b.Reset(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, "ESP-ROM:esp32s3", 5*time.Second)
	// And the flasher is given the new path.
	log := os.Getenv("FAKE_TOOL_LOG")
	if err := b.Flash(ctxT(t, 20*time.Second), board.Image{}); err != nil {
		t.Fatal(err)
	}
	cs := calls(t, log)
	if len(cs) != 1 || !slices.Contains(cs[0], "/dev/ttyUSB3") {
		t.Errorf("esptool calls %q, want --port /dev/ttyUSB3", cs)
	}
}

func TestPreflight(t *testing.T) {
	c := newChip()
	usb := newFakeUSB(c, cp2102("/dev/ttyUSB0"))
	b := newTestBoard(t, usb, nil)
	if err := b.Preflight(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("healthy board: %v", err)
	}

	c2 := newChip()
	c2.silent = true // boots, prints its banner, never says hello
	usb2 := newFakeUSB(c2, cp2102("/dev/ttyUSB0"))
	b2 := newTestBoard(t, usb2, func(cfg *Config) { cfg.HelloTimeout = 300 * time.Millisecond })
	err := b2.Preflight(ctxT(t, 10*time.Second))
	var rf *board.RigFault
	if !errors.As(err, &rf) || !errors.Is(err, board.ErrNoHello) || rf.Stage != "preflight" || rf.Board != "s3-1" {
		t.Fatalf("silent board: %v", err)
	}
	if !strings.Contains(err.Error(), "2nd stage bootloader") {
		t.Errorf("error lacks the last console lines: %v", err)
	}
	// The boot output is still there for the console that attaches next.
	_, w := openConsole(t, b2)
	w.waitFor(t, "ESP-ROM:esp32s3", 5*time.Second)
}

func TestBoardNotAttachedIsRigFault(t *testing.T) {
	c := newChip()
	usb := newFakeUSB(c, cp2102("/dev/ttyUSB0"))
	b := newTestBoard(t, usb, func(cfg *Config) { cfg.Serial = "OTHER" })
	_, err := b.Open(context.Background())
	if !board.IsRigFault(err) || !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `"OTHER"`) || !strings.Contains(err.Error(), "/dev/ttyUSB0") {
		t.Fatalf("err = %v", err)
	}
	if err := b.Preflight(ctxT(t, 5*time.Second)); !board.IsRigFault(err) {
		t.Errorf("preflight on an absent board: %v", err)
	}
}

func TestFlashMissingToolKeepsConsole(t *testing.T) {
	c := newChip()
	usb := newFakeUSB(c, cp2102("/dev/ttyUSB0"))
	b := newTestBoard(t, usb, func(cfg *Config) { cfg.Flasher = &Esptool{Look: lookIn(t.TempDir())} })
	_, w := openConsole(t, b)
	w.waitFor(t, "open", 5*time.Second)
	err := b.Flash(ctxT(t, 10*time.Second), board.Image{})
	var nf *ToolNotFoundError
	if !board.IsRigFault(err) || !errors.As(err, &nf) || !strings.Contains(err.Error(), "esptool not found: pip install esptool, or set flasher.command in hilrun.yaml") {
		t.Fatalf("err = %v", err)
	}
	w.waitFor(t, "flashing failed: esptool not found", 5*time.Second)
	// The port came back to the console.
	w.waitFor(t, "port /dev/ttyUSB0 open (10C4:EA60", 5*time.Second)
	if err := b.Reset(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, "ESP-ROM", 5*time.Second)
}

func TestGenericResetCommand(t *testing.T) {
	dir, log := fakeTool(t, "nanoff", "vendor-reset") // a recording tool
	c := newChip()
	usb := newFakeUSB(c, cp2102("/dev/ttyACM7"))
	b, err := FromInventory(inventory.Board{ID: "vb", Profile: inventory.ProfileGeneric, Serial: cp2102Serial, Baud: 115200,
		Reset: inventory.Reset{Command: []string{"vendor-reset", "--device", "{port}", "--serial", "{serial}"}}},
		Options{Lister: usb, OpenPort: usb.Open, Look: lookIn(dir)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	_, w := openConsole(t, b)
	if err := b.Reset(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if cs := calls(t, log); len(cs) != 1 || !slices.Equal(cs[0], []string{"--device", "/dev/ttyACM7", "--serial", cp2102Serial}) {
		t.Errorf("reset command calls %q", cs)
	}
	w.waitFor(t, "[vendor-reset] Deploying", 5*time.Second)
	if len(c.Events()) != 0 {
		t.Errorf("reset command must not drive DTR/RTS: %v", c.Events())
	}
	if err := b.Flash(context.Background(), board.Image{}); !errors.Is(err, board.ErrNoFlasher) {
		t.Errorf("generic without flasher.command: %v", err)
	}
	if b.Info().Profile != "generic" {
		t.Errorf("profile %q", b.Info().Profile)
	}
}

func TestFromInventoryFlashers(t *testing.T) {
	for _, tc := range []struct {
		fl   inventory.Flasher
		want string
	}{
		{inventory.Flasher{}, "esptool"},
		{inventory.Flasher{Tool: "esptool", Command: []string{"python3", "-m", "esptool"}}, "esptool"},
		{inventory.Flasher{Tool: "nanoff", Target: "ESP32_S3"}, "nanoff"},
		{inventory.Flasher{Tool: "command", Command: []string{"my-flash", "{port}"}}, "my-flash"},
	} {
		b, err := FromInventory(inventory.Board{ID: "x", Profile: "esp32", Chip: "esp32", Port: "/dev/ttyUSB0", Flasher: tc.fl}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got := b.cfg.Flasher.Name(); got != tc.want {
			t.Errorf("%+v: flasher %q, want %q", tc.fl, got, tc.want)
		}
	}
	if _, err := FromInventory(inventory.Board{ID: "x", Profile: "sim"}, Options{}); err == nil {
		t.Error("sim profile accepted")
	}
}

// The whole path over a real tty: the board opens a pseudo-terminal with
// go.bug.st/serial as it would /dev/ttyUSB0; the fake esptool is handed the
// port and writes to it; the "chip" on the pty's device side prints its
// banner when the (recorded) reset lines release EN; the pty is then
// unplugged and replaced by another with a new path (re-enumeration).
func TestPtyFlashResetReenumerate(t *testing.T) {
	pa, err := ptytest.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer pa.Close()
	var mu sync.Mutex
	cur := pa
	var fromHost bytes.Buffer
	got := make(chan struct{}, 1)
	readMaster := func(p *ptytest.Pair) {
		buf := make([]byte, 256)
		for {
			n, err := p.Master.Read(buf)
			mu.Lock()
			fromHost.Write(buf[:n])
			mu.Unlock()
			select {
			case got <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}
	go readMaster(pa)
	c := newChip()
	c.boot = func(b []byte) {
		mu.Lock()
		p := cur
		mu.Unlock()
		_, _ = p.Master.Write(b)
	}
	lister := ListerFunc(func() ([]PortInfo, error) {
		mu.Lock()
		defer mu.Unlock()
		return []PortInfo{cp2102(cur.Path)}, nil
	})
	open := func(path string, baud int) (Port, error) {
		p, err := SerialOpener(path, baud)
		if err != nil {
			return nil, err
		}
		return struct {
			io.ReadWriteCloser
			Lines
		}{p, c}, nil // modem lines go to the fake chip: a pty has none
	}
	dir, log := fakeTool(t, "esptool", "esptool")
	b, err := New(Config{ID: "pty", Serial: cp2102Serial, Chip: "esp32c3", Image: "/fw/m.bin",
		Flasher: &Esptool{Look: lookIn(dir)}, Lister: lister, OpenPort: open, ReturnTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	_, w := openConsole(t, b)
	if err := b.Flash(ctxT(t, 20*time.Second), board.Image{}); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, `"ev":"hello"`, 5*time.Second)
	inOrder(t, w, "[esptool] Hash of data verified.", "[hilrun] reset (classic", "ESP-ROM:esp32s3", `"ev":"hello"`)
	if cs := calls(t, log); len(cs) != 1 || !slices.Contains(cs[0], pa.Path) {
		t.Errorf("esptool calls %q, want --port %s", cs, pa.Path)
	}
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	for {
		mu.Lock()
		ok := bytes.Contains(fromHost.Bytes(), []byte("\xc0SYNC\xc0"))
		mu.Unlock()
		if ok {
			break
		}
		select {
		case <-got:
		case <-deadline.C:
			t.Fatal("the fake esptool's SYNC never reached the device side of the pty")
		}
	}

	// Re-enumeration: the pty disappears, another with a new path appears.
	pb, err := ptytest.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer pb.Close()
	mu.Lock()
	cur = pb
	mu.Unlock()
	pa.Close()
	w.waitFor(t, "port "+pa.Path+" lost", 5*time.Second)
	w.waitFor(t, "port "+pb.Path+" open", 5*time.Second)
	if _, err := pb.Master.Write([]byte("I (1) app: still here on the new port\n")); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, "still here on the new port", 5*time.Second)
	if b.Info().Port != pb.Path {
		t.Errorf("Info().Port = %q, want %q", b.Info().Port, pb.Path)
	}
}

func FuzzIngest(f *testing.F) {
	hello, _ := agentproto.Encode(&agentproto.Frame{T: agentproto.KindEvent, Seq: 1, Ev: agentproto.EvHello, Data: []byte(`{}`)})
	f.Add([]byte("ESP-ROM:esp32\r\n"), hello, uint8(3))
	f.Add([]byte{0xc0, 0, 0xff, '\n'}, []byte("@hil1 {\"t\":\"evt\"} *00000000\n"), uint8(1))
	f.Fuzz(func(t *testing.T, a, b []byte, cut uint8) {
		bd, err := New(Config{ID: "f", Port: "/dev/null", BufferLimit: 512})
		if err != nil {
			t.Fatal(err)
		}
		data := append(append([]byte(nil), a...), b...)
		k := int(cut) % (len(data) + 1)
		bd.ingest(data[:k], false)
		bd.notef("note")
		bd.ingest(data[k:], false)
		bd.mu.Lock()
		defer bd.mu.Unlock()
		if len(bd.buf) > 512 {
			t.Fatalf("buffer %d over its limit", len(bd.buf))
		}
		if len(bd.line) > 2*agentproto.MaxFrame {
			t.Fatalf("line accumulator %d", len(bd.line))
		}
		if bd.hellos > bytes.Count(data, []byte("\n"))+1 {
			t.Fatalf("%d hellos from %d lines", bd.hellos, bytes.Count(data, []byte("\n")))
		}
	})
}
