package suites

import (
	"context"
	"fmt"
	"math"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/rig/hub"
)

// LIMITS-*: quotas and throttles. The hub meters each device in IoT Hub's
// units (rig/hub/metering.go) and the specs compare the device's peak
// one-second rates with its share of the hub's throttles: the hub's
// profile (default one S1 unit shared by a fleet of ten devices, so 10
// D2C/s, 5 twin updates/s, 10 connections/s, 16 KB/s of method traffic,
// 40,000 messages a day). Each spec notes the figures as a report fact.

const factQuota = fixtures.FactQuota

// quotaFact notes a measured rate against its share.
func quotaFact(name string, measured, share float64, unit string) {
	fixtures.NoteFact(factQuota, name, fmt.Sprintf("%.4g %s (share %.4g %s of %s)", measured, unit, share, unit, profileText()), measured <= share)
}

func profileText() string {
	p := env.Hub.Quota()
	return fmt.Sprintf("%s × %d unit(s) over %d devices", p.Tier, p.Units, p.FleetDevices)
}

// appBurst hands the board's application a backlog (agentproto.OpAppBurst);
// a firmware without the operation cannot set the scene: precondition-unmet.
func appBurst(ctx context.Context, s *fixtures.Session, a agentproto.BurstArgs) {
	GinkgoHelper()
	err := s.Call(ctx, agentproto.OpAppBurst, a, nil)
	if isUnsupported(err) {
		PreconditionUnmet(fmt.Sprintf("app.burst (%s backlog): the board answered %v", a.Kind, err))
	}
	must(0, err)
}

// allowed is a rate's share as a whole count per second window (at least 1).
func allowed(perSecond float64) int { return max(1, int(math.Ceil(perSecond))) }

