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
)

// Method behaviours live in the board's NVS and outlast a session, so every
// spec uses method names of its own and none defines the "*" fallback
// (METH-010 and METH-012 need names nobody defined).
var _ = Describe("direct methods", func() {
	Conformance("one SUBSCRIBE filter $iothub/methods/POST/# serves every method", []string{"METH-001"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{NoOpen: true})
		defineMethod(ctx, s, agentproto.MethodBehaviour{Name: "methOneA", Status: 200, Payload: `{"m":"A"}`})
		defineMethod(ctx, s, agentproto.MethodBehaviour{Name: "methOneB", Status: 200, Payload: `{"m":"B"}`})
		Expect(s.Open(ctx)).To(Succeed())
		m := s.Mark()
		must(s.WaitTrace(ctx, s.Start(), "SUBSCRIBE with a methods filter", func(e hub.Entry) bool {
			return e.Dir == hub.DirIn && e.Type == "SUBSCRIBE" && len(methodFilters(e)) > 0
		}))
		expectMethodsWildcardOnly(s, "METH-001")
		for _, name := range []string{"methOneA", "methOneB"} {
			res, err := invokeMethod(ctx, s, hub.MethodRequest{Name: name})
			Expect(err).NotTo(HaveOccurred(), "METH-001: %s over the single subscription: %v\n%s", name, err, traceText(s.Trace(m)))
			Expect(res.Status).To(Equal(200), "%s\n%s", name, traceText(s.Trace(m)))
		}
	})

	Conformance("method name and $rid come from the request topic; empty and JSON bodies are answered", []string{"METH-002"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		defineMethod(ctx, s, agentproto.MethodBehaviour{Name: "echoTopic", Status: 200, Payload: `{"ok":true}`})
		for _, body := range []string{"", `{"x":1,"s":"a/b?c=d&$rid=9"}`} {
			m := s.Mark()
			res, err := invokeMethod(ctx, s, hub.MethodRequest{Name: "echoTopic", Payload: []byte(body)})
			Expect(err).NotTo(HaveOccurred(), "METH-002: request with body %q not answered: %v\n%s", body, err, traceText(s.Trace(m)))
			Expect(res.Status).To(Equal(200), "METH-002: body %q\n%s", body, traceText(s.Trace(m)))
			resp := methodResponse(s, m, res.RID)
			Expect(resp.Topic).To(Equal(iothub.MethodResponseTopic(200, res.RID)), "METH-002\n%s", traceText(s.Trace(m)))
			// The board's read-back: it parsed the name and rid from the topic.
			ev := methodEvent(ctx, s, m, res.RID)
			Expect(ev.Name).To(Equal("echoTopic"), "METH-002: the board read the method name as %q", ev.Name)
			Expect(ev.Size).To(Equal(len(body)), "METH-002: the board read a body of %d bytes, %d were sent", ev.Size, len(body))
		}
	})

	Conformance("the response topic echoes the request's $rid byte for byte", []string{"METH-003"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		defineMethod(ctx, s, agentproto.MethodBehaviour{Name: "ridEcho", Status: 200, Payload: `{}`})
		// Only the rid is judged here: the status segment is METH-004's.
		resTopic := regexp.MustCompile(`^\$iothub/methods/res/[^/]+/\?\$rid=(.*)$`)
		// rids are opaque strings: hex-looking, with a leading zero, and not hex at all.
		for _, rid := range []string{"1", "a", "ff", "0a", "10", "x1"} {
			m := s.Mark()
			_, err := invokeMethod(ctx, s, hub.MethodRequest{Name: "ridEcho", RID: rid})
			var topics, rids []string
			for _, e := range publishes(s.Trace(m), "$iothub/methods/res/") {
				topics = append(topics, e.Topic)
				if g := resTopic.FindStringSubmatch(e.Topic); g != nil {
					rids = append(rids, g[1])
				} else {
					rids = append(rids, "(no $rid in "+e.Topic+")")
				}
			}
			Expect(rids).To(Equal([]string{rid}),
				"METH-003: expected one response on $iothub/methods/res/{status}/?$rid=%s (the request's $rid byte for byte, 002 L14037); response topics seen: %q (invoke: %v)\n%s", rid, topics, err, traceText(s.Trace(m)))
		}
	})

	Conformance("the status the device chooses reaches the caller as a decimal integer", []string{"METH-004"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		digits := regexp.MustCompile(`^\$iothub/methods/res/([0-9]+)/\?`)
		for _, status := range []int{201, 404} {
			name := fmt.Sprintf("status%d", status)
			defineMethod(ctx, s, agentproto.MethodBehaviour{Name: name, Status: status, Payload: `{"s":1}`})
			m := s.Mark()
			res, err := invokeMethod(ctx, s, hub.MethodRequest{Name: name})
			Expect(err).NotTo(HaveOccurred(), "METH-004: %s: %v\n%s", name, err, traceText(s.Trace(m)))
			resp := methodResponse(s, m, res.RID)
			Expect(digits.FindStringSubmatch(resp.Topic)).To(Equal([]string{"$iothub/methods/res/" + fmt.Sprint(status) + "/?", fmt.Sprint(status)}),
				"METH-004: {status} in %q must be the decimal %d\n%s", resp.Topic, status, traceText(s.Trace(m)))
			Expect(res.Status).To(Equal(status), "METH-004: the caller must get the device's status\n%s", traceText(s.Trace(m)))
		}
	})

	Conformance("response bodies are JSON or empty and within 128 KB", []string{"METH-005"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		defineMethod(ctx, s, agentproto.MethodBehaviour{Name: "bodyJSON", Status: 200, Payload: `{"a":[1,2,{"b":"c"}],"t":"x y"}`})
		defineMethod(ctx, s, agentproto.MethodBehaviour{Name: "bodyEmpty", Status: 200})
		for _, name := range []string{"bodyJSON", "bodyEmpty"} {
			m := s.Mark()
			res, err := invokeMethod(ctx, s, hub.MethodRequest{Name: name})
			Expect(err).NotTo(HaveOccurred(), "METH-005: %s: %v\n%s", name, err, traceText(s.Trace(m)))
			resp := methodResponse(s, m, res.RID)
			Expect(resp.PayloadLen).To(BeNumerically("<=", iothub.MaxMethodPayloadBytes), "METH-005: %s body size", name)
			Expect(len(res.Raw) == 0 || json.Valid(res.Raw)).To(BeTrue(),
				"METH-005: %s: the response body must be empty or JSON, got %q\n%s", name, truncateText(string(res.Raw), 200), traceText(s.Trace(m)))
			Expect(warnings(s.Trace(m), "METH-005")).To(BeEmpty(), "METH-005: hub warnings\n%s", traceText(s.Trace(m)))
		}
	})

	Conformance("a response comes before the caller's timeout", []string{"METH-006"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		delay := s.Env.Timing.Quiet
		timeout := 4 * delay
		defineMethod(ctx, s, agentproto.MethodBehaviour{Name: "slowInTime", Status: 200, Payload: `{}`, DelayMS: int(delay / time.Millisecond)})
		m := s.Mark()
		waitMethodsSubscribed(ctx, s)
		res, err := s.Env.Hub.InvokeMethod(ctx, s.ID, hub.MethodRequest{Name: "slowInTime", Timeout: timeout})
		Expect(err).NotTo(HaveOccurred(), "METH-006: a handler taking %s must be answered within the caller's %s timeout: %v\n%s", delay, timeout, err, traceText(s.Trace(m)))
		req := methodRequest(s, m, res.RID)
		resp := methodResponse(s, m, res.RID)
		Expect(resp.Mono-req.Mono).To(BeNumerically("<", timeout), "METH-006: request→response on the wire\n%s", traceText(s.Trace(m)))
		Expect(warnings(s.Trace(m), "METH-006")).To(BeEmpty(), "METH-006\n%s", traceText(s.Trace(m)))
	})

	Conformance("a 128 KB request payload is accepted and answered", []string{"METH-007"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		defineMethod(ctx, s, agentproto.MethodBehaviour{Name: "bigRequest", Status: 200, Payload: `{"ok":true}`})
		body := jsonOfSize(iothub.MaxMethodPayloadBytes)
		m := s.Mark()
		res, err := invokeMethod(ctx, s, hub.MethodRequest{Name: "bigRequest", Payload: body})
		Expect(err).NotTo(HaveOccurred(), "METH-007: a %d-byte request was not answered: %v\n%s", len(body), err, traceText(s.Trace(m)))
		Expect(res.Status).To(Equal(200), "METH-007\n%s", traceText(s.Trace(m)))
		Expect(methodRequest(s, m, res.RID).PayloadLen).To(Equal(len(body)))
		ev := methodEvent(ctx, s, m, res.RID)
		Expect(ev.Size).To(Equal(len(body)), "METH-007: the board read %d of %d request bytes", ev.Size, len(body))
	})

	Conformance("method requests arrive at QoS 0 and get no PUBACK", []string{"METH-008"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		defineMethod(ctx, s, agentproto.MethodBehaviour{Name: "qosZero", Status: 200, Payload: `{}`})
		m := s.Mark()
		res, err := invokeMethod(ctx, s, hub.MethodRequest{Name: "qosZero"})
		Expect(err).NotTo(HaveOccurred(), "METH-008: %v\n%s", err, traceText(s.Trace(m)))
		Expect(methodRequest(s, m, res.RID).QoS).To(BeZero())
		// Nothing the hub sent since m needs acknowledging: watch for
		// Timing.Quiet; this wait is expected to time out.
		qctx, cancel := context.WithTimeout(ctx, s.Env.Timing.Quiet)
		defer cancel()
		if ack, err := s.WaitTrace(qctx, m, "no PUBACK", func(e hub.Entry) bool { return e.Dir == hub.DirIn && e.Type == "PUBACK" }); err == nil {
			Fail(fmt.Sprintf("METH-008: the device sent a PUBACK (packet id %d) although the method request was QoS 0\n%s", ack.PacketID, traceText(s.Trace(m))))
		}
	})

	Conformance("overlapping invocations each get their own rid, status and body", []string{"METH-009"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		slowDelay := 2 * s.Env.Timing.Quiet
		defineMethod(ctx, s, agentproto.MethodBehaviour{Name: "overlapSlow", Status: 201, Payload: `{"who":"slow"}`, DelayMS: int(slowDelay / time.Millisecond)})
		defineMethod(ctx, s, agentproto.MethodBehaviour{Name: "overlapFast", Status: 202, Payload: `{"who":"fast"}`})
		m := s.Mark()
		type outcome struct {
			res hub.MethodResult
			err error
		}
		slow := make(chan outcome, 1)
		go func() {
			r, err := invokeMethod(ctx, s, hub.MethodRequest{Name: "overlapSlow", RID: "slow-" + s.ID.DeviceID})
			slow <- outcome{r, err}
		}()
		must(s.WaitTrace(ctx, m, "the overlapSlow request", func(e hub.Entry) bool {
			return e.Dir == hub.DirOut && strings.HasPrefix(e.Topic, "$iothub/methods/POST/overlapSlow/")
		}))
		// Several fast calls while the slow one is pending: the first may
		// reach the device's handlers together with the slow request, the
		// later ones certainly find it in progress.
		var fast hub.MethodResult
		for i := 0; i < 3; i++ {
			r, ferr := invokeMethod(ctx, s, hub.MethodRequest{Name: "overlapFast", RID: fmt.Sprintf("fast%d-%s", i, s.ID.DeviceID)})
			Expect(ferr).NotTo(HaveOccurred(), "METH-009: overlapFast #%d: %v\n%s", i, ferr, traceText(s.Trace(m)))
			Expect([]any{r.Status, jsonValue(r.Raw)}).To(Equal([]any{202, jsonValue([]byte(`{"who":"fast"}`))}), "METH-009: expected overlapFast #%d to get its own answer 202 {\"who\":\"fast\"}; seen %d %s\n%s", i, r.Status, r.Raw, traceText(s.Trace(m)))
			fast = r
		}
		so := <-slow
		Expect(so.err).NotTo(HaveOccurred(), "METH-009: overlapSlow (called first, answered last): %v\n%s", so.err, traceText(s.Trace(m)))
		Expect([]any{so.res.Status, jsonValue(so.res.Raw)}).To(Equal([]any{201, jsonValue([]byte(`{"who":"slow"}`))}), "METH-009: expected overlapSlow to get its own answer 201 {\"who\":\"slow\"}; seen %d %s\n%s", so.res.Status, so.res.Raw, traceText(s.Trace(m)))
		// The calls did overlap: the last fast request went out before the slow response.
		Expect(methodResponse(s, m, so.res.RID).Seq).To(BeNumerically(">", methodRequest(s, m, fast.RID).Seq),
			"the two invocations did not overlap on the wire\n%s", traceText(s.Trace(m)))
	})

	Conformance("an unknown method gets a prompt error status", []string{"METH-010"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		// One method is defined first, so that every client holds the
		// methods subscription (some subscribe only once the application
		// registers a handler); without it the hub itself answers 404 and
		// the device's handling of an unknown name is never seen.
		defineMethod(ctx, s, agentproto.MethodBehaviour{Name: "hilKnownMethod", Status: 200, Payload: `{}`})
		m := s.Mark()
		res, err := invokeMethod(ctx, s, hub.MethodRequest{Name: "hilNoSuchMethod", Payload: []byte(`{}`)})
		Expect(err).NotTo(HaveOccurred(), "METH-010: an undefined method must be answered with an error status, not left to time out (002 L12486: the caller otherwise waits out its timeout): %v\n%s", err, traceText(s.Trace(m)))
		Expect(res.Status < 200 || res.Status > 299).To(BeTrue(), "METH-010: status %d for an undefined method\n%s", res.Status, traceText(s.Trace(m)))
	})

	Conformance("a failing handler still answers with an error status and a JSON body", []string{"METH-011"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		defineMethod(ctx, s, agentproto.MethodBehaviour{Name: "failingHandler", Fail: true})
		m := s.Mark()
		res, err := invokeMethod(ctx, s, hub.MethodRequest{Name: "failingHandler"})
		Expect(err).NotTo(HaveOccurred(), "METH-011: the failing handler was not answered: %v\n%s", err, traceText(s.Trace(m)))
		Expect(res.Status < 200 || res.Status > 299).To(BeTrue(), "METH-011: expected a status outside 2xx for a failing handler (000 L289-293); seen %d\n%s", res.Status, traceText(s.Trace(m)))
		Expect(len(res.Raw) > 0 && json.Valid(res.Raw)).To(BeTrue(), "METH-011: body %q is not JSON\n%s", string(res.Raw), traceText(s.Trace(m)))
	})

	Conformance("method names are matched case-sensitively", []string{"METH-012"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		defineMethod(ctx, s, agentproto.MethodBehaviour{Name: "Reboot", Status: 200, Payload: `{"handler":"Reboot"}`})
		m := s.Mark()
		res, err := invokeMethod(ctx, s, hub.MethodRequest{Name: "reboot"})
		if err == nil {
			Expect(jsonValue(res.Raw)).NotTo(Equal(jsonValue([]byte(`{"handler":"Reboot"}`))), "METH-012: \"reboot\" ran the handler of \"Reboot\"\n%s", traceText(s.Trace(m)))
			Expect(res.Status).NotTo(Equal(200), "METH-012: \"reboot\" is not defined\n%s", traceText(s.Trace(m)))
		}
		res, err = invokeMethod(ctx, s, hub.MethodRequest{Name: "Reboot"})
		Expect(err).NotTo(HaveOccurred(), "%v\n%s", err, traceText(s.Trace(m)))
		Expect(jsonValue(res.Raw)).To(Equal(jsonValue([]byte(`{"handler":"Reboot"}`))), "METH-012: expected \"Reboot\" to run its own handler ({\"handler\":\"Reboot\"}); seen %s\n%s", res.Raw, traceText(s.Trace(m)))
	})
})

