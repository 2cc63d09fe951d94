package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	azureiotnode "github.com/hilrun/hilrun/devicefw/sdk/azure-iot-node"
)

// TestSDKBoardNodeShim boots the Azure IoT Node.js SDK shim on a real
// pseudo-terminal, as the virtual board does, and checks the agent
// protocol at its edges: the boot console line and hello event (seq 1,
// the SDK's pinned version), requests answered by id, bad_frame for a
// corrupted CRC, unknown_op, bad_args, unsupported. It installs the shim
// with npm on first use (cached); without node on PATH it is skipped.
func TestSDKBoardNodeShim(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not on PATH: the Node.js SDK shim (devicefw/sdk/azure-iot-node) cannot be tested here; install Node.js 18+ with npm")
	}
	if _, err := exec.LookPath("npm"); err != nil {
		t.Skip("npm is not on PATH: the Node.js SDK shim cannot be installed here")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // a first npm ci may take a while
	defer cancel()
	var log bytes.Buffer
	launcher, err := installNodeShim(ctx, &log)
	if err != nil {
		t.Fatalf("install the shim: %v\n%s", err, log.String())
	}

	sh := startShim(t, launcher, 10*time.Second)
	next, send, call := sh.next, sh.send, sh.call
	wantVer, err := azureiotnode.SDKVersion("azure-iot-device")
	if err != nil {
		t.Fatal(err)
	}
	ev := next("hello event")
	if ev.T != agentproto.KindEvent || ev.Ev != agentproto.EvHello || ev.Seq != 1 {
		t.Fatalf("first frame must be the hello event with seq 1, got %+v", ev)
	}
	var h agentproto.Hello
	if err := json.Unmarshal(ev.Data, &h); err != nil {
		t.Fatal(err)
	}
	if h.Proto != agentproto.Version || h.Client != "azure-iot-device" || h.ClientVer != wantVer || h.Board != "pty-test" || h.BootCount != 1 || h.MaxFrame != agentproto.MaxFrame {
		t.Fatalf("hello %+v: want proto 1, client azure-iot-device %s, board pty-test, boot 1, maxFrame %d", h, wantVer, agentproto.MaxFrame)
	}
	for _, c := range []string{agentproto.CapSAS, agentproto.CapC2D, agentproto.CapMethods, agentproto.CapTwin} {
		if !slices.Contains(h.Caps, c) {
			t.Errorf("caps %v lack %q", h.Caps, c)
		}
	}
	for _, c := range []string{agentproto.CapDefects, agentproto.CapWill, agentproto.CapSNTP} {
		if slices.Contains(h.Caps, c) {
			t.Errorf("caps %v declare %q, which the SDK shim cannot do", h.Caps, c)
		}
	}
	if len(sh.console) == 0 || !strings.Contains(sh.console[0], "azure-iot-device "+wantVer) {
		t.Errorf("boot console line should name the SDK and its version; console %q", sh.console)
	}

	// A request glued to console text, answered by id.
	r := call(7, agentproto.OpHello, nil)
	if !r.OK {
		t.Fatalf("hello: %+v", r.Err)
	}
	r = call(8, agentproto.OpEcho, agentproto.EchoArgs{Data: "ünï \"q\""})
	var echo agentproto.EchoArgs
	if !r.OK || json.Unmarshal(r.Data, &echo) != nil || echo.Data != "ünï \"q\"" {
		t.Fatalf("echo: %+v", r)
	}
	// A corrupted CRC: bad_frame with id 0.
	good, _ := agentproto.Encode(&agentproto.Frame{T: agentproto.KindRequest, ID: 9, Op: agentproto.OpHello})
	bad := bytes.Replace(good, []byte(`"hello"`), []byte(`"hellp"`), 1)
	send(append([]byte("log text before the magic "), bad...))
	if r = next("bad CRC"); r.T != agentproto.KindResponse || r.ID != 0 || r.Err == nil || r.Err.Code != agentproto.ErrBadFrame {
		t.Fatalf("corrupted frame: want bad_frame with id 0, got %+v", r)
	}
	send([]byte("console input without magic\n"))
	if r = call(10, "no.such.op", nil); r.Err == nil || r.Err.Code != agentproto.ErrUnknownOp {
		t.Fatalf("unknown op: %+v", r)
	}
	if r = call(11, agentproto.OpConfigure, map[string]any{"auth": map[string]any{"type": "psk"}}); r.Err == nil || r.Err.Code != agentproto.ErrBadArgs {
		t.Fatalf("bad auth type: want bad_args, got %+v", r)
	}
	if r = call(12, agentproto.OpConfigure, map[string]any{"mqtt": map[string]any{"will": map[string]any{"payload": "x"}}}); r.Err == nil || r.Err.Code != agentproto.ErrUnsupported {
		t.Fatalf("a Will: want unsupported, got %+v", r)
	}
	if r = call(13, agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: "{}"}); r.Err == nil || r.Err.Code != agentproto.ErrNotConnected {
		t.Fatalf("telemetry while closed: want not_connected, got %+v", r)
	}
	// The SAS key stays in NVS (0600) and is never echoed.
	if r = call(14, agentproto.OpConfigure, agentproto.Config{Auth: &agentproto.AuthConfig{Type: "sas", Key: "c2VjcmV0LWtleS1ub3QtZWNob2Vk"}}); !r.OK || bytes.Contains(r.Data, []byte("c2VjcmV0")) {
		t.Fatalf("configure sas: %+v", r)
	}
	if fi, err := os.Stat(filepath.Join(sh.state, "nvs.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("nvs.json must exist with mode 0600: %v %v", fi, err)
	}
	// reset: answered, then the process exits with the reset status.
	if r = call(15, agentproto.OpReset, nil); !r.OK {
		t.Fatalf("reset: %+v", r)
	}
	sh.expectResetExit()
}
