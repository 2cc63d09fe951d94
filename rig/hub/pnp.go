package hub

import "github.com/hilrun/hilrun/rig/iothub"

// noteModelID records the model-id of an accepted CONNECT ("" clears it:
// a connection without a model announces none).
func (h *Hub) noteModelID(id iothub.Identity, modelID string) {
	if modelID == "" {
		h.modelIDs.Delete(id.ClientID())
		return
	}
	h.modelIDs.Store(id.ClientID(), modelID)
}

// ModelID is the Plug and Play model ID the identity announced in the
// Username of its latest accepted connection (PNP-001), "" if none. It is
// also the twin's modelId, as IoT Hub shows it.
func (h *Hub) ModelID(id iothub.Identity) string {
	if v, ok := h.modelIDs.Load(id.ClientID()); ok {
		return v.(string)
	}
	return ""
}
