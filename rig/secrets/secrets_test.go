package secrets_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"html/template"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hilrun/hilrun/rig/iothub"
	"github.com/hilrun/hilrun/rig/secrets"
)

// testKey is a fixed 32-byte key whose Base64 holds '+', '/' and '=', so
// every escaping differs from the plain text.
var testKeyRaw = func() []byte {
	b, err := base64.StdEncoding.DecodeString("+/8AAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0e")
	if err != nil {
		panic(err)
	}
	return b
}()

var testKey = base64.StdEncoding.EncodeToString(testKeyRaw)

// lowerEscapes turns the escapes of Base64's '+', '/' and '=' lower-case.
var lowerEscapes = strings.NewReplacer("%2B", "%2b", "%2F", "%2f", "%3D", "%3d")

func mustContainNone(t *testing.T, r *secrets.Registry, s string) {
	t.Helper()
	for _, f := range r.Forms() {
		if strings.Contains(s, f.Text) {
			t.Fatalf("masked text still holds %s (%s):\n%q", f.Label, f.Desc, s)
		}
	}
}

func TestMaskSymmetricKeyForms(t *testing.T) {
	r := secrets.New()
	r.AddBase64("device key", testKey)
	tok, err := iothub.NewSASToken("hub.example/devices/d1", testKey, time.Unix(2000000000, 0), "")
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := url.QueryUnescape(tok[strings.Index(tok, "sig=")+4 : strings.Index(tok, "&se=")])
	r.AddBase64("SAS signature", sig)
	// A 32-byte key, as IoT Hub hands out, has Base64 padding.
	raw32 := append([]byte{0xfb, 0xff}, testKeyRaw[:30]...)
	key32 := base64.StdEncoding.EncodeToString(raw32)
	r.AddBase64("padded device key", key32)
	var html bytes.Buffer
	template.Must(template.New("").Parse(`<td>{{.}}</td>`)).Execute(&html, testKey)
	jsonKey, _ := json.Marshal(map[string][]byte{"k": testKeyRaw}) // []byte marshals as Base64

	tests := []struct {
		name, in, want string
	}{
		{"Base64 text", "password " + testKey + " sent", "password <redacted> sent"},
		{"unpadded Base64", "k=" + strings.TrimRight(testKey, "="), "k=<redacted>"},
		{"URL-safe Base64", "k=" + base64.URLEncoding.EncodeToString(testKeyRaw) + ";", "k=<redacted>;"},
		{"unpadded URL-safe Base64", "k=" + base64.RawURLEncoding.EncodeToString(testKeyRaw) + ";", "k=<redacted>;"},
		{"URL-encoded upper hex", "key=" + url.QueryEscape(testKey) + "&x=1", "key=<redacted>&x=1"},
		{"URL-encoded lower hex", "key=" + lowerEscapes.Replace(url.QueryEscape(testKey)) + "&x=1", "key=<redacted>&x=1"},
		{"path-escaped", "/keys/" + url.PathEscape(testKey), "/keys/<redacted>"},
		{"raw bytes", "\x00\x01" + string(testKeyRaw) + "\xff", "\x00\x01<redacted>\xff"},
		{"hex", "key " + hex.EncodeToString(testKeyRaw), "key <redacted>"},
		{"upper-case hex", "key " + strings.ToUpper(hex.EncodeToString(testKeyRaw)), "key <redacted>"},
		{"JSON with escaped slash", `{"k":"` + strings.ReplaceAll(testKey, "/", `\/`) + `"}`, `{"k":"<redacted>"}`},
		{"JSON []byte", string(jsonKey), `{"k":"<redacted>"}`},
		{"HTML template", html.String(), "<td><redacted></td>"},
		{"connection string", "HostName=h;DeviceId=d;SharedAccessKey=" + testKey, "HostName=h;DeviceId=d;SharedAccessKey=<redacted>"},
		{"padded Base64", `"` + key32 + `"`, `"<redacted>"`},
		{"padded Base64 without its padding", `"` + strings.TrimRight(key32, "=") + `"`, `"<redacted>"`},
		{"padded URL-safe Base64", "k=" + base64.URLEncoding.EncodeToString(raw32) + ";", "k=<redacted>;"},
		{"padded, URL-encoded", "k=" + url.QueryEscape(key32) + "&", "k=<redacted>&"},
		{"padded, URL-encoded lower hex", "k=" + lowerEscapes.Replace(url.QueryEscape(key32)) + "&", "k=<redacted>&"},
		{"case-folded is another string", "k=" + strings.ToLower(key32), "k=" + strings.ToLower(key32)},
		{"padded, raw bytes", "[" + string(raw32) + "]", "[<redacted>]"},
		{"SAS token sig", tok, strings.Replace(tok, url.QueryEscape(sig), "<redacted>", 1)},
		{"twice, adjacent", testKey + testKey, "<redacted>"},
		{"at both ends", testKey + " and " + url.QueryEscape(testKey), "<redacted> and <redacted>"},
		{"no secret", "devices/d1/messages/events/", "devices/d1/messages/events/"},
		{"a key prefix only", testKey[:20], testKey[:20]},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := r.Mask(tt.in)
			if got != tt.want {
				t.Fatalf("Mask(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
			mustContainNone(t, r, got)
			if again := r.Mask(got); again != got {
				t.Fatalf("not idempotent: %q → %q", got, again)
			}
			if b := r.MaskBytes([]byte(tt.in)); string(b) != tt.want {
				t.Fatalf("MaskBytes = %q, want %q", b, tt.want)
			}
		})
	}
}

