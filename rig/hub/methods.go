package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hilrun/hilrun/rig/iothub"
)

// MethodResult is a direct method's outcome as the service caller sees it.
type MethodResult struct {
	Status  int             `json:"status"`
	Payload json.RawMessage `json:"payload"`
	// Raw is the device's response body exactly as published.
	Raw []byte `json:"-"`
	// RID is the request id the hub used.
	RID string `json:"-"`
}

// MethodError carries the HTTP status IoT Hub's service API would return
// for a failed invocation: 404 device not online, 504 timeout, 400 bad request.
type MethodError struct {
	Status int
	Reason string
}

func (e *MethodError) Error() string { return fmt.Sprintf("%d: %s", e.Status, e.Reason) }

type methodResult struct {
	res MethodResult
	err error
}

type pendingMethod struct {
	identity iothub.Identity
	name     string
	rid      string
	sent     time.Time
	done     chan methodResult
	finished bool
}

func (p *pendingMethod) finish(r methodResult) {
	if p.finished {
		return
	}
	p.finished = true
	p.done <- r
}

// MethodRequest is one invocation.
type MethodRequest struct {
	Name    string
	Payload []byte        // JSON or empty (METH-002)
	Timeout time.Duration // responseTimeoutInSeconds; default 30 s, max 300 s (METH-006)
	// RID overrides the hub-generated request id (specs vary rids, METH-003).
	RID string
}

// InvokeMethod calls a direct method on a connected identity: a QoS 0
// PUBLISH to $iothub/methods/POST/{name}/?$rid={rid} (METH-002, METH-008),
// answered by the response with the same rid (METH-003), or 504 after the
// timeout. An identity that is not connected and subscribed gets 404.
func (h *Hub) InvokeMethod(ctx context.Context, id iothub.Identity, req MethodRequest) (MethodResult, error) {
	if req.Timeout == 0 {
		req.Timeout = iothub.DefaultMethodTimeout
	}
	if req.Timeout < 0 || req.Timeout > iothub.MaxMethodTimeout {
		return MethodResult{}, &MethodError{400, fmt.Sprintf("timeout %s outside 1..300 s (METH-006)", req.Timeout)}
	}
	if len(req.Payload) > iothub.MaxMethodPayloadBytes {
		return MethodResult{}, &MethodError{400, fmt.Sprintf("payload of %d bytes exceeds %d (METH-007)", len(req.Payload), iothub.MaxMethodPayloadBytes)}
	}
	if req.Name == "" {
		return MethodResult{}, &MethodError{400, "method name is empty"}
	}
	c := h.activeConn(ctx, id)
	if c == nil || !h.subscribed(c, iothub.MethodsFilter) {
		return MethodResult{}, &MethodError{404, fmt.Sprintf("%s is not online or not subscribed to %s", id, iothub.MethodsFilter)}
	}
	rid := req.RID
	if rid == "" {
		rid = strconv.FormatUint(h.ridSeq.Add(1), 16)
	}
	p := &pendingMethod{identity: id, name: req.Name, rid: rid, sent: time.Now(), done: make(chan methodResult, 1)}
	h.mu.Lock()
	if _, dup := h.methods[rid]; dup {
		h.mu.Unlock()
		return MethodResult{}, &MethodError{400, "request id " + rid + " already in use"}
	}
	h.methods[rid] = p
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.methods, rid)
		h.mu.Unlock()
	}()
	if err := h.send(c, publishPacket(iothub.MethodRequestTopic(req.Name, rid), req.Payload, 0, 0, false)); err != nil {
		return MethodResult{}, &MethodError{404, "device connection closed: " + err.Error()}
	}
	timer := time.NewTimer(req.Timeout)
	defer timer.Stop()
	select {
	case r := <-p.done:
		r.res.RID = rid
		return r.res, r.err
	case <-timer.C:
		h.trace.add(Entry{ClientID: id.ClientID(), Dir: DirEvent, Type: EventWarning, Requirement: "METH-006",
			Reason: fmt.Sprintf("method %q ($rid=%s) got no response within %s; caller gets 504", req.Name, rid, req.Timeout)})
		return MethodResult{RID: rid}, &MethodError{504, fmt.Sprintf("device did not answer %q within %s", req.Name, req.Timeout)}
	case <-ctx.Done():
		return MethodResult{RID: rid}, ctx.Err()
	}
}

// methodResponse matches a device's $iothub/methods/res/{status}/?$rid= to
// its pending invocation by rid only (METH-003).
func (h *Hub) methodResponse(c *conn, t iothub.Topic, payload []byte) {
	h.mu.Lock()
	p := h.methods[t.RID]
	if p != nil && p.identity != c.identity {
		p = nil
	}
	if p != nil {
		delete(h.methods, t.RID)
	}
	h.mu.Unlock()
	if p == nil {
		h.warn(c, "METH-003", fmt.Sprintf("method response with $rid=%q matches no pending invocation (late, or rid not echoed)", t.RID))
		return
	}
	raw := append([]byte(nil), payload...)
	res := MethodResult{Status: t.Status, Raw: raw}
	switch {
	case len(raw) == 0:
		res.Payload = json.RawMessage("null")
	case json.Valid(raw):
		res.Payload = json.RawMessage(raw)
	default:
		h.warn(c, "METH-005", "method response body is not JSON")
		b, _ := json.Marshal(string(raw))
		res.Payload = b
	}
	p.finish(methodResult{res: res})
}

// IsMethodError reports whether err is a MethodError with the given status.
func IsMethodError(err error, status int) bool {
	var me *MethodError
	return errors.As(err, &me) && me.Status == status
}
