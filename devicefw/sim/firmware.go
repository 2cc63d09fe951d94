// Package sim is hilrun's reference firmware in Go: a complete IoT Hub
// device client on paho.mqtt.golang plus the agent of devicefw/PROTOCOL.md,
// run over the UART it is given. Built for the host and placed behind a
// pseudo-terminal by the virtual board (rig/board/sim), it lets the whole
// suite run with real serial, TLS, MQTT and hub but no hardware.
//
// Behaviour follows the requirement catalog; where the documents leave a
// choice, it does what the official SDKs do (device-sdk-behaviours.md), and
// says so. Defect switches (defects.go, DEFECTS.md) make it break exactly
// one rule each, which is how the suite proves its specs can fail.
package sim

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/hilrun/hilrun/devicefw/agentproto"
)

// FirmwareName and FirmwareVersion identify this firmware in hello.
const (
	FirmwareName    = "hilrun-sim"
	FirmwareVersion = "0.1.0"
)

// ErrReset is returned by Run when the host asked for a reset.
var ErrReset = errors.New("reset requested")

// Options configure one boot of the firmware.
type Options struct {
	UART      io.ReadWriter
	Defects   []string // flash-time defect switches
	Board     string   // reported in hello; default "sim"
	BootCount int
	// NVS survives soft resets (Run called again with the same value), like
	// an ESP32's non-volatile storage: configuration, credentials, trust.
	NVS *NVS
	// RTC survives soft resets but not power cycles.
	RTC *RTC
	// Changed, when set, is called after the firmware changed its NVS
	// ("nvs") or set its RTC ("rtc"), so that Boot can persist them.
	Changed func(what string)
	// Misbehave are rig misbehaviour modes (misbehave.go), not defects.
	Misbehave []string
	// Cloud is the image's cloud: "" (IoT Hub) or CloudAWS (aws.go).
	Cloud string
}

// What Options.Changed reports.
const (
	changedNVS = "nvs"
	changedRTC = "rtc"
)

// changed tells the boot loader that NVS or the RTC changed.
func (fw *Firmware) changed(what string) {
	if fw.opts.Changed != nil {
		fw.opts.Changed(what)
	}
}

// NVS is the firmware's persistent configuration.
type NVS struct {
	mu      sync.Mutex
	Config  agentproto.Config
	Trust   []*x509.Certificate
	Cert    *tls.Certificate
	Cert2   *tls.Certificate // secondary device certificate (CERT-006)
	Methods map[string]agentproto.MethodBehaviour
	Defects []string
	OTA     OTAStore                  // the installed OTA application (ota.go)
	PnP     *agentproto.PnPDefinition // pnp.define; forgotten by method.clear
}

// RTC is the virtual real-time clock: it starts at the Unix epoch at power
// on, like an ESP32 without a battery-backed clock, until set or synced.
type RTC struct {
	mu     sync.Mutex
	offset time.Duration // RTC time = offset + time since base
	base   time.Time
	synced bool
	set    chan struct{} // closed and replaced by Set (waiters for time)
}

// NewRTC returns a clock that reads 1970-01-01T00:00:00Z now.
func NewRTC() *RTC {
	return &RTC{base: time.Now(), offset: 0, set: make(chan struct{})}
}

// Now returns the RTC time.
func (r *RTC) Now() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return time.Unix(0, 0).Add(r.offset + time.Since(r.base))
}

// Set sets the RTC.
func (r *RTC) Set(t time.Time, synced bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.base = time.Now()
	r.offset = t.Sub(time.Unix(0, 0))
	r.synced = synced
	if r.set != nil {
		close(r.set)
	}
	r.set = make(chan struct{})
}

// Changed returns a channel closed at the next Set.
func (r *RTC) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.set == nil {
		r.set = make(chan struct{})
	}
	return r.set
}

// Synced reports whether the clock was set or synced since power on.
func (r *RTC) Synced() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.synced
}

// Firmware is one running boot.
type Firmware struct {
	opts    Options
	nvs     *NVS
	rtc     *RTC
	defects defectSet
	start   time.Time

	wmu sync.Mutex
	seq uint64

	// Rig misbehaviour (misbehave.go); the counters are guarded by wmu.
	mis           misbehaviour
	silenced      bool   // the UART is muted and requests are ignored
	helloAnswered bool   // silent-after-hello answered its one hello request
	frames        uint64 // frames written this boot (bad-crc)

	client *deviceClient
	aws    *awsClient // the AWS IoT client of a --cloud aws image (aws.go); nil otherwise
	reset  chan struct{}
	sntp   sntpState // the SNTP client's memory (kiss-o'-death hold-offs)
}

