package sim

// Defect switches added for the OTA, FUP and LIMITS specs. Each has a row
// in DEFECTS.md (section "Added for the OTA, FUP and LIMITS specs") and is
// modelled on a real client bug.
const (
	DefOTANotReadAtStart      = "ota-settings-not-read-at-start"
	DefOTAFilesFirstOnly      = "ota-files-first-only"
	DefOTADownloadEveryBoot   = "ota-download-every-boot"
	DefOTAVersionNotPersisted = "ota-version-not-persisted"
	DefOTATokenDropped        = "ota-token-dropped"
	DefOTARetryLoop           = "ota-retry-403-loop"
	DefOTASignatureCase       = "ota-signature-case-sensitive"
	DefOTAInstallOnMismatch   = "ota-install-on-mismatch"
	DefOTAUpdateTimeIgnored   = "ota-updatetime-ignored"
	DefOTANoProgress          = "ota-no-progress"
	DefOTAHTTPAccepted        = "ota-http-accepted"
	DefOTASleepEarly          = "ota-sleep-before-done"
	DefFUPDeprecatedGet       = "fup-deprecated-get"
	DefFUPWrongLocation       = "fup-wrong-location"
	DefFUPNoNotification      = "fup-no-notification"
	DefFUPNoFailureNotice     = "fup-no-failure-notification"
	DefFUPWrongCorrelation    = "fup-wrong-correlation-id"
	DefThrottlingIgnored      = "throttling-ignored"
	DefTwinPerSample          = "twin-report-per-sample"
	DefMethodResponsePadded   = "method-response-padded"
	DefHeartbeatTelemetry     = "heartbeat-as-telemetry"
)

var otaDefects = []Defect{
	{DefOTANotReadAtStart, "OTA-001", "the OTA settings are not read from the twin fetched at start: only a desired patch arriving while connected starts an update"},
	{DefOTAFilesFirstOnly, "OTA-006", "only the first entry of the desired Files array is taken (a one-slot parser); the others are never downloaded"},
	{DefOTADownloadEveryBoot, "OTA-002", "the files are downloaded at every start, whether CodeVersion changed or not"},
	{DefOTAVersionNotPersisted, "OTA-002", "the installed CodeVersion is kept in RAM only: after a reboot the unchanged version is downloaded again"},
	{DefOTATokenDropped, "OTA-003", "FileName is fetched without the SAS Token (the storage answers 403)"},
	{DefOTARetryLoop, "OTA-003", "a refused download (403) is reported and then tried again every 100 ms (bounded: 50 tries)"},
	{DefOTASignatureCase, "OTA-004", "the Signature is compared as an exact string with upper-case hyphenated hex: a lower-case Signature of the right hash is refused"},
	{DefOTAInstallOnMismatch, "OTA-004", "a file whose SHA-256 does not match its Signature is installed anyway"},
	{DefOTAUpdateTimeIgnored, "OTA-005", "the application ignores the desired UpdateTime and sends telemetry every 60 s"},
	{DefOTANoProgress, "OTA-007", "no progress is reported during an update (only the final current state)"},
	{DefOTAHTTPAccepted, "OTA-008", "an http:// FileName is fetched over plaintext HTTP"},
	{DefOTASleepEarly, "OTA-009", "sleep cuts the radio at once: the running OTA cycle and its reported update are not finished and no DISCONNECT is sent"},
	{DefFUPDeprecatedGet, "FUP-001", "file upload starts with the deprecated GET /devices/{id}/files/{name}"},
	{DefFUPWrongLocation, "FUP-002", "the file is PUT to the requested blob name instead of the blobName the hub returned (storage answers 403)"},
	{DefFUPNoNotification, "FUP-003", "no completion notification is sent after an upload"},
	{DefFUPNoFailureNotice, "FUP-003", "a failed upload is not notified (only successful ones are)"},
	{DefFUPWrongCorrelation, "FUP-003", "the notification carries the blob name as correlationId"},
	{DefThrottlingIgnored, "LIMITS-001", "a telemetry backlog is flushed at full speed after reconnect, ignoring the device's D2C budget (and the hub's throttle)"},
	{DefTwinPerSample, "LIMITS-002", "every sample becomes its own reported PATCH at once: no coalescing, above the twin-update budget"},
	{DefMethodResponsePadded, "LIMITS-004", "every method response carries a 40 KB diagnostic dump whatever the handler answers (ten 4 KB method meters)"},
	{DefHeartbeatTelemetry, "LIMITS-005", "the client keeps its connection alive with a telemetry heartbeat every 200 ms instead of MQTT PINGREQ (metered messages around the clock)"},
}
