package board

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	"go.bug.st/serial"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/hilrun/hilrun/devicefw/agentproto"
)

// ExitReset is the exit status with which firmware asks to be rebooted (the
// agent's reset operation, a watchdog). It must match devicefw/sim.ExitReset;
// a test keeps the two in step.
const ExitReset = 3

// SimConfig configures a virtual board.
type SimConfig struct {
	// Name appears in reports; default "sim0".
	Name string
	// StateDir holds the installed image, the firmware's NVS and RTC files,
	// the firmware's stderr log and a stable symlink to the serial port
	// ("tty"). Required; created if missing.
	StateDir string
	// Defects are defect switches passed to the firmware at every boot
	// (--defect NAME), the "flash-time" way of switching them on.
	Defects []string
	// CrashLoopCrashes crashes within CrashWindow with no hello in between
	// make a crash loop: the board stops restarting the firmware and
	// reports a *CrashLoopError (Fault, Faulted). Defaults
	// DefaultCrashLoopCrashes and DefaultCrashWindow.
	CrashLoopCrashes int
	CrashWindow      time.Duration
	// CrashBackoff is the delay before the first restart of a crashed
	// firmware; it doubles with every crash of a loop, up to
	// MaxCrashBackoff. Default DefaultCrashBackoff.
	CrashBackoff time.Duration
	// LogDir, when set, is where the firmware's log (FirmwareLogFile: its
	// stderr and stdout, appended across boots) is written instead of
	// StateDir, so that it outlives a temporary state directory: the host
	// passes its report directory. Created if missing.
	LogDir string
}

// Crash-loop policy of the virtual board, modelled on a watchdog that
// reboots a crashed chip after a short pause and gives up on an image that
// never comes up.
const (
	// DefaultCrashLoopCrashes: three crashes with no hello in between are a
	// crash loop. One crash can be a genuine fault of a good image (the
	// first restart shows it); a second and third without the firmware
	// ever saying hello mean it will not come up, and every further restart
	// only delays the rig-fault verdict.
	DefaultCrashLoopCrashes = 3
	// DefaultCrashWindow: crashes further apart than this are independent
	// (a firmware that runs for ten seconds between crashes is not looping
	// at boot).
	DefaultCrashWindow = 10 * time.Second
	// DefaultCrashBackoff is the pause before restarting a crashed firmware
	// (a watchdog reboot is not instant either). Short, so that a crash
	// loop is declared within about a second (200 ms + 400 ms plus three
	// process starts), far inside the host's hello timeout.
	DefaultCrashBackoff = 200 * time.Millisecond
	// MaxCrashBackoff caps the doubling restart delay.
	MaxCrashBackoff = 2 * time.Second
)

// Files the virtual board writes.
const (
	// FirmwareLogFile is the firmware's stderr and stdout log, in
	// SimConfig.LogDir (else StateDir).
	FirmwareLogFile = "firmware.log"
	// FirmwarePIDFile, in StateDir, holds the running firmware's process ID
	// (decimal and a newline), rewritten at every start and removed when
	// that process ends: for tests and tools that SIGSTOP the firmware.
	FirmwarePIDFile = "firmware.pid"
)

// ErrCrashLoop is what a *CrashLoopError matches with errors.Is.
var ErrCrashLoop = errors.New("crash loop")

// CrashLoopError is the virtual board's rig fault: its firmware crashed
// again and again without saying hello, and the board stopped restarting it.
type CrashLoopError struct {
	Board   string
	Crashes int           // crashes counted into the loop
	Span    time.Duration // from the first of them to the last
	Last    Exit          // the last crash
	Log     string        // the firmware log file (SimConfig.LogDir, else StateDir)
}