// Run boots the firmware on opts.UART and serves the agent protocol until
// ctx ends, the UART fails, or a reset is requested (ErrReset).
func Run(ctx context.Context, opts Options) error {
	fw, err := newFirmware(opts)
	if err != nil {
		return err
	}
	return fw.run(ctx)
}

// newFirmware prepares a boot without starting it.
func newFirmware(opts Options) (*Firmware, error) {
	if opts.Board == "" {
		opts.Board = "sim"
	}
	if opts.NVS == nil {
		opts.NVS = &NVS{}
	}
	if opts.RTC == nil {
		opts.RTC = NewRTC()
	}
	if opts.UART == nil {
		return nil, errors.New("no UART")
	}
	if err := ValidateDefects(opts.Defects); err != nil {
		return nil, err
	}
	mis, err := parseMisbehave(opts.Misbehave)
	if err != nil {
		return nil, err
	}
	fw := &Firmware{opts: opts, nvs: opts.NVS, rtc: opts.RTC, start: time.Now(), reset: make(chan struct{}, 1), defects: defectSet{}, mis: mis}
	fw.nvs.mu.Lock()
	for _, d := range append(append([]string(nil), opts.Defects...), fw.nvs.Defects...) {
		fw.defects[d] = true
	}
	fw.nvs.mu.Unlock()
	fw.client = newDeviceClient(fw)
	if opts.Cloud == CloudAWS {
		fw.aws = newAWSClient(fw)
	}
	return fw, nil
}

func (fw *Firmware) run(ctx context.Context) error {
	opts := fw.opts
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer fw.client.shutdown()
	if fw.aws != nil {
		defer fw.aws.shutdown()
	}

	fw.logf("I", "boot %d: %s %s on board %s", opts.BootCount, FirmwareName, FirmwareVersion, opts.Board)
	if len(opts.Misbehave) > 0 {
		// Said on the console so that a report of a deliberately broken
		// rig shows why it broke.
		fw.logf("W", "rig misbehaviour modes (not defects): %s", strings.Join(opts.Misbehave, ", "))
	}
	fw.emit(agentproto.EvHello, fw.hello())
	if fw.mis.silentAfterHello {
		fw.wmu.Lock()
		fw.silenced = true
		fw.wmu.Unlock()
	}

	lines := make(chan []byte, 64)
	readErr := make(chan error, 1)
	go func() { readErr <- readLines(opts.UART, lines) }()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-fw.reset:
			return ErrReset
		case err := <-readErr:
			return fmt.Errorf("uart: %w", err)
		case line := <-lines:
			fw.handleLine(ctx, line)
		}
	}
}

// readLines splits the UART stream into lines, bounding their length: an
// overlong line is delivered truncated (it then fails to decode).
func readLines(r io.Reader, out chan<- []byte) error {
	buf := make([]byte, 4096)
	var line []byte
	for {
		n, err := r.Read(buf)
		for _, b := range buf[:n] {
			if b == '\n' {
				out <- line
				line = nil
				continue
			}
			if len(line) < agentproto.MaxFrame+1 {
				line = append(line, b)
			}
		}
		if err != nil {
			return err
		}
	}
}

func (fw *Firmware) handleLine(ctx context.Context, line []byte) {
	_, f, err := agentproto.Split(line)
	if errors.Is(err, agentproto.ErrNotFrame) {
		return // console input that is not for the agent
	}
	if fw.silencedNow() {
		fw.answerLastHello(f, err)
		return // a hung firmware reads its UART but never answers
	}
	if err != nil {
		fw.send(agentproto.Failure(0, agentproto.Errorf(agentproto.ErrBadFrame, "%v", err)))
		return
	}
	if f.T != agentproto.KindRequest {
		fw.send(agentproto.Failure(f.ID, agentproto.Errorf(agentproto.ErrBadFrame, "device accepts only requests, got %q", f.T)))
		return
	}
	go fw.serve(ctx, f)
}

func (fw *Firmware) serve(ctx context.Context, f *agentproto.Frame) {
	defer func() {
		if r := recover(); r != nil {
			// The agent must never take the device down; report instead.
			fw.logf("E", "panic in %s: %v\n%s", f.Op, r, debug.Stack())
			fw.send(agentproto.Failure(f.ID, agentproto.Errorf(agentproto.ErrInternal, "panic: %v", r)))
		}
	}()
	data, aerr := fw.dispatch(ctx, f.Op, f.Args)
	if aerr != nil {
		fw.send(agentproto.Failure(f.ID, aerr))
		return
	}
	res, err := agentproto.Response(f.ID, data)
	if err != nil {
		fw.send(agentproto.Failure(f.ID, agentproto.Errorf(agentproto.ErrInternal, "%v", err)))
		return
	}
	fw.send(res)
	if f.Op == agentproto.OpReset {
		fw.reset <- struct{}{}
	}
}

