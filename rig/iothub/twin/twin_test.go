package twin

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// nest wraps leaf in objects named by names, outermost first.
func nest(leaf any, names ...string) Section {
	v := leaf
	for i := len(names) - 1; i >= 0; i-- {
		v = Section{names[i]: v}
	}
	return v.(Section)
}

func mustParse(t *testing.T, s string) Section {
	t.Helper()
	sec, err := ParseObject([]byte(s))
	if err != nil {
		t.Fatalf("ParseObject(%s): %v", s, err)
	}
	return sec
}

func TestValidate(t *testing.T) {
	// The documented TWIN-013 example: five nested objects, leaf in the fifth.
	docExample := nest("value", "one", "two", "three", "four", "five", "property")
	tooDeep := nest("value", "one", "two", "three", "four", "five", "six", "property")

	tests := []struct {
		name        string
		patch       Section
		reportedReq string // "" = valid in reported
		desiredReq  string // "" = valid in desired
		path        string // expected Path when an error is expected
	}{
		{"empty", Section{}, "", "", ""},
		{"nil", nil, "", "", ""},
		{"key 64 bytes", Section{strings.Repeat("k", 64): 1}, "", "", ""},
		{"key 65 bytes", Section{strings.Repeat("k", 65): 1}, "TWIN-011", "TWIN-011", "$"},
		// 32 × "é" (2 bytes each) = 64 bytes but only 32 characters.
		{"multibyte key 64 bytes", Section{strings.Repeat("é", 32): 1}, "", "", ""},
		{"multibyte key 66 bytes", Section{strings.Repeat("é", 33): 1}, "TWIN-011", "TWIN-011", "$"},
		{"key with dot", Section{"x": Section{"a.b": 1}}, "TWIN-011", "TWIN-011", "$.x"},
		{"key with inner dollar", Section{"a$b": 1}, "TWIN-011", "TWIN-011", "$"},
		{"key with dollar prefix", Section{"$version": 1}, "TWIN-016", "TWIN-011", "$"},
		{"nested $metadata", Section{"a": Section{"$metadata": Section{}}}, "TWIN-016", "TWIN-011", "$.a"},
		{"key with space", Section{"a b": 1}, "TWIN-011", "TWIN-011", "$"},
		{"key with comma", Section{"a,b": 1}, "TWIN-011", "TWIN-011", "$"},
		{"key with U+0001", Section{"a\u0001": 1}, "TWIN-011", "TWIN-011", "$"},
		{"key with U+0085", Section{"a\u0085": 1}, "TWIN-011", "TWIN-011", "$"},
		{"key with U+007F", Section{"a\u007f": 1}, "", "", ""},
		{"key invalid UTF-8", Section{"a\xffb": 1}, "TWIN-011", "TWIN-011", "$"},
		{"key empty", Section{"": 1}, "", "", ""},
		{"unicode key", Section{"温度": "ok"}, "", "", ""},

		{"array", Section{"Files": []any{"a", "b"}}, "TWIN-012", "", "$.Files"},
		{"array of objects", Section{"Files": []any{Section{"url": "u"}}}, "TWIN-012", "", "$.Files"},
		{"bad key inside array element", Section{"Files": []any{Section{"ok": 1}, Section{"a b": 1}}}, "TWIN-012", "TWIN-011", ""},
		{"long string inside array", Section{"Files": []any{strings.Repeat("s", 513)}}, "TWIN-012", "TWIN-014", ""},
		{"big int inside array", Section{"Files": []any{json.Number("4503599627370496")}}, "TWIN-012", "TWIN-012", ""},

		{"max int", Section{"n": json.Number("4503599627370495")}, "", "", ""},
		{"max int + 1", Section{"n": json.Number("4503599627370496")}, "TWIN-012", "TWIN-012", "$.n"},
		{"min int", Section{"n": json.Number("-4503599627370496")}, "", "", ""},
		{"min int - 1", Section{"n": json.Number("-4503599627370497")}, "TWIN-012", "TWIN-012", "$.n"},
		{"int beyond int64", Section{"n": json.Number("123456789012345678901234567890")}, "TWIN-012", "TWIN-012", "$.n"},
		{"float", Section{"n": json.Number("3.14")}, "", "", ""},
		{"large float", Section{"n": json.Number("1e300")}, "", "", ""},
		{"go int64 out of range", Section{"n": int64(MaxSafeInt + 1)}, "TWIN-012", "TWIN-012", "$.n"},
		{"go int in range", Section{"n": 42}, "", "", ""},
		{"go float", Section{"n": 2.5}, "", "", ""},
		{"invalid json.Number", Section{"n": json.Number("abc")}, "TWIN-012", "TWIN-012", "$.n"},
		{"unsupported type", Section{"n": struct{}{}}, "TWIN-012", "TWIN-012", "$.n"},
		{"bool and null", Section{"b": true, "x": nil}, "", "", ""},
		{"nested null", Section{"a": Section{"b": nil}}, "", "", ""},

		{"depth at limit (doc example)", docExample, "", "", ""},
		{"depth one past limit", tooDeep, "TWIN-013", "TWIN-013", "$.one.two.three.four.five.six"},
		{"empty object one past limit", nest(Section{}, "one", "two", "three", "four", "five", "six"), "TWIN-013", "TWIN-013", ""},

		{"string 512 bytes", Section{"s": strings.Repeat("x", 512)}, "", "", ""},
		{"string 513 bytes", Section{"s": strings.Repeat("x", 513)}, "TWIN-014", "TWIN-014", "$.s"},
		// 171 × "€" (3 bytes) = 513 bytes, though only 171 characters.
		{"multibyte string 513 bytes", Section{"s": strings.Repeat("€", 171)}, "TWIN-014", "TWIN-014", "$.s"},
		{"multibyte string 510 bytes", Section{"s": strings.Repeat("€", 170)}, "", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			check := func(fn string, err error, want string) {
				t.Helper()
				if want == "" {
					if err != nil {
						t.Errorf("%s: unexpected error %v", fn, err)
					}
					return
				}
				var ve *ValidationError
				if !errors.As(err, &ve) {
					t.Fatalf("%s: got %v, want *ValidationError %s", fn, err, want)
				}
				if ve.Requirement != want {
					t.Errorf("%s: requirement %s, want %s (%v)", fn, ve.Requirement, want, err)
				}
				if tc.path != "" && ve.Path != tc.path && want == tc.reportedReq {
					t.Errorf("%s: path %s, want %s", fn, ve.Path, tc.path)
				}
			}
			check("ValidateReported", ValidateReported(tc.patch), tc.reportedReq)
			check("ValidateDesired", ValidateDesired(tc.patch), tc.desiredReq)
		})
	}
}

