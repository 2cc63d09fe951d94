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

// The four kinds of run a report must render distinctly (issue 16): a
// pass, a failure, a filtered run and a rig fault before the first spec;
// plus a run whose filter selected nothing.

func issue16Catalog() []RequirementRef {
	return []RequirementRef{
		{ID: "CONN-001", Title: "MQTT 3.1.1 over TLS on 8883", Area: "CONN", Severity: Must,
			Text: "The device talks MQTT 3.1.1 over TLS on port 8883.", Refs: []string{"002 L13724-13727"}},
		{ID: "TWIN-010", Title: "Twin resync after reconnect", Area: "TWIN", Severity: Must, Capability: "twin",
			Text: "After every reconnect the device GETs the twin.", Refs: []string{"002 L14007"}, Coverage: issue16Coverage()},
		{ID: "TWIN-011", Title: "Reported key rules", Area: "TWIN", Severity: Must, Capability: "twin"},
		{ID: "TEL-001", Title: "Telemetry topic", Area: "TEL", Severity: Must},
		{ID: "AWS-001", Title: "AWS MQTT over TLS on 8883", Area: "AWS", Severity: Must, Capability: "aws"},
	}
}

// issue16Coverage is TWIN-010's row of a dimension table: one dimension
// covered, one partial, one gap.
func issue16Coverage() *Coverage {
	return &Coverage{Dimensions: 3, Covered: 1, Partial: 1, Gaps: 1, Specs: 2, SingleExample: false, Items: []CoverageDimension{
		{Name: "order", State: "covered", Cases: []string{"SUBSCRIBE desired, then GET"}, CoveredBy: []string{"twin resync"}},
		{Name: "reconnect", State: "partial", Cases: []string{"hub drop", "network cut"}, CoveredBy: []string{"twin resync after drop"}, Gap: "only the hub drop"},
		{Name: "version", State: "gap", Cases: []string{"past 65535"}, Gap: "versions <stay> small"},
	}}
}

var issue16Board = BoardInfo{Profile: "sim", Port: "/dev/pts/3", Firmware: FirmwareHello{Name: "hilrun-sim", Version: "0.1.0",
	Build: "(devel)", Client: "paho.mqtt.golang", ClientVersion: "v1.5.1", Board: "sim0", Caps: []string{"sas", "twin"}}}

func issue16Meta() RunMeta {
	t0 := time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC)
	return RunMeta{ID: "r16", Started: t0, Finished: t0.Add(30 * time.Second), Version: "dev", Host: "ci",
		Command: []string{"/tmp/go-build123/b001/exe/hilrun", "run"}, HubVersion: "0.1.0"}
}

const issue16Failure = "TWIN-010: expected on the wire: a twin GET on the new connection (002 L14007); not seen within the deadline. Seen:\n" +
	"  +  0.000s   hub   fault       — refusing CONNECT\n  +  2.090s dev→hub CONNECT\n" +
	"configure {\"trust\":\"-----BEGIN CERTIFICATE-----\nMIIBsTCCAVeg\n-----END CERTIFICATE-----\"}"

