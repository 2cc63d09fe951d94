package reports

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// boardReport builds a run of the sample catalog on one board.
func boardReport(host string, specs []SpecResult, interrupt string) *Report {
	t0 := time.Date(2025, 11, 25, 18, 0, 0, 0, time.UTC)
	meta := RunMeta{ID: "run-" + host, Started: t0, Finished: t0.Add(40 * time.Second), Version: "v1", Host: host, HubVersion: "hub-1"}
	if interrupt != "" {
		meta.Interrupted, meta.InterruptReason = true, interrupt
	}
	b := BoardInfo{Profile: "sim", Firmware: FirmwareHello{Name: "hilrun-sim", Version: "0.1", Build: "abc", Client: "paho", ClientVersion: "1.5", Caps: []string{"sas"}}}
	if interrupt != "" && len(specs) == 0 {
		b = BoardInfo{}
	}
	return Build(meta, b, sampleCatalog(), specs)
}

var (
	allPass = []SpecResult{
		{Name: "connects", Requirements: []string{"CONN-001"}, Status: SpecPassed, Duration: time.Second},
		{Name: "sas", Requirements: []string{"CONN-007"}, Status: SpecPassed},
		{Name: "topic", Requirements: []string{"TEL-001"}, Status: SpecPassed},
		{Name: "module", Requirements: []string{"MOD-001"}, Status: SpecNotApplicable},
	}
	telFails = []SpecResult{
		{Name: "connects", Requirements: []string{"CONN-001"}, Status: SpecPassed},
		{Name: "sas", Requirements: []string{"CONN-007"}, Status: SpecPassed},
		{Name: "topic", Requirements: []string{"TEL-001"}, Status: SpecFailed, Failure: "expected devices/d/messages/events/\nsaw sig=" + secretSig, Location: "suites/telemetry.go:10"},
	}
)

func TestRigFault(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rep    *Report
		want   bool
		reason string
	}{
		{"clean pass", boardReport("h", allPass, ""), false, ""},
		{"no hello after reset", boardReport("h", nil, "environment: board esp-1 does not answer hello (is the instrumented firmware flashed?)"), true, "board esp-1 does not answer hello (is the instrumented firmware flashed?)"},
		{"explicit rig fault", boardReport("h", nil, "rig fault: port /dev/ttyUSB0 vanished"), true, "port /dev/ttyUSB0 vanished"},
		{"interrupted by the user", boardReport("h", nil, "Interrupted by User"), false, ""},
		{"environment failure after specs ran", boardReport("h", allPass[:1], "environment: board hung"), false, ""},
		{"skipped specs only still a rig fault", boardReport("h", []SpecResult{{Name: "x", Requirements: []string{"TEL-005"}, Status: SpecSkipped}}, "environment: flash failed"), true, "flash failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reason, ok := RigFault(tc.rep)
			if ok != tc.want || reason != tc.reason {
				t.Errorf("RigFault = %q, %v; want %q, %v", reason, ok, tc.reason, tc.want)
			}
		})
	}
}

