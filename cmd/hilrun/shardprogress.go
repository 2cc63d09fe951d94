package main

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
)

// shardProgress turns the live output of a sharded default run into what
// one board prints: a line per spec, counted across all boards
// ("PASS [ 17/163] …"), each with its indented failure text. Start-up
// chatter and each child's own summary are dropped (the parent prints the
// merged one); anything else a child says, an error above all, is kept
// with the child's prefix.
type shardProgress struct {
	mu    sync.Mutex
	total int
	width int
	done  int
	hello bool // one board's hello shown (they are alike)
}

// specLine is suites/run.go's progress line: outcome mark, then [n/N].
var specLine = regexp.MustCompile(`^(PASS|FAIL|N/A |SKIP|RIG |INT |PRE ) \[\s*\d+/\d+\](.*)$`)

// chatter is what every child prints that one board's run would not show
// again here: its start-up, its own verdict and summary (their lines
// begin so, see printSummary).
var chatter = []string{"hilrun: starting", "hilrun: flashing", "hilrun: board ", "hilrun: conformance run failed", "hilrun: no spec ran"}

// filter returns the Filter of one child's live output.
func (p *shardProgress) filter(prefix string) func(string) (string, bool) {
	inSpec := false // the lines after a spec line that belong to it
	inSummary := false
	return func(line string) (string, bool) {
		if m := specLine.FindStringSubmatch(line); m != nil {
			p.mu.Lock()
			p.done++
			n := p.done
			p.mu.Unlock()
			inSpec, inSummary = true, false
			return fmt.Sprintf("%s [%*d/%d]%s", m[1], p.width, n, p.total, m[2]), true
		}
		if inSpec && strings.HasPrefix(line, "      ") {
			return line, true
		}
		inSpec = false
		switch {
		case strings.HasPrefix(line, "hilrun: board "):
			p.mu.Lock()
			first := !p.hello
			p.hello = true
			p.mu.Unlock()
			return line, first
		case strings.HasPrefix(line, "hilrun: "):
			for _, c := range chatter {
				if strings.HasPrefix(line, c) {
					return "", false
				}
			}
			return prefix + line, true
		case inSummary || strings.TrimSpace(line) == "":
			return "", false
		case isSummaryStart(line):
			inSummary = true // from here the child's summary, to its end
			return "", false
		}
		return prefix + line, true
	}
}

// isSummaryStart is the first line of a run's closing summary
// ("163 specs: 150 passed, …").
func isSummaryStart(line string) bool {
	return summaryStart.MatchString(line)
}

var summaryStart = regexp.MustCompile(`^\d+ specs?: \d+ passed`)
