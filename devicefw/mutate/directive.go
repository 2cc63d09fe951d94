package mutate

import (
	"fmt"
	"go/ast"
	"go/token"
	"strings"
)

// The agent directive leaves the agent's own contract out of scope where
// it sits inside a protocol file: a comment line
//
//	//mutate:agent args: <why>     argument checks of an agent operation
//	//mutate:agent report: <why>   what the agent alone is told (an
//	                               event, an error's kind, a result's shape)
//
// directly above a statement (the whole statement: an if with its body
// and else, a loop), a const or var declaration, or at the end of a
// function's doc comment (the whole function). No mutant changes text
// inside the annotated node; the mutants elsewhere keep their IDs (the
// ordinals are counted before the directive takes its mutants away).
//
// The rule it stands for (docs/mutation.md): only code whose every effect,
// on any input, is whether an agent operation is accepted, or what the
// agent is told. The hub may see that an operation did or did not happen,
// never how: code that shapes what goes to the cloud (topics, QoS,
// payloads, timing, retries, state that later traffic depends on), or a
// check that keeps the device within a documented cloud rule (QoS 2
// refused because the cloud forbids it), is protocol and is not annotated.
const directivePrefix = "//mutate:agent"

// Directive kinds: the reason starts with one of them and a colon.
var directiveKinds = []string{"args", "report"}

// directive is one annotated node: the source range [start, end) no
// mutant may touch.
type directive struct {
	start, end int
	line       int
	reason     string
}

// parseDirective reads one comment; ok is false for any other comment.
func parseDirective(text string) (reason string, ok bool, err error) {
	if !strings.HasPrefix(text, directivePrefix) {
		return "", false, nil
	}
	rest := text[len(directivePrefix):]
	if rest != "" && rest[0] != ' ' && rest[0] != '\t' {
		return "", false, nil // another word (//mutate:agentx): not ours
	}
	reason = strings.TrimSpace(rest)
	kind, why, found := strings.Cut(reason, ":")
	if !found || strings.TrimSpace(why) == "" || !contains(directiveKinds, kind) {
		return "", true, fmt.Errorf("%q: want %s <kind>: <reason>, kind one of %s", text, directivePrefix, strings.Join(directiveKinds, ", "))
	}
	return reason, true, nil
}

// directives finds the agent directives of a file and the node each one
// annotates. A directive that annotates nothing (no statement, declaration
// or function starts on the line after its comment group) is an error, so
// that a stale one is seen in review.
func directives(fset *token.FileSet, f *ast.File, src []byte) ([]directive, error) {
	type pending struct {
		nextLine, line int
		reason         string
	}
	var want []pending
	for _, cg := range f.Comments {
		for _, c := range cg.List {
			reason, ok, err := parseDirective(c.Text)
			if !ok {
				continue
			}
			line := fset.Position(c.Pos()).Line
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %v", fset.Position(c.Pos()).Filename, line, err)
			}
			off := fset.Position(c.Pos()).Offset
			bol := off
			for bol > 0 && src[bol-1] != '\n' {
				bol--
			}
			if strings.TrimSpace(string(src[bol:off])) != "" {
				return nil, fmt.Errorf("%s:%d: %s must stand on a line of its own", fset.Position(c.Pos()).Filename, line, directivePrefix)
			}
			want = append(want, pending{fset.Position(cg.End()).Line + 1, line, reason})
		}
	}
	if len(want) == 0 {
		return nil, nil
	}
	var out []directive
	for _, w := range want {
		var found ast.Node
		ast.Inspect(f, func(n ast.Node) bool {
			if found != nil || n == nil {
				return false
			}
			switch n := n.(type) {
			case *ast.FuncDecl:
				// A directive in the doc comment annotates the function.
				if n.Doc != nil && fset.Position(n.Doc.Pos()).Line <= w.line && w.line <= fset.Position(n.Doc.End()).Line {
					found = n
					return false
				}
			case ast.Stmt, *ast.GenDecl, *ast.ValueSpec:
				if fset.Position(n.Pos()).Line == w.nextLine {
					found = n // the outermost node starting there
					return false
				}
			}
			return true
		})
		if found == nil {
			return nil, fmt.Errorf("%s:%d: %s annotates nothing: put it directly above a statement, a declaration, or in a function's doc comment", fset.Position(f.Pos()).Filename, w.line, directivePrefix)
		}
		out = append(out, directive{fset.Position(found.Pos()).Offset, fset.Position(found.End()).Offset, w.line, w.reason})
	}
	return out, nil
}
