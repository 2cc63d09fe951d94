package suites

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/fixtures/series"
	"github.com/hilrun/hilrun/rig/hub"
)

var _ = Describe("reconnect", func() {
	Conformance("after a drop the device reconnects on its own, spacing refused attempts with backoff", []string{"RECON-001"}, func(ctx SpecContext) {
		// A short policy. CONNACK 3 is also throttling: a device may wait
		// the throttled minimum (about 10 s, RECON-003) before its next
		// attempt, so the wait for the accepted one allows for it.
		initial, ceiling := 100*time.Millisecond, 400*time.Millisecond
		s := NewSession(ctx, fixtures.SessionOptions{Retry: &agentproto.RetryConfig{
			InitialMS: int(initial / time.Millisecond), MaxMS: int(ceiling / time.Millisecond), JitterPct: 20}})
		m := s.Mark()
		// Refuse reconnects (CONNACK 3, server unavailable) for about two
		// attempts, then let the device back in.
		s.Env.Hub.RefuseConnects(s.ID, 3, initial+ceiling+ceiling/2)
		Expect(s.Env.Hub.Drop(s.ID, false, "RECON-001: connection lost")).To(Succeed())
		must(s.WaitTrace(ctx, m, "RECON-001: a reconnect attempt (refused with CONNACK 3)", isConnack(3)))
		uctx, cancelU := context.WithTimeout(ctx, s.Env.Timing.Event+throttledMinimum)
		defer cancelU()
		up := must(s.WaitTrace(uctx, m, "RECON-001: a reconnect accepted after the refusals", isConnack(0)))
		closed := must(s.WaitTrace(ctx, m, "the dropped connection's close", func(e hub.Entry) bool { return e.Type == hub.EventConnClosed }))
		tr := s.Trace(m)
		// The device's waits: from the drop to its first attempt, then from
		// the hub's refusal of each attempt to the TCP accept of the next,
		// up to the accepted one. The backoff is the device's wait between
		// a failure and its next try (002 L16709, L16715); the TCP connect,
		// TLS handshake and CONNECT of each attempt are not part of it, and
		// timing attempts by their CONNECTs would count a handshake slowed
		// by a loaded rig as the device's delay (one gap grows, the next
		// looks shrunk).
		atts := connAttempts(tr, m.Trace, up.Seq)
		waits := attemptWaits(closed.Mono, atts)
		evidence := attemptsText(atts, waits) + traceText(tr)
		att := series.FromWaits("the device's waits: drop → first attempt, then refusal → next attempt's TCP accept", waits...)
		series.Record(att)
		Expect(att).To(series.HaveAtLeastPoints(3), "RECON-001: a refused attempt and an accepted one after the drop\n%s", evidence)
		// The first retry may follow the drop at once (002 L16715: the
		// default policy "tends to be aggressive at the start"); from then
		// on every retry waits at least the configured initial delay, less
		// at most the configured 20 % jitter, and the delays do not shrink
		// from one retry to the next beyond that jitter.
		retries := att.Retries()
		series.Record(retries)
		Expect(retries).To(series.HaveMinimumGap(initial*8/10), "RECON-001: no retry may follow the previous attempt's refusal sooner than the initial delay %s less its jitter (only the first retry may come at once; 002 L16709, L16715)\n%s", initial, evidence)
		gaps := retries.Gaps()
		for i := 1; i < len(gaps); i++ {
			Expect(gaps[i]).To(BeNumerically(">=", gaps[i-1]*3/4), "RECON-001: the backoff shrank: waits after each refusal %v (002 L16709, L16715: exponential backoff with jitter)\n%s", roundAll(gaps), evidence)
		}
	})

	Conformance("after CONNACK not-authorized (key reset on the hub) the device stops retrying and says why", []string{"RECON-004"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		m := s.Mark()
		// A key reset on the hub: the device's key no longer verifies.
		_, _, err := s.Env.Hub.Registry().Put(hub.Device{DeviceID: s.ID.DeviceID}, "")
		Expect(err).NotTo(HaveOccurred())
		Expect(s.Env.Hub.Drop(s.ID, false, "RECON-004: key reset")).To(Succeed())
		refused := must(s.WaitTrace(ctx, m, "CONNECT refused with 5 not authorized", func(e hub.Entry) bool {
			return e.Type == hub.EventConnRejected && e.ReturnCode == 5
		}))
		expectStoppedAndReported(ctx, s, m, refused)
	})

	Conformance("an authentication error injected by the hub (fault InvokeAuthError) stops the device, which says why; reopened later it works", []string{"RECON-004"}, func(ctx SpecContext) {
		// The board's own session choice: RECON-004 says nothing about
		// sessions (002 L16708).
		s := NewSession(ctx, fixtures.SessionOptions{})
		m := s.Mark()
		const duration = 1 // seconds of CONNACK 5 after the hub's close
		sendFaultRequest(ctx, s, hub.FaultInvokeAuthError, duration)
		// The device's first comeback falls into the window and is refused as not authorized.
		refused := must(s.WaitTrace(ctx, m, "a reconnect refused with 5 not authorized during the auth-error window", isConnack(5)))
		expectStoppedAndReported(ctx, s, m, refused)
		// An operator (here: the host) reopens after the window, which the
		// quiet watch above has already outlasted: the device works again.
		Expect(time.Since(refused.Time)).To(BeNumerically(">", duration*time.Second), "the quiet watch must outlast the auth-error window")
		if !reopen(ctx, s, "working again after the auth-error window") {
			return
		}
		om := s.Mark()
		one := 1
		var res agentproto.TelemetryResult
		must(0, s.Call(ctx, agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: `{"after":"auth"}`, QoS: &one, Wait: true}, &res))
		must(s.WaitTelemetry(ctx, om, func(msg hub.Message) bool { return string(msg.Payload) == `{"after":"auth"}` }))
	})

	Conformance("the SAS token is renewed by a new connection before its se", []string{"RECON-006"}, func(ctx SpecContext) {
		ttl := tokenLife(4*time.Second, 4*time.Second, 30*time.Second, "a renewal before se")
		s := NewSession(ctx, fixtures.SessionOptions{TokenTTL: ttl})
		first := must(s.WaitTrace(ctx, s.Start(), "CONNECT", isConnect))
		se1 := tokenExpiry(first)
		Expect(se1).NotTo(BeZero(), "no se in the first token")
		// The renewal must come before se1; give up a little after it.
		wctx, cancel := context.WithDeadline(ctx, se1.Add(2*time.Second))
		defer cancel()
		renewed := must(s.WaitTrace(wctx, fixtures.Marks{Trace: first.Seq}, "RECON-006: a new CONNECT with a fresh token before the first token's se", isConnect))
		tr := s.Trace(s.Start())
		Expect(renewed.Time.Before(se1)).To(BeTrue(), "RECON-006: the new CONNECT came at %s, after the token's se %s\n%s",
			renewed.Time.Format(time.TimeOnly+".000"), se1.Format(time.TimeOnly), traceText(tr))
		Expect(tokenExpiry(renewed).After(se1)).To(BeTrue(), "RECON-006: the new token's se must be later than %s\n%s", se1, traceText(tr))
		for _, e := range tr {
			Expect(e.Type == hub.EventConnClosed && e.Requirement == "RECON-006").To(BeFalse(), "RECON-006: the hub dropped the connection for an expired token\n%s", traceText(tr))
		}
		must(s.WaitTrace(ctx, fixtures.Marks{Trace: renewed.Seq}, "CONNACK 0 for the renewed token", isConnack(0)))
	})

	Conformance("after a reconnect the device restores its subscriptions (when the session was lost) and resyncs its twin before acting on desired state", []string{"RECON-008"}, func(ctx SpecContext) {
		// RECON-008: "re-establishes its subscriptions (unless the session
		// was kept) and performs the twin resync of TWIN-010". The
		// resubscription branch needs a lost session: the spec asks for
		// CleanSession 1, and a board that cannot use it (a library that
		// always keeps its session) is judged on the resync alone.
		s := NewSession(ctx, fixtures.SessionOptions{NoOpen: true})
		clean := true
		cleanErr := s.Call(ctx, agentproto.OpConfigure, agentproto.Config{MQTT: &agentproto.MQTTConfig{CleanSession: &clean}}, nil)
		if ae, ok := fixtures.IsDeviceError(cleanErr); ok && ae.Code == agentproto.ErrUnsupported {
			// A board declaring CleanSession 1 (clean-session-1) must do it.
			Expect(s.Env.Has("clean-session-1")).To(BeFalse(), "the board declares clean-session-1 but answered %v to mqtt.cleanSession true", cleanErr)
			cleanErr = nil
			clean = false
			GinkgoWriter.Printf("CleanSession 1 unsupported (%s): the board's default session; resubscription not applicable if the session is kept\n", ae.Msg)
		}
		Expect(cleanErr).NotTo(HaveOccurred(), "rig: configure mqtt.cleanSession")
		twin := s.Env.Has("twin")
		if !clean && !twin {
			Skip(notApplicable + "the board keeps its session (CleanSession 1 unsupported) and does not declare twin: neither branch of RECON-008 applies")
		}
		must(0, s.Open(ctx))
		before := subscribedFilters(s.Trace(s.Start()))
		m := s.Mark()
		Expect(s.Env.Hub.Drop(s.ID, false, "RECON-008: connection lost")).To(Succeed())
		up := reconnected(ctx, s, m, 0, "RECON-008: after the hub dropped the connection")
		onNew := func() []hub.Entry {
			var out []hub.Entry
			for _, e := range s.Trace(m) {
				if e.ConnID == up.ConnID {
					out = append(out, e)
				}
			}
			return out
		}
		judged := false
		if !up.Session {
			// Session lost: every filter of the first connection again.
			judged = true
			Expect(before).NotTo(BeEmpty(), "the device subscribed nothing on its first connection\n%s", traceText(s.Trace(s.Start())))
			_ = waitCond(ctx, s, m, "RECON-008: the first connection's filters subscribed again on the new one", func([]hub.Entry) bool {
				return slices.Equal(subscribedFilters(onNew()), before)
			})
			Expect(subscribedFilters(onNew())).To(Equal(before), "RECON-008: the session was not kept (CONNACK session present 0), so the new connection must subscribe again to what the first one had\n%s", traceText(s.Trace(s.Start())))
		} else {
			GinkgoWriter.Printf("session kept (CONNACK session present 1): resubscription not required\n")
		}
		if twin {
			judged = true
			// The twin resync: a GET on the new connection, and nothing acting
			// on desired state (a reported PATCH) before it.
			err := waitCond(ctx, s, m, "RECON-008: a twin GET on the new connection", func([]hub.Entry) bool {
				return len(publishes(onNew(), "$iothub/twin/GET/")) > 0
			})
			if err != nil {
				Fail(fmt.Sprintf("RECON-008: after the reconnect the device must resync its twin (TWIN-010): expected a PUBLISH to $iothub/twin/GET/ on the new connection %d within %s; none seen\n%s",
					up.ConnID, s.Env.Timing.Event, traceText(s.Trace(m))))
			}
			tr := onNew()
			get := publishes(tr, "$iothub/twin/GET/")[0]
			for _, p := range publishes(tr, "$iothub/twin/PATCH/properties/reported/") {
				Expect(p.Seq).To(BeNumerically(">", get.Seq), "RECON-008: a reported PATCH went out on the new connection before the twin GET (acting on desired state before the resync)\n%s", traceText(s.Trace(m)))
			}
		}
		if !judged {
			Skip(notApplicable + "the session was kept and the board does not declare twin: nothing of RECON-008 to judge")
		}
	})
})

