package reports

import (
	"fmt"
	"html/template"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MarkKind is the kind of a reconnection-timeline mark.
type MarkKind string

// Timeline mark kinds.
const (
	MarkConnect   MarkKind = "connect"   // the device sent CONNECT
	MarkConnack   MarkKind = "connack"   // the hub answered CONNACK (RC)
	MarkRejected  MarkKind = "rejected"  // the hub refused the CONNECT (conn-rejected)
	MarkClosed    MarkKind = "closed"    // a connection ended (conn-closed)
	MarkFault     MarkKind = "fault"     // fault injection or a violation cut in (fault, violation)
	MarkConnected MarkKind = "connected" // a span: from CONNACK 0 to the close
)

// TimelineMark is one mark of a reconnection timeline. Offsets are the wire
// excerpt's (since the spec started).
type TimelineMark struct {
	Kind MarkKind
	At   time.Duration
	End  time.Duration // MarkConnected: where the span ends
	RC   int           // MarkConnack: the return code, -1 when unknown
	// Open marks a MarkConnected span that the excerpt cuts: it was still
	// up at the excerpt's end, or was already up at its start.
	Open bool
	Text string // what happened, for tooltips (type and note)
}

var rcPattern = regexp.MustCompile(`(?:^|[\s\[(])rc[ =]([0-9]+)\b`)

// connackRC reads a CONNACK's return code from its note ("rc 5 …") or
// flags ("rc=5"); -1 when neither has one.
func connackRC(e WireEntry) int {
	for _, s := range []string{e.Note, e.Flags} {
		if m := rcPattern.FindStringSubmatch(s); m != nil {
			if n, err := strconv.Atoi(m[1]); err == nil {
				return n
			}
		}
	}
	return -1
}

// ConnectCount counts the device's CONNECT packets in a wire excerpt.
func ConnectCount(wire []WireEntry) int {
	n := 0
	for _, e := range wire {
		if e.Dir == DirIn && e.Type == "CONNECT" {
			n++
		}
	}
	return n
}

// Timeline derives the reconnection timeline of a wire excerpt: a mark per
// CONNECT, CONNACK, refusal, close and fault, and a "connected" span from
// each CONNACK 0 to the close of that connection. Marks come in excerpt
// order; each span is placed where its CONNACK 0 is.
//
// Connections are not identified in a WireEntry, so the spans follow the
// order of events: a close ends the open span. Two cases are special: a
// CONNACK 0 while a span is open ends that span (the new connection took
// over) and the old connection's later "took over" close is then not
// applied to the new one; and a close before any CONNECT in the excerpt
// (whose start was cut) ends a span that starts with the excerpt.
func Timeline(wire []WireEntry) []TimelineMark {
	if len(wire) == 0 {
		return nil
	}
	var marks []TimelineMark
	open := -1 // index of the open span in marks
	takeover := false
	seenConnect := false
	closeSpan := func(at time.Duration) {
		marks[open].End = at
		open = -1
	}
	for _, e := range wire {
		text := e.Type
		if e.Note != "" {
			text += " — " + e.Note
		}
		switch {
		case e.Dir == DirIn && e.Type == "CONNECT":
			seenConnect = true
			marks = append(marks, TimelineMark{Kind: MarkConnect, At: e.Offset, RC: -1, Text: text})
		case e.Dir == DirOut && e.Type == "CONNACK":
			rc := connackRC(e)
			marks = append(marks, TimelineMark{Kind: MarkConnack, At: e.Offset, RC: rc, Text: text})
			if rc == 0 {
				if open >= 0 {
					closeSpan(e.Offset)
					takeover = true
				}
				open = len(marks)
				marks = append(marks, TimelineMark{Kind: MarkConnected, At: e.Offset, RC: -1, Text: "connected"})
			}
		case e.Dir == DirEvent && e.Type == "conn-closed":
			marks = append(marks, TimelineMark{Kind: MarkClosed, At: e.Offset, RC: -1, Text: text})
			switch {
			case takeover && strings.Contains(e.Note, "took over"):
				takeover = false // the replaced connection's close
			case open >= 0:
				closeSpan(e.Offset)
				takeover = false
			case !seenConnect:
				start := wire[0].Offset
				marks = append(marks, TimelineMark{Kind: MarkConnected, At: start, End: e.Offset, RC: -1, Open: true, Text: "connected (before the excerpt)"})
			}
		case e.Dir == DirEvent && e.Type == "conn-rejected":
			marks = append(marks, TimelineMark{Kind: MarkRejected, At: e.Offset, RC: -1, Text: text})
		case e.Dir == DirEvent && (e.Type == "fault" || e.Type == "violation"):
			marks = append(marks, TimelineMark{Kind: MarkFault, At: e.Offset, RC: -1, Text: text})
		}
	}
	if open >= 0 {
		marks[open].End = wire[len(wire)-1].Offset
		marks[open].Open = true
	}
	return marks
}

// SVG drawing. Everything is computed here and every text goes through
// template.HTMLEscapeString; the result is inline SVG with no scripts, no
// links and no external references.

const (
	tlWidth  = 900.0
	tlLeft   = 12.0
	tlRight  = 12.0
	tlHeight = 118.0
	yAttempt = 28.0 // CONNECT and CONNACK marks
	ySpan    = 46.0 // connected spans
	yFault   = 62.0 // faults
	yAxis    = 74.0
	yLegend  = 108.0

	colConnect = "#0969da"
	colOK      = "#1a7f37"
	colBad     = "#cf222e"
	colUnknown = "#6e7781"
	colClosed  = "#1f2328"
	colFault   = "#bc4c00"
)

func esc(s string) string { return template.HTMLEscapeString(s) }

func fmtSecs(d time.Duration) string { return fmt.Sprintf("+%.3fs", d.Seconds()) }

// niceStep picks a 1-2-5 step giving at most about eight ticks over span.
func niceStep(span time.Duration) time.Duration {
	raw := float64(span) / 8
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return max(time.Duration(m*p), time.Microsecond)
		}
	}
	return time.Duration(10 * p)
}

