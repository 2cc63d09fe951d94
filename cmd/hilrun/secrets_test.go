package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/reports"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/secrets"
)

// The secret scanner: `hilrun run` clean and with each defect switch that
// mishandles a credential, then every file the run wrote and every answer
// of the hub's service API searched for every secret the run provisioned,
// in every form rig/secrets knows.
//
// How the test learns the secrets without them reaching an output: the
// child runs with secrets.DumpEnv naming a file outside the --out
// directory, to which each process of the run (hilrun and the virtual
// board's firmware) appends every secret it registers. The hub's answers
// come from fixtures.HubDumpEnv, a second directory outside --out, which
// the run fills over real HTTPS with the "service" policy just before its
// hub stops. The search is a plain substring search over secrets.Forms(),
// independent of the index Mask uses, and a positive control plants a
// secret in each scanned directory first, so a scanner that finds nothing
// cannot pass.

// leak is one registered secret found where it must not be. It names the
// secret, never shows it.
type leak struct {
	file, label, form string
	offset            int
}

func (l leak) String() string {
	return fmt.Sprintf("%s at byte %d: %s (%s)", l.file, l.offset, l.label, l.form)
}

// scanDir searches every regular file under dir for every form.
func scanDir(t *testing.T, dir string, forms []secrets.Form) (files int, leaks []leak) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		rel, _ := filepath.Rel(dir, path)
		leaks = append(leaks, scanBytes(rel, b, forms)...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files, leaks
}

func scanBytes(name string, b []byte, forms []secrets.Form) []leak {
	var out []leak
	for _, f := range forms {
		if i := bytes.Index(b, []byte(f.Text)); i >= 0 {
			out = append(out, leak{file: name, label: f.Label, form: f.Desc, offset: i})
		}
	}
	return out
}

