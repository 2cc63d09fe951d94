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
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/iothub"
	"github.com/hilrun/hilrun/rig/iothub/twin"
)

// More boundary specs (issue 15) for TWIN, METH, C2D and TEL: the lengths
// and repetitions the specs of bounds.go do not reach.
var _ = Describe("boundaries: lengths and repetitions", func() {
	Conformance("a message ID of the full 128 characters, holding every character TEL-009 allows, reaches the hub as $.mid unchanged", []string{"TEL-009"}, func(ctx SpecContext) {
		// 002 L10241: message-id is "a case-sensitive string (up to 128
		// characters long) of ASCII 7-bit alphanumeric characters" plus
		// - : . + % _ # * ? ! ( ) , = @ ; $ '. The ID here is at the limit
		// and holds each of them; the bag is decoded as IoT Hub does
		// (query-string rules, 002 L13904-13913), so what the hub read is
		// what the application gave, or not.
		const special = "-:.+%_#*?!(),=@;$'"
		mid := "Az09" + special
		for i := 0; len(mid) < 128; i++ {
			mid += string("aB3xY7"[i%6])
		}
		s := NewSession(ctx, fixtures.SessionOptions{})
		m := s.Mark()
		const payload = `{"mid128":1}`
		err := s.Call(ctx, agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: payload, MessageID: mid, Wait: true}, nil)
		Expect(err).NotTo(HaveOccurred(), "TEL-009: the telemetry send with a 128-character message ID failed (002 L10241: up to 128 characters)\n%s", traceText(s.Trace(m)))
		msg := must(s.WaitTelemetry(ctx, m, func(msg hub.Message) bool { return string(msg.Payload) == payload }))
		got, ok := msg.Properties.Get(iothub.PropMessageID)
		Expect(ok).To(BeTrue(), "TEL-009: expected the message ID as $.mid in the property bag (002 L10241; catalog TEL-009 key assumption); the hub decoded %q from the topic %q", msg.Properties.Map(), msg.Topic)
		Expect(got).To(Equal(mid), "TEL-009: expected the message ID of %d characters (the limit, 002 L10241, with every allowed special character %q) to reach the hub as given; the hub decoded %q (%d characters) from the topic %q",
			len(mid), special, got, len(got), msg.Topic)
	})

	Conformance("two calls of the same method in progress together are each answered on their own $rid", []string{"METH-009"}, func(ctx SpecContext) {
		// 002 L14037: the response carries "the request ID ... from the
		// request message"; nothing in the docs serialises calls of one
		// method, so a second call of a method whose first call is still
		// running is a request of its own (catalog METH-009: overlapping
		// invocations). The handler takes a while, so the second request
		// reaches the device while the first is in progress.
		s := NewSession(ctx, fixtures.SessionOptions{})
		delay := 2 * s.Env.Timing.Quiet
		defineMethod(ctx, s, agentproto.MethodBehaviour{Name: "sameTwice", Status: 200, Payload: `{"done":true}`, DelayMS: int(delay / time.Millisecond)})
		m := s.Mark()
		type outcome struct {
			res hub.MethodResult
			err error
		}
		rids := []string{"first-" + s.ID.DeviceID, "second-" + s.ID.DeviceID}
		out := make([]chan outcome, len(rids))
		for i, rid := range rids {
			out[i] = make(chan outcome, 1)
			go func() {
				defer GinkgoRecover()
				r, err := invokeMethod(ctx, s, hub.MethodRequest{Name: "sameTwice", RID: rid, Timeout: delay + methodTimeout(s)})
				out[i] <- outcome{r, err}
			}()
			// The second request goes out once the first is on the wire.
			must(s.WaitTrace(ctx, m, "the sameTwice request $rid="+rid, func(e hub.Entry) bool {
				return e.Dir == hub.DirOut && strings.HasPrefix(e.Topic, "$iothub/methods/POST/sameTwice/") && strings.HasSuffix(e.Topic, "$rid="+rid)
			}))
		}
		for i, rid := range rids {
			o := <-out[i]
			Expect(o.err).NotTo(HaveOccurred(), "METH-009: call #%d of sameTwice ($rid=%s) was not answered on its $rid while the other call of the same method was in progress (002 L14037: the response's request ID is the request's; catalog METH-009); invoke: %v\n%s",
				i+1, rid, o.err, traceText(s.Trace(m)))
			Expect(o.res.Status).To(Equal(200), "METH-009: expected call #%d of sameTwice to get its handler's status 200; seen %d\n%s", i+1, o.res.Status, traceText(s.Trace(m)))
		}
		// The calls did overlap: the second request went out before the first response.
		Expect(methodResponse(s, m, rids[0]).Seq).To(BeNumerically(">", methodRequest(s, m, rids[1]).Seq),
			"precondition: the two calls of sameTwice did not overlap on the wire\n%s", traceText(s.Trace(m)))
	})
})