// methodTimeout bounds invocations whose handler answers at once.
func methodTimeout(s *fixtures.Session) time.Duration { return s.Env.Timing.Event / 4 }

func defineMethod(ctx context.Context, s *fixtures.Session, b agentproto.MethodBehaviour) {
	GinkgoHelper()
	Expect(s.Call(ctx, agentproto.OpMethodDefine, b, nil)).To(Succeed(), "method.define %s", b.Name)
}

// invokeMethod calls a method with methodTimeout unless req sets one, and
// with the JSON body {} unless req sets a payload: an empty body is
// METH-002's case (and a client may mishandle it), so the specs about
// something else never depend on it. A non-nil empty payload
// ([]byte("")) sends an empty body.
func invokeMethod(ctx context.Context, s *fixtures.Session, req hub.MethodRequest) (hub.MethodResult, error) {
	if req.Timeout == 0 {
		req.Timeout = methodTimeout(s)
	}
	if req.Payload == nil {
		req.Payload = []byte(`{}`)
	}
	waitMethodsSubscribed(ctx, s)
	return s.Env.Hub.InvokeMethod(ctx, s.ID, req)
}

// waitMethodsSubscribed waits, bounded, until the hub has answered the
// device's SUBSCRIBE to $iothub/methods/POST/# with a SUBACK. A client
// library may confirm method.define before its SUBSCRIBE is acknowledged,
// and an invocation in that window gets IoT Hub's 404; a spec would then
// judge the rig's timing, not its requirement. A device that never
// subscribes is invoked all the same, after the bound, and gets the 404
// its requirement judges (METH-001, METH-010).
func waitMethodsSubscribed(ctx context.Context, s *fixtures.Session) {
	granted := func() bool {
		// The newest connection that subscribed decides: packet ids of its
		// methods SUBSCRIBEs, and whether one of them was answered.
		pending, conn, ok := map[uint16]bool{}, "", false
		for _, e := range s.Trace(s.Start()) {
			switch {
			case e.Dir == hub.DirIn && e.Type == "SUBSCRIBE" && len(methodFilters(e)) > 0:
				if c := fmt.Sprint(e.ConnID); c != conn {
					pending, conn, ok = map[uint16]bool{}, c, false
				}
				pending[e.PacketID] = true
			case e.Dir == hub.DirOut && e.Type == "SUBACK" && fmt.Sprint(e.ConnID) == conn && pending[e.PacketID]:
				ok = true
			}
		}
		return ok
	}
	wctx, cancel := context.WithTimeout(ctx, s.Env.Timing.Event)
	defer cancel()
	_ = s.Env.Hub.Wait(wctx, granted)
}

