package mutate

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const pre = "package p\n\n"

// pairs renders mutants as "original → mutated" for comparison.
func pairs(ms []Mutant) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Original+" → "+m.Mutated)
	}
	return out
}

func TestOperators(t *testing.T) {
	cases := []struct {
		name, src, op string
		want          []string
	}{
		{"boundary", "func f(a, b int) bool { return a < b || a >= b }", OpBoundary,
			[]string{"a < b → a <= b", "a >= b → a > b"}},
		{"rel-flip", "func f(a, b int, e error) bool { return a == b && e != nil && a > b }", OpRelFlip,
			[]string{"a == b → a != b", "e != nil → e == nil", "a > b → a <= b"}},
		{"if-negate", "func f(a int) { if a > 0 { g() } else if a < 0 { h() } }\nfunc g() {}\nfunc h() {}", OpIfNegate,
			[]string{"a > 0 → !(a > 0)", "a < 0 → !(a < 0)"}},
		{"logic-swap", "func f(a, b, c bool) bool { return a && (b || c) }", OpLogic,
			[]string{"a && (b || c) → a || (b || c)", "b || c → b && c"}},
		{"const", "const k = 5\nfunc f() int { return 1 + 0x10 }", OpConst,
			[]string{"5 → 6", "5 → 4", "5 → 0", "1 → 2", "1 → 0", "0x10 → 17", "0x10 → 15", "0x10 → 0"}},
		{"const: make sizes and log calls left alone", "func f() { _ = make([]int, 3); logf(\"%d\", 7) }\nfunc logf(string, ...any) {}", OpConst, nil},
		{"drop-call", "func f() { g(); defer h(); logf(\"x\"); mu.Lock(); mu.Unlock(); x = g() }\nfunc g() int { return 0 }\nfunc h() {}\nfunc logf(string) {}", OpDropCall,
			[]string{"g() → ", "defer h() → "}},
		{"drop-return", "func f(a int) int { if a > 0 { g(); return 1 }; for { if a < 0 { return 2 } }; return 0 }\nfunc g() {}", OpDropReturn,
			[]string{"return 1 → ", "return 2 → "}},
		{"swap", "func f() { a = 1; g(); b := 2; h(b); mu.Unlock() }\nfunc g() {}\nfunc h(int) {}", OpSwap,
			[]string{"a = 1; g() → g(); a = 1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ms, err := Generate("x.go", []byte(pre+c.src), []string{c.op}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := pairs(ms); !slices.Equal(got, c.want) {
				t.Errorf("%s: got %q, want %q", c.op, got, c.want)
			}
			for _, m := range ms {
				if m.Operator != c.op {
					t.Errorf("operator %q, want %q", m.Operator, c.op)
				}
			}
		})
	}
}

