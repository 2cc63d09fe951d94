package reports

import (
	"bytes"
	"strings"
	"testing"
)

func TestFactsSection(t *testing.T) {
	specs := []SpecResult{
		{Name: "clock spec", Requirements: []string{"CONN-001"}, Status: SpecPassed,
			Facts: []Fact{{Kind: FactClock, Name: "RTC at 1970, SNTP reachable", Value: "synced before TLS", Good: true}}},
		{Name: "tls spec", Requirements: []string{"CONN-001"}, Status: SpecPassed,
			Facts: []Fact{
				{Kind: FactTLS, Name: "negotiated version", Value: "TLS 1.3", Good: true},
				{Kind: FactRoot, Name: "untrusted root", Value: "accepted <script>", Good: false},
				{Kind: FactTLS, Name: "SNI", Value: "hub.example", Good: true},
			}},
	}
	r := Build(RunMeta{ID: "f"}, BoardInfo{}, sampleCatalog(), specs)
	var got []string
	for _, g := range r.FactGroups() {
		for _, f := range g.Facts {
			got = append(got, g.Title+"/"+f.Name+"/"+f.Spec)
		}
	}
	want := []string{
		"TLS handshake/negotiated version/tls spec",
		"TLS handshake/SNI/tls spec",
		"Server roots and chains/untrusted root/tls spec",
		"Clock behaviour/RTC at 1970, SNTP reachable/clock spec",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("fact groups:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	var html, mdown bytes.Buffer
	if err := writeHTML(&html, r); err != nil {
		t.Fatal(err)
	}
	h := html.String()
	for _, w := range []string{`id="tls-clock"`, "TLS handshake", "✗ accepted &lt;script&gt;", "synced before TLS"} {
		if !strings.Contains(h, w) {
			t.Errorf("report.html lacks %q", w)
		}
	}
	if err := writeMarkdown(&mdown, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(mdown.String(), "| Server roots and chains | untrusted root | ❌ accepted &lt;script&gt; |") {
		t.Errorf("summary.md lacks the refused-root row:\n%s", mdown.String())
	}

	empty := Build(RunMeta{ID: "e"}, BoardInfo{}, sampleCatalog(), nil)
	html.Reset()
	if err := writeHTML(&html, empty); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(html.String(), "No TLS or clock facts") {
		t.Error("report.html without facts does not say so")
	}
}

func TestMergedFacts(t *testing.T) {
	specs := []SpecResult{{Name: "tls spec", Requirements: []string{"CONN-001"}, Status: SpecPassed,
		Facts: []Fact{{Kind: FactTLS, Name: "negotiated version", Value: "TLS 1.3", Good: true},
			{Kind: FactClock, Name: "SNTP unreachable", Value: "connected with an se in 1970", Good: false}}}}
	r := Build(RunMeta{ID: "f", Host: "h"}, BoardInfo{Profile: "sim"}, sampleCatalog(), specs)
	m, err := Merge([]MergeInput{{Path: "a/report.json", ID: "a", Report: r}}, MergeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Boards[0].TLSClock) != 2 {
		t.Fatalf("merged board has %d TLS and clock facts, want 2", len(m.Boards[0].TLSClock))
	}
	var html bytes.Buffer
	if err := writeMergedHTML(&html, m, ""); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"TLS and clock", "TLS 1.3", "✗ connected with an se in 1970"} {
		if !strings.Contains(html.String(), w) {
			t.Errorf("merged report.html lacks %q", w)
		}
	}
}
