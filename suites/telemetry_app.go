package suites

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/iothub"
)

// The heartbeat pattern (TEL-013) and distributed tracing (TEL-014):
// behaviours a solution agrees with its devices, asked for through
// heartbeat.start and tracing.set (devicefw/PROTOCOL.md §4.4). A board
// that does not declare `heartbeat` / `tracing` is not applicable
// (NewSession reads the capability from the catalog entry).

// heartbeatTiming is the agreed interval, compressed from the docs' hour
// (002 L11121) so that the spec takes seconds, and the slack added to it
// for the rig's own share of a gap: the firmware's timer, the serial line
// and MQTT stack on a loaded host, the network, the hub stamping the
// receive time. Both scale with the rig's quiet period: 1 s + 0.4 s on
// the virtual board (compressed timing), 6 s + 2.4 s on a real board
// (--strict). Against the docs' hour the slack is nothing; it still
// catches a device that skips a heartbeat (a gap of two intervals).
func heartbeatTiming(s *fixtures.Session) (interval, slack time.Duration) {
	return 2 * s.Env.Timing.Quiet, s.Env.Timing.Quiet * 4 / 5
}

// heartbeatPhases is how many intervals each phase (idle, busy) is observed.
const heartbeatPhases = 3

// heartbeatTag is the property this solution agreed to identify a
// heartbeat by (002 L11121: "usually with a property that identifies it
// as a heartbeat"; the docs name none).
var heartbeatTag = iothub.Property{Name: "heartbeat", Value: "true"}

