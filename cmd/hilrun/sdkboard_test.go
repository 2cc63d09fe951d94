package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
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
	call := sh.call
	wantVer, err := azureiotnode.SDKVersion("azure-iot-device")
	if err != nil {
		t.Fatal(err)
	}
	sh.expectHello(func(c string) bool { return c == "azure-iot-device" }, wantVer,
		[]string{agentproto.CapSAS, agentproto.CapC2D, agentproto.CapMethods, agentproto.CapTwin},
		[]string{agentproto.CapDefects, agentproto.CapWill, agentproto.CapSNTP})
	sh.expectProtocolEdges()
	var r *agentproto.Frame
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
