package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/hilrun/hilrun/certs"
	"github.com/hilrun/hilrun/rig/awsiot"
	"github.com/hilrun/hilrun/rig/awsproto"
)

// TestAWSHubCommand: `hilrun hub --cloud aws --thing T` serves the
// reference AWS endpoint; the thing connects with the certificate the
// ready file names and reads its shadow.
func TestAWSHubCommand(t *testing.T) {
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready.json")
	readyCh := make(chan *awsiot.Endpoint, 1)
	awsHubReady = func(ep *awsiot.Endpoint, _ AWSReadyInfo) { readyCh <- ep }
	defer func() { awsHubReady = nil }()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := newHubCmd()
	cmd.SetArgs([]string{"--cloud", "aws", "--mqtt-addr", "127.0.0.1:0", "--https-addr", "127.0.0.1:0", "--pki-dir", filepath.Join(dir, "pki"),
		"--thing", "sensor-1", "--ready-file", ready})
	cmd.SetOut(testWriter{t})
	cmd.SetErr(testWriter{t})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("hub --cloud aws: %v", err)
		}
	}()
	var ep *awsiot.Endpoint
	select {
	case ep = <-readyCh:
	case err := <-done:
		t.Fatalf("hub --cloud aws ended: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("hub --cloud aws not ready within 20 s")
	}
	var info AWSReadyInfo
	b, err := os.ReadFile(ready)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &info); err != nil || len(info.Things) != 1 || info.Host != awsproto.DefaultEndpoint {
		t.Fatalf("ready file: %s (%v)", b, err)
	}
	if _, err := ep.UpdateShadow("sensor-1", "", []byte(`{"state":{"desired":{"on":true}}}`)); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(info.Things[0].CertFile, info.Things[0].KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	rootPEM, _ := os.ReadFile(info.CABundle)
	roots, err := certs.ParseCertificatesPEM(rootPEM)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	o := paho.NewClientOptions().AddBroker("tls://" + info.MQTTAddr).SetClientID("sensor-1").SetAutoReconnect(false).
		SetTLSConfig(&tls.Config{RootCAs: certs.PoolOf(roots...), ServerName: info.Host, Certificates: []tls.Certificate{pair}})
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(0)
	acc := awsproto.ShadowTopic("sensor-1", "", awsproto.OpGet, awsproto.Accepted)
	if tok := c.Subscribe(acc, 1, func(_ paho.Client, m paho.Message) { got <- m.Payload() }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal("subscribe")
	}
	c.Publish(awsproto.ShadowTopic("sensor-1", "", awsproto.OpGet, ""), 1, false, "")
	select {
	case p := <-got:
		if d, _ := awsproto.ParseResponse(p); d.Version != 1 {
			t.Errorf("get/accepted: %s", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no get/accepted")
	}
}