func issue16Reports() map[string]*Report {
	pass := []SpecResult{
		{Name: "connects", Requirements: []string{"CONN-001"}, Status: SpecPassed, Duration: time.Second},
		{Name: "twin resync", Requirements: []string{"TWIN-010"}, Status: SpecPassed, Duration: 2 * time.Second},
		{Name: "twin keys", Requirements: []string{"TWIN-011"}, Status: SpecPassed},
		{Name: "telemetry", Requirements: []string{"TEL-001"}, Status: SpecPassed},
	}
	fail := append([]SpecResult(nil), pass...)
	fail[1] = SpecResult{Name: "twin resync", Requirements: []string{"TWIN-010"}, Area: "TWIN", Status: SpecFailed, Duration: 12 * time.Second,
		Failure: issue16Failure, Location: "twin.go:253",
		Wire: []WireEntry{
			{Offset: 7 * time.Millisecond, Dir: DirIn, Type: "CONNECT"},
			{Offset: 8 * time.Millisecond, Dir: DirOut, Type: "CONNACK", Note: "rc 0"},
			{Offset: 9 * time.Millisecond, Dir: DirEvent, Type: "violation", Note: "TWIN-003 unknown $rid"},
		},
		Console: []ConsoleLine{{Offset: time.Millisecond, Stream: "tx", Text: `{"op":"trust.add","args":{"pem":"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}}`}}}
	filteredMeta := issue16Meta()
	filteredMeta.LabelFilter = "TWIN"
	filteredMeta.NotSelected = []string{"CONN-001", "TEL-001"}
	rigMeta := issue16Meta()
	rigMeta.RigFault = "board did not come up: cannot open serial port /dev/ttyUSB9: no such file or directory"
	emptyMeta := issue16Meta()
	emptyMeta.LabelFilter = "TWIN-010 && TEL-001"
	return map[string]*Report{
		"pass":      Build(issue16Meta(), issue16Board, issue16Catalog(), pass),
		"fail":      Build(issue16Meta(), issue16Board, issue16Catalog(), fail),
		"filtered":  Build(filteredMeta, issue16Board, issue16Catalog(), pass[1:3]),
		"rig-fault": Build(rigMeta, BoardInfo{Profile: "serial", Port: "/dev/ttyUSB9"}, issue16Catalog(), nil),
		"no-specs":  Build(emptyMeta, issue16Board, issue16Catalog(), nil),
	}
}

// writeIssue16 writes the reports into dir/<kind>/.
func writeIssue16(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for kind, r := range issue16Reports() {
		d := filepath.Join(dir, kind)
		if err := Write(d, r); err != nil {
			t.Fatal(err)
		}
		out[kind] = d
	}
	return out
}

func readIn(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestIssue16Outcomes(t *testing.T) {
	for kind, want := range map[string]Outcome{"pass": OutcomePass, "fail": OutcomeFail, "filtered": OutcomePass, "rig-fault": OutcomeRigFault, "no-specs": OutcomeNoSpecs} {
		r := issue16Reports()[kind]
		if got := r.Outcome(); got != want {
			t.Errorf("%s: outcome %s, want %s", kind, got, want)
		}
	}
	if s := OutcomeNoSpecs.ExitStatus(); s != ExitNoSpecs || s == ExitPass {
		t.Errorf("no-specs exit status %d", s)
	}
	if ok, _ := issue16Reports()["no-specs"].Verdict(); ok {
		t.Error("a run that judged no spec passed (a false green)")
	}
}

// A filtered run says so on every surface, and what it left out is
// not-run, not not-covered.
func TestIssue16FilteredEverywhere(t *testing.T) {
	dirs := writeIssue16(t, t.TempDir())
	d := dirs["filtered"]
	var js struct {
		Summary      Summary `json:"summary"`
		Requirements []RequirementResult
	}
	if err := json.Unmarshal([]byte(readIn(t, d, JSONFile)), &js); err != nil {
		t.Fatal(err)
	}
	if !js.Summary.Filtered || js.Summary.Selection != "label filter TWIN" {
		t.Errorf("report.json summary filtered=%v selection=%q", js.Summary.Filtered, js.Summary.Selection)
	}
	for _, q := range js.Requirements {
		want := map[string]Status{"CONN-001": NotRun, "TEL-001": NotRun, "TWIN-010": Pass, "TWIN-011": Pass, "AWS-001": NotCovered}[q.ID]
		if q.Status != want {
			t.Errorf("%s: %s, want %s", q.ID, q.Status, want)
		}
	}
	if md := readIn(t, d, MarkdownFile); !strings.Contains(md, "PASS** (filtered run)") || !strings.Contains(md, "**Filtered run** (label filter TWIN)") {
		t.Errorf("summary.md does not say filtered:\n%s", md)
	}
	var ju junitSuites
	if err := xml.Unmarshal([]byte(readIn(t, d, JUnitFile)), &ju); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ju.Name, "filtered: label filter TWIN") {
		t.Errorf("junit testsuites name %q", ju.Name)
	}
	h := readIn(t, d, HTMLFile)
	for _, w := range []string{`id="filtered-badge"`, `id="filtered-notice"`, "not run (filtered out)"} {
		if !strings.Contains(h, w) {
			t.Errorf("report.html lacks %q", w)
		}
	}
	if p := readIn(t, dirs["pass"], HTMLFile); strings.Contains(p, `id="filtered-badge"`) {
		t.Error("a whole-suite run is marked filtered")
	}
}

