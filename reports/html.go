package reports

import (
	"bytes"
	"fmt"
	"html/template"
	"strings"
	"time"
)

func fmtOffset(d time.Duration) string { return fmt.Sprintf("+%.3fs", d.Seconds()) }

func fmtWall(d time.Duration) string {
	if d <= 0 {
		return "–"
	}
	return d.Round(time.Millisecond).String()
}

type htmlArea struct {
	Code    string
	Sum     AreaSummary
	Reqs    []RequirementResult
	HasSpec bool
}

type htmlFailure struct {
	Anchor string
	Spec   SpecResult
}

// htmlTiming is a spec with timing evidence: series it judged, or a wire
// excerpt with more than one CONNECT (a reconnection timeline).
type htmlTiming struct {
	Anchor  string
	Failure string // the spec's anchor in Failures, when it failed
	Spec    SpecResult
}

type htmlView struct {
	R        *Report
	Outcome  Outcome
	NotJudge []SpecResult
	Loose    []RigFaultEvent // rig faults outside any spec
	OK       bool
	Why      []string
	Areas    []htmlArea
	Failures []htmlFailure
	Timing   []htmlTiming
	Facts    []FactGroup
	FailView []failureView
	Shown    map[Status]int // requirement counts over the shown areas
	// NoneJudged: the rig ended the run before the first spec.
	NoneJudged bool
	anchors    map[string]string
}

func newHTMLView(r *Report) *htmlView {
	v := &htmlView{R: r, anchors: map[string]string{}}
	v.OK, v.Why = r.Verdict()
	v.Outcome = r.Outcome()
	v.NotJudge = r.NotJudged()
	for _, f := range r.RigFaults {
		if f.Spec == "" {
			v.Loose = append(v.Loose, f)
		}
	}
	v.Facts = r.FactGroups()
	v.Shown = r.ShownCounts()
	_, rig := r.runRigFault()
	v.NoneJudged = rig && len(r.Specs) == 0
	sums := map[string]AreaSummary{}
	for _, a := range r.Summary.Areas {
		sums[a.Area] = a
	}
	for _, code := range r.Areas() {
		if r.OutsideCloud(code) {
			continue // another cloud's area (AWS on an Azure board)
		}
		a := htmlArea{Code: code, Sum: sums[code]}
		for _, q := range r.Requirements {
			if q.Area == code {
				a.Reqs = append(a.Reqs, q)
			}
		}
		v.Areas = append(v.Areas, a)
	}
	for i, s := range r.Specs {
		failAnchor := ""
		if s.Status == SpecFailed {
			failAnchor = fmt.Sprintf("spec-%d", i+1)
			if _, seen := v.anchors[s.Name]; !seen {
				v.anchors[s.Name] = failAnchor
			}
			v.Failures = append(v.Failures, htmlFailure{Anchor: failAnchor, Spec: s})
		}
		if len(s.Series) > 0 || ConnectCount(s.Wire) > 1 {
			v.Timing = append(v.Timing, htmlTiming{Anchor: fmt.Sprintf("timing-%d", i+1), Failure: failAnchor, Spec: s})
		}
	}
	v.FailView = v.failureViews()
	return v
}

// reportScript is the report's only script, inline: the failures-only and
// area filter. Without it (scripts off, a PDF) the page shows everything.
const reportScript = `(function(){
var f=document.getElementById('filter'); if(!f) return; f.hidden=false;
var only=document.getElementById('failures-only'), area=document.getElementById('area-filter');
function apply(){
 var a=area.value, o=only.checked;
 document.querySelectorAll('[data-area]').forEach(function(el){
  if(el.closest('#chart')) return;
  var hide=(a!=='' && el.getAttribute('data-area')!==a);
  var st=el.getAttribute('data-status');
  if(o && st!==null && st!=='fail' && st!=='failed') hide=true;
  el.hidden=hide;
 });
 document.body.setAttribute('data-filter', (o?'failures':'all')+(a?':'+a:''));
}
var h=decodeURIComponent(location.hash.slice(1));
if(/(^|&)show=failures/.test(h)){only.checked=true;}
var m=/area=([A-Z0-9]+)/.exec(h); if(m){area.value=m[1];}
only.addEventListener('change',apply); area.addEventListener('change',apply);
window.addEventListener('beforeprint',function(){document.querySelectorAll('details').forEach(function(d){d.open=true;});});
apply();
})();`

