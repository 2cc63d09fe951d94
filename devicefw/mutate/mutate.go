// Package mutate makes mutants of the reference firmware's protocol code
// (devicefw/sim) for `hilrun selftest --mutate`: small, compilable changes
// of one expression or statement each (a flipped comparison, a shifted
// boundary, a negated condition, a constant off by one, a dropped call, a
// removed early return, two statements swapped). A mutant that no spec
// fails shows behaviour of the firmware the suite does not judge.
//
// Mutants are text splices on the original source (go/parser finds the
// places), so a mutant file keeps its formatting and comments and differs
// from the original in one place only. The defect switches are not
// protocol: code that runs only with a defect switched on, the checks
// themselves, and calls into the defect files are left alone (see
// cleanValue); Scope names the files that count.
//
// The defect rule reads one function at a time: a defect's value passed
// on as a parameter (heartbeatLoop's idleOnly), a bool from a function of
// the defect files (localCheckSkipped) or a helper only a defect branch
// calls (rawBagMap) is not seen as defect code; such mutants survive and
// go on the reviewed equivalent list with that reason.
package mutate

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

// The operators. Names are stable: --operators, reports and the
// equivalent list use them.
const (
	OpBoundary   = "boundary"    // < ↔ <=, > ↔ >=
	OpRelFlip    = "rel-flip"    // == ↔ !=, < ↔ >=, > ↔ <=
	OpIfNegate   = "if-negate"   // if c → if !(c)
	OpLogic      = "logic-swap"  // && ↔ ||
	OpConst      = "const"       // integer literal n → n+1, n-1, 0
	OpDropCall   = "drop-call"   // a call statement or defer removed
	OpDropReturn = "drop-return" // the return ending an if block removed
	OpSwap       = "swap"        // two adjacent simple statements swapped
)

// Operators lists every operator, in report order.
var Operators = []string{OpBoundary, OpRelFlip, OpIfNegate, OpLogic, OpConst, OpDropCall, OpDropReturn, OpSwap}

// ValidOperator reports whether name is an operator.
func ValidOperator(name string) bool {
	for _, o := range Operators {
		if o == name {
			return true
		}
	}
	return false
}

// Mutant is one change of one file.
type Mutant struct {
	ID       string `json:"id"`   // short hash of Key: stable across line moves
	File     string `json:"file"` // base name inside devicefw/sim
	Func     string `json:"func"` // enclosing function (Recv.Name), or at file level "const name" / "var name"
	Operator string `json:"operator"`
	Original string `json:"original"` // source text of the changed node
	Mutated  string `json:"mutated"`  // what replaces it ("" when removed)
	Ordinal  int    `json:"ordinal"`  // among mutants with the same file, func, operator, original and mutated text
	Line     int    `json:"line"`
	// Requirements are the requirement IDs the enclosing function's
	// comments name, else the file's.
	Requirements []string `json:"requirements,omitempty"`
	// Agent is the reason of the //mutate:agent directive whose node the
	// mutant changes (directive.go); such a mutant is out of scope.
	Agent string `json:"agent,omitempty"`

	src   []byte   // the mutated file
	spans []splice // where it changes the original
}

// Key is the mutant's stable identity: file, function, operator, original
// and mutated text, ordinal — no line number, so unrelated edits above it
// do not change it.
func (m Mutant) Key() string {
	return fmt.Sprintf("%s|%s|%s|%s|%s|%d", m.File, m.Func, m.Operator, m.Original, m.Mutated, m.Ordinal)
}

// Source is the whole mutated file.
func (m Mutant) Source() []byte { return m.src }

var reqRE = regexp.MustCompile(`\b[A-Z]{2,6}-[0-9]{3}\b`)

// splice is one replacement of src[start:end].
type splice struct {
	start, end int
	text       string
}

type gen struct {
	fset     *token.FileSet
	file     string
	src      []byte
	ops      map[string]bool
	skipFunc map[string]bool // functions of the defect files: calls to them are not dropped
	out      []Mutant
	funcName string
	funcReqs []string
	fileReqs []string
	clean    map[string]bool // identifiers holding a defect check's value, per function
}

// Generate returns the mutants of one file of package sim. ops selects
// operators (nil: all); defectFuncs names the functions declared in the
// defect files (calls to them are not dropped).
// Mutants inside a node annotated //mutate:agent (directive.go) are left
// out.
func Generate(file string, src []byte, ops []string, defectFuncs map[string]bool) ([]Mutant, error) {
	in, _, err := generate(file, src, ops, defectFuncs)
	return in, err
}

