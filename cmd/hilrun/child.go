package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Ginkgo runs a suite once per process, so everything that runs the suite
// more than once — `hilrun selftest` (once per defect) and `hilrun run
// --pool` (once per board) — starts `hilrun run` child processes from this
// executable. childRun is that child: its output goes to <Dir>/output.txt
// and, when Live is set, line by line to Live with a prefix; when ctx ends
// the child gets SIGINT (it then finishes its report: the specs run so far,
// marked interrupted) and, after Grace, its process group is killed.

type childRun struct {
	Exe    string
	Args   []string
	Env    []string    // added to the environment
	Dir    string      // output.txt goes here (created)
	Live   *lineWriter // optional live output, shared between children
	Prefix string      // prefix of this child's live lines
	// Filter, when set, rewrites each live line (the prefix not added) or
	// drops it (ok false); output.txt keeps every line as written.
	Filter  func(line string) (out string, ok bool)
	Timeout time.Duration // 0: none
	Grace   time.Duration // after ctx ends or the timeout: SIGINT, then SIGKILL after Grace (default 30 s)
}

type childResult struct {
	Code        int    // exit status; -1 when killed by a signal
	Tail        string // last lines of the output, for messages
	Interrupted bool   // ctx ended (or the timeout hit) while the child ran
	Wall        time.Duration
}

// run starts the child and waits for it. err is only for a child that
// could not be started.
func (c childRun) run(ctx context.Context) (childResult, error) {
	if c.Grace == 0 {
		c.Grace = 30 * time.Second
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return childResult{}, err
	}
	f, err := os.Create(filepath.Join(c.Dir, "output.txt"))
	if err != nil {
		return childResult{}, err
	}
	defer f.Close()
	tail := &tailBuffer{max: 16 << 10}
	ws := []io.Writer{f, tail}
	var live *prefixWriter
	if c.Live != nil {
		live = &prefixWriter{lw: c.Live, prefix: c.Prefix, filter: c.Filter}
		ws = append(ws, live)
	}
	out := io.MultiWriter(ws...)

	cmd := exec.Command(c.Exe, c.Args...)
	cmd.Env = append(os.Environ(), c.Env...)
	cmd.Stdout, cmd.Stderr = out, out // one writer: exec copies through one pipe
	// Own process group: a terminal's Ctrl-C reaches the parent only, which
	// forwards exactly one SIGINT (a second one makes Ginkgo skip its
	// cleanup). Pdeathsig: the child stops if the parent dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return childResult{}, fmt.Errorf("start %s: %w", c.Exe, err)
	}
	pid := cmd.Process.Pid
	done := make(chan struct{})
	var interrupted bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var timeout <-chan time.Time
		if c.Timeout > 0 {
			tm := time.NewTimer(c.Timeout)
			defer tm.Stop()
			timeout = tm.C
		}
		select {
		case <-done:
			return
		case <-ctx.Done():
		case <-timeout:
		}
		interrupted = true
		_ = cmd.Process.Signal(os.Interrupt)
		grace := time.NewTimer(c.Grace)
		defer grace.Stop()
		select {
		case <-done:
		case <-grace.C:
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
	}()
	werr := cmd.Wait()
	close(done)
	wg.Wait()
	// Leftovers of the child's process group (it was the leader) go too.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	if live != nil {
		live.flush()
	}
	res := childResult{Code: cmd.ProcessState.ExitCode(), Tail: lastLines(tail.String(), 20), Interrupted: interrupted, Wall: time.Since(t0)}
	var ee *exec.ExitError
	if werr != nil && !errors.As(werr, &ee) {
		return res, werr
	}
	return res, nil
}

// lineWriter serialises whole lines from several children onto one writer.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) line(prefix string, b []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "%s%s\n", prefix, b)
}

// Printf writes a line of the parent's own between the children's lines.
func (l *lineWriter) Printf(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, format, a...)
}

// prefixWriter splits a child's output into lines for a lineWriter.
type prefixWriter struct {
	lw     *lineWriter
	prefix string
	filter func(string) (string, bool)
	buf    []byte
}

func (p *prefixWriter) emit(b []byte) {
	if p.filter == nil {
		p.lw.line(p.prefix, b)
		return
	}
	if out, ok := p.filter(string(b)); ok {
		p.lw.line("", []byte(out))
	}
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		p.emit(bytes.TrimRight(p.buf[:i], "\r"))
		p.buf = p.buf[i+1:]
	}
	if len(p.buf) > 4096 { // a very long line without newline: flush it
		p.flush()
	}
	return len(b), nil
}

func (p *prefixWriter) flush() {
	if len(p.buf) > 0 {
		p.emit(p.buf)
		p.buf = p.buf[:0]
	}
}

// tailBuffer keeps the last max bytes written.
type tailBuffer struct {
	max int
	b   []byte
}

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.b = append(t.b, b...)
	if len(t.b) > 2*t.max {
		t.b = append([]byte(nil), t.b[len(t.b)-t.max:]...)
	}
	return len(b), nil
}

func (t *tailBuffer) String() string {
	if len(t.b) > t.max {
		return string(t.b[len(t.b)-t.max:])
	}
	return string(t.b)
}

func lastLines(s string, n int) string { return tail(s, n) }
