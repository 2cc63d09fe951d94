package sim

// Defect switches added for the OTA boundary specs (issue 15): bugs at a
// boundary the one-example OTA specs did not visit (a CodeVersion whose
// text grows a digit, a file larger than one read buffer, a start that is
// a wake from sleep, an empty Files array). Each has a row in DEFECTS.md
// ("Added for the OTA boundary specs").
const (
	DefOTAVersionTextCompare   = "ota-version-text-compare"
	DefOTAHashFirstChunk       = "ota-hash-first-chunk"
	DefOTANotReadOnWake        = "ota-not-read-on-wake"
	DefOTAEmptyFilesDropped    = "ota-empty-files-dropped"
	DefOTAMissingFileInstalled = "ota-missing-file-installed"
	DefOTAErrorReportedCurrent = "ota-error-reported-current"
)

var otaBoundsDefects = []Defect{
	{DefOTAVersionTextCompare, "OTA-002", "a download happens only when the desired CodeVersion's text sorts after the installed one's (string order): 9 to 10 and 99 to 100 are taken as no change"},
	{DefOTAHashFirstChunk, "OTA-004", "the SHA-256 is computed over the first 64 KB read buffer only: a larger file whose bytes differ after it verifies against the Signature of the original"},
	{DefOTANotReadOnWake, "OTA-001", "the flag that the OTA settings were read survives deep sleep (RTC memory): after a wake the twin's Files, Token and CodeVersion are not read again"},
	{DefOTAMissingFileInstalled, "OTA-003", "a download the storage answers 404 or 5xx is skipped: the update goes on without the file and the new CodeVersion is recorded as installed (only 403 is treated as a failure)"},
	{DefOTAErrorReportedCurrent, "OTA-007", "a failed update is reported as status current (the old version), so the reported properties never show the error"},
	{DefOTAEmptyFilesDropped, "OTA-006", "an empty Files array makes the parser give up on the whole desired section: CodeVersion and Token are not read"},
}