// The defect switches are not protocol: their checks, the code only a
// switch reaches and what a switch decides are never mutated; what runs
// on the clean firmware is.
func TestDefectCodeLeftAlone(t *testing.T) {
	cases := []struct {
		name, body string
		want       []string
	}{
		{"defect branch", "if dc.on(DefX) { g(); return }", nil},
		{"defect conjunction", "if n > 1 && dc.on(DefX) { g() }", nil},
		{"else of a defect branch is protocol", "if dc.on(DefX) { g() } else { h() }", []string{"h() → "}},
		{"negated check guards protocol", "if n == 3 && !dc.on(DefX) { h() }",
			[]string{"n == 3 && !dc.on(DefX) → !(n == 3 && !dc.on(DefX))", "n == 3 → n != 3", "3 → 4", "3 → 2", "3 → 0", "h() → "}},
		{"variable holding a check", "skip := dc.fw.defects.on(DefX); if skip { g() }; if !skip { h() }", []string{"h() → "}},
		{"defect-only case", "switch { case dc.on(DefX): g(); default: h() }", []string{"h() → "}},
		{"calls into defect files", "dc.tlsDefects(); g()", []string{"g() → "}},
		{"other lookups of a defect name", "hammer := fw.clientOn(DefSNTPHammer) && n < 3; if hammer { g() }", nil},
		{"a Def… that is no defect name", "if Default(n) { g() }", []string{"Default(n) → !(Default(n))", "g() → "}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := pre + "func (dc *d) f(n int) {\n" + c.body + "\n}\nfunc g() {}\nfunc h() {}\n"
			ms, err := Generate("x.go", []byte(src), nil, map[string]bool{"tlsDefects": true})
			if err != nil {
				t.Fatal(err)
			}
			if got := pairs(ms); !slices.Equal(got, c.want) {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}

// A function that applies defect switches (named in defectFuncs) is not
// mutated, wherever it is declared.
func TestDefectFuncBodyLeftAlone(t *testing.T) {
	src := pre + "func xDefects(n int) { if n > 0 { g() } }\nfunc g() {}\n"
	ms, err := Generate("x.go", []byte(src), nil, map[string]bool{"xDefects": true})
	if err != nil || len(ms) != 0 {
		t.Errorf("got %q (%v), want none", pairs(ms), err)
	}
	skip, err := DefectFuncs("../sim")
	if err != nil || !skip["dpsVerifyDefects"] || !skip["tlsDefects"] {
		t.Errorf("DefectFuncs misses dps.go's dpsVerifyDefects or defects_tls.go's tlsDefects: %v", err)
	}
}

func TestKeysSurviveLineMoves(t *testing.T) {
	src := pre + "// TWIN-010 says so.\nfunc f(a int) bool { return a < 1 }\n"
	moved := pre + "\n\nvar unrelated = \"x\"\n\n" + src[len(pre):]
	a, _ := Generate("x.go", []byte(src), nil, nil)
	b, _ := Generate("x.go", []byte(moved), nil, nil)
	if len(a) == 0 || len(a) != len(b) {
		t.Fatalf("mutants: %d and %d", len(a), len(b))
	}
	for i := range a {
		if a[i].ID != b[i].ID || a[i].Line == b[i].Line {
			t.Errorf("%s: id %s/%s line %d/%d", a[i].Key(), a[i].ID, b[i].ID, a[i].Line, b[i].Line)
		}
		if !slices.Equal(a[i].Requirements, []string{"TWIN-010"}) {
			t.Errorf("requirements %v", a[i].Requirements)
		}
	}
	// The same change twice in one function: told apart by the ordinal.
	ms, _ := Generate("x.go", []byte(pre+"func f(a int) bool { return a < 1 || a < 1 }"), []string{OpBoundary}, nil)
	if len(ms) != 2 || ms[0].Ordinal != 0 || ms[1].Ordinal != 1 || ms[0].ID == ms[1].ID {
		t.Errorf("ordinals: %+v", ms)
	}
}

// Every mutant of the real protocol files still parses and changes the
// file in one place.
func TestScopeMutantsParse(t *testing.T) {
	ms, err := All("../sim", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) < 500 {
		t.Fatalf("only %d mutants", len(ms))
	}
	ids := map[string]bool{}
	fset := token.NewFileSet()
	for i, m := range ms {
		if ids[m.ID] {
			t.Errorf("duplicate id %s (%s)", m.ID, m.Key())
		}
		ids[m.ID] = true
		if strings.HasPrefix(m.File, "defects") {
			t.Errorf("defect file mutated: %s", m.Key())
		}
		if i%7 != 0 { // parsing every one is slow under -race
			continue
		}
		if _, err := parser.ParseFile(fset, m.File, m.Source(), parser.SkipObjectResolution); err != nil {
			t.Errorf("%s does not parse: %v", m.Key(), err)
		}
		orig, _ := os.ReadFile(filepath.Join("../sim", m.File))
		if string(orig) == string(m.Source()) {
			t.Errorf("%s changes nothing", m.Key())
		}
	}
	if _, err := All("../sim", []string{"defects.go"}, nil); err == nil {
		t.Error("a defect file was accepted")
	}
	if _, err := All("../sim", nil, []string{"nope"}); err == nil {
		t.Error("an unknown operator was accepted")
	}
}

func TestSample(t *testing.T) {
	ms := make([]Mutant, 50)
	for i := range ms {
		ms[i].Line = i
	}
	a, b := Sample(ms, 10, 7), Sample(ms, 10, 7)
	if len(a) != 10 || !slices.EqualFunc(a, b, func(x, y Mutant) bool { return x.Line == y.Line }) {
		t.Errorf("not deterministic: %v %v", a, b)
	}
	if !slices.IsSortedFunc(a, func(x, y Mutant) int { return x.Line - y.Line }) {
		t.Error("order not kept")
	}
	if len(Sample(ms, 0, 1)) != 50 || len(Sample(ms, 80, 1)) != 50 {
		t.Error("n = 0 or n ≥ len must give all")
	}
}

func TestLoadEquivalent(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "eq.yaml")
	if m, err := LoadEquivalent(p); err != nil || len(m) != 0 {
		t.Fatalf("missing file: %v %v", m, err)
	}
	os.WriteFile(p, []byte("equivalent:\n  - {file: a.go, func: f, operator: const, original: \"1\", mutated: \"2\", ordinal: 0, reason: the value is only a capacity}\n"), 0o644)
	m, err := LoadEquivalent(p)
	if err != nil {
		t.Fatal(err)
	}
	key := Mutant{File: "a.go", Func: "f", Operator: OpConst, Original: "1", Mutated: "2"}.Key()
	if m[key].Reason == "" {
		t.Errorf("entry not keyed by the mutant's key: %v", m)
	}
	os.WriteFile(p, []byte("equivalent:\n  - {file: a.go, func: f, operator: const, original: \"1\", mutated: \"2\"}\n"), 0o644)
	if _, err := LoadEquivalent(p); err == nil {
		t.Error("an entry without a reason was accepted")
	}
	// The checked-in list reads, and every entry still names a mutant (a
	// stale entry, after the code changed, must be reviewed again).
	eq, err := LoadEquivalent(filepath.Join("..", "..", EquivalentFile))
	if err != nil {
		t.Fatal(err)
	}
	ms, err := All("../sim", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, m := range ms {
		have[m.Key()] = true
	}
	for k := range eq {
		if !have[k] {
			t.Errorf("%s names no mutant of the current code: review the entry again", k)
		}
	}
}

// The agent directive: no mutant inside the annotated node, the others as
// before with the same IDs; a malformed or dangling directive is refused.
func TestAgentDirective(t *testing.T) {
	const tail = "\nfunc g() {}\nfunc h() {}\n"
	cases := []struct {
		name, src string
		want      []string // mutants left in (original → mutated)
		out       int      // mutants the directive leaves out
		err       string   // a refusal, naming this
	}{
		{"if statement with its body", "func f(n int) int {\n\t//mutate:agent args: n is the agent's argument\n\tif n < 0 {\n\t\treturn 1\n\t}\n\tg()\n\treturn 0\n}",
			[]string{"g() → ", "0 → 1"}, 7, ""},
		{"only the return inside an if", "func f(n int) int {\n\tif n < 0 {\n\t\t//mutate:agent report: the error kind the agent is told\n\t\treturn 1\n\t}\n\treturn 0\n}",
			[]string{"n < 0 → !(n < 0)", "n < 0 → n <= 0", "n < 0 → n >= 0", "0 → 1", "0 → 1"}, 3, ""},
		{"a call statement and the swaps it takes part in", "func f() {\n\tg()\n\t//mutate:agent report: an agent event\n\th()\n\tg()\n}",
			[]string{"g() → ", "g() → "}, 3, ""},
		{"below an ordinary comment line", "func f() {\n\t// the agent's event.\n\t//mutate:agent report: an agent event\n\th()\n}", nil, 1, ""},
		{"a whole function (doc comment)", "// f checks the agent's arguments.\n//\n//mutate:agent args: all of it\nfunc f(n int) bool { return n > 2 }\nfunc k(n int) bool { return n > 2 }",
			[]string{"n > 2 → n >= 2", "n > 2 → n <= 2", "2 → 3", "2 → 1", "2 → 0"}, 5, ""},
		{"a const spec", "const (\n\t//mutate:agent args: a limit of the agent's generator\n\ta = 5\n\tb = 7\n)",
			[]string{"7 → 8", "7 → 6", "7 → 0"}, 3, ""},
		{"no reason", "func f() {\n\t//mutate:agent\n\tg()\n}", nil, 0, "want //mutate:agent <kind>: <reason>"},
		{"unknown kind", "func f() {\n\t//mutate:agent config: every spec sets it\n\tg()\n}", nil, 0, "kind one of args, report"},
		{"empty reason", "func f() {\n\t//mutate:agent args:\n\tg()\n}", nil, 0, "want //mutate:agent"},
		{"dangling: a blank line below", "func f() {\n\t//mutate:agent args: x\n\n\tg()\n}", nil, 0, "annotates nothing"},
		{"after code on its line", "func f() {\n\tg() //mutate:agent args: x\n\th()\n}", nil, 0, "line of its own"},
		{"another word is no directive", "func f() {\n\t//mutate:agentless\n\tg()\n}", []string{"g() → "}, 0, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := []byte(pre + c.src + tail)
			in, out, err := generate("x.go", src, nil, nil)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one naming %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := pairs(in); !slices.Equal(got, c.want) {
				t.Errorf("left in %q, want %q", got, c.want)
			}
			if len(out) != c.out {
				t.Errorf("left out %d (%q), want %d", len(out), pairs(out), c.out)
			}
			for _, m := range out {
				if m.Agent == "" {
					t.Errorf("%s: no reason", m.Key())
				}
			}
			// The mutants left in are the same, IDs and ordinals too, as
			// without the directive.
			plain := strings.NewReplacer("//mutate:agent", "// was a directive").Replace(string(src))
			all, _, err := generate("x.go", []byte(plain), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			ids := map[string]bool{}
			for _, m := range all {
				ids[m.ID] = true
			}
			for _, m := range in {
				if !ids[m.ID] {
					t.Errorf("%s: ID %s changed by the directive", m.Key(), m.ID)
				}
			}
			if len(all) != len(in)+len(out) {
				t.Errorf("%d mutants without the directive, %d + %d with it", len(all), len(in), len(out))
			}
		})
	}
}

// The ordinals are counted before a directive takes its mutants away: the
// second `n < 1` keeps ordinal 1 (and its ID) when the first is annotated.
func TestAgentDirectiveKeepsOrdinals(t *testing.T) {
	src := pre + "func f(n int) bool {\n\t//mutate:agent args: x\n\tif n < 1 {\n\t\treturn true\n\t}\n\treturn n < 1\n}\n"
	in, _, err := generate("x.go", []byte(src), []string{OpBoundary}, nil)
	if err != nil || len(in) != 1 || in[0].Ordinal != 1 {
		t.Fatalf("got %+v (%v), want the second n < 1 with ordinal 1", in, err)
	}
}

// Every directive in devicefw/sim takes at least one mutant away (a stale
// one, whose code changed, must be reviewed again) and gives its kind.
func TestAgentDirectivesInSim(t *testing.T) {
	_, out, err := Split("../sim", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	per := map[string]int{}
	for _, m := range out {
		per[m.File+": "+m.Agent]++
	}
	for _, f := range ScopeFiles() {
		src, err := os.ReadFile(filepath.Join("../sim", f))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(src), "\n") {
			l = strings.TrimSpace(l)
			if !strings.HasPrefix(l, "//mutate:agent ") {
				continue
			}
			if per[f+": "+strings.TrimSpace(strings.TrimPrefix(l, "//mutate:agent"))] == 0 {
				t.Errorf("%s: %q leaves no mutant out", f, l)
			}
		}
	}
}
