package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/hilrun/hilrun/certs"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/iothub"
)

func TestHubCommandServesDevicesFromReadyFile(t *testing.T) {
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready.json")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	readyCh := make(chan *hub.Hub, 1)
	o := &hubOptions{host: "hub.example.test", mqttAddr: "127.0.0.1:0", httpsAddr: "127.0.0.1:0", pkiDir: filepath.Join(dir, "pki"),
		keyType: "ecdsa", devices: []string{"dev1", "gw/mod1"}, readyFile: ready,
		onReady: func(h *hub.Hub, _ ReadyInfo) { readyCh <- h }}
	var out, errOut bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- runHub(ctx, o, &out, &errOut) }()
	var h *hub.Hub
	select {
	case h = <-readyCh:
	case err := <-done:
		t.Fatalf("hub exited early: %v\n%s", err, errOut.String())
	case <-time.After(20 * time.Second):
		t.Fatal("hub not ready")
	}

	b, err := os.ReadFile(ready)
	if err != nil {
		t.Fatal(err)
	}
	var info ReadyInfo
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatal(err)
	}
	if len(info.Devices) != 2 || info.ServiceConnectionString == "" || info.CABundle == "" {
		t.Fatalf("ready file incomplete: %s", b)
	}
	if fi, _ := os.Stat(ready); fi.Mode().Perm() != 0o600 {
		t.Fatalf("ready file mode %v, want 0600 (it holds keys)", fi.Mode().Perm())
	}
	for _, d := range info.Devices {
		key := d.ConnectionString[strings.Index(d.ConnectionString, "SharedAccessKey=")+len("SharedAccessKey="):]
		if strings.Contains(out.String(), key) || strings.Contains(errOut.String(), key) {
			t.Fatal("a device key was printed to the console")
		}
	}

	// A device configured only from the ready file connects and sends telemetry.
	cs, err := iothub.ParseConnectionString(info.Devices[0].ConnectionString)
	if err != nil {
		t.Fatal(err)
	}
	rootPEM, err := os.ReadFile(info.CABundle)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := certs.ParseCertificatesPEM(rootPEM)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := iothub.NewSASToken(iothub.DeviceResourceURI(cs.HostName, cs.Identity()), cs.SharedAccessKey, time.Now().Add(time.Hour), "")
	opts := paho.NewClientOptions().AddBroker("ssl://" + info.MQTTAddr).SetClientID(cs.DeviceID).
		SetUsername(iothub.FormatUsername(cs.HostName, cs.Identity(), iothub.DefaultAPIVersion, nil)).SetPassword(tok).
		SetTLSConfig(&tls.Config{RootCAs: certs.PoolOf(roots...), ServerName: cs.HostName}).SetProtocolVersion(4).SetAutoReconnect(false)
	c := paho.NewClient(opts)
	if tk := c.Connect(); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
		t.Fatalf("connect with ready-file credentials: %v", tk.Error())
	}
	if tk := c.Publish("devices/dev1/messages/events/", 1, false, "hi"); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
		t.Fatalf("publish: %v", tk.Error())
	}
	c.Disconnect(50)
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wcancel()
	if _, err := h.WaitTelemetry(wctx, cs.Identity(), 0, nil); err != nil {
		t.Fatal(err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("hub returned %v on shutdown", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("hub did not stop after cancel")
	}
}

func TestCertsCommandWritesPKI(t *testing.T) {
	dir := t.TempDir()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"certs", "--out", dir, "--host", "lab.local", "--self-signed", "gw/mod1"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{certs.RootCertFile, "server.pem", "device-gw_mod1.pem", "device-gw_mod1.key"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("missing %s: %v", f, err)
		}
	}
	if !strings.Contains(out.String(), "thumbprint") {
		t.Fatalf("output lacks the thumbprint: %s", out.String())
	}
}

func TestBadKeyTypeNamesTheFix(t *testing.T) {
	cmd := newRootCmd()
	cmd.SetArgs([]string{"certs", "--out", t.TempDir(), "--key-type", "dsa"})
	err := cmd.Execute()
	if err == nil || !strings.Contains(err.Error(), "rsa") {
		t.Fatalf("error %v should list the valid key types", err)
	}
}