// sendFaultRequest asks the hub for IoT Hub fault typ (duration in
// seconds) with a QoS 1 telemetry message, answered after its PUBACK. The
// delay of 1 s lets that PUBACK out before the hub acts, so whatever
// session the board uses, the fault message is never sent again after the
// reconnect (which would fault the new connection too).
func sendFaultRequest(ctx SpecContext, s *fixtures.Session, typ string, duration int) {
	GinkgoHelper()
	one := 1
	var res agentproto.TelemetryResult
	must(0, s.Call(ctx, agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: `{"fault":"` + typ + `"}`, QoS: &one, Wait: true, Properties: map[string]string{
		hub.FaultPropType: typ, hub.FaultPropReason: "boom", hub.FaultPropDelay: "1", hub.FaultPropDuration: fmt.Sprint(duration)}}, &res))
	Expect(res.Acked).To(BeTrue(), "rig: the fault request %s was not acknowledged (%s)\n%s", typ, res.Error, traceText(s.Trace(s.Start())))
}

// throttledMinimum is the documented minimum delay after a throttling
// error (002 L16744-16750: ExponentialBackoff(…, 10 s, 60 s, 5 s)). A wait
// for the next attempt after CONNACK 3 (or an early close, which the
// catalog also reads as throttling, RECON-003) allows for it.
const throttledMinimum = 10 * time.Second

