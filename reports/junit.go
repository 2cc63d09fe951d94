package reports

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"strings"
)

// JUnit XML, in the shape Jenkins, GitLab and the common GitHub Actions
// reporters read: <testsuites> → one <testsuite> per area → one <testcase>
// per spec. Requirement IDs appear in the test name ("[CONN-003] …") and as
// <property name="requirement">.

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr,omitempty"`
	Hostname   string          `xml:"hostname,attr,omitempty"`
	Properties []junitProperty `xml:"properties>property,omitempty"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name       string          `xml:"name,attr"`
	Classname  string          `xml:"classname,attr"`
	Time       string          `xml:"time,attr"`
	File       string          `xml:"file,attr,omitempty"`
	Properties []junitProperty `xml:"properties>property,omitempty"`
	Failure    *junitFailure   `xml:"failure,omitempty"`
	Error      *junitFailure   `xml:"error,omitempty"` // the test could not run (merged reports: a rig fault)
	Skipped    *junitSkipped   `xml:"skipped,omitempty"`
	SystemOut  string          `xml:"system-out,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Body    string `xml:",chardata"`
}

type junitSkipped struct {
	Message string `xml:"message,attr,omitempty"`
}

func seconds(d interface{ Seconds() float64 }) string { return fmt.Sprintf("%.3f", d.Seconds()) }

func writeJUnit(buf *bytes.Buffer, r *Report) error {
	top := junitSuites{Name: "hilrun", Time: seconds(r.Run.Wall)}
	if r.Filtered() {
		// A CI test tab shows the suite name: a selection must not pass
		// for the whole suite (issue 16).
		top.Name = "hilrun (filtered: " + r.Selection() + ")"
	}
	props := []junitProperty{
		{"run.id", r.Run.ID},
		{"hilrun.version", r.Run.Version},
		{"hub.version", r.Run.HubVersion},
		{"board.profile", r.Board.Profile},
		{"firmware", strings.TrimSpace(r.Board.Firmware.Name + " " + r.Board.Firmware.Version)},
		{"client", strings.TrimSpace(r.Board.Firmware.Client + " " + r.Board.Firmware.ClientVersion)},
		{"strict", fmt.Sprint(r.Run.Strict)},
	}
	if r.Run.Cloud != "" {
		props = append(props, junitProperty{"cloud", r.Run.Cloud})
	}
	props = append(props, junitProperty{"outcome", string(r.Outcome())})
	if r.Filtered() {
		props = append(props, junitProperty{"filtered", r.Selection()},
			junitProperty{"requirements.not-run", fmt.Sprint(r.Summary.Requirements[NotRun])})
	}
	if r.Run.Interrupted {
		props = append(props, junitProperty{"interrupted", r.Run.InterruptReason})
	}
	if r.Run.RigFault != "" {
		props = append(props, junitProperty{"rig.fault", r.Run.RigFault})
	}
	// A run the rig ended, or that was interrupted, says so in a test case
	// of its own with an <error> (the suite could not complete; not a
	// failure), so that a CI test tab never shows such a run as green or
	// as a firmware failure.
	// A run that judged no spec is an <error> too: zero tests would read
	// as a clean run.
	noSpecs := r.Outcome() == OutcomeNoSpecs
	if reason, rig := r.runRigFault(); rig || r.Run.Interrupted || noSpecs {
		c := junitCase{Name: "hilrun run", Classname: "hilrun.run", Time: seconds(r.Run.Wall)}
		if noSpecs && !rig && !r.Run.Interrupted {
			c.Error = &junitFailure{Message: r.NoSpecsReason(), Type: "no-specs", Body: r.NoSpecsReason()}
		} else if rig {
			c.Error = &junitFailure{Message: "rig fault: " + firstLine(orNone(reason)), Type: "rig-fault", Body: orNone(reason)}
		} else {
			c.Error = &junitFailure{Message: "interrupted: " + firstLine(orNone(r.Run.InterruptReason)), Type: "interrupted", Body: orNone(r.Run.InterruptReason)}
		}
		s := junitSuite{Name: "run", Hostname: r.Run.Host, Properties: props, Time: c.Time}
		if !r.Run.Started.IsZero() {
			s.Timestamp = r.Run.Started.UTC().Format("2006-01-02T15:04:05")
		}
		s.add(c)
		top.add(s)
	}
	for _, area := range r.Areas() {
		s := junitSuite{Name: area, Hostname: r.Run.Host, Properties: props}
		if !r.Run.Started.IsZero() {
			s.Timestamp = r.Run.Started.UTC().Format("2006-01-02T15:04:05")
		}
		var total float64
		for _, sp := range r.Specs {
			if sp.Area != area {
				continue
			}
			total += sp.Duration.Seconds()
			s.add(junitCaseOf(sp, "hilrun."+area))
		}
		if s.Tests == 0 {
			continue // an area no spec touches has nothing to run
		}
		s.Time = fmt.Sprintf("%.3f", total)
		top.add(s)
	}
	buf.WriteString(xml.Header)
	enc := xml.NewEncoder(buf)
	enc.Indent("", "  ")
	if err := enc.Encode(top); err != nil {
		return err
	}
	buf.WriteByte('\n')
	return nil
}

