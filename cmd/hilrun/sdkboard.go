package main

// --board sdk:<name>: an official device SDK as the board. The virtual
// board (rig/board.Sim) runs the SDK's agent shim as its firmware, so the
// suite judges the SDK's own wire behaviour. Today: sdk:azure-iot-node, the
// Azure IoT device SDK for Node.js (devicefw/sdk/azure-iot-node), and
// sdk:azure-iot-python, the Azure IoT device SDK for Python
// (devicefw/sdk/azure-iot-python). The shims' files are embedded in hilrun
// and installed into a cache directory on first use (`npm ci --omit=dev`;
// a virtualenv with `pip install --require-hashes`).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	azureiotnode "github.com/hilrun/hilrun/devicefw/sdk/azure-iot-node"
	azureiotpython "github.com/hilrun/hilrun/devicefw/sdk/azure-iot-python"
)

// sdkBoards are the SDK boards: name → installer returning the image.
var sdkBoards = map[string]func(ctx context.Context, log io.Writer) (string, error){
	azureiotnode.Name:   installNodeShim,
	azureiotpython.Name: installPythonShim,
}

func sdkBoardNames() string {
	return sdkBoardPrefix + azureiotnode.Name + ", " + sdkBoardPrefix + azureiotpython.Name
}

// sdkBoardPrefix starts the --board value of an SDK board.
const sdkBoardPrefix = "sdk:"

// sdkBoardHook turns --board sdk:NAME into the virtual board with the SDK
// shim as its image (o.board = "sim", o.image = the shim's launcher). Any
// other --board value is left alone.
func sdkBoardHook(ctx context.Context, o *runOptions, log io.Writer) error {
	name, ok := strings.CutPrefix(o.board, sdkBoardPrefix)
	if !ok {
		return nil
	}
	install, known := sdkBoards[name]
	if !known {
		return &exitError{2, fmt.Sprintf("unknown SDK board %q: the SDK boards are %s", o.board, sdkBoardNames())}
	}
	if o.image != "" {
		return &exitError{2, fmt.Sprintf("--board %s brings its own image; leave out --image", o.board)}
	}
	if o.port != "" {
		return &exitError{2, fmt.Sprintf("--board %s is a virtual board; --port is for real boards", o.board)}
	}
	if len(o.defects) > 0 {
		return &exitError{2, fmt.Sprintf("--board %s: an SDK has no defect switches (it is judged as it is)", o.board)}
	}
	if ctx == nil {
		ctx = context.Background()
	}
	launcher, err := install(ctx, log)
	if err != nil {
		return &exitError{exitRigFault, fmt.Sprintf("--board %s: %v", o.board, err)}
	}
	o.board, o.image = "sim", launcher
	return nil
}

// installNodeShim makes sure the Node.js shim is installed in the cache
// and returns the path of its launcher script.
func installNodeShim(ctx context.Context, log io.Writer) (string, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return "", errors.New("Node.js is not installed: `node` is not on PATH (install Node.js 18 or newer with npm, e.g. `apt-get install nodejs npm`, or put it on PATH)")
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", errors.New("npm is not installed: `npm` is not on PATH (install it with Node.js, e.g. `apt-get install npm`)")
	}
	digest, err := azureiotnode.Digest()
	if err != nil {
		return "", err
	}
	root, err := sdkCacheRoot()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, azureiotnode.Name+"-"+digest)
	launcher := filepath.Join(dir, "firmware.sh")
	ver, _ := azureiotnode.SDKVersion("azure-iot-device")
	err = npmInstall{npm: npm, files: azureiotnode.Files(), executable: azureiotnode.Entry, dir: dir, done: launcher, timeout: 10 * time.Minute,
		announce: fmt.Sprintf("hilrun: installing the Azure IoT device SDK for Node.js (azure-iot-device %s) into %s (npm ci, once)", ver, dir),
		finish: func(tmp string) error {
			script := fmt.Sprintf("#!/bin/sh\n# hilrun launcher for the %s SDK shim (the virtual board copies this file as its image)\nexec %s %s \"$@\"\n",
				azureiotnode.Name, shellQuote(node), shellQuote(filepath.Join(dir, azureiotnode.Entry)))
			return os.WriteFile(filepath.Join(tmp, "firmware.sh"), []byte(script), 0o755)
		}}.run(ctx, log)
	if err != nil {
		return "", err
	}
	return launcher, nil
}

// npmInstall installs an embedded Node.js package into the SDK cache once:
// its files are written into a fresh directory beside dir, `npm ci` runs
// there (pinned by the package's lock file), finish adds what the caller
// needs, and the directory is renamed into place, so a directory at dir is
// always a complete install. done is the path whose presence says so (an
// earlier run, or a concurrent one of a pool, installed it).
type npmInstall struct {
	npm        string
	files      fs.FS
	executable string // the one file written executable ("" for none)
	dir, done  string
	timeout    time.Duration
	announce   string // printed before npm runs
	finish     func(tmp string) error
}

func (n npmInstall) run(ctx context.Context, log io.Writer) error {
	if _, err := os.Stat(n.done); err == nil {
		return nil
	}
	root := filepath.Dir(n.dir)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(root, "."+filepath.Base(n.dir)+"-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := fs.WalkDir(n.files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == "." {
			return err
		}
		dst := filepath.Join(tmp, filepath.FromSlash(p))
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := fs.ReadFile(n.files, p)
		if err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if p == n.executable {
			mode = 0o755
		}
		return os.WriteFile(dst, b, mode)
	}); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(n.dir), err)
	}
	fmt.Fprintln(log, n.announce)
	ictx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	cmd := exec.CommandContext(ictx, n.npm, "ci", "--omit=dev", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = tmp
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("`npm ci` in %s failed (%v); npm needs the package registry (check npm_config_registry, a proxy, or network access):\n%s", filepath.Base(n.dir), err, sdkTail(out.String(), 20))
	}
	if n.finish != nil {
		if err := n.finish(tmp); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, n.dir); err != nil {
		if _, serr := os.Stat(n.done); serr == nil {
			return nil // installed meanwhile by another run
		}
		return fmt.Errorf("install into %s: %w", n.dir, err)
	}
	return nil
}

// installPythonShim makes sure the Python shim's virtualenv exists (the
// shim creates it in the cache on --install) and returns the shim's path.
func installPythonShim(ctx context.Context, log io.Writer) (string, error) {
	root, err := sdkCacheRoot()
	if err != nil {
		return "", err
	}
	ver, _ := azureiotpython.SDKVersion()
	dir := filepath.Join(root, azureiotpython.Name+"-shim")
	fmt.Fprintf(log, "hilrun: checking the Azure IoT device SDK for Python (azure-iot-device %s) in %s (created once)\n", ver, root)
	ictx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	return azureiotpython.Install(ictx, dir)
}

// sdkCacheRoot is where SDK shims are installed: $HILRUN_SDK_CACHE, else
// the user cache directory.
func sdkCacheRoot() (string, error) {
	if root := os.Getenv("HILRUN_SDK_CACHE"); root != "" {
		return root, nil
	}
	c, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory (set HILRUN_SDK_CACHE): %w", err)
	}
	return filepath.Join(c, "hilrun", "sdk"), nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func sdkTail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
