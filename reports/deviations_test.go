package reports

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckDeviations(t *testing.T) {
	spec := func(name string, st SpecStatus, reqs ...string) SpecResult {
		return SpecResult{Name: name, Status: st, Requirements: reqs, Failure: "expected x\nseen y"}
	}
	dev := func(req string, specs ...string) Deviation {
		return Deviation{Requirement: req, Specs: specs, Doc: "002 L1", Why: "because"}
	}
	cases := []struct {
		name       string
		specs      []SpecResult
		devs       []Deviation
		ok         bool
		unexpected []string
		fixed      []string
		notJudged  int
	}{
		{name: "exactly the listed failures",
			specs: []SpecResult{spec("a", SpecFailed, "TEL-005"), spec("b", SpecPassed, "TEL-001")},
			devs:  []Deviation{dev("TEL-005")}, ok: true},
		{name: "a new failure",
			specs: []SpecResult{spec("a", SpecFailed, "TEL-005"), spec("b", SpecFailed, "TEL-001")},
			devs:  []Deviation{dev("TEL-005")}, unexpected: []string{"b"}},
		{name: "a deviation that stopped failing",
			specs: []SpecResult{spec("a", SpecPassed, "TEL-005")},
			devs:  []Deviation{dev("TEL-005")}, fixed: []string{"TEL-005"}},
		{name: "listed requirement not run is not judged",
			specs: []SpecResult{spec("b", SpecPassed, "TEL-001")},
			devs:  []Deviation{dev("TEL-005")}, ok: true, notJudged: 1},
		{name: "rig fault or not applicable is not a judgement",
			specs: []SpecResult{spec("a", SpecRigFault, "TEL-005"), spec("c", SpecNotApplicable, "TWIN-001")},
			devs:  []Deviation{dev("TEL-005"), dev("TWIN-001")}, ok: true, notJudged: 2},
		{name: "spec-scoped entry: another spec of the requirement failing is new",
			specs: []SpecResult{spec("after RST the device reconnects", SpecFailed, "RECON-001"), spec("backoff spacing", SpecFailed, "RECON-001")},
			devs:  []Deviation{dev("RECON-001", "after RST")}, unexpected: []string{"backoff spacing"}},
		{name: "an intermittent deviation that did not show is not now passing",
			specs: []SpecResult{spec("a", SpecPassed, "RECON-007")},
			devs:  []Deviation{{Requirement: "RECON-007", Doc: "002 L1", Why: "a race", Intermittent: true}}, ok: true},
		{name: "an intermittent deviation that shows is expected",
			specs: []SpecResult{spec("a", SpecFailed, "RECON-007")},
			devs:  []Deviation{{Requirement: "RECON-007", Doc: "002 L1", Why: "a race", Intermittent: true}}, ok: true},
		{name: "an intermittent entry covers only its own failures",
			specs: []SpecResult{spec("a", SpecPassed, "RECON-007"), spec("b", SpecFailed, "TEL-001")},
			devs:  []Deviation{{Requirement: "RECON-007", Doc: "002 L1", Why: "a race", Intermittent: true}}, unexpected: []string{"b"}},
		{name: "a spec covering two requirements is expected if one is listed",
			specs: []SpecResult{spec("twin order", SpecFailed, "TWIN-001", "TWIN-010")},
			devs:  []Deviation{dev("TWIN-010")}, ok: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rep := &Report{Specs: tc.specs}
			c, err := CheckDeviations(rep, &Deviations{Deviations: tc.devs})
			if err != nil {
				t.Fatal(err)
			}
			if c.OK() != tc.ok {
				t.Errorf("OK = %v, want %v\n%s", c.OK(), tc.ok, c)
			}
			var un, fx []string
			for _, s := range c.Unexpected {
				un = append(un, s.Name)
			}
			for _, d := range c.Fixed {
				fx = append(fx, d.Requirement)
			}
			if strings.Join(un, "|") != strings.Join(tc.unexpected, "|") {
				t.Errorf("unexpected = %q, want %q", un, tc.unexpected)
			}
			if strings.Join(fx, "|") != strings.Join(tc.fixed, "|") {
				t.Errorf("fixed = %q, want %q", fx, tc.fixed)
			}
			if len(c.NotJudged) != tc.notJudged {
				t.Errorf("not judged = %d, want %d", len(c.NotJudged), tc.notJudged)
			}
		})
	}
}

func TestCheckDeviationsRefusesOtherClientVersion(t *testing.T) {
	rep := &Report{Board: BoardInfo{Firmware: FirmwareHello{Client: "azure-iot-device", ClientVersion: "1.18.5"}}}
	_, err := CheckDeviations(rep, &Deviations{Client: "azure-iot-device", ClientVersion: "1.18.4"})
	if !errors.Is(err, ErrOtherClient) {
		t.Fatalf("err = %v, want ErrOtherClient", err)
	}
}

func TestLoadDeviations(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("client: c\nclientVersion: '1'\ndeviations:\n  - requirement: TEL-005\n    doc: 002 L10229\n    why: no size check\n"), 0o644)
	d, err := LoadDeviations(good)
	if err != nil || len(d.Deviations) != 1 || d.Deviations[0].Requirement != "TEL-005" {
		t.Fatalf("LoadDeviations = %+v, %v", d, err)
	}
	for name, body := range map[string]string{
		"no-doc.yaml":  "deviations:\n  - requirement: TEL-005\n    why: x\n",
		"unknown.yaml": "deviations:\n  - requirement: TEL-005\n    doc: d\n    why: x\n    typo: 1\n",
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o644)
		if _, err := LoadDeviations(p); err == nil {
			t.Errorf("%s: loaded, want an error", name)
		}
	}
}
