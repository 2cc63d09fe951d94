package twin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Section is one twin section (desired or reported properties, or a patch to
// one of them) as a decoded JSON object. Values are nil, bool, string,
// json.Number, Section (map[string]any) or []any. Numbers decoded by this
// package are always json.Number so that large integers keep their exact
// digits. Go numeric types (int, float64, ...) are accepted where a Section
// is built by hand.
type Section = map[string]any

// Documented twin limits.
const (
	// MaxKeyBytes is the longest permitted member name, in UTF-8 bytes (TWIN-011).
	MaxKeyBytes = 64
	// MaxDepth is the deepest permitted object nesting below the section
	// root; see [Depth] for how levels are counted (TWIN-013, TWIN-018).
	MaxDepth = 5
	// MaxStringBytes is the longest permitted string value, in UTF-8 bytes (TWIN-014).
	MaxStringBytes = 512
	// MaxSectionBytes is the largest permitted section as measured by [Size] (TWIN-015).
	MaxSectionBytes = 8 * 1024
	// MaxSafeInt and MinSafeInt bound integer values (TWIN-012).
	MaxSafeInt = 4503599627370495
	MinSafeInt = -4503599627370496
)

// VersionKey is the hub-managed member carrying a section's version
// (TWIN-004, TWIN-009).
const VersionKey = "$version"

var (
	// ErrNotObject is wrapped by every error from [ParseObject]: the body was
	// not exactly one JSON object (TWIN-006).
	ErrNotObject = errors.New("twin: body is not a single JSON object")
	// ErrInvalidUTF8 is additionally wrapped when a body is rejected because
	// it is not valid UTF-8 (JSON text must be UTF-8; encoding/json would
	// otherwise silently replace bad bytes, hiding TWIN-011 violations).
	ErrInvalidUTF8 = errors.New("twin: body is not valid UTF-8")
	// ErrMalformedDocument is wrapped when a body is a JSON object but lacks
	// the members a device-side twin document must have (TWIN-004, TWIN-009).
	ErrMalformedDocument = errors.New("twin: malformed twin document")
)

// ParseObject decodes body, which must be exactly one JSON object optionally
// surrounded by whitespace (TWIN-006). Arrays, scalars, null, syntax errors,
// invalid UTF-8 and trailing data all yield an error wrapping ErrNotObject.
// Numbers are kept as json.Number. Duplicate member names are accepted; the
// last occurrence wins, as with encoding/json.
func ParseObject(body []byte) (Section, error) {
	if !utf8.Valid(body) {
		return nil, fmt.Errorf("%w: %w", ErrNotObject, ErrInvalidUTF8)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: empty body", ErrNotObject)
		}
		return nil, fmt.Errorf("%w: %w", ErrNotObject, err)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: got %s", ErrNotObject, jsonKind(v))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: trailing data after the object", ErrNotObject)
	}
	return obj, nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case json.Number:
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// Clone returns a deep copy of s: nested objects and arrays are copied, so
// the result shares no mutable state with s. Clone(nil) is nil.
func Clone(s Section) Section {
	if s == nil {
		return nil
	}
	out := make(Section, len(s))
	for k, v := range s {
		out[k] = cloneValue(v)
	}
	return out
}

func cloneValue(v any) any {
	switch t := v.(type) {
	case map[string]any:
		if t == nil {
			return map[string]any(nil)
		}
		return Clone(t)
	case []any:
		if t == nil {
			return []any(nil)
		}
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = cloneValue(e)
		}
		return out
	}
	return v
}

// StripReadOnly returns a deep copy of s without any member whose name
// starts with '$', at any depth. Such members ($version, $metadata,
// $lastUpdated, ...) are hub-managed and never configuration (TWIN-016,
// TWIN-017); legal property names cannot contain '$' (TWIN-011), so nothing
// else is lost.
func StripReadOnly(s Section) Section {
	if s == nil {
		return nil
	}
	out := make(Section, len(s))
	for k, v := range s {
		if strings.HasPrefix(k, "$") {
			continue
		}
		out[k] = stripValue(v)
	}
	return out
}

func stripValue(v any) any {
	switch t := v.(type) {
	case map[string]any:
		if t == nil {
			return map[string]any(nil)
		}
		return StripReadOnly(t)
	case []any:
		if t == nil {
			return []any(nil)
		}
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = stripValue(e)
		}
		return out
	}
	return v
}

