package reports

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

const msec = time.Millisecond

// reconWire is a drop and two refused reconnects, then an accepted one.
func reconWire() []WireEntry {
	return []WireEntry{
		{Offset: 0, Dir: DirIn, Type: "CONNECT", Note: "user h/d1/?api-version=2021-04-12 keepalive 60"},
		{Offset: 2 * msec, Dir: DirOut, Type: "CONNACK", Note: "rc 0"},
		{Offset: 2 * msec, Dir: DirEvent, Type: "conn-opened"},
		{Offset: 5 * msec, Dir: DirIn, Type: "SUBSCRIBE", Note: "devices/d1/messages/devicebound/#@1"},
		{Offset: 100 * msec, Dir: DirEvent, Type: "fault", Note: "refusing CONNECT with return code 3 for 1s"},
		{Offset: 101 * msec, Dir: DirEvent, Type: "fault", Note: "RECON-001: connection lost <script>alert(1)</script>"},
		{Offset: 102 * msec, Dir: DirEvent, Type: "conn-closed", Note: "RECON-001: connection lost"},
		{Offset: 300 * msec, Dir: DirIn, Type: "CONNECT"},
		{Offset: 301 * msec, Dir: DirEvent, Type: "conn-rejected", Note: "CONNACK 3 by fault injection"},
		{Offset: 301 * msec, Dir: DirOut, Type: "CONNACK", Note: "rc 3 CONNACK 3 by fault injection"},
		{Offset: 700 * msec, Dir: DirIn, Type: "CONNECT"},
		{Offset: 701 * msec, Dir: DirOut, Type: "CONNACK", Flags: "rc=3"},
		{Offset: 1500 * msec, Dir: DirIn, Type: "CONNECT"},
		{Offset: 1502 * msec, Dir: DirOut, Type: "CONNACK", Note: "rc 0"},
		{Offset: 1600 * msec, Dir: DirIn, Type: "PUBLISH", Topic: "devices/d1/messages/events/"},
	}
}

type markSketch struct {
	Kind    MarkKind
	At, End time.Duration
	RC      int
	Open    bool
}

func sketch(ms []TimelineMark) []markSketch {
	var out []markSketch
	for _, m := range ms {
		out = append(out, markSketch{m.Kind, m.At, m.End, m.RC, m.Open})
	}
	return out
}

