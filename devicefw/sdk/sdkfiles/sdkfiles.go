// Package sdkfiles is what the embedded SDK peers and shims under
// devicefw/sdk share: the digest that keys their install directory in the
// SDK cache, so that a changed file (or lock file) is installed afresh.
package sdkfiles

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"sort"
)

// Digest identifies the content of every file of fsys (names, sizes and
// bytes, in name order): 16 hex digits.
func Digest(fsys fs.FS) (string, error) {
	var names []string
	if err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, p)
		}
		return err
	}); err != nil {
		return "", err
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}
