package dps

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/hilrun/hilrun/rig/dpsproto"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/iothub"
)

// operation is one registration attempt (PUT → 202 → polls → final).
type operation struct {
	id      string
	regID   string
	started time.Time
	polls   int
	final   *dpsproto.Operation
	status  int
}

func newOperationID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	// The shape of DPS operation IDs: "4." + two hex groups.
	return "4." + h[:16] + "." + h[16:]
}

// handle answers one request after its PUBACK.
func (e *Endpoint) handle(c *dconn, cl *mqtt.Client, req dpsproto.Request, body []byte) {
	e.mu.Lock()
	f := Faults{}
	if p := e.faults[c.regID]; p != nil {
		f = *p
	}
	retry := e.cfg.RetryAfter
	if f.RetryAfter != nil {
		retry = *f.RetryAfter
	}
	if f.OmitRetryAfter {
		retry = -1
	}
	throttled := false
	if p := e.faults[c.regID]; p != nil && p.Throttle > 0 {
		p.Throttle--
		throttled = true
	}
	failStatus, failCode := 0, 0
	if p := e.faults[c.regID]; p != nil && !throttled && p.Fail > 0 && p.FailStatus >= 400 {
		p.Fail--
		failStatus, failCode = p.FailStatus, p.FailCode
	}
	e.mu.Unlock()
	if failStatus != 0 {
		// An error answer (DPS-006): the status in the topic, the error in the body.
		e.answerError(c, cl, req.RID, failStatus, failCode, fmt.Sprintf("request failed with %d (fault switch)", failStatus), -1)
		return
	}
	if throttled {
		// 429 with retry-after: the device must wait before its next request.
		e.answerError(c, cl, req.RID, 429, 429001, "Operations are being throttled for this registration (fault switch)", retry)
		return
	}
	switch req.Kind {
	case dpsproto.KindRegister:
		e.register(c, cl, req, body, retry)
	case dpsproto.KindStatus:
		e.status(c, cl, req, f, retry)
	}
}

func (e *Endpoint) register(c *dconn, cl *mqtt.Client, req dpsproto.Request, body []byte, retry int) {
	rb, err := dpsproto.ParseRegisterBody(body)
	if err != nil {
		e.answerError(c, cl, req.RID, 400, 400004, err.Error(), -1)
		return
	}
	if rb.RegistrationID != c.regID {
		e.answerError(c, cl, req.RID, 400, 400004, fmt.Sprintf("DPS-004: body registrationId %q is not the connection's registration ID %q", rb.RegistrationID, c.regID), -1)
		return
	}
	now := e.cfg.Now().UTC()
	op := &operation{id: newOperationID(), regID: c.regID, started: now}
	var modelID string
	if len(rb.Payload) > 0 {
		var p struct {
			ModelID string `json:"modelId"`
		}
		if json.Unmarshal(rb.Payload, &p) == nil {
			modelID = p.ModelID
		}
	}
	e.mu.Lock()
	e.ops[op.id] = op
	r := e.regs[c.regID]
	if r == nil {
		r = &Registration{RegistrationID: c.regID, Created: now}
		e.regs[c.regID] = r
	}
	r.EnrollmentID, r.OperationID, r.Status, r.Auth, r.Thumbprint = c.enroll, op.id, dpsproto.StatusAssigning, c.auth, c.thumb
	r.Payload, r.ModelID, r.Updated, r.Polls = rb.Payload, modelID, now, 0
	r.ErrorCode, r.ErrorMessage, r.AssignedHub, r.DeviceID = 0, "", "", ""
	e.mu.Unlock()
	// 202 Accepted with operationId and retry-after (DPS-005).
	e.answer(c, cl, req.RID, 202, dpsproto.Operation{OperationID: op.id, Status: dpsproto.StatusAssigning}, retry)
}

func (e *Endpoint) status(c *dconn, cl *mqtt.Client, req dpsproto.Request, f Faults, retry int) {
	e.mu.Lock()
	op := e.ops[req.OperationID]
	if op == nil || op.regID != c.regID || e.cfg.Now().Sub(op.started) > e.cfg.AttemptTimeout {
		e.mu.Unlock()
		e.answerError(c, cl, req.RID, 404, 404201, fmt.Sprintf("DPS-005: no operation %q for this registration", req.OperationID), -1)
		return
	}
	op.polls++
	if r := e.regs[c.regID]; r != nil {
		r.Polls = op.polls
	}
	if op.final == nil && op.polls <= f.Polls {
		e.mu.Unlock()
		e.answer(c, cl, req.RID, 202, dpsproto.Operation{OperationID: op.id, Status: dpsproto.StatusAssigning}, retry)
		return
	}
	if op.final == nil {
		res, status := e.decide(c, f)
		op.final, op.status = &res, status
	}
	final, status := *op.final, op.status
	e.mu.Unlock()
	e.answer(c, cl, req.RID, status, final, -1)
}

