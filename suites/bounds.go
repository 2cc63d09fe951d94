package suites

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/rig/agent"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/iothub"
	"github.com/hilrun/hilrun/rig/iothub/twin"
)

// Boundary specs (issue 15): a rule checked on one small example proves
// the example, not the rule. These specs drive identifiers and counters
// past the widths real clients store them in (one decimal digit, 8, 16 and
// 32 bits) and judge the same requirement there as the one-example specs
// in twin.go and methods.go do.
var _ = Describe("boundaries: identifiers and counters", func() {
	// 002 L12092 and L12104: a twin's $version only grows ("guaranteed to
	// be incremental"), by every update; a twin that has lived for years
	// holds versions in the thousands and more. The patches pushed here
	// stand in for that history: each pair crosses one width a client might
	// keep the version in (decimal text, 8, 16, 32 bits).
	Conformance("desired patches whose $version passes 9, 99, 255, 65535 and 2^31 are each applied: versions compare as numbers", []string{"TWIN-009"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		rs := twinResynced(ctx, s, s.Start())
		held := rs.DesiredVersion
		for _, b := range boundsVersions {
			if b <= held {
				continue
			}
			for _, v := range []int64{b, b + 1} {
				ev := boundsPushDesired(ctx, s, v, v)
				Expect(ev.Applied).To(BeTrue(), "TWIN-009: expected the desired patch $version=%d, newer than the held %d, to be applied (002 L14013-14025; versions only grow, L12092, L12104, so they compare as numbers); the device ignored it: %s\n%s",
					v, held, ev.Reason, traceText(s.Trace(s.Start())))
				if ev.Desired != nil {
					Expect(ev.Desired["bound"]).To(BeEquivalentTo(v), "TWIN-009: after the patch $version=%d the device must hold bound=%d (002 L14013-14025); it holds %v", v, v, ev.Desired)
				}
				held = v
			}
		}
	})

	Conformance("past $version 9, 99, 255, 65535 and 2^31 a desired patch older than the held one is still ignored", []string{"TWIN-010"}, func(ctx SpecContext) {
		// The race of the resync flow (002 L12096-12104) at large versions:
		// the older patch of each pair arrives after the newer one.
		s := NewSession(ctx, fixtures.SessionOptions{})
		rs := twinResynced(ctx, s, s.Start())
		held := rs.DesiredVersion
		for _, b := range boundsVersions {
			if b <= held {
				continue
			}
			ev := boundsPushDesired(ctx, s, b+1, b+1)
			if !ev.Applied {
				Fail(fmt.Sprintf("TWIN-010 (TWIN-009 precondition): expected the desired patch $version=%d, newer than the held %d, to be applied before its older sibling arrives (002 L12104 ignores only versions less or equal than the held one); the device ignored it: %s\n%s",
					b+1, held, ev.Reason, traceText(s.Trace(s.Start()))))
			}
			held = b + 1
			ev = boundsPushDesired(ctx, s, b, -b)
			Expect(ev.Applied).To(BeFalse(), "TWIN-010: expected the desired patch $version=%d, older than the held %d, to be ignored (002 L12104: notifications with $version less or equal than the held version; L12092: versions only grow); the device applied it\n%s",
				b, held, traceText(s.Trace(s.Start())))
			if ev.Desired != nil {
				Expect(ev.Desired["bound"]).To(BeEquivalentTo(held), "TWIN-010: after the older patch $version=%d the device must still hold bound=%d (002 L12104); it holds %v", b, held, ev.Desired)
			}
		}
	})

	Conformance("300 reported patches in a row are each paired with the answer on their own $rid, past the 10th, 100th and 256th request", []string{"TWIN-003", "TWIN-008"}, func(ctx SpecContext) {
		// The device chooses its request ids (002 L13936-13938: any valid
		// property value); whatever it chooses, each of its requests is
		// answered on that id (L13967, L13973) and the answer must reach
		// that request. 300 requests pass the widths a client might read
		// an id back into (a digit, 8 bits) and take the hub's reported
		// $version past 255, which each 2xx answer carries (L14007).
		const n = 300
		s := NewSession(ctx, fixtures.SessionOptions{})
		twinResynced(ctx, s, s.Start())
		// A short twin timeout bounds the wait of a request whose answer the
		// device fails to pair.
		short := int(4 * s.Env.Timing.Quiet.Milliseconds())
		must(0, s.Call(ctx, agentproto.OpConfigure, agentproto.Config{Twin: &agentproto.TwinConfig{TimeoutMS: short}}, nil))
		m := s.Mark()
		results := make([]agentproto.ReportResult, n)
		for i := range n {
			res, err := twinReport(ctx, s, map[string]any{"seq": i})
			if err != nil {
				tr := s.Trace(m)
				p, a := boundsPatchAndAnswer(tr, i)
				Fail(fmt.Sprintf("TWIN-003: reported patch #%d (PATCH %s) was answered %s on its own $rid (002 L13967, L13973: responses carry the request's id), yet the device reported %v\n%s",
					i+1, p.Topic, a.Topic, err, traceText(tr)))
			}
			results[i] = res
		}
		tr := s.Trace(m)
		for i, res := range results {
			if res == (agentproto.ReportResult{}) {
				continue // the board's library does not hand on status and $version (see the TWIN-008 spec)
			}
			p, a := boundsPatchAndAnswer(tr, i)
			t, err := iothub.ParseTopic(a.Topic)
			Expect(err).NotTo(HaveOccurred(), "hub precondition: answer %q to PATCH %s", a.Topic, p.Topic)
			Expect(res).To(Equal(agentproto.ReportResult{Status: t.Status, Version: t.Version}),
				"TWIN-008: reported patch #%d (PATCH %s) was answered %s; expected the device to report that answer's status and $version (002 L14007); it reported %+v\n%s",
				i+1, p.Topic, a.Topic, res, traceText(tr))
		}
	})

	Conformance("300 C2D messages in a row are each PUBACKed on their own packet id and completed, past packet id 255", []string{"C2D-003"}, func(ctx SpecContext) {
		// MQTT packet ids are 16 bits (MQTT 3.1.1 §2.3.1); the hub numbers
		// one connection's QoS 1 deliveries, so 300 messages take them past
		// the 8-bit mark. Each is sent after the previous one completed, so
		// the device's queue never holds more than one (C2D-006's limits are
		// not in play).
		const n = 300
		s := NewSession(ctx, fixtures.SessionOptions{})
		maxID := uint16(0)
		for i := range n {
			m := s.Mark()
			mid := sendC2D(s, hub.C2DMessage{Payload: fmt.Appendf(nil, "bounds #%d", i)})
			d := c2dDelivery(ctx, s, m, mid)
			maxID = max(maxID, d.PacketID)
			c2dPuback(ctx, s, m, d, fmt.Sprintf("C2D-003 (message #%d, 002 L13932, L10745: QoS 1 deliveries are acknowledged, which completes them)", i+1))
			c2dCompleted(ctx, s, mid)
		}
		Expect(maxID).To(BeNumerically(">", 255), "hub precondition: 300 deliveries on one connection should pass packet id 255; the largest was %d", maxID)
	})

	Conformance("reported patches in flight together are each paired with the answer on their own $rid, answered in request order and newest first", []string{"TWIN-003", "TWIN-008"}, func(ctx SpecContext) {
		// 002 L13967, L13973: each answer carries its request's id; nothing
		// documents the order or timing of answers, so a device with several
		// requests outstanding pairs them by $rid alone (catalog TWIN-003:
		// overlapping requests answered in reverse order). The hub holds the
		// answers until the requests are all in, then answers them together.
		// A device that sends one twin request at a time (the docs allow it)
		// is judged on what it sent: the hold is lifted after the quiet
		// window and its requests are answered as they come.
		const inFlight = 4
		s := NewSession(ctx, fixtures.SessionOptions{})
		twinResynced(ctx, s, s.Start())
		for round, reverse := range []bool{false, true} {
			m := s.Mark()
			s.Env.Hub.HoldTwinAnswers(s.ID, inFlight, reverse)
			DeferCleanup(func() { s.Env.Hub.HoldTwinAnswers(s.ID, 0, false) })
			type outcome struct {
				res agentproto.ReportResult
				err error
			}
			out := make([]chan outcome, inFlight)
			for i := range inFlight {
				out[i] = make(chan outcome, 1)
				go func() {
					defer GinkgoRecover()
					r, err := twinReport(ctx, s, map[string]any{"seq": 1000*(round+1) + i})
					out[i] <- outcome{r, err}
				}()
			}
			qctx, cancel := context.WithTimeout(ctx, s.Env.Timing.Quiet)
			_ = s.Env.Hub.Wait(qctx, func() bool { return len(publishes(s.Trace(m), twinReportedPrefix)) >= inFlight })
			cancel()
			overlapped := len(publishes(s.Trace(m), twinReportedPrefix)) >= inFlight
			if !overlapped {
				s.Env.Hub.HoldTwinAnswers(s.ID, 0, false) // one at a time: answer as they come
			}
			for i := range inFlight {
				o := <-out[i]
				tr := s.Trace(m)
				p, a := boundsPatchAndAnswer(tr, 1000*(round+1)+i)
				Expect(o.err).NotTo(HaveOccurred(), "TWIN-003: reported patch %s was answered %s on its own $rid while %d patches were in flight (answers newest first: %v; 002 L13967, L13973: answers carry the request's id); the device reported %v\n%s",
					p.Topic, a.Topic, inFlight, reverse, o.err, traceText(tr))
				if o.res == (agentproto.ReportResult{}) {
					continue // the board's library does not hand on status and $version (see the TWIN-008 spec)
				}
				t, err := iothub.ParseTopic(a.Topic)
				Expect(err).NotTo(HaveOccurred(), "hub precondition: answer %q to PATCH %s", a.Topic, p.Topic)
				Expect(o.res).To(Equal(agentproto.ReportResult{Status: t.Status, Version: t.Version}),
					"TWIN-003: reported patch %s was answered %s on its own $rid; expected the device to report that answer's status and $version (002 L13967, L13973, L14007), it reported %+v: another request's answer (%d in flight, newest first: %v)\n%s",
					p.Topic, a.Topic, o.res, inFlight, reverse, traceText(tr))
			}
			if !overlapped {
				GinkgoWriter.Printf("TWIN-003: the board sent its reported patches one at a time; pairing was judged on sequential answers\n")
			}
		}
	})

	Conformance("a method $rid past f, ff, ffff and ffffffff, in hex and in decimal form, is echoed byte for byte", []string{"METH-003"}, func(ctx SpecContext) {
		// 002 L14037: the response's request ID "must match the one in the
		// request message"; the format is not documented (catalog GAP), so
		// the ids here are the ones a hub counter reaches after many calls,
		// hex as IoT Hub's look and decimal, each just before and after a
		// width a client might keep it in.
		s := NewSession(ctx, fixtures.SessionOptions{})
		defineMethod(ctx, s, agentproto.MethodBehaviour{Name: "ridBounds", Status: 200, Payload: `{}`})
		resTopic := regexp.MustCompile(`^\$iothub/methods/res/[^/]+/\?\$rid=(.*)$`)
		rids := []string{"f", "10", "ff", "100", "fff", "1000", "ffff", "10000", "ffffffff", "100000000",
			"9", "99", "255", "256", "65535", "65536", "4294967296"}
		for _, rid := range rids {
			m := s.Mark()
			_, err := invokeMethod(ctx, s, hub.MethodRequest{Name: "ridBounds", RID: rid})
			var topics, got []string
			for _, e := range publishes(s.Trace(m), "$iothub/methods/res/") {
				topics = append(topics, e.Topic)
				if g := resTopic.FindStringSubmatch(e.Topic); g != nil {
					got = append(got, g[1])
				}
			}
			Expect(got).To(Equal([]string{rid}),
				"METH-003: expected one response on $iothub/methods/res/{status}/?$rid=%s (the request's $rid byte for byte, 002 L14037); response topics seen: %q (invoke: %v)\n%s", rid, topics, err, traceText(s.Trace(m)))
		}
	})
})