func (e *CrashLoopError) Error() string {
	var tail []string
	for _, l := range e.Last.Stderr {
		if l = strings.TrimSpace(l); l != "" { // one line of text: blank lines and indentation say nothing
			tail = append(tail, l)
		}
	}
	if len(tail) > crashTailLines {
		tail = tail[len(tail)-crashTailLines:]
	}
	return fmt.Sprintf("crash loop: firmware crashed %d times in %.1fs; last exit: %s; stderr tail: %s; firmware log: %s",
		e.Crashes, e.Span.Seconds(), e.Last.Reason, strings.Join(tail, " | "), e.Log)
}

// Is makes errors.Is(err, ErrCrashLoop) hold.
func (e *CrashLoopError) Is(target error) bool { return target == ErrCrashLoop }

// crashTailLines is how much of the stderr tail a crash-loop error quotes
// (a Go panic's message and first frames; the whole tail is in Exits).
const crashTailLines = 6

// Sim is the virtual board: firmware as a host process behind a
// pseudo-terminal.
//
// Two pseudo-terminals are bridged: the firmware opens the slave of the
// first as its UART ("hands the firmware the slave device path"), the
// harness opens the slave of the second through go.bug.st/serial, and the
// board copies bytes between the two masters. The board therefore owns the
// wire: it survives firmware restarts (the harness's port stays open across
// a reset, as with a CP2102 bridge), flushes bytes sent while the firmware
// is down (a rebooting chip drops them too), and can write its own notes
// into the console stream when the firmware process crashes.
//
// Both slaves are kept open by the board and put in raw mode at creation,
// so the masters never read EIO when a peer closes and nothing is echoed
// back into the firmware (go-dependencies.md §3).
type Sim struct {
	cfg SimConfig

	fwMaster, fwSlave     *os.File // firmware side
	hostMaster, hostSlave *os.File // harness side
	hostWrite             sync.Mutex

	mu       sync.Mutex
	img      *Image // installed image (path inside StateDir)
	proc     *simProcess
	powered  bool
	crashes  []time.Time // crashes since the last hello (within CrashWindow)
	restart  *time.Timer // pending restart of a crashed firmware
	fault    *CrashLoopError
	faulted  chan struct{} // closed when fault is set
	exits    []Exit
	closed   bool
	bridgeWG sync.WaitGroup
}

// Exit records how a firmware process ended.
type Exit struct {
	At     time.Time `json:"at"`
	Code   int       `json:"code"`             // -1 when killed by a signal
	Reason string    `json:"reason"`           // "reset requested", "killed by board", "crashed"
	Stderr []string  `json:"stderr,omitempty"` // last lines of the process's stderr
}

type simProcess struct {
	cmd     *exec.Cmd
	done    chan struct{}
	stopped bool // the board killed it on purpose
	stderr  *tailBuffer
}

// NewSim creates a virtual board, powered off with no image installed.
func NewSim(cfg SimConfig) (*Sim, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("board: sim needs a state directory")
	}
	if cfg.Name == "" {
		cfg.Name = "sim0"
	}
	if cfg.CrashLoopCrashes <= 0 {
		cfg.CrashLoopCrashes = DefaultCrashLoopCrashes
	}
	if cfg.CrashWindow <= 0 {
		cfg.CrashWindow = DefaultCrashWindow
	}
	if cfg.CrashBackoff <= 0 {
		cfg.CrashBackoff = DefaultCrashBackoff
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("board: state directory: %w", err)
	}
	if cfg.LogDir != "" {
		if err := os.MkdirAll(cfg.LogDir, 0o755); err != nil {
			return nil, fmt.Errorf("board: log directory: %w", err)
		}
	}
	s := &Sim{cfg: cfg, faulted: make(chan struct{})}
	var err error
	if s.fwMaster, s.fwSlave, err = openRawPTY(); err != nil {
		return nil, err
	}
	if s.hostMaster, s.hostSlave, err = openRawPTY(); err != nil {
		s.closeFiles()
		return nil, err
	}
	link := filepath.Join(cfg.StateDir, "tty")
	_ = os.Remove(link)
	_ = os.Symlink(s.hostSlave.Name(), link) // convenience only
	s.bridgeWG.Add(2)
	go s.copyLoop(s.fwMaster, s.hostMaster, &s.hostWrite, &helloScanner{onHello: s.sawHello}) // firmware → harness
	go s.copyLoop(s.hostMaster, s.fwMaster, nil, nil)                                         // harness → firmware
	return s, nil
}

