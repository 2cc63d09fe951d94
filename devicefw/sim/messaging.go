package sim

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/rig/iothub"
	"github.com/hilrun/hilrun/rig/iothub/twin"
)

// onMessage routes every inbound PUBLISH (one default handler: with
// CleanSession 0 queued messages arrive before SUBACK).
func (dc *deviceClient) onMessage(c *conn, m paho.Message) {
	t, err := iothub.ParseTopic(m.Topic())
	if err != nil {
		dc.fw.logf("W", "inbound PUBLISH on unexpected topic %q: %v", m.Topic(), err)
		m.Ack()
		return
	}
	switch t.Kind {
	case iothub.TopicC2D:
		dc.onC2D(c, m, t)
	case iothub.TopicTwinResponse:
		m.Ack()
		dc.onTwinResponse(t, m.Payload())
	case iothub.TopicTwinDesired:
		m.Ack()
		dc.onDesired(m.Payload())
	case iothub.TopicMethodRequest:
		m.Ack()
		if dc.on(DefMethodAfterTwin) && !c.isTwinReady() {
			go dc.methodAfterTwin(c, t, m.Payload()) // defect: held until the resync ended
			return
		}
		dc.onMethod(c, t, m.Payload())
	default:
		m.Ack()
		dc.fw.logf("W", "inbound PUBLISH of kind %s ignored", t.Kind)
	}
}

// onC2D reports a cloud-to-device message and completes it with PUBACK
// (C2D-002, C2D-003), flagging redeliveries of a known $.mid (C2D-004).
func (dc *deviceClient) onC2D(c *conn, m paho.Message, t iothub.Topic) {
	payload := m.Payload()
	dc.mu.Lock()
	d := dc.fw.defects
	c.c2dTaken++
	if d.on(DefC2DInboxLimit) && c.c2dTaken > c2dInboxLimit {
		// Defect: the inbound queue is full; the delivery is lost unacknowledged.
		dc.mu.Unlock()
		dc.fw.logf("W", "C2D inbox full (%d); delivery dropped", c2dInboxLimit)
		return
	}
	if d.on(DefC2DTruncate) && len(payload) > c2dTruncateBytes {
		payload = payload[:c2dTruncateBytes] // defect: fixed receive buffer
	}
	if d.on(DefC2DUnparsableNotAcked) && !json.Valid(payload) {
		// Defect: the handler fails to parse the payload and returns before
		// the acknowledgement (C2D-005).
		dc.mu.Unlock()
		dc.fw.logf("W", "C2D payload is not JSON; message dropped")
		return
	}
	props := t.Properties.Map()
	if d.on(DefC2DBagFirst16) {
		props = bagFirst16(t.Properties) // defects_bounds_more.go
	}
	if d.on(DefC2DBagNotDecoded) {
		props = rawBagMap(m.Topic())
	}
	if d.on(DefC2DDecodedTwice) {
		props = decodedAgain(props) // defect: decoded a second time
	}
	dc.mu.Unlock()
	sum := sha256.Sum256(payload)
	ev := agentproto.C2DEvent{Topic: m.Topic(), Properties: props, Size: len(payload),
		SHA256: hex.EncodeToString(sum[:]), Dup: m.Duplicate()}
	if ev.Properties == nil {
		ev.Properties = map[string]string{}
	}
	//mutate:agent report: the payload excerpt in the agent's c2d event; the hub sees nothing of it
	if n := min(len(payload), 512); n > 0 {
		ev.Payload = string(payload[:n])
	}
	dc.mu.Lock()
	if mid, ok := t.Properties.Get(iothub.PropMessageID); ok && mid != "" {
		if dc.seenC2D[c2dDedupKey(dc.fw.defects.on(DefC2DDedupEncodedMID), m.Topic(), mid)] && !dc.fw.defects.on(DefC2DNoDedup) {
			ev.Duplicate = true
		}
		if !dc.seenC2D[mid] {
			dc.seenC2D[mid] = true
			dc.seenList = append(dc.seenList, mid)
			if len(dc.seenList) > maxSeenC2D {
				delete(dc.seenC2D, dc.seenList[0])
				dc.seenList = dc.seenList[1:]
			}
		}
	}
	noAck, ack8 := dc.fw.defects.on(DefNoC2DPuback), dc.fw.defects.on(DefC2DPubackID8)
	dc.mu.Unlock()
	dc.emit(agentproto.EvC2D, ev)
	if !noAck && !(ack8 && pubackID8(c, m.MessageID())) {
		m.Ack()
	}
}

