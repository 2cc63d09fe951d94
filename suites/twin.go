package suites

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/rig/agent"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/iothub"
	"github.com/hilrun/hilrun/rig/iothub/twin"
)

var _ = Describe("device twin", func() {
	Conformance("before its first twin request the device holds SUBACKed twin subscriptions, and its GET has an empty payload", []string{"TWIN-001", "TWIN-002", "TWIN-010"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		twinResynced(ctx, s, s.Start())
		_, _ = twinReport(ctx, s, map[string]any{"fw": "1.0"})
		tr := s.Trace(s.Start())
		reqs := twinRequests(tr)
		Expect(reqs).NotTo(BeEmpty(), "TWIN-010: the device must GET its twin after connecting\n%s", traceText(tr))
		first := reqs[0]
		for _, f := range []string{iothub.TwinResponseFilter, iothub.TwinDesiredFilter} {
			Expect(twinSubackedBefore(tr, first, f)).To(BeTrue(),
				"TWIN-001/TWIN-010: a SUBACK granting %s must precede the first twin request %s\n%s", f, first.Topic, traceText(tr))
		}
		gets := publishes(tr, twinGetPrefix)
		Expect(gets).NotTo(BeEmpty(), "TWIN-010: no twin GET after the connect\n%s", traceText(tr))
		for _, g := range gets {
			rid := twinRID(g.Topic)
			Expect(rid).NotTo(BeEmpty(), "TWIN-002: GET without $rid: %s\n%s", g.Topic, traceText(tr))
			Expect(g.Topic).To(Equal(iothub.TwinGetTopic(rid)), "TWIN-002: GET topic\n%s", traceText(tr))
			Expect(g.PayloadLen).To(BeZero(), "TWIN-002: the GET must have an empty payload, got %q\n%s", g.Payload, traceText(tr))
		}
	})

	Conformance("responses are paired with requests only through $rid", []string{"TWIN-003"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		twinResynced(ctx, s, s.Start())
		// A short twin timeout bounds the wait for the request that is never answered.
		short := int(4 * s.Env.Timing.Quiet.Milliseconds())
		must(0, s.Call(ctx, agentproto.OpConfigure, agentproto.Config{Twin: &agentproto.TwinConfig{TimeoutMS: short}}, nil))
		m := s.Mark()
		// While the hub is silent, a PATCH and a GET go out; their answers are lost.
		s.Env.Hub.SetSilent(s.ID, true)
		DeferCleanup(func() { s.Env.Hub.SetSilent(s.ID, false) })
		type reportOutcome struct {
			res agentproto.ReportResult
			err error
		}
		reported := make(chan reportOutcome, 1)
		go func() {
			defer GinkgoRecover()
			r, err := twinReport(ctx, s, map[string]any{"unanswered": 1})
			reported <- reportOutcome{r, err}
		}()
		patch := must(s.WaitTrace(ctx, m, "the reported PATCH", twinPublishTo(twinReportedPrefix)))
		got := make(chan error, 1)
		go func() { got <- s.Call(ctx, agentproto.OpTwinGet, nil, nil) }()
		// The GET reaches the hub after the PATCH was handled (one
		// connection's packets are processed in order), so the PATCH's
		// answer is lost for sure.
		must(s.WaitTrace(ctx, m, "a twin GET after the PATCH", func(e hub.Entry) bool {
			return twinPublishTo(twinGetPrefix)(e) && e.Seq > patch.Seq
		}))
		s.Env.Hub.SetSilent(s.ID, false)
		var tw agentproto.TwinResult
		err := s.Call(ctx, agentproto.OpTwinGet, nil, &tw)
		r := <-reported
		<-got
		tr := s.Trace(m)
		Expect(err).NotTo(HaveOccurred(), "TWIN-003: a GET answered on its own $rid must succeed while older requests are pending\n%s", traceText(tr))
		rid := twinRID(patch.Topic)
		_, answered := twinResponse(tr, rid)
		Expect(answered).To(BeFalse(), "precondition: the PATCH $rid=%s must not have been answered\n%s", rid, traceText(tr))
		Expect(r.err).To(HaveOccurred(), "TWIN-003: the PATCH $rid=%s was never answered, yet the device reported %+v: it took another request's answer\n%s", rid, r.res, traceText(tr))
		seen := map[string]bool{}
		for _, q := range twinRequests(s.Trace(s.Start())) {
			id := twinRID(q.Topic)
			Expect(seen[id]).To(BeFalse(), "TWIN-003: $rid %q used twice\n%s", id, traceText(tr))
			seen[id] = true
		}
	})

	Conformance("the device takes desired and reported properties and their $version from the GET answer, an empty desired section included", []string{"TWIN-004"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		// A fresh twin: the desired section holds only $version.
		twinGetMatchesWire(ctx, s, map[string]any{})
		must(s.Env.Hub.UpdateDesired(s.ID, twin.Section{"rate": 5, "mode": "eco"}))
		twinGetMatchesWire(ctx, s, map[string]any{"rate": float64(5), "mode": "eco"})
	})

	Conformance("a reported patch is a JSON object on the reported topic and succeeds with the $version of its 2xx answer", []string{"TWIN-006", "TWIN-008"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		twinResynced(ctx, s, s.Start())
		patch := map[string]any{"fw": "1.2.3", "stats": map[string]any{"boots": float64(3)}}
		m := s.Mark()
		res, err := twinReport(ctx, s, patch)
		Expect(err).NotTo(HaveOccurred(), "the reported patch must succeed\n%s", traceText(s.Trace(m)))
		p := must(s.WaitTrace(ctx, m, "the reported PATCH", twinPublishTo(twinReportedPrefix)))
		rid := twinRID(p.Topic)
		Expect(rid).NotTo(BeEmpty(), "TWIN-006: PATCH without $rid\n%s", traceText(s.Trace(m)))
		Expect(p.Topic).To(Equal(iothub.TwinReportedTopic(rid)), "TWIN-006: PATCH topic\n%s", traceText(s.Trace(m)))
		var body map[string]any
		Expect(json.Unmarshal(p.Payload, &body)).To(Succeed(), "TWIN-006: the PATCH body must be a JSON object, got %q", p.Payload)
		Expect(body).To(Equal(patch), "TWIN-006: the PATCH body must be the patch")
		resp := must(s.WaitTrace(ctx, m, "the hub's answer on $rid="+rid, twinAnswerTo(rid)))
		t := must(iothub.ParseTopic(resp.Topic))
		Expect(t.Status/100).To(Equal(2), "precondition: the hub accepts the patch\n%s", traceText(s.Trace(m)))
		_, hubVersion := s.Env.Hub.ReportedOf(s.ID)
		Expect(t.HasVersion && t.Version == hubVersion).To(BeTrue(), "precondition: answer %s carries the hub's reported version %d", resp.Topic, hubVersion)
		Expect(res).To(Equal(agentproto.ReportResult{Status: t.Status, Version: t.Version}),
			"TWIN-008: the device must report the status and $version of the answer on its $rid (%s)\n%s", resp.Topic, traceText(s.Trace(m)))
	})

	Conformance("deleting a reported property sends it as null, and the hub removes it", []string{"TWIN-007"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		twinResynced(ctx, s, s.Start())
		must(twinReport(ctx, s, map[string]any{"a": 1, "b": 2}))
		m := s.Mark()
		_, _ = twinReport(ctx, s, map[string]any{"a": nil})
		p := must(s.WaitTrace(ctx, m, "the reported PATCH deleting a", twinPublishTo(twinReportedPrefix)))
		var body map[string]any
		Expect(json.Unmarshal(p.Payload, &body)).To(Succeed())
		v, has := body["a"]
		Expect(has && v == nil).To(BeTrue(), "TWIN-007: the patch must carry \"a\": null, got %s\n%s", p.Payload, traceText(s.Trace(m)))
		must(s.WaitTrace(ctx, m, "a 2xx answer to the PATCH", func(e hub.Entry) bool {
			return twinAnswerTo(twinRID(p.Topic))(e) && strings.HasPrefix(e.Topic, twinResPrefix+"2")
		}))
		rep, _ := s.Env.Hub.ReportedOf(s.ID)
		Expect(rep).NotTo(HaveKey("a"), "TWIN-007: the hub still holds a")
		Expect(rep).To(HaveKey("b"), "TWIN-007: a merge patch must leave b alone")
	})

	Conformance("a reported patch that would grow the section past 8 KB is refused by the hub with 400 and not resent", []string{"TWIN-005", "TWIN-015"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		twinResynced(ctx, s, s.Start())
		filler := strings.Repeat("x", 500)
		for i := range 3 { // 15 members of ~508 bytes: ~7.6 KB
			p := map[string]any{}
			for j := range 5 {
				p[fmt.Sprintf("f%d%d", i, j)] = filler
			}
			must(twinReport(ctx, s, p))
		}
		m := s.Mark()
		_, err := twinReport(ctx, s, map[string]any{"o1": filler, "o2": filler})
		tr := s.Trace(m)
		p := must(s.WaitTrace(ctx, m, "the oversize reported PATCH", twinPublishTo(twinReportedPrefix)))
		must(s.WaitTrace(ctx, m, "a 400 answer to the PATCH", func(e hub.Entry) bool {
			return twinAnswerTo(twinRID(p.Topic))(e) && strings.HasPrefix(e.Topic, twinResPrefix+"400/")
		}))
		Expect(twinWarnings(s.Trace(m), "TWIN-015")).NotTo(BeEmpty(), "precondition: the hub refuses the overflow\n%s", traceText(tr))
		ae, ok := fixtures.IsDeviceError(err)
		Expect(ok && ae.Code == agentproto.ErrRejected).To(BeTrue(), "TWIN-005: the device must report the 400 as a failure, got %v\n%s", err, traceText(tr))
		// Nothing may follow: watch for Timing.Quiet; this wait is expected to time out.
		qctx, cancel := context.WithTimeout(ctx, s.Env.Timing.Quiet)
		defer cancel()
		again, err := s.WaitTrace(qctx, m, "", func(e hub.Entry) bool {
			return e.Seq > p.Seq && twinPublishTo(twinReportedPrefix)(e) && string(e.Payload) == string(p.Payload)
		})
		Expect(err).To(HaveOccurred(), "TWIN-005: after 400 the identical document was sent again (%s)\n%s", again.Topic, traceText(s.Trace(m)))
	})

	Conformance("desired patches are merged, null members deleted, and their $version tracked", []string{"TWIN-009"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		twinResynced(ctx, s, s.Start())
		m := s.Mark()
		v1 := must(s.Env.Hub.UpdateDesired(s.ID, twin.Section{"rate": 5, "mode": "eco"}))
		twinDesiredEvent(ctx, s, m, v1)
		m = s.Mark()
		v2 := must(s.Env.Hub.UpdateDesired(s.ID, twin.Section{"mode": nil}))
		push := must(s.WaitTrace(ctx, m, "the desired patch deleting mode", func(e hub.Entry) bool {
			return e.Dir == hub.DirOut && e.Type == "PUBLISH" && e.Topic == iothub.TwinDesiredTopic(v2)
		}))
		Expect(string(push.Payload)).To(ContainSubstring(`"mode":null`), "precondition: the patch deletes mode")
		ev := twinDesiredEvent(ctx, s, m, v2)
		Expect(ev.Applied).To(BeTrue(), "TWIN-009: patch $version %d not applied: %s\n%s", v2, ev.Reason, traceText(s.Trace(m)))
		Expect(ev.Desired).To(Equal(map[string]any{"rate": float64(5)}),
			"TWIN-009: after {\"mode\":null} the device must hold only rate\n%s", traceText(s.Trace(m)))
		var st agentproto.Status
		must(0, s.Call(ctx, agentproto.OpStatus, nil, &st))
		Expect(st.DesiredVer).To(Equal(v2), "TWIN-009: the device must track the patch's $version")
	})

	Conformance("a desired patch whose $version is not newer than the held one is ignored", []string{"TWIN-010"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		rs := twinResynced(ctx, s, s.Start())
		m := s.Mark()
		v := must(s.Env.Hub.UpdateDesired(s.ID, twin.Section{"rate": 5}))
		twinDesiredEvent(ctx, s, m, v)
		for _, stale := range []int64{v, rs.DesiredVersion} {
			m = s.Mark()
			body := must(twin.DesiredPatchDocument(twin.Section{"rate": 1}, stale))
			must(0, s.Env.Hub.PushDesiredRaw(s.ID, stale, body))
			must(s.WaitTrace(ctx, m, "the stale desired patch", func(e hub.Entry) bool {
				return e.Dir == hub.DirOut && e.Type == "PUBLISH" && e.Topic == iothub.TwinDesiredTopic(stale)
			}))
			ev := twinDesiredEvent(ctx, s, m, stale)
			Expect(ev.Applied).To(BeFalse(), "TWIN-010: a patch with $version %d ≤ held %d must be ignored\n%s", stale, v, traceText(s.Trace(m)))
		}
	})

	Conformance("after every reconnect the device resubscribes if needed and GETs the twin, taking desired changes made while it was offline", []string{"TWIN-010"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		twinResynced(ctx, s, s.Start())
		m := s.Mark()
		// Keep the device away while desired properties change; the hub
		// does not queue desired patches for offline devices.
		s.Env.Hub.RefuseConnects(s.ID, 3, s.Env.Timing.Quiet)
		must(0, s.Env.Hub.Drop(s.ID, false, "TWIN-010 spec"))
		must(0, s.WaitDisconnected(ctx))
		v := must(s.Env.Hub.UpdateDesired(s.ID, twin.Section{"changed": "offline"}))
		ack := must(s.WaitTrace(ctx, m, "CONNACK 0 for the reconnect", func(e hub.Entry) bool {
			return e.Dir == hub.DirOut && e.Type == "CONNACK" && e.ReturnCode == 0
		}))
		get := must(s.WaitTrace(ctx, m, "a twin GET on the new connection", func(e hub.Entry) bool {
			return e.ConnID == ack.ConnID && twinPublishTo(twinGetPrefix)(e)
		}))
		tr := s.Trace(m)
		if !ack.Session {
			Expect(twinSubackedBefore(tr, get, iothub.TwinDesiredFilter)).To(BeTrue(),
				"TWIN-010: without a session the desired filter must be SUBACKed before the GET\n%s", traceText(tr))
		}
		rs := twinResynced(ctx, s, m)
		Expect(rs.DesiredVersion).To(Equal(v), "TWIN-010: the resync must take the desired version changed while offline\n%s", traceText(tr))
	})

	Conformance("reported keys breaking the key rules are refused locally; a 64-byte key is sent", []string{"TWIN-011"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		twinResynced(ctx, s, s.Start())
		twinRefusedLocally(ctx, s, "TWIN-011",
			map[string]any{"a.b": 1}, map[string]any{"with space": 1}, map[string]any{"comma,key": 1},
			map[string]any{"x$y": 1}, map[string]any{"ctl\u0001": 1}, map[string]any{strings.Repeat("k", 65): 1},
			map[string]any{"ok": map[string]any{"bad.key": 1}})
		twinAcceptedAtLimit(ctx, s, "TWIN-011", map[string]any{strings.Repeat("k", 64): 1, "Mixed-Case_key": true})
	})

	Conformance("reported arrays and integers beyond ±2^52 are refused locally; the extreme integers are sent", []string{"TWIN-012"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		twinResynced(ctx, s, s.Start())
		twinRefusedLocally(ctx, s, "TWIN-012",
			map[string]any{"list": []any{1, 2}}, map[string]any{"big": int64(4503599627370496)},
			map[string]any{"small": int64(-4503599627370497)})
		twinAcceptedAtLimit(ctx, s, "TWIN-012", map[string]any{"max": int64(4503599627370495), "min": int64(-4503599627370496),
			"f": 1.5, "t": true, "s": "x", "o": map[string]any{"n": 1}})
	})

	Conformance("reported objects nested deeper than five levels are refused locally; five levels are sent", []string{"TWIN-013"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		twinResynced(ctx, s, s.Start())
		twinRefusedLocally(ctx, s, "TWIN-013", twinNested(6))
		twinAcceptedAtLimit(ctx, s, "TWIN-013", twinNested(5))
	})

	Conformance("reported strings above 512 bytes are refused locally; 512 bytes are sent", []string{"TWIN-014"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		twinResynced(ctx, s, s.Start())
		twinRefusedLocally(ctx, s, "TWIN-014",
			map[string]any{"s": strings.Repeat("a", 513)}, map[string]any{"u": strings.Repeat("é", 257)})
		twinAcceptedAtLimit(ctx, s, "TWIN-014", map[string]any{"s": strings.Repeat("a", 512), "u": strings.Repeat("é", 256)})
	})

	Conformance("reported patches carry no $-prefixed member", []string{"TWIN-016"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		twinResynced(ctx, s, s.Start())
		m := s.Mark()
		_, _ = twinReport(ctx, s, map[string]any{"fw": "1.0", "cfg": map[string]any{"rate": 5}})
		p := must(s.WaitTrace(ctx, m, "the reported PATCH", twinPublishTo(twinReportedPrefix)))
		Expect(twinDollarKeys(p.Payload)).To(BeEmpty(), "TWIN-016: the PATCH body %s carries hub-managed members\n%s", p.Payload, traceText(s.Trace(m)))
		twinRefusedLocally(ctx, s, "TWIN-016", map[string]any{"$version": 3}, map[string]any{"o": map[string]any{"$metadata": 1}})
	})

	Conformance("hub metadata in a desired patch is not taken as configuration nor echoed back", []string{"TWIN-017"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		rs := twinResynced(ctx, s, s.Start())
		v := rs.DesiredVersion + 1
		body := fmt.Sprintf(`{"rate":7,"cfg":{"mode":"eco","$lastUpdated":"2024-05-01T10:00:00.000Z"},"$version":%d,`+
			`"$metadata":{"$lastUpdated":"2024-05-01T10:00:00.000Z","$lastUpdatedVersion":%d,`+
			`"rate":{"$lastUpdated":"2024-05-01T10:00:00.000Z","$lastUpdatedVersion":%d},`+
			`"cfg":{"$lastUpdated":"2024-05-01T10:00:00.000Z","mode":{"$lastUpdated":"2024-05-01T10:00:00.000Z"}}}}`, v, v, v)
		m := s.Mark()
		must(0, s.Env.Hub.PushDesiredRaw(s.ID, v, []byte(body)))
		ev := twinDesiredEvent(ctx, s, m, v)
		Expect(ev.Applied).To(BeTrue(), "TWIN-017: the patch with $metadata must be applied: %s", ev.Reason)
		Expect(ev.Desired).To(Equal(map[string]any{"rate": float64(7), "cfg": map[string]any{"mode": "eco"}}),
			"TWIN-017: hub metadata must not become configuration\n%s", traceText(s.Trace(m)))
		must(twinReport(ctx, s, map[string]any{"rate": 7}))
		for _, p := range publishes(s.Trace(m), twinReportedPrefix) {
			Expect(twinDollarKeys(p.Payload)).To(BeEmpty(), "TWIN-017: metadata echoed back in %s", p.Payload)
		}
	})

	Conformance("a desired section at 8 KB and depth 5 is processed without fault, pushed and fetched", []string{"TWIN-018"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		twinResynced(ctx, s, s.Start())
		section := twinSectionAtLimit()
		Expect(twin.Size(section)).To(Equal(twin.MaxSectionBytes), "spec bug: section size")
		Expect(twin.Depth(section)).To(Equal(twin.MaxDepth), "spec bug: section depth")
		m := s.Mark()
		v := must(s.Env.Hub.UpdateDesired(s.ID, section))
		ev := twinDesiredEvent(ctx, s, m, v)
		Expect(ev.Applied).To(BeTrue(), "TWIN-018: the 8 KB patch must be applied: %s", ev.Reason)
		m = s.Mark()
		must(0, s.Env.Hub.Drop(s.ID, false, "TWIN-018 spec: resync with the 8 KB section"))
		rs := twinResynced(ctx, s, m)
		Expect(rs.DesiredVersion).To(Equal(v), "TWIN-018: the GET answer with the 8 KB section must be taken\n%s", traceText(s.Trace(m)))
		must(twinReport(ctx, s, map[string]any{"alive": true}))
	})
})

