package iothub

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseTraceState(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"timestamp=1539243209", 1539243209, true}, // 002 L30262
		{"timestamp=1547666028", 1547666028, true}, // 002 L30286, decoded
		{"timestamp=0", 0, true},
		{"timestamp=1547666028000", 1547666028000, true}, // parses; the spec's clock check refuses milliseconds
		{"timestamp=", 0, false},
		{"timestamp=-5", 0, false},
		{"timestamp=+5", 0, false},
		{"timestamp=15.5", 0, false},
		{"timestamp=2026-12-02T04:26:07Z", 0, false},
		{"timestamp=1539243209 ", 0, false},
		{"Timestamp=1539243209", 0, false},
		{"ts=1539243209", 0, false},
		{"1539243209", 0, false},
		{"timestamp%3D1539243209", 0, false}, // still encoded: the bag decodes values first
		{"timestamp=1234567890123456789", 0, false},
		{"", 0, false},
	} {
		got, err := ParseTraceState(c.in)
		if (err == nil) != c.ok || (c.ok && got != c.want) {
			t.Errorf("ParseTraceState(%q) = %d, %v; want %d ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
}

func TestIsTraceStateName(t *testing.T) {
	for name, want := range map[string]bool{
		"tracestate": true, "$.tracestate": true, "TraceState": true, "$.TRACESTATE": true,
		"traceparent": false, "%24.tracestate": false /* names are matched decoded */, "tracestate ": false, "x-tracestate": false,
	} {
		if got := IsTraceStateName(name); got != want {
			t.Errorf("IsTraceStateName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestTraceStateRoundTrip(t *testing.T) {
	at := time.Unix(1547666028, 900_000_000)
	v := FormatTraceState(at)
	if v != "timestamp=1547666028" {
		t.Fatalf("FormatTraceState = %q", v)
	}
	bag := PropertyBag{{Name: "key", Value: "property_value"}, {Name: PropTraceState, Value: v}}
	if enc := bag.Encode(); enc != "key=property_value&tracestate=timestamp%3D1547666028" {
		t.Fatalf("encoded %q", enc)
	}
	// The C SDK's capture (002 L30286): system-style name, lower-case hex.
	got, err := ParsePropertyBag("key=property_value&%24.tracestate=timestamp%3d1547666028")
	if err != nil || !IsTraceStateName(got[1].Name) {
		t.Fatalf("parse capture: %v %v", got, err)
	}
	if n, err := ParseTraceState(got[1].Value); err != nil || n != 1547666028 {
		t.Fatalf("capture value: %d %v", n, err)
	}
}

func FuzzParseTraceState(f *testing.F) {
	for _, s := range []string{"timestamp=1539243209", "timestamp=", "timestamp=-1", "x", "timestamp=99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseTraceState(s)
		if err != nil {
			return
		}
		digits := strings.TrimLeft(strings.TrimPrefix(s, "timestamp="), "0")
		if digits == "" {
			digits = "0"
		}
		if n < 0 || strconv.FormatInt(n, 10) != digits {
			t.Fatalf("ParseTraceState(%q) = %d does not round-trip", s, n)
		}
	})
}