// rawBagMap reads a C2D topic's property bag without percent-decoding
// (defect c2d-bag-not-decoded).
func rawBagMap(topic string) map[string]string {
	out := map[string]string{}
	_, bag, ok := strings.Cut(topic, "/messages/devicebound/")
	if !ok || bag == "" {
		return out
	}
	for _, piece := range strings.Split(bag, "&") {
		k, v, _ := strings.Cut(piece, "=")
		out[k] = v
	}
	return out
}

// onTwinResponse hands a response to the request with the same $rid
// (TWIN-003); responses nobody waits for are dropped.
func (dc *deviceClient) onTwinResponse(t iothub.Topic, body []byte) {
	dc.mu.Lock()
	var p *pendingTwin
	if dc.fw.defects.on(DefTwinAnyRID) {
		if len(dc.order) > 0 {
			p = dc.pending[dc.order[0]]
		}
	} else if dc.fw.defects.on(DefTwinNewestRID) {
		if len(dc.order) > 0 {
			p = dc.pending[dc.order[len(dc.order)-1]] // defect: one current-request slot
		}
	} else if dc.fw.defects.on(DefTwinRIDUint8) {
		p = dc.pending[twinRID8(t.RID)] // defect: 8-bit request id
	} else {
		p = dc.pending[t.RID]
	}
	if p != nil {
		dc.forgetLocked(p.rid)
	}
	dc.mu.Unlock()
	if p == nil {
		dc.fw.logf("W", "twin response for unknown $rid=%q ignored", t.RID)
		return
	}
	p.ch <- twinResp{status: t.Status, version: t.Version, hasVer: t.HasVersion, body: append([]byte(nil), body...)}
}

// applyTwinDocument takes a GET response as the held twin (TWIN-004).
func (dc *deviceClient) applyTwinDocument(r twinResp) (agentproto.TwinResult, error) {
	if len(r.body) > twinDocBufferBytes && dc.on(DefTwinDesired4K) {
		return agentproto.TwinResult{}, errTwinBuffer(len(r.body))
	}
	desired, dv, reported, rv, err := twin.ParseDeviceDocument(r.body)
	if err != nil {
		return agentproto.TwinResult{}, err
	}
	if dc.on(DefTwinGetMetadataKept) {
		desired = getMetadataKept(r.body, desired) // defects_bounds_single.go
	}
	if len(desired) == 0 && dc.on(DefTwinEmptyDesired) {
		return agentproto.TwinResult{}, errEmptyDesired
	}
	if dc.on(DefTwinGetVer16) {
		dv, rv = int64(uint16(dv)), int64(uint16(rv)) // defect: 16-bit versions (defects_bounds_more.go)
	}
	vf := dc.versionFlags()
	dc.mu.Lock()
	if vf.newer(dv, dc.desiredVer, true) || dc.fw.defects.on(DefStaleDesired) {
		dc.desired, dc.desiredVer = twin.Clone(desired), vf.stored(dv)
	}
	dc.reportedVer = rv
	dc.mu.Unlock()
	res := agentproto.TwinResult{DesiredVersion: dv, ReportedVersion: rv, Status: r.status}
	// The sections are left out when they would not fit one agent frame
	// (an 8 KB desired section, TWIN-018); the versions always fit.
	if twin.Size(desired)+twin.Size(reported) <= 2*maxEventDoc {
		res.Desired, res.Reported = jsonable(desired), jsonable(reported)
	}
	return res, nil
}

// jsonable turns json.Number leaves into plain JSON values for events.
func jsonable(s twin.Section) map[string]any {
	if s == nil {
		return map[string]any{}
	}
	b, err := json.Marshal(s)
	if err != nil {
		return map[string]any{}
	}
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}