// Twin topic prefixes as the wire trace shows them.
const (
	twinGetPrefix      = "$iothub/twin/GET/"
	twinReportedPrefix = "$iothub/twin/PATCH/properties/reported/"
	twinResPrefix      = "$iothub/twin/res/"
)

// twinReport runs twin.report.
func twinReport(ctx context.Context, s *fixtures.Session, patch map[string]any) (agentproto.ReportResult, error) {
	var r agentproto.ReportResult
	err := s.Call(ctx, agentproto.OpTwinReport, agentproto.ReportArgs{Patch: patch}, &r)
	return r, err
}

// twinResynced waits for the device's twin.resync event after m.
func twinResynced(ctx context.Context, s *fixtures.Session, m fixtures.Marks) agentproto.ResyncEvent {
	GinkgoHelper()
	ev, err := s.WaitEvent(ctx, m, agentproto.EvResync, nil)
	if err != nil {
		Fail(fmt.Sprintf("TWIN-010: the device did not report its twin resync: %v\n%s", err, traceText(s.Trace(m))))
	}
	var rs agentproto.ResyncEvent
	must(0, ev.Decode(&rs))
	return rs
}

// twinDesiredEvent waits for the twin.desired event of a patch version.
func twinDesiredEvent(ctx context.Context, s *fixtures.Session, m fixtures.Marks, version int64) agentproto.DesiredEvent {
	GinkgoHelper()
	var de agentproto.DesiredEvent
	_, err := s.WaitEvent(ctx, m, agentproto.EvDesired, func(e agent.Event) bool {
		return e.Decode(&de) == nil && de.Version == version
	})
	if err != nil {
		Fail(fmt.Sprintf("the device did not process the desired patch $version=%d: %v\n%s", version, err, traceText(s.Trace(m))))
	}
	return de
}

