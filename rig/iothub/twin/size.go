package twin

import (
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// Size measures s the way the section size limit is defined (TWIN-015).
//
// The count is the number of bytes of the compact JSON text of s (no
// whitespace outside strings, members in any order), with these
// adjustments:
//
//   - a member whose name starts with '$' ($version, $metadata and other
//     read-only, hub-managed elements) is left out entirely, at any depth,
//     together with its value and its separating comma;
//   - C0 (U+0000–U+001F) and C1 (U+0080–U+009F) control characters in keys
//     and strings count 0, whatever escape would encode them;
//   - every other character counts its UTF-8 length in bytes (a
//     conservative reading of "characters"), except '"' and '\' inside
//     strings, which count 2 as they are escaped; a byte of invalid UTF-8
//     counts 3, the size of the U+FFFD that replaces it on encoding;
//   - structural characters { } [ ] : , and the quotes around strings
//     count 1 each; numbers count the length of their literal; true,
//     false and null count 4, 5 and 4.
//
// For ASCII-only sections without '$' members or control characters the
// result equals len(json.Marshal(s)). A nil section counts as {} (2).
// Values of unsupported types count as the length of their encoding/json
// encoding, or 0 if they have none; validate first for a meaningful result.
func Size(s Section) int {
	return sizeObject(s)
}

func sizeObject(m map[string]any) int {
	n := 2 // braces
	first := true
	for k, v := range m {
		if strings.HasPrefix(k, "$") {
			continue
		}
		if !first {
			n++ // comma
		}
		first = false
		n += sizeString(k) + 1 + sizeValue(v) // key, colon, value
	}
	return n
}

func sizeValue(v any) int {
	switch t := v.(type) {
	case nil:
		return 4
	case bool:
		if t {
			return 4
		}
		return 5
	case string:
		return sizeString(t)
	case map[string]any:
		return sizeObject(t)
	case []any:
		n := 2
		for i, e := range t {
			if i > 0 {
				n++
			}
			n += sizeValue(e)
		}
		return n
	}
	if lit, isNum, ok := numberLiteral(v); isNum {
		if ok {
			return len(lit)
		}
		return 0
	}
	b, err := json.Marshal(v)
	if err != nil {
		return 0
	}
	return len(b)
}

func sizeString(s string) int {
	n := 2 // quotes
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		i += w
		switch {
		case r == utf8.RuneError && w == 1:
			n += 3
		case isControl(r):
		case r == '"' || r == '\\':
			n += 2
		default:
			n += w
		}
	}
	return n
}
