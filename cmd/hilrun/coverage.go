package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/hilrun/hilrun/fixtures/catalog"
	"github.com/hilrun/hilrun/suites"
)

// newReportCoverageCmd is `hilrun report coverage`: the dimension table
// (fixtures/catalog/dimensions.yaml, issue 15) rolled up per area.
func newReportCoverageCmd() *cobra.Command {
	var gaps, asJSON bool
	var area string
	cmd := &cobra.Command{
		Use:   "coverage",
		Short: "Print the suite's dimension coverage per area: requirements, dimensions, covered, gaps, MUSTs on a single example",
		Long: `coverage rolls up the dimension table (fixtures/catalog/dimensions.yaml):
per requirement, the dimensions along which a client can get it wrong and the
specs that exercise them. Per area it prints the requirements, their
dimensions, how many are covered (every case exercised), partial (some cases,
a gap names the rest) and gaps (nothing exercises them), and the MUSTs that
rest on a single example (one spec, some dimension not fully covered).

It is a property of the suite, not of a run. It first checks the table
against the suite (every coveredBy names a spec that carries the
requirement); a mismatch is exit status 2. --gaps lists every dimension not
fully covered, --area limits the listing to one area, --json prints the
roll-up and the table as JSON.`,
		Example: `  hilrun report coverage
  hilrun report coverage --gaps --area TWIN`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cat, err := catalog.Load()
			if err != nil {
				return &exitError{2, err.Error()}
			}
			tab, err := catalog.Dimensions()
			if err != nil {
				return &exitError{2, err.Error()}
			}
			if area != "" && cat.AreaName(area) == "" {
				return &exitError{2, fmt.Sprintf("unknown area %q (areas: %s)", area, strings.Join(cat.Areas(), ", "))}
			}
			specs, err := suites.List("", nil)
			if err != nil {
				return &exitError{2, err.Error()}
			}
			if problems := suites.CheckDimensions(tab, specs); len(problems) > 0 {
				return &exitError{2, "the dimension table does not match the suite:\n  " + strings.Join(problems, "\n  ")}
			}
			sum := catalog.Summarise(cat, tab)
			w := cmd.OutOrStdout()
			if asJSON {
				var entries []catalog.DimensionEntry
				for _, e := range tab.All() {
					if area == "" || strings.HasPrefix(e.ID, area+"-") {
						entries = append(entries, e)
					}
				}
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{"specs": len(specs), "areas": sum, "requirements": entries})
			}
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "area\trequirements\tMUST\tdimensions\tcovered\tpartial\tgaps\tMUSTs on one spec\tMUSTs on a single example\t")
			for _, a := range sum {
				if area != "" && a.Area != area && a.Area != "all" {
					continue
				}
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", a.Area, a.Requirements, a.Must, a.Dimensions, a.Covered, a.Partial, a.Gaps, len(a.MustOneSpec), len(a.SingleExample))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			all := sum[len(sum)-1]
			fmt.Fprintf(w, "\n%d specs in the suite. A dimension is covered when its specs exercise every case, partial when a gap names some.\n", len(specs))
			for _, a := range sum[:len(sum)-1] {
				if len(a.SingleExample) > 0 && (area == "" || a.Area == area) {
					fmt.Fprintf(w, "MUSTs on a single example, %s: %s\n", a.Area, strings.Join(a.SingleExample, " "))
				}
			}
			if len(all.SingleExample) == 0 {
				fmt.Fprintln(w, "No MUST rests on a single example.")
			}
			if gaps {
				fmt.Fprintln(w)
				for _, e := range tab.All() {
					if area != "" && !strings.HasPrefix(e.ID, area+"-") {
						continue
					}
					for _, d := range e.Dimensions {
						if st := d.State(); st != catalog.DimCovered {
							fmt.Fprintf(w, "%-10s %-24s %-7s [%s] %s\n", e.ID, d.Name, st, strings.Join(d.Cases, ", "), d.Gap)
						}
					}
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&gaps, "gaps", false, "list every dimension that is not fully covered, with its gap")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the roll-up and the table as JSON")
	cmd.Flags().StringVar(&area, "area", "", "only this area (e.g. TWIN)")
	return cmd
}