func TestMerge(t *testing.T) {
	for _, tc := range []struct {
		name        string
		inputs      []MergeInput
		verdict     string
		ids         []string
		boardVerdts []string
		row         string   // requirement to check in the matrix
		cells       []Status // its statuses per board
		warning     string   // a warning that must be present
		err         string   // expected error substring
	}{
		{
			name: "three boards pass",
			inputs: []MergeInput{
				{Path: "pool/a/report.json", Report: boardReport("h1", allPass, "")},
				{Path: "pool/b/report.json", Report: boardReport("h1", allPass, "")},
				{Path: "pool/c/report.json", Report: boardReport("h1", allPass, "")},
			},
			verdict: BoardPass, ids: []string{"a", "b", "c"}, boardVerdts: []string{"pass", "pass", "pass"},
			row: "MOD-001", cells: []Status{NotApplicable, NotApplicable, NotApplicable},
		},
		{
			name: "one fails one rig fault",
			inputs: []MergeInput{
				{Path: "x/esp-1/report.json", Report: boardReport("bench", allPass, "")},
				{Path: "x/esp-2/report.json", Report: boardReport("bench", telFails, "")},
				{Path: "x/esp-3/report.json", Report: boardReport("bench", nil, "environment: no hello after reset")},
			},
			verdict: BoardFail, ids: []string{"esp-1", "esp-2", "esp-3"}, boardVerdts: []string{"pass", "fail", "rig-fault"},
			row: "TEL-001", cells: []Status{Pass, Fail, NotCovered},
		},
		{
			name: "only rig faults besides passes",
			inputs: []MergeInput{
				{Path: "a/report.json", Report: boardReport("h", allPass, "")},
				{ID: "b", RigFault: "child exited 3: port missing", Profile: "esp32"},
			},
			verdict: BoardRigFault, ids: []string{"a", "b"}, boardVerdts: []string{"pass", "rig-fault"},
			row: "CONN-001", cells: []Status{Pass, NotCovered},
		},
		{
			name: "exit status overrides a passing report",
			inputs: []MergeInput{
				{ID: "a", Report: boardReport("h", allPass, ""), RigFault: "board lock not acquired"},
			},
			verdict: BoardRigFault, ids: []string{"a"}, boardVerdts: []string{"rig-fault"},
		},
		{
			name: "same board id from two hosts",
			inputs: []MergeInput{
				{Path: "host1/esp32/report.json", Report: boardReport("runner-1", allPass, "")},
				{Path: "host2/esp32/report.json", Report: boardReport("runner-2", telFails, "")},
			},
			verdict: BoardFail, ids: []string{"esp32@runner-1", "esp32@runner-2"}, boardVerdts: []string{"pass", "fail"},
		},
		{
			name: "same board id and host twice",
			inputs: []MergeInput{
				{Path: "r1/esp32/report.json", Report: boardReport("runner-1", allPass, "")},
				{Path: "r2/esp32/report.json", Report: boardReport("runner-1", allPass, "")},
			},
			err: `board "esp32@runner-1" appears twice`,
		},
		{
			name: "different catalogs and versions",
			inputs: []MergeInput{
				{Path: "a/report.json", Report: boardReport("h", allPass, "")},
				{Path: "b/report.json", Report: func() *Report {
					r := boardReport("h", allPass, "")
					r.Run.Version = "v2"
					r.Requirements = append(r.Requirements, RequirementResult{RequirementRef: RequirementRef{ID: "NEW-001", Area: "NEW", Severity: Must}, Status: Pass})
					return r
				}()},
			},
			verdict: BoardPass, ids: []string{"a", "b"}, boardVerdts: []string{"pass", "pass"},
			row: "NEW-001", cells: []Status{"", Pass},
			warning: "different hilrun versions: v1 (a); v2 (b)",
		},
		{
			name: "schema version mismatch",
			inputs: []MergeInput{
				{Path: "a/report.json", Report: func() *Report { r := boardReport("h", allPass, ""); r.SchemaVersion = 99; return r }()},
			},
			err: fmt.Sprintf("schemaVersion is 99, this hilrun reads schemaVersion 1 to %d", SchemaVersion),
		},
		{name: "nothing", err: "nothing to merge"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Merge(tc.inputs, MergeOptions{Version: "test"})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.Summary.Verdict != tc.verdict {
				t.Errorf("verdict %s, want %s (why %v)", m.Summary.Verdict, tc.verdict, m.Summary.Why)
			}
			var ids, vs []string
			for _, b := range m.Boards {
				ids, vs = append(ids, b.ID), append(vs, b.Verdict)
			}
			if !slices.Equal(ids, tc.ids) || !slices.Equal(vs, tc.boardVerdts) {
				t.Errorf("boards %v %v, want %v %v", ids, vs, tc.ids, tc.boardVerdts)
			}
			if tc.row != "" {
				i := slices.IndexFunc(m.Requirements, func(r MatrixRow) bool { return r.ID == tc.row })
				if i < 0 || !slices.Equal(m.Requirements[i].Statuses, tc.cells) {
					t.Errorf("matrix row %s = %+v, want %v", tc.row, m.Requirements[max(i, 0)], tc.cells)
				}
			}
			if tc.warning != "" && !slices.ContainsFunc(m.Warnings, func(w string) bool { return strings.Contains(w, tc.warning) }) {
				t.Errorf("warnings %q lack %q", m.Warnings, tc.warning)
			}
			for _, b := range m.Boards {
				if b.Verdict == BoardRigFault && (b.Requirements[Pass] != 0 || b.Requirements[Fail] != 0) {
					t.Errorf("rig-fault board %s counts requirements as judged: %v", b.ID, b.Requirements)
				}
			}
		})
	}
}