func TestMaskFindNamesTheSecretNotItsValue(t *testing.T) {
	r := secrets.New()
	r.AddBase64("symmetric key (primary) of dev1", testKey)
	got, found := r.MaskFind("pw=" + url.QueryEscape(testKey))
	if got != "pw=<redacted>" {
		t.Fatalf("masked %q", got)
	}
	if len(found) != 1 || found[0].Label != "symmetric key (primary) of dev1" || found[0].Form != "Base64 URL-encoded" {
		t.Fatalf("found %+v", found)
	}
	if _, found := r.MaskFind("nothing here at all"); found != nil {
		t.Fatalf("found %+v in clean text", found)
	}
	// A padded 32-byte key is indexed by its unpadded form; a match takes
	// the padding with it and is named by the form that was sent.
	k32 := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	r.AddBase64("32-byte key", k32)
	for in, want := range map[string]string{
		"pw " + k32 + " end":                  "Base64 text",
		"pw=" + url.QueryEscape(k32) + "&x=1": "Base64 text",
		"b64url " + base64.RawURLEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef")): "Base64 text",
	} {
		got, found := r.MaskFind(in)
		if strings.Contains(got, "=") && !strings.Contains(in, "&x=1") || strings.Contains(got, "%3D") || len(found) != 1 || found[0].Form != want {
			t.Errorf("MaskFind(%q) = %q, %+v; want the padding masked too and form %q", in, got, found, want)
		}
	}
}

func TestMaskTextSecret(t *testing.T) {
	r := secrets.New()
	r.AddText("Wi-Fi password of board b1", "p@ss w0rd&<lab>")
	tests := []struct{ name, in, want string }{
		{"plain", "wifi p@ss w0rd&<lab> ok", "wifi <redacted> ok"},
		{"query-escaped", "pw=" + url.QueryEscape("p@ss w0rd&<lab>"), "pw=<redacted>"},
		{"JSON-escaped", `{"password":"p@ss w0rd\u0026\u003clab\u003e"}`, `{"password":"<redacted>"}`},
		{"HTML-escaped", "<b>p@ss w0rd&amp;&lt;lab&gt;</b>", "<b><redacted></b>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := r.Mask(tt.in); got != tt.want {
				t.Fatalf("Mask(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
	// Too short to mask without hitting ordinary text.
	r.AddText("tiny", "abc")
	if got := r.Mask("abcabc"); got != "abcabc" {
		t.Fatalf("a 3-byte secret was masked: %q", got)
	}
}

func selfSigned(t *testing.T, key any, pub any) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dev1"},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(4000000000, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestMaskPrivateKeys(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	r := secrets.New()
	r.AddPrivateKey("device private key", ec)
	r.AddPrivateKey("CA private key", rk)

	p8, _ := x509.MarshalPKCS8PrivateKey(ec)
	sec1, _ := x509.MarshalECPrivateKey(ec)
	rp8, _ := x509.MarshalPKCS8PrivateKey(rk)
	p8PEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}))
	sec1PEM := string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}))
	rsaPEM := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}))
	pemLines := strings.Split(strings.TrimSpace(p8PEM), "\n")
	d, _ := ec.Bytes()
	jsonPEM, _ := json.Marshal(map[string]string{"keyPem": p8PEM})
	tests := []struct{ name, in string }{
		{"PKCS#8 PEM", "cert.set " + p8PEM + " done"},
		{"SEC 1 PEM", sec1PEM},
		{"PKCS#1 PEM", rsaPEM},
		{"PKCS#8 PEM in JSON", string(jsonPEM)},
		{"a cut excerpt: second PEM line only", "...\n" + pemLines[2] + "\n..."},
		{"raw DER", "der:" + string(p8)},
		{"Base64 DER in one piece", base64.StdEncoding.EncodeToString(rp8)},
		{"EC private number, hex", hex.EncodeToString(d)},
		{"RSA private exponent, Base64", base64.StdEncoding.EncodeToString(rk.D.Bytes())},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := r.Mask(tt.in)
			if !strings.Contains(got, secrets.Redacted) {
				t.Fatalf("nothing masked in %q", tt.in)
			}
			mustContainNone(t, r, got)
		})
	}
	// Public material is no secret: certificates pass unchanged.
	for _, c := range [][]byte{selfSigned(t, ec, &ec.PublicKey), selfSigned(t, rk, &rk.PublicKey)} {
		if got := r.Mask(string(c)); got != string(c) {
			t.Errorf("a certificate was masked:\n%s", got)
		}
	}
}

