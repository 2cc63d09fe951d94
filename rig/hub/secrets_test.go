package hub_test

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/hub/hubtest"
	"github.com/hilrun/hilrun/rig/iothub"
)

// serviceGet fetches a service endpoint with a token of the "service"
// policy, the least a trace reader needs.
func serviceGet(t *testing.T, h *hubtest.Hub, path string) []byte {
	t.Helper()
	p, err := h.Registry().Policy("service")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := iothub.NewSASToken(h.Host(), p.PrimaryKey, time.Now().Add(time.Hour), "service")
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: h.RootCAs(), ServerName: "localhost", MinVersion: tls.VersionTLS12}}}
	defer c.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, "https://"+h.HTTPSAddr()+path, nil)
	req.Header.Set("Authorization", tok)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
	}
	return b
}

// keyForms are the forms of a Base64 key a leak check looks for.
func keyForms(t *testing.T, key string) map[string]string {
	raw, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{"Base64": key, "URL-encoded": url.QueryEscape(key), "raw": string(raw),
		"URL-safe": base64.RawURLEncoding.EncodeToString(raw)}
}

func noKeyIn(t *testing.T, where string, b []byte, key string) {
	t.Helper()
	for name, f := range keyForms(t, key) {
		if bytes.Contains(b, []byte(f)) {
			t.Fatalf("%s holds the device key (%s form)", where, name)
		}
	}
}

// TestTraceNeverHoldsCredentials: whatever a device sends as password, the
// trace keeps facts, not the password (Go accessors and /hilrun/trace with
// the service policy alike), and names a registered secret it saw.
func TestTraceNeverHoldsCredentials(t *testing.T) {
	h := hubtest.Start(t)
	d := h.AddSASDevice("leaky")
	id := d.Identity()
	key := d.Authentication.SymmetricKey.PrimaryKey
	tok := h.Token(hubtest.Device{Identity: id, Key: key})
	st, err := iothub.ParseSASToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, password string
		wantPassword   string // what the trace records
		wantSecret     string // a label in Entry.Secrets, "" for none
		wantCode       byte
	}{
		{"raw key as password (CONN-011)", key, "not a SAS token (44 bytes)", hub.KeyLabel(id, "primary"), 4},
		{"URL-encoded key", url.QueryEscape(key), "not a SAS token (" + itoa(len(url.QueryEscape(key))) + " bytes)", hub.KeyLabel(id, "primary"), 4},
		{"token without prefix (CONN-007)", strings.TrimPrefix(tok, "SharedAccessSignature "),
			"sr=" + st.Resource + "&sig=<redacted>&se=" + itoa64(st.Expiry), "SAS signature", 4},
		{"valid token", tok, "SharedAccessSignature sr=" + st.Resource + "&sig=<redacted>&se=" + itoa64(st.Expiry), "SAS signature", 0},
		{"token with an extra field holding the key", tok + "&x=" + key,
			"SharedAccessSignature sr=" + st.Resource + "&sig=<redacted>&se=" + itoa64(st.Expiry) + "&<redacted>", hub.KeyLabel(id, "primary"), 4},
		{"not a token at all", "hunter2-hunter2", "not a SAS token (15 bytes)", "", 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			since := h.Trace().LastSeq()
			r, ack := h.RawConnect(hubtest.Device{Identity: id, Password: c.password})
			_ = r.Conn.Close()
			if ack.ReasonCode != c.wantCode {
				t.Fatalf("CONNACK %d, want %d\n%s", ack.ReasonCode, c.wantCode, h.TraceSummary(id.ClientID()))
			}
			var connect *hub.Entry
			for _, e := range h.Trace().Entries(func(e *hub.Entry) bool { return e.Seq > since }) {
				if e.Type == "CONNECT" {
					connect = &e
				}
			}
			if connect == nil {
				t.Fatal("no CONNECT in the trace")
			}
			if connect.Password != c.wantPassword {
				t.Errorf("trace password %q, want %q", connect.Password, c.wantPassword)
			}
			var seen []string
			for _, s := range connect.Secrets {
				if s.Field == "password" {
					seen = append(seen, s.Secret)
				}
			}
			got := strings.Join(seen, "; ")
			if c.wantSecret == "" && got != "" || !strings.Contains(got, c.wantSecret) {
				t.Errorf("secrets seen in the password: %q, want %q", got, c.wantSecret)
			}
		})
	}

	// A device publishing its key: masked in the trace and the telemetry
	// store, named in both.
	c := h.Connect(hubtest.Device{Identity: id, Key: key})
	hubtest.Wait(t, c.Publish(iothub.TelemetryTopic(id, iothub.PropertyBag{{Name: "k", Value: key}}), 1, false, `{"key":"`+key+`"}`), "publish")
	ms := h.Telemetry(id)
	if len(ms) != 1 {
		t.Fatalf("%d messages stored", len(ms))
	}
	if string(ms[0].Payload) != `{"key":"<redacted>"}` || len(ms[0].Secrets) == 0 {
		t.Errorf("stored message payload %q, secrets %+v", ms[0].Payload, ms[0].Secrets)
	}
	c.Disconnect(50)

	for _, path := range []string{"/hilrun/trace", "/hilrun/trace?clientId=leaky", "/hilrun/telemetry", "/hilrun/status"} {
		b := serviceGet(t, h, path)
		noKeyIn(t, path, b, key)
		if bytes.Contains(b, []byte(url.QueryEscape(st.Signature))) || bytes.Contains(b, []byte(st.Signature)) {
			t.Fatalf("%s holds a SAS signature", path)
		}
	}
	var b bytes.Buffer
	if err := h.Trace().WriteJSON(&b, nil); err != nil {
		t.Fatal(err)
	}
	noKeyIn(t, "Trace.WriteJSON", b.Bytes(), key)
	var entries []hub.Entry
	if err := json.Unmarshal(serviceGet(t, h, "/hilrun/trace?clientId=leaky"), &entries); err != nil {
		t.Fatal(err)
	}
	named := false
	for _, e := range entries {
		for _, s := range e.Secrets {
			named = named || s.Field == "payload" && s.Secret == hub.KeyLabel(id, "primary")
		}
	}
	if !named {
		t.Error("no trace entry names the device key found in the payload")
	}
}

func itoa(n int) string { return itoa64(int64(n)) }

func itoa64(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
