package reports

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

const secretSig = "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA%3D%3D"

func sampleCatalog() []RequirementRef {
	return []RequirementRef{
		{ID: "CONN-001", Title: "MQTT 3.1.1 over TLS", Area: "CONN", Severity: Must},
		{ID: "CONN-004", Title: "TLS 1.2 with SNI", Area: "CONN", Severity: Should},
		{ID: "CONN-007", Title: "SAS password layout", Area: "CONN", Severity: Must},
		{ID: "TEL-001", Title: "Telemetry topic", Area: "TEL", Severity: Must},
		{ID: "TEL-005", Title: "Message size limit 256 KB", Area: "TEL", Severity: Must},
		{ID: "MOD-001", Title: "Module ClientId", Area: "MOD", Severity: Must},
		{ID: "AWS-001", Title: "AWS MQTT over TLS", Area: "AWS", Severity: Must},
	}
}

func sampleReport() *Report {
	t0 := time.Date(2025, 11, 25, 18, 0, 0, 0, time.UTC)
	meta := RunMeta{
		ID: "run-42", Started: t0, Finished: t0.Add(83 * time.Second),
		Version: "v0.1.0-test", Host: "ci-runner", Command: []string{"hilrun", "run", "--board", "sim"},
		LabelFilter: "!slow", Defects: []string{"wrong-topic"}, HubVersion: "hub-0.1",
	}
	board := BoardInfo{Profile: "sim", Port: "/dev/pts/7", Firmware: FirmwareHello{
		Name: "hilrun-sim", Version: "0.1.0", Build: "abc123", Client: "paho.mqtt.golang", ClientVersion: "v1.5.1",
		Board: "virtual", Caps: []string{"sas", "twin", "methods"},
	}}
	specs := []SpecResult{
		{Name: "connects over TLS", Requirements: []string{"CONN-001"}, Status: SpecPassed, Duration: 1500 * time.Millisecond},
		{Name: "SAS token shape", Requirements: []string{"CONN-007", "CONN-001"}, Status: SpecFailed, Duration: 2 * time.Second,
			Failure:  "expected sr/sig/se once each\nsaw password SharedAccessSignature sr=hub%2Fdevices%2Fd1&sig=" + secretSig + "&se=1700000000",
			Location: "suites/connect.go:120",
			Wire: []WireEntry{
				{Offset: 10 * time.Millisecond, Dir: DirIn, Type: "CONNECT", Note: "password sig=" + secretSig},
				{Offset: 12 * time.Millisecond, Dir: DirOut, Type: "CONNACK", Flags: "rc=5"},
				{Offset: 13 * time.Millisecond, Dir: DirEvent, Type: "conn-rejected", Note: "CONN-007 <script>alert(1)</script>"},
				{Offset: 20 * time.Millisecond, Dir: DirIn, Type: "PUBLISH", Topic: "devices/d1/messages/events/", QoS: 1, Payload: `{"t":"<script>x</script>"}`},
			},
			Console: []ConsoleLine{
				{Offset: 5 * time.Millisecond, Stream: "rx", Text: "I (123) connecting with HostName=h;DeviceId=d1;SharedAccessKey=c2VjcmV0a2V5"},
				{Offset: 6 * time.Millisecond, Stream: "rx", Text: `config {"key":"c2VjcmV0a2V5","host":"h"}`},
			}},
		{Name: "telemetry topic", Requirements: []string{"TEL-001"}, Status: SpecPassed, Duration: time.Second},
		{Name: "oversize telemetry", Requirements: []string{"TEL-005"}, Status: SpecSkipped},
		{Name: "module client id", Requirements: []string{"MOD-001"}, Status: SpecNotApplicable},
		{Name: "typo spec", Requirements: []string{"TEL-999"}, Status: SpecPassed},
	}
	return Build(meta, board, sampleCatalog(), specs)
}