// Every status the docs list for an operation, not one example of each
// class: 002 L13958-13961 (GET) and L13984-13990 (reported PATCH) give
// "5**  Server errors" as one row, so a client that retries only the codes
// it has met (500, 503) breaks the rule for the others.
var _ = Describe("boundaries: status codes", func() {
	Conformance("every 5xx answer (500, 501, 502, 503, 504, 507) to a twin GET and to a reported patch is retried until the hub accepts it", []string{"TWIN-005"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		twinResynced(ctx, s, s.Start())
		t := s.Env.Timing
		for _, op := range []string{"GET", "PATCH"} {
			for i, status := range []int{500, 501, 502, 503, 504, 507} {
				prefix, body := twinGetPrefix, ""
				m := s.Mark()
				must(0, s.Env.Hub.FailTwinRequests(s.ID, status, 1))
				var err error
				if op == "GET" {
					err = s.Call(ctx, agentproto.OpTwinGet, nil, nil)
				} else {
					prefix = twinReportedPrefix
					patch := map[string]any{"status5xx": status, "case": i}
					b, _ := json.Marshal(patch)
					body = string(b)
					_, err = twinReport(ctx, s, patch)
				}
				first := must(s.WaitTrace(ctx, m, "the twin "+op, twinPublishTo(prefix)))
				ans := must(s.WaitTrace(ctx, m, "the hub's answer to the twin "+op, twinAnswerTo(twinRID(first.Topic))))
				if !strings.HasPrefix(ans.Topic, fmt.Sprintf("%s%d/", twinResPrefix, status)) {
					Fail(fmt.Sprintf("hub precondition: expected the %s to be answered %d; the hub answered %s\n%s", op, status, ans.Topic, traceText(s.Trace(m))))
				}
				// The device may retry after its call returned: the retry comes
				// within the backoff cap.
				wctx, cancel := context.WithTimeout(ctx, t.RetryMax+t.Quiet)
				retry, werr := s.WaitTrace(wctx, m, "", func(e hub.Entry) bool {
					return e.Seq > ans.Seq && twinPublishTo(prefix)(e) && (op == "GET" || string(e.Payload) == body)
				})
				cancel()
				tr := s.Trace(m)
				Expect(werr).NotTo(HaveOccurred(), "TWIN-005: the twin %s was answered %s; every 5xx is a server error to retry later (002 L13958-13961, L13984-13990: \"5** Server errors\"; catalog TWIN-005); the device sent no retry within %s (call: %v)\n%s",
					op, ans.Topic, t.RetryMax+t.Quiet, err, traceText(tr))
				ok := must(s.WaitTrace(ctx, m, "the answer to the retried "+op, twinAnswerTo(twinRID(retry.Topic))))
				Expect(ok.Topic).To(HavePrefix(twinResPrefix+"2"), "hub precondition: the retried %s is accepted\n%s", op, traceText(s.Trace(m)))
				Expect(err).NotTo(HaveOccurred(), "TWIN-005: the twin %s answered %d succeeded on its retry (%s); the device's operation must succeed (002 L13958-13961, L13984-13990)\n%s",
					op, status, ok.Topic, traceText(s.Trace(m)))
			}
		}
	})
})

