package sim

// Defect switches added for the specs that close suite gaps found by
// mutation analysis (issue 15, docs/mutation.md): a twin GET answered with
// a final failure status, a one-digit CodeVersion, and an update on a board
// with nothing installed yet. Each has a row in DEFECTS.md ("Added for the
// mutation-gap specs").
const (
	DefTwinGetStatusIgnored        = "twin-get-status-ignored"
	DefOTAOneCharVersionAbsent     = "ota-one-char-version-absent"
	DefOTANothingInstalledNoUpdate = "ota-nothing-installed-no-update"
)

var boundsGapsDefects = []Defect{
	{DefTwinGetStatusIgnored, "TWIN-008", "the answer to a twin GET is read as the twin document whatever its status: a final 4xx or 5xx answer's body (an error object) is parsed as the twin, and the failure is reported as a malformed document instead of as the hub's failure status"},
	{DefOTAOneCharVersionAbsent, "OTA-002", "a CodeVersion whose JSON text is one character (a single-digit number such as 7) is taken as absent: the engine finds no OTA settings and no update starts"},
	{DefOTANothingInstalledNoUpdate, "OTA-002", "with no version installed yet a desired CodeVersion is not taken as a change: no download, nothing is installed"},
}
