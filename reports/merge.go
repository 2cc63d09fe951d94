package reports

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// A merged report is the conformance report of several runs — several
// boards of one pool, or runs of several hosts — in one place: a section per
// board (who it is, where it ran, its verdict and counts, its specs) and a
// requirement × board matrix. It is written by `hilrun report merge` and by
// `hilrun run --pool`, into a directory holding
//
//	merged.json   the machine-readable merged report (schema in SCHEMA.md)
//	report.html   a self-contained page: boards, matrix, failures per board
//	junit.xml     one testsuite per board
//	summary.md    Markdown for a CI step summary
//
// A board whose run never got to judge the firmware (no hello after reset,
// port missing, flashing failed) is a rig fault, not a conformance failure:
// see RigFault.

// MergedSchemaVersion is the merged.json schema version.
const MergedSchemaVersion = 1

// MergedJSONFile is the merged report's file name.
const MergedJSONFile = "merged.json"

// Board verdicts in a merged report (and the merged verdict).
const (
	BoardPass        = "pass"
	BoardFail        = "fail"
	BoardRigFault    = "rig-fault"
	BoardInterrupted = "interrupted"
)

// BoardVerdicts lists the board verdicts in precedence order (the merged
// verdict is the first one any board has).
var BoardVerdicts = []string{BoardFail, BoardInterrupted, BoardRigFault, BoardPass}

// Interrupt reason prefixes that marked, in reports of schema version 1, a
// run that never reached the specs because the rig failed ("environment:
// …" from suites.Run, "rig fault: …" from the pool). Version 2 reports
// say so in run.rigFault instead.
var rigFaultPrefixes = []string{"rig fault:", "environment:"}

// RigFault reports whether a run's outcome is a rig fault and why: the rig
// ended the run or never let it start (the board did not come up, stopped
// responding and did not recover), or a rig fault touched a spec, and no
// requirement failed and the run was not interrupted (Report.Outcome).
// Such a run says nothing wrong about the firmware.
func RigFault(r *Report) (reason string, ok bool) {
	if r.Outcome() != OutcomeRigFault {
		return "", false
	}
	return r.RigFaultReason(), true
}

// MergeInput is one run to merge.
type MergeInput struct {
	// Path is where the report was read from (shown as the board's source).
	Path string
	// ID is the board's id; default: the name of the directory holding
	// the report (`hilrun run --pool` writes <out>/<board id>/report.json).
	ID string
	// Report is the run's report; nil only with RigFault set (the run left
	// no report).
	Report *Report
	// RigFault, when set, makes the board a rig fault whatever its report
	// says (e.g. the run exited with the rig-fault status).
	RigFault string
	// Profile is shown when the report does not name one (a run that left
	// no report).
	Profile string
}

// MergedBoard is one board's section of a merged report.
type MergedBoard struct {
	ID          string        `json:"id"`
	Host        string        `json:"host"`
	Profile     string        `json:"profile"`
	Port        string        `json:"port,omitempty"`
	Firmware    FirmwareHello `json:"firmware"`
	Source      string        `json:"source,omitempty"` // the report.json it came from
	RunID       string        `json:"runId,omitempty"`
	Started     time.Time     `json:"started"`
	Finished    time.Time     `json:"finished"`
	WallMs      float64       `json:"wallMs"`
	Version     string        `json:"hilrunVersion,omitempty"`
	HubVersion  string        `json:"hubVersion,omitempty"`
	Strict      bool          `json:"strict"`
	LabelFilter string        `json:"labelFilter,omitempty"`
	Defects     []string      `json:"defects,omitempty"`
	// Verdict is pass, fail, interrupted or rig-fault (the run's Outcome).
	Verdict string `json:"verdict"`
	// Why lists the reasons for fail (the run's own Verdict reasons) or
	// the rig fault.
	Why []string `json:"why,omitempty"`
	// RigFault is the rig fault's reason (set only for rig-fault).
	RigFault     string             `json:"rigFault,omitempty"`
	Requirements map[Status]int     `json:"requirements"`
	SpecCounts   map[SpecStatus]int `json:"specCounts"`
	// Specs are the board's spec results, as in its report.json.
	Specs []SpecResult `json:"specs"`
	// TLSClock is the board's "TLS and clock" section, as in its report.json.
	TLSClock []Fact `json:"tlsClock,omitempty"`

	// forced: the exit status made the board a rig fault though its report
	// judged requirements; those judgements are not shown.
	forced bool
}

