package reports

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestHTMLInChromium renders report.html of a passing, a failing, a
// filtered, a rig-fault and a no-spec run in headless Chromium (Debian's
// chromium package; .ci/run installs it), takes a screenshot and checks
// the rendered DOM — after the inline script ran — for the key elements:
// verdict badge, executive summary, chart, failures section and the
// filter controls, and that the failures-only filter hides passing rows.
//
// A dozen browser starts are the slowest part of `go test ./...` (15-35 s
// of CPU on two cores), and .ci/run runs this test on its own with
// HILRUN_REQUIRE_CHROMIUM=1 (after installing chromium, so that on a fresh
// CI machine the go test run before it would skip it anyway): it runs only
// when HILRUN_REQUIRE_CHROMIUM or HILRUN_CHROMIUM=1 is set.
func TestHTMLInChromium(t *testing.T) {
	if os.Getenv("HILRUN_REQUIRE_CHROMIUM") == "" && os.Getenv("HILRUN_CHROMIUM") != "1" {
		t.Skip("the report in headless Chromium runs with HILRUN_CHROMIUM=1 (.ci/run runs it with HILRUN_REQUIRE_CHROMIUM=1)")
	}
	bin := chromiumBinary()
	if bin == "" {
		if os.Getenv("HILRUN_REQUIRE_CHROMIUM") != "" {
			t.Fatal("HILRUN_REQUIRE_CHROMIUM is set (.ci/run) but chromium is not installed")
		}
		t.Skip("chromium not installed (apt-get install chromium; .ci/run installs it and runs this test)")
	}
	dirs := writeIssue16(t, t.TempDir())
	for kind, wantOutcome := range map[string]string{"pass": "pass", "fail": "fail", "filtered": "pass", "rig-fault": "rig-fault", "no-specs": "no-specs"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel() // a browser of its own per page
			page := filepath.Join(dirs[kind], HTMLFile)
			dom := chromium(t, bin, "file://"+page, "--dump-dom")
			for _, re := range []string{
				`<span id="verdict" data-outcome="` + wantOutcome + `"`,
				`<section id="summary"`,
				`<svg id="chart"`,
				`<section id="failures"`,
				`<div id="filter" class="noprint">`, // the script showed the controls
				`<input type="checkbox" id="failures-only"`,
				`<select id="area-filter"`,
				`<body data-filter="all"`,
			} {
				if kind == "rig-fault" && re == `<svg id="chart"` {
					continue // nothing to chart: no board, no area judged
				}
				if !strings.Contains(dom, re) {
					t.Errorf("rendered DOM lacks %s", re)
				}
			}
			if kind != "rig-fault" && kind != "no-specs" && !strings.Contains(dom, `<details class="coverage"><summary>dimensions 1/3 covered (1 partial)</summary>`) {
				t.Error("TWIN-010's row lacks its dimension coverage detail")
			}
			if kind == "filtered" && !strings.Contains(dom, `id="filtered-badge"`) {
				t.Error("filtered run without its badge")
			}
			shot := filepath.Join(t.TempDir(), kind+".png")
			chromium(t, bin, "file://"+page, "--screenshot="+shot, "--window-size=1280,2400")
			if fi, err := os.Stat(shot); err != nil || fi.Size() < 1000 {
				t.Errorf("screenshot %s: %v", shot, err)
			}
		})
	}
	t.Run("print to PDF", func(t *testing.T) {
		t.Parallel()
		// The print style sheet: the filter controls are not printed and
		// every section is (a customer's PDF of the failing report).
		pdf := filepath.Join(t.TempDir(), "fail.pdf")
		chromium(t, bin, "file://"+filepath.Join(dirs["fail"], HTMLFile), "--print-to-pdf="+pdf, "--no-pdf-header-footer")
		b, err := os.ReadFile(pdf)
		if err != nil || len(b) < 10000 || !strings.HasPrefix(string(b), "%PDF-") {
			t.Fatalf("PDF %s: %d bytes, %v", pdf, len(b), err)
		}
	})
	t.Run("failures-only filter", func(t *testing.T) {
		t.Parallel()
		dom := chromium(t, bin, "file://"+filepath.Join(dirs["fail"], HTMLFile)+"#show=failures", "--dump-dom")
		if !strings.Contains(dom, `data-filter="failures"`) {
			t.Fatal("the filter script did not take #show=failures")
		}
		if !regexp.MustCompile(`<tr id="req-CONN-001"[^>]*hidden`).MatchString(dom) {
			t.Error("a passed requirement row is still shown with failures only")
		}
		if regexp.MustCompile(`<div class="failure"[^>]*hidden`).MatchString(dom) {
			t.Error("a failure is hidden with failures only")
		}
	})
}

func chromiumBinary() string {
	for _, n := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	return ""
}

// chromium runs one headless Chromium with its own profile directory and
// returns its standard output.
func chromium(t *testing.T, bin, url string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	all := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
		"--user-data-dir=" + t.TempDir(), "--virtual-time-budget=2000"}, args...)
	cmd := exec.CommandContext(ctx, bin, append(all, url)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return string(out)
}
