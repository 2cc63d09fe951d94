// Package suites holds hilrun's conformance specs (Ginkgo v2 / Gomega),
// one file per area, compiled into the hilrun binary. Every spec is declared
// with Conformance, which labels it with the requirement IDs it covers and
// their area; Run executes the selected specs against one board and builds
// the report.
//
// A spec stays short because fixtures.Session owns setup and teardown. A
// spec checks the hub-side wire evidence (raw topics, flags, ordering) — the
// firmware's own events only tell it when to look.
package suites

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/fixtures/catalog"
	"github.com/hilrun/hilrun/rig/hub"
)

// notApplicable prefixes the Skip message of specs whose capability the
// board did not declare; the report counts them as not applicable.
const notApplicable = "not applicable: "

// preconditionUnmet prefixes the Skip message of specs whose precondition
// the board could not meet (it answered `unsupported` to an operation the
// spec needs but its requirement does not); the report counts them as
// precondition-unmet: not judged, neither passed nor failed.
const preconditionUnmet = "precondition unmet: "

// SpecTimeout bounds one spec, so a hung board fails a spec instead of the run.
var specTimeout = 90 * time.Second

var (
	envMu   sync.Mutex
	env     *fixtures.Env
	current *fixtures.Session // the session of the running spec (specs run serially)
)

func setEnv(e *fixtures.Env) {
	envMu.Lock()
	env = e
	envMu.Unlock()
}

// Conformance declares a spec covering the given requirement IDs. The
// first ID's area is the spec's area; all IDs become labels, so
// `--label-filter TWIN-010` selects the specs of one requirement.
func Conformance(text string, reqs []string, body func(ctx SpecContext), decorators ...any) bool {
	labels := append([]string(nil), reqs...)
	for _, r := range reqs {
		area := areaOf(r)
		if !containsString(labels, area) {
			labels = append(labels, area)
		}
	}
	args := append([]any{Label(labels...), SpecTimeout(specTimeout)}, decorators...)
	args = append(args, func(ctx SpecContext) {
		// Waits for a board recovery in progress, skips the spec when the
		// run cannot go on, and ends the spec's waits early on a hang.
		ctx, cancel := guardSpec(ctx)
		defer cancel()
		body(ctx)
	})
	return It(fmt.Sprintf("%s [%s]", text, strings.Join(reqs, ",")), args...)
}

