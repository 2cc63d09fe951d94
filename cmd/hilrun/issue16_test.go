package main

import (
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/hilrun/hilrun/reports"
)

// Issue 16, the command line: a bad or empty selection is refused before
// anything starts (exit 2, no hub, no flashing), in plain words.
func TestIssue16SelectionValidatedFirst(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--label-filter", "TWIN &&"}, "Syntax Error Parsing Label Filter"},
		{[]string{"run", "--label-filter", "TWIN-999"}, "TWIN-999 is neither a requirement ID nor an area"},
		{[]string{"run", "--label-filter", "TWIN || CONN-0001"}, "CONN-0001 is neither"},
		{[]string{"run", "--focus", "(unclosed"}, "not a regular expression"},
		{[]string{"run", "--defect", "no-such-defect"}, "no-such-defect"},
	} {
		out, code := hilrun(t, append(tc.args, "--out", t.TempDir())...)
		if code != reports.ExitUsage || !strings.Contains(out, tc.want) {
			t.Errorf("%v: exit %d, want 2 with %q:\n%s", tc.args, code, tc.want, out)
		}
		for _, bad := range []string{"starting reference hub", "flashing", "\x1b["} {
			if strings.Contains(out, bad) {
				t.Errorf("%v: %q before the check (or colour codes):\n%s", tc.args, bad, out)
			}
		}
	}
	for _, ok := range []string{"TWIN", "twin-010", "TWIN && !TWIN-018", "(CONN || TEL) && !CONN-004", "/TWIN-01./"} {
		if err := validateSelection(ok, nil); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
}

// A run that executes no spec is never PASS: its own exit code, a clear
// message, and a report that says so.
func TestIssue16NoSpecRunIsAnError(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out, code := hilrun(t, "run", "--label-filter", "TWIN-010 && CONN-001", "--out", dir)
	if code != reports.ExitNoSpecs || !strings.Contains(out, "no spec ran") || strings.Contains(out, "verdict: PASS") {
		t.Fatalf("exit %d, want %d:\n%s", code, reports.ExitNoSpecs, out)
	}
	rep, err := reports.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Summary.Outcome != reports.OutcomeNoSpecs || !rep.Summary.Filtered {
		t.Errorf("report outcome %s filtered %v", rep.Summary.Outcome, rep.Summary.Filtered)
	}
}

// A filtered run: [n/N] progress with the area column, "filtered" in the
// verdict line, what was left out not-run, and console.log with a marker
// line at each spec's start and end.
func TestIssue16FilteredRunProgressAndConsoleMarkers(t *testing.T) {
	t.Parallel()
	// TWIN-009: a requirement of two specs, each well under a second on
	// the virtual board.
	dir := t.TempDir()
	out, code := hilrun(t, "run", "--label-filter", "TWIN-009", "--out", dir)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	// The spec count grows with the suite: take it from the run's own line
	// and check the progress counter against it.
	m := regexp.MustCompile(`filtered run \(label filter TWIN-009\): (\d+) specs selected; \d+ requirements not run`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("output lacks the filtered-run line:\n%s", out)
	}
	n := m[1]
	for _, re := range []string{`(?m)^PASS \[1/` + n + `\] TWIN   `, `(?m)^PASS \[` + n + `/` + n + `\] TWIN   `,
		`verdict: PASS \(filtered: label filter TWIN-009\)`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("output lacks %s:\n%s", re, out)
		}
	}
	rep, err := reports.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var notRun, notCovered int
	for _, q := range rep.Requirements {
		switch q.Status {
		case reports.NotRun:
			notRun++
		case reports.NotCovered:
			notCovered++
		}
		if q.ID == "CONN-003" && q.Status != reports.NotRun {
			t.Errorf("CONN-003 (filtered out) is %s, want not-run", q.Status)
		}
	}
	if notRun < 50 {
		t.Errorf("%d requirements not-run, %d not-covered: the filtered-out ones must be not-run", notRun, notCovered)
	}
	b, err := os.ReadFile(filepath.Join(dir, "console.log"))
	if err != nil {
		t.Fatal(err)
	}
	log := string(b)
	if c := strconv.Itoa(strings.Count(log, "==== spec start: ")); c != n {
		t.Errorf("%s spec start markers, want %s", c, n)
	}
	if c := strconv.Itoa(strings.Count(log, "==== spec end: ")); c != n {
		t.Errorf("%s spec end markers, want %s", c, n)
	}
	if !strings.Contains(log, "[TWIN-009] — passed") {
		t.Error("end marker lacks the requirement and the outcome")
	}
}

