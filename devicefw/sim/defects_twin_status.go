package sim

// Defect switches added for the TWIN-005 status specs (429 and 5xx answers
// to twin requests). Each has a row in DEFECTS.md (section "Added for the
// TWIN-005 specs"); all act in twinRetryDelay (client.go), the one place
// where the firmware decides whether and when a twin request is tried again.
const (
	DefTwinRetryImmediately = "twin-retry-immediately"
	DefTwin5xxGivesUp       = "twin-5xx-gives-up"
	DefTwinStatusAsText     = "twin-status-as-text"
	DefTwin429NormalBackoff = "twin-429-normal-backoff"
)

// twinStatusDefects lists them; see Defects.
var twinStatusDefects = []Defect{
	{DefTwinRetryImmediately, "TWIN-005", "a twin request answered 429 or 5xx is sent again at once, without backoff (bounded: 6 tries in all)"},
	{DefTwin5xxGivesUp, "TWIN-005", "a 5xx answer to a twin request is final: the request fails without a retry"},
	{DefTwinStatusAsText, "TWIN-005", "the {status} topic segment is classified as text by its first character ('5' server error, anything else not 2xx final), so a 429 counts as a client error and is not retried"},
	{DefTwin429NormalBackoff, "RECON-003", "after a 429 answer to a twin request the retry follows the normal backoff instead of waiting the throttled minimum"},
}
