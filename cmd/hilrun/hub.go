package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/hilrun/hilrun/certs"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/iothub"
)

func hubVersion() string { return hub.Version }

type hubOptions struct {
	host           string
	mqttAddr       string
	httpsAddr      string
	blobAddr       string
	plainAddr      string
	stateDir       string
	pkiDir         string
	keyType        string
	devices        []string
	readyFile      string
	sasGrace       time.Duration
	faultInjection bool
	verbose        bool
	cloud          string // --cloud aws: the reference AWS IoT endpoint (awshub.go)
	things         []string
	onReady        func(*hub.Hub, ReadyInfo) // tests: called once listening
}

// ReadyInfo is what `hilrun hub --ready-file` writes once the hub listens.
// Scripts and CI wait for the file instead of sleeping.
type ReadyInfo struct {
	Host          string `json:"host"`
	MQTTAddr      string `json:"mqttAddr"`
	HTTPSAddr     string `json:"httpsAddr,omitempty"`
	PlainMQTTAddr string `json:"plainMqttAddr,omitempty"`
	// The storage endpoint (OTA files, file upload): its host name (SNI,
	// URLs), where it listens, and the plaintext trap of its port 80.
	BlobHost                string        `json:"blobHost,omitempty"`
	BlobAddr                string        `json:"blobAddr,omitempty"`
	BlobPlainAddr           string        `json:"blobPlainAddr,omitempty"`
	BlobContainer           string        `json:"blobContainer,omitempty"`
	CABundle                string        `json:"caBundle"`
	ServiceConnectionString string        `json:"serviceConnectionString"`
	Devices                 []ReadyDevice `json:"devices"`
	Version                 string        `json:"version"`
	PID                     int           `json:"pid"`
}

// ReadyDevice is one registered identity with its connection string.
type ReadyDevice struct {
	ID               string `json:"id"`
	ConnectionString string `json:"connectionString"`
}

