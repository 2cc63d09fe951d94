package reports

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCoverageInReport(t *testing.T) {
	dir := t.TempDir()
	r := issue16Reports()["fail"]
	if err := Write(dir, r); err != nil {
		t.Fatal(err)
	}
	var j struct {
		SchemaVersion int `json:"schemaVersion"`
		Requirements  []struct {
			ID       string    `json:"id"`
			Coverage *Coverage `json:"coverage"`
		} `json:"requirements"`
	}
	b, err := os.ReadFile(filepath.Join(dir, JSONFile))
	if err != nil || json.Unmarshal(b, &j) != nil {
		t.Fatal(err)
	}
	if j.SchemaVersion != 5 {
		t.Errorf("schemaVersion %d", j.SchemaVersion)
	}
	for _, q := range j.Requirements {
		if (q.Coverage != nil) != (q.ID == "TWIN-010") {
			t.Errorf("%s: coverage %+v", q.ID, q.Coverage)
		}
		if q.ID == "TWIN-010" && (q.Coverage.Partial != 1 || len(q.Coverage.Items) != 3 || q.Coverage.Items[1].Gap != "only the hub drop") {
			t.Errorf("TWIN-010 coverage read back as %+v", q.Coverage)
		}
	}
	back, err := Load(filepath.Join(dir, JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	html, _ := os.ReadFile(filepath.Join(dir, HTMLFile))
	for _, want := range []string{`<details class="coverage"><summary>dimensions 1/3 covered (1 partial)</summary>`,
		`<span class="dim dim-gap">gap</span> <b>version</b>`, `gap: versions &lt;stay&gt; small`, `✓ twin resync after drop`} {
		if !bytes.Contains(html, []byte(want)) {
			t.Errorf("report.html lacks %s", want)
		}
	}
	md, _ := os.ReadFile(filepath.Join(dir, MarkdownFile))
	for _, want := range []string{"### Dimension coverage", "| TWIN | 1 | 3 | 1 | 1 | 1 | – |", "(dimensions 1/3 covered (1 partial))"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("summary.md lacks %q:\n%s", want, md)
		}
	}
	if cov := back.CoverageByArea(); len(cov) != 1 || cov[0].Area != "TWIN" || cov[0].Dimensions != 3 {
		t.Errorf("CoverageByArea = %+v", cov)
	}
	single := &Coverage{Dimensions: 2, Covered: 0, Partial: 1, Gaps: 1, SingleExample: true}
	if got := single.Label(); got != "dimensions 0/2 covered (1 partial, single example)" {
		t.Errorf("label %q", got)
	}
	if (*Coverage)(nil).Label() != "" {
		t.Error("nil coverage has a label")
	}
}