// Merge applies patch to dst in place with JSON merge-patch (RFC 7386)
// semantics (TWIN-007, TWIN-009):
//
//   - a null member removes the member from dst;
//   - an object member is merged recursively into the object already in dst,
//     or into a new empty object when dst holds no object under that name
//     (so nulls nested in it are dropped rather than stored);
//   - any other member (scalar or array) replaces the value in dst.
//
// Values taken from patch are deep-copied, so later changes to patch never
// show through dst. dst must be non-nil unless patch is empty. Members named
// with '$' are treated like any other; callers strip $version first.
func Merge(dst, patch Section) {
	for k, pv := range patch {
		switch p := pv.(type) {
		case nil:
			delete(dst, k)
		case map[string]any:
			cur, ok := dst[k].(map[string]any)
			if !ok || cur == nil {
				cur = make(map[string]any, len(p))
			}
			Merge(cur, p)
			dst[k] = cur
		default:
			dst[k] = cloneValue(pv)
		}
	}
}

// Depth reports how deeply objects nest below the section root (TWIN-013).
//
// The section itself is level 0; an object that is a member of the section
// is level 1, an object inside that one level 2, and so on. Depth returns the
// highest level of any object, or 0 when s holds only scalars, arrays of
// scalars or nothing. Arrays do not add a level of their own: an object
// element of an array sits one level below the object holding the array.
//
// With this definition the documented example — objects "one" through
// "five" nested in turn, with a string leaf inside "five" — has depth 5 and
// is exactly at [MaxDepth]; adding a sixth object inside "five" gives 6.
func Depth(s Section) int {
	return depthOf(s, 0)
}

func depthOf(v any, level int) int {
	best := level
	switch t := v.(type) {
	case map[string]any:
		for _, e := range t {
			if m, ok := e.(map[string]any); ok {
				best = max(best, depthOf(m, level+1))
			} else if a, ok := e.([]any); ok {
				best = max(best, depthOf(a, level))
			}
		}
	case []any:
		for _, e := range t {
			if m, ok := e.(map[string]any); ok {
				best = max(best, depthOf(m, level+1))
			} else if a, ok := e.([]any); ok {
				best = max(best, depthOf(a, level))
			}
		}
	}
	return best
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// numberLiteral returns the JSON text a numeric value encodes to. ok is false
// when v is not a number or cannot be encoded (invalid json.Number, NaN, Inf).
func numberLiteral(v any) (lit string, isNumber, ok bool) {
	switch t := v.(type) {
	case json.Number:
		s := string(t)
		return s, true, validNumber(s)
	case int:
		return strconv.FormatInt(int64(t), 10), true, true
	case int8:
		return strconv.FormatInt(int64(t), 10), true, true
	case int16:
		return strconv.FormatInt(int64(t), 10), true, true
	case int32:
		return strconv.FormatInt(int64(t), 10), true, true
	case int64:
		return strconv.FormatInt(t, 10), true, true
	case uint:
		return strconv.FormatUint(uint64(t), 10), true, true
	case uint8:
		return strconv.FormatUint(uint64(t), 10), true, true
	case uint16:
		return strconv.FormatUint(uint64(t), 10), true, true
	case uint32:
		return strconv.FormatUint(uint64(t), 10), true, true
	case uint64:
		return strconv.FormatUint(t, 10), true, true
	case uintptr:
		return strconv.FormatUint(uint64(t), 10), true, true
	case float32, float64:
		// Let encoding/json pick the exact text it would put on the wire.
		b, err := json.Marshal(t)
		if err != nil {
			return "", true, false
		}
		return string(b), true, true
	}
	return "", false, false
}

// validNumber reports whether s is a JSON number literal (RFC 8259 §6).
func validNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start {
			return false
		}
	}
	return i == len(s)
}

// isIntegerLiteral reports whether a valid number literal is written as an
// integer (no fraction and no exponent). Only such literals are range checked
// against MinSafeInt..MaxSafeInt (TWIN-012).
func isIntegerLiteral(lit string) bool {
	return !strings.ContainsAny(lit, ".eE")
}

// integerInRange reports whether an integer literal lies within
// MinSafeInt..MaxSafeInt.
func integerInRange(lit string) bool {
	n, err := strconv.ParseInt(lit, 10, 64)
	if err != nil {
		return false // beyond int64, so certainly beyond the safe range
	}
	return n >= MinSafeInt && n <= MaxSafeInt
}