var _ = Describe("telemetry application patterns", func() {
	Conformance("heartbeat-tagged messages reach the hub at least once per agreed interval, idle and while the device sends other telemetry", []string{"TEL-013"}, func(ctx SpecContext) {
		// 002 L11121: "the device sends device-to-cloud messages at least
		// once every fixed amount of time … even if a device does not
		// have any data to send, it still sends an empty device-to-cloud
		// message (usually with a property that identifies it as a
		// heartbeat)", and the service keeps "the last heartbeat received
		// for each device". The catalog reads the duty as heartbeat-tagged
		// messages, idle or not: a solution that watches its heartbeats
		// sees a busy device that stops them as dead. Any message carrying
		// the tag counts, whatever its body.
		s := NewSession(ctx, fixtures.SessionOptions{})
		interval, slack := heartbeatTiming(s)
		phase := heartbeatPhases * interval
		m := s.Mark()
		err := s.Call(ctx, agentproto.OpHeartbeatStart, agentproto.HeartbeatArgs{IntervalMS: int(interval / time.Millisecond),
			Properties: map[string]string{heartbeatTag.Name: heartbeatTag.Value}}, nil)
		if !optional(agentproto.CapHeartbeat, "heartbeat.start", err) {
			NotApplicable("the board sends no heartbeat (" + err.Error() + ")")
		}
		Expect(err).NotTo(HaveOccurred(), "TEL-013: the board declares heartbeat; heartbeat.start (interval %s) failed (002 L11121)", interval)
		hb := &heartbeatWatch{s: s, m: m, start: time.Now(), interval: interval, slack: slack}

		// Idle: the application sends nothing else.
		hb.waitBeatAfter(ctx, hb.start.Add(phase))
		hb.expectGaps("while idle", hb.start)

		// Busy: the application sends telemetry four times per interval.
		// The ticker paces the load; it synchronises nothing (each send
		// waits for its PUBACK).
		busy := time.Now()
		tick := time.NewTicker(interval / 4)
		for n := 0; time.Since(busy) < phase; n++ {
			_ = s.Call(ctx, agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: fmt.Sprintf(`{"busy":%d}`, n), Wait: true}, nil)
			select {
			case <-tick.C:
			case <-ctx.Done():
			}
			if ctx.Err() != nil {
				break
			}
		}
		tick.Stop()
		hb.waitBeatAfter(ctx, busy.Add(phase))
		hb.expectGaps(fmt.Sprintf("while the device also sent telemetry every %s", interval/4), busy)
	})

	Conformance("with tracing sampled at 100 %, every telemetry message carries tracestate=timestamp=<Unix seconds of its creation>", []string{"TEL-014"}, func(ctx SpecContext) {
		// 002 L30262: a `tracestate` application property with the
		// creation time in the Unix timestamp format,
		// "tracestate=timestamp=1539243209"; the percentage of messages
		// carrying it is the sampling rate. 002 L30388-30392: the device
		// adds it to sampled messages and the hub checks its format. The
		// C SDK's capture (002 L30286) writes "%24.tracestate=timestamp%3d…":
		// both names, and any valid percent-encoding of the value, are
		// accepted (catalog AMBIG); so is an '=' left raw inside the value
		// as L30262 prints it, which the bag's split at the first '='
		// reads the same.
		s := NewSession(ctx, fixtures.SessionOptions{})
		err := s.Call(ctx, agentproto.OpTracingSet, agentproto.TracingArgs{SamplingPct: 100}, nil)
		if !optional(agentproto.CapTracing, "tracing.set", err) {
			NotApplicable("the board has no distributed tracing (" + err.Error() + ")")
		}
		Expect(err).NotTo(HaveOccurred(), "TEL-014: the board declares tracing; tracing.set (100 %%) failed (002 L30262)")
		m := s.Mark()
		const sends = 3
		for i := 0; i < sends; i++ {
			_ = s.Call(ctx, agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: fmt.Sprintf(`{"traced":%d}`, i),
				Properties: map[string]string{"key": "property_value"}, Wait: true}, nil)
		}
		must(s.WaitTrace(ctx, m, fmt.Sprintf(`the telemetry PUBLISH {"traced":%d}`, sends-1), func(e hub.Entry) bool {
			return e.Dir == hub.DirIn && e.Type == "PUBLISH" && string(e.Payload) == fmt.Sprintf(`{"traced":%d}`, sends-1)
		}))
		tr := s.Trace(m)
		judged := 0
		for _, pub := range telemetryPublishes(tr) {
			if !strings.HasPrefix(string(pub.Payload), `{"traced":`) {
				continue
			}
			judged++
			wireBag(pub, tr) // the bag decodes (TEL-002)
			name, rawValue, value, ok := traceStateOnWire(pub.Topic)
			Expect(ok).To(BeTrue(), "TEL-014: with sampling at 100 %% every message is traced, but PUBLISH #%d %s carries no tracestate application property; topic %q (002 L30262, L30390)\n%s",
				pub.Seq, pub.Payload, pub.Topic, traceText(tr))
			secs, perr := iothub.ParseTraceState(value)
			Expect(perr).NotTo(HaveOccurred(), "TEL-014: %s=%s (decoded %q) on PUBLISH #%d is not timestamp=<Unix seconds> (002 L30262; the capture at 002 L30286 shows timestamp%%3d1547666028)\n%s",
				name, rawValue, value, pub.Seq, traceText(tr))
			// Compared in whole seconds (a value in milliseconds would
			// overflow a Duration), with one more second for the cut.
			diff := secs - pub.Time.Unix()
			bound := int64(fixtures.ClockTolerance/time.Second) + 1
			fixtures.NoteFact(fixtures.FactClock, "tracestate timestamp against the hub's receive time", fmt.Sprintf("%s=%s: %+d s", name, rawValue, diff), diff >= -bound && diff <= bound)
			Expect(diff >= -bound && diff <= bound).To(BeTrue(),
				"TEL-014: tracestate timestamp %d on PUBLISH #%d is %+d s from the hub's receive time %s (Unix %d): not the message's creation time in Unix seconds (002 L30262); tolerance ±%s as for CLOCK-002\n%s",
				secs, pub.Seq, diff, pub.Time.UTC().Format(time.RFC3339), pub.Time.Unix(), fixtures.ClockTolerance, traceText(tr))
		}
		Expect(judged).To(BeNumerically(">=", sends), "TEL-014: %d messages sent with tracing at 100 %%, %d seen on the wire (002 L30262)\n%s", sends, judged, traceText(tr))
	})
})

