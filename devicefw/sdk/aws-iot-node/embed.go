// Package awsiotnode carries hilrun's peer around the AWS IoT Device SDK
// for JavaScript v1 (aws-iot-device-sdk) as files: cmd/hilrun's
// TestAWSJSSDK writes them into a cache directory, runs `npm ci --omit=dev`
// there once (pinned by package-lock.json) and runs peer.js against the
// reference AWS IoT endpoint.
package awsiotnode

import (
	"embed"
	"io/fs"

	"github.com/hilrun/hilrun/devicefw/sdk/sdkfiles"
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
func Digest() (string, error) { return sdkfiles.Digest(files) }