// twinPublishTo matches device PUBLISHes whose topic has prefix.
func twinPublishTo(prefix string) func(hub.Entry) bool {
	return func(e hub.Entry) bool {
		return e.Dir == hub.DirIn && e.Type == "PUBLISH" && strings.HasPrefix(e.Topic, prefix)
	}
}

// twinAnswerTo matches the hub's twin response on rid.
func twinAnswerTo(rid string) func(hub.Entry) bool {
	return func(e hub.Entry) bool {
		return e.Dir == hub.DirOut && e.Type == "PUBLISH" && strings.HasPrefix(e.Topic, twinResPrefix) && twinRID(e.Topic) == rid
	}
}

// twinRequests are the device's twin GETs and reported PATCHes.
func twinRequests(tr []hub.Entry) []hub.Entry {
	var out []hub.Entry
	for _, e := range tr {
		if twinPublishTo(twinGetPrefix)(e) || twinPublishTo(twinReportedPrefix)(e) {
			out = append(out, e)
		}
	}
	return out
}

// twinResponse finds the hub's answer on rid.
func twinResponse(tr []hub.Entry, rid string) (hub.Entry, bool) {
	for _, e := range tr {
		if twinAnswerTo(rid)(e) {
			return e, true
		}
	}
	return hub.Entry{}, false
}