// onDesired applies a desired patch only when its $version is newer than
// the held one (TWIN-009, TWIN-010).
func (dc *deviceClient) onDesired(body []byte) {
	if len(body) > twinDocBufferBytes && dc.on(DefTwinDesired4K) {
		dc.fw.logf("E", "desired patch dropped: %v", errTwinBuffer(len(body)))
		return
	}
	patch, v, err := twin.ParseDesiredPatch(body)
	if err != nil {
		dc.fw.logf("E", "desired patch: %v", err)
		return
	}
	ev := agentproto.DesiredEvent{Version: v}
	//mutate:agent report: whether the agent's desired event carries the patch (frame size); the patch is applied either way
	if len(body) <= maxEventDoc {
		ev.Patch = jsonable(patch)
	}
	if dc.on(DefTwinMetadataKept) {
		if raw, err := twin.ParseObject(body); err == nil {
			delete(raw, twin.VersionKey)
			patch = raw
		}
	}
	if dc.on(DefTwinDesiredNullIgnored) {
		patch = dropNulls(patch)
	}
	vf := dc.versionFlags()
	dc.mu.Lock()
	if vf.newer(v, dc.desiredVer, false) || dc.fw.defects.on(DefStaleDesired) {
		if dc.desired == nil {
			dc.desired = twin.Section{}
		}
		twin.Merge(dc.desired, patch)
		dc.desiredVer = vf.stored(v)
		ev.Applied = true
	} else {
		ev.Reason = "stale: version " + strconv.FormatInt(v, 10) + " <= " + strconv.FormatInt(dc.desiredVer, 10)
	}
	if twin.Size(dc.desired) <= maxEventDoc {
		ev.Desired = jsonable(dc.desired)
	}
	dc.mu.Unlock()
	dc.emit(agentproto.EvDesired, ev)
	dc.otaOnPatch() // ota-settings-not-read-at-start only (ota.go)
	if ev.Applied {
		go dc.pnpAcks(patch, v) // PNP-003: writable properties are acknowledged
	}
}

// maxEventDoc bounds the twin documents copied into a twin.desired event,
// so that the event fits one agent frame (agentproto.MaxFrame).
const maxEventDoc = 1500

