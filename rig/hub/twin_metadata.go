package hub

import (
	"fmt"
	"time"

	"github.com/hilrun/hilrun/rig/iothub"
	"github.com/hilrun/hilrun/rig/iothub/twin"
)

// SetTwinGetMetadata makes the twin GET answers to id carry $metadata in
// both sections (on) or not (off, the default), for TWIN-017. The docs show
// a twin's sections with $metadata next to $version (002 L11850-11860) and
// the $lastUpdated timestamps of every object in them (002 L12033-12086); a
// device must take such a document without reading configuration into it.
// By default the reference hub answers with $version only.
func (h *Hub) SetTwinGetMetadata(id iothub.Identity, on bool) {
	if on {
		h.getMetadata.Store(id.ClientID(), true)
	} else {
		h.getMetadata.Delete(id.ClientID())
	}
	h.trace.add(Entry{ClientID: id.ClientID(), Dir: DirEvent, Type: EventFault, Requirement: "TWIN-017",
		Reason: fmt.Sprintf("twin GET answers carry $metadata: %v", on)})
}

func (h *Hub) twinGetMetadata(id iothub.Identity) bool {
	_, on := h.getMetadata.Load(id.ClientID())
	return on
}

// withMetadata returns a copy of section s carrying the $metadata tree the
// docs describe: $lastUpdated (and $lastUpdatedVersion) for the section
// and $lastUpdated for each member, nested along objects.
func withMetadata(s twin.Section, version int64, updated time.Time) twin.Section {
	out := twin.Clone(s)
	if out == nil {
		out = twin.Section{}
	}
	ts := updated.UTC().Format("2006-01-02T15:04:05.000Z")
	md := metadataOf(s, ts)
	md["$lastUpdatedVersion"] = version
	out["$metadata"] = md
	return out
}

func metadataOf(obj map[string]any, ts string) map[string]any {
	md := map[string]any{"$lastUpdated": ts}
	for k, v := range obj {
		if inner, ok := v.(map[string]any); ok {
			md[k] = metadataOf(inner, ts)
		} else {
			md[k] = map[string]any{"$lastUpdated": ts}
		}
	}
	return md
}
