package reports

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"html/template"
	"strings"
	"time"
)

// ---- JUnit: one testsuite per board --------------------------------------

func writeMergedJUnit(buf *bytes.Buffer, m *Merged, _ string) error {
	top := junitSuites{Name: "hilrun merged"}
	var wall float64
	for _, b := range m.Boards {
		s := junitSuite{Name: b.ID, Hostname: b.Host, Properties: []junitProperty{
			{"board.id", b.ID},
			{"board.profile", b.Profile},
			{"firmware", strings.TrimSpace(b.Firmware.Name + " " + b.Firmware.Version)},
			{"firmware.build", b.Firmware.Build},
			{"client", strings.TrimSpace(b.Firmware.Client + " " + b.Firmware.ClientVersion)},
			{"run.id", b.RunID},
			{"hilrun.version", b.Version},
			{"strict", fmt.Sprint(b.Strict)},
			{"verdict", b.Verdict},
		}}
		if !b.Started.IsZero() {
			s.Timestamp = b.Started.UTC().Format("2006-01-02T15:04:05")
		}
		switch {
		case b.Verdict == BoardRigFault && !hasSpecStatus(b.Specs, SpecRigFault):
			// The board never reached the specs: one errored case says so
			// (JUnit "error": the test could not run; not a failure).
			s.add(junitCase{Name: "pre-flight health check", Classname: "hilrun." + b.ID,
				Time:  "0.000",
				Error: &junitFailure{Message: "rig fault: " + firstLine(b.RigFault), Type: "rig-fault", Body: b.RigFault}})
		case b.Verdict == BoardInterrupted && !hasSpecStatus(b.Specs, SpecInterrupted):
			why := strings.Join(b.Why, "\n")
			s.add(junitCase{Name: "hilrun run", Classname: "hilrun." + b.ID, Time: "0.000",
				Error: &junitFailure{Message: "interrupted: " + firstLine(why), Type: "interrupted", Body: why}})
		}
		var total float64
		for _, sp := range b.Specs {
			area := sp.Area
			if area == "" {
				area = specArea(sp)
			}
			total += sp.Duration.Seconds()
			s.add(junitCaseOf(sp, "hilrun."+b.ID+"."+area))
		}
		s.Time = fmt.Sprintf("%.3f", total)
		wall = max(wall, b.WallMs/1000)
		top.add(s)
	}
	top.Time = fmt.Sprintf("%.3f", wall)
	buf.WriteString(xml.Header)
	enc := xml.NewEncoder(buf)
	enc.Indent("", "  ")
	if err := enc.Encode(top); err != nil {
		return err
	}
	buf.WriteByte('\n')
	return nil
}

func hasSpecStatus(specs []SpecResult, st SpecStatus) bool {
	for _, s := range specs {
		if s.Status == st {
			return true
		}
	}
	return false
}

// ---- Markdown ------------------------------------------------------------

// mdMatrixMax bounds the matrix rows in summary.md (the HTML has them all).
const mdMatrixMax = 60

func verdictMark(v string) string {
	switch v {
	case BoardPass:
		return "✅ PASS"
	case BoardFail:
		return "❌ FAIL"
	case BoardRigFault:
		return "⚠️ RIG FAULT"
	case BoardInterrupted:
		return "⏹️ INTERRUPTED"
	}
	return md(v)
}

func statusCell(s Status) string {
	switch s {
	case Pass:
		return "✅"
	case Fail:
		return "❌"
	case NotApplicable:
		return "n/a"
	case NotCovered:
		return "·"
	case RigFaultStatus:
		return "⚠️"
	case PreconditionUnmet:
		return "pre"
	case "":
		return "—"
	}
	return md(string(s))
}