// onMethod answers a direct method per the behaviour stored in NVS (exact
// name, else "*", else 404) on $iothub/methods/res/{status}/?$rid={rid}
// (METH-002..012).
func (dc *deviceClient) onMethod(c *conn, t iothub.Topic, body []byte) {
	dc.mu.Lock()
	unknownSilent := dc.fw.defects.on(DefMethodUnknownSilent)
	ridUpper := dc.fw.defects.on(DefMethodRIDUpper)
	statusText := dc.fw.defects.on(DefMethodStatusText)
	md := dc.fw.defects
	caseFold, emptyIgnored, bodyText := md.on(DefMethodNameCaseFold), md.on(DefMethodEmptyBody), md.on(DefMethodBodyNotJSON)
	late, limit64K, puback := md.on(DefMethodReplyLate), md.on(DefMethodRequest64K), md.on(DefMethodRequestPuback)
	lastRID, failNoReply := md.on(DefMethodReplyLastRID), md.on(DefMethodFailNoReply)
	rid16, objectOnly := md.on(DefMethodRIDUint16), md.on(DefMethodObjectOnly)
	byName := md.on(DefMethodRIDByName)
	dc.lastMethodRID = t.RID
	cmdUnmatched := md.on(DefPnPComponentCmdUnmatched) && strings.Contains(t.MethodName, iothub.CommandSeparator)
	nameBuffer := md.on(DefPnPCommandNameBuffer) && len(t.MethodName) > pnpCommandNameBuffer
	dc.mu.Unlock()
	var byNameRID func() string
	if byName {
		byNameRID = dc.methodRIDByName(t.MethodName, t.RID)
	}
	n := dc.fw.nvs
	n.mu.Lock()
	b, ok := n.Methods[t.MethodName]
	if cmdUnmatched {
		ok = false // defect pnp-component-command-unmatched
	}
	if nameBuffer && n.PnP != nil {
		ok = false // defect pnp-command-name-buffer-32
	}
	if !ok && caseFold {
		for name, mb := range n.Methods { // defect: case-insensitive lookup
			if strings.EqualFold(name, t.MethodName) {
				b, ok = mb, true
				break
			}
		}
	}
	if !ok {
		b, ok = n.Methods["*"]
	}
	n.mu.Unlock()
	if puback && c.netConn != nil {
		_, _ = c.netConn.Write([]byte{0x40, 0x02, 0x00, 0x00}) // defect: PUBACK for a QoS 0 request
	}
	if emptyIgnored && len(body) == 0 || limit64K && len(body) > methodRequestLimitBytes || objectOnly && methodBodyNotObject(body) {
		dc.fw.logf("E", "method %s: request body of %d bytes not handled; no response", t.MethodName, len(body))
		dc.emit(agentproto.EvMethod, agentproto.MethodEvent{Name: t.MethodName, RID: t.RID, Size: len(body)})
		return
	}
	status, payload, silent := unknownMethodStatus, []byte("{}"), false
	if ok {
		status, payload, silent = b.Status, []byte(b.Payload), b.Silent
		if b.Gen != nil {
			payload = b.Gen.JSONString() // a body too large for the UART (MethodBehaviour.Gen)
		}
		if status == 0 {
			status = 200
		}
		if len(payload) == 0 && bodyText {
			payload = []byte("OK") // defect: not JSON
		}
		if b.Fail && failNoReply {
			silent = true
		}
		if b.Fail {
			// The handler "throws": an error status and a JSON body (METH-011).
			if status < 400 {
				status = 500
			}
			payload = []byte(`{"error":"handler failed"}`)
		}
		if b.DelayMS > 0 {
			select {
			case <-time.After(time.Duration(b.DelayMS) * time.Millisecond):
			case <-c.lost:
				return
			}
		}
	} else if unknownSilent {
		silent = true
	}
	ev := agentproto.MethodEvent{Name: t.MethodName, RID: t.RID, Size: len(body)}
	if silent {
		dc.emit(agentproto.EvMethod, ev) // status 0: called, not answered
		return
	}
	if late {
		select {
		case <-time.After(methodReplyLateDelay * time.Millisecond):
		case <-c.lost:
			return
		}
	}
	rid := t.RID
	if lastRID {
		dc.mu.Lock()
		rid = dc.lastMethodRID // defect: one shared rid slot
		dc.mu.Unlock()
	}
	if byNameRID != nil {
		rid = byNameRID() // defect: one rid slot per method name
	}
	if ridUpper {
		// nanoFramework: Convert.ToInt32(rid, 16) and {rid:X}; a non-hex rid throws.
		v, err := strconv.ParseUint(rid, 16, 32)
		if err != nil {
			dc.fw.logf("E", "method %s: $rid %q is not hex; no response", t.MethodName, rid)
			dc.emit(agentproto.EvMethod, ev)
			return
		}
		rid = strings.ToUpper(strconv.FormatUint(v, 16))
	}
	if rid16 {
		rid = methodRID16(rid) // defect: 16-bit request id
	}
	if dc.on(DefMethodStatusEnum) {
		status = methodStatusEnum(status) // defect: a fixed list of codes
	}
	topic := iothub.MethodResponseTopic(status, rid)
	if statusText {
		text := strings.ReplaceAll(http.StatusText(status), " ", "")
		if text == "" {
			text = "Status" + strconv.Itoa(status)
		}
		topic = "$iothub/methods/res/" + text + "/?$rid=" + rid
	}
	payload = dc.methodPayloadPadded(payload) // method-response-padded only (limits.go)
	payload = dc.methodRespCut(payload)       // method-response-cut-64k only (defects_bounds_single.go)
	tok := c.cli.Publish(topic, dc.methodResponseQoS(), false, payload)
	if !tok.WaitTimeout(connectTimeout) || tok.Error() != nil {
		dc.fw.logf("W", "method %s response not sent: %v", t.MethodName, tok.Error())
		return
	}
	ev.Status = status
	dc.emit(agentproto.EvMethod, ev)
}