func newHubCmd() *cobra.Command {
	o := &hubOptions{}
	cmd := &cobra.Command{
		Use:   "hub",
		Short: "Run the reference IoT Hub (device MQTT endpoint + service REST API)",
		Long: `Run the reference IoT Hub standalone, for debugging firmware against it.

MQTT over TLS listens on --mqtt-addr (IoT Hub: 8883); MQTT over WebSocket
(/$iothub/websocket) and the service REST API share --https-addr (IoT Hub: 443).
On first start a test PKI is generated in --pki-dir; devices must trust its
root (root.pem). Secrets are never logged: use --ready-file to get the
connection strings.`,
		Example: `  hilrun hub --mqtt-addr 127.0.0.1:8883 --https-addr 127.0.0.1:8443 --device dev1 --ready-file /tmp/hub.json
  hilrun hub --host myhub.local --state-dir ./hub-state --device dev1:$(openssl rand -base64 32)
  hilrun hub --cloud aws --mqtt-addr 127.0.0.1:8883 --https-addr 127.0.0.1:8443 --thing sensor-1 --ready-file /tmp/aws.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if o.cloud == "aws" {
				return runAWSHub(ctx, cmd, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
			}
			if o.cloud != "" && o.cloud != "azure" {
				return &exitError{2, fmt.Sprintf("--cloud %q: want azure or aws", o.cloud)}
			}
			return runHub(ctx, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.host, "host", "localhost", "hub FQDN: used in the server certificate, the MQTT Username and SAS sr")
	f.StringVar(&o.mqttAddr, "mqtt-addr", ":8883", "MQTT over TLS listen address (port 0 picks a free port)")
	f.StringVar(&o.httpsAddr, "https-addr", ":443", `HTTPS listen address for MQTT over WebSocket and the REST API ("off" disables)`)
	f.StringVar(&o.blobAddr, "blob-addr", "127.0.0.1:0", `HTTPS listen address of the storage endpoint for OTA files and file upload ("off" disables)`)
	f.StringVar(&o.plainAddr, "plain-mqtt-addr", "", "also listen for plaintext MQTT here (debugging only; IoT Hub has no such port)")
	f.StringVar(&o.stateDir, "state-dir", "", "keep the registry and twins here across restarts (default: in memory)")
	f.StringVar(&o.pkiDir, "pki-dir", "", "hub PKI directory (default: <state-dir>/pki, or ~/.local/state/hilrun/pki)")
	f.StringVar(&o.keyType, "key-type", "ecdsa", "key type for a newly generated PKI: ecdsa (P-256) or rsa (2048)")
	f.StringArrayVar(&o.devices, "device", nil, "register a SAS device ID[:BASE64KEY] (repeatable; module form dev/mod)")
	f.StringVar(&o.readyFile, "ready-file", "", "write JSON with addresses, CA bundle and connection strings once listening")
	f.DurationVar(&o.sasGrace, "sas-grace", 0, "drop connections this long after their SAS token expires (IoT Hub: a few minutes)")
	f.BoolVar(&o.faultInjection, "fault-injection", false, "honour IoT Hub fault-injection properties (AzIoTHub_FaultOperationType) on telemetry")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "log every connection event")
	f.StringVar(&o.cloud, "cloud", "azure", "azure (the reference IoT Hub) or aws (the reference AWS IoT Core endpoint)")
	f.StringArrayVar(&o.things, "thing", nil, "--cloud aws: register a thing NAME with a generated certificate written to --pki-dir (repeatable)")
	return cmd
}

func defaultPKIDir(stateDir string) (string, error) {
	if stateDir != "" {
		return filepath.Join(stateDir, "pki"), nil
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "hilrun", "pki"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("cannot find a home directory for the PKI; pass --pki-dir: %w", err)
	}
	return filepath.Join(home, ".local", "state", "hilrun", "pki"), nil
}

func runHub(ctx context.Context, o *hubOptions, stdout, stderr io.Writer) error {
	kt, err := certs.ParseKeyType(o.keyType)
	if err != nil {
		return err
	}
	pkiDir := o.pkiDir
	if pkiDir == "" {
		if pkiDir, err = defaultPKIDir(o.stateDir); err != nil {
			return err
		}
	}
	pki, created, err := certs.LoadOrCreateHubPKI(pkiDir, o.host, kt)
	if err != nil {
		return fmt.Errorf("hub PKI in %s: %w", pkiDir, err)
	}
	rootPath := filepath.Join(pkiDir, certs.RootCertFile)
	if created {
		fmt.Fprintf(stderr, "generated a test PKI in %s\n", pkiDir)
	}
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cert := pki.ServerTLSCertificate()
	h, err := hub.Start(hub.Config{
		Host: o.host, MQTTAddr: o.mqttAddr, HTTPSAddr: o.httpsAddr, PlainMQTTAddr: o.plainAddr,
		Certificate: &cert, PKI: pki, StateDir: o.stateDir, SASGrace: o.sasGrace,
		FaultInjection: o.faultInjection, Logger: logger, BlobAddr: o.blobAddr,
	})
	if err != nil {
		return err
	}
	defer h.Close()

	info := ReadyInfo{Host: o.host, MQTTAddr: h.MQTTAddr(), HTTPSAddr: h.HTTPSAddr(), PlainMQTTAddr: h.PlainMQTTAddr(),
		CABundle: rootPath, Version: hub.Version, PID: os.Getpid()}
	if b := h.Blob(); b != nil {
		info.BlobHost, info.BlobAddr, info.BlobPlainAddr, info.BlobContainer = b.Host(), b.Addr(), b.PlainAddr(), b.Container()
	}
	for _, spec := range o.devices {
		d, err := registerDevice(h, spec)
		if err != nil {
			return err
		}
		info.Devices = append(info.Devices, d)
	}
	owner, err := h.Registry().Policy("iothubowner")
	if err != nil {
		return err
	}
	info.ServiceConnectionString = iothub.ConnectionString{HostName: o.host, SharedAccessKeyName: owner.KeyName, SharedAccessKey: owner.PrimaryKey}.String()

	fmt.Fprintf(stdout, "reference IoT Hub %s for %s\n", hub.Version, o.host)
	fmt.Fprintf(stdout, "  MQTT over TLS      %s\n", h.MQTTAddr())
	if a := h.HTTPSAddr(); a != "" {
		fmt.Fprintf(stdout, "  WebSocket + REST   https://%s (MQTT at %s)\n", a, hub.WebSocketPath)
	}
	if a := h.PlainMQTTAddr(); a != "" {
		fmt.Fprintf(stdout, "  PLAINTEXT MQTT     %s  (debug only: real IoT Hub refuses plaintext)\n", a)
	}
	if b := h.Blob(); b != nil {
		fmt.Fprintf(stdout, "  storage (OTA, file upload) https://%s/%s/ listening at %s (devices dial it with SNI %s)\n", b.Host(), b.Container(), b.Addr(), b.Host())
		fmt.Fprintf(stdout, "    put a file: PUT /hilrun/blobs/{name} on the REST API (answers its URL and a read SAS token); uploads: POST /devices/{id}/files on the HTTPS port\n")
	}
	fmt.Fprintf(stdout, "  devices trust      %s\n", rootPath)
	fmt.Fprintf(stdout, "    e.g. mosquitto_pub --cafile %s -h %s ... or add it to the firmware's trust bundle\n", rootPath, o.host)
	for _, d := range info.Devices {
		fmt.Fprintf(stdout, "  device            %s\n", d.ID)
	}
	if o.readyFile != "" {
		if err := writeJSONAtomic(o.readyFile, info); err != nil {
			return fmt.Errorf("ready file: %w", err)
		}
		fmt.Fprintf(stdout, "  ready file         %s (connection strings are there, not in this log)\n", o.readyFile)
	}
	fmt.Fprintln(stdout, "press Ctrl-C to stop")
	if o.onReady != nil {
		o.onReady(h, info)
	}
	<-ctx.Done()
	fmt.Fprintln(stdout, "stopping hub")
	return nil
}

func registerDevice(h *hub.Hub, spec string) (ReadyDevice, error) {
	idText, key, _ := strings.Cut(spec, ":")
	id, err := iothub.ParseClientID(idText)
	if err != nil {
		return ReadyDevice{}, fmt.Errorf("--device %q: %w", idText, err)
	}
	if id.ModuleID != "" {
		if _, err := h.Registry().Get(iothub.Identity{DeviceID: id.DeviceID}); err != nil {
			if _, err := h.Registry().Add(hub.Device{DeviceID: id.DeviceID}); err != nil {
				return ReadyDevice{}, err
			}
		}
	}
	d, err := h.Registry().Get(id)
	switch {
	case err == nil && (key == "" || d.Authentication.SymmetricKey != nil && d.Authentication.SymmetricKey.PrimaryKey == key):
		// Already registered (state dir) with the same key: keep it.
	case err == nil:
		d.Authentication = hub.Authentication{Type: hub.AuthSAS, SymmetricKey: &hub.SymmetricKey{PrimaryKey: key}}
		if d, _, err = h.Registry().Put(d, ""); err != nil {
			return ReadyDevice{}, fmt.Errorf("--device %s: %w", idText, err)
		}
	case errors.Is(err, hub.ErrNotFound):
		nd := hub.Device{DeviceID: id.DeviceID, ModuleID: id.ModuleID}
		if key != "" {
			nd.Authentication = hub.Authentication{Type: hub.AuthSAS, SymmetricKey: &hub.SymmetricKey{PrimaryKey: key}}
		}
		if d, err = h.Registry().Add(nd); err != nil {
			return ReadyDevice{}, fmt.Errorf("--device %s: %w", idText, err)
		}
	default:
		return ReadyDevice{}, err
	}
	cs := iothub.ConnectionString{HostName: h.Host(), DeviceID: id.DeviceID, ModuleID: id.ModuleID}
	if d.Authentication.SymmetricKey != nil {
		cs.SharedAccessKey = d.Authentication.SymmetricKey.PrimaryKey
	}
	return ReadyDevice{ID: id.ClientID(), ConnectionString: cs.String()}, nil
}

// writeJSONAtomic writes v to path via a temp file and rename, so a reader
// polling for the file never sees it half-written. The file holds keys: 0600.
func writeJSONAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".ready-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
