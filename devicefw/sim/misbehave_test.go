package sim

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/hilrun/hilrun/devicefw/agentproto"
)

// rawLine is one line the firmware wrote to its pty, decoded if it is a
// frame (err says why not, e.g. agentproto.ErrCRC).
type rawLine struct {
	text  string
	frame *agentproto.Frame
	err   error
}

// rawPTY is the host end of a real pseudo-terminal, read line by line
// without any agent logic, so that what the firmware wrote can be checked
// byte for byte (a bad CRC is seen, not discarded).
type rawPTY struct {
	t     *testing.T
	ptmx  *os.File
	tty   string
	lines chan rawLine
}

func openRawPTY(t *testing.T) *rawPTY {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	r := &rawPTY{t: t, ptmx: ptmx, tty: tty.Name(), lines: make(chan rawLine, 1024)}
	go func() {
		defer close(r.lines)
		sc := bufio.NewScanner(ptmx)
		sc.Buffer(make([]byte, 8192), 1<<20)
		for sc.Scan() {
			text := strings.TrimRight(sc.Text(), "\r")
			l := rawLine{text: text}
			if agentproto.IsFrame([]byte(text)) {
				_, l.frame, l.err = agentproto.Split([]byte(text))
			}
			r.lines <- l
		}
	}()
	// The slave stays open in the test (as the virtual board keeps it) so
	// that the master never reads EIO between firmware boots.
	t.Cleanup(func() { ptmx.Close(); tty.Close() })
	return r
}

// next returns the next line within d, or ok false at the deadline.
func (r *rawPTY) next(d time.Duration) (rawLine, bool) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case l, ok := <-r.lines:
		return l, ok
	case <-timer.C:
		return rawLine{}, false
	}
}

// frames returns the next n frame lines (good or bad), skipping console
// text, within waitFor.
func (r *rawPTY) frames(n int) []rawLine {
	r.t.Helper()
	deadline := time.Now().Add(waitFor)
	var out []rawLine
	for len(out) < n {
		l, ok := r.next(time.Until(deadline))
		if !ok {
			r.t.Fatalf("got %d of %d frames within %s: %+v", len(out), n, waitFor, out)
		}
		if agentproto.IsFrame([]byte(l.text)) {
			out = append(out, l)
		}
	}
	return out
}

func (r *rawPTY) send(id uint32, op string, args any) {
	r.t.Helper()
	req, _ := agentproto.Request(id, op, args)
	line, _ := agentproto.Encode(req)
	if _, err := r.ptmx.Write(line); err != nil {
		r.t.Fatal(err)
	}
}

// bootMisbehaving runs Boot on the pty with the given modes until the test
// ends; it returns Boot's result channel.
func bootMisbehaving(t *testing.T, r *rawPTY, modes ...string) <-chan error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	state := t.TempDir() // before the Cleanup below, so removed after the firmware stopped
	go func() { done <- Boot(ctx, BootConfig{UARTPath: r.tty, StateDir: state, Misbehave: modes}) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(waitFor):
			t.Error("firmware did not stop")
		}
	})
	return done
}

// unreachableHub makes client.open produce a steady stream of conn events
// (connecting, backoff, …) without a hub: the address refuses connections.
var unreachableHub = agentproto.Config{
	Hub:      &agentproto.HubConfig{Host: "misbehave.azure-devices.net", Address: "127.0.0.1:1"},
	Identity: &agentproto.IdentityConfig{DeviceID: "misbehave"},
	Auth:     &agentproto.AuthConfig{Type: "sas", Key: "c2VjcmV0LWtleQ=="},
	Retry:    &agentproto.RetryConfig{InitialMS: 5, MaxMS: 10},
}