// One kind of reconnect is not every reconnect: the TWIN-010 specs in
// twin.go reconnect after a drop; this one after the device's own
// reconnect for a SAS token renewal (RECON-006), a path clients implement
// apart from loss recovery.
var _ = Describe("boundaries: kinds of reconnect", func() {
	Conformance("the connection that renews the SAS token runs the twin resync too: a GET, and the desired change made meanwhile taken", []string{"TWIN-010"}, func(ctx SpecContext) {
		// 002 L12096-12098: IoT Hub does not keep desired notifications for
		// a device that is not connected, so "a device that is connecting
		// must retrieve the full desired properties document" (catalog
		// TWIN-010: every (re)connection).
		ttl := tokenLife(4*time.Second, 4*time.Second, 30*time.Second, "a renewal reconnect")
		s := NewSession(ctx, fixtures.SessionOptions{TokenTTL: ttl}, "sas")
		twinResynced(ctx, s, s.Start())
		m0 := s.Mark()
		first := must(s.WaitTrace(ctx, s.Start(), "CONNECT", isConnect))
		se := tokenExpiry(first)
		Expect(se).NotTo(BeZero(), "precondition: the first CONNECT carries a SAS token with se\n%s", traceText(s.Trace(s.Start())))
		wctx, cancel := context.WithDeadline(ctx, se.Add(2*time.Second))
		defer cancel()
		renewed := must(s.WaitTrace(wctx, fixtures.Marks{Trace: first.Seq}, "RECON-006 precondition: a new CONNECT with a fresh token before the first token's se", isConnect))
		// The desired change made while the device switches connections.
		v := must(s.Env.Hub.UpdateDesired(s.ID, twin.Section{"changed": "during renewal"}))
		m := fixtures.Marks{Trace: renewed.Seq}
		ack := must(s.WaitTrace(ctx, m, "CONNACK 0 for the renewal connection", func(e hub.Entry) bool {
			return isConnack(0)(e) && e.ConnID == renewed.ConnID
		}))
		gctx, gcancel := context.WithTimeout(ctx, s.Env.Timing.Event)
		get, err := s.WaitTrace(gctx, m, "", func(e hub.Entry) bool { return e.ConnID == ack.ConnID && twinPublishTo(twinGetPrefix)(e) })
		gcancel()
		tr := s.Trace(fixtures.Marks{Trace: first.Seq})
		Expect(err).NotTo(HaveOccurred(), "TWIN-010: the device reconnected to renew its SAS token (connection %d); expected a twin GET on it (002 L12096-12098: a connecting device retrieves the full desired document; catalog TWIN-010: every (re)connection), seen none within %s\n%s",
			ack.ConnID, s.Env.Timing.Event, traceText(tr))
		must(s.WaitTrace(ctx, m, "the hub's answer to the GET on the renewal connection", twinAnswerTo(twinRID(get.Topic))))
		// The change made meanwhile is held, whether it came by the GET's
		// answer or by a patch on the new connection: the board's events say
		// so, or, for a library that tells the application nothing, the
		// $version it holds.
		held := func(e agent.Event) bool {
			switch e.Name {
			case agentproto.EvResync:
				var rs agentproto.ResyncEvent
				return e.Decode(&rs) == nil && rs.DesiredVersion >= v
			case agentproto.EvDesired:
				var de agentproto.DesiredEvent
				return e.Decode(&de) == nil && de.Applied && de.Version >= v
			}
			return false
		}
		if _, err := s.WaitEvent(ctx, m0, "", held); err == nil {
			return
		}
		var st agentproto.Status
		must(0, s.Call(ctx, agentproto.OpStatus, nil, &st))
		Expect(st.DesiredVer).To(BeNumerically(">=", v), "TWIN-010: after the renewal connection's GET the device must hold desired $version %d (changed while it switched connections, 002 L12096-12098); it reports no twin.resync or twin.desired for it and holds %d\n%s",
			v, st.DesiredVer, traceText(s.Trace(fixtures.Marks{Trace: first.Seq})))
	})
})

