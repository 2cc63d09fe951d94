package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hilrun/hilrun/rig/iothub"
	"github.com/hilrun/hilrun/rig/iothub/twin"
)

// twinState is one identity's twin. Versions start at 1 as on IoT Hub.
type twinState struct {
	Tags            twin.Section `json:"tags"`
	Desired         twin.Section `json:"desired"`
	Reported        twin.Section `json:"reported"`
	DesiredVersion  int64        `json:"desiredVersion"`
	ReportedVersion int64        `json:"reportedVersion"`
	Version         int64        `json:"version"`
	Etag            string       `json:"etag"`
	DesiredUpdated  time.Time    `json:"desiredUpdated"`
	ReportedUpdated time.Time    `json:"reportedUpdated"`
}

func newTwinState() *twinState {
	now := time.Now().UTC()
	return &twinState{Tags: twin.Section{}, Desired: twin.Section{}, Reported: twin.Section{},
		DesiredVersion: 1, ReportedVersion: 1, Version: 1, Etag: newEtag(), DesiredUpdated: now, ReportedUpdated: now}
}

// twinOf returns (creating on first use) the twin of id. Caller holds h.mu.
func (h *Hub) twinOf(id iothub.Identity) *twinState {
	t := h.twins[id.ClientID()]
	if t == nil {
		t = newTwinState()
		h.twins[id.ClientID()] = t
	}
	return t
}

// twinQoS: IoT Hub's docs give no QoS for twin responses and desired
// notifications and device SDKs subscribe to them at QoS 0, so the hub
// publishes them at QoS 0 (as it does method requests, METH-008).
const twinQoS = 0

func (h *Hub) twinReply(c *conn, status int, rid string, version int64, hasVersion bool, body []byte) {
	topic := iothub.TwinResponseTopic(status, rid, version, hasVersion)
	if !h.subscribed(c, iothub.TwinResponseFilter) {
		// MQTT delivers only to subscribers; TWIN-001 is the device's duty.
		h.warn(c, "TWIN-001", fmt.Sprintf("twin response %q not delivered: no subscription to %s", topic, iothub.TwinResponseFilter))
		return
	}
	pk := publishPacket(topic, body, twinQoS, 0, false)
	if out, held := h.holdTwinAnswer(c, pk); held {
		for _, p := range out {
			_ = h.send(c, p)
		}
		return
	}
	if d := h.takeTwinDelay(c); d > 0 {
		time.AfterFunc(d, func() { _ = h.send(c, pk) })
		return
	}
	_ = h.send(c, pk)
}

// twinFailed answers a twin request with the status of a pending
// FailTwinRequests fault (TWIN-005), leaving the twin unchanged; false when
// no fault is pending. The body is an IoT Hub error object (429001
// ThrottlingException, 500001 ServerError, 503001 ServiceUnavailable, …).
func (h *Hub) twinFailed(c *conn, what, rid string) bool {
	status, left, ok := h.twinFault(c)
	if !ok {
		return false
	}
	h.fault(c, "TWIN-005", fmt.Sprintf("%s $rid=%s answered %d by fault injection (%d more)", what, rid, status, left))
	body, _ := json.Marshal(map[string]any{"errorCode": status*1000 + 1, "message": fmt.Sprintf("%s failed with status %d (fault injection)", what, status)})
	h.twinReply(c, status, rid, 0, false, body)
	return true
}

func (h *Hub) twinThrottled(c *conn) bool {
	return c.twinLimit != nil && !c.twinLimit.Allow()
}

// twinGet answers $iothub/twin/GET (TWIN-002, TWIN-004): 200 with the
// device view of the twin, 429 when throttled, or the status of a
// FailTwinRequests fault (TWIN-005).
func (h *Hub) twinGet(c *conn, rid string) {
	if h.twinFailed(c, "twin GET", rid) {
		return
	}
	if h.twinThrottled(c) {
		h.fault(c, "TWIN-005", "twin GET throttled: 429")
		h.twinReply(c, 429, rid, 0, false, nil)
		return
	}
	md := h.twinGetMetadata(c.identity) // TWIN-017 (twin_metadata.go)
	h.mu.Lock()
	t := h.twinOf(c.identity)
	desired, reported := t.Desired, t.Reported
	if md {
		desired, reported = withMetadata(desired, t.DesiredVersion, t.DesiredUpdated), withMetadata(reported, t.ReportedVersion, t.ReportedUpdated)
	}
	body, err := twin.DeviceDocument(desired, t.DesiredVersion, reported, t.ReportedVersion)
	h.mu.Unlock()
	if err != nil {
		h.twinReply(c, 500, rid, 0, false, nil)
		return
	}
	h.twinReply(c, 200, rid, 0, false, body)
}