// Both authentication modes: the topic and subscription rules of
// telemetry, C2D and methods hold for every device (002 L13900-13904,
// L13926-13928, L14035); the area specs run them with the default SAS
// identity only, and a client's X.509 connect path is often a separate one.
var _ = Describe("boundaries: authentication modes", func() {
	Conformance("an X.509 device sends telemetry on its events topic, receives C2D on exactly its devicebound filter and answers methods over the one methods filter", []string{"TEL-001", "C2D-001", "METH-001"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{Auth: fixtures.AuthX509Self, NoOpen: true}, "x509")
		// The method is defined before connecting: some clients subscribe
		// to methods only once the application registers a handler.
		defineMethod(ctx, s, agentproto.MethodBehaviour{Name: "x509Method", Status: 200, Payload: `{"auth":"x509"}`})
		Expect(s.Open(ctx)).To(Succeed(), "client.open of the X.509 device")
		want := iothub.C2DFilter(s.ID.DeviceID)
		sub, err := s.WaitTrace(ctx, s.Start(), "", func(e hub.Entry) bool {
			return e.Dir == hub.DirIn && e.Type == "SUBSCRIBE" && len(c2dFilters(e)) > 0
		})
		Expect(err).NotTo(HaveOccurred(), "C2D-001: expected the X.509 device to SUBSCRIBE to %s (002 L13926-13928: to receive C2D the device subscribes to it); seen none: %v\n%s", want, err, traceText(s.Trace(s.Start())))
		var got []string
		for _, e := range packets(s.Trace(s.Start()), hub.DirIn, "SUBSCRIBE") {
			got = append(got, c2dFilters(e)...)
		}
		for _, f := range got {
			Expect(f).To(Equal(want), "C2D-001: expected only the devicebound filter %q from the X.509 device (002 L13926-13928); it subscribed %q\n%s", want, got, traceText(s.Trace(s.Start())))
		}

		// Telemetry (TEL-001).
		m := s.Mark()
		const payload = `{"auth":"x509"}`
		_ = s.Call(ctx, agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: payload, Properties: map[string]string{"mode": "x509"}, Wait: true}, nil)
		pub := waitTelemetryPublish(ctx, s, m)
		re := regexp.MustCompile(`^devices/` + regexp.QuoteMeta(s.ID.DeviceID) + `/messages/events/[^/]*$`)
		Expect(pub.Topic).To(MatchRegexp(re.String()), "TEL-001: expected the X.509 device's telemetry on devices/{deviceId}/messages/events/{bag} (002 L13900-13904); seen the topic %q\n%s", pub.Topic, traceText(s.Trace(m)))
		must(s.WaitTelemetry(ctx, m, func(msg hub.Message) bool { return string(msg.Payload) == payload }))

		// C2D after the SUBSCRIBE (C2D-001).
		m = s.Mark()
		mid := sendC2D(s, hub.C2DMessage{Payload: []byte("x509 c2d")})
		d := c2dDelivery(ctx, s, m, mid)
		Expect(d.Seq).To(BeNumerically(">", sub.Seq), "C2D-001: expected the delivery after the SUBSCRIBE\n%s", traceText(s.Trace(s.Start())))
		c2dPuback(ctx, s, m, d, "C2D-001 (X.509 device, 002 L13926-13928)")
		c2dEvent(ctx, s, m, mid)

		// Methods over the one wildcard subscription (METH-001).
		expectMethodsWildcardOnly(s, "METH-001")
		m = s.Mark()
		res, err := invokeMethod(ctx, s, hub.MethodRequest{Name: "x509Method"})
		Expect(err).NotTo(HaveOccurred(), "METH-001: expected the X.509 device to answer x509Method over its %s subscription (002 L14035, L12577); invoke: %v\n%s", iothub.MethodsFilter, err, traceText(s.Trace(m)))
		Expect(res.Status).To(Equal(200), "METH-001: expected the handler's status 200 from the X.509 device; seen %d\n%s", res.Status, traceText(s.Trace(m)))
	})
})

