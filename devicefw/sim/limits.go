package sim

// The application-side traffic the LIMITS specs judge: a backlog of
// telemetry flushed after reconnect within the device's D2C budget
// (LIMITS-001), samples of a reported property coalesced within the
// twin-update budget (LIMITS-002); and where defect switches break the
// method-response size (LIMITS-004) and the free keep-alive (LIMITS-005).

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/hilrun/hilrun/devicefw/agentproto"
)

const (
	burstMax        = 1000
	burstWaitOnline = 30 * time.Second
	heartbeatEvery  = 200 * time.Millisecond
	paddedResponse  = 40 * 1024
)

// limitState is the client's burst and heartbeat state.
type limitState struct {
	mu        sync.Mutex
	heartbeat *session // the session whose heartbeat runs (heartbeat-as-telemetry)
}

var limitStates sync.Map // *deviceClient → *limitState

func (dc *deviceClient) limits() *limitState {
	v, _ := limitStates.LoadOrStore(dc, &limitState{})
	return v.(*limitState)
}

// burst takes a backlog from the application; the work goes on after the
// answer.
func (dc *deviceClient) burst(a agentproto.BurstArgs) (agentproto.BurstResult, *agentproto.Error) {
	if a.Count < 1 || a.Count > burstMax {
		return agentproto.BurstResult{}, agentproto.Errorf(agentproto.ErrBadArgs, "count must be in 1..%d", burstMax)
	}
	//mutate:agent args: app.burst's rate and size bounds
	if a.PerSecond < 0 || a.Size < 0 || a.Size > 64*1024 {
		return agentproto.BurstResult{}, agentproto.Errorf(agentproto.ErrBadArgs, "perSecond ≥ 0 and size in 0..65536")
	}
	switch a.Kind {
	case agentproto.BurstTelemetry:
		go dc.flushTelemetry(a)
	case agentproto.BurstReported:
		go dc.coalesceReported(a)
	default:
		return agentproto.BurstResult{}, agentproto.Errorf(agentproto.ErrBadArgs, "kind %q: want telemetry or reported", a.Kind)
	}
	return agentproto.BurstResult{Queued: a.Count}, nil
}

// gap is the spacing that keeps a rate at or under perSecond.
func gap(perSecond float64) time.Duration {
	if perSecond <= 0 {
		return 0
	}
	return time.Duration(float64(time.Second)/perSecond) + time.Millisecond
}

// waitOnline waits until the client has a connection.
func (dc *deviceClient) waitOnline() bool {
	deadline := time.Now().Add(burstWaitOnline)
	for time.Now().Before(deadline) {
		if dc.current() != nil && dc.status().State == agentproto.StateConnected {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// flushTelemetry sends the backlog once connected, paced within the budget
// (LIMITS-001).
func (dc *deviceClient) flushTelemetry(a agentproto.BurstArgs) {
	every := gap(a.PerSecond)
	if dc.on(DefThrottlingIgnored) {
		every = 0
	}
	size := max(a.Size, 16)
	for i := 0; i < a.Count; i++ {
		if !dc.waitOnline() {
			dc.fw.logf("W", "burst: no connection; %d messages dropped", a.Count-i)
			return
		}
		if i > 0 && every > 0 {
			time.Sleep(every)
		}
		args := agentproto.TelemetryArgs{Gen: &agentproto.Gen{Size: size, Seed: uint32(i + 1)}, Properties: map[string]string{"backlog": "1"}, Wait: !dc.on(DefThrottlingIgnored)}
		if _, err := dc.sendTelemetry(context.Background(), args); err != nil {
			i-- // not sent: try again once connected
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// coalesceReported turns Count samples into as few reported PATCHes as
// the budget needs: the latest value wins (LIMITS-002).
func (dc *deviceClient) coalesceReported(a agentproto.BurstArgs) {
	key := a.Key
	if key == "" {
		key = "sample"
	}
	if dc.on(DefTwinPerSample) {
		for i := 1; i <= a.Count; i++ {
			go func(i int) { _, _ = dc.report(context.Background(), map[string]any{key: i}) }(i)
		}
		return
	}
	// The samples arrive together: one PATCH carries the last; a budget
	// of n/s would allow more, but one is all the data needs.
	every := gap(a.PerSecond)
	if every > 0 {
		time.Sleep(every) // the coalescing window
	}
	if _, err := dc.report(context.Background(), map[string]any{key: a.Count}); err != nil {
		dc.fw.logf("W", "coalesced report: %s", err.Msg)
	}
}

// methodPayloadPadded is where method-response-padded acts.
func (dc *deviceClient) methodPayloadPadded(payload []byte) []byte {
	if !dc.on(DefMethodResponsePadded) {
		return payload
	}
	dump := `{"diagnostics":"` + strings.Repeat("d", paddedResponse) + `","response":`
	if len(payload) == 0 {
		payload = []byte("null")
	}
	return append([]byte(dump), append(payload, '}')...)
}

// heartbeat starts heartbeat-as-telemetry for a session (once per session).
func (dc *deviceClient) heartbeat(s *session) {
	if !dc.on(DefHeartbeatTelemetry) {
		return
	}
	l := dc.limits()
	l.mu.Lock()
	if l.heartbeat == s {
		l.mu.Unlock()
		return
	}
	l.heartbeat = s
	l.mu.Unlock()
	go func() {
		t := time.NewTicker(heartbeatEvery)
		defer t.Stop()
		for {
			select {
			case <-s.ctx.Done():
				return
			case <-t.C:
				_, _ = dc.sendTelemetry(s.ctx, agentproto.TelemetryArgs{Payload: `{"heartbeat":true}`})
			}
		}
	}()
}