func TestTimeline(t *testing.T) {
	for _, tc := range []struct {
		name string
		wire []WireEntry
		want []markSketch
	}{
		{"drop, refusals, reconnect", reconWire(), []markSketch{
			{MarkConnect, 0, 0, -1, false},
			{MarkConnack, 2 * msec, 0, 0, false},
			{MarkConnected, 2 * msec, 102 * msec, -1, false},
			{MarkFault, 100 * msec, 0, -1, false},
			{MarkFault, 101 * msec, 0, -1, false},
			{MarkClosed, 102 * msec, 0, -1, false},
			{MarkConnect, 300 * msec, 0, -1, false},
			{MarkRejected, 301 * msec, 0, -1, false},
			{MarkConnack, 301 * msec, 0, 3, false},
			{MarkConnect, 700 * msec, 0, -1, false},
			{MarkConnack, 701 * msec, 0, 3, false},
			{MarkConnect, 1500 * msec, 0, -1, false},
			{MarkConnack, 1502 * msec, 0, 0, false},
			{MarkConnected, 1502 * msec, 1600 * msec, -1, true}, // still up at the excerpt's end
		}},
		{"takeover: the old connection's close does not end the new one", []WireEntry{
			{Offset: 0, Dir: DirIn, Type: "CONNECT"},
			{Offset: 1 * msec, Dir: DirOut, Type: "CONNACK", Note: "rc 0"},
			{Offset: 50 * msec, Dir: DirIn, Type: "CONNECT"},
			{Offset: 51 * msec, Dir: DirOut, Type: "CONNACK", Note: "rc 0"},
			{Offset: 52 * msec, Dir: DirEvent, Type: "conn-closed", Note: "CONN-016 another connection with the same identity took over; IoT Hub closes the old one without DISCONNECT"},
			{Offset: 90 * msec, Dir: DirEvent, Type: "conn-closed", Note: "client disconnected"},
		}, []markSketch{
			{MarkConnect, 0, 0, -1, false},
			{MarkConnack, 1 * msec, 0, 0, false},
			{MarkConnected, 1 * msec, 51 * msec, -1, false},
			{MarkConnect, 50 * msec, 0, -1, false},
			{MarkConnack, 51 * msec, 0, 0, false},
			{MarkConnected, 51 * msec, 90 * msec, -1, false},
			{MarkClosed, 52 * msec, 0, -1, false},
			{MarkClosed, 90 * msec, 0, -1, false},
		}},
		{"excerpt starts mid-connection; unknown return code", []WireEntry{
			{Offset: 40 * msec, Dir: DirIn, Type: "PUBLISH"},
			{Offset: 60 * msec, Dir: DirEvent, Type: "violation", Note: "CONN-018 undocumented topic"},
			{Offset: 61 * msec, Dir: DirEvent, Type: "conn-closed"},
			{Offset: 80 * msec, Dir: DirIn, Type: "CONNECT"},
			{Offset: 81 * msec, Dir: DirOut, Type: "CONNACK"},
		}, []markSketch{
			{MarkFault, 60 * msec, 0, -1, false},
			{MarkClosed, 61 * msec, 0, -1, false},
			{MarkConnected, 40 * msec, 61 * msec, -1, true},
			{MarkConnect, 80 * msec, 0, -1, false},
			{MarkConnack, 81 * msec, 0, -1, false},
		}},
		{"empty", nil, nil},
	} {
		got := sketch(Timeline(tc.wire))
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
}

func TestConnackRC(t *testing.T) {
	for _, tc := range []struct {
		e    WireEntry
		want int
	}{
		{WireEntry{Note: "rc 0"}, 0},
		{WireEntry{Note: "rc 5 CONN-007 bad signature"}, 5},
		{WireEntry{Flags: "rc=3"}, 3},
		{WireEntry{Note: "src 4"}, -1},
		{WireEntry{}, -1},
	} {
		if got := connackRC(tc.e); got != tc.want {
			t.Errorf("%+v: %d, want %d", tc.e, got, tc.want)
		}
	}
}

func TestTimelineSVG(t *testing.T) {
	if TimelineSVG(reconWire()[:7]) != "" {
		t.Error("a timeline for a single CONNECT")
	}
	svg := string(TimelineSVG(reconWire()))
	for _, want := range []string{`<svg class="timeline"`, `</svg>`, `fill="#cf222e"`, `fill="#1a7f37"`, "CONNECT", "connection closed", "fault / cut", "&lt;script&gt;"} {
		if !strings.Contains(svg, want) {
			t.Errorf("timeline lacks %q", want)
		}
	}
	if strings.Contains(svg, "<script") {
		t.Error("unescaped text in the timeline")
	}
	if n := strings.Count(svg, "<path d=\"M") - 2; n != 4+2 { // 4 CONNECTs, 2 faults (+2 legend shapes)
		t.Errorf("%d CONNECT/fault shapes", n)
	}
}

func TestSeriesFigures(t *testing.T) {
	s := SeriesResult{Name: "a", GapsMs: []float64{100, 200}, Figures: map[string]float64{
		"n": 3, "growthFactor": 2, "capMs": 0, "jitterSpread": 0.0712, "zeta": 1.5}}
	got := SeriesFigures(s)
	want := []seriesFigure{{"points", "3"}, {"growth factor", "×2.00"}, {"cap (plateau)", "none"}, {"jitter spread", "7.1 %"}, {"zeta", "1.5"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}

// reconReport has a passed RECON spec with a series and a reconnection
// excerpt, and a failed one whose excerpt has a single CONNECT.
func reconReport() *Report {
	specs := []SpecResult{
		{Name: "reconnects with backoff <b>", Requirements: []string{"RECON-001"}, Status: SpecPassed, Duration: 3 * time.Second,
			Wire: reconWire(),
			Series: []SeriesResult{{Name: "CONNECT attempts <i>", GapsMs: []float64{198, 400, 800.5},
				Figures: map[string]float64{"n": 4, "firstGapMs": 198, "minGapMs": 198, "maxGapMs": 800.5, "growthFactor": 2.01, "capMs": 0, "plateauGaps": 0, "jitterSpread": 0.004}}}},
		{Name: "stops after not authorized", Requirements: []string{"RECON-004"}, Status: SpecFailed, Failure: "tried again",
			Wire: reconWire()[:3]},
	}
	cat := []RequirementRef{
		{ID: "RECON-001", Title: "Backoff", Area: "RECON", Severity: Must},
		{ID: "RECON-004", Title: "Stop on auth failure", Area: "RECON", Severity: Must},
	}
	return Build(RunMeta{ID: "r"}, BoardInfo{}, cat, specs)
}

func TestHTMLTimeline(t *testing.T) {
	dir := t.TempDir()
	r := reconReport()
	if err := Write(dir, r); err != nil {
		t.Fatal(err)
	}
	page := read(t, dir, HTMLFile)
	if n := strings.Count(page, `<svg class="timeline"`); n != 1 {
		t.Errorf("%d timelines, want 1 (the passed spec with four CONNECTs)", n)
	}
	if n := strings.Count(page, `<svg class="series"`); n != 1 {
		t.Errorf("%d series charts", n)
	}
	for _, want := range []string{`id="timing"`, "Reconnection timeline", "CONNECT attempts &lt;i&gt;", "reconnects with backoff &lt;b&gt;",
		"198, 400, 800", "×2.01", "Wire trace (15 entries)", "&lt;script&gt;"} {
		if !strings.Contains(page, want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	// The report's own inline filter script and its documentation links
	// aside, nothing active or external.
	own := regexp.MustCompile(`(?s)<script id="report-filter">.*?</script>|href="https://[^"]*"`)
	low := strings.ToLower(own.ReplaceAllString(page, ""))
	for _, bad := range []string{"<script", "attempts <i>", "backoff <b>", "http:", "https:", "xlink", "<image", "<use", "<foreignobject", "url("} {
		if strings.Contains(low, bad) {
			t.Errorf("report.html contains %q", bad)
		}
	}
	if m := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?\s*(https?:)?//`).FindString(page); m != "" {
		t.Errorf("external reference %q", m)
	}
	// The series survives report.json.
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Specs[0].Series, r.Specs[0].Series) {
		t.Errorf("series after Load: %+v", got.Specs[0].Series)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, JSONFile))
	var doc struct {
		Specs []map[string]json.RawMessage `json:"specs"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if _, ok := doc.Specs[0]["series"]; !ok {
		t.Error(`report.json lacks "series"`)
	}
	if _, ok := doc.Specs[1]["series"]; ok {
		t.Error(`"series" is not omitted when empty`)
	}
}
