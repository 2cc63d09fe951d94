package main

import (
	"fmt"
	"io"

	"github.com/hilrun/hilrun/reports"
)

// printSelection says, before the verdict line, that a run was a
// selection of the suite and what it left out, or that it judged nothing.
func printSelection(w io.Writer, rep *reports.Report) {
	if rep.Outcome() == reports.OutcomeNoSpecs {
		fmt.Fprintf(w, "NO SPEC RUN: %s\n", rep.NoSpecsReason())
		return
	}
	if !rep.Filtered() {
		return
	}
	fmt.Fprintf(w, "filtered run (%s): %d specs selected; %d requirements not run (filtered out), not a whole-suite verdict\n",
		rep.Selection(), len(rep.Specs), rep.Summary.Requirements[reports.NotRun])
}

// printRequirementCounts is the summary's requirements line.
func printRequirementCounts(w io.Writer, s reports.Summary) {
	r := s.Requirements
	fmt.Fprintf(w, "requirements: %d pass, %d fail, %d rig fault (not judged), %d precondition unmet (not judged), %d not applicable, %d not run (filtered out), %d not covered\n",
		r[reports.Pass], r[reports.Fail], r[reports.RigFaultStatus], r[reports.PreconditionUnmet], r[reports.NotApplicable], r[reports.NotRun], r[reports.NotCovered])
}
