package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hilrun/hilrun/reports"
)

func newReportCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "report DIR",
		Short: "Re-render report.html, junit.xml and summary.md from a run's report.json (or a merged report's merged.json)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
				dir = filepath.Dir(dir)
			}
			if _, err := os.Stat(filepath.Join(dir, reports.MergedJSONFile)); err == nil {
				m, err := reports.LoadMerged(dir)
				if err != nil {
					return &exitError{2, err.Error()}
				}
				if err := reports.RenderMerged(dir, m); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "re-rendered %s (merged, %d boards, verdict %s)\n", filepath.Join(dir, reports.HTMLFile), len(m.Boards), m.Summary.Verdict)
				return nil
			}
			rep, err := reports.Load(filepath.Join(dir, reports.JSONFile))
			if err != nil {
				return &exitError{2, fmt.Sprintf("%v (is %s a hilrun run directory?)", err, dir)}
			}
			if err := reports.Render(dir, rep); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "re-rendered %s (outcome %s)\n", filepath.Join(dir, reports.HTMLFile), rep.Outcome())
			return nil
		},
	}
	cmd.AddCommand(newReportMergeCmd(), newReportExpectCmd(), newReportCoverageCmd())
	return cmd
}

func newReportExpectCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "expect --deviations FILE DIR",
		Short: "Check that a run failed exactly the client's known deviations (for an SDK's CI job)",
		Long: `expect compares the failed specs of a run (DIR/report.json) with a list of
the client's known, documented deviations (YAML: client, clientVersion, and
per deviation the requirement, optionally the specs, the doc line it breaks
and why; intermittent: true for a race inside the client that shows on some
runs only). An official SDK's CI job gates on it: a failure that is not
listed, or a listed deviation (not intermittent) that no longer fails, turns
the job red. The report
itself is unchanged: a known deviation is still a failed requirement.

Exit status: 0 the run failed exactly the listed deviations; 1 it did not;
2 bad input or a report of another client version; 3 the run had a rig fault
or was interrupted (no verdict to compare).`,
		Example: `  hilrun run --board sdk:azure-iot-node --out out/node
  hilrun report expect --deviations devicefw/sdk/azure-iot-node/deviations.yaml out/node`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				return &exitError{2, "report expect needs --deviations FILE"}
			}
			d, err := reports.LoadDeviations(file)
			if err != nil {
				return &exitError{2, err.Error()}
			}
			rep, err := reports.Load(filepath.Join(args[0], reports.JSONFile))
			if err != nil {
				return &exitError{2, fmt.Sprintf("%v (is %s a hilrun run directory?)", err, args[0])}
			}
			switch o := rep.Outcome(); o {
			case reports.OutcomeRigFault, reports.OutcomeInterrupted:
				return &exitError{o.ExitStatus(), fmt.Sprintf("the run ended %s: no verdict to compare with the known deviations; run again", o.Label())}
			}
			c, err := reports.CheckDeviations(rep, d)
			if err != nil {
				return &exitError{2, err.Error()}
			}
			fmt.Fprint(cmd.OutOrStdout(), c.String())
			if !c.OK() {
				return &exitError{1, "the client's failures differ from its known deviations (" + file + ")"}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "deviations", "", "the client's known deviations (YAML; e.g. devicefw/sdk/azure-iot-node/deviations.yaml)")
	return cmd
}

func newReportMergeCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "merge --out DIR PATH...",
		Short: "Merge several runs' report.json (boards, hosts) into one conformance report",
		Long: `merge reads the report.json of several runs — the boards of a pool, the
boards of several CI runners — and writes one conformance report to --out:
merged.json (schema in reports/SCHEMA.md), report.html (a section per board
and a requirement × board matrix), junit.xml (one testsuite per board) and
summary.md (for $GITHUB_STEP_SUMMARY).

Each PATH is a report.json, a run directory, or a directory searched
recursively for report.json files (e.g. the downloaded CI artifacts). A
board's id is the name of the directory holding its report.json; the same id
from two hosts becomes id@host. Reports of another schema version are
refused.

A board whose run never reached the specs (no hello after reset, port
missing, flashing failed) is a rig fault, not a conformance failure.

Exit status: 0 every board passed; 1 a board failed conformance; 3 the only
problems are rig faults; 2 nothing could be merged.`,
		Example: `  hilrun report merge --out out/merged out/pool-a out/pool-b
  hilrun report merge --out merged artifacts/`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return &exitError{2, "report merge needs --out DIR"}
			}
			files, err := reports.FindReports(args, out)
			if err != nil {
				return &exitError{2, err.Error()}
			}
			m, err := reports.MergeFiles(files, reports.MergeOptions{Version: version})
			if err != nil {
				return &exitError{2, err.Error()}
			}
			if err := reports.WriteMerged(out, m); err != nil {
				return &exitError{2, err.Error()}
			}
			w := cmd.OutOrStdout()
			s := m.Summary
			fmt.Fprintf(w, "merged %d boards: %d pass, %d fail, %d interrupted, %d rig fault\n", len(m.Boards), s.Boards[reports.BoardPass], s.Boards[reports.BoardFail], s.Boards[reports.BoardInterrupted], s.Boards[reports.BoardRigFault])
			for _, b := range m.Boards {
				fmt.Fprintf(w, "  %-20s %-10s %-9s %s\n", b.ID, orDash(b.Host), b.Verdict, b.Source)
			}
			for _, warn := range m.Warnings {
				fmt.Fprintf(w, "  note: %s\n", warn)
			}
			fmt.Fprintf(w, "merged report: %s\n", filepath.Join(out, reports.HTMLFile))
			switch s.Verdict {
			case reports.BoardFail:
				return &exitError{1, "conformance failure on " + strings.Join(boardsWith(m, reports.BoardFail), ", ")}
			case reports.BoardInterrupted:
				return &exitError{1, "interrupted run on " + strings.Join(boardsWith(m, reports.BoardInterrupted), ", ")}
			case reports.BoardRigFault:
				return &exitError{exitRigFault, "rig fault on " + strings.Join(boardsWith(m, reports.BoardRigFault), ", ") + " (not a firmware verdict)"}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "directory for the merged report (created)")
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