// TimelineSVG draws a wire excerpt's reconnection timeline as inline SVG;
// empty when the excerpt has fewer than two CONNECTs.
func TimelineSVG(wire []WireEntry) template.HTML {
	if ConnectCount(wire) < 2 {
		return ""
	}
	marks := Timeline(wire)
	t0, t1 := marks[0].At, marks[0].At
	for _, m := range marks {
		t0 = min(t0, m.At)
		t1 = max(t1, m.At, m.End)
	}
	span := t1 - t0
	if span <= 0 {
		span = time.Millisecond
	}
	x := func(t time.Duration) float64 {
		return tlLeft + float64(t-t0)/float64(span)*(tlWidth-tlLeft-tlRight)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="timeline" role="img" viewBox="0 0 %.0f %.0f" width="100%%" preserveAspectRatio="xMinYMin meet" font-family="sans-serif" font-size="10">`, tlWidth, tlHeight)
	fmt.Fprintf(&b, `<title>Reconnection timeline: %d CONNECT attempts from %s to %s</title>`, ConnectCount(wire), fmtSecs(t0), fmtSecs(t1))
	// Lanes' captions at the left are drawn last (on top); spans first.
	for _, m := range marks {
		if m.Kind != MarkConnected {
			continue
		}
		w := max(x(m.End)-x(m.At), 1.5)
		dash := ""
		if m.Open {
			dash = ` stroke="` + colOK + `" stroke-dasharray="3 2"`
		}
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="9" fill="%s" fill-opacity="0.35"%s><title>%s %s → %s (%s)</title></rect>`,
			x(m.At), ySpan-4.5, w, colOK, dash, esc(m.Text), fmtSecs(m.At), fmtSecs(m.End), (m.End - m.At).Round(time.Millisecond))
	}
	for _, m := range marks {
		px := x(m.At)
		title := fmt.Sprintf("<title>%s %s</title>", fmtSecs(m.At), esc(m.Text))
		switch m.Kind {
		case MarkConnect:
			fmt.Fprintf(&b, `<path d="M%.1f %.1f l-4 -8 h8 z" fill="%s">%s</path>`, px, yAttempt-5, colConnect, title)
		case MarkConnack:
			col := colUnknown
			switch {
			case m.RC == 0:
				col = colOK
			case m.RC > 0:
				col = colBad
			}
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s">%s</circle>`, px, yAttempt, col, title)
			if m.RC > 0 {
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="%s">%d</text>`, px+5, yAttempt-4, colBad, m.RC)
			}
		case MarkClosed:
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1.5">%s</line>`, px, yAttempt-14, px, ySpan+7, colClosed, title)
		case MarkRejected:
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1.5">%s</line>`, px, yAttempt+4, px, ySpan+7, colBad, title)
		case MarkFault:
			fmt.Fprintf(&b, `<path d="M%.1f %.1f l5 5 l-5 5 l-5 -5 z" fill="%s">%s</path>`, px, yFault-5, colFault, title)
		}
	}
	// Time axis.
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#8c959f"/>`, tlLeft, yAxis, tlWidth-tlRight, yAxis)
	step := niceStep(span)
	for t := (t0 + step - 1) / step * step; t <= t1; t += step {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#8c959f"/><text x="%.1f" y="%.1f" text-anchor="middle" fill="#57606a">%s</text>`,
			x(t), yAxis, x(t), yAxis+4, x(t), yAxis+15, esc(tickLabel(t, step)))
	}
	// Legend.
	lx := tlLeft
	item := func(shape, label string) {
		fmt.Fprintf(&b, `<g transform="translate(%.1f %.1f)">%s<text x="12" y="4" fill="#1f2328">%s</text></g>`, lx, yLegend, shape, esc(label))
		lx += 30 + 6.5*float64(len([]rune(label)))
	}
	item(`<path d="M4 4 l-4 -8 h8 z" fill="`+colConnect+`"/>`, "CONNECT")
	item(`<circle cx="4" cy="0" r="3.5" fill="`+colOK+`"/>`, "CONNACK 0")
	item(`<circle cx="4" cy="0" r="3.5" fill="`+colBad+`"/>`, "CONNACK refused (return code)")
	item(`<rect x="0" y="-4" width="9" height="8" fill="`+colOK+`" fill-opacity="0.35"/>`, "connected")
	item(`<line x1="4" y1="-6" x2="4" y2="6" stroke="`+colClosed+`" stroke-width="1.5"/>`, "connection closed")
	item(`<line x1="4" y1="-6" x2="4" y2="6" stroke="`+colBad+`" stroke-width="1.5"/>`, "rejected")
	item(`<path d="M4 -5 l5 5 l-5 5 l-5 -5 z" fill="`+colFault+`"/>`, "fault / cut")
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// tickLabel prints t with as many decimals as the step needs.
func tickLabel(t, step time.Duration) string {
	dec := 0
	for s := step; s < time.Second && dec < 6; s *= 10 {
		dec++
	}
	return strconv.FormatFloat(t.Seconds(), 'f', dec, 64) + " s"
}

