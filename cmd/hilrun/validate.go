package main

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/onsi/ginkgo/v2/types"

	"github.com/hilrun/hilrun/fixtures/catalog"
	"github.com/hilrun/hilrun/reports"
)

// validateSelection checks --label-filter and --focus before anything
// starts (no hub, no flashing): a filter Ginkgo cannot parse, a label that
// is neither a requirement ID nor an area of the catalog (a typo such as
// TWIN-999 would select nothing and judge nothing), or a focus that is not
// a regular expression is a usage error, exit 2 (issue 16).
func validateSelection(labelFilter string, focus []string) error {
	if strings.TrimSpace(labelFilter) != "" {
		if _, err := types.ParseLabelFilter(labelFilter); err != nil {
			return &exitError{reports.ExitUsage, "--label-filter " + quoteArg(labelFilter) + ": " + labelFilterError(err)}
		}
		if unknown := unknownLabels(labelFilter); len(unknown) > 0 {
			return &exitError{reports.ExitUsage, fmt.Sprintf("--label-filter %s: %s %s neither a requirement ID nor an area of the catalog (areas: %s; IDs like TWIN-010; `hilrun run --help`)",
				quoteArg(labelFilter), strings.Join(unknown, ", "), plural(len(unknown), "is", "are"), strings.Join(catalog.MustLoad().Areas(), " "))}
		}
	}
	for _, f := range focus {
		if _, err := regexp.Compile(f); err != nil {
			return &exitError{reports.ExitUsage, "--focus " + quoteArg(f) + ": not a regular expression: " + err.Error()}
		}
	}
	return nil
}

// labelFilterError is Ginkgo's parse error without its colours and links:
// the message and the position.
func labelFilterError(err error) string {
	msg := err.Error()
	if ge, ok := err.(types.GinkgoError); ok {
		msg = ge.Heading + ": " + strings.Join(strings.Fields(ge.Message), " ")
	}
	msg = regexp.MustCompile(`\x1b\[[0-9;]*m`).ReplaceAllString(msg, "")
	return msg + " (syntax: labels joined with && || ! and parentheses, e.g. \"TWIN && !TWIN-018\")"
}

// unknownLabels returns the plain labels of a label filter that the
// catalog does not know (regular expressions /…/ and set queries are not
// checked). Ginkgo matches labels case-insensitively, and so does this.
func unknownLabels(filter string) []string {
	cat := catalog.MustLoad()
	areas := cat.Areas()
	var out []string
	for _, tok := range regexp.MustCompile(`&&|\|\||[!(),]`).Split(filter, -1) {
		tok = strings.TrimSpace(tok)
		if tok == "" || strings.HasPrefix(tok, "/") || strings.ContainsAny(tok, ":{}") {
			continue
		}
		up := strings.ToUpper(tok)
		if _, ok := cat.Get(up); ok || slices.Contains(areas, up) {
			continue
		}
		if !slices.Contains(out, tok) {
			out = append(out, tok)
		}
	}
	return out
}

func quoteArg(s string) string { return fmt.Sprintf("%q", s) }

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