// twinReported applies a reported-properties PATCH (TWIN-006..016): 204 with
// the new version, 400 for a body that is not a valid patch or would grow
// the section past 8 KB, 429 when throttled, or the status of a
// FailTwinRequests fault (TWIN-005; the patch is then not applied).
func (h *Hub) twinReported(c *conn, rid string, body []byte) {
	if h.twinFailed(c, "reported PATCH", rid) {
		return
	}
	if h.twinThrottled(c) {
		h.fault(c, "TWIN-005", "reported PATCH throttled: 429")
		h.twinReply(c, 429, rid, 0, false, nil)
		return
	}
	patch, err := twin.ParseObject(body)
	if err == nil {
		err = twin.ValidateReported(patch)
	}
	if err != nil {
		h.rejectPatch(c, rid, err)
		return
	}
	h.mu.Lock()
	t := h.twinOf(c.identity)
	merged := twin.Clone(t.Reported)
	twin.Merge(merged, patch)
	if n := twin.Size(merged); n > twin.MaxSectionBytes {
		h.mu.Unlock()
		h.rejectPatch(c, rid, &twin.ValidationError{Requirement: "TWIN-015", Path: "$",
			Reason: fmt.Sprintf("reported section would be %d bytes, limit %d", n, twin.MaxSectionBytes)})
		return
	}
	t.Reported = merged
	t.ReportedVersion++
	t.Version++
	t.Etag = newEtag()
	t.ReportedUpdated = time.Now().UTC()
	v := t.ReportedVersion
	h.mu.Unlock()
	h.scheduleSave()
	h.twinReply(c, 204, rid, v, true, nil)
	h.notify()
}

func (h *Hub) rejectPatch(c *conn, rid string, err error) {
	req := "TWIN-006"
	var ve *twin.ValidationError
	if errors.As(err, &ve) {
		req = ve.Requirement
	}
	h.trace.add(Entry{ConnID: c.id, ClientID: c.clientID, Dir: DirEvent, Type: EventWarning, Requirement: req,
		Reason: "reported PATCH rejected with 400: " + err.Error()})
	body, _ := json.Marshal(map[string]any{"errorCode": 400004, "message": err.Error()})
	h.twinReply(c, 400, rid, 0, false, body)
}

// Twin is the service view of a twin (as IoT Hub's GET /twins/{id} returns it).
type Twin struct {
	DeviceID        string         `json:"deviceId"`
	ModuleID        string         `json:"moduleId,omitempty"`
	Etag            string         `json:"etag"`
	Version         int64          `json:"version"`
	Status          string         `json:"status,omitempty"`
	Tags            twin.Section   `json:"tags"`
	Properties      TwinProperties `json:"properties"`
	ConnectionState string         `json:"connectionState,omitempty"`
	// ModelID is the Plug and Play model the identity announced on its
	// latest connection (PNP-001), as IoT Hub shows it in the twin.
	ModelID string `json:"modelId,omitempty"`
}

// TwinProperties holds the two property sections, each with $version and
// $metadata.$lastUpdated as IoT Hub adds them (TWIN-017).
type TwinProperties struct {
	Desired  twin.Section `json:"desired"`
	Reported twin.Section `json:"reported"`
}

func sectionView(s twin.Section, version int64, updated time.Time) twin.Section {
	out := twin.Clone(s)
	out["$version"] = version
	out["$metadata"] = map[string]any{"$lastUpdated": updated.UTC().Format("2006-01-02T15:04:05.000Z")}
	return out
}

