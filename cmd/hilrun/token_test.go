package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/hilrun/hilrun/certs"
	"github.com/hilrun/hilrun/rig/hub"
)

// lockedBuffer is a bytes.Buffer safe for the hub's logger goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Issue 16: the standalone hub could not be used from the README alone
// (no way to make a SAS token or Username), and an undocumented-topic
// refusal was logged with an empty message and no rule ID. A client set
// up only from `hilrun token` connects; the service token opens the REST
// API; the refusal is logged with its reason and requirement.
func TestTokenCommandDrivesTheStandaloneHub(t *testing.T) {
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready.json")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	readyCh := make(chan ReadyInfo, 1)
	var h *hub.Hub
	o := &hubOptions{host: "hub.example.test", mqttAddr: "127.0.0.1:0", httpsAddr: "127.0.0.1:0", pkiDir: filepath.Join(dir, "pki"),
		keyType: "ecdsa", devices: []string{"dev1"}, readyFile: ready,
		onReady: func(hh *hub.Hub, info ReadyInfo) { h = hh; readyCh <- info }}
	var out, errOut lockedBuffer
	done := make(chan error, 1)
	go func() { done <- runHub(ctx, o, &out, &errOut) }()
	var info ReadyInfo
	select {
	case info = <-readyCh:
	case err := <-done:
		t.Fatalf("hub exited early: %v\n%s", err, errOut.String())
	case <-time.After(20 * time.Second):
		t.Fatal("hub not ready")
	}
	defer func() { cancel(); <-done }()

	token := func(args ...string) tokenResult {
		t.Helper()
		cmd := newRootCmd()
		var b bytes.Buffer
		cmd.SetOut(&b)
		cmd.SetArgs(append([]string{"token", "--ready-file", ready, "--json"}, args...))
		if err := cmd.Execute(); err != nil {
			t.Fatalf("hilrun token %v: %v", args, err)
		}
		var r tokenResult
		if err := json.Unmarshal(b.Bytes(), &r); err != nil {
			t.Fatalf("token output %q: %v", b.String(), err)
		}
		return r
	}
	dev := token("--device", "dev1")
	if dev.Kind != "device" || dev.ClientID != "dev1" || dev.Username != "hub.example.test/dev1/?api-version=2021-04-12" ||
		!strings.HasPrefix(dev.Password, "SharedAccessSignature sr=hub.example.test%2Fdevices%2Fdev1&sig=") {
		t.Fatalf("device token %+v", dev)
	}
	rootPEM, err := os.ReadFile(info.CABundle)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := certs.ParseCertificatesPEM(rootPEM)
	if err != nil {
		t.Fatal(err)
	}
	tlsConf := &tls.Config{RootCAs: certs.PoolOf(roots...), ServerName: info.Host}
	c := paho.NewClient(paho.NewClientOptions().AddBroker("ssl://" + info.MQTTAddr).SetClientID(dev.ClientID).
		SetUsername(dev.Username).SetPassword(dev.Password).SetTLSConfig(tlsConf).SetProtocolVersion(4).SetAutoReconnect(false))
	if tk := c.Connect(); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
		t.Fatalf("connect with hilrun token's credentials: %v", tk.Error())
	}
	c.Publish("devices/dev1/undocumented/topic", 1, false, "x").WaitTimeout(3 * time.Second)
	// The refusal is logged as the hub records it in its trace: wait for
	// the trace entry.
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := h.Wait(wctx, func() bool {
		return len(h.Trace().Entries(func(e *hub.Entry) bool { return e.Type == hub.EventViolation })) > 0
	}); err != nil {
		t.Fatalf("no violation in the hub trace: %v", err)
	}
	c.Disconnect(50)
	log := errOut.String()
	if !strings.Contains(log, "broke a documented rule") || !strings.Contains(log, "requirement=TEL-") || !strings.Contains(log, `reason="PUBLISH to`) {
		t.Errorf("refusal not logged with reason and requirement:\n%s", log)
	}
	if strings.Contains(log, `msg=""`) {
		t.Errorf("a log line without a message:\n%s", log)
	}

	svc := token()
	if svc.Kind != "service" || !strings.Contains(svc.Authorization, "&skn=iothubowner") {
		t.Fatalf("service token %+v", svc)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConf}}
	get := func(auth string) int {
		req, _ := http.NewRequest("GET", "https://"+info.HTTPSAddr+"/twins/dev1?api-version=2021-04-12", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		res, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if s := get(svc.Authorization); s != 200 {
		t.Errorf("GET /twins/dev1 with the service token: %d", s)
	}
	if s := get(""); s != 401 || !strings.Contains(errOut.String(), "REST request refused") {
		t.Errorf("GET without a token: %d; refusal logged: %v", s, strings.Contains(errOut.String(), "REST request refused"))
	}
	for _, secret := range []string{dev.Password, svc.Authorization} {
		sig := secret[strings.Index(secret, "sig=")+4:]
		sig = sig[:strings.IndexByte(sig, '&')]
		if strings.Contains(errOut.String(), sig) || strings.Contains(out.String(), sig) {
			t.Error("a token signature reached the hub's log")
		}
	}
}

func TestTokenCommandErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"token"}, "needs --connection-string or --ready-file"},
		{[]string{"token", "--connection-string", "HostName=h;DeviceId=d;x509=true"}, "certificate"},
		{[]string{"token", "--connection-string", "garbage"}, "connection string"},
		{[]string{"token", "--connection-string", "HostName=h;DeviceId=d;SharedAccessKey=a2V5", "--ttl", "-1s"}, "--ttl"},
	} {
		cmd := newRootCmd()
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetArgs(tc.args)
		err := cmd.Execute()
		if err == nil || !strings.Contains(err.Error(), tc.want) || exitCode(err) != 2 {
			t.Errorf("%v: err %v (exit %d), want %q, exit 2", tc.args, err, exitCode(err), tc.want)
		}
	}
}
