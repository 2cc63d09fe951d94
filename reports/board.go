package reports

import (
	"slices"
	"strings"
)

// CapAWS is the capability of the AWS IoT Core profile (agent protocol
// name): requirements needing it belong to the AWS cloud.
const CapAWS = "aws"

// BoardLine is the board in one line for the report headers: firmware,
// client, board and profile, or why it is not known (the board never
// answered hello: a rig fault before the first spec).
func BoardLine(r *Report) string {
	fw := r.Board.Firmware
	where := r.Board.Profile
	if r.Board.Port != "" {
		where = strings.TrimSpace(where + " on " + r.Board.Port)
	}
	if fw.Name == "" {
		if where == "" {
			return "board not identified (it never answered the rig's hello)"
		}
		return "board " + where + " not identified (it never answered the rig's hello)"
	}
	s := fw.Name
	if fw.Version != "" {
		s += " " + fw.Version
	}
	if c := strings.TrimSpace(fw.Client + " " + fw.ClientVersion); c != "" {
		s += " (" + c + ")"
	}
	if fw.Board != "" {
		s += " on board " + fw.Board
	}
	if where != "" {
		s += " · profile " + where
	}
	return s
}

// OutsideCloud reports whether area belongs to another cloud than the
// board's: every requirement of the area needs the AWS profile and the
// board does not declare it. Such an area is left out of the HTML and
// Markdown reports (an Azure board's report does not list AWS as a gap);
// report.json keeps every row.
func (r *Report) OutsideCloud(area string) bool {
	if r.Run.Cloud == "aws" || slices.Contains(r.Board.Firmware.Caps, CapAWS) {
		return false
	}
	n := 0
	for _, q := range r.Requirements {
		if q.Area != area {
			continue
		}
		if q.Capability != CapAWS || q.Status == Pass || q.Status == Fail {
			return false
		}
		n++
	}
	return n > 0
}