// Value shapes of a reported patch: the one-example specs send a flat
// object and delete a top-level member; a merge patch nests (002 L11916,
// L13975: "a JSON document", merged into the reported section, null
// removing a member at any level).
var _ = Describe("boundaries: reported patch shapes", func() {
	Conformance("reported patches with nested members, non-ASCII text and an empty object go out as JSON objects, and null deletes a nested member and a whole object", []string{"TWIN-006", "TWIN-007"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		twinResynced(ctx, s, s.Start())
		const text = "grüße € 😀"
		steps := []struct {
			what  string
			patch map[string]any
			nulls [][]string // member paths that must go out as null (TWIN-007)
			check func(rep map[string]any) string
		}{
			{"nested members", map[string]any{"cfg": map[string]any{"a": 1.0, "b": map[string]any{"c": 2.0, "d": 3.0}}, "keep": true}, nil,
				func(rep map[string]any) string { return boundsAt(rep, "cfg", "b", "c") + boundsAt(rep, "cfg", "a") }},
			{"non-ASCII text", map[string]any{"text": text}, nil,
				func(rep map[string]any) string {
					if rep["text"] != text {
						return fmt.Sprintf("text=%q, want %q; ", rep["text"], text)
					}
					return ""
				}},
			{"an empty object", map[string]any{}, nil, func(map[string]any) string { return "" }},
			{"a nested member deleted", map[string]any{"cfg": map[string]any{"b": map[string]any{"c": nil}}}, [][]string{{"cfg", "b", "c"}},
				func(rep map[string]any) string {
					out := boundsAt(rep, "cfg", "b", "d") + boundsAt(rep, "cfg", "a")
					if boundsAt(rep, "cfg", "b", "c") == "" {
						out += "cfg.b.c still held; "
					}
					return out
				}},
			{"a whole object deleted", map[string]any{"cfg": nil}, [][]string{{"cfg"}},
				func(rep map[string]any) string {
					out := boundsAt(rep, "keep")
					if _, has := rep["cfg"]; has {
						out += "cfg still held; "
					}
					return out
				}},
		}
		for _, st := range steps {
			m := s.Mark()
			_, rerr := twinReport(ctx, s, st.patch)
			p := must(s.WaitTrace(ctx, m, "the reported PATCH with "+st.what, twinPublishTo(twinReportedPrefix)))
			tr := s.Trace(m)
			Expect(p.Topic).To(MatchRegexp(`^\$iothub/twin/PATCH/properties/reported/\?\$rid=[^&]+`), "TWIN-006: expected the patch with %s on $iothub/twin/PATCH/properties/reported/?$rid={rid} (002 L13971-13975); seen %q\n%s", st.what, p.Topic, traceText(tr))
			var body map[string]any
			Expect(json.Unmarshal(p.Payload, &body)).To(Succeed(), "TWIN-006: expected the patch with %s to be a JSON object (002 L13971-13975); the body is %q\n%s", st.what, p.Payload, traceText(tr))
			for _, path := range st.nulls {
				Expect(boundsIsNull(body, path...)).To(BeTrue(), "TWIN-007: expected the patch to carry %s as null (002 L13975, L11986: null removes a member, at any level of the merge patch); the body is %s\n%s",
					strings.Join(path, "."), p.Payload, traceText(tr))
			}
			ans := must(s.WaitTrace(ctx, m, "the hub's answer to the patch with "+st.what, twinAnswerTo(twinRID(p.Topic))))
			Expect(ans.Topic).To(HavePrefix(twinResPrefix+"2"), "hub precondition: the patch with %s (%s) is accepted\n%s", st.what, p.Payload, traceText(s.Trace(m)))
			Expect(rerr).NotTo(HaveOccurred(), "TWIN-006: the patch with %s was answered %s; the device's report must succeed\n%s", st.what, ans.Topic, traceText(s.Trace(m)))
			rep, _ := s.Env.Hub.ReportedOf(s.ID)
			Expect(st.check(rep)).To(BeEmpty(), "TWIN-007: after the patch with %s (%s) the hub's reported section is not the merge expected (002 L11916, L13975); it holds %v", st.what, p.Payload, rep)
		}
	})
})