// methodRequest is the hub's request PUBLISH carrying rid.
func methodRequest(s *fixtures.Session, m fixtures.Marks, rid string) hub.Entry {
	GinkgoHelper()
	for _, e := range packets(s.Trace(m), hub.DirOut, "PUBLISH") {
		if strings.HasPrefix(e.Topic, "$iothub/methods/POST/") && strings.HasSuffix(e.Topic, "/?$rid="+rid) {
			return e
		}
	}
	Fail(fmt.Sprintf("no method request with $rid=%s on the wire\n%s", rid, traceText(s.Trace(m))))
	return hub.Entry{}
}

// methodResponse is the device's response PUBLISH for rid.
func methodResponse(s *fixtures.Session, m fixtures.Marks, rid string) hub.Entry {
	GinkgoHelper()
	for _, e := range publishes(s.Trace(m), "$iothub/methods/res/") {
		if strings.HasSuffix(e.Topic, "/?$rid="+rid) {
			return e
		}
	}
	Fail(fmt.Sprintf("no method response with $rid=%s on the wire\n%s", rid, traceText(s.Trace(m))))
	return hub.Entry{}
}

// methodEvent is the board's method.invoked event for rid.
func methodEvent(ctx context.Context, s *fixtures.Session, m fixtures.Marks, rid string) agentproto.MethodEvent {
	GinkgoHelper()
	var ev agentproto.MethodEvent
	_, err := s.WaitEvent(ctx, m, agentproto.EvMethod, func(e agent.Event) bool {
		var me agentproto.MethodEvent
		if e.Decode(&me) == nil && me.RID == rid {
			ev = me
			return true
		}
		return false
	})
	Expect(err).NotTo(HaveOccurred(), "the board reported no method.invoked for $rid=%s", rid)
	return ev
}

