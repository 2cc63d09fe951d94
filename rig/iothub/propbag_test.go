package iothub

import (
	"reflect"
	"testing"
)

func TestParsePropertyBag(t *testing.T) {
	tests := []struct {
		in      string
		want    PropertyBag
		wantErr bool
	}{
		{in: "", want: nil},
		{in: "a=1", want: PropertyBag{{Name: "a", Value: "1"}}},
		{in: "a=1&b=2", want: PropertyBag{{Name: "a", Value: "1"}, {Name: "b", Value: "2"}}},
		{in: "k=hello+world", want: PropertyBag{{Name: "k", Value: "hello world"}}},
		{in: "k=hello%20world", want: PropertyBag{{Name: "k", Value: "hello world"}}},
		{in: "k%20x=v", want: PropertyBag{{Name: "k x", Value: "v"}}},
		{in: "k=", want: PropertyBag{{Name: "k", Value: ""}}},
		{in: "k", want: PropertyBag{{Name: "k", NoValue: true}}},
		{in: "k&j=1", want: PropertyBag{{Name: "k", NoValue: true}, {Name: "j", Value: "1"}}},
		{in: "%24.mid=42", want: PropertyBag{{Name: PropMessageID, Value: "42"}}},
		{in: "$.mid=42", want: PropertyBag{{Name: PropMessageID, Value: "42"}}},
		{in: "%24.ct=application%2Fjson&%24.ce=utf-8", want: PropertyBag{{Name: PropContentType, Value: "application/json"}, {Name: PropContentEncoding, Value: "utf-8"}}},
		{in: "$.ct=application%2fjson", want: PropertyBag{{Name: PropContentType, Value: "application/json"}}},
		{in: "x=a%26b%3Dc", want: PropertyBag{{Name: "x", Value: "a&b=c"}}},
		{in: "x=a=b", want: PropertyBag{{Name: "x", Value: "a=b"}}},
		{in: "x=%C3%A4", want: PropertyBag{{Name: "x", Value: "ä"}}},
		{in: "x=1/", want: PropertyBag{{Name: "x", Value: "1/"}}},
		{in: "a=1&a=2", want: PropertyBag{{Name: "a", Value: "1"}, {Name: "a", Value: "2"}}},
		{in: "%24.tracestate=timestamp%3D1700000000", want: PropertyBag{{Name: "$.tracestate", Value: "timestamp=1700000000"}}},
		{in: "a=1&&b=2", wantErr: true},
		{in: "a=1&", wantErr: true},
		{in: "&a=1", wantErr: true},
		{in: "&", wantErr: true},
		{in: "=1", wantErr: true},
		{in: "a=%zz", wantErr: true},
		{in: "a=%2", wantErr: true},
		{in: "a%=1", wantErr: true},
		{in: "%G0=1", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParsePropertyBag(tt.in)
		if tt.wantErr {
			checkRule(t, "ParsePropertyBag("+tt.in+")", err, "TEL-002")
			continue
		}
		if err != nil {
			t.Errorf("ParsePropertyBag(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParsePropertyBag(%q) = %#v, want %#v", tt.in, got, tt.want)
		}
	}
}

func TestPropertyBagEncode(t *testing.T) {
	tests := []struct {
		bag  PropertyBag
		want string
	}{
		{nil, ""},
		{PropertyBag{{Name: PropMessageID, Value: "m1"}}, "%24.mid=m1"},
		{PropertyBag{{Name: "k", Value: "a b"}}, "k=a%20b"},
		{PropertyBag{{Name: "k", Value: "a+b&c=d/e#f?g%h$i"}}, "k=a%2Bb%26c%3Dd%2Fe%23f%3Fg%25h%24i"},
		{PropertyBag{{Name: "k", NoValue: true}, {Name: "e", Value: ""}}, "k&e="},
		{PropertyBag{{Name: "k", Value: "ignored", NoValue: true}}, "k"},
		{PropertyBag{{Name: "ü", Value: "~-._"}}, "%C3%BC=~-._"},
		{PropertyBag{{Name: PropContentType, Value: "application/json"}, {Name: PropContentEncoding, Value: "utf-8"}},
			"%24.ct=application%2Fjson&%24.ce=utf-8"},
	}
	for _, tt := range tests {
		got := tt.bag.Encode()
		if got != tt.want {
			t.Errorf("Encode(%#v) = %q, want %q", tt.bag, got, tt.want)
		}
	}
}

func TestPropertyBagRoundTrip(t *testing.T) {
	bags := []PropertyBag{
		{{Name: PropMessageID, Value: "id with spaces & symbols=+/"}},
		{{Name: "a", NoValue: true}, {Name: "b", Value: ""}, {Name: "a", Value: "dup"}},
		{{Name: "\x00\xff", Value: "\n\r\t"}},
		{{Name: "ключ", Value: "значение"}, {Name: "$.sub", Value: "thermostat1"}},
	}
	for _, b := range bags {
		enc := b.Encode()
		got, err := ParsePropertyBag(enc)
		if err != nil {
			t.Errorf("ParsePropertyBag(%q): %v", enc, err)
			continue
		}
		if !reflect.DeepEqual(got, b) {
			t.Errorf("round trip of %#v via %q gave %#v", b, enc, got)
		}
	}
}

func TestPropertyBagAccessors(t *testing.T) {
	b, err := ParsePropertyBag("a=1&%24.mid=m&a=2&flag")
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := b.Get("a"); !ok || v != "1" {
		t.Errorf("Get(a) = %q, %v", v, ok)
	}
	if v, ok := b.Get("flag"); !ok || v != "" {
		t.Errorf("Get(flag) = %q, %v", v, ok)
	}
	if _, ok := b.Get("A"); ok {
		t.Error("Get is not exact")
	}
	if !b.Has(PropMessageID) || b.Has("%24.mid") || b.Has("missing") {
		t.Error("Has wrong")
	}
	b2 := b.Set("a", "x")
	if v, _ := b2.Get("a"); v != "x" || len(b2) != 4 || b2[2].Value != "2" {
		t.Errorf("Set replace: %#v", b2)
	}
	if v, _ := b.Get("a"); v != "1" {
		t.Error("Set modified the receiver")
	}
	b3 := b.Set("flag", "on").Set("new", "n")
	if b3[3] != (Property{Name: "flag", Value: "on"}) || b3[4] != (Property{Name: "new", Value: "n"}) {
		t.Errorf("Set: %#v", b3)
	}
	var empty PropertyBag
	if got := empty.Set("k", "v"); len(got) != 1 || got[0].Value != "v" {
		t.Errorf("Set on nil bag: %#v", got)
	}
	m := b.Map()
	want := map[string]string{"a": "1", PropMessageID: "m", "flag": ""}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("Map = %v, want %v", m, want)
	}
}