func TestMisbehaveValidate(t *testing.T) {
	for _, ok := range [][]string{nil, {"silent-after-hello"}, {"hang-after:20s"}, {"bad-crc:1"}, {"drop-events:3", "bad-crc:7"}, {"crash-at-boot"}} {
		if err := ValidateMisbehave(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"nope", "bad-crc", "bad-crc:0", "bad-crc:x", "drop-events:-1", "hang-after:", "hang-after:0s", "hang-after:soon", "silent-after-hello:1", "crash-at-boot:now", "twin-no-resync"} {
		err := ValidateMisbehave([]string{bad})
		if err == nil {
			t.Errorf("%q accepted", bad)
			continue
		}
		for _, b := range Misbehaviours {
			if !strings.Contains(err.Error(), b.Mode) {
				t.Errorf("%q: error %q does not list %s", bad, err, b.Mode)
			}
		}
	}
	// Rig misbehaviours are never defect switches: selftest iterates the
	// defects expecting a verdict, and a rig fault is not one.
	for _, b := range Misbehaviours {
		if _, isDefect := LookupDefect(b.Mode); isDefect {
			t.Errorf("%s is in the defect catalog", b.Mode)
		}
	}
	var errOut bytes.Buffer
	if code := mainWith([]string{"--uart", "x", "--state", "y", "--misbehave", "bad-crc:0"}, &errOut); code != 2 || !strings.Contains(errOut.String(), "valid modes") {
		t.Errorf("bad --misbehave: exit %d, %s", code, errOut.String())
	}
}

// TestMisbehaveDoc keeps DEFECTS.md's section on rig misbehaviour modes and
// Misbehaviours in step.
func TestMisbehaveDoc(t *testing.T) {
	doc, err := os.ReadFile("DEFECTS.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "## Rig misbehaviour modes (not defects)")
	if !ok {
		t.Fatal("DEFECTS.md has no section \"Rig misbehaviour modes (not defects)\"")
	}
	for _, b := range Misbehaviours {
		name := b.Mode
		if b.Param != "" {
			name += ":" + b.Param
		}
		if !strings.Contains(section, "`"+name+"`") {
			t.Errorf("DEFECTS.md does not document `%s`", name)
		}
	}
}

func TestMisbehaveBadCRC(t *testing.T) {
	r := openRawPTY(t)
	bootMisbehaving(t, r, "bad-crc:3")
	got := r.frames(1) // hello: frame 1
	for i := uint32(1); i <= 5; i++ {
		r.send(i, agentproto.OpEcho, agentproto.EchoArgs{Data: "x"})
		got = append(got, r.frames(1)...) // one response per request: frames 2..6
	}
	for i, l := range got {
		n := i + 1
		wantBad := n%3 == 0
		if wantBad != errors.Is(l.err, agentproto.ErrCRC) || (!wantBad && l.err != nil) {
			t.Errorf("frame %d: %q: error %v, want a CRC error: %v", n, l.text, l.err, wantBad)
		}
	}
	// The corrupt frame is otherwise intact: only its CRC is wrong.
	if !strings.Contains(got[2].text, `"id":2`) {
		t.Errorf("frame 3 %q is not the response to request 2", got[2].text)
	}
}

func TestMisbehaveDropEvents(t *testing.T) {
	r := openRawPTY(t)
	bootMisbehaving(t, r, "drop-events:2")
	// One request at a time, after hello: the firmware serves requests
	// concurrently, and the line is raw only once the firmware is up.
	hello := r.frames(1)[0]
	r.send(1, agentproto.OpConfigure, unreachableHub)
	if res := r.frames(1)[0]; res.frame == nil || !res.frame.OK {
		t.Fatalf("configure: %q", res.text)
	}
	r.send(2, agentproto.OpOpen, nil)
	seqs := []uint64{hello.frame.Seq}
	var seen []string
	deadline := time.Now().Add(waitFor)
	for len(seqs) < 6 {
		l, ok := r.next(time.Until(deadline))
		if !ok {
			t.Fatalf("events seen within %s: seqs %v; lines %q", waitFor, seqs, seen)
		}
		seen = append(seen, l.text)
		if l.frame != nil && l.frame.T == agentproto.KindEvent {
			seqs = append(seqs, l.frame.Seq)
		}
	}
	// Hello (1) is kept; every second event is dropped, its seq used up.
	if want := []uint64{1, 3, 5, 7, 9, 11}; !equalU64(seqs, want) {
		t.Fatalf("event seqs %v, want %v (gaps where events were dropped)", seqs, want)
	}
}

func equalU64(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// expectSilence sends a request and checks that nothing at all comes back
// on the line before the request's deadline.
func expectSilence(t *testing.T, r *rawPTY, id uint32, deadline time.Duration) {
	t.Helper()
	r.send(id, agentproto.OpEcho, agentproto.EchoArgs{Data: "anyone?"})
	if l, ok := r.next(deadline); ok {
		t.Fatalf("silent firmware wrote %q", l.text)
	}
}

func TestMisbehaveSilentAfterHello(t *testing.T) {
	t.Parallel() // its own rig; waits on timers
	r := openRawPTY(t)
	done := bootMisbehaving(t, r, "silent-after-hello")
	hello := r.frames(1)[0]
	if hello.frame == nil || hello.frame.Ev != agentproto.EvHello || hello.frame.Seq != 1 {
		t.Fatalf("first frame %q, want the hello event", hello.text)
	}
	r.send(1, agentproto.OpHello, nil)
	if res := r.frames(1)[0]; res.frame == nil || res.frame.ID != 1 || !res.frame.OK {
		t.Fatalf("hello request: %q, want an answer", res.text)
	}
	expectSilence(t, r, 2, time.Second)
	r.send(3, agentproto.OpHello, nil) // a second hello goes unanswered too
	expectSilence(t, r, 4, 500*time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("silent firmware stopped by itself: %v", err)
	default: // still alive, as a hung chip is
	}
}

func TestMisbehaveHangAfter(t *testing.T) {
	t.Parallel() // its own rig; waits on timers
	r := openRawPTY(t)
	start := time.Now()
	bootMisbehaving(t, r, "hang-after:700ms")
	r.frames(1) // hello
	r.send(1, agentproto.OpEcho, agentproto.EchoArgs{Data: "early"})
	if res := r.frames(1)[0]; res.frame == nil || res.frame.ID != 1 {
		t.Fatalf("echo before the hang: %q", res.text)
	}
	// Ask until the firmware stops answering: each echo is a probe with a
	// deadline, paced by a ticker (so as not to flood the line) and bounded
	// in count and time.
	var hungAfter time.Duration
	pace := time.NewTicker(50 * time.Millisecond)
	defer pace.Stop()
	for id := uint32(2); id < 100 && hungAfter == 0 && time.Since(start) < 5*time.Second; id++ {
		<-pace.C
		r.send(id, agentproto.OpEcho, agentproto.EchoArgs{Data: "still?"})
		if l, ok := r.next(300 * time.Millisecond); !ok {
			hungAfter = time.Since(start)
		} else if l.frame == nil || l.frame.ID != id {
			t.Fatalf("probe %d answered with %q", id, l.text)
		}
	}
	if hungAfter < 700*time.Millisecond || hungAfter > 5*time.Second {
		t.Fatalf("firmware hung after %s, want just after 700ms", hungAfter)
	}
	expectSilence(t, r, 1000, 500*time.Millisecond)
}

func TestMisbehaveCrashAtBoot(t *testing.T) {
	r := openRawPTY(t)
	var errOut bytes.Buffer
	dir := t.TempDir()
	start := time.Now()
	code := mainWith([]string{"--uart", r.tty, "--state", dir, "--misbehave", "crash-at-boot"}, &errOut)
	if code != ExitCrash || code == 0 || code == ExitReset {
		t.Fatalf("exit %d, want %d", code, ExitCrash)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("crash-at-boot took %s: it should die at once", d)
	}
	if !regexp.MustCompile(`(?s)^panic: hilrun-sim: .*crash-at-boot.*goroutine 1 \[running\]`).MatchString(errOut.String()) {
		t.Errorf("stderr %q is not panic-like", errOut.String())
	}
	l, ok := r.next(waitFor)
	if !ok || !strings.HasPrefix(l.text, "panic: hilrun-sim") {
		t.Fatalf("UART: %q, want the panic message", l.text)
	}
	if _, err := os.Stat(dir + "/" + BootCountFile); !os.IsNotExist(err) {
		t.Errorf("crash-at-boot got as far as the boot counter: %v", err)
	}
}

// TestMisbehaveFromEnv: the environment variable selects modes too (and is
// validated like the flag).
func TestMisbehaveFromEnv(t *testing.T) {
	r := openRawPTY(t)
	t.Setenv(MisbehaveEnv, " bad-crc:1 ,")
	var errOut bytes.Buffer
	code := make(chan int, 1)
	go func() { code <- mainWith([]string{"--uart", r.tty, "--state", t.TempDir()}, &errOut) }()
	hello := r.frames(1)[0]
	if !errors.Is(hello.err, agentproto.ErrCRC) {
		t.Fatalf("hello %q with bad-crc:1 from the environment: %v, want a CRC error", hello.text, hello.err)
	}
	r.send(1, agentproto.OpReset, nil)
	select {
	case c := <-code:
		if c != ExitReset {
			t.Fatalf("exit %d after reset", c)
		}
	case <-time.After(waitFor):
		t.Fatal("firmware did not reset")
	}
	t.Setenv(MisbehaveEnv, "bogus")
	if c := mainWith([]string{"--uart", r.tty, "--state", t.TempDir()}, &errOut); c != 2 {
		t.Fatalf("bad mode in the environment: exit %d", c)
	}
}