// decide finishes an operation (DPS-006): assigned (the device created on
// the hub), disabled, or failed. Called with e.mu held.
func (e *Endpoint) decide(c *dconn, f Faults) (dpsproto.Operation, int) {
	now := e.cfg.Now().UTC().Format(time.RFC3339Nano)
	r := e.regs[c.regID]
	var en *Enrollment
	if gid, ok := strings.CutPrefix(c.enroll, "group "); ok {
		en = e.groups[gid]
	} else {
		en = e.individual[c.enroll]
	}
	st := &dpsproto.RegistrationState{RegistrationID: c.regID, CreatedDateTimeUTC: r.Created.Format(time.RFC3339Nano), LastUpdatedUTC: now}
	op := dpsproto.Operation{OperationID: r.OperationID, RegistrationState: st}
	fail := func(status string, code int, msg string) (dpsproto.Operation, int) {
		st.Status, st.ErrorCode, st.ErrorMessage = status, code, msg
		op.Status = status
		r.Status, r.ErrorCode, r.ErrorMessage = status, code, msg
		return op, 200
	}
	switch {
	case en == nil:
		return fail(dpsproto.StatusFailed, 404202, "the enrollment was deleted")
	case en.Status == Disabled:
		return fail(dpsproto.StatusDisabled, 401002, "the enrollment is disabled")
	case f.FailWith200:
		return fail(dpsproto.StatusFailed, 400209, "allocation failed (fault switch failWith200)")
	}
	deviceID := c.regID
	if en.RegistrationID != "" && en.DeviceID != "" {
		deviceID = en.DeviceID
	}
	dev := hub.Device{DeviceID: deviceID}
	switch {
	case c.key != "":
		dev.Authentication = hub.Authentication{Type: hub.AuthSAS, SymmetricKey: &hub.SymmetricKey{PrimaryKey: c.key, SecondaryKey: hub.NewKey()}}
	case c.leafCA:
		dev.Authentication = hub.Authentication{Type: hub.AuthCA}
	default:
		dev.Authentication = hub.Authentication{Type: hub.AuthSelfSigned, X509Thumbprint: &hub.X509Thumbprint{PrimaryThumbprint: c.thumb}}
	}
	reg := e.hub.Registry()
	if _, err := reg.Get(iothub.Identity{DeviceID: deviceID}); err == nil {
		_ = reg.Delete(iothub.Identity{DeviceID: deviceID}) // re-provisioning replaces the identity
	}
	if _, err := reg.Add(dev); err != nil {
		return fail(dpsproto.StatusFailed, 500000, "creating the device on the hub failed: "+err.Error())
	}
	st.Status, st.AssignedHub, st.DeviceID, st.SubStatus = dpsproto.StatusAssigned, e.hub.Host(), deviceID, "initialAssignment"
	st.ETag = fmt.Sprintf("%q", r.OperationID[len(r.OperationID)-8:])
	if len(en.ReturnPayload) > 0 {
		st.Payload = en.ReturnPayload
	}
	op.Status = dpsproto.StatusAssigned
	r.Status, r.AssignedHub, r.DeviceID = dpsproto.StatusAssigned, e.hub.Host(), deviceID
	return op, 200
}

func (e *Endpoint) answer(c *dconn, cl *mqtt.Client, rid string, status int, body any, retry int) {
	b, _ := json.Marshal(body)
	e.publish(c, cl, dpsproto.ResponseTopic(status, rid, retry), b)
}

func (e *Endpoint) answerError(c *dconn, cl *mqtt.Client, rid string, status, code int, msg string, retry int) {
	b, _ := json.Marshal(dpsproto.ErrorBody{ErrorCode: code, TrackingID: newOperationID()[2:18], Message: msg, TimestampUTC: e.cfg.Now().UTC().Format(time.RFC3339Nano)})
	e.event(c, hub.EventWarning, "DPS-004", fmt.Sprintf("request answered %d: %s", status, msg))
	e.publish(c, cl, dpsproto.ResponseTopic(status, rid, retry), b)
}

// publish sends an answer at QoS 0, only to a connection subscribed to
// $dps/registrations/res/# (DPS-004): an answer to a device that did not
// subscribe goes nowhere, as with any MQTT broker.
func (e *Endpoint) publish(c *dconn, cl *mqtt.Client, topic string, body []byte) {
	c.mu.Lock()
	sub := c.subscribed
	c.mu.Unlock()
	if !sub {
		e.event(c, hub.EventWarning, "DPS-004", "answer "+topic+" not delivered: the device has not subscribed "+dpsproto.ResponseFilter)
		return
	}
	_ = cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: topic, Payload: body})
}
