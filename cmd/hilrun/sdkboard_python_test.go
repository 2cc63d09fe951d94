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
	azureiotpython "github.com/hilrun/hilrun/devicefw/sdk/azure-iot-python"
)

// TestSDKBoardPythonPins: the shim is flashed alone, so it carries its own
// copy of requirements.txt; the two must agree.
func TestSDKBoardPythonPins(t *testing.T) {
	emb, err := azureiotpython.EmbeddedPins()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(emb, azureiotpython.Pins()) {
		t.Fatalf("hilfw-python REQUIREMENTS differ from requirements.txt:\n%q\n%q", emb, azureiotpython.Pins())
	}
	for _, l := range emb {
		if !strings.Contains(l, "==") || !strings.Contains(l, "--hash=sha256:") {
			t.Errorf("pin %q: want name==version --hash=sha256:…", l)
		}
	}
}

// TestSDKBoardPythonShim boots the Azure IoT Python SDK shim on a real
// pseudo-terminal, as the virtual board does, and checks the agent protocol
// at its edges: the boot console line and hello event (seq 1, the SDK's
// pinned version), requests answered by id, bad_frame for a corrupted CRC
// and an overlong line, unknown_op, bad_args, unsupported, not_connected,
// conn events numbered on from hello, the SAS key kept out of responses,
// and reset (exit status 3). The first run creates the SDK's virtualenv in
// the cache (python3 -m venv + pip); without python3 it is skipped.
func TestSDKBoardPythonShim(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not on PATH: the Python SDK shim (devicefw/sdk/azure-iot-python) cannot be tested here; install Python 3.8+ with venv and pip")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // a first pip install may take a while
	defer cancel()
	shim, err := azureiotpython.Install(ctx, t.TempDir())
	if err != nil {
		if strings.Contains(err.Error(), "venv") || strings.Contains(err.Error(), "pip") {
			t.Skipf("the SDK's virtualenv cannot be made here: %v", err)
		}
		t.Fatal(err)
	}

	sh := startShim(t, shim, 15*time.Second)
	next, send, call := sh.next, sh.send, sh.call
	wantVer, err := azureiotpython.SDKVersion()
	if err != nil {
		t.Fatal(err)
	}
	sh.expectHello(func(c string) bool { return strings.HasPrefix(c, "azure-iot-device") && strings.Contains(c, "python") }, wantVer,
		[]string{agentproto.CapSAS, agentproto.CapX509, agentproto.CapC2D, agentproto.CapMethods, agentproto.CapTwin},
		[]string{agentproto.CapDefects, agentproto.CapWill, agentproto.CapSNTP, agentproto.CapCertRotation})
	sh.expectProtocolEdges()
	var r *agentproto.Frame
	// An overlong line: discarded, bad_frame.
	send(append(append([]byte("@hil1 "), bytes.Repeat([]byte("x"), agentproto.MaxFrame+100)...), '\n'))
	if r = next("overlong line"); r.T != agentproto.KindResponse || r.ID != 0 || r.Err == nil || r.Err.Code != agentproto.ErrBadFrame {
		t.Fatalf("overlong frame: want bad_frame with id 0, got %+v", r)
	}
	// The SAS key stays in NVS (0600) and is never echoed.
	const key = "c2VjcmV0LWtleS1ub3QtZWNob2Vk"
	cfg := agentproto.Config{
		Hub:      &agentproto.HubConfig{Host: "hub.example.test", Port: 8883, Address: "127.0.0.1:1"},
		Identity: &agentproto.IdentityConfig{DeviceID: "pty-dev"},
		Auth:     &agentproto.AuthConfig{Type: "sas", Key: key, TokenTTL: 3600},
	}
	if r = call(14, agentproto.OpConfigure, cfg); !r.OK || bytes.Contains(r.Data, []byte("c2VjcmV0")) {
		t.Fatalf("configure sas: %+v", r)
	}
	if fi, err := os.Stat(filepath.Join(sh.state, "nvs.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("nvs.json must exist with mode 0600: %v %v", fi, err)
	}
	// client.open towards a closed port: conn events numbered on from
	// hello (2, 3, …) until the SDK's connect() gives up (stopped).
	if r = call(15, agentproto.OpOpen, nil); !r.OK {
		t.Fatalf("client.open: %+v", r)
	}
	seq := uint64(1)
	for {
		f := sh.nextEvent("conn events")
		if f.T != agentproto.KindEvent {
			continue
		}
		if f.Seq != seq+1 {
			t.Fatalf("event %s has seq %d after %d", f.Ev, f.Seq, seq)
		}
		seq = f.Seq
		var c agentproto.ConnEvent
		if f.Ev != agentproto.EvConn || json.Unmarshal(f.Data, &c) != nil {
			t.Fatalf("want conn events, got %+v", f)
		}
		if c.State == agentproto.StateStopped {
			if strings.Contains(c.Reason, key) {
				t.Fatal("the stop reason carries the SAS key")
			}
			break
		}
	}
	if strings.Contains(strings.Join(sh.console, "\n"), key) || strings.Contains(sh.stderr.String(), key) {
		t.Fatal("the SAS key appeared on the console or in the firmware log")
	}
	// reset: answered, then the process exits with the reset status.
	if r = call(16, agentproto.OpReset, nil); !r.OK {
		t.Fatalf("reset: %+v", r)
	}
	sh.expectResetExit()
}
