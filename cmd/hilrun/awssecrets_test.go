package main

import (
	"testing"

	"github.com/hilrun/hilrun/reports"
)

// TestNoSecretLeaksFromAWSRun: an AWS run provisions every thing's private
// key over the agent protocol (cert.set, creds.rotate) and the endpoint's
// REST key; none of them may reach the report, the logs or the output.
func TestNoSecretLeaksFromAWSRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the AWS specs")
	}
	t.Parallel() // its own directories and dumps
	out, code, outDir, _, reg := runForScan(t, "--cloud", "aws")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	rep, err := reports.Load(outDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Specs) == 0 || rep.Run.Cloud != "aws" {
		t.Fatalf("no AWS spec ran (cloud %q):\n%s", rep.Run.Cloud, out)
	}
	forms := reg.Forms()
	if reg.Len() < 10 || len(forms) == 0 {
		t.Fatalf("only %d secrets registered", reg.Len())
	}
	plantAndFind(t, outDir, reg, forms)
	n, leaks := scanDir(t, outDir, forms)
	leaks = append(leaks, scanBytes("(hilrun output)", []byte(out), forms)...)
	for _, l := range leaks {
		t.Errorf("secret leaked: %s", l)
	}
	t.Logf("%d specs; %d secrets; scanned %d run files", len(rep.Specs), reg.Len(), n)
}
