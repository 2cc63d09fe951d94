package secrets

import (
	"bufio"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"sync"
)

// Default is the process-wide registry: the rig's provisioning code
// registers into it and every output path masks with it. One registry per
// process (not per hub) because a secret must be hidden wherever it goes,
// including a report written long after the hub that created it stopped.
var Default = newDefault()

// DumpEnv names a file to which the process appends every secret it
// registers, in clear, one JSON line each (see DumpRecord). It exists for
// the secret-scanner test (cmd/hilrun), which runs `hilrun run` as a child
// process and must know every secret that run provisioned to prove none of
// them reached an output. The file is created with mode 0600 and should lie
// outside the run's output directory. Never set it outside tests.
const DumpEnv = "HILRUN_TEST_SECRETS_DUMP"

// DumpRecord is one line of the DumpEnv file.
type DumpRecord struct {
	Kind  string `json:"kind"` // text, base64, bytes (value Base64), pkcs8 (value Base64 DER)
	Label string `json:"label"`
	Value string `json:"value"`
}

func newDefault() *Registry {
	r := New()
	if path := os.Getenv(DumpEnv); path != "" {
		var mu sync.Mutex
		r.dump = func(kind, label, value string) {
			if kind == "bytes" || kind == "pkcs8" {
				value = base64.StdEncoding.EncodeToString([]byte(value))
			}
			line, _ := json.Marshal(DumpRecord{Kind: kind, Label: label, Value: value})
			mu.Lock()
			defer mu.Unlock()
			// O_APPEND: the virtual board's firmware process inherits the
			// variable and appends to the same file; each line is one
			// write, so lines from both processes do not interleave.
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
			if err != nil {
				return
			}
			_, _ = f.Write(append(line, '\n'))
			_ = f.Close()
		}
	}
	return r
}

// LoadDump builds a registry from a DumpEnv file.
func LoadDump(path string) (*Registry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := New()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for n := 1; sc.Scan(); n++ {
		var rec DumpRecord
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		switch rec.Kind {
		case "text":
			r.AddText(rec.Label, rec.Value)
		case "base64":
			r.AddBase64(rec.Label, rec.Value)
		case "bytes", "pkcs8":
			b, err := base64.StdEncoding.DecodeString(rec.Value)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %w", path, n, err)
			}
			if rec.Kind == "bytes" {
				r.AddBytes(rec.Label, b)
				break
			}
			k, err := x509.ParsePKCS8PrivateKey(b)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %w", path, n, err)
			}
			r.AddPrivateKey(rec.Label, k)
		default:
			return nil, fmt.Errorf("%s:%d: unknown kind %q", path, n, rec.Kind)
		}
	}
	return r, sc.Err()
}

// AddText registers a text secret with Default.
func AddText(label, s string) { Default.AddText(label, s) }

// AddBase64 registers a Base64 secret (a symmetric key, a SAS signature)
// with Default.
func AddBase64(label, s string) { Default.AddBase64(label, s) }

// AddBytes registers a binary secret with Default.
func AddBytes(label string, b []byte) { Default.AddBytes(label, b) }

// AddPrivateKey registers a private key with Default.
func AddPrivateKey(label string, k crypto.PrivateKey) { Default.AddPrivateKey(label, k) }

// Mask masks s with Default.
func Mask(s string) string { return Default.Mask(s) }

// MaskFind masks s with Default and says what it hid.
func MaskFind(s string) (string, []Found) { return Default.MaskFind(s) }

// MaskBytes masks b with Default; b itself comes back when nothing was hidden.
func MaskBytes(b []byte) []byte { return Default.MaskBytes(b) }

// MaskBytesFind masks b with Default and says what it hid.
func MaskBytesFind(b []byte) ([]byte, []Found) { return Default.MaskBytesFind(b) }
