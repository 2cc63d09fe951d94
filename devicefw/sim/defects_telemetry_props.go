package sim

import (
	"net/url"
	"strings"
	"time"

	"github.com/hilrun/hilrun/rig/iothub"
)

// Defect switches added for the TEL property specs (TEL-007, TEL-008,
// TEL-010, TEL-011, TEL-012) and CONN-024. Each needs a row in DEFECTS.md
// (section "Added for the TEL property specs") and an implementation at the
// point in the client where the rule is kept.
const (
	DefPropDuplicateCase  = "propbag-duplicate-case"
	DefPropBadChars       = "propbag-bad-chars"
	DefJSONNoEncoding     = "json-no-content-encoding"
	DefSpoofHubProperties = "spoof-hub-properties"
	DefCtimeLocalTime     = "ctime-local-time"
	DefDeviceIDEscaped    = "deviceid-escaped"
)

// telPropDefects lists them; see Defects.
var telPropDefects = []Defect{
	{DefPropDuplicateCase, "TEL-007", "every application property name with upper-case letters also goes out lower-cased (a client that keeps a lower-cased copy for its own look-ups and serialises both): one name the application gave becomes two the hub folds into one"},
	{DefPropBadChars, "TEL-008", "every message also carries the application property `fw ver` = `1.0 (sim)` (space and parentheses outside TEL-008's character set)"},
	{DefJSONNoEncoding, "TEL-010", "a message with a content type carries $.ct but no $.ce content encoding"},
	{DefSpoofHubProperties, "TEL-011", "every message carries iothub-connection-device-id={deviceId}, a property the hub stamps itself"},
	{DefCtimeLocalTime, "TEL-012", "$.ctime is written in local time (UTC+02:00) without a zone designator"},
	{DefDeviceIDEscaped, "CONN-024", "the device ID is percent-encoded (url.QueryEscape) wherever the client writes it: ClientId, Username, topics, and once more inside the SAS sr"},
}

// ctimeLocalZone is the device's local zone for defect ctime-local-time.
var ctimeLocalZone = time.FixedZone("UTC+2", 2*60*60)

// deviceIDOf returns how the client writes the configured device ID
// (CONN-024: verbatim, unless defect deviceid-escaped). Called before the
// NVS lock (lock order: client, then NVS).
func (dc *deviceClient) deviceIDOf() func(string) string {
	escape := dc.on(DefDeviceIDEscaped)
	return func(id string) string {
		if escape {
			return url.QueryEscape(id)
		}
		return id
	}
}

// creationTime formats the $.ctime value: ISO 8601 UTC with a Z
// (TEL-012), or local time without a zone under ctime-local-time.
func creationTime(now time.Time, local bool) string {
	if local {
		return now.In(ctimeLocalZone).Format("2006-01-02T15:04:05.000")
	}
	return now.UTC().Format("2006-01-02T15:04:05.000Z")
}

// caseDuplicate returns two property names of bag that are equal ignoring
// case (TEL-007), or "" if there are none.
func caseDuplicate(bag iothub.PropertyBag) (string, string) {
	seen := map[string]string{}
	for _, p := range bag {
		f := strings.ToLower(p.Name)
		if first, ok := seen[f]; ok {
			return first, p.Name
		}
		seen[f] = p.Name
	}
	return "", ""
}

// lowerCaseCopies is propbag-duplicate-case: each application property
// whose name has upper-case letters is followed by a lower-cased copy.
func lowerCaseCopies(bag iothub.PropertyBag) iothub.PropertyBag {
	out := make(iothub.PropertyBag, 0, 2*len(bag))
	for _, p := range bag {
		out = append(out, p)
		if l := strings.ToLower(p.Name); l != p.Name {
			out = append(out, iothub.Property{Name: l, Value: p.Value})
		}
	}
	return out
}

// telPropDefectBag applies the bag defects of this file to a message's
// property bag.
func (dc *deviceClient) telPropDefectBag(bag iothub.PropertyBag, id iothub.Identity, noEncoding, badChars, spoof bool) iothub.PropertyBag {
	if noEncoding {
		out := bag[:0:0]
		for _, p := range bag {
			if p.Name != iothub.PropContentEncoding {
				out = append(out, p)
			}
		}
		bag = out
	}
	if badChars {
		bag = append(bag, iothub.Property{Name: "fw ver", Value: "1.0 (sim)"})
	}
	if spoof {
		bag = append(bag, iothub.Property{Name: "iothub-connection-device-id", Value: id.DeviceID})
	}
	return bag
}
