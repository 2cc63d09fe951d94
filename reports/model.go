// Package reports is the model and the writers of a hilrun conformance run's
// report.
//
// A runner (the Ginkgo-driven `hilrun run`) collects one SpecResult per spec
// and calls Build with the run metadata, the board's identity and the
// requirement catalog; Build derives each requirement's status and the run
// summary. Write then produces a report directory with four files:
//
//	report.json   the machine-readable report (schema in SCHEMA.md)
//	junit.xml     JUnit XML for CI test tabs (one testsuite per area)
//	report.html   a self-contained qualification document (no external assets; one small inline filter script)
//	summary.md    Markdown for a GitHub Actions step summary
//
// Load reads report.json back and Render regenerates the other three from
// it (`hilrun report`). Every free-text field is passed through Redact on the
// way out, so SAS signatures, shared access keys and private keys never reach
// a report even if a spec or a console line captured one.
//
// The package deliberately does not import the catalog or the rig: callers
// hand it plain values (RequirementRef, BoardInfo, WireEntry, ConsoleLine).
package reports

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// SchemaVersion is the report.json schema version written by this package.
// Version 2 added the rig-fault, interrupted and not-run spec statuses, the
// rig-fault requirement status, run.rigFault, rigFaults and summary.outcome;
// a version 1 report is a valid version 2 report without them, so Load
// reads both (MinSchemaVersion).
//
// Version 4 added the not-run requirement status (a requirement whose
// specs a filter left out), run.focus, run.notSelected, summary.filtered,
// summary.selection, the no-specs outcome and the requirement text,
// documentation references and capability in requirements[]; a version 3
// report reads as a version 4 report without them.
//
// Version 5 added requirements[].coverage (the requirement's row of the
// dimension table); a version 4 report reads as one without it.
const SchemaVersion = 5

// MinSchemaVersion is the oldest report.json schema this package reads.
const MinSchemaVersion = 1

// schemaReadable reports whether a report of schema version v can be read.
func schemaReadable(v int) bool { return v >= MinSchemaVersion && v <= SchemaVersion }

// Status is a requirement's outcome.
type Status string

// Requirement statuses.
const (
	Pass          Status = "pass"
	Fail          Status = "fail"
	NotApplicable Status = "not-applicable"
	NotCovered    Status = "not-covered"
	// RigFaultStatus: no spec failed, but a spec covering the requirement
	// hit a rig fault, so the requirement was not judged (neither passed
	// nor failed).
	RigFaultStatus Status = "rig-fault"
	// PreconditionUnmet: no spec failed, passed or hit a rig fault, and at
	// least one spec could not be judged because the board could not meet
	// a precondition the spec needs but the requirement does not (the
	// board answered `unsupported` to an operation the spec uses to set
	// the scene). Not judged: neither passed nor failed.
	PreconditionUnmet Status = "precondition-unmet"
	// NotRun: the suite has specs for the requirement, but the run's
	// filter (--label-filter, --focus) left every one of them out. Not a
	// gap in the suite's coverage and not a verdict: this run did not look.
	NotRun Status = "not-run"
)

// Statuses lists the requirement statuses in display order.
var Statuses = []Status{Pass, Fail, RigFaultStatus, PreconditionUnmet, NotApplicable, NotRun, NotCovered}

// SpecStatus is a spec's outcome.
type SpecStatus string

// Spec statuses. Skipped means the spec skipped itself for a reason other
// than a missing capability. The last three are not verdicts on the
// firmware: rig-fault (the rig failed during the spec, whatever its
// assertions said: lost or corrupted frames, a board that stopped
// answering), interrupted (the spec was cut by a signal or the suite
// timeout) and not-run (selected, but the run ended before it, because of
// an interruption or a rig fault).
const (
	SpecPassed        SpecStatus = "passed"
	SpecFailed        SpecStatus = "failed"
	SpecSkipped       SpecStatus = "skipped"
	SpecNotApplicable SpecStatus = "not-applicable"
	SpecRigFault      SpecStatus = "rig-fault"
	SpecInterrupted   SpecStatus = "interrupted"
	SpecNotRun        SpecStatus = "not-run"
	// SpecPreconditionUnmet: the board could not meet a precondition of
	// the spec that its requirement does not need (it answered
	// `unsupported` to an operation the spec uses to set the scene, e.g. a
	// CleanSession 1 connection for a requirement about retries). Not a
	// verdict: never counted as passed, never as failed; Failure holds
	// the reason.
	SpecPreconditionUnmet SpecStatus = "precondition-unmet"
)