// generate returns the mutants in scope and those an agent directive
// leaves out (each with its reason in Agent).
func generate(file string, src []byte, ops []string, defectFuncs map[string]bool) (in, agent []Mutant, err error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, src, parser.ParseComments)
	if err != nil {
		return nil, nil, err
	}
	dirs, err := directives(fset, f, src)
	if err != nil {
		return nil, nil, err
	}
	g := &gen{fset: fset, file: file, src: src, ops: map[string]bool{}, skipFunc: defectFuncs}
	if len(ops) == 0 {
		ops = Operators
	}
	for _, o := range ops {
		g.ops[o] = true
	}
	// The file's requirement IDs: those in comments outside functions.
	var funcs []*ast.FuncDecl
	for _, d := range f.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok {
			funcs = append(funcs, fd)
		}
	}
	for _, cg := range f.Comments {
		inside := false
		for _, fd := range funcs {
			if cg.Pos() >= fd.Pos() && cg.End() <= fd.End() {
				inside = true
			}
		}
		if !inside {
			g.fileReqs = addReqs(g.fileReqs, cg.Text())
		}
	}
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			g.funcName = funcName(d)
			g.funcReqs = nil
			if d.Doc != nil {
				g.funcReqs = addReqs(nil, d.Doc.Text())
			}
			for _, cg := range f.Comments {
				if cg.Pos() >= d.Pos() && cg.End() <= d.End() {
					g.funcReqs = addReqs(g.funcReqs, cg.Text())
				}
			}
			g.clean = map[string]bool{}
			if d.Body != nil && !g.skipFunc[d.Name.Name] {
				g.block(d.Body.List)
			}
		case *ast.GenDecl:
			g.funcName, g.funcReqs, g.clean = "", nil, map[string]bool{}
			if d.Doc != nil {
				g.funcReqs = addReqs(nil, d.Doc.Text())
			}
			if d.Tok == token.CONST || d.Tok == token.VAR {
				for _, s := range d.Specs {
					if vs, ok := s.(*ast.ValueSpec); ok {
						// Named after what it declares: "const name".
						var names []string
						for _, n := range vs.Names {
							names = append(names, n.Name)
						}
						g.funcName = d.Tok.String() + " " + strings.Join(names, ", ")
						for _, v := range vs.Values {
							g.expr(v)
						}
					}
				}
			}
		}
	}
	// Ordinals and IDs, over every mutant: a directive added later does
	// not renumber the mutants it leaves in.
	seen := map[string]int{}
	for i := range g.out {
		m := &g.out[i]
		k := fmt.Sprintf("%s|%s|%s|%s|%s", m.File, m.Func, m.Operator, m.Original, m.Mutated)
		m.Ordinal = seen[k]
		seen[k]++
		sum := sha256.Sum256([]byte(m.Key()))
		m.ID = hex.EncodeToString(sum[:])[:10]
	}
	for _, m := range g.out {
		for _, d := range dirs {
			for _, sp := range m.spans {
				if sp.start < d.end && d.start < max(sp.end, sp.start+1) {
					m.Agent = d.reason
				}
			}
		}
		if m.Agent != "" {
			agent = append(agent, m)
		} else {
			in = append(in, m)
		}
	}
	return in, agent, nil
}

func funcName(fd *ast.FuncDecl) string {
	if fd.Recv == nil || len(fd.Recv.List) == 0 {
		return fd.Name.Name
	}
	t := fd.Recv.List[0].Type
	if s, ok := t.(*ast.StarExpr); ok {
		t = s.X
	}
	if ix, ok := t.(*ast.IndexExpr); ok {
		t = ix.X
	}
	if id, ok := t.(*ast.Ident); ok {
		return id.Name + "." + fd.Name.Name
	}
	return fd.Name.Name
}

func addReqs(have []string, text string) []string {
	for _, id := range reqRE.FindAllString(text, -1) {
		dup := false
		for _, h := range have {
			dup = dup || h == id
		}
		if !dup {
			have = append(have, id)
		}
	}
	sort.Strings(have)
	return have
}

func (g *gen) off(p token.Pos) int { return g.fset.Position(p).Offset }

func (g *gen) text(n ast.Node) string { return string(g.src[g.off(n.Pos()):g.off(n.End())]) }