func TestWriterMasksSecretsSplitAcrossWrites(t *testing.T) {
	r := secrets.New()
	r.AddBase64("k", testKey)
	var out bytes.Buffer
	w := r.NewWriter(&out)
	line := "[FAIL] password was " + testKey + "\nnext line\nunterminated " + testKey
	for i := 0; i < len(line); i += 5 {
		if _, err := w.Write([]byte(line[i:min(i+5, len(line))])); err != nil {
			t.Fatal(err)
		}
	}
	if strings.Contains(out.String(), "unterminated") {
		t.Fatalf("an unterminated line was written before Flush: %q", out.String())
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	want := "[FAIL] password was <redacted>\nnext line\nunterminated <redacted>"
	if out.String() != want {
		t.Fatalf("got %q, want %q", out.String(), want)
	}
}

func TestRegisterWhileMasking(t *testing.T) {
	r := secrets.New()
	var wg sync.WaitGroup
	keys := make([]string, 200)
	for i := range keys {
		b := make([]byte, 32)
		rand.Read(b)
		keys[i] = base64.StdEncoding.EncodeToString(b)
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i, k := range keys {
			r.AddBase64(fmt.Sprintf("key %d", i), k)
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < 2000; i++ {
			_ = r.Mask("payload " + keys[i%len(keys)])
		}
	}()
	wg.Wait()
	for _, k := range keys {
		if got := r.Mask("x " + k); got != "x <redacted>" {
			t.Fatalf("Mask after registration = %q", got)
		}
	}
	if r.Len() != len(keys) {
		t.Fatalf("Len = %d, want %d", r.Len(), len(keys))
	}
}

func TestDumpRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.jsonl")
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	recs := []secrets.DumpRecord{
		{Kind: "base64", Label: "k", Value: testKey},
		{Kind: "text", Label: "wifi", Value: "lab-password-1"},
		{Kind: "bytes", Label: "raw", Value: base64.StdEncoding.EncodeToString([]byte("0123456789abcdef-raw"))},
	}
	p8, _ := x509.MarshalPKCS8PrivateKey(ec)
	recs = append(recs, secrets.DumpRecord{Kind: "pkcs8", Label: "ec", Value: base64.StdEncoding.EncodeToString(p8)})
	var b bytes.Buffer
	for _, rec := range recs {
		line, _ := json.Marshal(rec)
		b.Write(append(line, '\n'))
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := secrets.LoadDump(path)
	if err != nil {
		t.Fatal(err)
	}
	if r.Len() != 4 {
		t.Fatalf("loaded %d secrets, want 4", r.Len())
	}
	in := testKey + " lab-password-1 0123456789abcdef-raw " + string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}))
	mustContainNone(t, r, r.Mask(in))
}

// BenchmarkMaskPayload is the hub's hot path: a 256-byte telemetry payload
// (no secret in it) against the keys of 1000 devices.
func BenchmarkMaskPayload(b *testing.B) {
	r := secrets.New()
	for i := 0; i < 2000; i++ {
		k := make([]byte, 32)
		rand.Read(k)
		r.AddBase64(fmt.Sprintf("key %d", i), base64.StdEncoding.EncodeToString(k))
	}
	payload := bytes.Repeat([]byte(`{"temperature":21.5,"seq":123}`), 9)[:256]
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		_ = r.MaskBytes(payload)
	}
}