// A rig fault before the first spec: exit 3, the port named once per
// message, RIG FAULT on every surface and a JUnit error.
func TestIssue16RigFaultSaysItOnce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out, code := hilrun(t, "run", "--board", "serial", "--port", "/dev/ttyUSB9-hilrun-test", "--out", dir)
	if code != reports.ExitRigFault {
		t.Fatalf("exit %d, want 3:\n%s", code, out)
	}
	for _, l := range strings.Split(out, "\n") {
		if n := strings.Count(l, "/dev/ttyUSB9-hilrun-test"); n > 1 {
			t.Errorf("the port appears %d times in one line: %s", n, l)
		}
	}
	junit, _ := os.ReadFile(filepath.Join(dir, reports.JUnitFile))
	if !strings.Contains(string(junit), `type="rig-fault"`) || strings.Contains(string(junit), `tests="0"`) {
		t.Errorf("junit.xml:\n%s", junit)
	}
	md, _ := os.ReadFile(filepath.Join(dir, reports.MarkdownFile))
	if !strings.Contains(string(md), "RIG FAULT") || strings.Contains(string(md), "( )") {
		t.Errorf("summary.md:\n%s", md)
	}
}

// hilrun console: a prompt, the board's log once, no raw request or
// response frames, PEMs folded, each reply once, :help with syntax.
func TestIssue16ConsoleForPeople(t *testing.T) {
	t.Setenv(asHilrunEnv, "1") // the virtual board runs this test binary as its firmware
	cmd := newRootCmd()
	var out lockedBuffer
	cmd.SetOut(&out)
	cmd.SetErr(&lockedBuffer{})
	cmd.SetIn(strings.NewReader("status\n:help\n:quit\n"))
	cmd.SetArgs([]string{"console", "--prompt", "on"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if n := strings.Count(s, `"state":"idle"`); n != 1 {
		t.Errorf("the status reply appears %d times, want once:\n%s", n, s)
	}
	for _, bad := range []string{"-----BEGIN", `"t":"req"`, `"t":"res"`} {
		if strings.Contains(s, bad) {
			t.Errorf("console output contains %q:\n%s", bad, s)
		}
	}
	for _, want := range []string{"hilrun> ", "# status → ", `telemetry.send {"payload":"TEXT"`, ":invoke NAME [JSON]", "⚑ event hello"} {
		if !strings.Contains(s, want) {
			t.Errorf("console output lacks %q:\n%s", want, s)
		}
	}
}

func TestConsoleViewRender(t *testing.T) {
	v := &consoleView{}
	for _, tc := range []struct {
		line, want string
		shown      bool
	}{
		{"   +0.112344s in  text    I (0) boot", "+0.112344s │ I (0) boot", true},
		{"   +0.2s --  note    sim0: port opened", "+0.2s # sim0: port opened", true},
		{`   +0.3s out frame   {"t":"req","id":5,"op":"trust.add","args":{"pem":"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}}`, "", false},
		{`   +0.4s in  frame   {"t":"res","id":5,"ok":true}`, "", false},
		{`   +0.5s in  frame   {"t":"evt","ev":"conn","data":{"state":"connected"},"seq":3}`, `+0.5s ⚑ event conn {"state":"connected"}`, true},
		{`   +0.6s in  text    cert -----BEGIN CERTIFICATE-----MIIB-----END CERTIFICATE----- ok`, "+0.6s │ cert [certificate, 56 bytes, folded] ok", true},
	} {
		got, shown := v.render(tc.line)
		if shown != tc.shown || got != tc.want {
			t.Errorf("render(%q) = %q, %v; want %q, %v", tc.line, got, shown, tc.want, tc.shown)
		}
	}
}

// selftest prints where it wrote and a short verdict; the table goes to
// selftest.md, not the terminal.
func TestSelftestVerdictIsShort(t *testing.T) {
	res := selftestResult{OK: false, Specs: 115, CleanPassed: true, Wall: 12}
	for i := 0; i < 120; i++ {
		res.Defects = append(res.Defects, defectOutcome{Defect: "d" + string(rune('a'+i%26)), Requirement: "TWIN-010", Caught: i != 7, CaughtBy: []string{"spec"}})
	}
	res.Unfailable = []string{"spec x"}
	v := selftestVerdict(res, "/out/st")
	if n := strings.Count(v, "\n"); n > 6 {
		t.Errorf("verdict is %d lines:\n%s", n, v)
	}
	for _, w := range []string{"selftest: FAIL", "defects caught: 119 of 120", "defects not caught: dh", "specs no defect makes fail: spec x", "/out/st/selftest.md"} {
		if !strings.Contains(v, w) {
			t.Errorf("verdict lacks %q:\n%s", w, v)
		}
	}
	if strings.Contains(v, "| defect |") {
		t.Error("the table is printed")
	}
	res.Subset, res.Unfailable = true, nil
	if v := selftestVerdict(res, "/out/st"); strings.Contains(v, "every spec can fail;") || strings.Contains(v, "; every spec can fail (") {
		t.Errorf("a subset run claims every spec can fail:\n%s", v)
	}
}

func TestBuildVersion(t *testing.T) {
	for _, tc := range []struct {
		bi   *debug.BuildInfo
		want string
	}{
		{&debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, "v1.2.3"},
		{&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef"}, {Key: "vcs.modified", Value: "true"}}}, "git-0123456789ab+dirty"},
		{&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, ""},
	} {
		if got := buildVersion(tc.bi, true); got != tc.want {
			t.Errorf("buildVersion = %q, want %q", got, tc.want)
		}
	}
}

func TestUnknownLabels(t *testing.T) {
	for _, tc := range []struct {
		filter string
		want   []string
	}{
		{"TWIN", nil},
		{"twin-010 || CONN", nil},
		{"(TWIN && !TWIN-018) || METH-001", nil},
		{"TWIN-999", []string{"TWIN-999"}},
		{"TWIN && (FOO || CONN-001), BAR", []string{"FOO", "BAR"}},
		{"/TWIN-0[0-9]+/ && !QUUX", []string{"QUUX"}},
		{"Feature: consistsOf {a}", nil},
		{"FOO || FOO", []string{"FOO"}},
	} {
		got := unknownLabels(tc.filter)
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("unknownLabels(%q) = %q, want %q", tc.filter, got, tc.want)
		}
	}
}

// FuzzConsoleViewRender: the console view parses lines the board sent.
func FuzzConsoleViewRender(f *testing.F) {
	f.Add(`   +0.5s in  frame   {"t":"evt","ev":"conn","data":{"state":"connected"},"seq":3}`)
	f.Add("   +0.1s in  text    -----BEGIN CERTIFICATE-----x-----END CERTIFICATE-----")
	f.Add("garbage")
	f.Fuzz(func(t *testing.T, line string) {
		v := &consoleView{}
		if s, ok := v.render(line); ok && strings.Contains(s, `"t":"res"`) && !strings.Contains(line, `"t":"res"`) {
			t.Fatalf("render invented a response: %q", s)
		}
		_ = shorten(line)
	})
}
