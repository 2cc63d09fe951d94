package hub

import (
	"os"
	"sort"
	"strings"
	"testing"
)

// Issue 16: the standalone hub's REST API was not listed. README.md lists
// every route of restRoutes with its methods; a route added without a
// README line fails here.
func TestREADMEListsRESTRoutes(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	names := []string{"{id}", "{mod}"}
	for _, rt := range (&Hub{}).restRoutes() {
		n := 0
		segs := make([]string, len(rt.pattern))
		for i, s := range rt.pattern {
			if s == "{}" {
				s = names[n]
				n++
			}
			segs[i] = s
		}
		path := "/" + strings.Join(segs, "/")
		var methods []string
		for m := range rt.ops {
			methods = append(methods, m)
		}
		sort.Strings(methods)
		var lines []string // README table rows naming the path
		for _, l := range strings.Split(readme, "\n") {
			if !strings.HasPrefix(l, "| `") {
				continue
			}
			for _, end := range []string{"`", "?", ","} {
				if strings.Contains(l, path+end) {
					lines = append(lines, l)
					break
				}
			}
		}
		if len(lines) == 0 {
			t.Errorf("README.md does not list %s", path)
			continue
		}
		all := strings.Join(lines, "\n")
		for _, m := range methods {
			if !strings.Contains(all, m) {
				t.Errorf("README.md lists %s without %s", path, m)
			}
		}
	}
}