// reportCSS is the style sheet of report.html, shared by the merged report.
const reportCSS = `:root { --pass:#1a7f37; --fail:#cf222e; --na:#6e7781; --nc:#9a6700; --line:#d0d7de; --bg2:#f6f8fa; }
body { font: 14px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0 auto; max-width: 1200px; padding: 1.5em; color: #1f2328; }
h1 { font-size: 1.6em; margin: 0 0 .3em; } h2 { border-bottom: 1px solid var(--line); padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; width: 100%; margin: .5em 0 1em; }
th, td { border: 1px solid var(--line); padding: .3em .5em; text-align: left; vertical-align: top; }
th { background: var(--bg2); }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
code, pre { font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
pre { background: var(--bg2); padding: .6em; overflow-x: auto; white-space: pre-wrap; word-break: break-word; }
.verdict { display: inline-block; padding: .2em .8em; border-radius: 1em; color: #fff; font-weight: 600; }
.ok { background: var(--pass); } .nok { background: var(--fail); }
.st { font-weight: 600; white-space: nowrap; }
.st-pass, .st-passed { color: var(--pass); } .st-fail, .st-failed { color: var(--fail); }
.st-not-applicable, .st-skipped, .st-not-run, .st-precondition-unmet { color: var(--na); } .st-not-covered { color: var(--nc); }
.st-rig-fault, .st-interrupted { color: var(--nc); } .rig { background: var(--nc); }
.dim { font-weight: 600; } .dim-covered { color: var(--pass); } .dim-partial { color: var(--nc); } .dim-gap { color: var(--fail); }
details.coverage { margin-top: .3em; } details.coverage ul { margin: .2em 0; padding-left: 1.2em; }
.rigfault { border: 1px solid var(--nc); border-left-width: 4px; padding: .2em 1em 1em; margin: 1em 0; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: .2em 1em; }
dl.meta dt { font-weight: 600; } dl.meta dd { margin: 0; }
.failure { border: 1px solid var(--fail); border-left-width: 4px; padding: .2em 1em 1em; margin: 1em 0; }
table.seq td { border: none; border-bottom: 1px dotted var(--line); }
table.seq th.dev, table.seq th.hub { width: 42%; text-align: center; }
table.seq td.t { width: 6em; color: var(--na); white-space: nowrap; font: 12px ui-monospace, monospace; }
table.seq td.arrow { width: 4em; text-align: center; color: #0969da; font-weight: 700; white-space: nowrap; }
table.seq td.dev { text-align: right; } table.seq td.hub { text-align: left; }
table.seq td.ev { text-align: center; font-style: italic; color: #57606a; background: #fff8c5; }
.pkt { font-weight: 600; } .topic { font: 12px ui-monospace, monospace; word-break: break-all; }
.note { color: #57606a; font-size: 12px; }
.timing { border: 1px solid var(--line); border-left-width: 4px; padding: .2em 1em 1em; margin: 1em 0; }
svg.timeline { display: block; max-width: 100%; height: auto; margin: .3em 0; }
svg.series { display: block; max-width: 100%; height: auto; }
.series-box { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; margin: .5em 0; }
table.figures { width: auto; margin: 0; } table.figures td { padding: .15em .5em; }
.id, td.id, code.id, a.id { white-space: nowrap; }
.filtered { background: #0969da; } .nospec { background: #6e7781; }
.exec { border: 1px solid var(--line); border-radius: 6px; padding: .5em 1.2em 1em; background: #fff; }
.exec .counts { font-size: 1.05em; }
svg.chart { display: block; max-width: 100%; height: auto; margin: .6em 0; }
.notice { border-left: 4px solid #0969da; background: #ddf4ff; padding: .4em 1em; margin: .8em 0; }
.notice.warn { border-color: var(--nc); background: #fff8c5; } .notice.bad { border-color: var(--fail); background: #ffebe9; }
.req-text { margin: .2em 0 .4em; } .expect { font-size: 1.05em; border-left: 3px solid var(--fail); padding: .2em .8em; background: #ffebe9; }
tr.wrong td { background: #ffebe9; } tr.missing td { background: #ffebe9; color: var(--fail); font-weight: 600; text-align: center; }
#filter { margin: .8em 0; padding: .4em .8em; background: var(--bg2); border: 1px solid var(--line); border-radius: 6px; }
@media print {
  body { max-width: none; padding: 0; font-size: 11px; }
  #filter, .noprint { display: none !important; }
  .failure, .rigfault, .timing, .exec, table.seq tr, svg { break-inside: avoid; }
  h2 { break-after: avoid; } a { color: inherit; text-decoration: none; }
  pre { white-space: pre-wrap; }
  [hidden] { display: revert !important; }
}
`