// openRawPTY opens a pty pair, puts the slave in raw mode and makes the
// master non-blocking so that Close interrupts a pending Read.
func openRawPTY() (master, slave *os.File, err error) {
	master, slave, err = pty.Open()
	if err != nil {
		return nil, nil, fmt.Errorf("board: open pseudo-terminal: %w", err)
	}
	if _, err := term.MakeRaw(int(slave.Fd())); err != nil {
		master.Close()
		slave.Close()
		return nil, nil, fmt.Errorf("board: raw mode on %s: %w", slave.Name(), err)
	}
	if err := unix.SetNonblock(int(master.Fd()), true); err != nil {
		master.Close()
		slave.Close()
		return nil, nil, fmt.Errorf("board: non-blocking pty master: %w", err)
	}
	return master, slave, nil
}

func (s *Sim) copyLoop(from, to *os.File, lock *sync.Mutex, scan *helloScanner) {
	defer s.bridgeWG.Done()
	buf := make([]byte, 4096)
	for {
		n, err := from.Read(buf)
		if n > 0 && scan != nil {
			scan.feed(buf[:n])
		}
		if n > 0 {
			if lock != nil {
				lock.Lock()
			}
			_, werr := to.Write(buf[:n])
			if lock != nil {
				lock.Unlock()
			}
			if werr != nil {
				return
			}
		}
		if err != nil {
			return // closed by Close
		}
	}
}

// Info implements Board.
func (s *Sim) Info() Info {
	return Info{Profile: "sim", Name: s.cfg.Name, Port: s.hostSlave.Name(), Baud: 115200}
}

// Open implements Board: the harness side of the virtual UART through
// go.bug.st/serial, exactly as a real port is opened. InitialStatusBits
// stays nil: setting modem bits fails with ENOTTY on a pty.
func (s *Sim) Open(ctx context.Context) (io.ReadWriteCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := serial.Open(s.hostSlave.Name(), &serial.Mode{BaudRate: 115200, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit})
	if err != nil {
		return nil, fmt.Errorf("board %s: open %s: %w", s.cfg.Name, s.hostSlave.Name(), err)
	}
	return p, nil
}

// Flash implements Board: the image's executable is copied into the state
// directory (as esptool writes the app partition), the boot counter starts
// again, NVS is kept (esptool leaves the NVS partition alone unless asked to
// erase), and the board boots the new image.
func (s *Sim) Flash(ctx context.Context, img Image) error {
	if img.Path == "" {
		return errors.New("board: sim image needs an executable path")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("board: closed")
	}
	s.stopLocked(ctx)
	dst := filepath.Join(s.cfg.StateDir, "firmware.bin")
	if err := copyFile(img.Path, dst); err != nil {
		return fmt.Errorf("board: flash %s: %w", img.Path, err)
	}
	_ = os.Remove(filepath.Join(s.fwStateDir(), "bootcount"))
	installed := Image{Path: dst, Args: append([]string(nil), img.Args...), Env: append([]string(nil), img.Env...)}
	s.img = &installed
	s.powered = true
	s.clearFaultLocked()
	return s.startLocked()
}

// Reset implements Board: the firmware process is killed (EN pulled low)
// and started again. Volatile state that a reset keeps on an ESP32 (the
// RTC) survives; the firmware's NVS always does.
func (s *Sim) Reset(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.powered {
		return ErrPoweredOff
	}
	if s.img == nil {
		return errors.New("board: nothing flashed")
	}
	s.stopLocked(ctx)
	s.clearFaultLocked() // a host reset is a new attempt, as a watchdog's would be
	return s.startLocked()
}

