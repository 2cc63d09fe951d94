package console

import "bytes"

// secretNames are the JSON member names whose values never reach the
// console log: SAS keys, private keys, Wi-Fi passwords, tokens, signatures.
var secretNames = []string{"key", "keypem", "password", "sas", "token", "sig"}

// Redacted replaces the value of every secret member.
const Redacted = `"<redacted>"`

func isSecretName(name []byte) bool {
	for _, s := range secretNames {
		if len(name) == len(s) && bytes.EqualFold(name, []byte(s)) {
			return true
		}
	}
	return false
}

// Redact returns js with the value of every JSON member named key, keyPem,
// password, sas, token or sig (compared case-insensitively, at any depth)
// replaced by "<redacted>". Whatever the value was (string, number, object,
// array, literal), it becomes that one string, so valid JSON stays valid.
//
// Redact is a tolerant scanner, not a parser: it also redacts truncated or
// otherwise malformed JSON (a frame that failed its CRC check is still
// logged), copying what it cannot make sense of unchanged. A member name
// written with escape sequences is compared in its escaped form. Redact
// never modifies js.
func Redact(js []byte) []byte {
	out := make([]byte, 0, len(js))
	i := 0
	for i < len(js) {
		c := js[i]
		if c != '"' {
			out = append(out, c)
			i++
			continue
		}
		end, closed := stringEnd(js, i)
		str := js[i:end]
		out = append(out, str...)
		i = end
		// A string followed by ':' is a member name.
		j := skipSpace(js, i)
		if !closed || j >= len(js) || js[j] != ':' || !isSecretName(str[1:len(str)-1]) {
			continue
		}
		out = append(out, js[i:j+1]...) // whitespace and ':'
		k := skipSpace(js, j+1)
		out = append(out, js[j+1:k]...)
		i = skipValue(js, k)
		out = append(out, Redacted...)
	}
	return out
}

// stringEnd returns the index just past the string starting at js[i]=='"'
// and whether it is terminated (if not, the index is len(js)).
func stringEnd(js []byte, i int) (int, bool) {
	for j := i + 1; j < len(js); j++ {
		switch js[j] {
		case '\\':
			j++
		case '"':
			return j + 1, true
		}
	}
	return len(js), false
}

func scanString(js []byte, i int) int {
	end, _ := stringEnd(js, i)
	return end
}

func skipSpace(js []byte, i int) int {
	for i < len(js) && (js[i] == ' ' || js[i] == '\t' || js[i] == '\r' || js[i] == '\n') {
		i++
	}
	return i
}

// skipValue returns the index just past the JSON value starting at js[i]:
// a string, a balanced object or array (strings inside are skipped), or a
// literal running up to the next ',', '}' or ']'.
func skipValue(js []byte, i int) int {
	if i >= len(js) {
		return i
	}
	switch js[i] {
	case '"':
		return scanString(js, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(js); j++ {
			switch js[j] {
			case '"':
				j = scanString(js, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(js)
	default:
		j := i
		for j < len(js) && js[j] != ',' && js[j] != '}' && js[j] != ']' {
			j++
		}
		// Keep whitespace before the delimiter outside the redaction.
		for j > i && (js[j-1] == ' ' || js[j-1] == '\t' || js[j-1] == '\r' || js[j-1] == '\n') {
			j--
		}
		return j
	}
}
