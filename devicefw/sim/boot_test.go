package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/hilrun/hilrun/certs"
	"github.com/hilrun/hilrun/devicefw/agentproto"
)

func TestMainArgs(t *testing.T) {
	var errOut bytes.Buffer
	for _, args := range [][]string{{}, {"--uart", "/dev/null"}, {"--uart", "x", "--state", "y", "--defect", "no-such-defect"}, {"--bogus"}} {
		errOut.Reset()
		if code := mainWith(args, &errOut); code != 2 {
			t.Errorf("%q: exit %d, want 2 (%s)", args, code, errOut.String())
		}
	}
	if !strings.Contains(errOut.String(), "-defect") {
		t.Errorf("usage not printed: %s", errOut.String())
	}
}

// TestBootOverPTY boots the firmware process entry on a real
// pseudo-terminal, as the virtual board does: reset keeps NVS and the RTC
// and counts boots.
func TestBootOverPTY(t *testing.T) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	t.Cleanup(func() { ptmx.Close(); tty.Close() })
	h, _ := newHost(t, ptmx, ptmx)
	dir := t.TempDir()

	code := make(chan int, 1)
	go func() {
		code <- Main([]string{"--uart", tty.Name(), "--state", dir, "--board", "test-board", "--defect", DefTelemetryQoS0})
	}()
	hello := decode[agentproto.Hello](t, h.waitEvent(agentproto.EvHello, nil).Data)
	if hello.BootCount != 1 || hello.Board != "test-board" || !slices.Equal(hello.Defects, []string{DefTelemetryQoS0}) {
		t.Fatalf("hello %+v", hello)
	}
	leaf, _ := certs.SelfSigned(certs.LeafOptions{CommonName: "boot-dev"})
	keyPEM, _ := leaf.KeyPEM()
	h.must(agentproto.OpConfigure, agentproto.Config{Identity: &agentproto.IdentityConfig{DeviceID: "boot-dev"},
		Auth: &agentproto.AuthConfig{Type: "sas", Key: "c2VjcmV0LWtleQ=="}, Defects: []string{DefC2DNoDedup}}, nil)
	h.must(agentproto.OpCertSet, agentproto.Cert{PEM: string(leaf.CertPEM()), KeyPEM: string(keyPEM)}, nil)
	h.must(agentproto.OpTrustAdd, agentproto.Cert{PEM: string(leaf.CertPEM())}, nil)
	h.must(agentproto.OpMethodDefine, agentproto.MethodBehaviour{Name: "m", Status: 202}, nil)
	set := time.Now().Add(-48 * time.Hour)
	h.must(agentproto.OpClockSet, agentproto.Clock{UnixMS: set.UnixMilli()}, nil)
	h.must(agentproto.OpReset, nil, nil)
	select {
	case c := <-code:
		if c != ExitReset {
			t.Fatalf("exit %d after reset, want %d", c, ExitReset)
		}
	case <-time.After(waitFor):
		t.Fatal("Main did not return after reset")
	}
	fi, err := os.Stat(filepath.Join(dir, NVSFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("nvs.json: %v %v", fi, err)
	}
	nvs, err := loadNVS(filepath.Join(dir, NVSFile))
	if err != nil || nvs.Config.Identity.DeviceID != "boot-dev" || nvs.Cert == nil || len(nvs.Trust) != 1 || nvs.Methods["m"].Status != 202 {
		t.Fatalf("NVS %+v: %v", nvs, err)
	}

	// Soft reset: the board starts the process again.
	from := h.mark()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Boot(ctx, BootConfig{UARTPath: tty.Name(), StateDir: dir, Board: "test-board", Defects: []string{DefTelemetryQoS0}})
	}()
	hello = decode[agentproto.Hello](t, h.waitEvent(agentproto.EvHello, func(d json.RawMessage) bool {
		return decode[agentproto.Hello](t, d).BootCount == 2
	}, from).Data)
	if !slices.Equal(hello.Defects, []string{DefC2DNoDedup, DefTelemetryQoS0}) {
		t.Fatalf("defects after reset %v", hello.Defects)
	}
	var clk agentproto.Clock
	h.must(agentproto.OpClockGet, nil, &clk)
	if d := time.UnixMilli(clk.UnixMS).Sub(set); !clk.Synced || d < 0 || d > time.Minute {
		t.Fatalf("clock after soft reset %+v (set %s)", clk, set)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Boot: %v", err)
		}
	case <-time.After(waitFor):
		t.Fatal("Boot did not return")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, BootCountFile)); strings.TrimSpace(string(b)) != "2" {
		t.Fatalf("bootcount %q", b)
	}
	for _, l := range h.console {
		if strings.Contains(l, "c2VjcmV0") {
			t.Fatalf("console shows the key: %s", l)
		}
	}
}

// FuzzHandleLine feeds arbitrary lines to the firmware's frame handling:
// it must never panic, and every malformed frame gets a bad_frame answer.
func FuzzHandleLine(f *testing.F) {
	good, _ := agentproto.Encode(&agentproto.Frame{T: agentproto.KindRequest, ID: 3, Op: agentproto.OpEcho, Args: json.RawMessage(`{"data":"x"}`)})
	f.Add(good)
	f.Add([]byte("I (12) boot: plain console text"))
	f.Add([]byte(agentproto.Magic + `{"t":"req","id":1} *00000000`))
	f.Add([]byte(agentproto.Magic + `{"t":"res","id":5,"ok":true} *12345678`))
	f.Add([]byte("junk" + agentproto.Magic))
	res, _ := agentproto.Encode(&agentproto.Frame{T: agentproto.KindResponse, ID: 9, OK: true})
	f.Add(res)
	f.Fuzz(func(t *testing.T, line []byte) {
		var out lockedBuffer
		fw, err := newFirmware(Options{UART: uart{Writer: &out}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		line = bytes.TrimRight(line, "\n") // the reader splits on '\n'
		fw.handleLine(ctx, line)
		_, fr, err := agentproto.Split(line)
		switch {
		case err == agentproto.ErrNotFrame:
			return
		case err != nil || fr.T != agentproto.KindRequest:
			// Answered synchronously with bad_frame.
			got, derr := agentproto.Decode(out.Bytes())
			if derr != nil || got.T != agentproto.KindResponse || got.Err == nil || got.Err.Code != agentproto.ErrBadFrame {
				t.Fatalf("line %q: answer %q (%v)", line, out.Bytes(), derr)
			}
		}
	})
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Bytes returns the first line written.
func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	line, _, _ := bytes.Cut(b.buf.Bytes(), []byte("\n"))
	return append([]byte(nil), line...)
}