func decodeArgs(raw json.RawMessage, v any) *agentproto.Error {
	if len(raw) == 0 {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return agentproto.Errorf(agentproto.ErrBadArgs, "%v", err)
	}
	return nil
}

func (fw *Firmware) hello() agentproto.Hello {
	caps := []string{agentproto.CapSAS, agentproto.CapX509, agentproto.CapModules, agentproto.CapWebSockets,
		agentproto.CapPersistentSession, agentproto.CapC2D, agentproto.CapMethods, agentproto.CapTwin,
		agentproto.CapCertRotation, agentproto.CapTrustUpdate, agentproto.CapWill, agentproto.CapDefects, agentproto.CapSNTP,
		agentproto.CapCleanSession1, agentproto.CapTelemetryQoS0, agentproto.CapCTime, agentproto.CapModuleX509,
		agentproto.CapLocalTwinValidation, agentproto.CapOTA, agentproto.CapFileUpload, agentproto.CapDPS, agentproto.CapPnP, agentproto.CapDNS,
		agentproto.CapHeartbeat, agentproto.CapTracing, agentproto.CapPnPRefuse}
	fw.client.mu.Lock()
	defects := fw.defects.list()
	fw.client.mu.Unlock()
	client := "paho.mqtt.golang"
	if fw.aws != nil {
		caps, client = awsCaps, "paho.mqtt.golang (AWS IoT Core)"
	}
	h := agentproto.Hello{Proto: agentproto.Version, Firmware: FirmwareName, FWVersion: FirmwareVersion, Build: buildHash(),
		Client: client, ClientVer: "v1.5.1", Board: fw.opts.Board, Caps: caps, Defects: defects,
		BootCount: fw.opts.BootCount, MaxFrame: agentproto.MaxFrame}
	if fw.aws == nil {
		h.OperationTimeout = opTimeoutHello()  // RECON-005
		h.RetryDefaults = retryDefaultsHello() // RECON-002
	}
	return h
}

func buildHash() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return s.Value[:12]
			}
		}
		return bi.Main.Version
	}
	return "unknown"
}

func (fw *Firmware) uptimeMS() int64 { return time.Since(fw.start).Milliseconds() }

// emit sends an event with the next sequence number.
func (fw *Firmware) emit(name string, data any) {
	fw.wmu.Lock()
	defer fw.wmu.Unlock()
	fw.seq++
	if n := uint64(fw.mis.dropEvents); n > 0 && fw.seq > 1 && fw.seq%n == 0 {
		return // drop-events: the seq is used up, the host sees the gap
	}
	f, err := agentproto.Event(fw.seq, fw.uptimeMS(), name, data)
	if err != nil {
		return
	}
	fw.writeFrameLocked(f)
}

func (fw *Firmware) send(f *agentproto.Frame) {
	fw.wmu.Lock()
	defer fw.wmu.Unlock()
	fw.writeFrameLocked(f)
}

func (fw *Firmware) writeFrameLocked(f *agentproto.Frame) {
	if fw.silencedLocked() {
		return
	}
	fw.writeFrameAlwaysLocked(f)
}

// writeFrameAlwaysLocked writes a frame even when the UART is muted (the one
// hello answer of silent-after-hello).
func (fw *Firmware) writeFrameAlwaysLocked(f *agentproto.Frame) {
	line, err := agentproto.Encode(f)
	if err != nil {
		// Too big for a frame: shrink to an error the host can see.
		line, _ = agentproto.Encode(agentproto.Failure(f.ID, agentproto.Errorf(agentproto.ErrInternal, "response too large: %v", err)))
	}
	fw.frames++
	if n := uint64(fw.mis.badCRC); n > 0 && fw.frames%n == 0 {
		line = corruptCRC(line)
	}
	_, _ = fw.opts.UART.Write(line)
}

// logf writes an ESP-IDF-style console line (not a frame).
func (fw *Firmware) logf(level, format string, a ...any) {
	fw.wmu.Lock()
	defer fw.wmu.Unlock()
	if fw.silencedLocked() {
		return // a hung firmware prints nothing either
	}
	msg := fmt.Sprintf(format, a...)
	_, _ = fmt.Fprintf(fw.opts.UART, "%s (%d) hilrun-sim: %s\r\n", level, fw.uptimeMS(), msg)
}