// GetTwin returns the service view of an identity's twin.
func (h *Hub) GetTwin(id iothub.Identity) (Twin, error) {
	dev, err := h.reg.Get(id)
	if err != nil {
		return Twin{}, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.twinOf(id)
	return Twin{DeviceID: id.DeviceID, ModuleID: id.ModuleID, Etag: t.Etag, Version: t.Version, Status: dev.Status,
		ConnectionState: dev.ConnectionState, Tags: twin.Clone(t.Tags), ModelID: h.ModelID(id),
		Properties: TwinProperties{
			Desired:  sectionView(t.Desired, t.DesiredVersion, t.DesiredUpdated),
			Reported: sectionView(t.Reported, t.ReportedVersion, t.ReportedUpdated),
		}}, nil
}

// TwinPatch is what the service may change: tags and desired properties.
type TwinPatch struct {
	Tags       twin.Section `json:"tags,omitempty"`
	Properties struct {
		Desired twin.Section `json:"desired,omitempty"`
	} `json:"properties"`
}

// ErrTooLarge is returned when a document or message exceeds a documented limit.
var ErrTooLarge = errors.New("exceeds the documented limit")

// UpdateDesired merges a desired-properties patch and pushes it to the
// device if it is connected and subscribed (TWIN-009); desired patches are
// never queued for offline devices (the device resyncs with a GET, TWIN-010).
// It returns the new desired version.
func (h *Hub) UpdateDesired(id iothub.Identity, patch twin.Section) (int64, error) {
	return h.patchTwin(id, nil, patch, false, "")
}

// ReplaceDesired replaces the desired section (PUT semantics) and pushes the
// full section as a patch.
func (h *Hub) ReplaceDesired(id iothub.Identity, desired twin.Section) (int64, error) {
	return h.patchTwin(id, nil, desired, true, "")
}

func (h *Hub) patchTwin(id iothub.Identity, tags, desired twin.Section, replace bool, ifMatch string) (int64, error) {
	if _, err := h.reg.Get(id); err != nil {
		return 0, err
	}
	delete(desired, "$version")
	delete(desired, "$metadata")
	if err := twin.ValidateDesired(desired); err != nil {
		return 0, err
	}
	h.mu.Lock()
	t := h.twinOf(id)
	if ifMatch != "" && ifMatch != "*" && trimQuotes(ifMatch) != t.Etag {
		h.mu.Unlock()
		return 0, ErrPreconditionFailed
	}
	var push twin.Section
	if desired != nil {
		next := twin.Section{}
		if !replace {
			next = twin.Clone(t.Desired)
		}
		twin.Merge(next, desired)
		if n := twin.Size(next); n > twin.MaxSectionBytes {
			h.mu.Unlock()
			return 0, fmt.Errorf("desired section would be %d bytes (TWIN-015 limit %d): %w", n, twin.MaxSectionBytes, ErrTooLarge)
		}
		t.Desired = next
		t.DesiredVersion++
		t.DesiredUpdated = time.Now().UTC()
		push = desired
		if replace {
			// A replaced section is pushed whole; members that disappeared
			// are sent as null so the device deletes them.
			push = twin.Clone(next)
		}
	}
	if tags != nil {
		if replace {
			t.Tags = twin.Clone(tags)
		} else {
			twin.Merge(t.Tags, tags)
		}
	}
	t.Version++
	t.Etag = newEtag()
	v := t.DesiredVersion
	h.mu.Unlock()
	h.scheduleSave()
	if push != nil {
		// Desired patches are not queued (TWIN-009): a device connected at
		// this moment must get it, also one whose CONNACK is just going out.
		if c := h.activeConn(context.Background(), id); c != nil {
			h.pushDesired(c, push, v)
		}
	}
	h.notify()
	return v, nil
}

func trimQuotes(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}

// PushDesiredRaw sends an arbitrary desired notification to a connected
// device without changing the stored twin: specs use it to inject stale or
// reordered patches (TWIN-010) or documents at the size limits (TWIN-018).
func (h *Hub) PushDesiredRaw(id iothub.Identity, version int64, body []byte) error {
	c := h.activeConn(context.Background(), id)
	if c == nil {
		return fmt.Errorf("%s: %w", id, ErrDeviceOffline)
	}
	if !h.subscribed(c, iothub.TwinDesiredFilter) {
		return fmt.Errorf("%s is not subscribed to %s", id, iothub.TwinDesiredFilter)
	}
	return h.send(c, publishPacket(iothub.TwinDesiredTopic(version), body, twinQoS, 0, false))
}

func (h *Hub) pushDesired(c *conn, patch twin.Section, version int64) {
	if !h.subscribed(c, iothub.TwinDesiredFilter) {
		return
	}
	body, err := twin.DesiredPatchDocument(patch, version)
	if err != nil {
		return
	}
	_ = h.send(c, publishPacket(iothub.TwinDesiredTopic(version), body, twinQoS, 0, false))
}

// ReportedOf returns a copy of the reported section and its version.
func (h *Hub) ReportedOf(id iothub.Identity) (twin.Section, int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.twinOf(id)
	return twin.Clone(t.Reported), t.ReportedVersion
}

// PatchTwin applies a service-side twin PATCH (tags and desired merge) with
// optional If-Match etag, and returns the updated twin.
func (h *Hub) PatchTwin(id iothub.Identity, p TwinPatch, ifMatch string) (Twin, error) {
	if _, err := h.patchTwin(id, p.Tags, p.Properties.Desired, false, ifMatch); err != nil {
		return Twin{}, err
	}
	return h.GetTwin(id)
}

// ReplaceTwin applies a service-side twin PUT: tags and desired are replaced.
func (h *Hub) ReplaceTwin(id iothub.Identity, p TwinPatch, ifMatch string) (Twin, error) {
	tags := p.Tags
	if tags == nil {
		tags = twin.Section{}
	}
	desired := p.Properties.Desired
	if desired == nil {
		desired = twin.Section{}
	}
	if _, err := h.patchTwin(id, tags, desired, true, ifMatch); err != nil {
		return Twin{}, err
	}
	return h.GetTwin(id)
}
