package main

import "runtime/debug"

// A binary built without -ldflags "-X main.version=…" takes its version
// from the build information the go command stamps: the module version
// (`go install …@v1.2.3`), else the VCS revision of a `go build` in a
// clone (Go stamps "v0.0.0-<date>-<commit>[+dirty]"). Only `go run` and
// test binaries stay "dev"; reports then say "development build".
func init() {
	if version != "dev" {
		return
	}
	if v := buildVersion(debug.ReadBuildInfo()); v != "" {
		version = v
	}
}

func buildVersion(bi *debug.BuildInfo, ok bool) string {
	if !ok || bi == nil {
		return ""
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev == "" {
		return ""
	}
	return "git-" + rev + dirty
}
