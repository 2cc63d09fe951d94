package reports

import (
	"fmt"
	"html/template"
	"strings"
)

// The executive summary of report.html: verdict, board, firmware, SDK,
// counts and a chart of requirements by area and status, drawn as inline
// SVG (no scripts, no external assets), plus the helpers that turn a
// failure into what a quality engineer reads first.

// chartStatuses are the chart's segments, in drawing order.
var chartStatuses = []Status{Pass, Fail, RigFaultStatus, PreconditionUnmet, NotApplicable, NotRun, NotCovered}

var chartColors = map[Status]string{
	Pass: "#1a7f37", Fail: "#cf222e", RigFaultStatus: "#bf8700", PreconditionUnmet: "#8c959f",
	NotApplicable: "#afb8c1", NotRun: "#54aeff", NotCovered: "#eac54f",
}

var statusLabels = map[Status]string{
	Pass: "pass", Fail: "fail", RigFaultStatus: "rig fault (not judged)", PreconditionUnmet: "precondition unmet (not judged)",
	NotApplicable: "not applicable", NotRun: "not run (filtered out)", NotCovered: "not covered by the suite",
}

// shownAreas are the areas report.html and summary.md show (OutsideCloud
// left out), with their summaries.
func (r *Report) shownAreas() []AreaSummary {
	var out []AreaSummary
	for _, a := range r.Summary.Areas {
		if !r.OutsideCloud(a.Area) {
			out = append(out, a)
		}
	}
	return out
}

// ShownCounts counts requirements by status over the shown areas.
func (r *Report) ShownCounts() map[Status]int {
	m := map[Status]int{}
	for _, a := range r.shownAreas() {
		for st, n := range a.Counts {
			m[st] += n
		}
	}
	return m
}

// AreaChartSVG draws one horizontal stacked bar per shown area: its
// requirements by status, on a common scale, with a legend.
func AreaChartSVG(r *Report) template.HTML {
	areas := r.shownAreas()
	const (
		labelW = 70.0
		barW   = 520.0
		rowH   = 22.0
		countW = 60.0
	)
	maxTotal := 1
	for _, a := range areas {
		t := 0
		for _, n := range a.Counts {
			t += n
		}
		maxTotal = max(maxTotal, t)
	}
	legendY := float64(len(areas))*rowH + 14
	h := legendY + 3*rowH
	var b strings.Builder
	fmt.Fprintf(&b, `<svg id="chart" class="chart" role="img" aria-label="Requirements by area and status" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f">`,
		labelW+barW+countW, h, labelW+barW+countW, h)
	for i, a := range areas {
		y := float64(i) * rowH
		fmt.Fprintf(&b, `<g class="bar" data-area="%s"><text x="0" y="%.1f" font-size="12" font-family="monospace">%s</text>`, esc(a.Area), y+15, esc(a.Area))
		x, total := labelW, 0
		for _, st := range chartStatuses {
			n := a.Counts[st]
			if n == 0 {
				continue
			}
			total += n
			w := barW * float64(n) / float64(maxTotal)
			fmt.Fprintf(&b, `<rect class="seg seg-%s" x="%.1f" y="%.1f" width="%.1f" height="%.0f" fill="%s"><title>%s: %d %s</title></rect>`,
				st, x, y+3, w, rowH-6, chartColors[st], esc(a.Area), n, statusLabels[st])
			x += w
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11" fill="#57606a">%d</text></g>`, x+4, y+15, total)
	}
	x := 0.0
	for i, st := range chartStatuses {
		if i%3 == 0 {
			x = 0
		}
		y := legendY + float64(i/3)*rowH
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="10" height="10" fill="%s"/><text x="%.0f" y="%.0f" font-size="11">%s</text>`,
			x, y, chartColors[st], x+14, y+9, statusLabels[st])
		x += 215
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// displayCommand is the run's command as a user would type it: a `go run`
// build path or an absolute path to the binary becomes "hilrun".
func displayCommand(args []string) string {
	if len(args) == 0 {
		return "–"
	}
	out := append([]string{"hilrun"}, args[1:]...)
	for i, a := range out {
		if a == "" || strings.ContainsAny(a, " \t\"'&|;<>") {
			out[i] = fmt.Sprintf("%q", a)
		}
	}
	return strings.Join(out, " ")
}

// displayVersion says what an unstamped build is instead of "dev" or
// "(devel)".
func displayVersion(v string) string {
	switch strings.TrimSpace(v) {
	case "", "dev", "(devel)":
		return "development build (no release version stamped)"
	}
	return v
}

// failureView is a failed spec as report.html shows it.
type failureView struct {
	Anchor   string
	Spec     SpecResult
	Reqs     []RequirementResult // the spec's requirements, catalog text included
	Claim    string
	Evidence string
	Missing  bool // the claim is about something expected and not seen
}

func (v *htmlView) failureViews() []failureView {
	byID := map[string]RequirementResult{}
	for _, q := range v.R.Requirements {
		byID[q.ID] = q
	}
	var out []failureView
	for _, f := range v.Failures {
		fv := failureView{Anchor: f.Anchor, Spec: f.Spec, Claim: Claim(f.Spec.Failure), Evidence: Evidence(f.Spec.Failure)}
		low := strings.ToLower(fv.Claim)
		// Something expected that never came (a wait that ran into its
		// deadline), as opposed to a packet that came wrong.
		fv.Missing = strings.Contains(low, "not seen") || strings.Contains(low, "did not arrive") || strings.Contains(low, "deadline")
		for _, id := range f.Spec.Requirements {
			if q, ok := byID[id]; ok {
				fv.Reqs = append(fv.Reqs, q)
			} else {
				fv.Reqs = append(fv.Reqs, RequirementResult{RequirementRef: RequirementRef{ID: id}})
			}
		}
		out = append(out, fv)
	}
	return out
}

// wrongEntry marks the hub's own findings in a failure's wire excerpt: a
// rule the device broke, a tolerated deviation, a failed handshake,
// plaintext on a TLS port.
func wrongEntry(e WireEntry) bool {
	if e.Dir != DirEvent {
		return false
	}
	switch e.Type {
	case "violation", "warning", "tls-failed", "plaintext":
		return true
	}
	return false
}

// FoldPEM replaces each PEM block in s by a one-line placeholder naming
// its type and size: a console line or a configure frame carrying a
// certificate stays readable (private keys are redacted before this).
func FoldPEM(s string) string {
	for {
		i := strings.Index(s, "-----BEGIN ")
		if i < 0 {
			return s
		}
		rest := s[i+len("-----BEGIN "):]
		j := strings.Index(rest, "-----")
		if j < 0 {
			return s
		}
		kind := rest[:j]
		endMark := "-----END " + kind + "-----"
		k := strings.Index(rest, endMark)
		if k < 0 {
			return s
		}
		block := s[i : i+len("-----BEGIN ")+k+len(endMark)]
		s = s[:i] + fmt.Sprintf("[%s, %d bytes, folded]", strings.ToLower(kind), len(block)) + s[i+len(block):]
	}
}
