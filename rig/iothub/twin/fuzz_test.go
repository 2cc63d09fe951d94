package twin

import (
	"reflect"
	"testing"
)

func FuzzParseObjectValidate(f *testing.F) {
	seeds := []string{
		`{}`, `[]`, `null`, `1`, `{"a":1}`, `{"a":null,"b":{"c":[1,{"d":"e"}]}}`,
		`{"$version":3,"a.b":1}`, `{"n":4503599627370496,"m":-1e400,"s":"\u0001\u0085"}`,
		`{"one":{"two":{"three":{"four":{"five":{"six":{}}}}}}}`,
		`{"a":1}{"b":2}`, "{\"\xff\":1}", `{"a":"\ud800"}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := ParseObject(body)
		if err != nil {
			if s != nil {
				t.Fatal("non-nil section with error")
			}
			return
		}
		errR := ValidateReported(s)
		errD := ValidateDesired(s)
		if errR == nil && errD != nil {
			t.Fatalf("valid as reported but not as desired: %v", errD)
		}
		_ = Size(s)
		_ = Depth(s)
		_ = CheckSize(s)

		before := Clone(s)
		dst := Section{"a": Section{"b": 1}, "x": "y"}
		Merge(dst, s)
		Merge(dst, s)
		if !reflect.DeepEqual(before, s) {
			t.Fatal("Merge modified the patch")
		}
		_ = Size(dst)
		_ = ValidateReported(dst)

		// A valid desired patch survives a round trip through the wire form.
		if errD == nil {
			body, err := DesiredPatchDocument(s, 7)
			if err != nil {
				t.Fatalf("encode valid patch: %v", err)
			}
			back, v, err := ParseDesiredPatch(body)
			if err != nil || v != 7 {
				t.Fatalf("parse own encoding %s: %v", body, err)
			}
			if !reflect.DeepEqual(back, s) {
				t.Fatalf("round trip changed patch:\n%#v\n%#v", s, back)
			}
		}
		_, _, _, _, _ = ParseDeviceDocument(body)
		_, _, _ = ParseDesiredPatch(body)
	})
}
