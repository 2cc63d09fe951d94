package reports

import (
	"crypto/rand"
	"encoding/base64"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hilrun/hilrun/rig/secrets"
)

// TestWriteMasksRegisteredSecrets: a registered secret that no textual
// pattern recognises (a bare key as password, its raw bytes in a payload,
// a URL-encoded copy in a topic) reaches no report file.
func TestWriteMasksRegisteredSecrets(t *testing.T) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	key := base64.StdEncoding.EncodeToString(raw)
	secrets.AddBase64("report test key", key)
	r := sampleReport()
	r.Specs[1].Failure = "CONN-011: the device sent " + key + " as its password"
	r.Specs[1].Wire = append(r.Specs[1].Wire,
		WireEntry{Offset: time.Millisecond, Dir: DirIn, Type: "PUBLISH", Topic: "devices/d1/messages/events/k=" + url.QueryEscape(key), Payload: string(raw)})
	r.Specs[1].Console = append(r.Specs[1].Console, ConsoleLine{Stream: "rx", Text: "I (9) key " + strings.TrimRight(key, "=")})
	dir := t.TempDir()
	if err := Write(dir, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(r.Specs[1].Failure, key) {
		t.Fatal("Write modified the report it was given")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(files) < 4 {
		t.Fatalf("report files: %v", files)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, fm := range secrets.Default.Forms() {
			if fm.Label == "report test key" && strings.Contains(string(b), fm.Text) {
				t.Errorf("%s holds the key (%s)", filepath.Base(f), fm.Desc)
			}
		}
	}
	if js := read(t, dir, JSONFile); !strings.Contains(js, `sent \u003credacted\u003e as its password`) {
		t.Errorf("report.json does not show the masked failure")
	}
}