var htmlFuncs = template.FuncMap{
	"css":    func() template.CSS { return reportCSS },
	"offset": fmtOffset,
	"wall":   fmtWall,
	"secs":   func(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()) },
	"join":   strings.Join,
	"cloud":  CloudName,
	"first":  firstLine,
	"claim":  Claim,
	"time": func(t time.Time) string {
		if t.IsZero() {
			return "–"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"count":  func(m map[Status]int, s string) int { return m[Status(s)] },
	"scount": func(m map[SpecStatus]int, s string) int { return m[SpecStatus(s)] },
	"isin":   func(d string) bool { return d == DirIn },
	"isout":  func(d string) bool { return d == DirOut },
	"showqos": func(e WireEntry) bool {
		return e.Dir != DirEvent && (e.Type == "PUBLISH" || e.QoS > 0)
	},
	"timeline":      TimelineSVG,
	"seriesSVG":     SeriesSVG,
	"figures":       SeriesFigures,
	"msv":           fmtMsValue,
	"hasTimeline":   func(w []WireEntry) bool { return ConnectCount(w) > 1 },
	"chart":         AreaChartSVG,
	"boardLine":     BoardLine,
	"command":       displayCommand,
	"ver":           displayVersion,
	"refs":          ResolveRefs,
	"wrong":         wrongEntry,
	"fold":          FoldPEM,
	"script":        func() template.JS { return template.JS(reportScript) },
	"outside":       func(r *Report, area string) bool { return r.OutsideCloud(area) },
	"statusLabel":   func(s Status) string { return statusLabels[s] },
	"chartStatuses": func() []Status { return chartStatuses },
	"nz":            func(m map[Status]int, s Status) int { return m[s] },
	"specTitle":     specTitle,
}

var htmlTmpl = template.Must(template.New("report").Funcs(htmlFuncs).Parse(htmlSource))

func writeHTML(buf *bytes.Buffer, r *Report) error {
	v := newHTMLView(r)
	return htmlTmpl.Execute(buf, v)
}

// AnchorFor is used by the template to link a requirement's failed spec.
func (v *htmlView) AnchorFor(name string) string { return v.anchors[name] }

const htmlSource = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hilrun conformance report {{.R.Run.ID}}</title>
<style>{{css}}</style>
</head>
<body data-filter="all">
<h1>Conformance report: {{with .R.Board.Firmware.Name}}{{.}} {{$.R.Board.Firmware.Version}}{{else}}board not identified{{end}}</h1>
<section id="summary" class="exec">
<h2 style="margin-top:.4em">Executive summary</h2>
<p><span id="verdict" data-outcome="{{.Outcome}}" class="verdict {{if eq .Outcome "pass"}}ok{{else if eq .Outcome "fail"}}nok{{else if eq .Outcome "no-specs"}}nospec{{else}}rig{{end}}">{{.Outcome.Label}}</span>{{if .R.Filtered}} <span id="filtered-badge" class="verdict filtered">FILTERED</span>{{end}}
 {{boardLine .R}}</p>
{{if .R.Filtered}}<p class="notice" id="filtered-notice"><b>Filtered run</b> ({{.R.Selection}}): {{len .R.Specs}} specs selected, {{nz .Shown "not-run"}} requirements not run (filtered out). This is not a verdict on the whole suite.</p>{{end}}
{{if eq .Outcome "no-specs"}}<p class="notice bad" id="nospec-notice"><b>No spec ran.</b> {{.R.NoSpecsReason}}. Nothing was tested: this run is not a pass.</p>{{end}}
{{if eq .Outcome "rig-fault"}}<p class="notice warn" id="rigfault-notice"><b>Rig fault:</b> {{.R.RigFaultReason}}. Not a verdict on the firmware: the test rig failed{{if not .R.Specs}} before the first spec{{end}}; run again once the rig is fixed.</p>{{end}}
<dl class="meta">
<dt>Verdict</dt><dd>{{.Outcome.Label}}{{if .R.Filtered}} (filtered){{end}}</dd>
<dt>Board</dt><dd>{{with .R.Board.Firmware.Board}}{{.}}{{else}}<span class="note">not identified</span>{{end}}{{with .R.Board.Profile}} · profile {{.}}{{end}}{{with .R.Board.Port}} on <code>{{.}}</code>{{end}}</dd>
<dt>Firmware</dt><dd>{{with .R.Board.Firmware.Name}}{{.}} {{$.R.Board.Firmware.Version}}{{with $.R.Board.Firmware.Build}}{{if ne . "(devel)"}} (build <code>{{.}}</code>){{end}}{{end}}{{else}}<span class="note">not identified (the board never answered the rig's hello)</span>{{end}}</dd>
{{if .R.Run.Cloud}}<dt>Judged against</dt><dd>{{cloud .R.Run.Cloud}}</dd>{{end}}
<dt>Device SDK</dt><dd>{{with .R.Board.Firmware.Client}}{{.}} {{$.R.Board.Firmware.ClientVersion}}{{else}}<span class="note">not identified</span>{{end}}</dd>
<dt>Date</dt><dd>{{time .R.Run.Started}} · {{wall .R.Run.Wall}}</dd>
{{with .R.Run.Shards}}<dt>Shards</dt><dd>{{range $i, $s := .}}{{if $i}}; {{end}}{{$s.ID}}: {{$s.Specs}} specs, {{$s.Outcome}}{{with $s.Note}} ({{.}}){{end}}{{end}}</dd>{{end}}
<dt>Requirements</dt><dd class="counts">{{if .NoneJudged}}<span class="note">none judged: the run ended before the first spec</span>{{else}}{{range $st := chartStatuses}}{{with nz $.Shown $st}}<span class="st st-{{$st}}">{{.}} {{statusLabel $st}}</span> · {{end}}{{end}}{{end}}</dd>
<dt>Specs</dt><dd>{{scount .R.Summary.Specs "passed"}} passed, {{scount .R.Summary.Specs "failed"}} failed, {{scount .R.Summary.Specs "rig-fault"}} rig fault, {{scount .R.Summary.Specs "not-applicable"}} not applicable, {{scount .R.Summary.Specs "precondition-unmet"}} precondition unmet, {{scount .R.Summary.Specs "not-run"}} not run</dd>
</dl>
{{if and .Areas (not .NoneJudged)}}{{chart .R}}{{end}}
{{if and .Why (not .NoneJudged) (ne .Outcome "no-specs")}}<ul>{{range .Why}}<li>{{claim .}}</li>{{end}}</ul>{{end}}
</section>
<div id="filter" class="noprint" hidden>
<label><input type="checkbox" id="failures-only"> failures only</label>
 · <label>area <select id="area-filter"><option value="">all areas</option>{{range .Areas}}{{if .Reqs}}<option value="{{.Code}}">{{.Code}}</option>{{end}}{{end}}</select></label>
</div>

<section id="failures">
<h2>Failures</h2>
{{if not .FailView}}<p class="note" id="no-failures">No spec failed{{if ne .Outcome "pass"}} (see the verdict above: {{.Outcome.Label}}){{end}}.</p>{{end}}
{{range .FailView}}{{$s := .Spec}}{{$f := .}}
<div class="failure" id="{{.Anchor}}" data-area="{{$s.Area}}" data-status="failed">
<h3>{{range $i, $id := $s.Requirements}}{{if $i}}, {{end}}<a class="id" href="#req-{{$id}}">{{$id}}</a>{{end}} — {{specTitle $s}}</h3>
{{range .Reqs}}<div class="req">
<p class="req-text"><b class="id">{{.ID}}</b> <span class="note">{{.Severity}}</span> <b>{{.Title}}</b>{{with .Text}} — {{.}}{{end}}</p>
{{with refs .Refs}}<p class="note">Documentation: {{range $i, $d := .}}{{if $i}}; {{end}}{{if $d.URL}}<a class="docref" href="{{$d.URL}}">{{$d.Title}}</a> {{$d.Lines}}{{else}}{{$d.Ref}}{{end}}{{end}}</p>{{end}}
</div>{{end}}
<p class="expect"><b>Expected:</b> {{.Claim}}</p>
<p class="note">Spec ran {{secs $s.Duration}}{{with $s.Board}} on {{.}}{{end}}{{with $s.Location}} · assertion at <code>{{.}}</code>{{end}}. Times below are seconds since the spec started.</p>
{{template "timing" $s}}
{{if $s.Wire}}
<h4>Wire sequence</h4>
{{template "wire" $s.Wire}}
<table class="seq"><tbody><tr class="missing"><td class="t">{{offset $s.Duration}}</td><td colspan="3">✗ {{if .Missing}}missing: the expected packet did not arrive{{else}}the expectation failed here{{end}} — {{.Claim}}</td></tr></tbody></table>
{{end}}
{{if $s.Console}}
<h4>Console of this spec</h4>
<pre>{{range $s.Console}}{{offset .Offset}} {{with .Stream}}{{.}} {{end}}{{fold .Text}}
{{end}}</pre>
{{end}}
{{with .Evidence}}<details><summary>The assertion's own evidence (its times count from the start of its wait)</summary><pre>{{fold .}}</pre></details>{{end}}
</div>
{{end}}
</section>

{{if or .NotJudge .Loose}}
<h2 id="rig-faults">Rig faults and interruptions</h2>
<p class="note">Not verdicts on the firmware: the rig failed (frames lost or corrupted on the line, an event sequence gap, a board that stopped responding) or the run was cut. What a spec's assertions said meanwhile is kept below but not judged.</p>
{{range .NotJudge}}<div class="rigfault">
<h3><span class="st st-{{.Status}}">{{.Status}}</span> {{.Name}}</h3>
<p>Requirements: {{range $i, $id := .Requirements}}{{if $i}}, {{end}}<a href="#req-{{$id}}">{{$id}}</a>{{end}} · duration {{secs .Duration}}</p>
{{with .RigFault}}<pre>{{.}}</pre>{{end}}
{{with .Failure}}<details><summary>what the spec saw meanwhile (not a verdict)</summary><pre>{{.}}</pre></details>{{end}}
{{if .Console}}<details><summary>Console ({{len .Console}} lines)</summary><pre>{{range .Console}}{{offset .Offset}} {{with .Stream}}{{.}} {{end}}{{.Text}}
{{end}}</pre></details>{{end}}
</div>
{{end}}{{if .Loose}}<p>Outside any spec:</p><ul>{{range .Loose}}<li>{{time .At}} {{.Kind}}: {{.Message}}</li>{{end}}</ul>{{end}}
{{end}}

{{with .R.PreconditionsUnmet}}
<h2 id="preconditions">Preconditions not met</h2>
<p class="note">Not verdicts on the firmware: the board could not set up something these specs need but their requirements do not (it answered <code>unsupported</code>). Neither passed nor failed.</p>
<ul>{{range .}}<li><span class="st st-precondition-unmet">precondition-unmet</span> {{.Name}} ({{range $i, $id := .Requirements}}{{if $i}}, {{end}}<a href="#req-{{$id}}">{{$id}}</a>{{end}}) — {{.Failure}}</li>{{end}}</ul>
{{end}}

<h2>Run</h2>
<dl class="meta">
<dt>Run ID</dt><dd><code>{{.R.Run.ID}}</code></dd>
<dt>Started</dt><dd>{{time .R.Run.Started}}</dd>
<dt>Finished</dt><dd>{{time .R.Run.Finished}}</dd>
<dt>Wall time</dt><dd>{{wall .R.Run.Wall}}</dd>
<dt>hilrun</dt><dd>{{ver .R.Run.Version}}</dd>
<dt>Reference hub</dt><dd>{{.R.Run.HubVersion}}</dd>
{{if .R.Run.Cloud}}<dt>Judged against</dt><dd>{{cloud .R.Run.Cloud}}</dd>{{end}}
<dt>Host</dt><dd>{{.R.Run.Host}}</dd>
<dt>Command</dt><dd><code>{{command .R.Run.Command}}</code></dd>
<dt>Strict timing</dt><dd>{{.R.Run.Strict}}</dd>
{{with .R.Run.LabelFilter}}<dt>Label filter</dt><dd><code>{{.}}</code></dd>{{end}}
{{with .R.Run.Defects}}<dt>Defect switches</dt><dd><code>{{join . ", "}}</code></dd>{{end}}
{{if .R.Run.Interrupted}}<dt>Interrupted</dt><dd class="st st-interrupted">yes — {{.R.Run.InterruptReason}}</dd>{{end}}
{{with .R.Run.RigFault}}<dt>Rig fault</dt><dd class="st st-rig-fault">{{.}}</dd>{{end}}
</dl>

<h2>Board</h2>
<dl class="meta">
<dt>Profile</dt><dd>{{.R.Board.Profile}}{{with .R.Board.Port}} on <code>{{.}}</code>{{end}}</dd>
<dt>Firmware</dt><dd>{{with .R.Board.Firmware.Name}}{{.}} {{$.R.Board.Firmware.Version}}{{with $.R.Board.Firmware.Build}}{{if ne . "(devel)"}} (build <code>{{.}}</code>){{else}} (development build){{end}}{{end}}{{else}}<span class="note">not identified</span>{{end}}</dd>
<dt>Device client</dt><dd>{{with .R.Board.Firmware.Client}}{{.}} {{$.R.Board.Firmware.ClientVersion}}{{else}}<span class="note">not identified</span>{{end}}</dd>
<dt>Board</dt><dd>{{with .R.Board.Firmware.Board}}{{.}}{{else}}<span class="note">not identified</span>{{end}}</dd>
<dt>Capabilities</dt><dd>{{with .R.Board.Firmware.Caps}}{{join . ", "}}{{else}}<span class="note">none declared</span>{{end}}</dd>
</dl>

<h2 id="tls-clock">TLS and clock</h2>
{{if .Facts}}<p class="note">What the board showed about TLS, server roots, its trust store and its clock, as noted by the specs that observed it (✗ marks a value a conforming board would not show).</p>
<table>
<thead><tr><th>Topic</th><th>Fact</th><th>Observed</th><th>Requirements</th></tr></thead>
<tbody>
{{range .Facts}}{{$g := .}}{{range $i, $f := .Facts}}<tr>{{if not $i}}<td rowspan="{{len $g.Facts}}">{{$g.Title}}</td>{{end}}<td>{{$f.Name}}</td><td class="{{if $f.Good}}st-pass{{else}}st st-fail{{end}}">{{if not $f.Good}}✗ {{end}}{{$f.Value}}</td><td class="note" title="{{$f.Spec}}">{{join $f.Requirements ", "}}</td></tr>
{{end}}{{end}}
</tbody>
</table>
{{else}}<p class="note">No TLS or clock facts: the specs that observe them (CONN TLS, CERT, CLOCK) did not run.</p>{{end}}

<h2>Summary</h2>
<table>
<thead><tr><th>Area</th><th>MUST passed / covered / total</th><th>pass</th><th>fail</th><th>rig fault</th><th>precondition unmet</th><th>not applicable</th><th>not run</th><th>not covered</th></tr></thead>
<tbody>
{{range .Areas}}{{if .Reqs}}<tr data-area="{{.Code}}"><td><a href="#area-{{.Code}}">{{.Code}}</a></td><td class="n">{{.Sum.MustPassed}} / {{.Sum.MustCovered}} / {{.Sum.Must}}</td>
<td class="n st-pass">{{count .Sum.Counts "pass"}}</td><td class="n st-fail">{{count .Sum.Counts "fail"}}</td><td class="n st-rig-fault">{{count .Sum.Counts "rig-fault"}}</td>
<td class="n">{{count .Sum.Counts "precondition-unmet"}}</td><td class="n">{{count .Sum.Counts "not-applicable"}}</td><td class="n">{{count .Sum.Counts "not-run"}}</td><td class="n">{{count .Sum.Counts "not-covered"}}</td></tr>
{{end}}{{end}}
</tbody>
</table>
<p>Specs: {{scount .R.Summary.Specs "passed"}} passed, {{scount .R.Summary.Specs "failed"}} failed, {{scount .R.Summary.Specs "rig-fault"}} rig fault, {{scount .R.Summary.Specs "interrupted"}} interrupted, {{scount .R.Summary.Specs "not-run"}} not run, {{scount .R.Summary.Specs "precondition-unmet"}} precondition unmet, {{scount .R.Summary.Specs "skipped"}} skipped, {{scount .R.Summary.Specs "not-applicable"}} not applicable.</p>
{{with .R.Summary.Unmapped}}<p class="st st-fail">Specs naming requirement IDs the catalog does not know:</p><ul>{{range .}}<li><code>{{.}}</code></li>{{end}}</ul>{{end}}



{{if .Timing}}
<h2 id="timing">Reconnection and backoff</h2>
<p class="note">Specs with timing evidence: the gaps between attempts a spec judged, with the fitted figures (growth factor before the cap, the cap, jitter spread around the fitted curve), and a reconnection timeline wherever the wire excerpt holds more than one CONNECT. Hover a mark for its time and note.</p>
{{range .Timing}}{{$s := .Spec}}
<div class="timing" id="{{.Anchor}}">
<h3><span class="st st-{{$s.Status}}">{{$s.Status}}</span> {{$s.Name}}</h3>
<p>Requirements: {{range $i, $id := $s.Requirements}}{{if $i}}, {{end}}<a href="#req-{{$id}}">{{$id}}</a>{{end}} · duration {{secs $s.Duration}}{{with .Failure}} · <a href="#{{.}}">failure details</a>{{end}}</p>
{{if .Failure}}<p class="note">Timeline and series are shown with the failure.</p>{{else}}
{{template "timing" $s}}
{{if $s.Wire}}<details><summary>Wire trace ({{len $s.Wire}} entries)</summary>
{{template "wire" $s.Wire}}
</details>{{end}}
{{end}}
</div>
{{end}}
{{end}}

<h2>Requirements</h2>
{{range .Areas}}{{if .Reqs}}
<div data-area="{{.Code}}">
<h3 id="area-{{.Code}}">{{.Code}}</h3>
<table>
<thead><tr><th>ID</th><th>Severity</th><th>Requirement</th><th>Status</th><th>Specs</th></tr></thead>
<tbody>
{{range .Reqs}}<tr id="req-{{.ID}}" data-area="{{.Area}}" data-status="{{.Status}}"><td class="id"><code class="id">{{.ID}}</code></td><td>{{.Severity}}</td><td><b>{{.Title}}</b>{{with .Text}}<br><span class="note">{{.}}</span>{{end}}{{with refs .Refs}}<br><span class="note">{{range $i, $d := .}}{{if $i}}; {{end}}{{if $d.URL}}<a class="docref" href="{{$d.URL}}">{{$d.Title}}</a> {{$d.Lines}}{{else}}{{$d.Ref}}{{end}}{{end}}</span>{{end}}{{with .Coverage}}<details class="coverage"><summary>{{.Label}}</summary><ul>{{range .Items}}<li><span class="dim dim-{{.State}}">{{.State}}</span> <b>{{.Name}}</b>: {{join .Cases ", "}}{{range .CoveredBy}}<br><span class="note">✓ {{.}}</span>{{end}}{{with .Gap}}<br><span class="note">gap: {{.}}</span>{{end}}</li>{{end}}</ul>{{with .Single}}<p class="note">one dimension: {{.}}</p>{{end}}</details>{{end}}</td><td class="st st-{{.Status}}">{{.Status}}</td>
<td>{{range .Specs}}<div><span class="st st-{{.Status}}">{{.Status}}</span> {{if eq .Status "failed"}}<a href="#{{$.AnchorFor .Name}}">{{.Name}}</a> — {{claim .Failure}}{{else if eq .Status "precondition-unmet"}}{{.Name}} — {{first .Failure}}{{else}}{{.Name}}{{end}}{{with .Board}} <span class="note">on {{.}}</span>{{end}}</div>{{end}}</td></tr>
{{end}}
</tbody>
</table>
</div>
{{end}}{{end}}

<p class="note">Generated by hilrun {{.R.Run.Version}} · report schema {{.R.SchemaVersion}} · secrets redacted.</p>
<script id="report-filter">{{script}}</script>
</body>
</html>
{{define "timing"}}{{if hasTimeline .Wire}}
<h4>Reconnection timeline</h4>
{{timeline .Wire}}
{{end}}{{range .Series}}
<h4>Series: {{.Name}}</h4>
<div class="series-box">
{{seriesSVG .}}
<table class="figures"><tbody>
<tr><td>gaps (ms)</td><td><code>{{range $i, $g := .GapsMs}}{{if $i}}, {{end}}{{msv $g}}{{end}}</code></td></tr>
{{range figures .}}<tr><td>{{.Label}}</td><td class="n">{{.Value}}</td></tr>
{{end}}</tbody></table>
</div>
{{end}}{{end}}
{{define "wire"}}<table class="seq">
<thead><tr><th>t</th><th class="dev">device</th><th></th><th class="hub">hub</th></tr></thead>
<tbody>
{{range .}}
{{if isin .Dir}}<tr><td class="t">{{offset .Offset}}</td><td class="dev">{{template "pkt" .}}</td><td class="arrow">──▶</td><td></td></tr>
{{else if isout .Dir}}<tr><td class="t">{{offset .Offset}}</td><td></td><td class="arrow">◀──</td><td class="hub">{{template "pkt" .}}</td></tr>
{{else}}<tr{{if wrong .}} class="wrong"{{end}}><td class="t">{{offset .Offset}}</td><td class="ev" colspan="3">{{if wrong .}}✗ {{end}}hub: {{.Type}}{{with .Topic}} <span class="topic">{{.}}</span>{{end}}{{with .Note}} — {{.}}{{end}}{{with .Payload}} <code>{{.}}</code>{{end}}</td></tr>
{{end}}{{end}}
</tbody>
</table>
{{end}}
{{define "pkt"}}<span class="pkt">{{.Type}}</span>{{with .Topic}} <span class="topic">{{.}}</span>{{end}}{{if showqos .}} <span class="note">qos {{.QoS}}</span>{{end}}{{with .Flags}} <span class="note">[{{.}}]</span>{{end}}{{with .Payload}}<br><code>{{.}}</code>{{end}}{{with .Note}}<br><span class="note">{{.}}</span>{{end}}{{end}}
`