// add records a mutant made of splices (in any order, not overlapping).
func (g *gen) add(op string, at ast.Node, original, mutated string, sp ...splice) {
	if !g.ops[op] {
		return
	}
	sort.Slice(sp, func(a, b int) bool { return sp[a].start < sp[b].start })
	var b strings.Builder
	last := 0
	for _, s := range sp {
		b.Write(g.src[last:s.start])
		b.WriteString(s.text)
		last = s.end
	}
	b.Write(g.src[last:])
	reqs := g.funcReqs
	if len(reqs) == 0 {
		reqs = g.fileReqs
	}
	g.out = append(g.out, Mutant{File: g.file, Func: g.funcName, Operator: op, Original: oneLine(original), Mutated: oneLine(mutated),
		Line: g.fset.Position(at.Pos()).Line, Requirements: reqs, src: []byte(b.String()), spans: sp})
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 160 {
		s = s[:157] + "..."
	}
	return s
}

// isDefectCheck reports whether e is a defect switch lookup: a call
// whose one argument is a defect's name constant (Def…): x.on(DefName)
// (dc.on, ac.on, fw.defects.on, …), fw.clientOn(DefName).
func isDefectCheck(e ast.Expr) bool {
	c, ok := e.(*ast.CallExpr)
	if !ok || len(c.Args) != 1 {
		return false
	}
	id, ok := c.Args[0].(*ast.Ident)
	return ok && len(id.Name) > 3 && strings.HasPrefix(id.Name, "Def") && unicode.IsUpper(rune(id.Name[3]))
}

// cleanValue is e's value on the clean firmware (every defect off), when
// the defect checks in it decide it: known is false for ordinary
// expressions.
func (g *gen) cleanValue(e ast.Expr) (val, known bool) {
	switch e := e.(type) {
	case *ast.ParenExpr:
		return g.cleanValue(e.X)
	case *ast.Ident:
		v, ok := g.clean[e.Name]
		return v, ok
	case *ast.UnaryExpr:
		if e.Op == token.NOT {
			v, k := g.cleanValue(e.X)
			return !v, k
		}
	case *ast.BinaryExpr:
		lv, lk := g.cleanValue(e.X)
		rv, rk := g.cleanValue(e.Y)
		switch e.Op {
		case token.LAND:
			if (lk && !lv) || (rk && !rv) {
				return false, true
			}
			if lk && rk {
				return true, true
			}
		case token.LOR:
			if (lk && lv) || (rk && rv) {
				return true, true
			}
			if lk && rk {
				return false, true
			}
		}
	case *ast.CallExpr:
		if isDefectCheck(e) {
			return false, true
		}
	}
	return false, false
}

// hasDefect reports whether e contains a defect check.
func (g *gen) hasDefect(e ast.Node) bool {
	found := false
	ast.Inspect(e, func(n ast.Node) bool {
		if x, ok := n.(ast.Expr); ok {
			if isDefectCheck(x) {
				found = true
			}
			if id, ok := x.(*ast.Ident); ok {
				if _, ok := g.clean[id.Name]; ok {
					found = true
				}
			}
		}
		return !found
	})
	return found
}

// expr mutates inside an expression (not the expression's own truth as a
// condition: that is if-negate, in stmt).
func (g *gen) expr(e ast.Expr) {
	if e == nil {
		return
	}
	if _, known := g.cleanValue(e); known {
		return // decided by defect switches: defect plumbing, not protocol
	}
	switch e := e.(type) {
	case *ast.BinaryExpr:
		g.binary(e)
	case *ast.ParenExpr:
		g.expr(e.X)
	case *ast.UnaryExpr:
		g.expr(e.X)
	case *ast.StarExpr:
		g.expr(e.X)
	case *ast.BasicLit:
		g.intLit(e)
	case *ast.CallExpr:
		if isDefectCheck(e) {
			return
		}
		if id, ok := e.Fun.(*ast.Ident); ok && id.Name == "make" {
			return // allocation sizes and channel buffers: not protocol
		}
		if isLogCall(e) {
			return
		}
		g.expr(e.Fun)
		for _, a := range e.Args {
			g.expr(a)
		}
	case *ast.SelectorExpr:
		g.expr(e.X)
	case *ast.IndexExpr:
		g.expr(e.X)
		g.expr(e.Index)
	case *ast.SliceExpr:
		g.expr(e.X)
		g.expr(e.Low)
		g.expr(e.High)
		g.expr(e.Max)
	case *ast.CompositeLit:
		for _, el := range e.Elts {
			g.expr(el)
		}
	case *ast.KeyValueExpr:
		g.expr(e.Value)
	case *ast.FuncLit:
		saved := g.clean
		g.clean = copyMap(saved)
		g.block(e.Body.List)
		g.clean = saved
	case *ast.TypeAssertExpr:
		g.expr(e.X)
	}
}