// A rig fault before the first spec: never a FAIL badge, no empty board
// fields, no garbled Markdown, JUnit an <error> (not tests="0").
func TestIssue16RigFaultEverywhere(t *testing.T) {
	d := writeIssue16(t, t.TempDir())["rig-fault"]
	h := readIn(t, d, HTMLFile)
	if strings.Contains(h, ">FAIL<") || !strings.Contains(h, `data-outcome="rig-fault"`) || !strings.Contains(h, "not identified") {
		t.Error("report.html of a rig fault shows FAIL or empty board fields")
	}
	md := readIn(t, d, MarkdownFile)
	if strings.Contains(md, "( )") || strings.Contains(md, "–  (") || !strings.Contains(md, "not identified") {
		t.Errorf("summary.md garbled:\n%s", md)
	}
	var ju junitSuites
	if err := xml.Unmarshal([]byte(readIn(t, d, JUnitFile)), &ju); err != nil {
		t.Fatal(err)
	}
	if ju.Tests == 0 || ju.Errors == 0 || ju.Failures != 0 {
		t.Errorf("junit tests=%d errors=%d failures=%d: a rig fault must be an error", ju.Tests, ju.Errors, ju.Failures)
	}
}

func TestIssue16NoSpecsEverywhere(t *testing.T) {
	d := writeIssue16(t, t.TempDir())["no-specs"]
	var ju junitSuites
	if err := xml.Unmarshal([]byte(readIn(t, d, JUnitFile)), &ju); err != nil {
		t.Fatal(err)
	}
	if ju.Tests != 1 || ju.Errors != 1 || !strings.Contains(readIn(t, d, JUnitFile), `type="no-specs"`) {
		t.Errorf("junit of a no-spec run: tests=%d errors=%d", ju.Tests, ju.Errors)
	}
	if md := readIn(t, d, MarkdownFile); !strings.Contains(md, "NO SPEC RUN") || !strings.Contains(md, "No spec ran") {
		t.Errorf("summary.md:\n%s", md)
	}
	if h := readIn(t, d, HTMLFile); strings.Contains(h, ">PASS<") || !strings.Contains(h, `id="nospec-notice"`) {
		t.Error("report.html of a no-spec run")
	}
}

// The failing report: requirement text, doc link, expectation in words
// (not cut before "Seen:"), marked wire sequence, folded PEMs, IDs that do
// not wrap, no build path as the command, the other cloud's area left out.
func TestIssue16FailureDocument(t *testing.T) {
	d := writeIssue16(t, t.TempDir())["fail"]
	h := readIn(t, d, HTMLFile)
	for _, w := range []string{
		"After every reconnect the device GETs the twin.",
		`<a class="docref" href="https://learn.microsoft.com/azure/iot-hub/">Azure IoT Hub documentation</a> L14007`,
		"<b>Expected:</b> TWIN-010: expected on the wire: a twin GET on the new connection (002 L14007); not seen within the deadline.</p>",
		`<tr class="missing">`, `<tr class="wrong">`, "[certificate, ", `class="id"`, "<code>hilrun run</code>",
		"development build", "@media print", `id="chart"`, `id="failures"`, `id="filter"`,
	} {
		if !strings.Contains(h, w) {
			t.Errorf("report.html lacks %q", w)
		}
	}
	for _, bad := range []string{"/tmp/go-build", "MIIBsTCCAVeg", `id="area-AWS"`, `data-area="AWS"`} {
		if strings.Contains(h, bad) {
			t.Errorf("report.html contains %q", bad)
		}
	}
	if md := readIn(t, d, MarkdownFile); strings.Contains(md, "| AWS |") || strings.Contains(md, "Seen:") {
		t.Errorf("summary.md lists AWS or cuts the claim:\n%s", md)
	}
	ju := readIn(t, d, JUnitFile)
	if !strings.Contains(ju, `message="TWIN-010: expected on the wire: a twin GET on the new connection (002 L14007); not seen within the deadline."`) {
		t.Errorf("junit failure message is not the whole claim:\n%s", ju)
	}
}