// PowerOff implements Board: the process is killed and the RTC is lost.
func (s *Sim) PowerOff(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked(ctx)
	s.powered = false
	_ = os.Remove(filepath.Join(s.fwStateDir(), "rtc.json"))
	return nil
}

// PowerOn implements Board.
func (s *Sim) PowerOn(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.powered && s.proc != nil {
		return nil
	}
	s.stopLocked(ctx) // a crashed firmware may have a restart pending
	s.powered = true
	if s.img == nil {
		return nil // a blank board: nothing boots
	}
	s.clearFaultLocked()
	return s.startLocked()
}

// PowerCycle is PowerOff then PowerOn: the recovery for a hung firmware
// that also drops the RTC.
func (s *Sim) PowerCycle(ctx context.Context) error {
	if err := s.PowerOff(ctx); err != nil {
		return err
	}
	return s.PowerOn(ctx)
}

// FirmwarePID returns the process ID of the running firmware, 0 when none
// runs (powered off, crashed and waiting for its restart, crash loop). The
// same number is in FirmwarePIDFile in the state directory.
func (s *Sim) FirmwarePID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.cmd.Process.Pid
}

// LogPath returns the firmware log file (FirmwareLogFile in
// SimConfig.LogDir, else in StateDir). It exists from the first boot on and
// is never removed by the board.
func (s *Sim) LogPath() string {
	dir := s.cfg.LogDir
	if dir == "" {
		dir = s.cfg.StateDir
	}
	return filepath.Join(dir, FirmwareLogFile)
}

// Fault returns the board's rig fault, a *CrashLoopError, or nil. Flash,
// Reset and PowerOn clear it (a new attempt).
func (s *Sim) Fault() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fault == nil {
		return nil
	}
	return s.fault
}

// Faulted returns a channel closed when the board gives up on its firmware
// (a crash loop; Fault says why). Take it before waiting: a Flash, Reset or
// PowerOn after a fault starts a new attempt with a new channel.
func (s *Sim) Faulted() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faulted
}

// clearFaultLocked forgets crashes and a crash-loop fault.
func (s *Sim) clearFaultLocked() {
	s.crashes = nil
	if s.fault != nil {
		s.fault = nil
		s.faulted = make(chan struct{})
	}
}

// sawHello is called by the bridge for every hello event the firmware
// sends: the firmware came up, so earlier crashes are not a loop.
func (s *Sim) sawHello() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.crashes = nil
}

// Exits returns how firmware processes ended so far (crashes included).
func (s *Sim) Exits() []Exit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Exit(nil), s.exits...)
}

// Running reports whether a firmware process is up.
func (s *Sim) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil
}

// Close implements Board: kills the firmware and closes both ptys.
func (s *Sim) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.stopLocked(context.Background())
	s.mu.Unlock()
	s.closeFiles()
	s.bridgeWG.Wait()
	_ = os.Remove(filepath.Join(s.cfg.StateDir, "tty"))
	return nil
}

func (s *Sim) closeFiles() {
	for _, f := range []*os.File{s.fwMaster, s.fwSlave, s.hostMaster, s.hostSlave} {
		if f != nil {
			f.Close()
		}
	}
}

func (s *Sim) fwStateDir() string { return filepath.Join(s.cfg.StateDir, "nvs") }

// startLocked boots the installed image.
func (s *Sim) startLocked() error {
	if err := os.MkdirAll(s.fwStateDir(), 0o700); err != nil {
		return err
	}
	// A rebooting chip loses whatever sat in its UART FIFO.
	_ = unix.IoctlSetInt(int(s.fwSlave.Fd()), unix.TCFLSH, unix.TCIFLUSH)
	args := append([]string(nil), s.img.Args...)
	args = append(args, "--uart", s.fwSlave.Name(), "--state", s.fwStateDir(), "--board", s.cfg.Name)
	for _, d := range s.cfg.Defects {
		args = append(args, "--defect", d)
	}
	cmd := exec.Command(s.img.Path, args...)
	cmd.Env = append(os.Environ(), s.img.Env...)
	cmd.Dir = s.cfg.StateDir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	s.cancelRestartLocked()
	logf, err := os.OpenFile(s.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	tail := &tailBuffer{max: 40}
	cmd.Stdout = logf
	cmd.Stderr = io.MultiWriter(logf, tail)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("board: start firmware %s: %w", s.img.Path, err)
	}
	p := &simProcess{cmd: cmd, done: make(chan struct{}), stderr: tail}
	s.proc = p
	pid := []byte(strconv.Itoa(cmd.Process.Pid) + "\n")
	if err := writeFileAtomic(s.pidPath(), pid); err != nil {
		s.noteLocked("cannot write %s: %v", s.pidPath(), err)
	}
	go s.supervise(p, logf)
	return nil
}