// MatrixRow is one requirement across the boards.
type MatrixRow struct {
	RequirementRef
	// Statuses has one entry per board, in Boards order; "" when that
	// board's run did not know the requirement (another catalog version).
	// A board whose run never reached the specs has not-covered entries.
	Statuses []Status `json:"statuses"`
}

// MergedSummary is the merged roll-up.
type MergedSummary struct {
	// Verdict is fail when any board failed, else interrupted when any
	// board's run was interrupted, else rig-fault when any board had a rig
	// fault, else pass.
	Verdict string         `json:"verdict"`
	Boards  map[string]int `json:"boards"` // boards per verdict
	Why     []string       `json:"why,omitempty"`
}

// Merged is a merged conformance report.
type Merged struct {
	SchemaVersion       int           `json:"schemaVersion"`
	ReportSchemaVersion int           `json:"reportSchemaVersion"` // schemaVersion of the merged report.json files
	Created             time.Time     `json:"created"`
	Version             string        `json:"hilrunVersion"` // the hilrun that merged
	Boards              []MergedBoard `json:"boards"`
	Requirements        []MatrixRow   `json:"requirements"`
	Summary             MergedSummary `json:"summary"`
	// Warnings note things a reader should know (boards that ran different
	// hilrun versions, catalogs or label filters; boards not started).
	Warnings []string `json:"warnings,omitempty"`
}

// MergeOptions configure Merge.
type MergeOptions struct {
	Version  string    // hilrun version doing the merge
	Created  time.Time // default now
	Warnings []string  // extra warnings to record
}

// Merge merges runs into one report. Boards keep the inputs' order. Board
// ids must be unique; the same id from two hosts becomes "id@host".
func Merge(inputs []MergeInput, o MergeOptions) (*Merged, error) {
	if len(inputs) == 0 {
		return nil, errors.New("nothing to merge: no report.json given or found")
	}
	m := &Merged{SchemaVersion: MergedSchemaVersion, ReportSchemaVersion: SchemaVersion, Created: o.Created, Version: o.Version,
		Boards: []MergedBoard{}, Requirements: []MatrixRow{}, Warnings: slices.Clone(o.Warnings)}
	if m.Created.IsZero() {
		m.Created = time.Now().UTC()
	}
	var reps []*Report
	for _, in := range inputs {
		if in.Report != nil && !schemaReadable(in.Report.SchemaVersion) {
			return nil, schemaError(in.Path, in.Report.SchemaVersion, in.Report.Run.Version)
		}
		if in.Report == nil && in.RigFault == "" {
			return nil, fmt.Errorf("merge: %s: no report", orDash(in.Path))
		}
		b, rep := mergedBoard(in)
		m.Boards = append(m.Boards, b)
		reps = append(reps, rep)
	}
	if err := uniqueIDs(m.Boards); err != nil {
		return nil, err
	}

	// Matrix rows: the union of the runs' requirements, in the order they
	// first appear (the catalog order when every run used one catalog).
	rowOf := map[string]int{}
	for bi, r := range reps {
		for _, q := range r.Requirements {
			i, ok := rowOf[q.ID]
			if !ok {
				i = len(m.Requirements)
				rowOf[q.ID] = i
				m.Requirements = append(m.Requirements, MatrixRow{RequirementRef: q.RequirementRef, Statuses: make([]Status, len(reps))})
			}
			st := q.Status
			if m.Boards[bi].forced {
				st = NotCovered
			}
			m.Requirements[i].Statuses[bi] = st
		}
	}
	// A run that left no report (rig fault) has no requirement list: every
	// requirement is not covered on it.
	for bi, r := range reps {
		if len(r.Requirements) == 0 && m.Boards[bi].Verdict == BoardRigFault {
			for i := range m.Requirements {
				m.Requirements[i].Statuses[bi] = NotCovered
			}
		}
	}
	m.Warnings = append(m.Warnings, mergeWarnings(m, reps)...)
	m.Summary = m.summarize()
	return m, nil
}