// SpecStatuses lists the spec statuses in display order.
var SpecStatuses = []SpecStatus{SpecPassed, SpecFailed, SpecRigFault, SpecInterrupted, SpecNotRun, SpecPreconditionUnmet, SpecSkipped, SpecNotApplicable}

// Outcome is a run's overall result, the one the exit status reports.
type Outcome string

// Outcomes, in precedence order: a confirmed firmware failure (a failed
// spec without a rig fault) makes the run fail even if the rig also
// faulted or the run was interrupted later; otherwise an interruption
// wins over a rig fault (the operator stopped the run); a rig fault wins
// over pass.
const (
	OutcomePass        Outcome = "pass"
	OutcomeFail        Outcome = "fail"
	OutcomeInterrupted Outcome = "interrupted"
	OutcomeRigFault    Outcome = "rig-fault"
	// OutcomeNoSpecs: nothing failed and nothing faulted, but no spec
	// was judged either (the filter selected no spec, or every selected
	// spec was not applicable, skipped or not run). Never a pass: a CI
	// gate must not go green with nothing tested.
	OutcomeNoSpecs Outcome = "no-specs"
)

// Exit statuses of `hilrun run` (and of a pool and `hilrun report merge`).
const (
	ExitPass     = 0
	ExitFail     = 1 // a requirement failed, or the run was interrupted
	ExitUsage    = 2 // the run could not start (flags, inventory)
	ExitRigFault = 3 // the rig failed: nothing wrong was shown about the firmware
	ExitNoSpecs  = 4 // the run judged no spec (an empty filter selection)
)

// ExitStatus maps an outcome to the process exit status.
func (o Outcome) ExitStatus() int {
	switch o {
	case OutcomePass:
		return ExitPass
	case OutcomeRigFault:
		return ExitRigFault
	case OutcomeNoSpecs:
		return ExitNoSpecs
	}
	return ExitFail
}

// Label is the outcome as the terminal, Markdown and HTML show it.
func (o Outcome) Label() string {
	switch o {
	case OutcomePass:
		return "PASS"
	case OutcomeFail:
		return "FAIL"
	case OutcomeInterrupted:
		return "INTERRUPTED"
	case OutcomeRigFault:
		return "RIG FAULT"
	case OutcomeNoSpecs:
		return "NO SPEC RUN"
	}
	return strings.ToUpper(string(o))
}

// Severities as used in RequirementRef.Severity.
const (
	Must   = "MUST"
	Should = "SHOULD"
)

// Wire trace directions, relative to the hub (same values as rig/hub).
const (
	DirIn    = "in"    // device → hub
	DirOut   = "out"   // hub → device
	DirEvent = "event" // something the hub decided or observed
)

// RunMeta describes the run.
type RunMeta struct {
	ID          string        `json:"id"`
	Started     time.Time     `json:"started"`
	Finished    time.Time     `json:"finished"`
	Wall        time.Duration `json:"-"` // JSON: wallMs
	Version     string        `json:"hilrunVersion"`
	Host        string        `json:"host"`
	Command     []string      `json:"command"`
	Strict      bool          `json:"strict"`
	LabelFilter string        `json:"labelFilter,omitempty"`
	Focus       []string      `json:"focus,omitempty"` // --focus regular expressions
	// NotSelected are the requirement IDs of the specs the filter left
	// out: with no spec run for them they are not-run, not not-covered.
	NotSelected []string `json:"notSelected,omitempty"`
	Defects     []string `json:"defects,omitempty"` // defect switches active on the virtual board
	HubVersion  string   `json:"hubVersion"`
	// Cloud is the cloud the run was judged against: "azure" (the
	// reference IoT Hub) or "aws" (the reference AWS IoT endpoint).
	Cloud string `json:"cloud,omitempty"`
	// Interrupted: a signal (Ctrl-C, SIGTERM) or the suite timeout ended
	// the run early.
	Interrupted     bool   `json:"interrupted"`
	InterruptReason string `json:"interruptReason,omitempty"`
	// RigFault, when set, says why the rig ended the run (or never let it
	// start): the board did not come up, or stopped responding and did
	// not recover. Specs not run after it are not-run.
	RigFault string `json:"rigFault,omitempty"`
	// Shards, in a sharded run (`hilrun run --shards N`, `--pool
	// --shard`), are the boards the suite was split across, one per
	// child run; each spec names its shard (SpecResult.Board).
	Shards []ShardRun `json:"shards,omitempty"`
}

