package sim

import (
	"errors"
	"fmt"

	"github.com/hilrun/hilrun/rig/iothub/twin"
)

// Defect switches added for the TWIN conformance specs. Each needs a row
// in DEFECTS.md (section "TWIN specs") and an implementation at the point
// in the client where the rule is kept.
const (
	DefTwinGetWithBody        = "twin-get-with-body"
	DefTwinEmptyDesired       = "twin-empty-desired-rejected"
	DefTwin400Resent          = "twin-400-resent"
	DefTwinReportNullDropped  = "twin-report-null-dropped"
	DefTwinReportNoWait       = "twin-report-confirmed-on-publish"
	DefTwinDesiredNullIgnored = "twin-desired-null-ignored"
	DefTwinKeyUnchecked       = "twin-reported-key-unchecked"
	DefTwinValueUnchecked     = "twin-reported-value-unchecked"
	DefTwinDepthUnchecked     = "twin-reported-depth-unchecked"
	DefTwinStringUnchecked    = "twin-reported-string-unchecked"
	DefTwinMetadataKept       = "twin-desired-metadata-kept"
	DefTwinDesired4K          = "twin-desired-4k-buffer"
	DefTwinDesiredSubLate     = "twin-desired-subscribe-late"
	DefTwinReportedWrapped    = "twin-reported-wrapped"
)

// twinDefects lists them; see Defects.
var twinDefects = []Defect{
	{DefTwinGetWithBody, "TWIN-002", "twin GETs carry the payload \"{}\" instead of an empty one"},
	{DefTwinEmptyDesired, "TWIN-004", "a GET answer whose desired section holds only $version is refused as malformed (the resync and twin.get fail)"},
	{DefTwin400Resent, "TWIN-005", "a reported patch answered 400 is published again unchanged, twice more, after the retry backoff"},
	{DefTwinReportNullDropped, "TWIN-007", "null members are left out of reported patches, so deleting a property never reaches the hub"},
	{DefTwinReportNoWait, "TWIN-008", "a reported patch counts as successful once it is published (status 204, version 0), without waiting for the res/2xx on its $rid"},
	{DefTwinDesiredNullIgnored, "TWIN-009", "null members of desired patches are skipped: the held value is kept instead of deleted"},
	{DefTwinKeyUnchecked, "TWIN-011", "reported patches with illegal keys (too long, '.', '$' inside, space, ',', control characters) are sent instead of refused locally, and the hub's 400 answer is reported as success"},
	{DefTwinValueUnchecked, "TWIN-012", "reported patches with arrays or integers outside ±2^52 are sent instead of refused locally, and the hub's 400 answer is reported as success"},
	{DefTwinDepthUnchecked, "TWIN-013", "reported patches nested deeper than five levels are sent instead of refused locally, and the hub's 400 answer is reported as success"},
	{DefTwinStringUnchecked, "TWIN-014", "reported patches with strings above 512 bytes are sent instead of refused locally, and the hub's 400 answer is reported as success"},
	{DefTwinMetadataKept, "TWIN-017", "a desired patch's $metadata tree is merged into the held desired properties as if it were configuration"},
	{DefTwinDesiredSubLate, "TWIN-010", "the desired-properties filter is left out of the start-up SUBSCRIBE and subscribed on its own only after the twin GET, so patches between the GET and that SUBACK are lost"},
	{DefTwinReportedWrapped, "TWIN-006", "reported patches are sent wrapped in a twin-document shape, {\"reported\": patch}, instead of the patch object itself"},
	{DefTwinDesired4K, "TWIN-018", "twin documents (desired patches and GET answers) above 4 KB are dropped as too large for the receive buffer"},
}

// twinLocalCheckDefect names the switch that skips the local check of a
// reported-patch rule (TWIN-011..014); "" when the rule is always checked.
func twinLocalCheckDefect(requirement string) string {
	switch requirement {
	case "TWIN-011":
		return DefTwinKeyUnchecked
	case "TWIN-012":
		return DefTwinValueUnchecked
	case "TWIN-013":
		return DefTwinDepthUnchecked
	case "TWIN-014":
		return DefTwinStringUnchecked
	}
	return ""
}

// localCheckSkipped reports whether a switch lets a patch that failed the
// local check with err go out anyway.
func (dc *deviceClient) localCheckSkipped(err error) bool {
	var ve *twin.ValidationError
	if !errors.As(err, &ve) {
		return false
	}
	d := twinLocalCheckDefect(ve.Requirement)
	return d != "" && dc.on(d)
}

// twinDocBufferBytes is the receive buffer of twin-desired-4k-buffer.
const twinDocBufferBytes = 4096

func errTwinBuffer(n int) error {
	return fmt.Errorf("twin document of %d bytes does not fit the %d-byte receive buffer", n, twinDocBufferBytes)
}

// errEmptyDesired is twin-empty-desired-rejected's verdict on a GET answer.
var errEmptyDesired = errors.New("twin document: desired section has no properties")

// twin400Resends is how often twin-400-resent publishes a refused patch again.
const twin400Resends = 2

// dropNulls returns s without null members, at any depth
// (twin-report-null-dropped, twin-desired-null-ignored).
func dropNulls(s twin.Section) twin.Section {
	out := make(twin.Section, len(s))
	for k, v := range s {
		switch t := v.(type) {
		case nil:
			continue
		case map[string]any:
			out[k] = dropNulls(t)
		default:
			out[k] = v
		}
	}
	return out
}