func writeMergedMarkdown(buf *bytes.Buffer, m *Merged, _ string) error {
	fmt.Fprintf(buf, "## hilrun conformance, %d boards: **%s**\n\n", len(m.Boards), verdictMark(m.Summary.Verdict))
	fmt.Fprintf(buf, "%d pass, %d fail, %d interrupted, %d rig fault (a rig fault means the rig failed — the board did not come up or stopped responding, frames were lost on the line — so what it touched says nothing about the firmware).\n\n",
		m.Summary.Boards[BoardPass], m.Summary.Boards[BoardFail], m.Summary.Boards[BoardInterrupted], m.Summary.Boards[BoardRigFault])
	buf.WriteString("| board | host | profile | firmware | client | verdict | req. pass | fail | n/a | not covered | wall |\n")
	buf.WriteString("|---|---|---|---|---|---|---:|---:|---:|---:|---:|\n")
	for _, b := range m.Boards {
		fw := strings.TrimSpace(b.Firmware.Name + " " + b.Firmware.Version)
		if b.Firmware.Build != "" {
			fw += " build " + b.Firmware.Build
		}
		fmt.Fprintf(buf, "| %s | %s | %s | %s | %s | %s | %d | %d | %d | %d | %s |\n",
			md(b.ID), md(orDash(b.Host)), md(orDash(b.Profile)), md(orDash(fw)),
			md(orDash(strings.TrimSpace(b.Firmware.Client+" "+b.Firmware.ClientVersion))), verdictMark(b.Verdict),
			b.Requirements[Pass], b.Requirements[Fail], b.Requirements[NotApplicable], b.Requirements[NotCovered],
			fmtWall(time.Duration(b.WallMs*float64(time.Millisecond))))
	}
	buf.WriteByte('\n')
	if len(m.Summary.Why) > 0 {
		buf.WriteString("### Why\n\n")
		for _, w := range m.Summary.Why {
			fmt.Fprintf(buf, "- %s\n", md(w))
		}
		buf.WriteByte('\n')
	}
	// The matrix rows worth a glance: a failure anywhere, or boards
	// disagreeing.
	var rows []MatrixRow
	for _, r := range m.Requirements {
		if r.interesting(m) {
			rows = append(rows, r)
		}
	}
	if len(rows) > 0 && len(m.Boards) > 0 {
		buf.WriteString("### Requirements that fail or differ between boards\n\n| requirement | severity |")
		for _, b := range m.Boards {
			fmt.Fprintf(buf, " %s |", md(b.ID))
		}
		buf.WriteString("\n|---|---|" + strings.Repeat(":---:|", len(m.Boards)) + "\n")
		for i, r := range rows {
			if i == mdMatrixMax {
				fmt.Fprintf(buf, "\n… and %d more (see report.html).\n", len(rows)-mdMatrixMax)
				break
			}
			fmt.Fprintf(buf, "| **%s** %s | %s |", md(r.ID), md(r.Title), md(r.Severity))
			for _, s := range r.Statuses {
				fmt.Fprintf(buf, " %s |", statusCell(s))
			}
			buf.WriteByte('\n')
		}
		buf.WriteString("\n✅ pass · ❌ fail · ⚠️ rig fault (not judged) · pre precondition unmet (not judged) · n/a not applicable · `·` not covered · — not in that run's catalog\n\n")
	}
	if len(m.Warnings) > 0 {
		buf.WriteString("### Notes\n\n")
		for _, w := range m.Warnings {
			fmt.Fprintf(buf, "- %s\n", md(w))
		}
		buf.WriteByte('\n')
	}
	buf.WriteString("Full report: `report.html` (artifact), machine-readable `merged.json`, `junit.xml`; each board's own report in its directory.\n")
	return nil
}

// interesting: a requirement failed somewhere, or the boards that ran it
// (rig faults left out) disagree.
func (r MatrixRow) interesting(m *Merged) bool {
	var first Status
	for i, s := range r.Statuses {
		if s == Fail {
			return true
		}
		if m.Boards[i].Verdict == BoardRigFault {
			continue
		}
		if first == "" {
			first = s
		} else if s != first {
			return true
		}
	}
	return false
}

// ---- HTML ----------------------------------------------------------------

type mergedHTMLBoard struct {
	MergedBoard
	Link     string
	Anchor   string
	Failures []SpecResult
}

type mergedHTMLView struct {
	M      *Merged
	Boards []mergedHTMLBoard
}