func areaOf(id string) string {
	if i := strings.LastIndexByte(id, '-'); i > 0 {
		return id[:i]
	}
	return id
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// NewSession starts the spec's session. The capabilities the spec needs
// come from the catalog entries of the spec's requirement labels (plus
// extra); if the board lacks one the spec is skipped as not applicable.
func NewSession(ctx context.Context, o fixtures.SessionOptions, extra ...string) *fixtures.Session {
	GinkgoHelper()
	e := env
	Expect(e).NotTo(BeNil(), "suites.Run sets up the environment; specs cannot run under plain `go test`")
	needs := append([]string(nil), extra...)
	cat := catalog.MustLoad()
	for _, l := range CurrentSpecReport().Labels() {
		if r, ok := cat.Get(l); ok && r.Capability != "" {
			needs = append(needs, r.Capability)
		}
	}
	for _, c := range needs {
		if !boardHas(c) {
			Skip(notApplicable + "board does not declare capability " + c)
		}
	}
	if o.Name == "" {
		o.Name = strings.ToLower(areaOf(firstRequirement()))
	}
	s, err := e.NewSession(ctx, o)
	if s != nil {
		current = s
		DeferCleanup(func(ctx SpecContext) { s.Close(ctx) })
	}
	if err != nil {
		// The board cannot set up the session the spec asked for (a
		// CleanSession, a Will, module X.509 …): the spec is not judged.
		// Specs whose requirement is about that option check it
		// themselves before (not applicable).
		if isUnsupported(err) {
			if c := declaredFor(o); c != "" {
				Fail(fmt.Sprintf("session setup (%s): the board declares capability %s but answered %v", sessionWants(o), c, err))
			}
			PreconditionUnmet(fmt.Sprintf("session setup (%s): the board answered %v", sessionWants(o), err))
		}
		Fail("session setup: " + err.Error())
	}
	return s
}

// sessionWants describes the session options a board may not support.
func sessionWants(o fixtures.SessionOptions) string {
	var w []string
	if o.CleanSession != nil {
		w = append(w, fmt.Sprintf("CleanSession %d", map[bool]int{true: 1, false: 0}[*o.CleanSession]))
	}
	if o.Will != nil {
		w = append(w, "a Will")
	}
	if o.Auth != "" && o.Auth != fixtures.AuthSAS {
		w = append(w, o.Auth)
	}
	if o.ModuleID != "" {
		w = append(w, "module "+o.ModuleID)
	}
	if o.KeepAliveS > 0 {
		w = append(w, fmt.Sprintf("keep-alive %d s", o.KeepAliveS))
	}
	if len(w) == 0 {
		return "default options"
	}
	return strings.Join(w, ", ")
}

// declaredFor returns a capability the board declares that covers one of
// the session options asked for ("" if none): such a board may not answer
// them unsupported.
func declaredFor(o fixtures.SessionOptions) string {
	var cs []string
	if o.CleanSession != nil && *o.CleanSession {
		cs = append(cs, agentproto.CapCleanSession1)
	}
	if o.CleanSession != nil && !*o.CleanSession {
		cs = append(cs, agentproto.CapPersistentSession)
	}
	if o.Will != nil {
		cs = append(cs, agentproto.CapWill)
	}
	if o.ModuleID != "" && o.Auth != "" && o.Auth != fixtures.AuthSAS {
		cs = append(cs, agentproto.CapModuleX509)
	}
	for _, c := range cs {
		if boardHas(c) {
			return c
		}
	}
	return ""
}

// boardHas reports whether the board's hello declares capability c
// (under its current or a former name, agentproto.HasCap).
func boardHas(c string) bool {
	e := env
	return e != nil && agentproto.HasCap(e.Hello.Caps, c)
}

// isUnsupported reports whether err is the board's `unsupported` answer
// (or `unknown_op`: an operation the firmware does not implement).
func isUnsupported(err error) bool {
	ae, ok := fixtures.IsDeviceError(err)
	return ok && (ae.Code == agentproto.ErrUnsupported || ae.Code == agentproto.ErrUnknownOp)
}

// PreconditionUnmet ends the spec as precondition-unmet: the board could
// not set up something the spec needs but its requirement does not. Not a
// verdict; reason says what was asked for and what the board answered.
func PreconditionUnmet(reason string) {
	GinkgoHelper()
	Skip(preconditionUnmet + reason)
}

// NotApplicable ends the spec as not applicable: the requirement is about
// an optional behaviour the board does not have (it did not declare the
// capability and answered `unsupported`, or did not do it).
func NotApplicable(reason string) {
	GinkgoHelper()
	Skip(notApplicable + reason)
}

// optional runs an operation the spec needs for an optional behaviour
// (capability cap, see devicefw/PROTOCOL.md §3). It returns true when the
// board did it. When the board does not declare cap and answers
// `unsupported`, it returns false and the caller decides (not applicable
// or precondition-unmet, or judges the rest); a board declaring cap and
// answering `unsupported` fails the spec: it claimed the behaviour.
func optional(cap, what string, err error) bool {
	GinkgoHelper()
	if err == nil || !isUnsupported(err) {
		return true
	}
	if boardHas(cap) {
		Fail(fmt.Sprintf("the board declares capability %s but answered %v to %s", cap, err, what))
	}
	return false
}

func firstRequirement() string {
	cat := catalog.MustLoad()
	for _, l := range CurrentSpecReport().Labels() {
		if _, ok := cat.Get(l); ok {
			return l
		}
	}
	return "spec"
}

// Env is the running environment (for specs that need the hub or board
// directly).
func Env() *fixtures.Env { return env }

// must fails the spec with err's message (which carries the evidence).
func must[T any](v T, err error) T {
	GinkgoHelper()
	if err != nil {
		Fail(withRequirement(err.Error(), CurrentSpecReport().Labels())) // selection.go
	}
	return v
}

// publishes returns the device's PUBLISH packets in tr whose topic has prefix.
func publishes(tr []hub.Entry, prefix string) []hub.Entry {
	var out []hub.Entry
	for _, e := range tr {
		if e.Dir == hub.DirIn && e.Type == "PUBLISH" && strings.HasPrefix(e.Topic, prefix) {
			out = append(out, e)
		}
	}
	return out
}

// packets returns the entries of one packet type and direction.
func packets(tr []hub.Entry, dir, typ string) []hub.Entry {
	var out []hub.Entry
	for _, e := range tr {
		if e.Dir == dir && e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// traceText renders a trace for failure messages.
func traceText(tr []hub.Entry) string { return "wire trace:\n" + fixtures.FormatTrace(tr, 30) }