// twinWarnings are the hub's warnings naming req.
func twinWarnings(tr []hub.Entry, req string) []hub.Entry {
	var out []hub.Entry
	for _, e := range tr {
		if e.Dir == hub.DirEvent && e.Type == hub.EventWarning && e.Requirement == req {
			out = append(out, e)
		}
	}
	return out
}

// twinRID is the $rid of a twin topic ("" when it has none).
func twinRID(topic string) string {
	t, err := iothub.ParseTopic(topic)
	if err != nil || !t.HasRID {
		return ""
	}
	return t.RID
}

// twinSubackedBefore reports whether, on req's connection, a SUBSCRIBE
// holding filter was granted by a SUBACK that precedes req.
func twinSubackedBefore(tr []hub.Entry, req hub.Entry, filter string) bool {
	for _, sub := range tr {
		if sub.Dir != hub.DirIn || sub.Type != "SUBSCRIBE" || sub.ConnID != req.ConnID || sub.Seq > req.Seq {
			continue
		}
		for i, f := range sub.Filters {
			if f.Filter != filter {
				continue
			}
			for _, ack := range tr {
				if ack.Dir == hub.DirOut && ack.Type == "SUBACK" && ack.ConnID == req.ConnID && ack.PacketID == sub.PacketID &&
					ack.Seq > sub.Seq && ack.Seq < req.Seq && i < len(ack.Granted) && ack.Granted[i] < 0x80 {
					return true
				}
			}
		}
	}
	return false
}