func copyMap(m map[string]bool) map[string]bool {
	out := make(map[string]bool, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

var relFlip = map[token.Token]token.Token{token.EQL: token.NEQ, token.NEQ: token.EQL, token.LSS: token.GEQ, token.GEQ: token.LSS, token.GTR: token.LEQ, token.LEQ: token.GTR}
var boundary = map[token.Token]token.Token{token.LSS: token.LEQ, token.LEQ: token.LSS, token.GTR: token.GEQ, token.GEQ: token.GTR}

func (g *gen) binary(e *ast.BinaryExpr) {
	orig := g.text(e)
	opStart := g.off(e.OpPos)
	opEnd := opStart + len(e.Op.String())
	repl := func(op string, to token.Token) {
		sp := splice{opStart, opEnd, to.String()}
		mut := string(g.src[g.off(e.Pos()):opStart]) + to.String() + string(g.src[opEnd:g.off(e.End())])
		g.add(op, e, orig, mut, sp)
	}
	if to, ok := boundary[e.Op]; ok {
		repl(OpBoundary, to)
	}
	if to, ok := relFlip[e.Op]; ok {
		repl(OpRelFlip, to)
	}
	if e.Op == token.LAND || e.Op == token.LOR {
		if !g.hasDefect(e) {
			to := token.LOR
			if e.Op == token.LOR {
				to = token.LAND
			}
			repl(OpLogic, to)
		}
	}
	g.expr(e.X)
	g.expr(e.Y)
}

func (g *gen) intLit(l *ast.BasicLit) {
	if l.Kind != token.INT {
		return
	}
	v, err := strconv.ParseInt(strings.ReplaceAll(l.Value, "_", ""), 0, 64)
	if err != nil {
		return
	}
	at := splice{g.off(l.Pos()), g.off(l.End()), ""}
	made := map[int64]bool{v: true}
	for _, n := range []int64{v + 1, v - 1, 0} {
		if n < 0 || made[n] { // the 0 of a 1 is its v-1
			continue
		}
		made[n] = true
		s := strconv.FormatInt(n, 10)
		at.text = s
		g.add(OpConst, l, l.Value, s, at)
	}
}

// isLogCall reports a call of a logging or formatting function: dropping
// or changing it changes no protocol behaviour.
func isLogCall(c *ast.CallExpr) bool {
	name := calleeName(c)
	switch name {
	case "logf", "Logf", "Printf", "Println", "Print", "Fprintf", "Fprintln", "Fprint":
		return true
	}
	return false
}

func calleeName(c *ast.CallExpr) string {
	switch f := c.Fun.(type) {
	case *ast.Ident:
		return f.Name
	case *ast.SelectorExpr:
		return f.Sel.Name
	case *ast.IndexExpr: // generic instantiation
		if id, ok := f.X.(*ast.Ident); ok {
			return id.Name
		}
	}
	return ""
}

// droppable reports whether removing the call statement is a protocol
// mutant: not logging, not locking (concurrency plumbing: dropping an
// Unlock only hangs the firmware), not a call into the defect files.
func (g *gen) droppable(c *ast.CallExpr) bool {
	if isLogCall(c) || g.hasDefect(c) {
		return false
	}
	return !lockCall(c) && !g.skipFunc[calleeName(c)]
}

// lockCall reports a call of the concurrency plumbing (mutexes, wait
// groups): changing it only hangs or races the firmware.
func lockCall(c *ast.CallExpr) bool {
	switch calleeName(c) {
	case "Lock", "Unlock", "RLock", "RUnlock", "Done", "Add", "Wait", "panic":
		return true
	}
	return false
}

func (g *gen) block(list []ast.Stmt) {
	for i, s := range list {
		g.stmt(s)
		if i+1 < len(list) && g.swappable(list[i]) && g.swappable(list[i+1]) && !g.hasDefect(list[i]) && !g.hasDefect(list[i+1]) {
			a, b := list[i], list[i+1]
			ta, tb := g.text(a), g.text(b)
			if ta != tb {
				g.add(OpSwap, a, ta+"; "+tb, tb+"; "+ta,
					splice{g.off(a.Pos()), g.off(a.End()), tb}, splice{g.off(b.Pos()), g.off(b.End()), ta})
			}
		}
	}
}

// swappable: simple statements whose order may matter and whose swap
// still compiles (no declarations, no control flow).
func (g *gen) swappable(s ast.Stmt) bool {
	switch s := s.(type) {
	case *ast.ExprStmt:
		c, ok := s.X.(*ast.CallExpr)
		return ok && !isLogCall(c) && !lockCall(c) && !g.skipFunc[calleeName(c)]
	case *ast.AssignStmt:
		return s.Tok != token.DEFINE
	case *ast.IncDecStmt, *ast.SendStmt:
		return true
	}
	return false
}

func (g *gen) drop(s ast.Stmt, op string) {
	g.add(op, s, g.text(s), "", splice{g.off(s.Pos()), g.off(s.End()), ""})
}

func (g *gen) stmt(s ast.Stmt) {
	switch s := s.(type) {
	case *ast.ExprStmt:
		if c, ok := s.X.(*ast.CallExpr); ok && g.droppable(c) {
			g.drop(s, OpDropCall)
		}
		g.expr(s.X)
	case *ast.DeferStmt:
		if g.droppable(s.Call) {
			g.drop(s, OpDropCall)
		}
		g.expr(s.Call)
	case *ast.GoStmt:
		g.expr(s.Call)
	case *ast.AssignStmt:
		// An identifier given a defect-decided value is a defect check too.
		if len(s.Lhs) == len(s.Rhs) {
			for i, r := range s.Rhs {
				if id, ok := s.Lhs[i].(*ast.Ident); ok {
					if v, known := g.cleanValue(r); known {
						g.clean[id.Name] = v
						continue
					}
				}
				g.expr(r)
			}
		} else {
			for _, r := range s.Rhs {
				g.expr(r)
			}
		}
	case *ast.ReturnStmt:
		for _, r := range s.Results {
			g.expr(r)
		}
	case *ast.IfStmt:
		g.ifStmt(s)
	case *ast.BlockStmt:
		g.block(s.List)
	case *ast.ForStmt:
		if s.Init != nil {
			g.stmt(s.Init)
		}
		g.expr(s.Cond)
		if s.Post != nil {
			g.stmt(s.Post)
		}
		g.block(s.Body.List)
	case *ast.RangeStmt:
		g.expr(s.X)
		g.block(s.Body.List)
	case *ast.SwitchStmt:
		if s.Init != nil {
			g.stmt(s.Init)
		}
		g.expr(s.Tag)
		for _, c := range s.Body.List {
			cc := c.(*ast.CaseClause)
			dead := false
			if s.Tag == nil {
				for _, e := range cc.List {
					if v, known := g.cleanValue(e); known && !v {
						dead = true // a case only a defect switch selects
					}
				}
			}
			if dead {
				continue
			}
			for _, e := range cc.List {
				g.expr(e)
			}
			g.block(cc.Body)
		}
	case *ast.TypeSwitchStmt:
		for _, c := range s.Body.List {
			g.block(c.(*ast.CaseClause).Body)
		}
	case *ast.SelectStmt:
		for _, c := range s.Body.List {
			cc := c.(*ast.CommClause)
			if cc.Comm != nil {
				g.stmt(cc.Comm)
			}
			g.block(cc.Body)
		}
	case *ast.LabeledStmt:
		g.stmt(s.Stmt)
	case *ast.SendStmt:
		g.expr(s.Value)
	case *ast.DeclStmt:
		if gd, ok := s.Decl.(*ast.GenDecl); ok {
			for _, sp := range gd.Specs {
				if vs, ok := sp.(*ast.ValueSpec); ok {
					for _, v := range vs.Values {
						g.expr(v)
					}
				}
			}
		}
	}
}

func (g *gen) ifStmt(s *ast.IfStmt) {
	if s.Init != nil {
		g.stmt(s.Init)
	}
	val, known := g.cleanValue(s.Cond)
	if known {
		// A defect switch decides the branch: the branch it takes on the
		// clean firmware is protocol, the other and the condition are not.
		if val {
			g.block(s.Body.List)
		} else if s.Else != nil {
			g.stmt(s.Else)
		}
		return
	}
	cond := g.text(s.Cond)
	g.add(OpIfNegate, s.Cond, cond, "!("+cond+")", splice{g.off(s.Cond.Pos()), g.off(s.Cond.End()), "!(" + cond + ")"})
	g.expr(s.Cond)
	if n := len(s.Body.List); n > 0 {
		if r, ok := s.Body.List[n-1].(*ast.ReturnStmt); ok {
			g.drop(r, OpDropReturn)
		}
	}
	g.block(s.Body.List)
	if s.Else != nil {
		g.stmt(s.Else)
	}
}