// JUnit names carry the requirement IDs once, though the suite's spec
// names end in "[ID,ID]".
func TestJUnitCaseNameIDsOnce(t *testing.T) {
	for _, tc := range []struct {
		sp   SpecResult
		want string
	}{
		{SpecResult{Name: "twin resync [TWIN-010]", Requirements: []string{"TWIN-010"}}, "[TWIN-010] twin resync"},
		{SpecResult{Name: "backoff [TWIN-005,RECON-003]", Requirements: []string{"TWIN-005", "RECON-003"}}, "[TWIN-005 RECON-003] backoff"},
		{SpecResult{Name: "plain", Requirements: []string{"CONN-001"}}, "[CONN-001] plain"},
		{SpecResult{Name: "no ids"}, "no ids"},
	} {
		if got := caseName(tc.sp); got != tc.want {
			t.Errorf("caseName(%q) = %q, want %q", tc.sp.Name, got, tc.want)
		}
	}
}

// A board that judged no spec never makes a merged report pass.
func TestMergeNoSpecsBoardIsNotAPass(t *testing.T) {
	rs := issue16Reports()
	m, err := Merge([]MergeInput{{Path: "a/report.json", Report: rs["pass"]}, {Path: "b/report.json", Report: rs["no-specs"]}}, MergeOptions{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if m.Summary.Verdict == BoardPass || m.Boards[1].Verdict == BoardPass {
		t.Errorf("merged verdict %s, board b %s: a no-spec board passed", m.Summary.Verdict, m.Boards[1].Verdict)
	}
}

func TestFoldPEM(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"a -----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE----- b", "a [certificate, 58 bytes, folded] b"},
		{`{"pem":"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}`, `{"pem":"[certificate, 60 bytes, folded]\n"}`},
		{"two -----BEGIN A-----x-----END A----- and -----BEGIN B-----y-----END B-----", "two [a, 33 bytes, folded] and [b, 33 bytes, folded]"},
		{"unterminated -----BEGIN CERTIFICATE-----\nMIIB", "unterminated -----BEGIN CERTIFICATE-----\nMIIB"},
		{"plain", "plain"},
	} {
		if got := FoldPEM(tc.in); got != tc.want {
			t.Errorf("FoldPEM(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzFoldPEM(f *testing.F) {
	f.Add("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----")
	f.Add("-----BEGIN -----END -----")
	f.Fuzz(func(t *testing.T, s string) {
		out := FoldPEM(s)
		if len(out) > len(s)+64*strings.Count(s, "-----BEGIN ") {
			t.Fatalf("FoldPEM grew %d → %d bytes", len(s), len(out))
		}
	})
}

// An AWS run's own scope (label AWS) is not a filtered run; a user filter
// inside it is.
func TestAWSScopeIsNotAFilter(t *testing.T) {
	for _, tc := range []struct {
		filter, cloud string
		filtered      bool
		selection     string
	}{
		{"AWS", "aws", false, ""},
		{"(AWS-003) && AWS", "aws", true, "label filter AWS-003"},
		{"AWS", "azure", true, "label filter AWS"},
		{"", "", false, ""},
	} {
		r := &Report{Run: RunMeta{LabelFilter: tc.filter, Cloud: tc.cloud}}
		if r.Filtered() != tc.filtered || r.Selection() != tc.selection {
			t.Errorf("%q on %q: filtered %v selection %q", tc.filter, tc.cloud, r.Filtered(), r.Selection())
		}
	}
}
