package reports

import (
	"encoding/json"
	"reflect"
	"regexp"
	"strings"

	"github.com/hilrun/hilrun/rig/secrets"
)

// Redacted is what a secret is replaced with.
const Redacted = "<redacted>"

var (
	// PEM private key blocks (RSA, EC, ENCRYPTED, plain PKCS#8 …). A block
	// whose END line was cut off (a truncated excerpt) is redacted to the end
	// of the text.
	pemBlock = regexp.MustCompile(`(?s)-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)`)

	// JSON members holding secrets, plain and as escaped JSON inside a JSON
	// string. The value is a JSON string.
	secretNames  = `(?:key|keyPem|password|primaryKey|secondaryKey|symmetricKey|privateKey|privateKeyPem|sharedAccessKey)`
	jsonMember   = regexp.MustCompile(`("` + secretNames + `"\s*:\s*)"(?:[^"\\]|\\.)*"`)
	jsonMemberEs = regexp.MustCompile(`(\\"` + secretNames + `\\"\s*:\s*)\\"(?:[^"\\]|\\[^"])*\\"`)
)

// Redact removes secrets from free text:
//
//   - the value of every SAS signature field, "sig=…" up to the next "&",
//     whitespace, quote or end of text (also URL-encoded "sig%3D…" up to
//     "%26"),
//   - "SharedAccessKey=…" in connection strings, up to ";", "&", whitespace,
//     quote or end,
//   - PEM private key blocks,
//   - JSON members named key, keyPem, password (and the usual variants such
//     as primaryKey, privateKey), whose string values become "<redacted>".
//
// Matching is case-insensitive for the field names "sig" and
// "SharedAccessKey". Redact is idempotent.
func Redact(s string) string {
	if s == "" {
		return s
	}
	s = pemBlock.ReplaceAllString(s, Redacted)
	s = jsonMember.ReplaceAllString(s, `$1"`+Redacted+`"`)
	s = jsonMemberEs.ReplaceAllString(s, `$1\"`+Redacted+`\"`)
	s = redactField(s, "sharedaccesskey=", ";&")
	s = redactField(s, "sig=", "&")
	s = redactEncodedSig(s)
	return s
}

// redactField replaces the value after every case-insensitive occurrence of
// name, up to (not including) one of stop, whitespace, a quote, '<' or '>'.
func redactField(s, name, stop string) string {
	return redactAfter(s, name, func(lower string, i int) bool { return isStop(s[i], stop) })
}

// redactEncodedSig handles "sig%3D<value>" where the value runs to "%26"
// (an encoded '&'), a raw '&', whitespace, a quote or the end.
func redactEncodedSig(s string) string {
	return redactAfter(s, "sig%3d", func(lower string, i int) bool {
		return isStop(s[i], "&") || strings.HasPrefix(lower[i:], "%26")
	})
}

// redactAfter replaces the value after every case-insensitive occurrence of
// name (given in lower case); the value ends where stopAt says so.
func redactAfter(s, name string, stopAt func(lower string, i int) bool) string {
	lower := asciiLower(s)
	var b strings.Builder
	last := 0
	for i := 0; ; {
		j := strings.Index(lower[i:], name)
		if j < 0 {
			break
		}
		start := i + j + len(name)
		end := start
		for end < len(s) && !stopAt(lower, end) {
			end++
		}
		b.WriteString(s[last:start])
		if s[start:end] != "" && s[start:end] != Redacted {
			b.WriteString(Redacted)
		} else {
			b.WriteString(s[start:end])
		}
		last, i = end, end
		if i >= len(s) {
			break
		}
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

func isStop(c byte, stop string) bool {
	switch c {
	case ' ', '\t', '\r', '\n', '"', '\'', '<', '>', '\\':
		return true
	}
	return strings.IndexByte(stop, c) >= 0
}

// asciiLower lower-cases ASCII letters only, so byte offsets stay aligned
// with the original string.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// Redacted returns a deep copy of the report with every registered secret
// masked (rig/secrets) and Redact applied to every string in it (metadata,
// names, messages, wire and console excerpts).
func (r *Report) Redacted() *Report {
	b, err := json.Marshal(r)
	if err != nil {
		// The model holds only JSON-safe types; this cannot happen.
		panic("reports: marshal: " + err.Error())
	}
	var out Report
	if err := json.Unmarshal(b, &out); err != nil {
		panic("reports: unmarshal: " + err.Error())
	}
	redactValue(reflect.ValueOf(&out).Elem())
	return &out
}

func redactValue(v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		if v.CanSet() {
			// Two lines of defence: every secret the rig registered, by
			// value in all its forms (rig/secrets), then the textual
			// patterns for secrets it did not hand out.
			v.SetString(Redact(secrets.Mask(v.String())))
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				redactValue(v.Field(i))
			}
		}
	case reflect.Slice, reflect.Array:
		for i := 0; i < v.Len(); i++ {
			redactValue(v.Index(i))
		}
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			redactValue(v.Elem())
		}
	}
}
