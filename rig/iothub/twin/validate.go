package twin

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ValidationError describes the first rule a patch or section breaks.
type ValidationError struct {
	// Requirement is the requirement ID of the broken rule, e.g. "TWIN-011".
	Requirement string
	// Path locates the problem in JSONPath-like notation: "$" is the section
	// root, ".name" a member with a plain name, ["odd name"] any other member
	// and [3] an array element. For key errors it is the object holding the
	// key; for value errors it is the value itself.
	Path string
	// Key is the offending member name for key errors (TWIN-011, TWIN-016)
	// and empty for value errors. (The empty name is always a legal key, so
	// an empty Key is never a key error.)
	Key string
	// Reason says what is wrong, in a few words.
	Reason string
}

// Error formats e as, for example,
//
//	TWIN-011: key "a.b" at $.x: contains '.'
//	TWIN-014: value at $.x.note: string is 513 bytes, limit 512
func (e *ValidationError) Error() string {
	if e.Key != "" {
		return fmt.Sprintf("%s: key %q at %s: %s", e.Requirement, e.Key, e.Path, e.Reason)
	}
	return fmt.Sprintf("%s: value at %s: %s", e.Requirement, e.Path, e.Reason)
}

// ValidateReported checks a reported-properties patch (or a whole reported
// section) against the documented limits and returns the first violation as
// a *ValidationError, or nil. Members are visited depth first in sorted key
// order, and a key is checked before its value, so the result is
// deterministic.
//
// Rules:
//   - TWIN-016: no key may start with '$' (hub-managed members such as
//     $version or $metadata must never be written by the device);
//   - TWIN-011: keys are valid UTF-8 of at most MaxKeyBytes bytes, with no
//     C0 (U+0000–U+001F) or C1 (U+0080–U+009F) control character and none of
//     '.', '$', ' ' or ',';
//   - TWIN-012: values are null, booleans, numbers, strings or objects —
//     arrays are rejected in reported properties (see ValidateDesired for
//     the OTA exception); integer literals (no '.', 'e' or 'E') must lie in
//     MinSafeInt..MaxSafeInt, while other numbers are accepted as written;
//     null is accepted anywhere, being the deletion marker of TWIN-007;
//   - TWIN-013: objects nest at most MaxDepth levels as counted by Depth;
//   - TWIN-014: strings are at most MaxStringBytes bytes of UTF-8.
//
// The section size limit (TWIN-015) applies to the merged section rather
// than to a patch; use CheckSize after Merge.
func ValidateReported(patch Section) error {
	v := validator{allowArrays: false, dollarRequirement: "TWIN-016"}
	if e := v.object(patch, 0); e != nil {
		return e
	}
	return nil
}

// ValidateDesired applies the ValidateReported rules to a desired-properties
// patch or section, except that arrays are allowed: the OTA profile carries a
// Files array in desired properties (OTA-006), which is how this suite
// resolves the TWIN-012 conflict. Array elements are checked like any other
// value, and keys of objects inside arrays are checked too; an array does not
// add a nesting level of its own (see Depth).
//
// Hub-managed members are not legal here: a desired patch received from the
// service side must have "$version" removed by the caller before validation.
// A '$'-prefixed key is reported under TWIN-011.
func ValidateDesired(patch Section) error {
	v := validator{allowArrays: true, dollarRequirement: "TWIN-011"}
	if e := v.object(patch, 0); e != nil {
		return e
	}
	return nil
}

// CheckSize reports a TWIN-015 *ValidationError when Size(s) exceeds
// MaxSectionBytes, and nil otherwise. The hub calls it on the section that
// would result from merging a patch, and rejects the patch on error.
func CheckSize(s Section) error {
	if n := Size(s); n > MaxSectionBytes {
		return &ValidationError{
			Requirement: "TWIN-015",
			Path:        "$",
			Reason:      fmt.Sprintf("section is %d bytes, limit %d", n, MaxSectionBytes),
		}
	}
	return nil
}

