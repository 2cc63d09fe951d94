package agentproto

// Operations, events and shapes for twin-driven OTA (seed 004, OTA-*),
// device sleep cycles (OTA-009) and IoT Hub file upload (FUP-*). They are
// additions to protocol version 1: a firmware without them answers
// `unknown_op`, does not declare `ota` / `file-upload`, and the specs that
// need them are not applicable (PROTOCOL.md §4.2).
const (
	OpOTAStatus  = "ota.status"  // → OTAStatus: the installed version and files as the device holds them
	OpSleep      = "sleep"       // SleepArgs: finish the cycle, disconnect, sleep, then boot (hello seq 1)
	OpFileUpload = "file.upload" // FileUploadArgs → FileUploadResult
	OpAppBurst   = "app.burst"   // BurstArgs → BurstResult: the application hands the client a backlog

	EvOTA = "ota" // OTAEvent: a step of the OTA engine
)

// OTA engine states (OTAEvent.State, reported fwUpdateStatus; 002 L8260-8292).
const (
	OTARead        = "read" // desired Files / Token / CodeVersion parsed (OTA-001)
	OTACurrent     = "current"
	OTADownloading = "downloading"
	OTAVerifying   = "verifying"
	OTAApplying    = "applying"
	OTAError       = "error"
)

// OTAEvent is one step of the OTA engine.
type OTAEvent struct {
	State       string `json:"state"`
	CodeVersion string `json:"codeVersion,omitempty"` // desired
	Installed   string `json:"installed,omitempty"`   // installed before this step
	Files       int    `json:"files,omitempty"`       // desired Files entries
	HasToken    bool   `json:"hasToken,omitempty"`
	File        string `json:"file,omitempty"`
	Detail      string `json:"detail,omitempty"`
}

// OTAFile is an installed file.
type OTAFile struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"` // upper-case hex
	Size   int    `json:"size"`
}

// OTAStatus is what ota.status answers.
type OTAStatus struct {
	Installed string    `json:"installed"` // installed CodeVersion ("" none)
	Files     []OTAFile `json:"files,omitempty"`
	State     string    `json:"state,omitempty"` // last engine state
	Detail    string    `json:"detail,omitempty"`
	Running   string    `json:"running,omitempty"` // the application running (installed version), "" none
}

// SleepArgs: how long the device sleeps before it boots again (bounded
// by the firmware; the virtual board caps it at 2000 ms).
type SleepArgs struct {
	MS int `json:"ms"`
}

// FileUploadArgs asks for one file upload through the hub (FUP-001..003).
type FileUploadArgs struct {
	BlobName string `json:"blobName"`
	Payload  string `json:"payload,omitempty"`
	Gen      *Gen   `json:"gen,omitempty"`
}

// FileUploadResult says how the upload went.
type FileUploadResult struct {
	CorrelationID string `json:"correlationId,omitempty"`
	BlobName      string `json:"blobName,omitempty"` // as the hub returned it
	StartStatus   int    `json:"startStatus"`        // HTTP status of POST /files
	UploadStatus  int    `json:"uploadStatus"`       // HTTP status of the blob PUT (0: not attempted)
	NotifyStatus  int    `json:"notifyStatus"`       // HTTP status of the notification (0: none sent)
	Size          int    `json:"size"`
	Error         string `json:"error,omitempty"`
}

// Burst kinds.
const (
	BurstTelemetry = "telemetry" // count messages, flushed when connected (LIMITS-001)
	BurstReported  = "reported"  // count samples of one reported property (LIMITS-002)
)

// BurstArgs: the application produces Count items at once (a backlog of
// readings, a burst of samples); PerSecond is the device's budget for
// that traffic (its share of the hub's throttle, LIMITS-001/002), which a
// conforming client keeps to. Telemetry is queued while disconnected and
// flushed after the next connect.
type BurstArgs struct {
	Kind      string  `json:"kind"`
	Count     int     `json:"count"`
	Size      int     `json:"size,omitempty"` // telemetry payload bytes (generated)
	Key       string  `json:"key,omitempty"`  // reported property name (default "sample")
	PerSecond float64 `json:"perSecond"`
}

// BurstResult: the items were accepted (the work goes on in the device).
type BurstResult struct {
	Queued int `json:"queued"`
}