var _ = Describe("quotas and throttling", func() {
	Conformance("a telemetry backlog is flushed after reconnect within the device's share of the D2C throttle", []string{"LIMITS-001"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		share := s.Env.Hub.Quota().DeviceShare()
		limit := allowed(share.D2CPerSecond)
		// The hub throttles this device at its share, as IoT Hub would at its limit.
		s.Env.Hub.SetIdentityLimits(s.ID, &hub.Limits{TelemetryPerSecond: share.D2CPerSecond, TelemetryBurst: limit})
		s.Close(ctx)
		must(0, s.WaitDisconnected(ctx))
		const n = 12 // above a second's worth at the share: 1.2 s of traffic paced
		appBurst(ctx, s, agentproto.BurstArgs{Kind: agentproto.BurstTelemetry, Count: n, Size: 64, PerSecond: share.D2CPerSecond})
		m := s.Mark()
		must(0, s.Open(ctx))
		wctx, cancel := context.WithTimeout(ctx, time.Duration(float64(n)/share.D2CPerSecond*float64(time.Second))+s.Env.Timing.Event)
		defer cancel()
		_, err := s.Env.Hub.WaitTelemetryCount(wctx, s.ID, m.Telemetry, n)
		u := s.Env.Hub.Usage(s.ID, m.Trace)
		quotaFact("peak D2C rate flushing a backlog after reconnect", float64(u.PeakD2CPerSecond), share.D2CPerSecond, "msg/s")
		Expect(u.PeakD2CPerSecond).To(BeNumerically("<=", limit), "LIMITS-001: flushing a backlog after reconnect the device should stay within its share of the D2C throttle (%s: max(100/s, 12/s per unit), 002 L13418) of %.3g msg/s; it sent %d messages in one second (IoT Hub answers 429 ThrottlingException, 002 L13409)\n%s",
			profileText(), share.D2CPerSecond, u.PeakD2CPerSecond, traceText(s.Trace(m)))
		Expect(err).NotTo(HaveOccurred(), "LIMITS-001: the %d messages of the backlog should all arrive (paced, not dropped); %d did\n%s", n, u.D2C, traceText(s.Trace(m)))
	})

	Conformance("samples of a reported property are coalesced within the twin-update share", []string{"LIMITS-002"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		twinResynced(ctx, s, s.Start())
		share := s.Env.Hub.Quota().DeviceShare()
		limit := allowed(share.TwinUpdatesPerSecond)
		m := s.Mark()
		const n = 20
		appBurst(ctx, s, agentproto.BurstArgs{Kind: agentproto.BurstReported, Count: n, Key: "sample", PerSecond: share.TwinUpdatesPerSecond})
		// The last sample must reach the twin; then stragglers are watched for.
		wctx, cancel := context.WithTimeout(ctx, s.Env.Timing.Event)
		defer cancel()
		err := s.Env.Hub.Wait(wctx, func() bool {
			r, _ := s.Env.Hub.ReportedOf(s.ID)
			v, ok := r["sample"]
			return ok && fmt.Sprint(v) == fmt.Sprint(n)
		})
		qctx, cancelQ := context.WithTimeout(ctx, s.Env.Timing.Quiet)
		defer cancelQ()
		<-qctx.Done() // observe the quiet period: no burst of PATCHes follows
		u := s.Env.Hub.Usage(s.ID, m.Trace)
		quotaFact("peak reported updates for a burst of samples", float64(u.PeakTwinUpdatesPerSecond), share.TwinUpdatesPerSecond, "PATCH/s")
		Expect(u.PeakTwinUpdatesPerSecond).To(BeNumerically("<=", limit), "LIMITS-002: reported updates should be coalesced, not sent per sample, keeping within the device's share of twin updates (%s: 50/s, 002 L13426) of %.3g/s; %d samples became %d PATCHes, %d in one second\n%s",
			profileText(), share.TwinUpdatesPerSecond, n, u.TwinUpdates, u.PeakTwinUpdatesPerSecond, traceText(s.Trace(m)))
		Expect(err).NotTo(HaveOccurred(), "LIMITS-002: coalescing keeps the latest value: sample %d should reach the reported properties\n%s", n, traceText(s.Trace(m)))
	})

	Conformance("reconnects while the hub throttles connections stay negligible against the connection share", []string{"LIMITS-003", "RECON-001"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		share := s.Env.Hub.Quota().DeviceShare()
		limit := allowed(share.ConnectsPerSecond)
		m := s.Mark()
		// One second of CONNACK 3 (throttling): the reconnect attempts in
		// that second are the evidence (RECON-001 spaces them by backoff,
		// RECON-003 by the throttled minimum).
		const refuse = time.Second
		s.Env.Hub.RefuseConnects(s.ID, 3, refuse)
		must(0, s.Env.Hub.Drop(s.ID, false, "LIMITS-003: connection throttled"))
		wctx, cancel := context.WithTimeout(ctx, refuse)
		defer cancel()
		<-wctx.Done() // the observation window: real time, one second
		u := s.Env.Hub.Usage(s.ID, m.Trace)
		quotaFact("peak connection attempts while throttled", float64(u.PeakAttemptsPerSecond), share.ConnectsPerSecond, "CONNECT/s")
		Expect(u.ConnectAttempts).NotTo(BeZero(), "precondition: the device tries to reconnect after the drop\n%s", traceText(s.Trace(m)))
		Expect(u.PeakAttemptsPerSecond).To(BeNumerically("<=", limit), "LIMITS-003: the device's reconnect rate should stay negligible against the new-connection throttle (%s: max(100/s, 12/s per unit), 002 L13417, L13442-13446), a share of %.3g/s; it sent %d CONNECTs in one second (RECON-001: exponential backoff)\n%s",
			profileText(), share.ConnectsPerSecond, u.PeakAttemptsPerSecond, traceText(s.Trace(m)))
	})

	Conformance("method responses stay small against the method budget", []string{"LIMITS-004"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		share := s.Env.Hub.Quota().DeviceShare()
		defineMethod(ctx, s, agentproto.MethodBehaviour{Name: "getStatus", Status: 200, Payload: `{"ok":true}`})
		m := s.Mark()
		for i := 0; i < 3; i++ {
			_, err := invokeMethod(ctx, s, hub.MethodRequest{Name: "getStatus"})
			Expect(err).NotTo(HaveOccurred(), "precondition: getStatus answers\n%s", traceText(s.Trace(m)))
		}
		u := s.Env.Hub.Usage(s.ID, m.Trace)
		quotaFact("peak direct-method traffic", float64(u.PeakMethodBytesPerSecond)/1024, share.MethodBytesPerSecond/1024, "KB/s")
		fixtures.NoteFact(factQuota, "largest method response", fmt.Sprintf("%d bytes = %d method meter(s) of 4 KB", u.MaxMethodResponse, max(1, (u.MaxMethodResponse+hub.MeterMethod-1)/hub.MeterMethod)), u.MaxMethodResponse <= hub.MeterMethod)
		Expect(u.MaxMethodResponse).To(BeNumerically("<=", hub.MeterMethod), "LIMITS-004: the handler answers 11 bytes; the device's method response should stay small, within one 4 KB meter (002 L13436); it was %d bytes (%d meters)\n%s",
			u.MaxMethodResponse, (u.MaxMethodResponse+hub.MeterMethod-1)/hub.MeterMethod, traceText(s.Trace(m)))
		Expect(float64(u.PeakMethodBytesPerSecond)).To(BeNumerically("<=", share.MethodBytesPerSecond), "LIMITS-004: three calls in a row should stay within the device's share of the method throttle (%s: 160 KB/s per unit, 002 L13424) of %.0f bytes/s; they took %d bytes in one second",
			profileText(), share.MethodBytesPerSecond, u.PeakMethodBytesPerSecond)
	})

	Conformance("the device's metered daily volume fits its budget: an idle connection costs no messages", []string{"LIMITS-005"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		twinResynced(ctx, s, s.Start())
		share := s.Env.Hub.Quota().DeviceShare()
		// A workload: two 6 KB messages (2 meters each, 002 L13509).
		m := s.Mark()
		for i := 0; i < 2; i++ {
			must(0, s.Call(ctx, agentproto.OpTelemetry, agentproto.TelemetryArgs{Gen: &agentproto.Gen{Size: 6 * 1024, Seed: uint32(i + 1)}, Wait: true}, nil))
		}
		work := s.Env.Hub.Usage(s.ID, m.Trace)
		// Then one second of idling, connected: set-up and keep-alive are
		// free (002 L13519), so an idle device meters nothing.
		idle := s.Mark()
		idleFor := s.Env.Timing.Quiet
		qctx, cancel := context.WithTimeout(ctx, idleFor)
		defer cancel()
		<-qctx.Done()
		u := s.Env.Hub.Usage(s.ID, idle.Trace)
		perDay := float64(u.Messages()) / idleFor.Seconds() * 86400
		fixtures.NoteFact(factQuota, "two 6 KB telemetry messages", fmt.Sprintf("metered as %d messages (4 KB chunks)", work.D2CMeters), work.D2CMeters == 4)
		quotaFact("idle consumption extrapolated to a day", perDay, share.MessagesPerDay, "messages/day")
		Expect(work.D2CMeters).To(Equal(4), "precondition: two 6 KB messages meter as 4 (4 KB chunks, 002 L13509); metered %d", work.D2CMeters)
		Expect(perDay).To(BeNumerically("<=", share.MessagesPerDay/10), "LIMITS-005: the daily volume should fit the budget (%s: 400,000 messages per unit a day, 002 L16899; this device's share %.0f); idle and connected, the device metered %d messages in %s (%.0f a day) — connection set-up and keep-alive are free (002 L13519), telemetry is metered in 4 KB chunks (002 L13508)\n%s",
			profileText(), share.MessagesPerDay, u.Messages(), idleFor, perDay, traceText(s.Trace(idle)))
	})
})