// twinGetMatchesWire runs twin.get and checks the result against the 200
// answer on the wire (TWIN-004).
func twinGetMatchesWire(ctx context.Context, s *fixtures.Session, wantDesired map[string]any) {
	GinkgoHelper()
	m := s.Mark()
	var tw agentproto.TwinResult
	err := s.Call(ctx, agentproto.OpTwinGet, nil, &tw)
	tr := s.Trace(m)
	Expect(err).NotTo(HaveOccurred(), "TWIN-004: the device must accept the GET answer\n%s", traceText(tr))
	get := must(s.WaitTrace(ctx, m, "the twin GET", twinPublishTo(twinGetPrefix)))
	resp := must(s.WaitTrace(ctx, m, "the answer to the GET", twinAnswerTo(twinRID(get.Topic))))
	Expect(resp.Topic).To(HavePrefix(twinResPrefix+"200/"), "precondition: the hub answers 200")
	desired, dv, reported, rv, perr := twin.ParseDeviceDocument(resp.Payload)
	Expect(perr).NotTo(HaveOccurred(), "precondition: the hub's answer is a device twin document")
	Expect(tw.DesiredVersion).To(Equal(dv), "TWIN-004: desired $version of the answer %s", resp.Payload)
	Expect(tw.ReportedVersion).To(Equal(rv), "TWIN-004: reported $version of the answer %s", resp.Payload)
	Expect(tw.Desired).To(Equal(twinJSON(desired)), "TWIN-004: desired properties of the answer %s", resp.Payload)
	Expect(tw.Reported).To(Equal(twinJSON(reported)), "TWIN-004: reported properties of the answer %s", resp.Payload)
	Expect(tw.Desired).To(Equal(wantDesired), "precondition: the hub's desired properties")
}