// Order of subscription and first use: the first method call of a
// connection can come the moment its SUBACK is out, before anything else
// the device does on connecting has finished.
var _ = Describe("boundaries: first use", func() {
	Conformance("a method invoked right after the methods SUBACK, while the start-up twin GET is still unanswered, is answered in time", []string{"METH-006"}, func(ctx SpecContext) {
		// 002 L12486, L12513: the caller gets the answer within its
		// timeout; nothing ties a method's answer to the twin, and IoT Hub
		// answers a twin GET when it does (no timing is documented). The
		// hub holds its twin answers until the method call is over.
		s := NewSession(ctx, fixtures.SessionOptions{NoOpen: true})
		defineMethod(ctx, s, agentproto.MethodBehaviour{Name: "firstUse", Status: 200, Payload: `{}`})
		s.Env.Hub.HoldTwinAnswers(s.ID, 1000, false)
		DeferCleanup(func() { s.Env.Hub.HoldTwinAnswers(s.ID, 0, false) })
		m := s.Mark()
		opened := make(chan error, 1)
		go func() { opened <- s.Open(ctx) }()
		res, err := invokeMethod(ctx, s, hub.MethodRequest{Name: "firstUse"})
		tr := s.Trace(m)
		gets := publishes(tr, twinGetPrefix)
		s.Env.Hub.HoldTwinAnswers(s.ID, 0, false)
		Expect(err).NotTo(HaveOccurred(), "METH-006: the method called right after the methods SUBACK must be answered within the caller's timeout %s (002 L12486, L12513), also while the device's twin GET (%d sent) is unanswered; invoke: %v\n%s",
			methodTimeout(s), len(gets), err, traceText(tr))
		Expect(res.Status).To(Equal(200), "METH-006: expected the defined status 200 from the first method call; seen %d\n%s", res.Status, traceText(tr))
		Expect(<-opened).To(Succeed(), "client.open, once the twin answers were released")
	})
})

