package sim

import (
	"context"
	"encoding/json"
	"strconv"
	"time"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/rig/iothub"
)

// The application settings of PROTOCOL.md §4.4: the heartbeat pattern
// (TEL-013, 002 L11119-11127) and distributed tracing (TEL-014, 002
// L30262, L30388-30392). Both belong to one client session: they end
// with client.close, so a later session starts without them.

// maxHeartbeatMS bounds the interval (an hour, the docs' example).
//
//mutate:agent args: the upper bound of heartbeat.set's interval argument
const maxHeartbeatMS = 3600 * 1000

// appState is guarded by deviceClient.mu.
type appState struct {
	hbSess     *session      // the session the heartbeat runs in
	hbStop     chan struct{} // closed to stop the running heartbeat
	hbActivity chan struct{} // other telemetry was sent (heartbeat-only-when-idle)

	traceSess *session // the session tracing is on in
	tracePct  int
	traceN    uint64 // telemetry messages seen while tracing is on
}

// heartbeatKey marks the context of a heartbeat send, so that it does not
// count as other telemetry.
type heartbeatKey struct{}

func (fw *Firmware) dispatchApp(_ context.Context, op string, raw json.RawMessage) (any, *agentproto.Error) {
	switch op {
	case agentproto.OpHeartbeatStart:
		var a agentproto.HeartbeatArgs
		if err := decodeArgs(raw, &a); err != nil {
			return nil, err
		}
		return nil, fw.client.heartbeatStart(a)
	case agentproto.OpTracingSet:
		var a agentproto.TracingArgs
		if err := decodeArgs(raw, &a); err != nil {
			return nil, err
		}
		return nil, fw.client.tracingSet(a)
	}
	return nil, agentproto.Errorf(agentproto.ErrUnknownOp, "operation %q is not implemented by %s", op, FirmwareName)
}

// openSessionLocked returns the running client session, or nil.
func (dc *deviceClient) openSessionLocked() *session {
	s := dc.sess
	if s == nil {
		return nil
	}
	select {
	case <-s.done:
		return nil
	default:
		return s
	}
}

// heartbeatStart (re)starts the heartbeat on the open client.
func (dc *deviceClient) heartbeatStart(a agentproto.HeartbeatArgs) *agentproto.Error {
	//mutate:agent args: heartbeat.set's interval bounds
	if a.IntervalMS < 0 || a.IntervalMS > maxHeartbeatMS {
		return agentproto.Errorf(agentproto.ErrBadArgs, "intervalMs %d outside 0..%d", a.IntervalMS, maxHeartbeatMS)
	}
	if a.IntervalMS > 0 && len(a.Properties) == 0 {
		return agentproto.Errorf(agentproto.ErrBadArgs, "props: a heartbeat needs the property that identifies it")
	}
	idleOnly, drift := dc.on(DefHeartbeatOnlyWhenIdle), dc.on(DefHeartbeatDrift)
	dc.mu.Lock()
	defer dc.mu.Unlock()
	if dc.app.hbStop != nil {
		close(dc.app.hbStop)
		dc.app.hbStop, dc.app.hbActivity, dc.app.hbSess = nil, nil, nil
	}
	if a.IntervalMS == 0 {
		return nil
	}
	s := dc.openSessionLocked()
	if s == nil {
		return agentproto.Errorf(agentproto.ErrNotConnected, "heartbeat.start needs an open client (client.open first)")
	}
	stop, activity := make(chan struct{}), make(chan struct{}, 1)
	dc.app.hbSess, dc.app.hbStop, dc.app.hbActivity = s, stop, activity
	props := make(map[string]string, len(a.Properties))
	for k, v := range a.Properties {
		props[k] = v
	}
	go dc.heartbeatLoop(s, stop, activity, time.Duration(a.IntervalMS)*time.Millisecond, props, idleOnly, drift)
	return nil
}