// reopen opens the client again after the device stopped (or came back by
// itself: client.open on an open client starts nothing, PROTOCOL.md §4).
// A board whose library cannot re-open answers unsupported: the part of
// the spec after the re-open is then not applicable, which is logged, and
// reopen reports false; what the spec judged before stands.
func reopen(ctx context.Context, s *fixtures.Session, what string) bool {
	GinkgoHelper()
	err := s.Open(ctx)
	if ae, ok := fixtures.IsDeviceError(err); ok && ae.Code == agentproto.ErrUnsupported {
		GinkgoWriter.Printf("not applicable: %s needs a re-open; client.open answered unsupported (%s)\n", what, ae.Msg)
		AddReportEntry("not applicable", what+": client.open unsupported: "+ae.Msg)
		return false
	}
	must(0, err)
	return true
}

func isConnect(e hub.Entry) bool { return e.Dir == hub.DirIn && e.Type == "CONNECT" }

func isConnack(rc byte) func(hub.Entry) bool {
	return func(e hub.Entry) bool { return e.Dir == hub.DirOut && e.Type == "CONNACK" && e.ReturnCode == rc }
}

var seParam = regexp.MustCompile(`(?:^|[ &])se=([0-9]+)`)

// tokenExpiry reads se from a CONNECT's (redacted) SAS password.
func tokenExpiry(connect hub.Entry) time.Time {
	sm := seParam.FindStringSubmatch(connect.Password)
	if sm == nil {
		return time.Time{}
	}
	n, err := strconv.ParseInt(sm[1], 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.Unix(n, 0)
}

// subscribedFilters returns the sorted filters of the device's SUBSCRIBEs in tr.
func subscribedFilters(tr []hub.Entry) []string {
	var out []string
	for _, e := range packets(tr, hub.DirIn, "SUBSCRIBE") {
		for _, f := range e.Filters {
			if !slices.Contains(out, f.Filter) {
				out = append(out, f.Filter)
			}
		}
	}
	slices.Sort(out)
	return out
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

// expectStoppedAndReported checks RECON-004 after an unrecoverable refusal:
// at most one further CONNECT within the device's retry ceiling (the
// catalog's evidence allows a bounded number of further attempts per
// window, by default one a minute, and the window watched here is shorter
// than a minute; a device retrying with its normal backoff tries several
// times by then; this wait is expected to time out), and the device
// reports that it stopped and why.
func expectStoppedAndReported(ctx SpecContext, s *fixtures.Session, m fixtures.Marks, refused hub.Entry) {
	GinkgoHelper()
	window := max(s.Env.Timing.Quiet, s.Env.Timing.RetryMax)
	qctx, cancel := context.WithTimeout(ctx, window)
	defer cancel()
	after := func() []hub.Entry {
		var out []hub.Entry
		for _, e := range s.Trace(fixtures.Marks{Trace: refused.Seq}) {
			if isConnect(e) {
				out = append(out, e)
			}
		}
		return out
	}
	_ = s.Env.Hub.Wait(qctx, func() bool { return len(after()) > 1 })
	if again := after(); len(again) > 1 {
		Fail(fmt.Sprintf("RECON-004: the device tried again %d times within %s after being refused as not authorized (first %s after the refusal); it must stop, or retry very slowly (at most one further attempt a minute)\n%s",
			len(again), window, again[0].Time.Sub(refused.Time).Round(time.Millisecond), traceText(s.Trace(m))))
	}
	// … and says why it went quiet: a stopped state with a reason (or a
	// backoff of at least a minute, the "very slow cadence").
	var st agentproto.Status
	must(0, s.Call(ctx, agentproto.OpStatus, nil, &st))
	reported := st.State == agentproto.StateStopped && st.Reason != ""
	for _, ev := range s.Env.Agent.Events(m.Events) {
		var c agentproto.ConnEvent
		if ev.Name == agentproto.EvConn && ev.Decode(&c) == nil &&
			(c.State == agentproto.StateStopped && c.Reason != "" || c.State == agentproto.StateBackoff && c.NextMS >= 60000) {
			reported = true
		}
	}
	Expect(reported).To(BeTrue(), "RECON-004: after the refusal the device must report that it stopped and why (conn event or status); status is %+v", st)
}