// sendTelemetry publishes one device-to-cloud message (TEL-001..010).
func (dc *deviceClient) sendTelemetry(ctx context.Context, a agentproto.TelemetryArgs) (any, *agentproto.Error) {
	cc, cerr := dc.snapshot()
	if cerr != nil {
		return nil, cerr
	}
	dc.noteTelemetry(ctx) // heartbeat.go (TEL-013)
	payload := []byte(a.Payload)
	if a.Gen != nil {
		//mutate:agent args: gen.size bounds of telemetry.send, the agent's generator argument
		if a.Gen.Size < 0 || a.Gen.Size > 4*iothub.MaxTelemetryBytes {
			return nil, agentproto.Errorf(agentproto.ErrBadArgs, "gen.size %d outside 0..%d", a.Gen.Size, 4*iothub.MaxTelemetryBytes)
		}
		payload = agentproto.Generate(a.Gen.Size, a.Gen.Seed)
	}
	qos := cc.qos
	if a.QoS != nil {
		if *a.QoS != 0 && *a.QoS != 1 {
			return nil, agentproto.Errorf(agentproto.ErrBadArgs, "qos %d: IoT Hub takes 0 or 1 (CONN-020)", *a.QoS)
		}
		qos = byte(*a.QoS)
	}
	var bag iothub.PropertyBag
	if a.MessageID != "" {
		bag = append(bag, iothub.Property{Name: iothub.PropMessageID, Value: dc.messageID(a.MessageID)})
	}
	if a.ContentType != "" {
		bag = append(bag, iothub.Property{Name: iothub.PropContentType, Value: a.ContentType},
			iothub.Property{Name: iothub.PropContentEncoding, Value: "utf-8"})
	}
	if a.CreationTime {
		bag = append(bag, iothub.Property{Name: iothub.PropCreationTime, Value: creationTime(dc.fw.rtc.Now(), dc.on(DefCtimeLocalTime))}) // TEL-012
	}
	for _, k := range sortedKeys(a.Properties) {
		bag = append(bag, iothub.Property{Name: k, Value: a.Properties[k]})
	}
	if a.Component != "" {
		bag = append(bag, iothub.Property{Name: iothub.PropComponent, Value: a.Component}) // PnP component telemetry
	}
	bag = dc.traceStamp(bag) // distributed tracing, TEL-014 (heartbeat.go)
	if n1, n2 := caseDuplicate(bag); n1 != "" {
		// The reference firmware's policy (the docs recommend unique names
		// to the application, 002 L10417; they set no client duty here).
		return nil, agentproto.Errorf(agentproto.ErrBadArgs, "properties %q and %q are equal ignoring case; IoT Hub keeps only one (TEL-007)", n1, n2)
	}
	if dc.on(DefPropDuplicateCase) {
		bag = lowerCaseCopies(bag)
	}
	bag = dc.telPropDefectBag(bag, cc.id, dc.on(DefJSONNoEncoding), dc.on(DefPropBadChars), dc.on(DefSpoofHubProperties))
	size := iothub.MessageSize(payload, bag)
	dc.mu.Lock()
	d := dc.fw.defects
	countsTopic, wrongTopic, raw := d.on(DefSizeCountsTopic), d.on(DefTelemetryWrongTopic), d.on(DefBagNotEncoded) || dc.boundsModuleBagRaw(cc)
	percentPassed, plusRaw := d.on(DefBagPercentPassed), d.on(DefBagPlusRaw)
	fakeQoS0, qos2, retain := d.on(DefTelemetryQoS0), d.on(DefTelemetryQoS2), d.on(DefTelemetryRetain)
	sysNames := d.on(DefSizeCountsSysNames)
	dc.mu.Unlock()
	if sysNames {
		size += sysNameBytes(bag) // defect: system-property names counted (defects_bounds_single.go)
	}
	if countsTopic { // defect: the wire topic counted as well
		size = len(payload) + len(iothub.TelemetryTopic(dc.telemetryIdentity(cc.id), bag))
	}
	// Refusing a larger message here is the reference firmware's policy:
	// the docs limit the message (TEL-005, 002 L10229), the hub refuses it.
	if size > iothub.MaxTelemetryBytes {
		return nil, agentproto.Errorf(agentproto.ErrBadArgs, "message of %d bytes exceeds IoT Hub's %d-byte limit; not sent (TEL-005)", size, iothub.MaxTelemetryBytes)
	}
	c := dc.current()
	if c == nil {
		return nil, agentproto.Errorf(agentproto.ErrNotConnected, "no hub connection (state %s)", dc.status().State)
	}
	telID := dc.telemetryIdentity(cc.id) // MOD-004
	topic := iothub.TelemetryTopic(telID, bag)
	if (percentPassed || plusRaw) && len(bag) > 0 {
		topic = iothub.TelemetryTopic(telID, nil) + boundsBagText(bag, percentPassed, plusRaw)
	}
	if raw {
		topic = iothub.TelemetryTopic(telID, nil) + rawBag(bag)
	}
	if wrongTopic {
		topic = strings.Replace(topic, "/messages/events/", "/messages/event/", 1)
	}
	wireQoS := qos
	switch {
	case qos2:
		wireQoS = 2
	case fakeQoS0:
		wireQoS = 0
	}
	dc.mu.Lock()
	dc.telRef++
	ref := dc.telRef
	dc.mu.Unlock()
	res := agentproto.TelemetryResult{Ref: ref, Size: size}
	tok := c.cli.Publish(topic, wireQoS, retain, payload)
	if fakeQoS0 && qos == 1 {
		// Defect: the QoS 0 send is reported as acknowledged (TEL-003).
		tok.WaitTimeout(connectTimeout)
		res.Acked = true
		dc.emit(agentproto.EvTelemetry, res)
		return res, nil
	}
	if wireQoS == 0 {
		if a.Wait {
			tok.WaitTimeout(connectTimeout)
			if err := tok.Error(); err != nil {
				res.Error = err.Error()
			}
		}
		return res, nil // QoS 0 is never acknowledged (TEL-003)
	}
	dc.mu.Lock()
	s := dc.sess
	dc.mu.Unlock()
	type outcome struct {
		ok  bool
		err string
	}
	acked := make(chan outcome, 1)
	go func() {
		ok, msg := dc.awaitAck(s, c, cc, tok, res) // RECON-005: ends at the operation timeout
		acked <- outcome{ok, msg}
	}()
	if !a.Wait {
		return res, nil
	}
	select {
	case o := <-acked:
		res.Acked, res.Error = o.ok, o.err
	case <-ctx.Done():
		res.Error = ctx.Err().Error()
	}
	return res, nil
}

