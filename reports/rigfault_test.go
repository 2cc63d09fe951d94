package reports

import (
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// rigReport: TEL-001's only spec hit a rig fault, CONN-001 passed, the run
// was then ended by the rig (board dead), TEL-005's spec was not run.
func rigReport(extra ...SpecResult) *Report {
	t0 := time.Date(2025, 11, 25, 18, 0, 0, 0, time.UTC)
	meta := RunMeta{ID: "rig-1", Started: t0, Finished: t0.Add(30 * time.Second), Version: "v1", Host: "h", HubVersion: "hub",
		RigFault: "board stopped responding at 18:00:10.000: no answer to echo within 3s; it was already recovered 2 times in this run"}
	specs := append([]SpecResult{
		{Name: "connects", Requirements: []string{"CONN-001"}, Status: SpecPassed, Duration: time.Second},
		{Name: "topic", Requirements: []string{"TEL-001"}, Status: SpecRigFault, Duration: 7 * time.Second,
			RigFault: "18:00:10.000 board-hung: board stopped responding\nnot a verdict on the firmware",
			Failure:  "session setup: agent call \"client.close\": rig fault"},
		{Name: "oversize", Requirements: []string{"TEL-005"}, Status: SpecNotRun, Failure: "rig fault: board stopped responding"},
	}, extra...)
	faults := []RigFaultEvent{
		{At: t0.Add(10 * time.Second), Kind: "board-hung", Spec: "topic", Message: "board stopped responding"},
		{At: t0.Add(time.Second), Kind: "seq-gap", Message: "seq-gap in boot 1: expected seq 3, got 4"},
	}
	return BuildWithFaults(meta, BoardInfo{Profile: "sim"}, sampleCatalog(), specs, faults)
}

func reqStatus(r *Report, id string) Status {
	for _, q := range r.Requirements {
		if q.ID == id {
			return q.Status
		}
	}
	return ""
}

func TestRigFaultStatusesAndOutcome(t *testing.T) {
	r := rigReport()
	if got := reqStatus(r, "TEL-001"); got != RigFaultStatus {
		t.Errorf("TEL-001 with only a rig-fault spec: %s, want rig-fault (not judged)", got)
	}
	if got := reqStatus(r, "TEL-005"); got != NotCovered {
		t.Errorf("TEL-005 with only a not-run spec: %s, want not-covered", got)
	}
	if got := reqStatus(r, "CONN-001"); got != Pass {
		t.Errorf("CONN-001: %s", got)
	}
	if o := r.Outcome(); o != OutcomeRigFault || o.ExitStatus() != ExitRigFault || r.Summary.Outcome != o || r.Summary.Verdict {
		t.Errorf("outcome %s (summary %s, verdict %v)", o, r.Summary.Outcome, r.Summary.Verdict)
	}
	for _, a := range r.Summary.Areas {
		if a.Area == "TEL" && (a.MustCovered != 0 || a.MustRigFault != 1 || a.MustFailed != 0) {
			t.Errorf("TEL area %+v: a rig-fault requirement is neither covered nor failed", a)
		}
	}
	if reason, ok := RigFault(r); !ok || !strings.Contains(reason, "board stopped responding") {
		t.Errorf("RigFault = %q %v", reason, ok)
	}

	// A confirmed firmware failure (a failed spec without a rig fault)
	// wins: exit 1, and the rig fault is still among the reasons.
	f := rigReport(SpecResult{Name: "sas", Requirements: []string{"CONN-007"}, Status: SpecFailed, Failure: "expected sig"})
	if o := f.Outcome(); o != OutcomeFail || o.ExitStatus() != ExitFail {
		t.Errorf("with a firmware failure: %s", o)
	}
	if _, why := f.Verdict(); !strings.Contains(strings.Join(why, "\n"), "rig fault") {
		t.Errorf("why lacks the rig fault: %q", why)
	}
	// A rig fault and a pass on the same requirement: not judged.
	p := rigReport(SpecResult{Name: "topic again", Requirements: []string{"TEL-001"}, Status: SpecPassed})
	if got := reqStatus(p, "TEL-001"); got != RigFaultStatus {
		t.Errorf("TEL-001 passed once and rig-faulted once: %s", got)
	}
	// Interrupted wins over a rig fault; an interrupted spec is not a verdict.
	i := rigReport(SpecResult{Name: "cut", Requirements: []string{"CONN-004"}, Status: SpecInterrupted, Failure: "interrupted"})
	i.Run.Interrupted, i.Run.InterruptReason = true, "Interrupted by User"
	i = BuildWithFaults(i.Run, i.Board, sampleCatalog(), i.Specs, i.RigFaults)
	if o := i.Outcome(); o != OutcomeInterrupted || o.ExitStatus() != ExitFail || reqStatus(i, "CONN-004") != NotCovered {
		t.Errorf("interrupted: %s, CONN-004 %s", o, reqStatus(i, "CONN-004"))
	}
	// Schema 1: an interruption with an environment: reason and nothing
	// judged is a rig fault.
	old := Build(RunMeta{ID: "x", Interrupted: true, InterruptReason: "environment: no hello"}, BoardInfo{}, sampleCatalog(), nil)
	if o := old.Outcome(); o != OutcomeRigFault {
		t.Errorf("schema 1 environment failure: %s", o)
	}
}

func TestRigFaultWriters(t *testing.T) {
	dir := t.TempDir()
	if err := Write(dir, rigReport()); err != nil {
		t.Fatal(err)
	}
	// JSON: the new members, read back.
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.SchemaVersion != SchemaVersion || got.Run.RigFault == "" || len(got.RigFaults) != 2 || got.Summary.Outcome != OutcomeRigFault ||
		got.Specs[1].Status != SpecRigFault || got.Specs[1].RigFault == "" || got.Specs[2].Status != SpecNotRun {
		t.Fatalf("read back: %+v", got)
	}
	var raw map[string]any
	_ = json.Unmarshal([]byte(read(t, dir, JSONFile)), &raw)
	if raw["rigFaults"] == nil || raw["summary"].(map[string]any)["outcome"] != "rig-fault" {
		t.Errorf("report.json members: %v", raw["summary"])
	}

	// JUnit: the rig fault is an <error>, the run's end another, the
	// not-run spec a skip with its reason; nothing is a <failure>.
	var doc struct {
		Failures int `xml:"failures,attr"`
		Errors   int `xml:"errors,attr"`
		Skipped  int `xml:"skipped,attr"`
		Suites   []struct {
			Cases []struct {
				Name    string    `xml:"name,attr"`
				Failure *struct{} `xml:"failure"`
				Error   *struct {
					Type    string `xml:"type,attr"`
					Message string `xml:"message,attr"`
				} `xml:"error"`
				Skipped *struct {
					Message string `xml:"message,attr"`
				} `xml:"skipped"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal([]byte(read(t, dir, JUnitFile)), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Failures != 0 || doc.Errors != 2 || doc.Skipped != 1 {
		t.Errorf("junit counts failures %d errors %d skipped %d, want 0 2 1", doc.Failures, doc.Errors, doc.Skipped)
	}
	kinds := map[string]string{}
	for _, s := range doc.Suites {
		for _, c := range s.Cases {
			switch {
			case c.Error != nil:
				kinds[c.Name] = c.Error.Type + ": " + c.Error.Message
			case c.Skipped != nil:
				kinds[c.Name] = "skipped: " + c.Skipped.Message
			}
		}
	}
	if !strings.HasPrefix(kinds["[TEL-001] topic"], "rig-fault: rig fault: 18:00:10.000 board-hung") ||
		!strings.HasPrefix(kinds["hilrun run"], "rig-fault: rig fault: board stopped responding") ||
		kinds["[TEL-005] oversize"] != "skipped: not run: rig fault: board stopped responding" {
		t.Errorf("junit cases %q", kinds)
	}

	md := read(t, dir, MarkdownFile)
	for _, want := range []string{"⚠️ **RIG FAULT**", "**Rig fault ended the run:**", "1 rig fault (not judged)", "| TEL | 0 / 0 / 2 | 0 | 0 | 1 | 0 | 0 | 1 |",
		"### Rig faults and interruptions", "rig-fault **topic**", "rig fault outside any spec at 18:00:01.000: seq-gap"} {
		if !strings.Contains(md, want) {
			t.Errorf("summary.md lacks %q:\n%s", want, md)
		}
	}
	page := read(t, dir, HTMLFile)
	for _, want := range []string{`class="verdict rig">RIG FAULT</span>`, `id="rig-faults"`, `<span class="st st-rig-fault">rig-fault</span> topic`,
		`class="st st-rig-fault">rig-fault</td>`, "Outside any spec", `<dt>Rig fault</dt>`} {
		if !strings.Contains(page, want) {
			t.Errorf("report.html lacks %q", want)
		}
	}

	// Interrupted: the cut spec an <error type="interrupted">.
	i := rigReport(SpecResult{Name: "cut", Requirements: []string{"CONN-004"}, Status: SpecInterrupted, Failure: "interrupted: Interrupted by User"})
	i.Run.RigFault, i.Run.Interrupted, i.Run.InterruptReason = "", true, "Interrupted by User"
	i = BuildWithFaults(i.Run, i.Board, sampleCatalog(), i.Specs, nil)
	idir := t.TempDir()
	if err := Write(idir, i); err != nil {
		t.Fatal(err)
	}
	j := read(t, idir, JUnitFile)
	if strings.Contains(j, "<failure") || !strings.Contains(j, `type="interrupted"`) {
		t.Errorf("interrupted junit:\n%s", j)
	}
	if md := read(t, idir, MarkdownFile); !strings.Contains(md, "⏹️ **INTERRUPTED**") {
		t.Errorf("interrupted summary.md:\n%s", md)
	}
}

func TestMergeRigFaultAndInterrupted(t *testing.T) {
	intr := boardReport("h3", []SpecResult{{Name: "connects", Requirements: []string{"CONN-001"}, Status: SpecInterrupted}}, "Interrupted by User")
	m, err := Merge([]MergeInput{
		{Path: "a/report.json", Report: boardReport("h1", allPass, "")},
		{Path: "b/report.json", Report: rigReport()},
		{Path: "c/report.json", Report: intr},
	}, MergeOptions{Version: "t"})
	if err != nil {
		t.Fatal(err)
	}
	var vs []string
	for _, b := range m.Boards {
		vs = append(vs, b.Verdict)
	}
	if strings.Join(vs, " ") != "pass rig-fault interrupted" || m.Summary.Verdict != BoardInterrupted {
		t.Fatalf("board verdicts %v, merged %s", vs, m.Summary.Verdict)
	}
	// The rig-fault board keeps what it did judge.
	row := m.Requirements[0] // CONN-001, the first catalog row
	if row.ID != "CONN-001" || row.Statuses[1] != Pass {
		t.Errorf("CONN-001 row %+v", row)
	}
	for _, r := range m.Requirements {
		if r.ID == "TEL-001" && r.Statuses[1] != RigFaultStatus {
			t.Errorf("TEL-001 on the rig-fault board: %s", r.Statuses[1])
		}
	}
	dir := t.TempDir()
	if err := WriteMerged(dir, m); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, JUnitFile))
	if strings.Contains(string(b), "<failure") || !strings.Contains(string(b), `type="rig-fault"`) || !strings.Contains(string(b), `type="interrupted"`) {
		t.Errorf("merged junit:\n%s", b)
	}
	md, _ := os.ReadFile(filepath.Join(dir, MarkdownFile))
	for _, want := range []string{"⏹️ INTERRUPTED", "⚠️ RIG FAULT", "1 interrupted, 1 rig fault", "⚠️ rig fault (not judged)"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("merged summary.md lacks %q:\n%s", want, md)
		}
	}
	page, _ := os.ReadFile(filepath.Join(dir, HTMLFile))
	if !strings.Contains(string(page), `<span class="verdict rig">INTERRUPTED</span>`) || !strings.Contains(string(page), ">RIG</td>") {
		t.Errorf("merged report.html lacks the interrupted verdict or a RIG cell")
	}
}