// RECON-004 names both refusals a device cannot retry its way out of
// (catalog evidence: CONNACK 0x04/0x05) and holds for every authentication
// mode; the specs in reconnect.go refuse SAS devices with 5 only.
var _ = Describe("boundaries: refusals and authentication modes", func() {
	Conformance("after CONNACK 4 (bad user name or password) the device stops retrying and says why", []string{"RECON-004"}, func(ctx SpecContext) {
		boundsRefusedAndStopped(ctx, fixtures.SessionOptions{}, 4)
	})

	Conformance("an X.509 device refused with CONNACK 5 (not authorized) stops retrying and says why", []string{"RECON-004"}, func(ctx SpecContext) {
		boundsRefusedAndStopped(ctx, fixtures.SessionOptions{Auth: fixtures.AuthX509Self}, 5, "x509")
	})
})

// boundsRefusedAndStopped drops the session's connection while the hub
// refuses the identity's CONNECTs with return code rc, and judges the
// device's reaction (RECON-004, 002 L16708, L35845: a failure retrying
// cannot fix stops the device, which reports it).
func boundsRefusedAndStopped(ctx SpecContext, o fixtures.SessionOptions, rc byte, capabilities ...string) {
	GinkgoHelper()
	s := NewSession(ctx, o, capabilities...)
	m := s.Mark()
	// The refusal outlasts the quiet watch of expectStoppedAndReported.
	window := max(s.Env.Timing.Quiet, s.Env.Timing.RetryMax)
	s.Env.Hub.RefuseConnects(s.ID, rc, 2*window+s.Env.Timing.Event)
	DeferCleanup(func() { s.Env.Hub.RefuseConnects(s.ID, rc, 0) })
	Expect(s.Env.Hub.Drop(s.ID, false, fmt.Sprintf("RECON-004: the identity is refused with CONNACK %d", rc))).To(Succeed())
	refused := must(s.WaitTrace(ctx, m, fmt.Sprintf("a reconnect refused with CONNACK %d", rc), isConnack(rc)))
	// No further attempt within the watch (one is tolerated: the catalog's
	// "very slow cadence" allows one a minute).
	connectsAfter := func() []hub.Entry {
		var out []hub.Entry
		for _, e := range s.Trace(fixtures.Marks{Trace: refused.Seq}) {
			if isConnect(e) {
				out = append(out, e)
			}
		}
		return out
	}
	qctx, cancel := context.WithTimeout(ctx, window)
	_ = s.Env.Hub.Wait(qctx, func() bool { return len(connectsAfter()) > 1 })
	cancel()
	if again := connectsAfter(); len(again) > 1 {
		Fail(fmt.Sprintf("RECON-004: after CONNACK %d the device tried again %d times within %s (first %s after the refusal); a refusal retrying cannot fix must stop it, or slow it to at most one attempt a minute (002 L16708, L35845; catalog RECON-004: CONNACK 0x04/0x05)\n%s",
			rc, len(again), window, again[0].Time.Sub(refused.Time).Round(time.Millisecond), traceText(s.Trace(m))))
	}
	// ... and says why it went quiet: stopped with a reason, or a backoff
	// of at least a minute.
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
	Expect(reported).To(BeTrue(), "RECON-004: after CONNACK %d the device must report that it stopped and why (002 L16708: the failure is reported, not retried); its status is %+v", rc, st)
}

