// Package azureiotnode carries the hilrun agent shim around the official
// Azure IoT device SDK for Node.js (azure-iot-device with the
// azure-iot-device-mqtt transport) as files, so that the hilrun binary can
// install it anywhere: `hilrun run --board sdk:azure-iot-node` writes them
// into a cache directory, runs `npm ci --omit=dev` there once, and flashes
// the virtual board with the shim (cmd/hilrun/sdkboard.go). The shim itself
// is plain Node.js; see README.md.
package azureiotnode

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"

	"github.com/hilrun/hilrun/devicefw/sdk/sdkfiles"
)

// Name is the SDK board's name in `--board sdk:<Name>`.
const Name = "azure-iot-node"

// Entry is the shim's executable entry point (relative to its directory).
const Entry = "hilfw-node"

//go:embed hilfw-node package.json package-lock.json lib/*.js
var files embed.FS

// Files returns the shim's files (what `npm ci` needs and the code).
func Files() fs.FS { return files }

// Digest identifies this version of the shim and its lock file; the cache
// directory is keyed by it, so a changed shim is installed afresh.
func Digest() (string, error) { return sdkfiles.Digest(files) }

// SDKVersion is the version of package name (e.g. "azure-iot-device")
// pinned by the lock file.
func SDKVersion(name string) (string, error) {
	b, err := files.ReadFile("package-lock.json")
	if err != nil {
		return "", err
	}
	var lock struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(b, &lock); err != nil {
		return "", fmt.Errorf("package-lock.json: %w", err)
	}
	p, ok := lock.Packages["node_modules/"+name]
	if !ok {
		return "", fmt.Errorf("package-lock.json pins no %s", name)
	}
	return p.Version, nil
}
