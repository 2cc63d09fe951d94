package reports

import (
	"fmt"
	"slices"
	"strings"
)

// A sharded run splits one suite across several identical boards, one
// child run per board (shard), and joins their reports into one report of
// the same shape as a single-board run: the specs in the order one board
// would have run them, each naming the shard that ran it
// (SpecResult.Board), the requirement rows and the summary derived from
// all of them as Build derives them.

// ShardPart is one shard's contribution to a sharded run.
type ShardPart struct {
	ID string // shard name: "shard-2", or the board id of a pool board
	// Specs are the names of the specs the shard was given.
	Specs []string
	// Report is the shard's own report; nil when its run left none.
	Report *Report
	Dir    string // the shard's report directory
	// Missing says why Report is nil (the child's exit status and last
	// output), for the run's rig-fault reason.
	Missing string
	// Interrupted: the whole sharded run was interrupted while this
	// shard ran; a missing report is then an interruption, not a rig
	// fault.
	Interrupted bool
}

// MergeShards joins the shards' reports. meta is the sharded run's own
// (started, finished, command …); its Shards, Interrupted, InterruptReason
// and RigFault are filled in from the parts. order lists every spec name of
// the run in run order (the order one board runs them); a spec given to a
// shard that did not report it (its board never came up, the run was cut,
// the child died) is not-run, with the reason.
func MergeShards(meta RunMeta, refs []RequirementRef, order []string, parts []ShardPart) *Report {
	byName := map[string]SpecResult{}
	var board BoardInfo
	var ports, interrupts, rigFaults []string
	var faults []RigFaultEvent
	haveBoard := false
	meta.Shards = nil
	for _, p := range parts {
		sr := ShardRun{ID: p.ID, Dir: p.Dir, Specs: len(p.Specs)}
		given := map[string]bool{}
		for _, n := range p.Specs {
			given[n] = true
		}
		notRunReason := ""
		if p.Report == nil {
			sr.Outcome = OutcomeRigFault
			sr.Note = firstLine(p.Missing)
			if p.Interrupted {
				sr.Outcome = OutcomeInterrupted
				interrupts = append(interrupts, fmt.Sprintf("%s: interrupted before it reported", p.ID))
				notRunReason = "run interrupted"
			} else {
				rigFaults = append(rigFaults, fmt.Sprintf("%s: %s", p.ID, orNone(p.Missing)))
				notRunReason = fmt.Sprintf("rig fault on %s: %s", p.ID, firstLine(orNone(p.Missing)))
			}
		} else {
			r := p.Report
			sr.Board, sr.Wall, sr.Outcome = r.Board, r.Run.Wall, r.Outcome()
			if !haveBoard {
				board, haveBoard = r.Board, true
			}
			if r.Board.Port != "" {
				ports = append(ports, r.Board.Port)
			}
			if reason, ok := r.runRigFault(); ok {
				rigFaults = append(rigFaults, fmt.Sprintf("%s: %s", p.ID, orNone(reason)))
				sr.Note = firstLine(orNone(reason))
				notRunReason = fmt.Sprintf("rig fault on %s: %s", p.ID, firstLine(orNone(reason)))
			}
			if r.Run.Interrupted {
				interrupts = append(interrupts, fmt.Sprintf("%s: %s", p.ID, orNone(r.Run.InterruptReason)))
				if sr.Note == "" {
					sr.Note = "interrupted: " + firstLine(orNone(r.Run.InterruptReason))
				}
				if notRunReason == "" {
					notRunReason = "run interrupted"
				}
			}
			for _, s := range r.Specs {
				s.Board = p.ID
				// A shard runs only what it was given; anything else
				// (a shard of an older hilrun ignoring the list) is
				// kept only if no other shard reported it.
				if _, dup := byName[s.Name]; dup && !given[s.Name] {
					continue
				}
				byName[s.Name] = s
			}
			for _, f := range r.RigFaults {
				f.Message = p.ID + ": " + f.Message
				faults = append(faults, f)
			}
		}
		if notRunReason == "" {
			notRunReason = fmt.Sprintf("%s ended without running it", p.ID)
		}
		for _, n := range p.Specs {
			if _, ok := byName[n]; !ok {
				byName[n] = SpecResult{Name: n, Status: SpecNotRun, Failure: notRunReason, Board: p.ID}
			}
		}
		meta.Shards = append(meta.Shards, sr)
	}
	// Requirements of not-run placeholders come from the spec's name
	// ("text [REQ-1,REQ-2]"), the way Conformance writes it.
	var specs []SpecResult
	seen := map[string]bool{}
	for _, n := range order {
		s, ok := byName[n]
		if !ok || seen[n] {
			continue
		}
		seen[n] = true
		if len(s.Requirements) == 0 {
			s.Requirements = RequirementsInName(n)
		}
		specs = append(specs, s)
	}
	// Specs a shard reported that the order does not name go last, in
	// shard order.
	for _, p := range parts {
		if p.Report == nil {
			continue
		}
		for _, s := range p.Report.Specs {
			if !seen[s.Name] {
				seen[s.Name] = true
				specs = append(specs, byName[s.Name])
			}
		}
	}
	slices.SortStableFunc(faults, func(a, b RigFaultEvent) int { return a.At.Compare(b.At) })
	if len(ports) > 0 {
		board.Port = strings.Join(ports, ", ")
	}
	if len(interrupts) > 0 {
		meta.Interrupted = true
		meta.InterruptReason = strings.Join(interrupts, "; ")
	}
	if len(rigFaults) > 0 {
		meta.RigFault = strings.Join(rigFaults, "; ")
	}
	return BuildWithFaults(meta, board, refs, specs, faults)
}

// RequirementsInName reads the requirement IDs from a spec name of the
// form "text [ID,ID]".
func RequirementsInName(name string) []string {
	i := strings.LastIndexByte(name, '[')
	if i < 0 || !strings.HasSuffix(name, "]") {
		return nil
	}
	var ids []string
	for _, id := range strings.Split(name[i+1:len(name)-1], ",") {
		if id = strings.TrimSpace(id); id != "" {
			ids = append(ids, id)
		}
	}
	return ids
}