// heartbeatLoop sends an empty message tagged with props at least once
// per interval, idle or busy (TEL-013). The schedule is a little inside
// the interval (90 %), for the trip to the hub, and fixed: a slow send
// does not push the next one back.
func (dc *deviceClient) heartbeatLoop(s *session, stop <-chan struct{}, activity <-chan struct{}, interval time.Duration, props map[string]string, idleOnly, drift bool) {
	period := interval * 9 / 10
	next := time.Now().Add(period)
	t := time.NewTimer(period)
	defer t.Stop()
	ctx := context.WithValue(s.ctx, heartbeatKey{}, true)
	tick := 0
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-stop:
			return
		case <-activity:
			if idleOnly { // defect: other telemetry counts as the heartbeat
				next = time.Now().Add(period)
				resetTimer(t, period)
			}
			continue
		case <-t.C:
		}
		next = next.Add(period)
		if d := time.Until(next); d > 0 {
			t.Reset(d)
		} else {
			next = time.Now().Add(period)
			t.Reset(period)
		}
		tick++
		if drift && tick%2 == 0 { // defect: every second tick only
			continue
		}
		if _, err := dc.sendTelemetry(ctx, agentproto.TelemetryArgs{Properties: props}); err != nil {
			dc.fw.logf("W", "heartbeat not sent: %s", err.Msg)
		}
	}
}

func resetTimer(t *time.Timer, d time.Duration) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(d)
}

// noteTelemetry tells the heartbeat that the application sent other
// telemetry (only the defect heartbeat-only-when-idle listens).
func (dc *deviceClient) noteTelemetry(ctx context.Context) {
	if ctx.Value(heartbeatKey{}) != nil {
		return
	}
	dc.mu.Lock()
	ch := dc.app.hbActivity
	dc.mu.Unlock()
	if ch != nil {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// tracingSet turns distributed tracing on (or off with 0) for the open
// client.
func (dc *deviceClient) tracingSet(a agentproto.TracingArgs) *agentproto.Error {
	//mutate:agent args: tracing.set's samplingPct bounds
	if a.SamplingPct < 0 || a.SamplingPct > 100 {
		return agentproto.Errorf(agentproto.ErrBadArgs, "samplingPct %d outside 0..100", a.SamplingPct)
	}
	dc.mu.Lock()
	defer dc.mu.Unlock()
	s := dc.openSessionLocked()
	//mutate:agent args: tracing.set refused without an open client; nothing is stamped either way
	if s == nil && a.SamplingPct > 0 {
		return agentproto.Errorf(agentproto.ErrNotConnected, "tracing.set needs an open client (client.open first)")
	}
	dc.app.traceSess, dc.app.tracePct, dc.app.traceN = s, a.SamplingPct, 0
	return nil
}

// traceStamp adds tracestate = timestamp=<Unix seconds of creation> to a
// sampled message (TEL-014, 002 L30262). Sampling is even: of every 100
// messages, tracePct carry it.
func (dc *deviceClient) traceStamp(bag iothub.PropertyBag) iothub.PropertyBag {
	millis, iso, perMille := dc.on(DefTraceStateMillis), dc.on(DefTraceStateISO), dc.on(DefTracingPerMille)
	countOff := dc.on(DefTraceCountWhileOff)
	dc.mu.Lock()
	on := dc.app.tracePct > 0 && dc.app.traceSess != nil && dc.app.traceSess == dc.openSessionLocked()
	pct := uint64(dc.app.tracePct)
	if on {
		dc.app.traceN++
	}
	if countOff { // defect: the count moves while off and stands while on
		if on {
			dc.app.traceN--
		} else {
			dc.app.traceN++
		}
	}
	n := dc.app.traceN
	dc.mu.Unlock()
	if !on {
		return bag
	}
	den := uint64(100)
	if perMille { // defect: the rate read as per mille
		den = 1000
	}
	if n*pct/den == (n-1)*pct/den {
		return bag // not sampled
	}
	now := dc.fw.rtc.Now()
	v := iothub.FormatTraceState(now)
	switch {
	case millis: // defect
		v = "timestamp=" + strconv.FormatInt(now.UnixMilli(), 10)
	case iso: // defect
		v = "timestamp=" + creationTime(now, false)
	}
	return append(bag, iothub.Property{Name: iothub.PropTraceState, Value: v})
}
