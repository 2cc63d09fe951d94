package secrets_test

import (
	"encoding/base64"
	"net/url"
	"strings"
	"testing"

	"github.com/hilrun/hilrun/rig/secrets"
)

// FuzzMask: whatever the secrets and the text, the masked text holds no
// registered form of any secret, and masking it again changes nothing.
func FuzzMask(f *testing.F) {
	f.Add([]byte("0123456789abcdef0123456789abcdef"), "text secret!", "prefix ", 0, uint8(0))
	f.Add(testKeyRaw, "p@ss w0rd&<lab>", "SharedAccessSignature sr=h&sig=", 3, uint8(5))
	f.Add([]byte("<redacted><redacted>"), "redacted>x<redacted", "<redacted>", 1, uint8(2))
	f.Add([]byte("dacted>aaaaaaaaaaaaaaaaaaaaaaaa"), "aaaaaaaaaaaaaaaa<re", "", 9, uint8(1))
	f.Add([]byte("\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"), "\x00\x00\x00\x00\x00\x00\x00\x00", "\x00\x00\x00", 2, uint8(7))
	f.Fuzz(func(t *testing.T, key []byte, text, around string, pos int, form uint8) {
		r := secrets.New()
		r.AddBytes("bytes secret", key)
		r.AddBase64("base64 secret", base64.StdEncoding.EncodeToString(key))
		r.AddText("text secret", text)
		forms := r.Forms()
		// Plant one registered form (or the text itself) inside around.
		in := around
		if len(forms) > 0 {
			planted := forms[int(form)%len(forms)].Text
			if pos < 0 {
				pos = -pos
			}
			if len(around) > 0 {
				pos %= len(around) + 1
			} else {
				pos = 0
			}
			in = around[:pos] + planted + around[pos:] + url.QueryEscape(text)
		}
		got := r.Mask(in)
		for _, fm := range forms {
			if strings.Contains(got, fm.Text) {
				t.Fatalf("masked text holds %s (%s) %q:\n in %q\nout %q", fm.Label, fm.Desc, fm.Text, in, got)
			}
		}
		if again := r.Mask(got); again != got {
			t.Fatalf("masking twice changed %q to %q", got, again)
		}
		if b := r.MaskBytes([]byte(in)); string(b) != got {
			t.Fatalf("MaskBytes %q differs from Mask %q", b, got)
		}
	})
}