// traceStateOnWire finds the tracestate property in a telemetry topic's
// raw property bag: its name and value as sent, and the value decoded.
func traceStateOnWire(topic string) (rawName, rawValue, value string, ok bool) {
	_, raw, found := strings.Cut(topic, "/messages/events/")
	if !found || raw == "" {
		return "", "", "", false
	}
	for piece := range strings.SplitSeq(raw, "&") {
		n, v, _ := strings.Cut(piece, "=")
		name, err := url.QueryUnescape(n)
		if err != nil || !iothub.IsTraceStateName(name) {
			continue
		}
		dec, err := url.QueryUnescape(v)
		if err != nil {
			dec = v
		}
		return n, v, dec, true
	}
	return "", "", "", false
}

// isHeartbeat reports whether a device PUBLISH is a telemetry message
// carrying the agreed heartbeat tag, read from the raw topic's bag.
func isHeartbeat(e hub.Entry) bool {
	if e.Dir != hub.DirIn || e.Type != "PUBLISH" {
		return false
	}
	_, raw, ok := strings.Cut(e.Topic, "/messages/events/")
	if !ok {
		return false
	}
	bag, err := iothub.ParsePropertyBag(raw)
	if err != nil {
		return false
	}
	for _, p := range bag {
		// The hub compares property names ignoring case (002 L10417).
		if strings.EqualFold(p.Name, heartbeatTag.Name) && p.Value == heartbeatTag.Value {
			return true
		}
	}
	return false
}

// heartbeatWatch measures the gaps between heartbeat-tagged messages in
// the hub's wire trace since heartbeat.start was answered.
type heartbeatWatch struct {
	s               *fixtures.Session
	m               fixtures.Marks
	start           time.Time
	interval, slack time.Duration
	end             time.Time // where the last wait stopped
}

// waitBeatAfter waits for a heartbeat received at or after t, at most
// until it is overdue (one interval plus the slack after t); the gaps are
// judged by expectGaps either way.
func (w *heartbeatWatch) waitBeatAfter(ctx context.Context, t time.Time) {
	wctx, cancel := context.WithDeadline(ctx, t.Add(w.interval+w.slack+100*time.Millisecond))
	defer cancel()
	e, err := w.s.WaitTrace(wctx, w.m, "a heartbeat", func(e hub.Entry) bool { return isHeartbeat(e) && !e.Time.Before(t) })
	w.end = time.Now()
	if err == nil {
		w.end = e.Time
	}
}

// expectGaps fails when, between from and the end of the last wait, two
// heartbeats (or from and the first one, or the last one and the end)
// are further apart than the interval plus the slack.
func (w *heartbeatWatch) expectGaps(phase string, from time.Time) {
	GinkgoHelper()
	tr := w.s.Trace(w.m)
	prev := w.start
	var beats []time.Time
	for _, e := range tr {
		if isHeartbeat(e) {
			beats = append(beats, e.Time)
			if !e.Time.After(from) {
				prev = e.Time
			}
		}
	}
	points := []time.Time{prev}
	for _, b := range beats {
		if b.After(from) && !b.After(w.end) {
			points = append(points, b)
		}
	}
	points = append(points, w.end)
	var worst time.Duration
	var worstFrom, worstTo time.Time
	for i := 1; i < len(points); i++ {
		if g := points[i].Sub(points[i-1]); g > worst {
			worst, worstFrom, worstTo = g, points[i-1], points[i]
		}
	}
	rel := func(t time.Time) string { return fmt.Sprintf("+%.2fs", t.Sub(w.start).Seconds()) }
	seen := make([]string, len(beats))
	for i, b := range beats {
		seen[i] = rel(b)
	}
	fixtures.NoteFact(fixtures.FactClock, "heartbeat every "+w.interval.String()+" "+phase,
		fmt.Sprintf("longest gap %.3fs over %d heartbeats (bound %s)", worst.Seconds(), len(points)-2, w.interval+w.slack), worst <= w.interval+w.slack)
	Expect(worst).To(BeNumerically("<=", w.interval+w.slack),
		"TEL-013: %s the longest gap between heartbeat-tagged messages (%s=%s) was %.2fs, from %s to %s after heartbeat.start; expected at least one per agreed interval %s (+%s for the rig's scheduling), idle or not (002 L11121). Heartbeats seen at: [%s]\n%s",
		phase, heartbeatTag.Name, heartbeatTag.Value, worst.Seconds(), rel(worstFrom), rel(worstTo), w.interval, w.slack, strings.Join(seen, " "), traceText(tr))
}