func TestValidationErrorFormat(t *testing.T) {
	err := ValidateReported(Section{"x": Section{"a.b": 1}})
	if got, want := err.Error(), `TWIN-011: key "a.b" at $.x: contains '.'`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	err = ValidateReported(Section{"x": Section{"odd key!": Section{"s": strings.Repeat("x", 513)}}})
	if got, want := err.Error(), `TWIN-011: key "odd key!" at $.x: contains ' '`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	err = ValidateDesired(Section{"F": []any{1, Section{"s": strings.Repeat("x", 513)}}})
	if got, want := err.Error(), `TWIN-014: value at $.F[1].s: string is 513 bytes, limit 512`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestValidateDeterministicOrder(t *testing.T) {
	p := Section{"z": strings.Repeat("x", 600), "b c": 1, "a": Section{"d.e": 1}}
	for range 50 {
		err := ValidateReported(p)
		var ve *ValidationError
		if !errors.As(err, &ve) || ve.Key != "d.e" || ve.Path != "$.a" {
			t.Fatalf("got %v, want the error for key d.e under $.a", err)
		}
	}
}

func TestDepth(t *testing.T) {
	tests := []struct {
		s    Section
		want int
	}{
		{nil, 0},
		{Section{"a": 1, "b": "x"}, 0},
		{Section{"a": Section{}}, 1},
		{Section{"a": Section{"b": 1}, "c": Section{"d": Section{"e": 1}}}, 2},
		{nest("value", "one", "two", "three", "four", "five", "property"), 5},
		{nest("value", "one", "two", "three", "four", "five", "six", "property"), 6},
		{Section{"F": []any{1, 2}}, 0},
		{Section{"F": []any{Section{"u": 1}}}, 1},
		{Section{"F": []any{[]any{Section{"u": Section{}}}}}, 2},
	}
	for i, tc := range tests {
		if got := Depth(tc.s); got != tc.want {
			t.Errorf("%d: Depth = %d, want %d", i, got, tc.want)
		}
	}
	if MaxDepth != 5 {
		t.Fatal("MaxDepth changed")
	}
}

func TestParseObject(t *testing.T) {
	ok := []string{`{}`, ` {"a":1} `, "{\"a\":{\"b\":[1,2]}}\n", `{"a":1,"a":2}`}
	for _, s := range ok {
		if _, err := ParseObject([]byte(s)); err != nil {
			t.Errorf("ParseObject(%q): %v", s, err)
		}
	}
	if got := mustParse(t, `{"a":1,"a":2}`)["a"]; got != json.Number("2") {
		t.Errorf("duplicate key: got %v, want last value 2", got)
	}
	bad := []string{``, `   `, `[]`, `[{"a":1}]`, `1`, `"s"`, `true`, `null`, `{`, `{"a":}`, `garbage`,
		`{} {}`, `{}x`, `{}]`, `{"a":1}{"b":2}`, "{\"a\xff\":1}"}
	for _, s := range bad {
		_, err := ParseObject([]byte(s))
		if !errors.Is(err, ErrNotObject) {
			t.Errorf("ParseObject(%q): got %v, want ErrNotObject", s, err)
		}
	}
	if _, err := ParseObject([]byte("{\"a\xff\":1}")); !errors.Is(err, ErrInvalidUTF8) {
		t.Errorf("invalid UTF-8: got %v, want ErrInvalidUTF8", err)
	}
}

func TestParsedKeysValidated(t *testing.T) {
	// Escapes decode to the characters they stand for, which are then checked.
	s := mustParse(t, `{"a\u0001":1}`)
	if err := ValidateReported(s); err == nil {
		t.Error("escaped control character in key accepted")
	}
}

func TestMerge(t *testing.T) {
	dst := mustParse(t, `{"a":1,"b":{"c":2,"d":{"e":3,"f":4}},"g":[1,2],"h":"x"}`)
	patch := mustParse(t, `{"a":null,"b":{"d":{"e":null,"n":5}},"g":[3],"h":{"i":1,"j":null},"k":{"l":null,"m":true},"zz":null}`)
	Merge(dst, patch)
	want := mustParse(t, `{"b":{"c":2,"d":{"f":4,"n":5}},"g":[3],"h":{"i":1},"k":{"m":true}}`)
	if !reflect.DeepEqual(dst, want) {
		got, _ := encode(dst)
		t.Fatalf("Merge result %s", got)
	}

	// Deep copy: mutating the patch afterwards must not reach dst.
	patch["b"].(Section)["d"].(Section)["n"] = json.Number("99")
	patch["g"].([]any)[0] = "mutated"
	patch["k"].(Section)["m"] = false
	if !reflect.DeepEqual(dst, want) {
		got, _ := encode(dst)
		t.Fatalf("dst changed after mutating patch: %s", got)
	}

	// Replacing a scalar with an object, and merging into an empty section.
	empty := Section{}
	Merge(empty, Section{"x": Section{"y": Section{"z": 1}}})
	if Depth(empty) != 2 {
		t.Errorf("nested maps not created: %v", empty)
	}
	Merge(empty, nil) // no-op
}

func TestClone(t *testing.T) {
	s := mustParse(t, `{"a":{"b":[1,{"c":2}]},"d":"x"}`)
	c := Clone(s)
	if !reflect.DeepEqual(s, c) {
		t.Fatal("clone differs")
	}
	c["a"].(Section)["b"].([]any)[1].(Section)["c"] = "changed"
	if s["a"].(Section)["b"].([]any)[1].(Section)["c"] != json.Number("2") {
		t.Fatal("clone aliases the original")
	}
	if Clone(nil) != nil {
		t.Fatal("Clone(nil) != nil")
	}
}

func TestSize(t *testing.T) {
	compact := mustParse(t, `{"a":1,"b":{"c":"d e","f":[true,false,null]}}`)
	spaced := mustParse(t, "{ \"a\" : 1 ,\n\t\"b\" : { \"c\" : \"d e\" , \"f\" : [ true , false , null ] } }")
	const compactLen = len(`{"a":1,"b":{"c":"d e","f":[true,false,null]}}`)
	if Size(compact) != compactLen || Size(spaced) != compactLen {
		t.Errorf("Size = %d / %d, want %d", Size(compact), Size(spaced), compactLen)
	}

	withMeta := mustParse(t, `{"$version":12,"a":1,"$metadata":{"$lastUpdated":"2024-01-01T00:00:00.000Z"},"b":{"$metadata":{},"c":2}}`)
	if got, want := Size(withMeta), len(`{"a":1,"b":{"c":2}}`); got != want {
		t.Errorf("$ members counted: Size = %d, want %d", got, want)
	}
	if got := Size(Section{"$version": 3}); got != 2 {
		t.Errorf("only $version: Size = %d, want 2", got)
	}

	if got, want := Size(Section{"a\u0001": "x\u0085y\n"}), len(`{"a":"xy"}`); got != want {
		t.Errorf("control characters counted: Size = %d, want %d", got, want)
	}
	if got, want := Size(Section{"q": `a"b\c`}), len(`{"q":"a\"b\\c"}`); got != want {
		t.Errorf("escapes: Size = %d, want %d", got, want)
	}
	if got, want := Size(Section{"k": "é"}), len(`{"k":"é"}`); got != want {
		t.Errorf("multibyte: Size = %d, want %d (bytes)", got, want)
	}
	if Size(nil) != 2 {
		t.Errorf("Size(nil) = %d", Size(nil))
	}
}

// exactlyFull builds a valid reported section whose Size is MaxSectionBytes.
func exactlyFull(t *testing.T) Section {
	t.Helper()
	s := Section{}
	// Each member "xx":"<500 x>" costs 4 + 1 + 502 = 507 bytes plus a comma.
	for i := 0; MaxSectionBytes-Size(s)-len(`,"zz":""`) > MaxStringBytes; i++ {
		s[string(rune('a'+i/26))+string(rune('a'+i%26))] = strings.Repeat("x", 500)
	}
	// Top up with one string member sized to land exactly on the limit.
	rest := MaxSectionBytes - Size(s) - len(`,"zz":""`)
	s["zz"] = strings.Repeat("y", rest)
	if rest > MaxStringBytes || rest < 0 {
		t.Fatalf("filler string %d bytes", rest)
	}
	return s
}

func TestSizeAtLimit(t *testing.T) {
	s := exactlyFull(t)
	if got := Size(s); got != MaxSectionBytes {
		t.Fatalf("Size = %d, want %d", got, MaxSectionBytes)
	}
	b, _ := json.Marshal(s)
	if len(b) != MaxSectionBytes {
		t.Errorf("json.Marshal length %d, want %d", len(b), MaxSectionBytes)
	}
	if err := ValidateReported(s); err != nil {
		t.Errorf("section at limit invalid: %v", err)
	}
	if err := CheckSize(s); err != nil {
		t.Errorf("CheckSize at limit: %v", err)
	}
	// $version does not count towards the limit.
	s["$version"] = json.Number("7")
	if err := CheckSize(s); err != nil {
		t.Errorf("CheckSize with $version: %v", err)
	}
	delete(s, "$version")
	// One more byte is too many.
	Merge(s, Section{"zz": s["zz"].(string) + "y"})
	var ve *ValidationError
	if err := CheckSize(s); !errors.As(err, &ve) || ve.Requirement != "TWIN-015" {
		t.Errorf("CheckSize one over: got %v, want TWIN-015", err)
	}
}

func TestDeviceDocumentRoundTrip(t *testing.T) {
	desired := mustParse(t, `{"telemetry":{"interval":"5m"},"Files":[{"url":"https://x/a?b=1&c=<2>"}],"big":4503599627370495}`)
	reported := mustParse(t, `{"fw":"1.2.3","neg":-4503599627370496,"huge":123456789012345678901234567890,"f":1.50}`)
	body, err := DeviceDocument(desired, 12, reported, 345)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(body), `\u0026`) || strings.Contains(string(body), " ") {
		t.Errorf("body not compact / HTML-escaped: %s", body)
	}
	d, dv, r, rv, err := ParseDeviceDocument(body)
	if err != nil {
		t.Fatal(err)
	}
	if dv != 12 || rv != 345 {
		t.Errorf("versions %d/%d", dv, rv)
	}
	if !reflect.DeepEqual(d, desired) || !reflect.DeepEqual(r, reported) {
		t.Errorf("sections changed in round trip: %s", body)
	}
	for _, lit := range []string{"4503599627370495", "-4503599627370496", "123456789012345678901234567890", "1.50"} {
		if !strings.Contains(string(body), lit) {
			t.Errorf("number %s not preserved exactly in %s", lit, body)
		}
	}
	if _, ok := desired[VersionKey]; ok {
		t.Error("DeviceDocument modified its input")
	}

	// Deterministic encoding.
	body2, _ := DeviceDocument(desired, 12, reported, 345)
	if string(body) != string(body2) {
		t.Error("encoding not deterministic")
	}

	// Empty sections (TWIN-004): only $version.
	body, err = DeviceDocument(nil, 1, Section{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"desired":{"$version":1},"reported":{"$version":1}}`; string(body) != want {
		t.Errorf("got %s, want %s", body, want)
	}
	d, dv, r, rv, err = ParseDeviceDocument(body)
	if err != nil || len(d) != 0 || len(r) != 0 || dv != 1 || rv != 1 {
		t.Errorf("empty document: %v %v %d %v %d", err, d, dv, r, rv)
	}
}

func TestParseDeviceDocumentMetadata(t *testing.T) {
	// TWIN-017: hub metadata is tolerated and not returned as configuration.
	body := `{"desired":{"a":1,"$metadata":{"$lastUpdated":"2024-01-01T00:00:00.000Z","a":{"$lastUpdated":"2024-01-01T00:00:00.000Z"}},"$version":4},
	          "reported":{"$version":9,"$metadata":{}}}`
	d, dv, r, rv, err := ParseDeviceDocument([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d, Section{"a": json.Number("1")}) || len(r) != 0 || dv != 4 || rv != 9 {
		t.Errorf("got %v %d %v %d", d, dv, r, rv)
	}
}

func TestParseDeviceDocumentErrors(t *testing.T) {
	bad := []string{
		`{"reported":{"$version":1}}`,
		`{"desired":{"$version":1}}`,
		`{"desired":{},"reported":{"$version":1}}`,
		`{"desired":{"$version":1},"reported":{}}`,
		`{"desired":{"$version":"1"},"reported":{"$version":1}}`,
		`{"desired":{"$version":1.5},"reported":{"$version":1}}`,
		`{"desired":{"$version":99999999999999999999},"reported":{"$version":1}}`,
		`{"desired":[],"reported":{"$version":1}}`,
		`{"desired":null,"reported":{"$version":1}}`,
	}
	for _, s := range bad {
		if _, _, _, _, err := ParseDeviceDocument([]byte(s)); !errors.Is(err, ErrMalformedDocument) {
			t.Errorf("%s: got %v, want ErrMalformedDocument", s, err)
		}
	}
	if _, _, _, _, err := ParseDeviceDocument([]byte(`[]`)); !errors.Is(err, ErrNotObject) {
		t.Errorf("array body: got %v, want ErrNotObject", err)
	}
}

func TestDesiredPatchRoundTrip(t *testing.T) {
	patch := mustParse(t, `{"a":null,"b":{"c":4503599627370495,"d":null},"Files":[{"u":"x"}],"e":-0.0}`)
	body, err := DesiredPatchDocument(patch, 42)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"$version":42,"Files":[{"u":"x"}],"a":null,"b":{"c":4503599627370495,"d":null},"e":-0.0}`
	if string(body) != want {
		t.Errorf("got %s\nwant %s", body, want)
	}
	got, v, err := ParseDesiredPatch(body)
	if err != nil {
		t.Fatal(err)
	}
	if v != 42 || !reflect.DeepEqual(got, patch) {
		t.Errorf("round trip: %d %v", v, got)
	}
	if err := ValidateDesired(got); err != nil {
		t.Errorf("parsed patch invalid: %v", err)
	}

	if _, _, err := ParseDesiredPatch([]byte(`{"a":1}`)); !errors.Is(err, ErrMalformedDocument) {
		t.Errorf("missing $version: got %v", err)
	}
	if _, _, err := ParseDesiredPatch([]byte(`{"a":1,"$version":null}`)); !errors.Is(err, ErrMalformedDocument) {
		t.Errorf("null $version: got %v", err)
	}
	if _, _, err := ParseDesiredPatch([]byte(`"x"`)); !errors.Is(err, ErrNotObject) {
		t.Errorf("scalar body: got %v", err)
	}
}

func TestEncodeRejectsInvalidNumber(t *testing.T) {
	if _, err := DesiredPatchDocument(Section{"n": json.Number("nope")}, 1); err == nil {
		t.Error("invalid json.Number encoded")
	}
}

func TestValidNumber(t *testing.T) {
	for _, s := range []string{"0", "-0", "1", "-12", "1.5", "1e5", "1E+5", "-0.0e-1"} {
		if !validNumber(s) {
			t.Errorf("%q rejected", s)
		}
	}
	for _, s := range []string{"", "-", "01", "1.", ".5", "1e", "+1", "0x1", "1e+", "NaN", " 1"} {
		if validNumber(s) {
			t.Errorf("%q accepted", s)
		}
	}
}
