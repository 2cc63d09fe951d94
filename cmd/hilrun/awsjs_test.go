package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/hilrun/hilrun/certs"
	awsiotnode "github.com/hilrun/hilrun/devicefw/sdk/aws-iot-node"
	"github.com/hilrun/hilrun/rig/awsiot"
	"github.com/hilrun/hilrun/rig/hub"
)

// installAWSNodePeer installs the JavaScript SDK peer into the SDK cache
// (once per version of its files: `npm ci` from the lock file) and returns
// its directory.
func installAWSNodePeer(ctx context.Context, npm string, log io.Writer) (string, error) {
	digest, err := awsiotnode.Digest()
	if err != nil {
		return "", err
	}
	root, err := sdkCacheRoot()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, awsiotnode.Name+"-"+digest)
	err = npmInstall{npm: npm, files: awsiotnode.Files(), dir: dir, done: filepath.Join(dir, "node_modules", "aws-iot-device-sdk"), timeout: 5 * time.Minute,
		announce: fmt.Sprintf("installing aws-iot-device-sdk into %s (npm ci, once)", dir)}.run(ctx, log)
	if err != nil {
		return "", err
	}
	return dir, nil
}

// TestAWSJSSDK: the AWS IoT Device SDK for JavaScript v1, unmodified,
// connects to the reference AWS IoT endpoint with a thing certificate,
// gets and updates the classic shadow and receives a delta.
func TestAWSJSSDK(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("Node.js is not installed (`node` not on PATH): the AWS IoT Device SDK for JavaScript peer needs node and npm")
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Skip("npm is not installed (`npm` not on PATH): it installs aws-iot-device-sdk from package-lock.json")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	dir, err := installAWSNodePeer(ctx, npm, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	ep, err := awsiot.Start(awsiot.Config{MQTTAddr: "127.0.0.1:0", HTTPSAddr: "off", ExtraNames: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ep.Close()
	ca, err := certs.NewRoot("js peer CA", certs.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	ep.Registry().AddCA(ca.Cert)
	const thing = "js-sdk-thing"
	if _, err := ep.Registry().AddThing(awsiot.Thing{Name: thing}); err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.IssueClient(certs.LeafOptions{CommonName: thing})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ep.Registry().AddCertificate(leaf.Cert, thing); err != nil {
		t.Fatal(err)
	}
	files := t.TempDir()
	key, _ := leaf.KeyPEM()
	write := func(name string, b []byte) string {
		p := filepath.Join(files, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certPath, keyPath, caPath := write("thing.crt", leaf.ChainPEM()), write("thing.key", key), write("root.pem", ep.PKI().Root.CertPEM())
	if _, err := ep.UpdateShadow(thing, "", []byte(`{"state":{"reported":{"fw":"1.0"}}}`)); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ep.MQTTAddr())
	cmd := exec.CommandContext(ctx, node, filepath.Join(dir, awsiotnode.Entry), "localhost", port, thing, certPath, keyPath, caPath)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	type line struct {
		Ev      string         `json:"ev"`
		Op      string         `json:"op"`
		Stat    string         `json:"stat"`
		Version int64          `json:"version"`
		State   map[string]any `json:"state"`
		Msg     string         `json:"msg"`
	}
	lines := make(chan line, 32)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var l line
			if json.Unmarshal(sc.Bytes(), &l) == nil {
				lines <- l
			}
		}
		close(lines)
	}()
	var seen []line
	deadline := time.After(90 * time.Second)
	got := map[string]bool{}
	for !got["delta"] {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the peer ended before a delta; seen %+v; stderr:\n%s\ntrace:\n%s", seen, stderr.String(), traceOf(ep))
			}
			seen = append(seen, l)
			switch {
			case l.Ev == "error" || l.Ev == "timeout" || l.Stat == "rejected":
				t.Fatalf("peer: %+v; seen %+v; stderr:\n%s\ntrace:\n%s", l, seen, stderr.String(), traceOf(ep))
			case l.Ev == "status" && l.Op == "get":
				got["get"] = true
				if l.Version != 1 {
					t.Errorf("get/accepted version %d, want 1", l.Version)
				}
			case l.Ev == "status" && l.Op == "update":
				got["update"] = true
				if _, err := ep.UpdateShadow(thing, "", []byte(`{"state":{"desired":{"led":"on"}}}`)); err != nil {
					t.Fatal(err)
				}
			case l.Ev == "delta":
				got["delta"] = true
				if l.State["led"] != "on" {
					t.Errorf("delta state %v, want led=on", l.State)
				}
			}
		case <-deadline:
			t.Fatalf("no delta within 90 s; seen %+v; stderr:\n%s\ntrace:\n%s", seen, stderr.String(), traceOf(ep))
		}
	}
	if !got["get"] || !got["update"] {
		t.Errorf("steps seen: %v", got)
	}
	if s := ep.Shadow(thing, ""); s == nil || s.Reported["fw"] != "2.0" || s.Version != 3 {
		t.Errorf("shadow after the SDK's update: %+v", s)
	}
	for _, e := range ep.Trace().Entries(func(e *hub.Entry) bool { return e.Type == "CONNECT" }) {
		if e.ClientID != thing {
			t.Errorf("CONNECT ClientId %q, want %q", e.ClientID, thing)
		}
	}
}

func traceOf(ep *awsiot.Endpoint) string {
	var b bytes.Buffer
	for _, e := range ep.Trace().Entries(nil) {
		fmt.Fprintf(&b, "%s %s %s %s %s\n", e.Dir, e.Type, e.Topic, e.Reason, e.Payload)
	}
	return b.String()
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}