// plantAndFind is the positive control: a registered symmetric key (an
// identity's or a policy's) written into dir, as Base64 and URL-encoded,
// must be found there; then it is removed.
func plantAndFind(t *testing.T, dir string, reg *secrets.Registry, forms []secrets.Form) {
	t.Helper()
	var key string
	for _, f := range forms {
		if strings.Contains(f.Label, "key (primary)") && f.Desc == "Base64 text" {
			key = f.Text
			break
		}
	}
	if key == "" {
		t.Fatalf("the run registered no symmetric key: the dump (%s) is not working", secrets.DumpEnv)
	}
	planted := map[string]string{
		"zz-planted-base64.txt":      "planted " + key + "\n",
		"zz-planted-urlencoded.json": `{"password":"` + url.QueryEscape(key) + `"}`,
	}
	for name, text := range planted {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, leaks := scanDir(t, dir, forms)
	for name := range planted {
		found := false
		for _, l := range leaks {
			found = found || l.file == name
		}
		if !found {
			t.Fatalf("positive control: the scanner did not find the key planted in %s", filepath.Join(dir, name))
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if !reg.Contains("planted " + key) {
		t.Fatal("positive control: the loaded registry does not recognise a key it holds")
	}
}

// runForScan runs `hilrun run` with both dumps on and returns its output,
// exit status and the three directories.
func runForScan(t *testing.T, args ...string) (out string, code int, outDir, hubDir string, reg *secrets.Registry) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	outDir, side := t.TempDir(), t.TempDir()
	hubDir = filepath.Join(side, "hub-api")
	dump := filepath.Join(side, "secrets.jsonl")
	c := exec.Command(exe, append([]string{"run", "--out", outDir}, args...)...)
	c.Env = append(os.Environ(), asHilrunEnv+"=1", secrets.DumpEnv+"="+dump, fixtures.HubDumpEnv+"="+hubDir)
	var buf bytes.Buffer
	c.Stdout, c.Stderr = &buf, &buf
	err = c.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	reg, err = secrets.LoadDump(dump)
	if err != nil {
		t.Fatalf("secret dump: %v\n%s", err, buf.String())
	}
	return buf.String(), code, outDir, hubDir, reg
}

func TestNoSecretLeaksFromRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the suite several times")
	}
	t.Parallel()
	cases := []struct {
		defect, labels, failing string
		// passwordSecret: the hub must have seen (and masked) a registered
		// secret in a CONNECT password, proof that the leak path ran.
		passwordSecret bool
	}{
		// Every CONN spec (SAS, X.509, renewals), a module token (MOD-003), a
		// twin and a C2D spec so those service answers hold data; OTA and
		// file upload put storage SAS tokens in twins and on the wire. In
		// four runs side by side, the CONN specs that wait on the board's
		// timers (keep-alive, serial connects, refusals) apart: each run's
		// secrets are searched for in that run's files, and together they
		// are every spec of the one run.
		{"", "CONN-023 || CONN-004", "", false},
		{"", "CONN-003 || CONN-016", "", false},
		{"", "CONN && !CONN-023 && !CONN-004 && !CONN-003 && !CONN-016", "", false},
		{"", "MOD-003 || C2D-001 || TWIN-001 || OTA || FUP", "", false},
		// The switches of devicefw/sim/DEFECTS.md that put a credential on
		// the wire: the key itself, a token in the wrong shape, a token
		// where none belongs, a token signed with a key derived from the
		// device key, and CONNECT (credentials) in plaintext.
		{"sas-key-as-password", "CONN-011", "CONN-011", true},
		{"sas-no-prefix", "CONN-007", "CONN-007", false},
		{"x509-also-sas", "CONN-012", "CONN-012", false},
		{"token-wrong-key", "CONN-009", "CONN-009", false},
		{"tls-plaintext-fallback", "CERT-004", "CERT-004", false},
		{"tls-fallback-1883", "CERT-004", "CERT-004", false},
		// Provisioning: enrollment and derived keys over the agent, DPS
		// tokens, the hub identities DPS creates; and a token signed with
		// the group key itself.
		{"", "DPS || PNP-006", "", false},
		{"dps-group-key-not-derived", "DPS-003", "DPS-003", false},
	}
	for _, tc := range cases {
		name := tc.defect
		if name == "" {
			name = "clean"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel() // each run has its own directories and dumps
			args := []string{"--label-filter", tc.labels}
			if tc.defect != "" {
				args = append(args, "--defect", tc.defect)
			}
			start := time.Now()
			out, code, outDir, hubDir, reg := runForScan(t, args...)
			want := 0
			if tc.failing != "" {
				want = 1
			}
			if code != want {
				t.Fatalf("exit %d, want %d:\n%s", code, want, out)
			}
			rep, err := reports.Load(outDir)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Specs) == 0 {
				t.Fatalf("no spec ran:\n%s", out)
			}
			if tc.failing != "" {
				for _, r := range rep.Requirements {
					if r.ID == tc.failing && r.Status != reports.Fail {
						t.Errorf("%s is %s, want fail", r.ID, r.Status)
					}
				}
			}
			forms := reg.Forms()
			if reg.Len() < 3 || len(forms) == 0 {
				t.Fatalf("only %d secrets registered", reg.Len())
			}
			plantAndFind(t, outDir, reg, forms)
			plantAndFind(t, hubDir, reg, forms)

			nOut, leaks := scanDir(t, outDir, forms)
			nHub, hubLeaks := scanDir(t, hubDir, forms)
			leaks = append(leaks, hubLeaks...)
			leaks = append(leaks, scanBytes("(hilrun output)", []byte(out), forms)...)
			for _, f := range []string{reports.JSONFile, reports.HTMLFile, reports.JUnitFile, reports.MarkdownFile, "console.log", "ginkgo.log"} {
				if _, err := os.Stat(filepath.Join(outDir, f)); err != nil {
					t.Errorf("the run wrote no %s", f)
				}
			}
			for _, f := range []string{"rest-trace.json", "rest-telemetry.json", "rest-status.json", "go-trace.json", "go-telemetry.json"} {
				if _, err := os.Stat(filepath.Join(hubDir, f)); err != nil {
					t.Errorf("no hub answer %s", f)
				}
			}
			// The scan proves nothing over refusals: the service policy
			// must have been let in and the trace must hold the run.
			for _, f := range []string{"rest-trace.json", "rest-telemetry.json", "rest-status.json"} {
				b, _ := os.ReadFile(filepath.Join(hubDir, f))
				if first, body, _ := bytes.Cut(b, []byte("\n")); !bytes.HasSuffix(first, []byte(" 200")) || len(body) < 2 {
					t.Errorf("%s: %q, want a 200 answer with a body", f, first)
				}
			}
			var entries []hub.Entry
			if b, err := os.ReadFile(filepath.Join(hubDir, "go-trace.json")); err != nil || json.Unmarshal(b, &entries) != nil || len(entries) == 0 {
				t.Errorf("go-trace.json holds no trace entries (%v)", err)
			}
			for _, l := range leaks {
				t.Errorf("secret leaked: %s", l)
			}
			if tc.passwordSecret {
				seen := false
				for _, e := range entries {
					for _, s := range e.Secrets {
						seen = seen || s.Field == "password" && strings.HasPrefix(s.Secret, "symmetric key (primary) of ")
					}
				}
				if !seen {
					t.Error("the hub never saw the device key in a password: the defect did not put it on the wire")
				}
			}
			t.Logf("%d specs; %d secrets (%d forms); scanned %d run files and %d hub answers; %s", len(rep.Specs), reg.Len(), len(forms), nOut, nHub, time.Since(start).Round(time.Millisecond))
		})
	}
}
