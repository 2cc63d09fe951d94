// Package awsiotnode carries hilrun's peer around the AWS IoT Device SDK
// for JavaScript v1 (aws-iot-device-sdk) as files: cmd/hilrun's
// TestAWSJSSDK writes them into a cache directory, runs `npm ci --omit=dev`
// there once (pinned by package-lock.json) and runs peer.js against the
// reference AWS IoT endpoint.
package awsiotnode

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"sort"
)

// Name names the cache directory.
const Name = "aws-iot-node"

// Entry is the peer script.
const Entry = "peer.js"

//go:embed peer.js package.json package-lock.json
var files embed.FS

// Files returns the peer's files.
func Files() fs.FS { return files }

// Digest identifies this version of the peer and its lock file.
func Digest() (string, error) {
	names, err := fs.Glob(files, "*")
	if err != nil {
		return "", err
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		b, err := files.ReadFile(n)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}
