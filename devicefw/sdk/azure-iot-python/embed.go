// Package azureiotpython carries the hilrun agent shim around the official
// Azure IoT device SDK for Python (PyPI azure-iot-device, v2 sync API) as
// files, so that a Go caller can install and run it anywhere. The shim is
// one self-contained executable Python file, hilfw-python: on first boot it
// creates a virtualenv with the pinned SDK in a cache directory
// ($HILRUN_SDK_CACHE, else $XDG_CACHE_HOME/hilrun/sdk, else
// ~/.cache/hilrun/sdk) and re-executes itself there. Because it is a single
// file it survives the virtual board's flash, which copies the image alone
// into the board's state directory. See README.md.
package azureiotpython

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Name is the SDK board's name in `--board sdk:<Name>`.
const Name = "azure-iot-python"

// Entry is the shim's executable (relative to this directory).
const Entry = "hilfw-python"

//go:embed hilfw-python
var script []byte

//go:embed requirements.txt
var requirements []byte

// Script returns the shim (the firmware image's content).
func Script() []byte { return script }

// Pins returns the requirement lines of requirements.txt (comments and
// blank lines dropped), e.g. "azure-iot-device==2.14.0 --hash=sha256:…".
func Pins() []string { return reqLines(requirements) }

// EmbeddedPins returns the REQUIREMENTS block inside hilfw-python, which
// must equal Pins (the shim is copied alone, so it carries its own pins).
func EmbeddedPins() ([]string, error) {
	_, rest, ok := bytes.Cut(script, []byte("REQUIREMENTS = \"\"\"\\\n"))
	if !ok {
		return nil, errors.New("hilfw-python has no REQUIREMENTS block")
	}
	block, _, ok := bytes.Cut(rest, []byte(`"""`))
	if !ok {
		return nil, errors.New("hilfw-python: unterminated REQUIREMENTS block")
	}
	return reqLines(block), nil
}

func reqLines(b []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		out = append(out, l)
	}
	return out
}

// SDKVersion is the pinned version of azure-iot-device.
func SDKVersion() (string, error) {
	for _, l := range Pins() {
		if v, ok := strings.CutPrefix(l, "azure-iot-device=="); ok {
			v, _, _ = strings.Cut(v, " ")
			return v, nil
		}
	}
	return "", errors.New("requirements.txt pins no azure-iot-device")
}

// Install writes the shim into dir (mode 0755) and runs its `--install`,
// which creates the cached virtualenv with the pinned SDK once (python3 -m
// venv + pip install --require-hashes). It returns the path of the shim,
// the image to flash on the virtual board. Without python3 on PATH it
// fails with an error that names the fix.
func Install(ctx context.Context, dir string) (string, error) {
	py, err := exec.LookPath("python3")
	if err != nil {
		return "", errors.New("python3 is not on PATH: the Python SDK shim needs Python 3.8+ with venv and pip (e.g. `apt-get install python3 python3-venv`)")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, Entry)
	if err := os.WriteFile(path, script, 0o755); err != nil {
		return "", err
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, py, path, "--install")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s --install: %v\n%s", path, err, tail(out.String(), 20))
	}
	return path, nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