// ShardRun is one board's part of a sharded run.
type ShardRun struct {
	ID      string        `json:"id"`             // shard name, e.g. "shard-2", or the inventory board id
	Board   BoardInfo     `json:"board"`          // the board as its child run saw it
	Dir     string        `json:"dir,omitempty"`  // the child's own report directory
	Specs   int           `json:"specs"`          // specs given to it
	Wall    time.Duration `json:"-"`              // JSON: wallMs; the child's run
	Outcome Outcome       `json:"outcome"`        // the child's own outcome
	Note    string        `json:"note,omitempty"` // why it ended early (rig fault, interrupt, no report)
}

type shardRunJSON ShardRun

// MarshalJSON writes Wall as wallMs.
func (s ShardRun) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		shardRunJSON
		WallMs float64 `json:"wallMs"`
	}{shardRunJSON(s), ms(s.Wall)})
}

// UnmarshalJSON reads wallMs into Wall.
func (s *ShardRun) UnmarshalJSON(b []byte) error {
	var v struct {
		shardRunJSON
		WallMs float64 `json:"wallMs"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*s = ShardRun(v.shardRunJSON)
	s.Wall = fromMs(v.WallMs)
	return nil
}

// RigFaultEvent is one rig fault recorded during the run: a frame lost or
// corrupted on the line, an event sequence gap, a board that stopped
// responding. Spec is the spec during which it happened (empty: between
// specs or during bring-up).
type RigFaultEvent struct {
	At      time.Time `json:"at"`
	Kind    string    `json:"kind"` // seq-gap, corrupt-frame, bad-frame, board-hung, …
	Spec    string    `json:"spec,omitempty"`
	Message string    `json:"message"`
}

// BoardInfo identifies the device under test.
type BoardInfo struct {
	Profile  string        `json:"profile"` // board profile name, e.g. "sim", "esp32"
	Port     string        `json:"port,omitempty"`
	Firmware FirmwareHello `json:"firmware"`
}

// FirmwareHello is what the firmware said about itself (agent protocol hello).
type FirmwareHello struct {
	Name          string   `json:"name"`
	Version       string   `json:"version"`
	Build         string   `json:"build,omitempty"` // build hash
	Client        string   `json:"client"`          // device client library
	ClientVersion string   `json:"clientVersion"`
	Board         string   `json:"board"`
	Caps          []string `json:"caps"`
}

// RequirementRef is the slice of a catalog entry a report needs.
type RequirementRef struct {
	ID       string `json:"id"`
	Title    string `json:"title"`
	Area     string `json:"area"`
	Severity string `json:"severity"` // Must or Should
	// Text is the requirement in the catalog's words (its summary).
	Text string `json:"text,omitempty"`
	// Refs are its documentation references, e.g. "002 L13724-13727"
	// (seed document 002, lines 13724 to 13727).
	Refs []string `json:"refs,omitempty"`
	// Capability is the board capability it needs (empty: always
	// applicable); "aws" marks the AWS IoT Core profile.
	Capability string `json:"capability,omitempty"`
	// Coverage is its row of the dimension table (schema version 5; nil
	// in older reports and in stub reports).
	Coverage *Coverage `json:"coverage,omitempty"`
}

// WireEntry is one packet or hub event of a wire-trace excerpt.
type WireEntry struct {
	Offset  time.Duration `json:"-"`    // JSON: offsetMs; since the spec started
	Dir     string        `json:"dir"`  // DirIn, DirOut or DirEvent
	Type    string        `json:"type"` // CONNECT, PUBLISH, ... or an event kind
	Topic   string        `json:"topic,omitempty"`
	QoS     int           `json:"qos"`
	Flags   string        `json:"flags,omitempty"`   // e.g. "dup retain", "clean", "session-present"
	Payload string        `json:"payload,omitempty"` // short summary, never the full payload
	Note    string        `json:"note,omitempty"`    // reason, requirement ID, return code …
}

// ConsoleLine is one line of the board's console log.
type ConsoleLine struct {
	Offset time.Duration `json:"-"`                // JSON: offsetMs; since the spec started
	Stream string        `json:"stream,omitempty"` // e.g. "rx" (from the board), "tx", "agent"
	Text   string        `json:"text"`
}

// SpecResult is the outcome of one spec.
type SpecResult struct {
	Name         string         `json:"name"`
	Requirements []string       `json:"requirements"`   // IDs the spec covers
	Area         string         `json:"area,omitempty"` // defaults to the first requirement's prefix
	Status       SpecStatus     `json:"status"`
	Duration     time.Duration  `json:"-"` // JSON: durationMs
	Failure      string         `json:"failure,omitempty"`
	Location     string         `json:"location,omitempty"` // file:line of the failing expectation
	Wire         []WireEntry    `json:"wire,omitempty"`
	Console      []ConsoleLine  `json:"console,omitempty"`
	Series       []SeriesResult `json:"series,omitempty"` // timing series the spec judged (fixtures/series)
	Facts        []Fact         `json:"facts,omitempty"`  // board facts the spec noted (fixtures.NoteFact)
	// RigFault describes the rig faults in the spec's window (status
	// rig-fault); Failure then keeps what the assertions said, which is
	// not a verdict.
	RigFault string `json:"rigFault,omitempty"`
	// Board is, in a sharded run, the shard (RunMeta.Shards[].ID) that
	// ran the spec; empty in a single-board run.
	Board string `json:"board,omitempty"`
}

// Fact kinds: the rows of the report's "TLS and clock" section.
const (
	FactTLS        = "tls"        // handshake: version, cipher, SNI, versions and suites offered
	FactRoot       = "root"       // a server root or chain the board accepted or refused
	FactClock      = "clock"      // a clock scenario and the behaviour the board showed
	FactTrustStore = "truststore" // what the board's trust store holds
	FactQuota      = "quota"      // a metered rate or volume against the device's share (LIMITS-*)

	// FactEntryPrefix prefixes the Ginkgo report entry carrying a Fact.
	FactEntryPrefix = "fact:"
)

// Fact is one thing a spec observed about the board that a customer asks a
// device maker for, e.g. {tls, version, TLS 1.3} or {root, DigiCert Global
// Root G2 chain, accepted}. Good says whether it is what a conforming board
// shows.
type Fact struct {
	Kind  string `json:"kind"`
	Name  string `json:"name"`
	Value string `json:"value"`
	Good  bool   `json:"good"`
	Spec  string `json:"spec,omitempty"` // set by Build: the spec that noted it
	// Requirements are that spec's requirement IDs (set by Build).
	Requirements []string `json:"requirements,omitempty"`
}

// SeriesResult is a timing series a spec judged, e.g. the gaps between a
// device's CONNECT attempts, with the figures fitted to it
// (fixtures/series.Figures.Map: n, firstGapMs, minGapMs, maxGapMs,
// growthFactor, capMs, plateauGaps, jitterSpread).
type SeriesResult struct {
	Name    string             `json:"name"`
	GapsMs  []float64          `json:"gapsMs"`
	Figures map[string]float64 `json:"figures,omitempty"`
}

// RequirementResult is a requirement's row in the report.
type RequirementResult struct {
	RequirementRef
	Status Status       `json:"status"`
	Specs  []SpecResult `json:"specs"`
}

// AreaSummary counts one area's requirements.
type AreaSummary struct {
	Area        string         `json:"area"`
	Counts      map[Status]int `json:"counts"`
	Must        int            `json:"must"`        // MUST requirements in the area
	MustCovered int            `json:"mustCovered"` // … with at least one spec that ran or was not applicable
	MustPassed  int            `json:"mustPassed"`
	MustFailed  int            `json:"mustFailed"`
	// MustRigFault counts MUST requirements not judged because of a rig
	// fault (they are not counted as covered).
	MustRigFault int `json:"mustRigFault,omitempty"`
}

// Summary is the run's roll-up.
type Summary struct {
	Verdict      bool               `json:"verdict"`
	Outcome      Outcome            `json:"outcome"`
	Why          []string           `json:"why,omitempty"`
	Requirements map[Status]int     `json:"requirements"`
	Specs        map[SpecStatus]int `json:"specs"`
	Areas        []AreaSummary      `json:"areas"`
	// Filtered: the run ran a selection (--label-filter, --focus), not
	// the whole suite; Selection says which, e.g. "label filter TWIN".
	Filtered  bool   `json:"filtered,omitempty"`
	Selection string `json:"selection,omitempty"`
	// Unmapped lists "spec name: ID" pairs naming requirement IDs the
	// catalog does not know (a suite bug; they do not affect the verdict).
	Unmapped []string `json:"unmapped,omitempty"`
}

// Report is a whole run.
type Report struct {
	SchemaVersion int                 `json:"schemaVersion"`
	Run           RunMeta             `json:"run"`
	Board         BoardInfo           `json:"board"`
	Requirements  []RequirementResult `json:"requirements"`
	Specs         []SpecResult        `json:"specs"`
	// TLSClock is the "TLS and clock" section: every fact the specs noted,
	// grouped by kind in FactKinds order, later notes of the same kind and
	// name after earlier ones.
	TLSClock []Fact `json:"tlsClock,omitempty"`
	// RigFaults are every rig fault of the run, in time order.
	RigFaults []RigFaultEvent `json:"rigFaults,omitempty"`
	Summary   Summary         `json:"summary"`
}

// FactKinds is the order of the "TLS and clock" section.
var FactKinds = []string{FactTLS, FactRoot, FactTrustStore, FactClock, FactQuota}

// Build assembles a report. cat fixes the requirement rows and their order;
// specs are kept in the order given. Wall is taken from Finished−Started when
// meta.Wall is zero.
func Build(meta RunMeta, board BoardInfo, cat []RequirementRef, specs []SpecResult) *Report {
	return BuildWithFaults(meta, board, cat, specs, nil)
}

// BuildWithFaults is Build with the run's rig faults (Report.RigFaults).
func BuildWithFaults(meta RunMeta, board BoardInfo, cat []RequirementRef, specs []SpecResult, faults []RigFaultEvent) *Report {
	if meta.Wall == 0 && !meta.Started.IsZero() && meta.Finished.After(meta.Started) {
		meta.Wall = meta.Finished.Sub(meta.Started)
	}
	r := &Report{SchemaVersion: SchemaVersion, Run: meta, Board: board, RigFaults: slices.Clone(faults)}
	r.Specs = slices.Clone(specs)
	for i := range r.Specs {
		if r.Specs[i].Area == "" {
			r.Specs[i].Area = specArea(r.Specs[i])
		}
	}
	r.TLSClock = collectFacts(r.Specs)
	idx := make(map[string]int, len(cat))
	for i, c := range cat {
		idx[c.ID] = i
		r.Requirements = append(r.Requirements, RequirementResult{RequirementRef: c, Specs: []SpecResult{}})
	}
	var unmapped []string
	for _, s := range r.Specs {
		for _, id := range s.Requirements {
			i, ok := idx[id]
			if !ok {
				unmapped = append(unmapped, s.Name+": "+id)
				continue
			}
			r.Requirements[i].Specs = append(r.Requirements[i].Specs, s)
		}
	}
	for i := range r.Requirements {
		r.Requirements[i].Status = RequirementStatus(r.Requirements[i].Specs)
		if r.Requirements[i].Status == NotCovered && len(r.Requirements[i].Specs) == 0 && slices.Contains(meta.NotSelected, r.Requirements[i].ID) {
			r.Requirements[i].Status = NotRun
		}
	}
	r.Summary = r.summarize()
	r.Summary.Unmapped = unmapped
	return r
}

func specArea(s SpecResult) string {
	if len(s.Requirements) > 0 {
		if a, _, ok := strings.Cut(s.Requirements[0], "-"); ok {
			return a
		}
	}
	return "OTHER"
}

// RequirementStatus applies the status rule to the specs covering one
// requirement:
//
//   - no spec → not-covered
//   - any spec failed → fail
//   - otherwise, any spec hit a rig fault → rig-fault (not judged: part of
//     the evidence is missing, so a pass would be a guess)
//   - otherwise, at least one spec passed → pass (skipped, interrupted,
//     not-run and precondition-unmet specs do not count)
//   - otherwise, at least one spec precondition-unmet → precondition-unmet
//     (not judged: the board could not set the scene the specs need)
//   - otherwise, every spec not applicable (the board lacks the capability)
//     → not-applicable
//   - otherwise (specs only skipped, or skipped and not applicable) →
//     not-covered
func RequirementStatus(specs []SpecResult) Status {
	if len(specs) == 0 {
		return NotCovered
	}
	var passed, na, rig, pre int
	for _, s := range specs {
		switch s.Status {
		case SpecFailed:
			return Fail
		case SpecRigFault:
			rig++
		case SpecPassed:
			passed++
		case SpecNotApplicable:
			na++
		case SpecPreconditionUnmet:
			pre++
		}
	}
	switch {
	case rig > 0:
		return RigFaultStatus
	case passed > 0:
		return Pass
	case pre > 0:
		return PreconditionUnmet
	case na == len(specs):
		return NotApplicable
	default:
		return NotCovered
	}
}

// Verdict decides whether the run passed (exit status 0): every applicable
// MUST requirement that is covered passed, no requirement (MUST or SHOULD)
// failed, no rig fault touched a spec or ended the run, and the run was not
// interrupted. why lists the reasons, one line each: failures in catalog
// order, then rig faults, then the interruption. Outcome says which kind of
// not-ok it is.
func (r *Report) Verdict() (ok bool, why []string) {
	for _, q := range r.Requirements {
		if q.Status == Fail {
			why = append(why, fmt.Sprintf("%s (%s) failed: %s", q.ID, q.Severity, firstFailure(q.Specs)))
		}
	}
	if reason, rig := r.runRigFault(); rig {
		why = append(why, "rig fault: "+orNone(reason))
	}
	for _, s := range r.Specs {
		if s.Status == SpecRigFault {
			why = append(why, fmt.Sprintf("rig fault in spec %s: %s", s.Name, firstLine(s.RigFault)))
		}
	}
	if r.Run.Interrupted {
		why = append(why, "run interrupted: "+orNone(r.Run.InterruptReason))
	}
	if len(why) == 0 && !r.judgedAny() {
		why = append(why, r.NoSpecsReason())
	}
	return len(why) == 0, why
}

// judgedAny reports whether at least one spec passed or failed.
func (r *Report) judgedAny() bool {
	return slices.ContainsFunc(r.Specs, func(s SpecResult) bool { return s.Status == SpecPassed || s.Status == SpecFailed })
}

// NoSpecsReason says, in one line, why a no-specs run judged nothing.
func (r *Report) NoSpecsReason() string {
	sel := "the whole suite"
	if r.Filtered() {
		sel = r.Selection()
	}
	if len(r.Specs) == 0 {
		return "no spec ran: " + sel + " selected no spec (check the requirement IDs and areas, e.g. --label-filter TWIN-010 or TWIN)"
	}
	return fmt.Sprintf("no spec was judged: %s selected %d specs, none passed or failed (not applicable, skipped or not run)", sel, len(r.Specs))
}

// Filtered reports whether the run ran a selection of the suite (the
// AWS cloud's own scope, label AWS, is the whole suite of that cloud).
func (r *Report) Filtered() bool { return r.userFilter() != "" || len(r.Run.Focus) > 0 }

// userFilter is the label filter the user gave: run.labelFilter without
// the scope an AWS run adds to it ("AWS", or "(FILTER) && AWS").
func (r *Report) userFilter() string {
	f := r.Run.LabelFilter
	if r.Run.Cloud == "aws" {
		if f == "AWS" {
			return ""
		}
		if inner, ok := strings.CutSuffix(f, ") && AWS"); ok && strings.HasPrefix(inner, "(") {
			return inner[1:]
		}
	}
	return f
}

// Selection describes the run's filter, e.g. "label filter TWIN && !TWIN-018";
// empty for a whole-suite run.
func (r *Report) Selection() string {
	var parts []string
	if f := r.userFilter(); f != "" {
		parts = append(parts, "label filter "+f)
	}
	for _, f := range r.Run.Focus {
		if len(f) > 120 {
			// A shard's list of exact spec names (hilrun run --shards):
			// counted, not quoted.
			parts = append(parts, fmt.Sprintf("focus on a list of %d specs", strings.Count(f, "|")+1))
			continue
		}
		parts = append(parts, "focus "+f)
	}
	return strings.Join(parts, "; ")
}

func orNone(s string) string {
	if s == "" {
		return "no reason recorded"
	}
	return s
}

// Outcome is the run's overall result (see the Outcome constants for the
// precedence): fail when a requirement failed, else interrupted, else
// rig-fault when a rig fault touched a spec or ended the run, else pass.
func (r *Report) Outcome() Outcome {
	for _, q := range r.Requirements {
		if q.Status == Fail {
			return OutcomeFail
		}
	}
	if r.Run.Interrupted {
		if _, legacy := r.legacyRigFault(); !legacy {
			return OutcomeInterrupted
		}
	}
	if _, rig := r.runRigFault(); rig {
		return OutcomeRigFault
	}
	for _, s := range r.Specs {
		if s.Status == SpecRigFault {
			return OutcomeRigFault
		}
	}
	if !r.judgedAny() {
		return OutcomeNoSpecs
	}
	return OutcomePass
}

// runRigFault is the run-level rig fault: run.rigFault, or (reports of
// schema version 1) an interruption before anything was judged whose
// reason starts with "environment:" or "rig fault:".
func (r *Report) runRigFault() (string, bool) {
	if r.Run.RigFault != "" {
		return r.Run.RigFault, true
	}
	return r.legacyRigFault()
}

func (r *Report) legacyRigFault() (string, bool) {
	if !r.Run.Interrupted {
		return "", false
	}
	for _, s := range r.Specs {
		if s.Status == SpecPassed || s.Status == SpecFailed {
			return "", false
		}
	}
	for _, p := range rigFaultPrefixes {
		if rest, found := strings.CutPrefix(r.Run.InterruptReason, p); found {
			return strings.TrimSpace(rest), true
		}
	}
	return "", false
}

// RigFaultReason is one line saying why the run is a rig fault: the
// run-level reason, else the first rig-fault spec's.
func (r *Report) RigFaultReason() string {
	if reason, ok := r.runRigFault(); ok {
		return orNone(reason)
	}
	for _, s := range r.Specs {
		if s.Status == SpecRigFault {
			return fmt.Sprintf("spec %s: %s", s.Name, firstLine(s.RigFault))
		}
	}
	return ""
}

func firstFailure(specs []SpecResult) string {
	for _, s := range specs {
		if s.Status == SpecFailed {
			return specTitle(s) + ": " + Claim(s.Failure)
		}
	}
	return ""
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	return s
}

func (r *Report) summarize() Summary {
	sum := Summary{Requirements: map[Status]int{}, Specs: map[SpecStatus]int{}}
	for _, st := range Statuses {
		sum.Requirements[st] = 0
	}
	for _, st := range SpecStatuses {
		sum.Specs[st] = 0
	}
	for _, s := range r.Specs {
		sum.Specs[s.Status]++
	}
	areaIdx := map[string]int{}
	for _, q := range r.Requirements {
		sum.Requirements[q.Status]++
		i, ok := areaIdx[q.Area]
		if !ok {
			i = len(sum.Areas)
			areaIdx[q.Area] = i
			a := AreaSummary{Area: q.Area, Counts: map[Status]int{}}
			for _, st := range Statuses {
				a.Counts[st] = 0
			}
			sum.Areas = append(sum.Areas, a)
		}
		a := &sum.Areas[i]
		a.Counts[q.Status]++
		if q.Severity == Must {
			a.Must++
			if q.Status != NotCovered && q.Status != RigFaultStatus && q.Status != PreconditionUnmet && q.Status != NotRun {
				a.MustCovered++
			}
			switch q.Status {
			case Pass:
				a.MustPassed++
			case Fail:
				a.MustFailed++
			case RigFaultStatus:
				a.MustRigFault++
			}
		}
	}
	sum.Verdict, sum.Why = r.Verdict()
	sum.Outcome = r.Outcome()
	sum.Filtered, sum.Selection = r.Filtered(), r.Selection()
	return sum
}

// NotJudged returns the specs with a rig fault or cut by an interruption,
// in report order.
func (r *Report) NotJudged() []SpecResult { return r.specsWith(SpecRigFault, SpecInterrupted) }

// PreconditionsUnmet returns the precondition-unmet specs in report order.
func (r *Report) PreconditionsUnmet() []SpecResult { return r.specsWith(SpecPreconditionUnmet) }

// Failed returns the failed specs in report order.
func (r *Report) Failed() []SpecResult { return r.specsWith(SpecFailed) }

// specsWith returns the specs with one of the statuses, in report order.
func (r *Report) specsWith(statuses ...SpecStatus) []SpecResult {
	var out []SpecResult
	for _, s := range r.Specs {
		if slices.Contains(statuses, s.Status) {
			out = append(out, s)
		}
	}
	return out
}

// Areas returns the requirement areas in report order.
func (r *Report) Areas() []string {
	var out []string
	for _, q := range r.Requirements {
		if !slices.Contains(out, q.Area) {
			out = append(out, q.Area)
		}
	}
	// Areas that only specs mention (unmapped IDs) come last, sorted.
	var extra []string
	for _, s := range r.Specs {
		if !slices.Contains(out, s.Area) && !slices.Contains(extra, s.Area) {
			extra = append(extra, s.Area)
		}
	}
	slices.SortFunc(extra, cmp.Compare)
	return append(out, extra...)
}

// JSON encodings: durations are written as fractional milliseconds.

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func fromMs(f float64) time.Duration { return time.Duration(math.Round(f * float64(time.Millisecond))) }

type runMetaJSON RunMeta

// MarshalJSON writes Wall as wallMs.
func (m RunMeta) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		runMetaJSON
		WallMs float64 `json:"wallMs"`
	}{runMetaJSON(m), ms(m.Wall)})
}

// UnmarshalJSON reads wallMs into Wall.
func (m *RunMeta) UnmarshalJSON(b []byte) error {
	var v struct {
		runMetaJSON
		WallMs float64 `json:"wallMs"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*m = RunMeta(v.runMetaJSON)
	m.Wall = fromMs(v.WallMs)
	return nil
}

type specJSON SpecResult

// MarshalJSON writes Duration as durationMs.
func (s SpecResult) MarshalJSON() ([]byte, error) {
	if s.Requirements == nil {
		s.Requirements = []string{}
	}
	return json.Marshal(struct {
		specJSON
		DurationMs float64 `json:"durationMs"`
	}{specJSON(s), ms(s.Duration)})
}

// UnmarshalJSON reads durationMs into Duration.
func (s *SpecResult) UnmarshalJSON(b []byte) error {
	var v struct {
		specJSON
		DurationMs float64 `json:"durationMs"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*s = SpecResult(v.specJSON)
	s.Duration = fromMs(v.DurationMs)
	return nil
}

type wireJSON WireEntry

// MarshalJSON writes Offset as offsetMs.
func (w WireEntry) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		wireJSON
		OffsetMs float64 `json:"offsetMs"`
	}{wireJSON(w), ms(w.Offset)})
}

// UnmarshalJSON reads offsetMs into Offset.
func (w *WireEntry) UnmarshalJSON(b []byte) error {
	var v struct {
		wireJSON
		OffsetMs float64 `json:"offsetMs"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*w = WireEntry(v.wireJSON)
	w.Offset = fromMs(v.OffsetMs)
	return nil
}

type consoleJSON ConsoleLine

// MarshalJSON writes Offset as offsetMs.
func (c ConsoleLine) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		consoleJSON
		OffsetMs float64 `json:"offsetMs"`
	}{consoleJSON(c), ms(c.Offset)})
}

