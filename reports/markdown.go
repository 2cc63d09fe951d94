package reports

import (
	"bytes"
	"fmt"
	"strings"
)

// writeMarkdown renders the GitHub Actions step summary. GitHub renders
// HTML inside step summaries, so every report-supplied text is escaped.
func writeMarkdown(buf *bytes.Buffer, r *Report) error {
	ok, why := r.Verdict()
	outcome := r.Outcome()
	verdict := map[Outcome]string{OutcomePass: "✅", OutcomeFail: "❌", OutcomeRigFault: "⚠️", OutcomeInterrupted: "⏹️", OutcomeNoSpecs: "⛔"}[outcome] + " **" + outcome.Label() + "**"
	if r.Filtered() {
		verdict += " (filtered run)"
	}
	fmt.Fprintf(buf, "## hilrun conformance: %s\n\n", verdict)
	fmt.Fprintf(buf, "%s · wall time %s · run `%s`\n\n", md(BoardLine(r)), fmtWall(r.Run.Wall), mdCode(r.Run.ID))
	if name := CloudName(r.Run.Cloud); name != "" {
		fmt.Fprintf(buf, "Judged against: %s\n\n", md(name))
	}
	if r.Filtered() {
		fmt.Fprintf(buf, "> **Filtered run** (%s): %d specs selected; %d requirements not run (filtered out). Not a whole-suite verdict.\n\n",
			md(r.Selection()), len(r.Specs), r.Summary.Requirements[NotRun])
	}
	if outcome == OutcomeNoSpecs {
		fmt.Fprintf(buf, "> **No spec ran:** %s\n\n", md(r.NoSpecsReason()))
	}
	if n := len(r.Run.Shards); n > 0 {
		var parts []string
		for _, s := range r.Run.Shards {
			parts = append(parts, fmt.Sprintf("%s %d specs %s", md(s.ID), s.Specs, s.Outcome.Label()))
		}
		fmt.Fprintf(buf, "Sharded across %d boards: %s.\n\n", n, strings.Join(parts, ", "))
	}
	if r.Run.Interrupted {
		fmt.Fprintf(buf, "> **Run interrupted:** %s\n\n", md(r.Run.InterruptReason))
	}
	if reason, rig := r.runRigFault(); rig {
		fmt.Fprintf(buf, "> **Rig fault ended the run:** %s — not a verdict on the firmware.\n\n", md(orNone(reason)))
	}
	c := r.Summary.Requirements
	sc := r.Summary.Specs
	if _, rig := r.runRigFault(); rig && len(r.Specs) == 0 {
		buf.WriteString("No requirement was judged: the run ended before the first spec.\n\n")
	} else {
		fmt.Fprintf(buf, "Requirements: %d pass, %d fail, %d rig fault (not judged), %d precondition unmet (not judged), %d not applicable, %d not run (filtered out), %d not covered. Specs: %d passed, %d failed, %d rig fault, %d interrupted, %d not run, %d precondition unmet, %d skipped, %d not applicable.\n\n",
			c[Pass], c[Fail], c[RigFaultStatus], c[PreconditionUnmet], c[NotApplicable], c[NotRun], c[NotCovered],
			sc[SpecPassed], sc[SpecFailed], sc[SpecRigFault], sc[SpecInterrupted], sc[SpecNotRun], sc[SpecPreconditionUnmet], sc[SpecSkipped], sc[SpecNotApplicable])
	}

	if _, rig := r.runRigFault(); !rig || len(r.Specs) > 0 {
		buf.WriteString("| Area | MUST passed / covered / total | pass | fail | rig fault | n/a | not run | not covered |\n")
		buf.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, a := range r.Summary.Areas {
			if r.OutsideCloud(a.Area) {
				continue
			}
			fmt.Fprintf(buf, "| %s | %d / %d / %d | %d | %d | %d | %d | %d | %d |\n", md(a.Area),
				a.MustPassed, a.MustCovered, a.Must,
				a.Counts[Pass], a.Counts[Fail], a.Counts[RigFaultStatus], a.Counts[NotApplicable], a.Counts[NotRun], a.Counts[NotCovered])
		}
		buf.WriteByte('\n')
	}
	if nj := r.NotJudged(); len(nj) > 0 || len(r.RigFaults) > 0 {
		buf.WriteString("### Rig faults and interruptions (not verdicts on the firmware)\n\n")
		for _, s := range nj {
			what := firstLine(s.RigFault)
			if s.Status == SpecInterrupted {
				what = firstLine(orNone(s.Failure))
			}
			fmt.Fprintf(buf, "- %s **%s** — %s\n", md(string(s.Status)), md(s.Name), md(what))
		}
		for _, f := range r.RigFaults {
			if f.Spec == "" {
				fmt.Fprintf(buf, "- rig fault outside any spec at %s: %s\n", f.At.UTC().Format("15:04:05.000"), md(f.Message))
			}
		}
		buf.WriteByte('\n')
	}

	if pu := r.PreconditionsUnmet(); len(pu) > 0 {
		buf.WriteString("### Preconditions not met (not judged)\n\n")
		for _, s := range pu {
			fmt.Fprintf(buf, "- **%s** (%s) — %s\n", md(s.Name), md(strings.Join(s.Requirements, ", ")), md(firstLine(orNone(s.Failure))))
		}
		buf.WriteByte('\n')
	}

	var failing []RequirementResult
	for _, q := range r.Requirements {
		if q.Status == Fail {
			failing = append(failing, q)
		}
	}
	if len(failing) > 0 {
		buf.WriteString("### Failing requirements\n\n")
		for _, q := range failing {
			cov := ""
			if q.Coverage != nil {
				cov = " (" + q.Coverage.Label() + ")"
			}
			fmt.Fprintf(buf, "- **%s** (%s) %s%s — %s\n", md(q.ID), md(q.Severity), md(q.Title), md(cov), md(firstFailure(q.Specs)))
		}
		buf.WriteByte('\n')
	}
	if !ok && len(failing) == 0 && len(why) > 0 && outcome == OutcomeFail {
		buf.WriteString("### Why the run failed\n\n")
		for _, w := range why {
			fmt.Fprintf(buf, "- %s\n", md(w))
		}
		buf.WriteByte('\n')
	}
	if groups := r.FactGroups(); len(groups) > 0 {
		buf.WriteString("### TLS and clock\n\n| Topic | Fact | Observed |\n|---|---|---|\n")
		for _, g := range groups {
			for _, f := range g.Facts {
				mark := ""
				if !f.Good {
					mark = "❌ "
				}
				fmt.Fprintf(buf, "| %s | %s | %s%s |\n", md(g.Title), md(f.Name), mark, md(f.Value))
			}
		}
		buf.WriteByte('\n')
	}
	if cov := r.CoverageByArea(); len(cov) > 0 {
		buf.WriteString("### Dimension coverage (the suite's, not this run's)\n\n| Area | requirements | dimensions | covered | partial | gaps | MUSTs on a single example |\n|---|---:|---:|---:|---:|---:|---|\n")
		for _, a := range cov {
			fmt.Fprintf(buf, "| %s | %d | %d | %d | %d | %d | %s |\n", md(a.Area), a.Requirements, a.Dimensions, a.Covered, a.Partial, a.Gaps, md(orDash(strings.Join(a.SingleExample, ", "))))
		}
		buf.WriteByte('\n')
	}
	if len(r.Summary.Unmapped) > 0 {
		buf.WriteString("### Specs naming unknown requirement IDs\n\n")
		for _, u := range r.Summary.Unmapped {
			fmt.Fprintf(buf, "- %s\n", md(u))
		}
		buf.WriteByte('\n')
	}
	buf.WriteString("Full report: `report.html` (artifact), machine-readable `report.json`, `junit.xml`.\n")
	return nil
}

var mdEscaper = strings.NewReplacer(
	"&", "&amp;", "<", "&lt;", ">", "&gt;", "|", "\\|", "`", "\\`", "*", "\\*", "_", "\\_",
	"[", "\\[", "]", "\\]", "\r", " ", "\n", " ",
)

// md escapes text for a single Markdown line or table cell.
func md(s string) string { return mdEscaper.Replace(s) }

// mdCode makes s safe inside a `code span`.
func mdCode(s string) string {
	return strings.NewReplacer("`", "'", "\n", " ", "\r", " ").Replace(s)
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}
