package iothub

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hilrun/hilrun/rig/secrets"
)

// sasPrefix starts every SAS password (CONN-007).
const sasPrefix = "SharedAccessSignature "

// SASToken is a parsed shared access signature as sent in the CONNECT
// Password (CONN-007..CONN-010).
type SASToken struct {
	// Resource is the sr field exactly as transmitted, still URL-encoded,
	// because the signature covers these bytes (CONN-009).
	Resource string
	// Signature is the sig field after URL-decoding: the Base64 text of the
	// HMAC.
	Signature string
	// Expiry is the se field, in seconds since the Unix epoch (CONN-010).
	Expiry int64
	// KeyName is the skn field (URL-decoded), or "" when the token carries
	// none, as device-key tokens do (CONN-007).
	KeyName string
}

// ParseSASToken parses a CONNECT Password holding a SAS token (CONN-007).
//
// The text must start with "SharedAccessSignature " and continue with
// '&'-separated key=value fields in any order: sr, sig and se exactly once,
// skn at most once, nothing else. se must be a decimal number without
// leading zeros, so that the signed string is unambiguous (CONN-010). sig is
// URL-decoded and must then be standard Base64; a raw '+' in it is refused
// with its own message, because it shows the Base64 text was not URL-encoded
// (CONN-009) and would decode to a space. Error messages never contain the
// signature.
func ParseSASToken(password string) (SASToken, error) {
	const op = "parse SAS token"
	fail := func(rule, reason string) (SASToken, error) {
		return SASToken{}, newError(op, RedactSAS(password), rule, reason)
	}
	rest, ok := strings.CutPrefix(password, sasPrefix)
	if !ok {
		// Not a token, so RedactSAS cannot know what to hide: it may be the
		// raw device key sent as password (CONN-011). Echo nothing.
		return SASToken{}, newError(op, "(password not shown)", "CONN-007",
			"does not start with "+strconv.Quote(sasPrefix))
	}
	var t SASToken
	var seen [4]bool // sr, sig, se, skn
	n := 0
	for piece := range strings.SplitSeq(rest, "&") {
		n++
		if piece == "" {
			return fail("CONN-007", "empty field (doubled, leading or trailing '&')")
		}
		k, v, ok := strings.Cut(piece, "=")
		if !ok {
			// The text is not echoed: it could be a signature.
			return fail("CONN-007", "field "+strconv.Itoa(n)+" has no '='")
		}
		var slot int
		switch k {
		case "sr":
			slot = 0
		case "sig":
			slot = 1
		case "se":
			slot = 2
		case "skn":
			slot = 3
		default:
			return fail("CONN-007", "unknown field "+quote(k))
		}
		if seen[slot] {
			return fail("CONN-007", "field "+quote(k)+" appears more than once")
		}
		seen[slot] = true
		if v == "" {
			return fail("CONN-007", "field "+quote(k)+" is empty")
		}
		switch slot {
		case 0:
			if _, err := url.QueryUnescape(v); err != nil {
				return fail("CONN-008", "sr is not validly URL-encoded")
			}
			t.Resource = v
		case 1:
			if strings.Contains(v, "+") {
				return fail("CONN-009", "sig contains a raw '+'; the Base64 signature must be URL-encoded")
			}
			sig, err := url.QueryUnescape(v)
			if err != nil {
				return fail("CONN-009", "sig is not validly URL-encoded")
			}
			if _, err := base64.StdEncoding.DecodeString(sig); err != nil {
				return fail("CONN-009", "sig is not standard Base64 once URL-decoded")
			}
			t.Signature = sig
		case 2:
			if !allDigits(v) {
				return fail("CONN-010", "se "+quote(v)+" is not a decimal number")
			}
			if len(v) > 1 && v[0] == '0' {
				return fail("CONN-010", "se "+quote(v)+" has leading zeros")
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return fail("CONN-010", "se "+quote(v)+" is out of range")
			}
			t.Expiry = n
		case 3:
			name, err := url.QueryUnescape(v)
			if err != nil {
				return fail("CONN-007", "skn is not validly URL-encoded")
			}
			t.KeyName = name
		}
	}
	for slot, name := range [...]string{"sr", "sig", "se"} {
		if !seen[slot] {
			return fail("CONN-007", "field "+quote(name)+" is missing")
		}
	}
	return t, nil
}

// StringToSign returns the text the signature covers: sr as transmitted, a
// newline, and se in decimal (CONN-009).
func (t SASToken) StringToSign() string {
	return t.Resource + "\n" + strconv.FormatInt(t.Expiry, 10)
}

// Verify reports whether the token's signature is the HMAC-SHA256 of
// StringToSign under the Base64-encoded key (CONN-009). The comparison takes
// constant time. An error means the key itself is unusable.
func (t SASToken) Verify(keyBase64 string) (bool, error) {
	want, err := Sign(keyBase64, t.StringToSign())
	if err != nil {
		return false, err
	}
	return hmac.Equal([]byte(want), []byte(t.Signature)), nil
}

// ResourceURI returns sr URL-decoded.
func (t SASToken) ResourceURI() (string, error) {
	u, err := url.QueryUnescape(t.Resource)
	if err != nil {
		return "", newError("decode SAS resource", t.Resource, "CONN-008", "sr is not validly URL-encoded")
	}
	return u, nil
}