// TestMergeFilesAndWrite: discovery in a tree of artifacts, refusing a
// mismatched schema with the fix named, and the four output files.
func TestMergeFilesAndWrite(t *testing.T) {
	root := t.TempDir()
	arts := filepath.Join(root, "artifacts")
	for _, b := range []struct {
		dir string
		rep *Report
	}{
		{"hilrun-esp32/esp-1", boardReport("runner-a", allPass, "")},
		{"hilrun-esp32/esp-2", boardReport("runner-a", telFails, "")},
		{"hilrun-esp32s3/s3-1", boardReport("runner-b", nil, "environment: board s3-1 does not answer hello")},
	} {
		if err := Write(filepath.Join(arts, b.dir), b.rep); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(arts, "merged") // inside the searched tree: must be skipped
	files, err := FindReports([]string{arts}, out)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 {
		t.Fatalf("found %v", files)
	}
	m, err := MergeFiles(files, MergeOptions{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteMerged(out, m); err != nil {
		t.Fatal(err)
	}
	// Merging again must not pick up the merged output.
	if again, _ := FindReports([]string{arts}, out); len(again) != 3 {
		t.Errorf("second discovery found %v", again)
	}

	back, err := LoadMerged(out)
	if err != nil {
		t.Fatal(err)
	}
	if back.Summary.Verdict != BoardFail || len(back.Boards) != 3 || back.Boards[2].Verdict != BoardRigFault {
		t.Errorf("merged.json read back: %+v", back.Summary)
	}
	raw, _ := os.ReadFile(filepath.Join(out, MergedJSONFile))
	var generic map[string]any
	if err := json.Unmarshal(raw, &generic); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"schemaVersion", "reportSchemaVersion", "boards", "requirements", "summary"} {
		if _, ok := generic[k]; !ok {
			t.Errorf("merged.json lacks %q", k)
		}
	}
	for _, f := range []string{MergedJSONFile, HTMLFile, JUnitFile, MarkdownFile} {
		b, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), secretSig) {
			t.Errorf("%s leaks a SAS signature", f)
		}
	}

	// JUnit: one testsuite per board; the rig fault is an error, not a failure.
	var ju struct {
		Failures int `xml:"failures,attr"`
		Errors   int `xml:"errors,attr"`
		Suites   []struct {
			Name     string `xml:"name,attr"`
			Hostname string `xml:"hostname,attr"`
			Failures int    `xml:"failures,attr"`
			Errors   int    `xml:"errors,attr"`
			Cases    []struct {
				Name  string `xml:"name,attr"`
				Error *struct {
					Type string `xml:"type,attr"`
				} `xml:"error"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	jb, _ := os.ReadFile(filepath.Join(out, JUnitFile))
	if err := xml.Unmarshal(jb, &ju); err != nil {
		t.Fatal(err)
	}
	if len(ju.Suites) != 3 || ju.Suites[0].Name != "esp-1" || ju.Suites[0].Hostname != "runner-a" {
		t.Fatalf("junit suites: %+v", ju.Suites)
	}
	if ju.Suites[1].Failures != 1 || ju.Suites[2].Errors != 1 || ju.Suites[2].Failures != 0 || ju.Suites[2].Cases[0].Error.Type != "rig-fault" {
		t.Errorf("junit counts: %+v", ju.Suites)
	}
	if ju.Failures != 1 || ju.Errors != 1 {
		t.Errorf("junit totals: failures %d errors %d", ju.Failures, ju.Errors)
	}

	html, _ := os.ReadFile(filepath.Join(out, HTMLFile))
	for _, want := range []string{"RIG FAULT", "Requirements × boards", `href="../hilrun-esp32/esp-1/report.html"`, "does not answer hello", "runner-b"} {
		if !strings.Contains(string(html), want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	mdb, _ := os.ReadFile(filepath.Join(out, MarkdownFile))
	for _, want := range []string{"**❌ FAIL**", "| esp-2 | runner-a |", "⚠️ RIG FAULT", "**TEL-001**", "| ✅ | ❌ | · |"} {
		if !strings.Contains(string(mdb), want) {
			t.Errorf("summary.md lacks %q:\n%s", want, mdb)
		}
	}

	// A report of another schema version is refused, naming file and fix;
	// so is a merged.json given as input.
	badDir := filepath.Join(root, "old", "esp-9")
	if err := os.MkdirAll(badDir, 0o755); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(badDir, JSONFile)
	if err := os.WriteFile(bad, []byte(`{"schemaVersion": 99, "run": {"hilrunVersion": "v9"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = MergeFiles(append(files, bad, filepath.Join(out, MergedJSONFile)), MergeOptions{})
	if err == nil {
		t.Fatal("merge accepted schemaVersion 99 and a merged.json")
	}
	for _, want := range []string{bad, "schemaVersion is 99", fmt.Sprintf("this hilrun reads schemaVersion 1 to %d", SchemaVersion), "hilrunVersion v9", "is a merged report"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if _, err := FindReports([]string{filepath.Join(root, "nothing")}); err == nil {
		t.Error("missing path accepted")
	}
	empty := filepath.Join(root, "empty")
	_ = os.MkdirAll(empty, 0o755)
	if _, err := FindReports([]string{empty}); err == nil || !strings.Contains(err.Error(), "no report.json under") {
		t.Errorf("empty dir: %v", err)
	}
}

// FuzzMergeReport: a report.json from another host is untrusted input; a
// malformed one is refused with an error, never a panic, and whatever is
// accepted merges and renders.
func FuzzMergeReport(f *testing.F) {
	good, _ := json.Marshal(boardReport("h", telFails, ""))
	f.Add(good)
	rig, _ := json.Marshal(boardReport("h", nil, "environment: no hello"))
	f.Add(rig)
	f.Add([]byte(`{"schemaVersion":1,"requirements":[{"id":"A-1","status":"pass"}],"specs":[{"name":"x","status":"failed"}]}`))
	f.Add([]byte(`{"schemaVersion":2}`))
	f.Add([]byte(`{"boards":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		t0 := time.Now()
		defer func() {
			if d := time.Since(t0); d > 10*time.Second {
				t.Fatalf("slow input: %v", d)
			}
		}()
		r, err := parseForMerge(b, "x/b1/report.json")
		if err != nil {
			return
		}
		m, err := Merge([]MergeInput{{Path: "x/b1/report.json", Report: r}, {ID: "b2", RigFault: "no hello"}}, MergeOptions{})
		if err != nil {
			return
		}
		for _, gen := range []func(*bytes.Buffer, *Merged, string) error{writeMergedJUnit, writeMergedHTML, writeMergedMarkdown} {
			var buf bytes.Buffer
			if err := gen(&buf, m, ""); err != nil {
				t.Fatal(err)
			}
		}
	})
}