func (s *Sim) pidPath() string { return filepath.Join(s.cfg.StateDir, FirmwarePIDFile) }

// cancelRestartLocked drops a pending restart of a crashed firmware.
func (s *Sim) cancelRestartLocked() {
	if s.restart != nil {
		s.restart.Stop()
		s.restart = nil
	}
}

// writeFileAtomic replaces path so that a reader never sees half of it.
func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// stopLocked kills the running firmware (or cancels the pending restart of
// a crashed one) and waits for it. SIGKILL ends a hung or SIGSTOPped
// firmware too; the SIGCONT after it only makes sure that a stopped process
// group is scheduled to die at once rather than when something continues it.
func (s *Sim) stopLocked(ctx context.Context) {
	s.cancelRestartLocked()
	p := s.proc
	if p == nil {
		return
	}
	p.stopped = true
	s.proc = nil
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGCONT)
	s.mu.Unlock()
	select {
	case <-p.done:
	case <-ctx.Done():
		<-p.done // SIGKILL cannot be ignored; this is short
	}
	s.mu.Lock()
}

// supervise waits for a firmware process and decides what happens next:
// a requested reset reboots, a crash is reported into the console stream
// (as a panic message would be on a real board) and reboots within the
// crash budget, a kill by the board ends quietly.
func (s *Sim) supervise(p *simProcess, logf *os.File) {
	err := p.cmd.Wait()
	logf.Close()
	code := p.cmd.ProcessState.ExitCode()
	s.mu.Lock()
	defer func() {
		s.mu.Unlock()
		close(p.done)
	}()
	if b, rerr := os.ReadFile(s.pidPath()); rerr == nil && strings.TrimSpace(string(b)) == strconv.Itoa(p.cmd.Process.Pid) {
		_ = os.Remove(s.pidPath()) // never leave a PID that may be reused
	}
	ex := Exit{At: time.Now(), Code: code}
	switch {
	case p.stopped:
		ex.Reason = "killed by board"
		s.exits = append(s.exits, ex)
		return
	case code == ExitReset:
		ex.Reason = "reset requested"
		s.exits = append(s.exits, ex)
		if s.proc == p && !s.closed {
			s.proc = nil
			if err := s.startLocked(); err != nil {
				s.noteLocked("firmware restart after reset failed: %v", err)
			}
		}
		return
	}
	ex.Reason = "crashed"
	if err != nil {
		ex.Reason = "crashed: " + err.Error()
	}
	ex.Stderr = p.stderr.lines()
	s.exits = append(s.exits, ex)
	if s.proc != p || s.closed {
		return
	}
	s.proc = nil
	s.noteLocked("firmware process exited (%s); last stderr: %s", ex.Reason, strings.Join(ex.Stderr, " | "))
	now := ex.At
	recent := s.crashes[:0]
	for _, t := range s.crashes {
		if now.Sub(t) < s.cfg.CrashWindow {
			recent = append(recent, t)
		}
	}
	s.crashes = append(recent, now)
	if n := len(s.crashes); n >= s.cfg.CrashLoopCrashes {
		s.fault = &CrashLoopError{Board: s.cfg.Name, Crashes: n, Span: now.Sub(s.crashes[0]), Last: ex, Log: s.LogPath()}
		close(s.faulted)
		s.noteLocked("%v; board left stopped", s.fault)
		return
	}
	// Restart after a pause that doubles with every crash of the loop.
	delay := s.cfg.CrashBackoff << (len(s.crashes) - 1)
	if delay > MaxCrashBackoff || delay <= 0 {
		delay = MaxCrashBackoff
	}
	var t *time.Timer
	t = time.AfterFunc(delay, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.restart != t || s.closed || !s.powered || s.proc != nil {
			return // cancelled: reset, power-off, flash or Close came first
		}
		s.restart = nil
		if err := s.startLocked(); err != nil {
			s.noteLocked("firmware restart after crash failed: %v", err)
		}
	})
	s.restart = t
}

