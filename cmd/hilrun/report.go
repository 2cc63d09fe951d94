package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/hilrun/hilrun/reports"
)

func newReportCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "report DIR",
		Short: "Re-render report.html, junit.xml and summary.md from a run's report.json",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
				dir = filepath.Dir(dir)
			}
			rep, err := reports.Load(filepath.Join(dir, reports.JSONFile))
			if err != nil {
				return &exitError{2, fmt.Sprintf("%v (is %s a hilrun run directory?)", err, dir)}
			}
			if err := reports.Render(dir, rep); err != nil {
				return err
			}
			ok, _ := rep.Verdict()
			fmt.Fprintf(cmd.OutOrStdout(), "re-rendered %s (verdict pass=%v)\n", filepath.Join(dir, reports.HTMLFile), ok)
			return nil
		},
	}
}