// boundsAt is "" when the member at path exists in m, else a complaint.
func boundsAt(m map[string]any, path ...string) string {
	var cur any = m
	for _, k := range path {
		obj, ok := cur.(map[string]any)
		if !ok {
			return strings.Join(path, ".") + " missing; "
		}
		if cur, ok = obj[k]; !ok {
			return strings.Join(path, ".") + " missing; "
		}
	}
	return ""
}

// boundsIsNull reports whether the member at path of m is present and null.
func boundsIsNull(m map[string]any, path ...string) bool {
	var cur any = m
	for i, k := range path {
		obj, ok := cur.(map[string]any)
		if !ok {
			return false
		}
		v, has := obj[k]
		if !has {
			return false
		}
		if i == len(path)-1 {
			return v == nil
		}
		cur = v
	}
	return false
}

// Every status the docs list for the operation: the twin GET's table
// (002 L13956-13961) lists 429 as the reported patch's does; the area
// specs throttle only a reported patch.
var _ = Describe("boundaries: status codes of a twin GET", func() {
	Conformance("after a 429 answer to a twin GET the device sends the GET again and it succeeds", []string{"TWIN-005"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		twinResynced(ctx, s, s.Start())
		t := s.Env.Timing
		// A throttled request is retried later (RECON-003's minimum, capped
		// by the board's retry ceiling): wait up to twice that.
		minimum := min(10*time.Second, t.RetryMax)
		m := s.Mark()
		must(0, s.Env.Hub.FailTwinRequests(s.ID, 429, 1))
		err := s.Call(ctx, agentproto.OpTwinGet, nil, nil)
		first := must(s.WaitTrace(ctx, m, "the twin GET", twinPublishTo(twinGetPrefix)))
		ans := must(s.WaitTrace(ctx, m, "the hub's answer to the twin GET", twinAnswerTo(twinRID(first.Topic))))
		Expect(ans.Topic).To(HavePrefix(twinResPrefix+"429/"), "hub precondition: the GET is answered 429\n%s", traceText(s.Trace(m)))
		wctx, cancel := context.WithTimeout(ctx, 2*minimum+t.Quiet)
		retry, werr := s.WaitTrace(wctx, m, "", func(e hub.Entry) bool { return e.Seq > ans.Seq && twinPublishTo(twinGetPrefix)(e) })
		cancel()
		Expect(werr).NotTo(HaveOccurred(), "TWIN-005: the twin GET was answered %s; 429 is throttling, to be retried later (002 L13956-13961: 429 Too many requests; catalog TWIN-005), and the device sent no GET again within %s (twin.get: %v)\n%s",
			ans.Topic, 2*minimum+t.Quiet, err, traceText(s.Trace(m)))
		ok := must(s.WaitTrace(ctx, m, "the answer to the retried GET", twinAnswerTo(twinRID(retry.Topic))))
		Expect(ok.Topic).To(HavePrefix(twinResPrefix+"2"), "hub precondition: the retried GET is answered 2xx\n%s", traceText(s.Trace(m)))
		Expect(err).NotTo(HaveOccurred(), "TWIN-005: the twin GET answered 429 succeeded on its retry (%s); the device's twin.get must succeed (002 L13956-13961)\n%s", ok.Topic, traceText(s.Trace(m)))
	})
})

