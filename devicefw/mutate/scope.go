package mutate

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Scope is devicefw/sim's protocol code: the files mutation analysis
// changes, each with the spec areas that judge it when its functions name
// no requirement. This is the one place the list is kept.
//
// Left out, and why:
//   - defects.go, defects_*.go, misbehave.go: the defect switches and rig
//     misbehaviour modes themselves (and inside the files below, the checks
//     and the code only a switch reaches: cleanValue);
//   - boot.go: process plumbing (flags, the UART's pty, NVS files, the boot
//     counter), no protocol;
//   - firmware.go, dispatch.go: the agent's own loop, framing and operation
//     routing (devicefw/PROTOCOL.md), the rig's side channel, not the
//     device's protocol with the cloud; rig/agent's tests and every spec's
//     use of the agent judge them, not a requirement of the catalog;
//   - inside the files below, the nodes annotated //mutate:agent: the
//     agent's argument checks and what only the agent is told
//     (directive.go; the rule is in docs/mutation.md).
var Scope = map[string][]string{
	"client.go":        {"CONN", "RECON"},
	"messaging.go":     {"TEL", "C2D", "TWIN", "METH"},
	"aws.go":           {"AWS"},
	"dps.go":           {"DPS"},
	"dns.go":           {"RECON"},
	"sntp.go":          {"CLOCK"},
	"ota.go":           {"OTA"},
	"fileupload.go":    {"FUP"},
	"heartbeat.go":     {"TEL"},
	"limits.go":        {"LIMITS"},
	"optimeout.go":     {"RECON"},
	"pnp.go":           {"PNP"},
	"retrydefaults.go": {"RECON"},
}

// ScopeFiles is Scope's files, sorted.
func ScopeFiles() []string {
	var out []string
	for f := range Scope {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}

// defectFile reports whether a file of package sim holds defect switches.
func defectFile(name string) bool {
	return strings.HasPrefix(name, "defects") || name == "misbehave.go"
}

// DefectFuncs returns the names of the functions and methods declared in
// the defect files of the package directory dir, and of those elsewhere
// whose name says they apply defect switches (…Defects, e.g. dps.go's
// dpsVerifyDefects): their bodies are not mutated, calls to them not
// dropped.
func DefectFuncs(dir string) (map[string]bool, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	fset := token.NewFileSet()
	for _, n := range names {
		b := filepath.Base(n)
		if strings.HasSuffix(b, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, n, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && (defectFile(b) || strings.HasSuffix(fd.Name.Name, "Defects")) {
				out[fd.Name.Name] = true
			}
		}
	}
	return out, nil
}

// All generates the mutants of files (nil: Scope) in the package
// directory dir with the operators ops (nil: all); those an agent
// directive leaves out are not among them (Split).
func All(dir string, files, ops []string) ([]Mutant, error) {
	in, _, err := Split(dir, files, ops)
	return in, err
}

// Split is All, and besides the mutants the //mutate:agent directives
// leave out (directive.go), each with its directive's reason.
func Split(dir string, files, ops []string) (in, agent []Mutant, err error) {
	if len(files) == 0 {
		files = ScopeFiles()
	}
	for _, f := range files {
		if _, ok := Scope[f]; !ok {
			return nil, nil, fmt.Errorf("%s is not protocol code of devicefw/sim (the files are: %s)", f, strings.Join(ScopeFiles(), ", "))
		}
	}
	for _, o := range ops {
		if !ValidOperator(o) {
			return nil, nil, fmt.Errorf("unknown operator %q (known: %s)", o, strings.Join(Operators, ", "))
		}
	}
	skip, err := DefectFuncs(dir)
	if err != nil {
		return nil, nil, err
	}
	for _, f := range files {
		src, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return nil, nil, err
		}
		ms, out, err := generate(f, src, ops, skip)
		if err != nil {
			return nil, nil, err
		}
		in, agent = append(in, ms...), append(agent, out...)
	}
	return in, agent, nil
}

// Sample returns n mutants chosen at random with seed (all of them, in
// their order, when n is 0 or not less than their number); the chosen keep
// their relative order.
func Sample(ms []Mutant, n int, seed uint64) []Mutant {
	if n <= 0 || n >= len(ms) {
		return ms
	}
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	idx := r.Perm(len(ms))[:n]
	sort.Ints(idx)
	out := make([]Mutant, n)
	for i, k := range idx {
		out[i] = ms[k]
	}
	return out
}

// Areas are the spec areas that judge a mutant: its file's (Scope) and
// those of the requirements its function names.
func (m Mutant) Areas() []string {
	out := append([]string(nil), Scope[m.File]...)
	for _, r := range m.Requirements {
		a := r[:strings.IndexByte(r, '-')]
		if !contains(out, a) {
			out = append(out, a)
		}
	}
	sort.Strings(out)
	return out
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