func TestRequirementStatus(t *testing.T) {
	sp := func(ss ...SpecStatus) []SpecResult {
		var out []SpecResult
		for _, s := range ss {
			out = append(out, SpecResult{Status: s})
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		specs []SpecResult
		want  Status
	}{
		{"no specs", nil, NotCovered},
		{"one passed", sp(SpecPassed), Pass},
		{"all passed", sp(SpecPassed, SpecPassed), Pass},
		{"one failed", sp(SpecFailed), Fail},
		{"failed wins over passed", sp(SpecPassed, SpecFailed), Fail},
		{"failed wins over n/a", sp(SpecNotApplicable, SpecFailed), Fail},
		{"all n/a", sp(SpecNotApplicable, SpecNotApplicable), NotApplicable},
		{"passed and n/a", sp(SpecPassed, SpecNotApplicable), Pass},
		{"only skipped", sp(SpecSkipped), NotCovered},
		{"skipped and n/a", sp(SpecSkipped, SpecNotApplicable), NotCovered},
		{"passed and skipped", sp(SpecPassed, SpecSkipped), Pass},
	} {
		if got := RequirementStatus(tc.specs); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestVerdict(t *testing.T) {
	req := func(id, sev string, st Status) RequirementResult {
		r := RequirementResult{RequirementRef: RequirementRef{ID: id, Severity: sev}, Status: st}
		if st == Fail {
			r.Specs = []SpecResult{{Name: "s-" + id, Status: SpecFailed, Failure: "boom\nmore"}}
		}
		return r
	}
	for _, tc := range []struct {
		name        string
		reqs        []RequirementResult
		interrupted bool
		ok          bool
		whyHas      string
	}{
		{"empty", nil, false, true, ""},
		{"all pass", []RequirementResult{req("A-001", Must, Pass), req("A-002", Should, Pass)}, false, true, ""},
		{"uncovered MUST is not a failure", []RequirementResult{req("A-001", Must, NotCovered)}, false, true, ""},
		{"n/a MUST is not a failure", []RequirementResult{req("A-001", Must, NotApplicable)}, false, true, ""},
		{"MUST failed", []RequirementResult{req("A-001", Must, Pass), req("A-002", Must, Fail)}, false, false, "A-002 (MUST) failed: s-A-002: boom"},
		{"SHOULD failed", []RequirementResult{req("A-003", Should, Fail)}, false, false, "A-003 (SHOULD) failed"},
		{"interrupted", []RequirementResult{req("A-001", Must, Pass)}, true, false, "run interrupted: board hung"},
		{"no spec judged", nil, false, false, "no spec ran"},
	} {
		r := &Report{Requirements: tc.reqs}
		if tc.name != "no spec judged" {
			r.Specs = []SpecResult{{Name: "judged", Status: SpecPassed}}
		}
		r.Run.Interrupted = tc.interrupted
		r.Run.InterruptReason = "board hung"
		ok, why := r.Verdict()
		if ok != tc.ok {
			t.Errorf("%s: ok=%v why=%q", tc.name, ok, why)
		}
		if tc.whyHas != "" && !strings.Contains(strings.Join(why, "\n"), tc.whyHas) {
			t.Errorf("%s: why=%q lacks %q", tc.name, why, tc.whyHas)
		}
		if ok && len(why) != 0 {
			t.Errorf("%s: ok with reasons %q", tc.name, why)
		}
	}
}

func TestBuild(t *testing.T) {
	r := sampleReport()
	want := map[string]Status{
		"CONN-001": Fail, "CONN-004": NotCovered, "CONN-007": Fail, "TEL-001": Pass,
		"TEL-005": NotCovered, "MOD-001": NotApplicable, "AWS-001": NotCovered,
	}
	if len(r.Requirements) != len(want) {
		t.Fatalf("%d requirement rows", len(r.Requirements))
	}
	for i, q := range r.Requirements {
		if q.ID != sampleCatalog()[i].ID {
			t.Errorf("row %d is %s: catalog order lost", i, q.ID)
		}
		if q.Status != want[q.ID] {
			t.Errorf("%s: %s, want %s", q.ID, q.Status, want[q.ID])
		}
	}
	if got := len(r.Requirements[0].Specs); got != 2 {
		t.Errorf("CONN-001 covered by %d specs, want 2", got)
	}
	if r.Run.Wall != 83*time.Second {
		t.Errorf("wall %v", r.Run.Wall)
	}
	if r.Specs[0].Area != "CONN" || r.Specs[5].Area != "TEL" {
		t.Errorf("spec areas %q %q", r.Specs[0].Area, r.Specs[5].Area)
	}
	if !reflect.DeepEqual(r.Summary.Unmapped, []string{"typo spec: TEL-999"}) {
		t.Errorf("unmapped %q", r.Summary.Unmapped)
	}
	s := r.Summary
	if s.Verdict || len(s.Why) != 2 {
		t.Errorf("verdict %v %q", s.Verdict, s.Why)
	}
	if s.Requirements[Fail] != 2 || s.Requirements[Pass] != 1 || s.Requirements[NotCovered] != 3 || s.Requirements[NotApplicable] != 1 {
		t.Errorf("requirement counts %v", s.Requirements)
	}
	if s.Specs[SpecPassed] != 3 || s.Specs[SpecFailed] != 1 || s.Specs[SpecSkipped] != 1 || s.Specs[SpecNotApplicable] != 1 {
		t.Errorf("spec counts %v", s.Specs)
	}
	wantAreas := []AreaSummary{
		{Area: "CONN", Must: 2, MustCovered: 2, MustFailed: 2},
		{Area: "TEL", Must: 2, MustCovered: 1, MustPassed: 1},
		{Area: "MOD", Must: 1, MustCovered: 1},
		{Area: "AWS", Must: 1},
	}
	for i, w := range wantAreas {
		a := s.Areas[i]
		a.Counts = nil
		if !reflect.DeepEqual(a, w) {
			t.Errorf("area %d = %+v, want %+v", i, a, w)
		}
	}
	if s.Areas[0].Counts[NotCovered] != 1 || s.Areas[0].Counts[Fail] != 2 {
		t.Errorf("CONN counts %v", s.Areas[0].Counts)
	}
}

func writeSample(t *testing.T) (string, *Report) {
	t.Helper()
	dir := t.TempDir()
	r := sampleReport()
	if err := Write(dir, r); err != nil {
		t.Fatal(err)
	}
	return dir, r
}

func read(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestJUnit(t *testing.T) {
	dir, _ := writeSample(t)
	var doc struct {
		XMLName  xml.Name `xml:"testsuites"`
		Tests    int      `xml:"tests,attr"`
		Failures int      `xml:"failures,attr"`
		Skipped  int      `xml:"skipped,attr"`
		Suites   []struct {
			Name     string `xml:"name,attr"`
			Tests    int    `xml:"tests,attr"`
			Failures int    `xml:"failures,attr"`
			Skipped  int    `xml:"skipped,attr"`
			Cases    []struct {
				Name  string `xml:"name,attr"`
				Props []struct {
					Name  string `xml:"name,attr"`
					Value string `xml:"value,attr"`
				} `xml:"properties>property"`
				Failure *struct {
					Message string `xml:"message,attr"`
					Body    string `xml:",chardata"`
				} `xml:"failure"`
				Skipped *struct {
					Message string `xml:"message,attr"`
				} `xml:"skipped"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	raw := read(t, dir, JUnitFile)
	if err := xml.Unmarshal([]byte(raw), &doc); err != nil {
		t.Fatalf("junit.xml does not parse: %v\n%s", err, raw)
	}
	if doc.Tests != 6 || doc.Failures != 1 || doc.Skipped != 2 {
		t.Errorf("totals tests=%d failures=%d skipped=%d", doc.Tests, doc.Failures, doc.Skipped)
	}
	var names []string
	for _, s := range doc.Suites {
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "CONN,TEL,MOD" {
		t.Errorf("suites %v (areas without specs are omitted, in catalog order)", names)
	}
	conn := doc.Suites[0]
	if conn.Tests != 2 || conn.Failures != 1 {
		t.Errorf("CONN suite %+v", conn)
	}
	fc := conn.Cases[1]
	if fc.Name != "[CONN-007 CONN-001] SAS token shape" {
		t.Errorf("case name %q", fc.Name)
	}
	if len(fc.Props) != 2 || fc.Props[0].Value != "CONN-007" {
		t.Errorf("props %+v", fc.Props)
	}
	if fc.Failure == nil || fc.Failure.Message != "expected sr/sig/se once each" ||
		!strings.Contains(fc.Failure.Body, "CONNACK") || !strings.Contains(fc.Failure.Body, "suites/connect.go:120") {
		t.Errorf("failure %+v", fc.Failure)
	}
	if doc.Suites[2].Cases[0].Skipped == nil || !strings.Contains(doc.Suites[2].Cases[0].Skipped.Message, "not applicable") {
		t.Errorf("MOD case not skipped as n/a")
	}
	if strings.Contains(raw, secretSig) {
		t.Error("junit.xml leaks the SAS signature")
	}
}

func TestHTML(t *testing.T) {
	dir, _ := writeSample(t)
	page := read(t, dir, HTMLFile)
	// Self-contained: nothing is loaded from elsewhere (documentation
	// links are plain <a href>, which load nothing), and the only script
	// is the report's own inline filter.
	ext := regexp.MustCompile(`(?i)(src\s*=|<link|@import|url\()`)
	if m := ext.FindString(page); m != "" {
		t.Errorf("external reference %q", m)
	}
	if n := strings.Count(strings.ToLower(page), "<script"); n != 1 || !strings.Contains(page, `<script id="report-filter">`) {
		t.Errorf("report.html has %d scripts, want only the inline filter", n)
	}
	if strings.Contains(page, "<script>x") {
		t.Error("unescaped <script> payload in report.html")
	}
	if !strings.Contains(page, "&lt;script&gt;") {
		t.Error("escaped payload missing")
	}
	for _, want := range []string{"<style>", "──▶", "◀──", "devices/d1/messages/events/", "id=\"req-CONN-007\"", "I (123) connecting", "FAIL"} {
		if !strings.Contains(page, want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	if strings.Contains(page, secretSig) || strings.Contains(page, "c2VjcmV0a2V5") {
		t.Error("report.html leaks a secret")
	}
}

func TestMarkdown(t *testing.T) {
	dir, _ := writeSample(t)
	s := read(t, dir, MarkdownFile)
	for _, want := range []string{"## hilrun conformance: ❌ **FAIL**", "| CONN | 0 / 2 / 2 | 0 | 2 | 0 | 0 | 0 | 1 |", "**CONN-007** (MUST)", "wall time 1m23s", "TEL-999"} {
		if !strings.Contains(s, want) {
			t.Errorf("summary.md lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "<script") || strings.Contains(s, secretSig) {
		t.Error("summary.md unsafe")
	}
}

func TestWriteLoadRoundTrip(t *testing.T) {
	dir, r := writeSample(t)
	got, err := Load(filepath.Join(dir, JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	want := r.Redacted()
	if !reflect.DeepEqual(got, want) {
		a, _ := json.MarshalIndent(got, "", " ")
		b, _ := json.MarshalIndent(want, "", " ")
		t.Fatalf("round trip differs:\n%s\n---\n%s", a, b)
	}
	if got.Specs[1].Wire[0].Offset != 10*time.Millisecond || got.Run.Wall != 83*time.Second || got.Specs[0].Duration != 1500*time.Millisecond {
		t.Error("durations not restored")
	}
	// Load accepts the directory too, and Render reproduces the same files.
	again, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	dir2 := t.TempDir()
	if err := Render(dir2, again); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{JUnitFile, HTMLFile, MarkdownFile} {
		if read(t, dir, f) != read(t, dir2, f) {
			t.Errorf("%s differs after Load+Render", f)
		}
	}
	// The caller's report is not modified by redaction.
	if !strings.Contains(r.Specs[1].Failure, secretSig) {
		t.Error("Write modified the caller's report")
	}
	raw := read(t, dir, JSONFile)
	if strings.Contains(raw, secretSig) || strings.Contains(raw, "c2VjcmV0a2V5") {
		t.Error("report.json leaks a secret")
	}
	var generic map[string]any
	if err := json.Unmarshal([]byte(raw), &generic); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"schemaVersion", "run", "board", "requirements", "specs", "summary"} {
		if _, ok := generic[k]; !ok {
			t.Errorf("report.json lacks %q", k)
		}
	}
	if _, ok := generic["run"].(map[string]any)["wallMs"]; !ok {
		t.Error("run.wallMs missing")
	}
}

func TestLoadRejectsOtherSchema(t *testing.T) {
	p := filepath.Join(t.TempDir(), "r.json")
	os.WriteFile(p, []byte(`{"schemaVersion": 99}`), 0o644)
	if _, err := Load(p); err == nil {
		t.Error("schema 99 accepted")
	}
}

func TestWriteEmptyInterrupted(t *testing.T) {
	// A run that died before any spec still leaves a complete report.
	dir := t.TempDir()
	r := Build(RunMeta{ID: "x", Interrupted: true, InterruptReason: "SIGINT"}, BoardInfo{}, sampleCatalog(), nil)
	if err := Write(dir, r); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ok, why := got.Verdict(); ok || len(why) != 1 {
		t.Errorf("interrupted verdict %v %q", ok, why)
	}
	// The interruption is one errored case, never a failure.
	var doc struct {
		Tests    int `xml:"tests,attr"`
		Errors   int `xml:"errors,attr"`
		Failures int `xml:"failures,attr"`
	}
	if err := xml.Unmarshal([]byte(read(t, dir, JUnitFile)), &doc); err != nil || doc.Tests != 1 || doc.Errors != 1 || doc.Failures != 0 {
		t.Errorf("empty interrupted junit: %v %+v", err, doc)
	}
	if got.Outcome() != OutcomeInterrupted || got.Outcome().ExitStatus() != ExitFail {
		t.Errorf("outcome %s", got.Outcome())
	}
}

func TestRedactedCopiesEverything(t *testing.T) {
	r := sampleReport()
	r.Run.Command = append(r.Run.Command, "--conn", "HostName=h;DeviceId=d;SharedAccessKey=c2VjcmV0")
	r.Board.Port = "sig=abcdefgh"
	red := r.Redacted()
	b, _ := json.Marshal(red)
	for _, leak := range []string{"c2VjcmV0", "abcdefgh", secretSig} {
		if bytes.Contains(b, []byte(leak)) {
			t.Errorf("redacted report still holds %q", leak)
		}
	}
}
