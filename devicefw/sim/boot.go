package sim

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/hilrun/hilrun/certs"
	"github.com/hilrun/hilrun/devicefw/agentproto"
)

// ExitReset is the exit code of a firmware process that the host asked to
// reset; the virtual board starts it again (a soft reset).
const ExitReset = 3

// Files in BootConfig.StateDir.
const (
	NVSFile       = "nvs.json"  // configuration, credentials, trust, methods, defects
	BootCountFile = "bootcount" // boots since the image was flashed
	RTCFile       = "rtc.json"  // RTC across soft resets; the board deletes it on power-off
)

// BootConfig describes one boot of the virtual board's firmware process.
type BootConfig struct {
	UARTPath string   // the pty slave the firmware owns, e.g. /dev/pts/7
	StateDir string   // NVS and boot state of this board
	Board    string   // board name reported in hello (default "sim")
	Defects  []string // flash-time defect switches
	// Misbehave are rig misbehaviour modes (misbehave.go): part of the
	// image's configuration, like Defects, but never defects.
	Misbehave []string
	Cloud     string // "" (IoT Hub) or CloudAWS
}

// nvsFile is NVS on disk. It holds secrets (SAS key, private key): 0600.
type nvsFile struct {
	Config  agentproto.Config                     `json:"config"`
	Trust   []string                              `json:"trust,omitempty"`
	CertPEM string                                `json:"certPem,omitempty"`
	KeyPEM  string                                `json:"keyPem,omitempty"`
	Methods map[string]agentproto.MethodBehaviour `json:"methods,omitempty"`
	Defects []string                              `json:"defects,omitempty"`

	// The secondary device certificate (CERT-006).
	Cert2PEM string `json:"cert2Pem,omitempty"`
	Key2PEM  string `json:"key2Pem,omitempty"`

	// The installed OTA application (ota.go, OTA-002).
	OTA OTAStore `json:"ota,omitempty"`
}

type rtcFile struct {
	UnixMS int64 `json:"unixMs"`
	Synced bool  `json:"synced"`
	HostMS int64 `json:"hostMs"` // host time when saved: the RTC keeps running through a reset
}

// Boot runs the firmware once on cfg.UARTPath with the state in
// cfg.StateDir. It returns ErrReset when the host asked for a reset and nil
// when ctx ended.
func Boot(ctx context.Context, cfg BootConfig) error {
	if cfg.UARTPath == "" || cfg.StateDir == "" {
		return errors.New("boot: UART path and state directory are required")
	}
	if err := ValidateDefects(cfg.Defects); err != nil {
		return err
	}
	mis, err := parseMisbehave(cfg.Misbehave)
	if err != nil {
		return err
	}
	if mis.crashAtBoot {
		// Before NVS or the boot counter: the image dies in its startup
		// code, every time.
		if uart, err := openUART(cfg.UARTPath); err == nil {
			crashAtBootUART(uart)
			uart.Close()
		}
		return ErrCrashAtBoot
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("boot: %w", err)
	}
	nvs, err := loadNVS(filepath.Join(cfg.StateDir, NVSFile))
	if err != nil {
		return fmt.Errorf("boot: %w", err)
	}
	boots, err := bumpBootCount(filepath.Join(cfg.StateDir, BootCountFile))
	if err != nil {
		return fmt.Errorf("boot: %w", err)
	}
	rtc := NewRTC()
	rtcPath := filepath.Join(cfg.StateDir, RTCFile)
	if b, err := os.ReadFile(rtcPath); err == nil {
		var r rtcFile
		if json.Unmarshal(b, &r) == nil {
			elapsed := max(time.Now().UnixMilli()-r.HostMS, 0)
			rtc.Set(time.UnixMilli(r.UnixMS+elapsed), r.Synced)
		}
	}
	uart, err := openUART(cfg.UARTPath)
	if err != nil {
		return fmt.Errorf("boot: %w", err)
	}
	defer uart.Close()

	var saveMu sync.Mutex
	saveNVS := func() {
		saveMu.Lock()
		defer saveMu.Unlock()
		if err := storeNVS(filepath.Join(cfg.StateDir, NVSFile), nvs); err != nil {
			fmt.Fprintf(os.Stderr, "hilrun-sim: save NVS: %v\n", err)
		}
	}
	saveRTC := func() {
		saveMu.Lock()
		defer saveMu.Unlock()
		b, _ := json.Marshal(rtcFile{UnixMS: rtc.Now().UnixMilli(), Synced: rtc.Synced(), HostMS: time.Now().UnixMilli()})
		if err := writeFile0600(rtcPath, b); err != nil {
			fmt.Fprintf(os.Stderr, "hilrun-sim: save RTC: %v\n", err)
		}
	}
	err = Run(ctx, Options{UART: uart, Defects: cfg.Defects, Misbehave: cfg.Misbehave, Board: cfg.Board, Cloud: cfg.Cloud, BootCount: boots, NVS: nvs, RTC: rtc,
		Changed: func(what string) {
			switch what {
			case changedNVS:
				saveNVS()
			case changedRTC:
				saveRTC()
			}
		}})
	saveRTC() // a soft reset keeps the clock
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}

// openUART opens the pty slave (without making it the controlling
// terminal) and puts it in raw mode, as a UART is: no echo, no line
// editing, no CR/LF translation.
func openUART(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	var rawErr error
	if cerr := rc.Control(func(fd uintptr) {
		if term.IsTerminal(int(fd)) {
			_, rawErr = term.MakeRaw(int(fd))
		}
	}); cerr != nil {
		rawErr = cerr
	}
	if rawErr != nil {
		f.Close()
		return nil, fmt.Errorf("%s: raw mode: %w", path, rawErr)
	}
	return f, nil
}