// seriesFigure is one row of a series' figures table.
type seriesFigure struct{ Label, Value string }

// figureLabels fixes the order and wording of the known figures.
var figureLabels = []struct{ key, label, unit string }{
	{"n", "points", ""},
	{"firstGapMs", "first gap", "ms"},
	{"minGapMs", "min gap", "ms"},
	{"maxGapMs", "max gap", "ms"},
	{"growthFactor", "growth factor", "×"},
	{"capMs", "cap (plateau)", "ms"},
	{"plateauGaps", "gaps on the plateau", ""},
	{"jitterSpread", "jitter spread", "%"},
	{"jitterMad", "jitter, median deviation", "%"},
}

func fmtFigure(v float64, unit string) string {
	switch unit {
	case "ms":
		return fmtMsValue(v) + " ms"
	case "×":
		return fmt.Sprintf("×%.2f", v)
	case "%":
		return fmt.Sprintf("%.1f %%", 100*v)
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

func fmtMsValue(v float64) string {
	switch a := math.Abs(v); {
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 3, 64)
}

// SeriesFigures lists a series' figures for display: the known ones in a
// fixed order (a zero cap reads "none"), then any others by name.
func SeriesFigures(s SeriesResult) []seriesFigure {
	var out []seriesFigure
	known := map[string]bool{}
	for _, l := range figureLabels {
		known[l.key] = true
		v, ok := s.Figures[l.key]
		if !ok {
			continue
		}
		val := fmtFigure(v, l.unit)
		if (l.key == "capMs" || l.key == "plateauGaps") && v == 0 {
			val = "none"
		}
		if l.key == "growthFactor" && v == 0 {
			val = "unknown"
		}
		out = append(out, seriesFigure{l.label, val})
	}
	var extra []string
	for k := range s.Figures {
		if !known[k] {
			extra = append(extra, k)
		}
	}
	slices.Sort(extra)
	for _, k := range extra {
		out = append(out, seriesFigure{k, strconv.FormatFloat(s.Figures[k], 'g', 6, 64)})
	}
	return out
}

// SeriesSVG draws a series' gaps as bars (linear scale), with the fitted
// cap as a dashed line when there is one.
func SeriesSVG(s SeriesResult) template.HTML {
	if len(s.GapsMs) == 0 {
		return ""
	}
	const w, h, left, top, bottom = 600.0, 130.0, 56.0, 10.0, 20.0
	top1 := slices.Max(s.GapsMs)
	capMs := s.Figures["capMs"]
	top1 = max(top1, capMs, 0.001)
	plot := h - top - bottom
	y := func(v float64) float64 { return top + plot*(1-v/top1) }
	n := float64(len(s.GapsMs))
	bw := (w - left - 4) / n
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="series" role="img" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" font-family="sans-serif" font-size="10">`, w, h, w, h)
	fmt.Fprintf(&b, `<title>%s: %d gaps</title>`, esc(s.Name), len(s.GapsMs))
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#8c959f"/>`, left, y(0), w-2, y(0))
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end" fill="#57606a">%s ms</text>`, left-4, top+8, esc(fmtMsValue(top1)))
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end" fill="#57606a">0</text>`, left-4, y(0))
	for i, g := range s.GapsMs {
		bx := left + float64(i)*bw
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#0969da" fill-opacity="0.7"><title>gap %d: %s ms</title></rect>`,
			bx+bw*0.15, y(max(g, 0)), bw*0.7, y(0)-y(max(g, 0)), i+1, esc(fmtMsValue(g)))
		if len(s.GapsMs) <= 30 {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#57606a">%d</text>`, bx+bw/2, h-6, i+1)
		}
	}
	if capMs > 0 {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#bc4c00" stroke-dasharray="5 3"/><text x="%.1f" y="%.1f" text-anchor="end" fill="#bc4c00">fitted cap %s ms</text>`,
			left, y(capMs), w-2, y(capMs), w-4, y(capMs)-3, esc(fmtMsValue(capMs)))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}
