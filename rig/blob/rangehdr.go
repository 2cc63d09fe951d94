package blob

import (
	"errors"
	"strconv"
	"strings"
)

// errRangeUnsatisfiable: the range lies beyond the blob (416).
var errRangeUnsatisfiable = errors.New("range not satisfiable")

// errRangeIgnored: a header that is not a single byte range; the whole
// blob is served (RFC 9110 §14.2 lets a server ignore Range).
var errRangeIgnored = errors.New("range ignored")

// parseRange reads a Range (or x-ms-range) header against a blob of size
// bytes: "bytes=a-b", "bytes=a-" or "bytes=-n", one range only. It returns
// the first byte and the length to serve.
func parseRange(h string, size int64) (start, length int64, err error) {
	if len(h) > 200 {
		return 0, 0, errRangeIgnored
	}
	spec, ok := strings.CutPrefix(strings.TrimSpace(h), "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return 0, 0, errRangeIgnored
	}
	a, b, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return 0, 0, errRangeIgnored
	}
	num := func(s string) (int64, bool) {
		if s == "" || len(s) > 18 {
			return 0, false
		}
		for _, c := range s {
			if c < '0' || c > '9' {
				return 0, false
			}
		}
		n, err := strconv.ParseInt(s, 10, 64)
		return n, err == nil
	}
	switch {
	case a == "": // suffix: the last n bytes
		n, ok := num(b)
		if !ok {
			return 0, 0, errRangeIgnored
		}
		if n == 0 || size == 0 {
			return 0, 0, errRangeUnsatisfiable
		}
		n = min(n, size)
		return size - n, n, nil
	default:
		first, ok := num(a)
		if !ok {
			return 0, 0, errRangeIgnored
		}
		last := size - 1
		if b != "" {
			if last, ok = num(b); !ok || last < first {
				return 0, 0, errRangeIgnored
			}
		}
		if first >= size {
			return 0, 0, errRangeUnsatisfiable
		}
		last = min(last, size-1)
		return first, last - first + 1, nil
	}
}