type pathElem struct {
	key   string
	index int // used when key is unset, i.e. isIndex
	isIdx bool
}

type validator struct {
	allowArrays       bool
	dollarRequirement string
	path              []pathElem
}

func (v *validator) pathString() string {
	var b strings.Builder
	b.WriteByte('$')
	for _, p := range v.path {
		switch {
		case p.isIdx:
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(p.index))
			b.WriteByte(']')
		case plainName(p.key):
			b.WriteByte('.')
			b.WriteString(p.key)
		default:
			b.WriteByte('[')
			b.WriteString(strconv.Quote(p.key))
			b.WriteByte(']')
		}
	}
	return b.String()
}

// plainName reports whether k can be written after a '.' in a path.
func plainName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c == '_', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

func (v *validator) valueErr(req, format string, args ...any) *ValidationError {
	return &ValidationError{Requirement: req, Path: v.pathString(), Reason: fmt.Sprintf(format, args...)}
}

// object checks the members of obj, which sits at nesting level `level`.
func (v *validator) object(obj map[string]any, level int) *ValidationError {
	for _, k := range sortedKeys(obj) {
		if e := v.key(k); e != nil {
			return e
		}
		v.path = append(v.path, pathElem{key: k})
		if e := v.value(obj[k], level); e != nil {
			return e
		}
		v.path = v.path[:len(v.path)-1]
	}
	return nil
}

// key checks one member name (TWIN-011, TWIN-016).
func (v *validator) key(k string) *ValidationError {
	fail := func(req, format string, args ...any) *ValidationError {
		return &ValidationError{Requirement: req, Path: v.pathString(), Key: k, Reason: fmt.Sprintf(format, args...)}
	}
	if !utf8.ValidString(k) {
		return fail("TWIN-011", "not valid UTF-8")
	}
	if strings.HasPrefix(k, "$") {
		return fail(v.dollarRequirement, "starts with '$' (reserved for hub-managed members)")
	}
	if len(k) > MaxKeyBytes {
		return fail("TWIN-011", "%d bytes, limit %d", len(k), MaxKeyBytes)
	}
	for _, r := range k {
		switch {
		case isControl(r):
			return fail("TWIN-011", "contains control character U+%04X", r)
		case r == '.', r == '$', r == ' ', r == ',':
			return fail("TWIN-011", "contains '%c'", r)
		}
	}
	return nil
}

// isControl reports whether r is a C0 or C1 control character. DEL (U+007F)
// is in neither block and is not included.
func isControl(r rune) bool {
	return r < 0x20 || (r >= 0x80 && r <= 0x9f)
}

// value checks x, a member of an object (or element of an array) at nesting
// level `level`.
func (v *validator) value(x any, level int) *ValidationError {
	switch t := x.(type) {
	case nil, bool:
		return nil
	case string:
		if len(t) > MaxStringBytes {
			return v.valueErr("TWIN-014", "string is %d bytes, limit %d", len(t), MaxStringBytes)
		}
		return nil
	case map[string]any:
		if level+1 > MaxDepth {
			return v.valueErr("TWIN-013", "object at nesting level %d, limit %d", level+1, MaxDepth)
		}
		return v.object(t, level+1)
	case []any:
		if !v.allowArrays {
			return v.valueErr("TWIN-012", "arrays are not allowed in reported properties")
		}
		for i, e := range t {
			v.path = append(v.path, pathElem{index: i, isIdx: true})
			if err := v.value(e, level); err != nil {
				return err
			}
			v.path = v.path[:len(v.path)-1]
		}
		return nil
	}
	lit, isNum, ok := numberLiteral(x)
	switch {
	case !isNum:
		return v.valueErr("TWIN-012", "unsupported value type %T", x)
	case !ok:
		return v.valueErr("TWIN-012", "not a finite JSON number: %q", lit)
	case isIntegerLiteral(lit) && !integerInRange(lit):
		return v.valueErr("TWIN-012", "integer %s outside %d..%d", lit, int64(MinSafeInt), int64(MaxSafeInt))
	}
	return nil
}