func schemaError(path string, got int, version string) error {
	if version == "" {
		version = "unknown"
	}
	return fmt.Errorf("cannot merge %s: its report schemaVersion is %d, this hilrun reads schemaVersion %d to %d; "+
		"merge with the hilrun that wrote it (hilrunVersion %s) or re-run that board with this one", path, got, MinSchemaVersion, SchemaVersion, version)
}

func mergedBoard(in MergeInput) (MergedBoard, *Report) {
	r := in.Report
	if r == nil {
		r = &Report{SchemaVersion: SchemaVersion}
	} else {
		r = r.Redacted()
	}
	id := in.ID
	if id == "" && in.Path != "" {
		p := in.Path
		if filepath.Base(p) == JSONFile {
			p = filepath.Dir(p)
		}
		id = filepath.Base(filepath.Clean(p))
	}
	if id == "" || id == "." || id == string(filepath.Separator) {
		id = orDash(r.Board.Profile)
	}
	b := MergedBoard{
		ID: id, Host: r.Run.Host, Profile: r.Board.Profile, Port: r.Board.Port, Firmware: r.Board.Firmware,
		Source: in.Path, RunID: r.Run.ID, Started: r.Run.Started, Finished: r.Run.Finished, WallMs: ms(r.Run.Wall),
		Version: r.Run.Version, HubVersion: r.Run.HubVersion, Strict: r.Run.Strict, LabelFilter: r.Run.LabelFilter,
		Defects: r.Run.Defects, Requirements: map[Status]int{}, SpecCounts: map[SpecStatus]int{}, Specs: r.Specs, TLSClock: r.TLSClock,
	}
	if b.Profile == "" {
		b.Profile = in.Profile
	}
	if b.Specs == nil {
		b.Specs = []SpecResult{}
	}
	for _, st := range Statuses {
		b.Requirements[st] = 0
	}
	for _, st := range SpecStatuses {
		b.SpecCounts[st] = 0
	}
	for _, s := range r.Specs {
		b.SpecCounts[s.Status]++
	}
	outcome := r.Outcome()
	reason := r.RigFaultReason()
	if in.RigFault != "" && (outcome == OutcomePass || outcome == OutcomeNoSpecs) {
		// The run's exit status said rig fault though its report shows
		// nothing: trust the exit status.
		outcome, reason, b.forced = OutcomeRigFault, Redact(in.RigFault), true
	}
	_, why := r.Verdict()
	switch outcome {
	case OutcomeRigFault:
		b.Verdict, b.RigFault = BoardRigFault, orDash(reason)
		b.Why = why
		if len(b.Why) == 0 {
			b.Why = []string{"rig fault: " + b.RigFault}
		}
	case OutcomePass:
		b.Verdict = BoardPass
	case OutcomeInterrupted:
		b.Verdict, b.Why = BoardInterrupted, why
	default:
		b.Verdict, b.Why = BoardFail, why
	}
	for _, q := range r.Requirements {
		st := q.Status
		if b.forced {
			st = NotCovered
		}
		b.Requirements[st]++
	}
	return b, r
}

