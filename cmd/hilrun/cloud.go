package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/hilrun/hilrun/devicefw/sim"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/reports"
)

// cloudHook applies `hilrun run --cloud`: azure (default) judges against
// the reference IoT Hub; aws starts the reference AWS IoT endpoint,
// flashes the virtual board's AWS image and runs the AWS specs.
func cloudHook(o *runOptions) error {
	switch o.cloud {
	case "", fixtures.CloudAzure:
		for _, d := range o.defects {
			if isAWSDefect(d) {
				return &exitError{2, fmt.Sprintf("defect %s belongs to the AWS IoT image: add --cloud aws", d)}
			}
		}
		return nil
	case fixtures.CloudAWS:
	default:
		return &exitError{2, fmt.Sprintf("--cloud %q: want azure or aws", o.cloud)}
	}
	if strings.HasPrefix(o.board, "sdk:") || o.firmware == "c" {
		return &exitError{2, "--cloud aws needs a firmware built for AWS IoT (the virtual board's Go firmware, or a real board's AWS image); the SDK boards and the C firmware are IoT Hub clients"}
	}
	return nil
}

// cloudArgs are the extra `hilrun run` arguments for a defect's run.
func cloudArgs(requirement string) []string {
	if strings.HasPrefix(requirement, "AWS-") {
		return []string{"--cloud", fixtures.CloudAWS}
	}
	return nil
}

// isAWSDefect reports whether a defect switch belongs to the AWS image.
func isAWSDefect(name string) bool {
	for _, d := range sim.Defects {
		if d.Name == name {
			return strings.HasPrefix(d.Requirement, "AWS-")
		}
	}
	return false
}

// selftestCleanAWS is the clean run of the AWS image in the self-test (one
// job of its queue, selftest_plan.go, beside the defect runs);
// addCleanAWS then adds it: its specs must pass and count among those
// every defect is checked against.
func selftestCleanAWS(ctx context.Context, exe, out string) (*reports.Report, error) {
	return selfRun(ctx, exe, filepath.Join(out, "clean-aws"), nil, "", cloudArgs("AWS-")...)
}

func addCleanAWS(w io.Writer, clean, rep *reports.Report, err error, res *selftestResult) error {
	if err != nil {
		return &exitError{2, fmt.Sprintf("clean AWS run: %v", err)}
	}
	passed := true
	for _, s := range rep.Specs {
		if s.Status == reports.SpecFailed {
			passed = false
			res.CleanPassed = false
			res.CleanFailed = append(res.CleanFailed, s.Name)
		}
	}
	// The Azure run reports the AWS specs not applicable; the AWS run judges them.
	kept := clean.Specs[:0]
	for _, s := range clean.Specs {
		if s.Area != "AWS" {
			kept = append(kept, s)
		}
	}
	clean.Specs = append(kept, rep.Specs...)
	res.Specs = len(clean.Specs)
	fmt.Fprintf(w, "selftest: clean AWS run: %d specs, passed=%v (%.1fs)\n", len(rep.Specs), passed, rep.Run.Wall.Seconds())
	return nil
}