// rawBag writes a property bag without percent-encoding (defect propbag-not-encoded).
func rawBag(bag iothub.PropertyBag) string {
	parts := make([]string, len(bag))
	for i, p := range bag {
		parts[i] = p.Name + "=" + p.Value
	}
	return strings.Join(parts, "&")
}

// twinGetOp fetches the full twin over the connection.
func (dc *deviceClient) twinGetOp(ctx context.Context) (any, *agentproto.Error) {
	cc, cerr := dc.snapshot()
	if cerr != nil {
		return nil, cerr
	}
	c := dc.current()
	if c == nil {
		return nil, agentproto.Errorf(agentproto.ErrNotConnected, "no hub connection")
	}
	p, err := dc.twinPublish(c, iothub.TwinGetTopic, nil)
	if err != nil {
		return nil, err
	}
	r, err := dc.twinAwaitRetrying(ctx, cc, p, iothub.TwinGetTopic, nil)
	if err != nil {
		//mutate:agent report: the error the agent is told when a GET got no answer (the GET itself is sent and awaited either way)
		return nil, err
	}
	failed := r.status < 200 || r.status > 299
	if dc.on(DefTwinGetStatusIgnored) {
		failed = false // defect: every answer's body is read as the twin
	}
	if failed {
		return nil, agentproto.Errorf(agentproto.ErrRejected, "twin GET answered status %d", r.status)
	}
	res, perr := dc.applyTwinDocument(r)
	if perr != nil {
		return nil, agentproto.Errorf(agentproto.ErrInternal, "twin document: %v", perr)
	}
	return res, nil
}