// helloScanner watches the firmware's output for hello events, which tell
// the board that the firmware came up (crash-loop detection). It sees the
// raw byte stream, so it splits lines itself, bounded like a frame.
type helloScanner struct {
	line    []byte
	over    bool // the current line exceeded a frame; skip to its end
	onHello func()
}

var helloMarker = []byte(`"ev":"` + agentproto.EvHello + `"`)

func (h *helloScanner) feed(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if !h.over {
			if len(h.line)+len(chunk) > agentproto.MaxFrame {
				h.over, h.line = true, h.line[:0]
			} else {
				h.line = append(h.line, chunk...)
			}
		}
		if i < 0 {
			return
		}
		if !h.over && bytes.Contains(h.line, helloMarker) {
			if _, f, err := agentproto.Split(h.line); err == nil && f.T == agentproto.KindEvent && f.Ev == agentproto.EvHello {
				h.onHello()
			}
		}
		h.line, h.over = h.line[:0], false
		p = p[i+1:]
	}
}

// noteLocked writes a board-level line into the console stream, where a
// real board's panic handler output would appear.
func (s *Sim) noteLocked(format string, a ...any) {
	line := "\r\n[hilrun-sim board] " + fmt.Sprintf(format, a...) + "\r\n"
	s.hostWrite.Lock()
	_, _ = s.hostMaster.Write([]byte(line))
	s.hostWrite.Unlock()
}

// DefaultSimImage is the reference firmware built into the running hilrun
// binary: the executable itself with the hidden sim-firmware subcommand.
func DefaultSimImage() (Image, error) {
	exe, err := os.Executable()
	if err != nil {
		return Image{}, fmt.Errorf("board: locate the hilrun executable for the virtual board's firmware: %w", err)
	}
	return Image{Path: exe, Args: []string{"sim-firmware"}}, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o700)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// tailBuffer keeps the last max lines written to it.
type tailBuffer struct {
	mu      sync.Mutex
	max     int
	partial []byte
	buf     []string
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.partial = append(t.partial, p...)
	for {
		i := bytes.IndexByte(t.partial, '\n')
		if i < 0 {
			break
		}
		t.buf = append(t.buf, strings.TrimRight(string(t.partial[:i]), "\r"))
		t.partial = t.partial[i+1:]
	}
	if len(t.partial) > 4096 { // a runaway line without newline stays bounded
		t.partial = t.partial[len(t.partial)-4096:]
	}
	t.partial = append([]byte(nil), t.partial...)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := append([]string(nil), t.buf...)
	if len(t.partial) > 0 {
		out = append(out, string(t.partial))
	}
	return out
}

// WithMisbehave returns img with rig misbehaviour modes of the reference
// firmware (devicefw/sim, "--misbehave MODE") added to its arguments. They
// belong to the image, not to the board: they hold for every boot of it
// (reset, power cycle) as a bad image on flash would, and flashing an image
// without them clears them.
func WithMisbehave(img Image, modes []string) Image {
	out := Image{Path: img.Path, Args: append([]string(nil), img.Args...), Env: append([]string(nil), img.Env...)}
	for _, m := range modes {
		out.Args = append(out.Args, "--misbehave", m)
	}
	return out
}