// Value shapes: one property with a space proves the encoder handles a
// space. These values are the ones encoders get wrong: '+' (a space under
// query-string rules), '?' and '#' (they end a path or query), '%' alone
// and text that already looks percent-encoded, non-ASCII UTF-8, and the
// empty value.
var boundsValueShapes = map[string]string{
	"plus":      "a+b",
	"query":     "x?y#z",
	"pct":       "100%",
	"encoded":   "%41%2Falready%20encoded",
	"unicode":   "grüße €",
	"empty":     "",
	"reserved":  "&=/;,:@!$'()*",
	"k+%41 x/y": "name with reserved characters",
}

var _ = Describe("boundaries: value shapes", func() {
	Conformance("telemetry property values of every shape ('+', '?', '#', a lone '%', already-encoded text, non-ASCII, empty) reach the hub exactly as given", []string{"TEL-002"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		m := s.Mark()
		const payload = `{"shapes":1}`
		err := s.Call(ctx, agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: payload, Properties: boundsValueShapes, Wait: true}, nil)
		Expect(err).NotTo(HaveOccurred(), "TEL-002: the telemetry send with the property values %q failed\n%s", boundsValueShapes, traceText(s.Trace(m)))
		msg := must(s.WaitTelemetry(ctx, m, func(msg hub.Message) bool { return string(msg.Payload) == payload }))
		// The hub decodes the bag with query-string rules (002 L13904-13913:
		// RFC 2396 encoding, "the same encoding as for query strings"), as
		// IoT Hub does; what it read is what the application gave or not.
		got := msg.Properties.Map()
		for k, v := range boundsValueShapes {
			Expect(got).To(HaveKeyWithValue(k, v), "TEL-002: expected the property %q=%q to reach the hub as given (002 L13904-13913: each name and value RFC 2396-encoded, query-string rules); the hub decoded %q from the topic %q",
				k, v, got, msg.Topic)
		}
	})

	Conformance("every status a method handler chooses (2xx, 3xx, 4xx, 5xx, not only 200/201/404) reaches the caller unchanged", []string{"METH-004"}, func(ctx SpecContext) {
		// 002 L14037, L12594: the status is the device's, "the
		// device-supplied status of method execution", passed to the caller
		// (L12552-12557); the catalog warns only outside 200-599.
		s := NewSession(ctx, fixtures.SessionOptions{})
		for _, status := range []int{200, 202, 204, 299, 302, 409, 418, 429, 502, 503, 599} {
			name := fmt.Sprintf("bStatus%d", status)
			defineMethod(ctx, s, agentproto.MethodBehaviour{Name: name, Status: status, Payload: `{}`})
			m := s.Mark()
			res, err := invokeMethod(ctx, s, hub.MethodRequest{Name: name})
			Expect(err).NotTo(HaveOccurred(), "METH-004: %s (handler status %d) was not answered: %v\n%s", name, status, err, traceText(s.Trace(m)))
			Expect(res.Status).To(Equal(status), "METH-004: the handler chose status %d; expected the caller to get it (002 L14037, L12594: the device-supplied status); the response topic carried %d\n%s",
				status, res.Status, traceText(s.Trace(m)))
		}
	})

	Conformance("a method request whose body is any JSON value (array, string, number, true, false, null, nested, non-ASCII) is answered", []string{"METH-002"}, func(ctx SpecContext) {
		// 002 L14035: requests come "with either a valid JSON or an empty
		// body"; the object in the example (L12577-12584) is one JSON value
		// of many.
		s := NewSession(ctx, fixtures.SessionOptions{})
		defineMethod(ctx, s, agentproto.MethodBehaviour{Name: "bodyShapes", Status: 200, Payload: `{}`})
		bodies := []string{`[1,"two",{"three":3}]`, `"just text"`, `42`, `-1.5e3`, `true`, `false`, `null`, `[]`,
			`{"a":{"b":{"c":{"d":{"e":"deep"}}}}}`, `{"text":"grüße € 😀","esc":"\u00e9\n\"q\""}`}
		for _, body := range bodies {
			m := s.Mark()
			res, err := invokeMethod(ctx, s, hub.MethodRequest{Name: "bodyShapes", Payload: []byte(body)})
			Expect(err).NotTo(HaveOccurred(), "METH-002: expected the request with the JSON body %s to be answered (002 L14035: a valid JSON or an empty body); invoke: %v\n%s", body, err, traceText(s.Trace(m)))
			Expect(res.Status).To(Equal(200), "METH-002: the request with the JSON body %s must reach its handler (status 200 defined); answered %d\n%s", body, res.Status, traceText(s.Trace(m)))
		}
	})

	Conformance("C2D property values with '+', '?', '#', '%', already-encoded text and non-ASCII are decoded once, exactly", []string{"C2D-002"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		var bag iothub.PropertyBag
		for _, k := range []string{"plus", "query", "pct", "encoded", "unicode", "reserved", "k+%41 x/y"} {
			bag = append(bag, iothub.Property{Name: k, Value: boundsValueShapes[k]})
		}
		m := s.Mark()
		mid := sendC2D(s, hub.C2DMessage{Payload: []byte(`{"shapes":1}`), Properties: bag})
		d := c2dDelivery(ctx, s, m, mid)
		c2dPuback(ctx, s, m, d, "C2D-002")
		ev := c2dEvent(ctx, s, m, mid)
		for _, p := range bag {
			Expect(ev.Properties).To(HaveKeyWithValue(p.Name, p.Value), "C2D-002: expected the application property %q=%q, percent-decoded once from the topic %q (002 L13930: the property bag is url-encoded); the board read %q\n%s",
				p.Name, p.Value, d.Topic, ev.Properties, traceText(s.Trace(m)))
		}
	})
})

