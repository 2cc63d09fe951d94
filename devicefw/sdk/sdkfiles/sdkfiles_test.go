package sdkfiles

import (
	"testing"
	"testing/fstest"
)

// TestDigestFollowsContent: the digest changes with a file's bytes or
// name, and not with the order the files are listed in.
func TestDigestFollowsContent(t *testing.T) {
	a := fstest.MapFS{"package.json": {Data: []byte("{}")}, "lib/x.js": {Data: []byte("1")}}
	b := fstest.MapFS{"lib/x.js": {Data: []byte("1")}, "package.json": {Data: []byte("{}")}}
	c := fstest.MapFS{"package.json": {Data: []byte("{}")}, "lib/x.js": {Data: []byte("2")}}
	d := fstest.MapFS{"package.json": {Data: []byte("{}")}, "lib/y.js": {Data: []byte("1")}}
	da, err := Digest(a)
	if err != nil || len(da) != 16 {
		t.Fatalf("digest %q, %v", da, err)
	}
	for name, fsys := range map[string]fstest.MapFS{"same files": b, "other bytes": c, "other name": d} {
		got, err := Digest(fsys)
		if err != nil {
			t.Fatal(err)
		}
		if (got == da) != (name == "same files") {
			t.Errorf("%s: digest %s vs %s", name, got, da)
		}
	}
}