func uniqueIDs(boards []MergedBoard) error {
	count := map[string]int{}
	for _, b := range boards {
		count[b.ID]++
	}
	seen := map[string]string{} // final id → source
	for i := range boards {
		b := &boards[i]
		if count[b.ID] > 1 && b.Host != "" {
			b.ID = b.ID + "@" + b.Host
		}
		if prev, dup := seen[b.ID]; dup {
			return fmt.Errorf("cannot merge: board %q appears twice (%s and %s)%s; merge one run per board and host",
				b.ID, orDash(prev), orDash(b.Source), hostNote(b.Host))
		}
		seen[b.ID] = b.Source
	}
	return nil
}

func hostNote(h string) string {
	if h == "" {
		return ""
	}
	return ", both from host " + h
}

func mergeWarnings(m *Merged, reps []*Report) []string {
	var w []string
	distinct := func(name string, get func(MergedBoard) string) {
		vals := map[string][]string{}
		var order []string
		for _, b := range m.Boards {
			if b.Verdict == BoardRigFault && b.RunID == "" {
				continue
			}
			v := get(b)
			if _, ok := vals[v]; !ok {
				order = append(order, v)
			}
			vals[v] = append(vals[v], b.ID)
		}
		if len(order) < 2 {
			return
		}
		var parts []string
		for _, v := range order {
			parts = append(parts, fmt.Sprintf("%s (%s)", orDash(v), strings.Join(vals[v], ", ")))
		}
		w = append(w, fmt.Sprintf("boards ran with different %s: %s", name, strings.Join(parts, "; ")))
	}
	distinct("hilrun versions", func(b MergedBoard) string { return b.Version })
	distinct("label filters", func(b MergedBoard) string { return b.LabelFilter })
	distinct("timings (strict)", func(b MergedBoard) string { return fmt.Sprint(b.Strict) })
	for bi, r := range reps {
		if len(r.Requirements) == 0 {
			continue
		}
		missing := 0
		for _, row := range m.Requirements {
			if row.Statuses[bi] == "" {
				missing++
			}
		}
		if missing > 0 {
			w = append(w, fmt.Sprintf("board %s's run did not know %d of the %d requirements (another catalog version): shown as —", m.Boards[bi].ID, missing, len(m.Requirements)))
		}
	}
	return w
}

func (m *Merged) summarize() MergedSummary {
	s := MergedSummary{Boards: map[string]int{}, Verdict: BoardPass}
	for _, v := range BoardVerdicts {
		s.Boards[v] = 0
	}
	for _, b := range m.Boards {
		s.Boards[b.Verdict]++
		switch b.Verdict {
		case BoardFail, BoardInterrupted, BoardRigFault:
			for _, why := range b.Why {
				s.Why = append(s.Why, b.ID+": "+why)
			}
		}
	}
	for _, v := range BoardVerdicts {
		if s.Boards[v] > 0 {
			s.Verdict = v
			break
		}
	}
	return s
}

// Column returns the index of the board with the given id, or -1.
func (m *Merged) Column(id string) int {
	return slices.IndexFunc(m.Boards, func(b MergedBoard) bool { return b.ID == id })
}

// LoadForMerge reads a report.json for merging. Unlike Load it names the
// fix when the schema version differs, and it recognises a merged.json.
func LoadForMerge(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("merge: %w", err)
	}
	return parseForMerge(b, path)
}

