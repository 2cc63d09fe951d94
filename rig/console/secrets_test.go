package console

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/rig/secrets"
)

// TestRegisteredSecretsMasked: a secret the rig registered never reaches
// the log, whatever carries it: console text (Base64, URL-encoded, raw
// bytes), a frame member Redact does not know, a note, the mirror.
func TestRegisteredSecretsMasked(t *testing.T) {
	// Raw bytes cross the console as a line of their own only without a
	// line break among them.
	raw := make([]byte, 32)
	for {
		if _, err := rand.Read(raw); err != nil {
			t.Fatal(err)
		}
		if !bytes.ContainsAny(raw, "\r\n") {
			break
		}
	}
	key := base64.StdEncoding.EncodeToString(raw)
	secrets.AddBase64("console test key", key)

	var mirror bytes.Buffer
	c := newConsole(nil, Options{Mirror: &mirror})
	defer c.cancel()
	now := time.Now()
	c.ingest([]byte("I (42) using key "+key+"\n"), now)
	c.ingest([]byte("I (43) sr=...&k="+url.QueryEscape(key)+"\n"), now)
	c.ingest([]byte("dump: \x01"+string(raw)+"\x02\n"), now)
	c.ingest([]byte(event(t, 1, agentproto.EvLog, agentproto.LogEvent{Level: "I", Msg: "debug " + key})), now)
	c.Notef("rig note with %s", key)
	drainQueue(c)

	var log bytes.Buffer
	if err := c.WriteLog(&log); err != nil {
		t.Fatal(err)
	}
	for where, text := range map[string]string{"log": log.String(), "mirror": mirror.String()} {
		if n := strings.Count(text, secrets.Redacted); n < 5 {
			t.Errorf("%s: %d masked occurrences, want 5:\n%s", where, n, text)
		}
		for _, f := range secrets.Default.Forms() {
			if f.Label == "console test key" && strings.Contains(text, f.Text) {
				t.Fatalf("%s holds the key (%s):\n%s", where, f.Desc, text)
			}
		}
		// The escaped raw bytes would show as \xNN; none may remain of the key.
		if strings.Contains(text, sanitizeString(raw[:8])) {
			t.Errorf("%s holds the key's raw bytes escaped:\n%s", where, text)
		}
	}
}

func sanitizeString(b []byte) string {
	s, _ := sanitize(b)
	return s
}