// ExpiresAt returns se as a UTC time.
func (t SASToken) ExpiresAt() time.Time { return time.Unix(t.Expiry, 0).UTC() }

// ErrBadKey is returned (wrapped) when a symmetric key is not valid
// standard Base64 or decodes to nothing.
var ErrBadKey = errors.New("iothub: symmetric key is not non-empty standard Base64")

// Sign returns the Base64 (standard encoding) HMAC-SHA256 of stringToSign,
// keyed with the Base64-decoded key (CONN-009).
func Sign(keyBase64, stringToSign string) (string, error) {
	key, err := base64.StdEncoding.DecodeString(keyBase64)
	if err != nil || len(key) == 0 {
		return "", ErrBadKey
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(stringToSign))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil)), nil
}

// NewSASToken builds a complete password,
// "SharedAccessSignature sr=...&sig=...&se=...[&skn=...]", scoped to
// resourceURI and valid until expiry (truncated to whole seconds). sr is
// url.QueryEscape(resourceURI), which yields upper-case escapes such as %2F
// as the Azure SDKs send them; sig and skn are escaped the same way, and skn
// is left out when keyName is "".
func NewSASToken(resourceURI, keyBase64 string, expiry time.Time, keyName string) (string, error) {
	se := expiry.Unix()
	if se < 0 {
		return "", errors.New("iothub: SAS expiry before 1970")
	}
	sr := url.QueryEscape(resourceURI)
	seText := strconv.FormatInt(se, 10)
	sig, err := Sign(keyBase64, sr+"\n"+seText)
	if err != nil {
		return "", err
	}
	// A signed token is a credential until se: register its signature so
	// the token is masked wherever it is logged or traced (rig/secrets).
	secrets.AddBase64("SAS signature for "+resourceURI+" until "+seText, sig)
	s := sasPrefix + "sr=" + sr + "&sig=" + url.QueryEscape(sig) + "&se=" + seText
	if keyName != "" {
		s += "&skn=" + url.QueryEscape(keyName)
	}
	return s, nil
}

// DeviceResourceURI returns the resource a token for id is scoped to
// (CONN-008, MOD-003): "{host}/devices/{d}" or
// "{host}/devices/{d}/modules/{m}".
func DeviceResourceURI(host string, id Identity) string {
	s := host + "/devices/" + id.DeviceID
	if id.IsModule() {
		s += "/modules/" + id.ModuleID
	}
	return s
}

// ResourceCovers reports whether a decoded sr grants access to id on host
// (CONN-008): it must equal DeviceResourceURI(host, id) or be a prefix of it
// that ends on a '/' boundary, so "{host}/devices" and a bare "{host}" (a
// hub-level policy token) qualify but "{host}/devices/ab" does not cover
// device "abc". The host part is compared case-insensitively, the path
// case-sensitively, since IDs are case-sensitive (MOD-008). Extra trailing
// segments, such as the "/api-version=..." seen in one documentation
// example, do not cover.
func ResourceCovers(resourceURI, host string, id Identity) bool {
	gotHost, gotPath, hasPath := strings.Cut(resourceURI, "/")
	if !strings.EqualFold(gotHost, host) {
		return false
	}
	if !hasPath {
		return true
	}
	want := strings.TrimPrefix(DeviceResourceURI(host, id), host+"/")
	return gotPath == want || strings.HasPrefix(want, gotPath+"/")
}

// RedactSAS hides secrets in s so it can go to logs and traces: the value of
// every "sig=" field (any letter case) and of every "SharedAccessKey="
// connection-string field becomes "REDACTED". It works on bare tokens, full
// passwords, connection strings and free text containing them. Other text,
// including SharedAccessKeyName, is left as is.
func RedactSAS(s string) string {
	s = redactField(s, "sig=", true)
	return redactField(s, "SharedAccessKey=", false)
}

// redactField replaces the value after each occurrence of key (which must not
// be preceded by a letter or digit) with "REDACTED".
func redactField(s, key string, foldCase bool) string {
	const mask = "REDACTED"
	var sb strings.Builder
	i := 0
	for {
		var j int
		if foldCase {
			j = indexFold(s[i:], key)
		} else {
			j = strings.Index(s[i:], key)
		}
		if j < 0 {
			break
		}
		start := i + j
		end := start + len(key)
		if start > 0 && isAlnum(s[start-1]) {
			sb.WriteString(s[i:end])
			i = end
			continue
		}
		v := end
		for v < len(s) && isSecretChar(s[v]) {
			v++
		}
		sb.WriteString(s[i:end])
		if v > end {
			sb.WriteString(mask)
		}
		i = v
	}
	if i == 0 {
		return s
	}
	sb.WriteString(s[i:])
	return sb.String()
}

// indexFold is strings.Index with ASCII-only case folding; key must be
// lower-case ASCII.
func indexFold(s, key string) int {
outer:
	for i := 0; i+len(key) <= len(s); i++ {
		for j := 0; j < len(key); j++ {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != key[j] {
				continue outer
			}
		}
		return i
	}
	return -1
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// isSecretChar reports whether c can be part of a Base64 secret, raw or
// URL-encoded.
func isSecretChar(c byte) bool {
	return isUnreserved(c) || c == '%' || c == '+' || c == '/' || c == '='
}