// twinRefusedLocally asks for each patch and requires the device to refuse
// it without publishing anything (req names the rule the patch breaks).
func twinRefusedLocally(ctx context.Context, s *fixtures.Session, req string, patches ...map[string]any) {
	GinkgoHelper()
	m := s.Mark()
	for _, p := range patches {
		b, _ := json.Marshal(p)
		_, err := twinReport(ctx, s, p)
		tr := s.Trace(m)
		Expect(twinRequests(tr)).To(BeEmpty(), "%s: the patch %.80s breaks the rule and must not be sent\n%s", req, b, traceText(tr))
		Expect(err).To(HaveOccurred(), "%s: the device must refuse the patch %.80s", req, b)
	}
	// Nothing may reach the hub later either: watch for Timing.Quiet; this
	// wait is expected to time out.
	qctx, cancel := context.WithTimeout(ctx, s.Env.Timing.Quiet)
	defer cancel()
	late, err := s.WaitTrace(qctx, m, "", twinPublishTo(twinReportedPrefix))
	Expect(err).To(HaveOccurred(), "%s: a refused patch was published later: %s %s", req, late.Topic, late.Payload)
}

// twinAcceptedAtLimit requires a patch at the limits to be sent and accepted.
func twinAcceptedAtLimit(ctx context.Context, s *fixtures.Session, req string, patch map[string]any) {
	GinkgoHelper()
	m := s.Mark()
	_, err := twinReport(ctx, s, patch)
	Expect(err).NotTo(HaveOccurred(), "%s: a patch at the limits must be sent and accepted\n%s", req, traceText(s.Trace(m)))
	Expect(publishes(s.Trace(m), twinReportedPrefix)).To(HaveLen(1), "%s: one PATCH on the wire\n%s", req, traceText(s.Trace(m)))
}

