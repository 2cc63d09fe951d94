package suites

import (
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/iothub"
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