func TestIsSystemProperty(t *testing.T) {
	for name, want := range map[string]bool{
		PropMessageID: true, PropCreationTime: true, "$.tracestate": true,
		"$": false, "$x": false, "%24.mid": false, PropMessageType: false, "": false,
	} {
		if got := IsSystemProperty(name); got != want {
			t.Errorf("IsSystemProperty(%q) = %v", name, got)
		}
	}
}

func TestMessageSize(t *testing.T) {
	tests := []struct {
		payload string
		bag     PropertyBag
		want    int
	}{
		{"", nil, 0},
		{"hello", nil, 5},
		{"hello", PropertyBag{{Name: PropMessageID, Value: "abc"}}, 8},                   // system: value only
		{"hello", PropertyBag{{Name: "temp", Value: "hot"}}, 12},                         // app: name + value
		{"", PropertyBag{{Name: "a b", Value: "ä"}}, 5},                                  // decoded bytes
		{"xy", PropertyBag{{Name: "flag", NoValue: true}, {Name: "$.ct", Value: ""}}, 6}, // NoValue name counts
	}
	for _, tt := range tests {
		if got := MessageSize([]byte(tt.payload), tt.bag); got != tt.want {
			t.Errorf("MessageSize(%q, %#v) = %d, want %d", tt.payload, tt.bag, got, tt.want)
		}
	}
	full := make([]byte, MaxTelemetryBytes-len("k")-len("v"))
	if n := MessageSize(full, PropertyBag{{Name: "k", Value: "v"}}); n != MaxTelemetryBytes {
		t.Errorf("size at limit = %d", n)
	}
}