func parseForMerge(b []byte, path string) (*Report, error) {
	var head struct {
		SchemaVersion *int            `json:"schemaVersion"`
		Boards        json.RawMessage `json:"boards"`
		Run           struct {
			Version string `json:"hilrunVersion"`
		} `json:"run"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, fmt.Errorf("merge: %s is not a hilrun report.json: %v", path, err)
	}
	switch {
	case head.Boards != nil:
		return nil, fmt.Errorf("merge: %s is a merged report; give the directories holding the per-board report.json files instead (they are searched recursively)", path)
	case head.SchemaVersion == nil:
		return nil, fmt.Errorf("merge: %s is not a hilrun report.json (no schemaVersion)", path)
	case !schemaReadable(*head.SchemaVersion):
		return nil, schemaError(path, *head.SchemaVersion, head.Run.Version)
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("merge: %s: %w", path, err)
	}
	return &r, nil
}

// FindReports expands paths into report.json files: a file is taken as
// is; a directory is searched recursively (sorted, so the merge order is
// stable), which suits a directory of downloaded CI artifacts. Directories
// named in skip (e.g. the merge's own output) are not searched.
func FindReports(paths []string, skip ...string) ([]string, error) {
	var out []string
	skipAbs := map[string]bool{}
	for _, s := range skip {
		if a, err := filepath.Abs(s); err == nil {
			skipAbs[a] = true
		}
	}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("merge: %w", err)
		}
		if !st.IsDir() {
			out = append(out, p)
			continue
		}
		var found []string
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if a, aerr := filepath.Abs(path); aerr == nil && skipAbs[a] && path != p {
					return filepath.SkipDir
				}
				return nil
			}
			if d.Name() == JSONFile {
				found = append(found, path)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("merge: %w", err)
		}
		if len(found) == 0 {
			return nil, fmt.Errorf("merge: no %s under %s (give run directories, report.json files, or a directory holding them)", JSONFile, p)
		}
		sort.Strings(found)
		out = append(out, found...)
	}
	return out, nil
}

// MergeFiles loads report.json files (after FindReports) and merges them,
// reporting every file with the wrong schema version at once.
func MergeFiles(paths []string, o MergeOptions) (*Merged, error) {
	var inputs []MergeInput
	var errs []error
	for _, p := range paths {
		r, err := LoadForMerge(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		inputs = append(inputs, MergeInput{Path: p, Report: r})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return Merge(inputs, o)
}

// WriteMerged writes merged.json, report.html, junit.xml and summary.md
// into dir (created).
func WriteMerged(dir string, m *Merged) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("reports: %w", err)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("reports: encode %s: %w", MergedJSONFile, err)
	}
	errJSON := writeFile(filepath.Join(dir, MergedJSONFile), append(b, '\n'))
	return errors.Join(errJSON, RenderMerged(dir, m))
}

// RenderMerged regenerates report.html, junit.xml and summary.md from m.
func RenderMerged(dir string, m *Merged) error {
	var errs []error
	for _, f := range []struct {
		name string
		gen  func(*bytes.Buffer, *Merged, string) error
	}{
		{JUnitFile, writeMergedJUnit},
		{HTMLFile, writeMergedHTML},
		{MarkdownFile, writeMergedMarkdown},
	} {
		var buf bytes.Buffer
		if err := f.gen(&buf, m, dir); err != nil {
			errs = append(errs, fmt.Errorf("reports: render %s: %w", f.name, err))
			continue
		}
		errs = append(errs, writeFile(filepath.Join(dir, f.name), buf.Bytes()))
	}
	return errors.Join(errs...)
}

// LoadMerged reads a merged.json (path may be its directory).
func LoadMerged(path string) (*Merged, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, MergedJSONFile)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reports: %w", err)
	}
	var m Merged
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("reports: %s: %w", path, err)
	}
	if m.SchemaVersion != MergedSchemaVersion {
		return nil, fmt.Errorf("reports: %s: merged schemaVersion %d, this hilrun reads %d", path, m.SchemaVersion, MergedSchemaVersion)
	}
	return &m, nil
}

// reportLink is the per-board report.html relative to the merged report's
// directory, when it exists.
func reportLink(dir string, b MergedBoard) string {
	if b.Source == "" || dir == "" {
		return ""
	}
	h := filepath.Join(filepath.Dir(b.Source), HTMLFile)
	if _, err := os.Stat(h); err != nil {
		return ""
	}
	absDir, err1 := filepath.Abs(dir)
	absH, err2 := filepath.Abs(h)
	if err1 != nil || err2 != nil {
		return ""
	}
	rel, err := filepath.Rel(absDir, absH)
	if err != nil {
		return ""
	}
	return filepath.ToSlash(rel)
}