// UnmarshalJSON reads offsetMs into Offset.
func (c *ConsoleLine) UnmarshalJSON(b []byte) error {
	var v struct {
		consoleJSON
		OffsetMs float64 `json:"offsetMs"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*c = ConsoleLine(v.consoleJSON)
	c.Offset = fromMs(v.OffsetMs)
	return nil
}

// collectFacts gathers the specs' facts for the "TLS and clock" section,
// kinds in FactKinds order (unknown kinds last), specs in run order.
func collectFacts(specs []SpecResult) []Fact {
	var out []Fact
	rank := func(kind string) int {
		if i := slices.Index(FactKinds, kind); i >= 0 {
			return i
		}
		return len(FactKinds)
	}
	for _, s := range specs {
		for _, f := range s.Facts {
			f.Spec, f.Requirements = s.Name, s.Requirements
			out = append(out, f)
		}
	}
	slices.SortStableFunc(out, func(a, b Fact) int { return rank(a.Kind) - rank(b.Kind) })
	return out
}

// FactGroup is one topic of the "TLS and clock" section.
type FactGroup struct {
	Kind  string
	Title string
	Facts []Fact
}

var factTitles = map[string]string{
	FactTLS:        "TLS handshake",
	FactRoot:       "Server roots and chains",
	FactTrustStore: "Trust store",
	FactClock:      "Clock behaviour",
	FactQuota:      "Quotas: rates against the device's share",
}

// FactGroups splits TLSClock by kind, in section order.
func (r *Report) FactGroups() []FactGroup {
	var out []FactGroup
	for _, f := range r.TLSClock {
		if n := len(out); n == 0 || out[n-1].Kind != f.Kind {
			title := factTitles[f.Kind]
			if title == "" {
				title = f.Kind
			}
			out = append(out, FactGroup{Kind: f.Kind, Title: title})
		}
		out[len(out)-1].Facts = append(out[len(out)-1].Facts, f)
	}
	return out
}