var mergedFuncs = template.FuncMap{
	"css":   func() template.CSS { return reportCSS },
	"join":  strings.Join,
	"first": firstLine,
	"wallms": func(f float64) string {
		return fmtWall(time.Duration(f * float64(time.Millisecond)))
	},
	"time": func(t time.Time) string {
		if t.IsZero() {
			return "–"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"count":  func(m map[Status]int, s string) int { return m[Status(s)] },
	"scount": func(m map[SpecStatus]int, s string) int { return m[SpecStatus(s)] },
	"cell":   statusCellHTML,
	"verdict": func(v string) string {
		return map[string]string{BoardPass: "PASS", BoardFail: "FAIL", BoardRigFault: "RIG FAULT", BoardInterrupted: "INTERRUPTED"}[v]
	},
	"secs": func(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()) },
	"dash": orDash,
}

func statusCellHTML(s Status) string {
	switch s {
	case Pass:
		return "pass"
	case Fail:
		return "FAIL"
	case NotApplicable:
		return "n/a"
	case NotCovered:
		return "·"
	case RigFaultStatus:
		return "RIG"
	case PreconditionUnmet:
		return "pre"
	}
	return "—"
}

var mergedTmpl = template.Must(template.New("merged").Funcs(mergedFuncs).Parse(mergedHTMLSource))

func writeMergedHTML(buf *bytes.Buffer, m *Merged, dir string) error {
	v := mergedHTMLView{M: m}
	for i, b := range m.Boards {
		hb := mergedHTMLBoard{MergedBoard: b, Link: reportLink(dir, b), Anchor: fmt.Sprintf("board-%d", i+1)}
		for _, s := range b.Specs {
			if s.Status == SpecFailed {
				hb.Failures = append(hb.Failures, s)
			}
		}
		v.Boards = append(v.Boards, hb)
	}
	return mergedTmpl.Execute(buf, v)
}

const mergedHTMLSource = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hilrun conformance report, {{len .M.Boards}} boards</title>
<style>{{css}}
.rig { background: #9a6700; } .st-rig-fault { color: var(--nc); }
table.matrix td.c { text-align: center; white-space: nowrap; }
table.matrix th.b { writing-mode: vertical-rl; transform: rotate(180deg); white-space: nowrap; vertical-align: bottom; text-align: left; }
td.c.st-pass { background: #dafbe1; } td.c.st-fail { background: #ffebe9; } td.c.rigcol { background: var(--bg2); color: var(--na); }
</style>
</head>
<body>
<h1>hilrun conformance report — {{len .M.Boards}} boards</h1>
<p>{{if eq .M.Summary.Verdict "pass"}}<span class="verdict ok">PASS</span>{{else if eq .M.Summary.Verdict "fail"}}<span class="verdict nok">FAIL</span>{{else if eq .M.Summary.Verdict "interrupted"}}<span class="verdict rig">INTERRUPTED</span>{{else}}<span class="verdict rig">RIG FAULT</span>{{end}}
 {{index .M.Summary.Boards "pass"}} boards passed, {{index .M.Summary.Boards "fail"}} failed, {{index .M.Summary.Boards "interrupted"}} interrupted, {{index .M.Summary.Boards "rig-fault"}} rig faults.
 A rig fault means the rig failed (the board did not come up or stopped responding, frames were lost on the line): what it touched says nothing about the firmware.</p>
{{if .M.Summary.Why}}<ul>{{range .M.Summary.Why}}<li>{{.}}</li>{{end}}</ul>{{end}}
{{if .M.Warnings}}<p class="note">Notes:</p><ul class="note">{{range .M.Warnings}}<li>{{.}}</li>{{end}}</ul>{{end}}

<h2>Boards</h2>
<table>
<thead><tr><th>Board</th><th>Host</th><th>Profile</th><th>Firmware</th><th>Device client</th><th>Verdict</th><th>pass</th><th>fail</th><th>n/a</th><th>not covered</th><th>Wall</th><th>Report</th></tr></thead>
<tbody>
{{range .Boards}}<tr><td><a href="#{{.Anchor}}"><code>{{.ID}}</code></a></td><td>{{dash .Host}}</td><td>{{dash .Profile}}</td>
<td>{{.Firmware.Name}} {{.Firmware.Version}}{{with .Firmware.Build}} <code>{{.}}</code>{{end}}</td><td>{{.Firmware.Client}} {{.Firmware.ClientVersion}}</td>
<td class="st st-{{.Verdict}}">{{verdict .Verdict}}</td>
<td class="n st-pass">{{count .Requirements "pass"}}</td><td class="n st-fail">{{count .Requirements "fail"}}</td><td class="n">{{count .Requirements "not-applicable"}}</td><td class="n">{{count .Requirements "not-covered"}}</td>
<td class="n">{{wallms .WallMs}}</td><td>{{with .Link}}<a href="{{.}}">report.html</a>{{else}}–{{end}}</td></tr>
{{end}}
</tbody>
</table>

<h2>Requirements × boards</h2>
<p class="note">pass · FAIL · RIG = rig fault, not judged · pre = precondition unmet, not judged · n/a = not applicable (capability not declared) · “·” = not covered · “—” = not in that run's catalog. A rig-fault board's column is grey.</p>
<table class="matrix">
<thead><tr><th>ID</th><th>Severity</th><th>Title</th>{{range .Boards}}<th class="b"><a href="#{{.Anchor}}">{{.ID}}</a></th>{{end}}</tr></thead>
<tbody>
{{$boards := .Boards}}{{range .M.Requirements}}<tr><td><code>{{.ID}}</code></td><td>{{.Severity}}</td><td>{{.Title}}</td>{{range $i, $s := .Statuses}}{{$b := index $boards $i}}<td class="c st-{{$s}}{{if eq $b.Verdict "rig-fault"}} rigcol{{end}}">{{cell $s}}</td>{{end}}</tr>
{{end}}
</tbody>
</table>

{{range .Boards}}
<h2 id="{{.Anchor}}">Board {{.ID}} — <span class="st st-{{.Verdict}}">{{verdict .Verdict}}</span></h2>
<dl class="meta">
<dt>Host</dt><dd>{{dash .Host}}</dd>
<dt>Profile</dt><dd>{{dash .Profile}}{{with .Port}} on <code>{{.}}</code>{{end}}</dd>
<dt>Firmware</dt><dd>{{.Firmware.Name}} {{.Firmware.Version}}{{with .Firmware.Build}} (build <code>{{.}}</code>){{end}}</dd>
<dt>Device client</dt><dd>{{.Firmware.Client}} {{.Firmware.ClientVersion}}</dd>
<dt>Board (hello)</dt><dd>{{dash .Firmware.Board}}</dd>
<dt>Capabilities</dt><dd>{{join .Firmware.Caps ", "}}</dd>
<dt>Run</dt><dd><code>{{dash .RunID}}</code>, {{time .Started}} → {{time .Finished}} ({{wallms .WallMs}}), hilrun {{dash .Version}}, strict {{.Strict}}{{with .LabelFilter}}, label filter <code>{{.}}</code>{{end}}{{with .Defects}}, defects <code>{{join . ", "}}</code>{{end}}</dd>
{{if .TLSClock}}<dt>TLS and clock</dt><dd><table>
{{range .TLSClock}}<tr><td>{{.Name}}</td><td class="{{if .Good}}st-pass{{else}}st st-fail{{end}}">{{if not .Good}}✗ {{end}}{{.Value}}</td></tr>
{{end}}</table></dd>{{end}}
{{with .Source}}<dt>Source</dt><dd><code>{{.}}</code></dd>{{end}}
<dt>Specs</dt><dd>{{scount .SpecCounts "passed"}} passed, {{scount .SpecCounts "failed"}} failed, {{scount .SpecCounts "rig-fault"}} rig fault, {{scount .SpecCounts "interrupted"}} interrupted, {{scount .SpecCounts "not-run"}} not run, {{scount .SpecCounts "skipped"}} skipped, {{scount .SpecCounts "not-applicable"}} not applicable</dd>
</dl>
{{if .RigFault}}<div class="failure"><h3>Rig fault</h3><pre>{{.RigFault}}</pre></div>{{end}}
{{if .Why}}<ul>{{range .Why}}<li>{{.}}</li>{{end}}</ul>{{end}}
{{range .Failures}}<div class="failure"><h3>{{.Name}}</h3>
<p>Requirements: {{join .Requirements ", "}} · duration {{secs .Duration}}{{with .Location}} · at <code>{{.}}</code>{{end}}</p>
<pre>{{.Failure}}</pre></div>
{{end}}{{if and .Failures .Link}}<p class="note">Wire traces and console lines: <a href="{{.Link}}">the board's report</a>.</p>{{end}}
{{end}}

<p class="note">Generated by hilrun {{.M.Version}} · merged schema {{.M.SchemaVersion}} (report schema {{.M.ReportSchemaVersion}}) · {{time .M.Created}} · secrets redacted.</p>
</body>
</html>
`