// junitCaseOf converts one spec into a test case of class classname.
func junitCaseOf(sp SpecResult, classname string) junitCase {
	c := junitCase{
		Name:      caseName(sp),
		Classname: classname,
		Time:      seconds(sp.Duration),
		File:      fileOf(sp.Location),
	}
	for _, id := range sp.Requirements {
		c.Properties = append(c.Properties, junitProperty{"requirement", id})
	}
	if sp.Board != "" { // a sharded run: the shard that ran the spec
		c.Properties = append(c.Properties, junitProperty{"board", sp.Board})
	}
	switch sp.Status {
	case SpecFailed:
		c.Failure = &junitFailure{Message: Claim(sp.Failure), Type: "failure", Body: failureBody(sp)}
	case SpecNotApplicable:
		c.Skipped = &junitSkipped{Message: "not applicable: the board lacks a capability this spec needs"}
	case SpecSkipped:
		c.Skipped = &junitSkipped{Message: "skipped"}
	case SpecRigFault:
		// A rig fault is an <error>: the test could not judge the
		// firmware. Never a <failure>.
		c.Error = &junitFailure{Message: "rig fault: " + firstLine(sp.RigFault), Type: "rig-fault", Body: rigFaultBody(sp)}
	case SpecInterrupted:
		c.Error = &junitFailure{Message: "interrupted: " + firstLine(orNone(sp.Failure)), Type: "interrupted", Body: sp.Failure}
	case SpecNotRun:
		c.Skipped = &junitSkipped{Message: "not run: " + firstLine(orNone(sp.Failure))}
	case SpecPreconditionUnmet:
		// Not judged: a <skipped> with the reason, never a <failure>.
		c.Skipped = &junitSkipped{Message: "precondition unmet: " + firstLine(orNone(sp.Failure))}
	}
	if len(sp.Console) > 0 {
		c.SystemOut = consoleText(sp.Console)
	}
	return c
}

// add appends a test suite and counts it.
func (t *junitSuites) add(s junitSuite) {
	t.Tests += s.Tests
	t.Failures += s.Failures
	t.Errors += s.Errors
	t.Skipped += s.Skipped
	t.Suites = append(t.Suites, s)
}

func rigFaultBody(sp SpecResult) string {
	var b strings.Builder
	b.WriteString(sp.RigFault)
	if sp.Failure != "" {
		b.WriteString("\n\nwhat the spec's assertions said meanwhile (not a verdict):\n")
		b.WriteString(sp.Failure)
	}
	return b.String()
}

// add appends a test case and counts it.
func (s *junitSuite) add(c junitCase) {
	switch {
	case c.Failure != nil:
		s.Failures++
	case c.Error != nil:
		s.Errors++
	case c.Skipped != nil:
		s.Skipped++
	}
	s.Cases = append(s.Cases, c)
	s.Tests++
}

// caseName is "[ID ID] spec text", the requirement IDs once: the suite's
// spec names end in "[ID,ID]" already, which is dropped here.
func caseName(sp SpecResult) string {
	if len(sp.Requirements) == 0 {
		return sp.Name
	}
	return "[" + strings.Join(sp.Requirements, " ") + "] " + specTitle(sp)
}

// specTitle is the spec's text without the "[ID,ID]" suffix the suite's
// spec names carry (where the IDs are shown separately).
func specTitle(sp SpecResult) string {
	return strings.TrimSuffix(sp.Name, " ["+strings.Join(sp.Requirements, ",")+"]")
}

func fileOf(loc string) string {
	// "path/file.go:123" → "path/file.go"
	if i := strings.LastIndexByte(loc, ':'); i > 0 {
		if strings.Trim(loc[i+1:], "0123456789") == "" {
			return loc[:i]
		}
	}
	return ""
}

func failureBody(sp SpecResult) string {
	var b strings.Builder
	b.WriteString(sp.Failure)
	if sp.Location != "" {
		b.WriteString("\n\nat " + sp.Location)
	}
	if len(sp.Wire) > 0 {
		b.WriteString("\n\nwire trace (device ↔ hub):\n")
		b.WriteString(wireText(sp.Wire))
	}
	return b.String()
}

// wireText renders a wire excerpt as aligned text lines.
func wireText(w []WireEntry) string {
	var b strings.Builder
	for _, e := range w {
		fmt.Fprintf(&b, "%10s  %-7s %-12s", fmtOffset(e.Offset), arrow(e.Dir), e.Type)
		if e.Topic != "" {
			b.WriteString(" " + e.Topic)
		}
		if e.Dir != DirEvent && (e.Type == "PUBLISH" || e.QoS > 0) {
			fmt.Fprintf(&b, " qos=%d", e.QoS)
		}
		if e.Flags != "" {
			b.WriteString(" [" + e.Flags + "]")
		}
		if e.Payload != "" {
			b.WriteString(" " + e.Payload)
		}
		if e.Note != "" {
			b.WriteString("  // " + e.Note)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func consoleText(lines []ConsoleLine) string {
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, "%10s ", fmtOffset(l.Offset))
		if l.Stream != "" {
			b.WriteString(l.Stream + " ")
		}
		b.WriteString(l.Text)
		b.WriteByte('\n')
	}
	return b.String()
}

func arrow(dir string) string {
	switch dir {
	case DirIn:
		return "dev→hub"
	case DirOut:
		return "hub→dev"
	default:
		return "hub"
	}
}