// twinNested returns {"l1":{"l2":…{"lN":{"leaf":1}}}}: objects at depth 1..n.
func twinNested(n int) map[string]any {
	inner := map[string]any{"leaf": 1}
	for i := n; i >= 1; i-- {
		inner = map[string]any{fmt.Sprintf("l%d", i): inner}
	}
	return inner
}

// twinSectionAtLimit is a desired section of exactly 8 KB (twin.Size) and
// depth 5: the nested objects of twinNested(5) plus string members.
func twinSectionAtLimit() map[string]any {
	section := twinNested(5)
	for i := 0; ; i++ {
		k := fmt.Sprintf("p%02d", i)
		section[k] = strings.Repeat("d", 500)
		over := twin.Size(section) - twin.MaxSectionBytes
		if over < 0 {
			continue
		}
		if over <= 500 {
			section[k] = strings.Repeat("d", 500-over)
		} else { // less room than an empty member needs: lengthen the previous one
			delete(section, k)
			section[fmt.Sprintf("p%02d", i-1)] = strings.Repeat("d", 500+twin.MaxSectionBytes-twin.Size(section))
		}
		return section
	}
}

// twinDollarKeys lists the $-prefixed member names at any depth of a JSON body.
func twinDollarKeys(body []byte) []string {
	var v any
	if json.Unmarshal(body, &v) != nil {
		return []string{"(body is not JSON)"}
	}
	var out []string
	var walk func(any)
	walk = func(x any) {
		if m, ok := x.(map[string]any); ok {
			for k, e := range m {
				if strings.HasPrefix(k, "$") {
					out = append(out, k)
				}
				walk(e)
			}
		}
	}
	walk(v)
	return out
}

// twinJSON turns a section into what a JSON round trip gives (numbers as float64).
func twinJSON(s twin.Section) map[string]any {
	b, _ := json.Marshal(s)
	out := map[string]any{}
	_ = json.Unmarshal(b, &out)
	return out
}