// Counts: one long property proves one property; a bag is read whole.
var _ = Describe("boundaries: C2D property count", func() {
	Conformance("a C2D message with 40 application properties arrives with every one of them", []string{"C2D-007"}, func(ctx SpecContext) {
		// 002 L13464, L10016: C2D messages up to 64 KB, and the long topics
		// that carry their property bags (catalog C2D-007); 40 properties
		// pass the 8, 16 and 32 entries a client might size its table for.
		const n = 40
		s := NewSession(ctx, fixtures.SessionOptions{})
		var bag iothub.PropertyBag
		for i := range n {
			bag = append(bag, iothub.Property{Name: fmt.Sprintf("p%02d", i), Value: fmt.Sprintf("value %d/%d", i, n)})
		}
		m := s.Mark()
		mid := sendC2D(s, hub.C2DMessage{Payload: []byte(`{"count":40}`), Properties: bag})
		d := c2dDelivery(ctx, s, m, mid)
		c2dPuback(ctx, s, m, d, "C2D-007")
		ev := c2dEvent(ctx, s, m, mid)
		var missing []string
		for _, p := range bag {
			if v, ok := ev.Properties[p.Name]; !ok || v != p.Value {
				missing = append(missing, p.Name)
			}
		}
		Expect(missing).To(BeEmpty(), "C2D-007: expected all %d application properties of the delivery (topic of %d bytes) to reach the board intact (002 L13464, L10016; catalog C2D-007: the long topics that carry property bags); missing or changed: %q; the board read %q\n%s",
			n, len(d.Topic), missing, ev.Properties, traceText(s.Trace(m)))
	})
})

// Versions of a twin that has lived: the GET answer of a fresh twin holds
// small versions; one updated for years holds large ones.
var _ = Describe("boundaries: GET answer versions", func() {
	Conformance("the GET answer of a twin whose desired $version passed 65535 is taken with that version and its properties", []string{"TWIN-004"}, func(ctx SpecContext) {
		// 002 L13940-13954: the GET answer holds desired and reported, each
		// with its $version; versions only grow (L12092), by every update.
		// The service updates the desired section while the device is not
		// connected (nothing is pushed, L12096), past 16 bits.
		s := NewSession(ctx, fixtures.SessionOptions{NoOpen: true})
		var v int64
		for i := 0; v <= 65536+4; i++ {
			v = must(s.Env.Hub.UpdateDesired(s.ID, twin.Section{"n": i}))
		}
		Expect(s.Open(ctx)).To(Succeed(), "client.open")
		m := s.Mark()
		var tw agentproto.TwinResult
		err := s.Call(ctx, agentproto.OpTwinGet, nil, &tw)
		tr := s.Trace(m)
		Expect(err).NotTo(HaveOccurred(), "TWIN-004: expected the device to take the GET answer of a twin at desired $version %d (002 L13940-13954); twin.get: %v\n%s", v, err, traceText(tr))
		get := must(s.WaitTrace(ctx, m, "the twin GET", twinPublishTo(twinGetPrefix)))
		resp := must(s.WaitTrace(ctx, m, "the answer to the GET", twinAnswerTo(twinRID(get.Topic))))
		Expect(resp.Topic).To(HavePrefix(twinResPrefix+"200/"), "hub precondition: the GET is answered 200\n%s", traceText(tr))
		desired, dv, _, rv, perr := twin.ParseDeviceDocument(resp.Payload)
		Expect(perr).NotTo(HaveOccurred(), "hub precondition: the answer is a device twin document")
		Expect(dv).To(BeNumerically(">", 65535), "hub precondition: desired $version past 65535")
		Expect([]int64{tw.DesiredVersion, tw.ReportedVersion}).To(Equal([]int64{dv, rv}), "TWIN-004: expected the device to take desired $version %d and reported $version %d from the GET answer (002 L13940-13954); it took %d and %d\n%s",
			dv, rv, tw.DesiredVersion, tw.ReportedVersion, traceText(s.Trace(m)))
		if tw.Desired != nil {
			Expect(tw.Desired).To(Equal(twinJSON(desired)), "TWIN-004: expected the desired properties of the answer %s; the device holds %v", resp.Payload, tw.Desired)
		}
	})
})