func loadNVS(path string) (*NVS, error) {
	nvs := &NVS{}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nvs, nil
	}
	if err != nil {
		return nil, err
	}
	var f nvsFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	nvs.Config = f.Config
	for _, p := range f.Trust {
		cs, err := certs.ParseCertificatesPEM([]byte(p))
		if err != nil {
			return nil, fmt.Errorf("%s: trust: %w", path, err)
		}
		nvs.Trust = append(nvs.Trust, cs...)
	}
	if f.CertPEM != "" {
		c, err := tls.X509KeyPair([]byte(f.CertPEM), []byte(f.KeyPEM))
		if err != nil {
			return nil, fmt.Errorf("%s: device certificate: %w", path, err)
		}
		nvs.Cert = &c
	}
	if f.Cert2PEM != "" {
		c, err := tls.X509KeyPair([]byte(f.Cert2PEM), []byte(f.Key2PEM))
		if err != nil {
			return nil, fmt.Errorf("%s: secondary device certificate: %w", path, err)
		}
		nvs.Cert2 = &c
	}
	nvs.Methods = f.Methods
	if err := ValidateDefects(f.Defects); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	nvs.Defects = f.Defects
	nvs.OTA = f.OTA
	return nvs, nil
}

func storeNVS(path string, nvs *NVS) error {
	nvs.mu.Lock()
	f := nvsFile{Config: nvs.Config, Defects: nvs.Defects, OTA: nvs.OTA.clone()}
	if len(nvs.Methods) > 0 {
		f.Methods = make(map[string]agentproto.MethodBehaviour, len(nvs.Methods))
		for k, v := range nvs.Methods {
			f.Methods[k] = v
		}
	}
	for _, c := range nvs.Trust {
		f.Trust = append(f.Trust, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})))
	}
	cert, cert2 := nvs.Cert, nvs.Cert2
	nvs.mu.Unlock()
	if cert2 != nil {
		var err error
		if f.Cert2PEM, f.Key2PEM, err = certPEMs(cert2); err != nil {
			return fmt.Errorf("secondary device key: %w", err)
		}
	}
	if cert != nil {
		var chain strings.Builder
		for _, der := range cert.Certificate {
			chain.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
		}
		key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
		if err != nil {
			return fmt.Errorf("device key: %w", err)
		}
		f.CertPEM = chain.String()
		f.KeyPEM = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}))
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return writeFile0600(path, b)
}

// writeFile0600 replaces path atomically with mode 0600.
func writeFile0600(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func bumpBootCount(path string) (int, error) {
	n := 0
	if b, err := os.ReadFile(path); err == nil {
		n, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	} else if !errors.Is(err, os.ErrNotExist) {
		return 0, err
	}
	n++
	return n, writeFile0600(path, []byte(strconv.Itoa(n)+"\n"))
}

// defectFlags collects repeated --defect flags.
type defectFlags []string

func (d *defectFlags) String() string { return strings.Join(*d, ",") }
func (d *defectFlags) Set(v string) error {
	*d = append(*d, v)
	return nil
}

// Main is the firmware process entry (the hilrun CLI calls it from a
// hidden subcommand): it parses --uart PATH --state DIR --board NAME
// --defect NAME (repeatable) --misbehave MODE (repeatable, also from
// $HILRUN_SIM_MISBEHAVE), boots once, and returns the exit code: 0
// after SIGTERM/SIGINT, ExitReset after a reset request, 2 for bad
// arguments and for crash-at-boot (ExitCrash, a panic's status), 1 for
// other failures.
func Main(args []string) int {
	return mainWith(args, os.Stderr)
}

func mainWith(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("hilrun-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg BootConfig
	var defects, misbehave defectFlags
	fs.StringVar(&cfg.UARTPath, "uart", "", "UART device (pty slave) the firmware owns")
	fs.StringVar(&cfg.StateDir, "state", "", "state directory (NVS, boot count, RTC)")
	fs.StringVar(&cfg.Board, "board", "sim", "board name reported in hello")
	fs.Var(&defects, "defect", "defect switch to flash (repeatable; see devicefw/sim/DEFECTS.md)")
	fs.StringVar(&cfg.Cloud, "cloud", "", "the image's cloud: azure (default) or aws (AWS IoT Core mode, aws.go)")
	fs.Var(&misbehave, "misbehave", "rig misbehaviour mode of the image, not a defect (repeatable; see devicefw/sim/DEFECTS.md)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg.Defects = defects
	cfg.Misbehave = append(misbehaveFromEnv(), misbehave...)
	if cfg.UARTPath == "" || cfg.StateDir == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "hilrun-sim: --uart and --state are required; no positional arguments")
		fs.Usage()
		return 2
	}
	if err := ValidateDefects(cfg.Defects); err != nil {
		fmt.Fprintln(stderr, "hilrun-sim:", err)
		return 2
	}
	if err := ValidateMisbehave(cfg.Misbehave); err != nil {
		fmt.Fprintln(stderr, "hilrun-sim:", err)
		return 2
	}
	if err := ValidateCloud(cfg.Cloud); err != nil {
		fmt.Fprintln(stderr, "hilrun-sim:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err := Boot(ctx, cfg)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrReset):
		return ExitReset
	case errors.Is(err, ErrCrashAtBoot):
		crashAtBootStderr(stderr)
		return ExitCrash
	default:
		fmt.Fprintln(stderr, "hilrun-sim:", err)
		return 1
	}
}