// expectMethodsWildcardOnly requires the session's methods filters to be
// the wildcard $iothub/methods/POST/# only (METH-001: "no per-method
// filters"). Several SUBSCRIBEs of the wildcard are allowed: each one
// replaces the previous subscription (MQTT 3.1.1 §3.8.4).
func expectMethodsWildcardOnly(s *fixtures.Session, req string) {
	GinkgoHelper()
	tr := s.Trace(s.Start())
	var got []string
	for _, e := range packets(tr, hub.DirIn, "SUBSCRIBE") {
		got = append(got, methodFilters(e)...)
	}
	Expect(got).NotTo(BeEmpty(), "%s: expected a SUBSCRIBE to %s; seen none\n%s", req, iothub.MethodsFilter, traceText(tr))
	for _, f := range got {
		Expect(f).To(Equal(iothub.MethodsFilter), "%s: expected only the wildcard %s (002 L12577: no per-method filters); the device subscribed %q\n%s",
			req, iothub.MethodsFilter, got, traceText(tr))
	}
}

// methodFilters returns the $iothub/methods filters of a SUBSCRIBE.
func methodFilters(e hub.Entry) []string {
	var out []string
	for _, f := range e.Filters {
		if strings.HasPrefix(f.Filter, "$iothub/methods/") {
			out = append(out, f.Filter)
		}
	}
	return out
}

// warnings returns the hub's warnings for requirement req.
func warnings(tr []hub.Entry, req string) []hub.Entry {
	var out []hub.Entry
	for _, e := range tr {
		if e.Dir == hub.DirEvent && (e.Type == hub.EventWarning || e.Type == hub.EventViolation) && e.Requirement == req {
			out = append(out, e)
		}
	}
	return out
}

// jsonOfSize returns a JSON object of exactly n bytes (n >= 8).
func jsonOfSize(n int) []byte {
	const head, tail = `{"d":"`, `"}`
	return []byte(head + strings.Repeat("x", n-len(head)-len(tail)) + tail)
}

// jsonValue decodes a JSON body for comparison by value (whitespace and
// member order are the serialiser's business, METH-005 asks for JSON
// only); a body that is not JSON is returned as its text.
func jsonValue(b []byte) any {
	var v any
	if json.Unmarshal(b, &v) != nil {
		return "(not JSON) " + string(b)
	}
	return v
}

func truncateText(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