// Counts of twin GETs: the start-up GET and one twin.get are a request id
// or two; a device running for months sends hundreds.
var _ = Describe("boundaries: twin GETs in a row", func() {
	Conformance("300 twin GETs in a row, and the resync GET after a drop, each go to $iothub/twin/GET/?$rid={rid} with an empty payload and are answered", []string{"TWIN-002"}, func(ctx SpecContext) {
		// 002 L13936: the device GETs the twin by publishing an empty
		// message to $iothub/twin/GET/?$rid={request id}. 300 requests take
		// a counting client's id past 9, 15 and 255; the resync GET after a
		// drop is the same request, sent by another part of the client.
		const n = 300
		s := NewSession(ctx, fixtures.SessionOptions{})
		twinResynced(ctx, s, s.Start())
		short := int(4 * s.Env.Timing.Quiet.Milliseconds())
		must(0, s.Call(ctx, agentproto.OpConfigure, agentproto.Config{Twin: &agentproto.TwinConfig{TimeoutMS: short}}, nil))
		shape := regexp.MustCompile(`^\$iothub/twin/GET/\?\$rid=[^&/]+$`)
		judge := func(get hub.Entry, what string, tr []hub.Entry) {
			GinkgoHelper()
			Expect(get.Topic).To(MatchRegexp(shape.String()), "TWIN-002: expected %s on $iothub/twin/GET/?$rid={rid} with a non-empty $rid (002 L13936); seen %q\n%s", what, get.Topic, traceText(tr))
			Expect(get.PayloadLen).To(BeZero(), "TWIN-002: expected %s with an empty payload (002 L13936); seen %d bytes\n%s", what, get.PayloadLen, traceText(tr))
		}
		for i := range n {
			m := s.Mark()
			err := s.Call(ctx, agentproto.OpTwinGet, nil, nil)
			get, gerr := s.WaitTrace(ctx, m, "", func(e hub.Entry) bool {
				return e.Dir == hub.DirIn && e.Type == "PUBLISH" && strings.HasPrefix(e.Topic, "$iothub/twin/GET")
			})
			Expect(gerr).NotTo(HaveOccurred(), "TWIN-002: twin.get #%d sent no GET (002 L13936): %v\n%s", i+1, err, traceText(s.Trace(m)))
			judge(get, fmt.Sprintf("GET #%d", i+1), s.Trace(m))
			Expect(err).NotTo(HaveOccurred(), "TWIN-002: GET #%d (%s) must be answered and twin.get succeed (002 L13936-13940)\n%s", i+1, get.Topic, traceText(s.Trace(m)))
		}
		// The resync GET on the connection after a drop.
		m := s.Mark()
		Expect(s.Env.Hub.Drop(s.ID, false, "TWIN-002: the resync GET after a drop")).To(Succeed())
		ack := must(s.WaitTrace(ctx, m, "CONNACK 0 for the new connection", isConnack(0)))
		get := must(s.WaitTrace(ctx, m, "the resync GET on the new connection", func(e hub.Entry) bool {
			return e.ConnID == ack.ConnID && e.Dir == hub.DirIn && e.Type == "PUBLISH" && strings.HasPrefix(e.Topic, "$iothub/twin/GET")
		}))
		judge(get, "the resync GET after the drop", s.Trace(m))
		must(s.WaitTrace(ctx, m, "the hub's answer to the resync GET", twinAnswerTo(twinRID(get.Topic))))
	})
})
