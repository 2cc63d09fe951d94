package iothub

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
)

// Known-answer vector computed independently with openssl:
//
//	key  = base64("hilrun-test-device-key-32-bytes!")
//	sts  = "myhub.azure-devices.net%2Fdevices%2Fdev1\n1700000000"
//	printf '%s' "$sts" | openssl dgst -sha256 -mac HMAC -macopt hexkey:<hex key> -binary | base64
const (
	testKey      = "aGlscnVuLXRlc3QtZGV2aWNlLWtleS0zMi1ieXRlcyE="
	testHost     = "myhub.azure-devices.net"
	testSR       = "myhub.azure-devices.net%2Fdevices%2Fdev1"
	testSig      = "rqc7thZUS9cmifFF4V+Ggb77wTm08crWxHwILEyajEU="
	testSigLower = "TBOoZk9xnOOVjXgH3M1VYk0M+3UL5mC3UBrvagF+6I4=" // same, over sr with %2f
	testSE       = 1700000000
	wrongKey     = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXkhIQ=="
)

func TestParseSASToken(t *testing.T) {
	encSig := url.QueryEscape(testSig)
	tests := []struct {
		name     string
		in       string
		want     SASToken
		wantRule string
	}{
		{name: "sr first", in: "SharedAccessSignature sr=" + testSR + "&sig=" + encSig + "&se=1700000000",
			want: SASToken{Resource: testSR, Signature: testSig, Expiry: testSE}},
		{name: "sig first", in: "SharedAccessSignature sig=" + encSig + "&se=1700000000&sr=" + testSR,
			want: SASToken{Resource: testSR, Signature: testSig, Expiry: testSE}},
		{name: "with skn", in: "SharedAccessSignature sr=" + testHost + "&sig=abc%3D&se=1&skn=iothubowner",
			want: SASToken{Resource: testHost, Signature: "abc=", Expiry: 1, KeyName: "iothubowner"}},
		{name: "skn first", in: "SharedAccessSignature skn=device&se=5&sr=x&sig=YQ%3D%3D",
			want: SASToken{Resource: "x", Signature: "YQ==", Expiry: 5, KeyName: "device"}},
		{name: "raw base64 slash and padding", in: "SharedAccessSignature sr=x&sig=ab/cdQ==&se=0",
			want: SASToken{Resource: "x", Signature: "ab/cdQ==", Expiry: 0}},
		{name: "lower-case escapes kept in sr", in: "SharedAccessSignature sr=h%2fdevices%2fd&sig=YQ%3D%3D&se=9",
			want: SASToken{Resource: "h%2fdevices%2fd", Signature: "YQ==", Expiry: 9}},

		{name: "no prefix", in: "sr=x&sig=YQ%3D%3D&se=1", wantRule: "CONN-007"},
		{name: "wrong prefix case", in: "sharedaccesssignature sr=x&sig=YQ%3D%3D&se=1", wantRule: "CONN-007"},
		{name: "two spaces", in: "SharedAccessSignature  sr=x&sig=YQ%3D%3D&se=1", wantRule: "CONN-007"},
		{name: "empty", in: "", wantRule: "CONN-007"},
		{name: "prefix only", in: "SharedAccessSignature ", wantRule: "CONN-007"},
		{name: "missing sr", in: "SharedAccessSignature sig=YQ%3D%3D&se=1", wantRule: "CONN-007"},
		{name: "missing sig", in: "SharedAccessSignature sr=x&se=1", wantRule: "CONN-007"},
		{name: "missing se", in: "SharedAccessSignature sr=x&sig=YQ%3D%3D", wantRule: "CONN-007"},
		{name: "duplicate sr", in: "SharedAccessSignature sr=x&sr=y&sig=YQ%3D%3D&se=1", wantRule: "CONN-007"},
		{name: "duplicate sig", in: "SharedAccessSignature sr=x&sig=YQ%3D%3D&sig=YQ%3D%3D&se=1", wantRule: "CONN-007"},
		{name: "duplicate se", in: "SharedAccessSignature sr=x&sig=YQ%3D%3D&se=1&se=1", wantRule: "CONN-007"},
		{name: "duplicate skn", in: "SharedAccessSignature sr=x&sig=YQ%3D%3D&se=1&skn=a&skn=a", wantRule: "CONN-007"},
		{name: "unknown field", in: "SharedAccessSignature sr=x&sig=YQ%3D%3D&se=1&foo=bar", wantRule: "CONN-007"},
		{name: "upper-case field", in: "SharedAccessSignature SR=x&sig=YQ%3D%3D&se=1", wantRule: "CONN-007"},
		{name: "field without =", in: "SharedAccessSignature sr=x&sig&se=1", wantRule: "CONN-007"},
		{name: "empty field", in: "SharedAccessSignature sr=x&&sig=YQ%3D%3D&se=1", wantRule: "CONN-007"},
		{name: "trailing &", in: "SharedAccessSignature sr=x&sig=YQ%3D%3D&se=1&", wantRule: "CONN-007"},
		{name: "empty value", in: "SharedAccessSignature sr=&sig=YQ%3D%3D&se=1", wantRule: "CONN-007"},
		{name: "empty skn", in: "SharedAccessSignature sr=x&sig=YQ%3D%3D&se=1&skn=", wantRule: "CONN-007"},
		{name: "se not digits", in: "SharedAccessSignature sr=x&sig=YQ%3D%3D&se=17e8", wantRule: "CONN-010"},
		{name: "se negative", in: "SharedAccessSignature sr=x&sig=YQ%3D%3D&se=-1", wantRule: "CONN-010"},
		{name: "se float", in: "SharedAccessSignature sr=x&sig=YQ%3D%3D&se=1.5", wantRule: "CONN-010"},
		{name: "se space", in: "SharedAccessSignature sr=x&sig=YQ%3D%3D&se=1 ", wantRule: "CONN-010"},
		{name: "se leading zero", in: "SharedAccessSignature sr=x&sig=YQ%3D%3D&se=01", wantRule: "CONN-010"},
		{name: "se overflow", in: "SharedAccessSignature sr=x&sig=YQ%3D%3D&se=99999999999999999999", wantRule: "CONN-010"},
		{name: "raw plus in sig", in: "SharedAccessSignature sr=x&sig=" + testSig + "&se=1", wantRule: "CONN-009"},
		{name: "bad escape sig", in: "SharedAccessSignature sr=x&sig=%zz&se=1", wantRule: "CONN-009"},
		{name: "sig not base64", in: "SharedAccessSignature sr=x&sig=aa%20000000&se=0", wantRule: "CONN-009"},
		{name: "sig bad padding", in: "SharedAccessSignature sr=x&sig=abc&se=0", wantRule: "CONN-009"},
		{name: "bad escape sr", in: "SharedAccessSignature sr=%zz&sig=YQ%3D%3D&se=1", wantRule: "CONN-008"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSASToken(tt.in)
			if tt.wantRule != "" {
				checkRule(t, "ParseSASToken", err, tt.wantRule)
				if err != nil && strings.Contains(tt.in, "sig=") && !strings.Contains(err.Error(), "sig=REDACTED") && strings.Contains(err.Error(), "sig=") {
					t.Errorf("error leaks the signature: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSASToken(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParseSASToken(%q)\n got %+v\nwant %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestSASVerifyKnownVector(t *testing.T) {
	for _, c := range []struct{ sr, sig string }{{testSR, testSig}, {strings.ReplaceAll(testSR, "%2F", "%2f"), testSigLower}} {
		pw := "SharedAccessSignature sr=" + c.sr + "&sig=" + url.QueryEscape(c.sig) + "&se=1700000000"
		tok, err := ParseSASToken(pw)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := tok.StringToSign(), c.sr+"\n1700000000"; got != want {
			t.Errorf("StringToSign = %q, want %q", got, want)
		}
		ok, err := tok.Verify(testKey)
		if err != nil || !ok {
			t.Errorf("Verify(right key) over %q = %v, %v", c.sr, ok, err)
		}
		ok, err = tok.Verify(wrongKey)
		if err != nil || ok {
			t.Errorf("Verify(wrong key) = %v, %v; want false, nil", ok, err)
		}
		if _, err := tok.Verify("not base64!"); !errors.Is(err, ErrBadKey) {
			t.Errorf("Verify(bad key) err = %v, want ErrBadKey", err)
		}
		if _, err := tok.Verify(""); !errors.Is(err, ErrBadKey) {
			t.Errorf("Verify(empty key) err = %v, want ErrBadKey", err)
		}
		uri, err := tok.ResourceURI()
		if err != nil || uri != testHost+"/devices/dev1" {
			t.Errorf("ResourceURI = %q, %v", uri, err)
		}
	}
	// A signature computed over the %2F form does not verify over %2f:
	// the signed text is sr exactly as transmitted (CONN-009).
	tok := SASToken{Resource: strings.ReplaceAll(testSR, "%2F", "%2f"), Signature: testSig, Expiry: testSE}
	if ok, _ := tok.Verify(testKey); ok {
		t.Error("signature over %2F verified against %2f resource")
	}
	tok = SASToken{Resource: testSR, Signature: testSig, Expiry: testSE + 1}
	if ok, _ := tok.Verify(testKey); ok {
		t.Error("signature verified with a different expiry")
	}
}

func TestSignKnownVector(t *testing.T) {
	got, err := Sign(testKey, testSR+"\n1700000000")
	if err != nil || got != testSig {
		t.Errorf("Sign = %q, %v; want %q", got, err, testSig)
	}
	if _, err := Sign("***", "x"); !errors.Is(err, ErrBadKey) {
		t.Errorf("Sign(bad key) err = %v", err)
	}
}

func TestNewSASToken(t *testing.T) {
	exp := time.Unix(testSE, 999)
	pw, err := NewSASToken(testHost+"/devices/dev1", testKey, exp, "")
	if err != nil {
		t.Fatal(err)
	}
	want := "SharedAccessSignature sr=" + testSR + "&sig=" + url.QueryEscape(testSig) + "&se=1700000000"
	if pw != want {
		t.Errorf("NewSASToken =\n %q\nwant\n %q", pw, want)
	}
	tok, err := ParseSASToken(pw)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := tok.Verify(testKey); !ok {
		t.Error("fresh token does not verify")
	}
	if !tok.ExpiresAt().Equal(time.Unix(testSE, 0)) || tok.ExpiresAt().Location() != time.UTC {
		t.Errorf("ExpiresAt = %v", tok.ExpiresAt())
	}

	// Module resource with special characters, and a policy key name.
	id := Identity{DeviceID: "a+b$c", ModuleID: "m=1"}
	pw, err = NewSASToken(DeviceResourceURI(testHost, id), testKey, exp, "my policy")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(pw, "sr=myhub.azure-devices.net%2Fdevices%2Fa%2Bb%24c%2Fmodules%2Fm%3D1&") || !strings.HasSuffix(pw, "&skn=my+policy") {
		t.Errorf("NewSASToken = %q", pw)
	}
	tok, err = ParseSASToken(pw)
	if err != nil {
		t.Fatal(err)
	}
	uri, _ := tok.ResourceURI()
	if tok.KeyName != "my policy" || !ResourceCovers(uri, testHost, id) {
		t.Errorf("token %+v (uri %q) does not round-trip", tok, uri)
	}
	if ok, _ := tok.Verify(testKey); !ok {
		t.Error("module token does not verify")
	}

	if _, err := NewSASToken("x", "!!", exp, ""); !errors.Is(err, ErrBadKey) {
		t.Errorf("bad key err = %v", err)
	}
	if _, err := NewSASToken("x", testKey, time.Unix(-5, 0), ""); err == nil {
		t.Error("negative expiry accepted")
	}
}

func TestDeviceResourceURI(t *testing.T) {
	if got := DeviceResourceURI("h", Identity{DeviceID: "d"}); got != "h/devices/d" {
		t.Errorf("got %q", got)
	}
	if got := DeviceResourceURI("h", Identity{DeviceID: "d", ModuleID: "m"}); got != "h/devices/d/modules/m" {
		t.Errorf("got %q", got)
	}
}

func TestResourceCovers(t *testing.T) {
	dev := Identity{DeviceID: "Dev1"}
	mod := Identity{DeviceID: "Dev1", ModuleID: "mod1"}
	tests := []struct {
		sr   string // as transmitted; decoded by the test like the hub would
		id   Identity
		want bool
	}{
		{"myhub.azure-devices.net%2Fdevices%2FDev1", dev, true},
		{"myhub.azure-devices.net%2fdevices%2fDev1", dev, true},  // lower-case escapes
		{"myhub.azure-devices.net/devices/Dev1", dev, true},      // not encoded at all
		{"MyHub.Azure-Devices.NET%2Fdevices%2FDev1", dev, true},  // host case-insensitive
		{"myhub.azure-devices.net%2Fdevices%2Fdev1", dev, false}, // id case-sensitive
		{"myhub.azure-devices.net%2FDevices%2FDev1", dev, false}, // path case-sensitive
		{"myhub.azure-devices.net%2Fdevices", dev, true},         // segment prefix
		{"myhub.azure-devices.net", dev, true},                   // hub-level policy
		{"myhub.azure-devices.net%2Fdevices%2FDev", dev, false},  // not on a segment boundary
		{"myhub.azure-devices.net%2Fdev", dev, false},
		{"myhub.azure-devices.net%2Fdevices%2FDev1%2F", dev, false},
		{"myhub.azure-devices.net%2Fdevices%2FDev1%2Fapi-version%3D2016-11-14", dev, false}, // extra segment
		{"otherhub.azure-devices.net%2Fdevices%2FDev1", dev, false},
		{"myhub.azure-devices.net.evil%2Fdevices%2FDev1", dev, false},
		{"%2Fdevices%2FDev1", dev, false},
		{"myhub.azure-devices.net%2F", dev, false},
		{"myhub.azure-devices.net%2Fdevices%2FDev1%2Fmodules%2Fmod1", mod, true},
		{"myhub.azure-devices.net%2Fdevices%2FDev1", mod, true},         // device scope covers its modules
		{"myhub.azure-devices.net%2Fdevices%2FDev1%2Fmod1", mod, false}, // nanoFramework module form (MOD-003)
		{"myhub.azure-devices.net%2Fdevices%2FDev1%2Fmodules%2Fmod1", dev, false},
		{"myhub.azure-devices.net%2Fdevices%2FDev1%2Fmodules%2Fmod", mod, false},
	}
	for _, tt := range tests {
		uri, err := SASToken{Resource: tt.sr}.ResourceURI()
		if err != nil {
			t.Fatal(err)
		}
		if got := ResourceCovers(uri, testHost, tt.id); got != tt.want {
			t.Errorf("ResourceCovers(%q, %v) = %v, want %v", uri, tt.id, got, tt.want)
		}
	}
	// An ID containing '%' must not be decoded twice.
	pct := Identity{DeviceID: "a%41"}
	if !ResourceCovers(testHost+"/devices/a%41", testHost, pct) || ResourceCovers(testHost+"/devices/aA", testHost, pct) {
		t.Error("ResourceCovers mishandles '%' in an id")
	}
}

func TestRedactSAS(t *testing.T) {
	tests := []struct{ in, want string }{
		{"SharedAccessSignature sr=h%2Fdevices%2Fd&sig=abc%2Bdef%3D&se=1",
			"SharedAccessSignature sr=h%2Fdevices%2Fd&sig=REDACTED&se=1"},
		{"SharedAccessSignature sig=ab+c/d==&se=1&sr=x",
			"SharedAccessSignature sig=REDACTED&se=1&sr=x"},
		{"sig=abc", "sig=REDACTED"},
		{"password: \"SharedAccessSignature sr=x&SIG=abc&se=1\"", "password: \"SharedAccessSignature sr=x&SIG=REDACTED&se=1\""},
		{"HostName=h;DeviceId=d;SharedAccessKey=abc+/def==", "HostName=h;DeviceId=d;SharedAccessKey=REDACTED"},
		{"HostName=h;SharedAccessKeyName=iothubowner;SharedAccessKey=abc=;x=1",
			"HostName=h;SharedAccessKeyName=iothubowner;SharedAccessKey=REDACTED;x=1"},
		{"a sig=1 and sig=2", "a sig=REDACTED and sig=REDACTED"},
		{"config=1&xsig=keep", "config=1&xsig=keep"},
		{"sig=&se=1", "sig=&se=1"},
		{"nothing here", "nothing here"},
		{"", ""},
		{"sig=REDACTED", "sig=REDACTED"},
	}
	for _, tt := range tests {
		if got := RedactSAS(tt.in); got != tt.want {
			t.Errorf("RedactSAS(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	pw, _ := NewSASToken("h/devices/d", testKey, time.Unix(testSE, 0), "")
	tok, _ := ParseSASToken(pw)
	if strings.Contains(RedactSAS(pw), url.QueryEscape(tok.Signature)) {
		t.Error("signature survived redaction")
	}
}

func TestParseSASTokenErrorRedacted(t *testing.T) {
	// Fuzz regression: long input whose quoted form is truncated.
	in := sasPrefix + strings.Repeat("0", 150) + " sig=secret"
	_, err := ParseSASToken(in)
	var e *Error
	if !errors.As(err, &e) || e.Input != RedactSAS(in) || strings.Contains(err.Error(), "secret") {
		t.Errorf("err = %v", err)
	}
	// A password that is no token at all may be the raw key (CONN-011):
	// nothing of it is echoed.
	key := "xZZ6p67aCNq9Zr8hTeqHqm4kaYd1mwWR6+JQBVyrzBY="
	if _, err := ParseSASToken(key); err == nil || strings.Contains(err.Error(), key[:8]) {
		t.Errorf("bare key as password: err = %v", err)
	}
}