// boundsVersions are the desired $version values the version specs cross
// (each with the next one): one decimal digit, two, 8, 16 and 31 bits.
var boundsVersions = []int64{9, 99, 255, 65535, 1<<31 - 1}

// boundsPushDesired pushes the desired patch {"bound": value} with $version
// v and returns the device's twin.desired event for it.
func boundsPushDesired(ctx context.Context, s *fixtures.Session, v, value int64) agentproto.DesiredEvent {
	GinkgoHelper()
	m := s.Mark()
	body := must(twin.DesiredPatchDocument(twin.Section{"bound": value}, v))
	must(0, s.Env.Hub.PushDesiredRaw(s.ID, v, body))
	return twinDesiredEvent(ctx, s, m, v)
}

// boundsPatchAndAnswer finds reported patch {"seq": i} in tr and the hub's
// answer on its $rid (zero entries when missing).
func boundsPatchAndAnswer(tr []hub.Entry, i int) (patch, answer hub.Entry) {
	for _, e := range tr {
		if !twinPublishTo(twinReportedPrefix)(e) {
			continue
		}
		var body map[string]any
		if json.Unmarshal(e.Payload, &body) != nil || body["seq"] != float64(i) {
			continue
		}
		patch = e
		answer, _ = twinResponse(tr, twinRID(e.Topic))
	}
	return patch, answer
}