// report sends a reported-properties PATCH and waits for its status (TWIN-006..008).
func (dc *deviceClient) report(ctx context.Context, patch map[string]any) (any, *agentproto.Error) {
	cc, cerr := dc.snapshot()
	if cerr != nil {
		return nil, cerr
	}
	if patch == nil {
		return nil, agentproto.Errorf(agentproto.ErrBadArgs, "twin.report needs a patch object")
	}
	// Patches that break the per-patch limits never leave the device
	// (TWIN-011..014, TWIN-016); the section size (TWIN-015) is the hub's.
	verr := twin.ValidateReported(patch)
	unchecked := verr != nil && dc.localCheckSkipped(verr)
	if verr != nil && !unchecked {
		return nil, agentproto.Errorf(agentproto.ErrBadArgs, "reported patch not sent: %v", verr)
	}
	if n, over := indentedTooLarge(patch); over && dc.on(DefTwinSizeIndented) {
		return nil, agentproto.Errorf(agentproto.ErrBadArgs, "reported patch of %d bytes exceeds the %d-byte section limit; not sent (TWIN-015)", n, twin.MaxSectionBytes)
	}
	if dc.on(DefTwinReportNullDropped) {
		patch = dropNulls(patch)
	}
	if dc.on(DefNestedNullDrop) {
		patch = nestedNullsDropped(patch) // defects_bounds_more.go
	}
	if dc.on(DefReportedDollarKey) {
		p := make(map[string]any, len(patch)+1)
		for k, v := range patch {
			p[k] = v
		}
		p["$lastUpdated"] = dc.fw.rtc.Now().UTC().Format("2006-01-02T15:04:05.000Z")
		patch = p
	}
	if dc.on(DefTwinReportedWrapped) {
		patch = map[string]any{"reported": patch}
	}
	body, jerr := json.Marshal(patch)
	if jerr != nil {
		return nil, agentproto.Errorf(agentproto.ErrBadArgs, "patch: %v", jerr)
	}
	c := dc.current()
	if c == nil {
		return nil, agentproto.Errorf(agentproto.ErrNotConnected, "no hub connection")
	}
	p, err := dc.twinPublish(c, iothub.TwinReportedTopic, body)
	if err != nil {
		return nil, err
	}
	if dc.on(DefTwinReportNoWait) {
		dc.forget(p.rid)
		return agentproto.ReportResult{Status: 204}, nil
	}
	r, err := dc.twinAwaitRetrying(ctx, cc, p, iothub.TwinReportedTopic, body)
	if err != nil {
		return nil, err
	}
	for try := 1; r.status == 400 && try <= twin400Resends && dc.on(DefTwin400Resent); try++ {
		if !sleepCtx(ctx, backoff(cc, try)) {
			break
		}
		if p, err = dc.twinPublish(c, iothub.TwinReportedTopic, body); err != nil {
			return nil, err
		}
		if r, err = dc.twinAwait(ctx, p, cc.twinTimeout); err != nil {
			return nil, err
		}
	}
	if unchecked && r.status == 400 {
		// twin-reported-*-unchecked: the patch the local check would have
		// refused went out, and the hub's 400 is taken for success.
		return agentproto.ReportResult{Status: 204}, nil
	}
	if r.status < 200 || r.status > 299 {
		return nil, agentproto.Errorf(agentproto.ErrRejected, "reported PATCH answered status %d: %s", r.status, truncate(string(r.body), 200))
	}
	dc.mu.Lock()
	if r.hasVer {
		dc.reportedVer = r.version
	}
	dc.mu.Unlock()
	return agentproto.ReportResult{Status: r.status, Version: r.version}, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// rotate installs new credentials and reconnects with them (CERT-006, CERT-007).
func (dc *deviceClient) rotate(a agentproto.RotateArgs) *agentproto.Error {
	kind := ""
	n := dc.fw.nvs
	ignored := dc.rotationIgnored(a)
	switch {
	case a.Key != "":
		//mutate:agent args: creds.rotate's key must be base64; a refused rotation changes nothing
		if k, err := base64.StdEncoding.DecodeString(a.Key); err != nil || len(k) == 0 {
			return agentproto.Errorf(agentproto.ErrBadArgs, "creds.rotate key must be base64")
		}
		n.mu.Lock()
		if n.Config.Auth == nil || n.Config.Auth.Type != "sas" {
			n.mu.Unlock()
			return agentproto.Errorf(agentproto.ErrBadArgs, "creds.rotate key needs auth type sas")
		}
		auth := *n.Config.Auth
		auth.Key = a.Key
		if !ignored {
			n.Config.Auth = &auth
		}
		n.mu.Unlock()
		kind = "key-rotated"
	case a.PEM != "":
		cert, err := tls.X509KeyPair([]byte(a.PEM), []byte(a.KeyPEM))
		if err != nil {
			return agentproto.Errorf(agentproto.ErrBadArgs, "creds.rotate certificate: %v", err)
		}
		n.mu.Lock()
		if !ignored {
			n.Cert = &cert
		}
		n.mu.Unlock()
		kind = "cert-rotated"
	default:
		return agentproto.Errorf(agentproto.ErrBadArgs, "creds.rotate needs key, or pem and keyPem")
	}
	dc.fw.changed(changedNVS)
	dc.emit(agentproto.EvCreds, agentproto.CredsEvent{Kind: kind})
	dc.mu.Lock()
	s := dc.sess
	dc.mu.Unlock()
	if s == nil {
		return nil
	}
	select {
	case <-s.done:
		// The loop had stopped (e.g. not authorized): new credentials are a
		// new chance.
		_, err := dc.open()
		return err
	default:
	}
	select {
	case s.kick <- kind:
	default:
	}
	return nil
}
