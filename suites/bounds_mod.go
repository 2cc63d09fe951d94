package suites

import (
	"context"
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/iothub"
)

// Boundary specs for module identities (issue 15): the MOD rules past the
// one example of modules.go — the other authentication mode (X.509), the
// longest IDs in it, and the property-bag shapes of a module's telemetry.
var _ = Describe("module identities at their boundaries", func() {
	for _, c := range []struct {
		text, module string
		ids          []string
	}{
		{"an X.509 module connects with ClientId {deviceId}/{moduleId} and Username {host}/{deviceId}/{moduleId}/?api-version=…", "x509Mod", []string{"MOD-001", "MOD-002"}},
		{"an X.509 module with mixed-case IDs of 128 characters connects with both IDs unchanged in ClientId and Username", longMixedCaseID(iothub.MaxIDLength), []string{"MOD-001", "MOD-002", "MOD-008"}},
	} {
		Conformance(c.text, c.ids, func(ctx SpecContext) {
			s, m, connect := x509ModuleConnect(ctx, c.module)
			tr := hubSince(s, m)
			// 002 L13834: the client id is {device_id}/{module_id}, whatever
			// the authentication; L13835: the Username form.
			Expect(connect.ClientID).To(Equal(s.ID.ClientID()), "MOD-001: expected ClientId %q ({deviceId}/{moduleId}, 002 L13834) on the X.509 module's CONNECT; seen %q\n%s", s.ID.ClientID(), connect.ClientID, traceText(tr))
			want := fixtures.HubHost + "/" + s.ID.DeviceID + "/" + s.ID.ModuleID + "/?api-version="
			Expect(connect.Username).To(HavePrefix(want), "MOD-002: expected the X.509 module's Username to begin %q (002 L13835); seen %q\n%s", want, connect.Username, traceText(tr))
			u, err := iothub.ParseUsername(connect.Username)
			Expect(err).NotTo(HaveOccurred(), "MOD-002: the Username must parse as {host}/{deviceId}/{moduleId}/?api-version=… (002 L13835): %v\n%s", err, traceText(tr))
			Expect(u.Identity).To(Equal(s.ID), "MOD-002: expected the Username to carry %s byte for byte (002 L13835); seen %s\n%s", s.ID, u.Identity, traceText(tr))
			Expect(u.APIVersion).NotTo(BeEmpty(), "MOD-002: expected an api-version in the Username (002 L13835)\n%s", traceText(tr))
			expectAccepted(ctx, s, m, connect)
		})
	}

	Conformance("a module's telemetry keeps its topic devices/{deviceId}/modules/{moduleId}/messages/events/ with no bag, one property, reserved and non-ASCII values", []string{"MOD-004"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{ModuleID: "BagMod"})
		topic := iothub.TelemetryTopic(s.ID, nil)
		for i, c := range []struct {
			name  string
			props map[string]string
		}{
			{"no bag", nil},
			{"one property", map[string]string{"kind": "plain"}},
			{"reserved characters", map[string]string{"path": "a/b/c", "query": "x&y=z", "space": "two words", "hash": "#1 +2"}},
			{"already-encoded text", map[string]string{"pct": "100%25 done", "enc": "a%2Fb"}},
			{"non-ASCII", map[string]string{"unit": "°C", "label": "Größe ✓"}},
		} {
			m := s.Mark()
			payload := fmt.Sprintf(`{"mod004":%d}`, i)
			_ = s.Call(ctx, agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: payload, Properties: c.props, Wait: true}, nil)
			pub := must(s.WaitTrace(ctx, m, "the module's telemetry PUBLISH ("+c.name+")", func(e hub.Entry) bool {
				return e.Dir == hub.DirIn && e.Type == "PUBLISH" && strings.HasPrefix(e.Topic, "devices/")
			}))
			tr := s.Trace(m)
			Expect(pub.Topic).To(HavePrefix(topic), "MOD-004 (%s): expected module telemetry on %s{property bag} (002 L13836); seen %q\n%s", c.name, topic, pub.Topic, traceText(tr))
			t, err := iothub.ParseTopic(pub.Topic)
			Expect(err).NotTo(HaveOccurred(), "MOD-004 (%s): the topic %q must parse as telemetry with a URL-encoded bag (002 L13836): %v\n%s", c.name, pub.Topic, err, traceText(tr))
			Expect(t.Kind == iothub.TopicTelemetry && t.Identity == s.ID).To(BeTrue(), "MOD-004 (%s): %q is not this module's telemetry topic (002 L13836)\n%s", c.name, pub.Topic, traceText(tr))
			for k, v := range c.props {
				got, ok := t.Properties.Get(k)
				Expect(ok && got == v).To(BeTrue(), "MOD-004 (%s): expected property %s=%q in the module topic's bag, decoded (002 L13836: the topic may carry a property bag); seen %q (present %v) in %q\n%s", c.name, k, v, got, ok, pub.Topic, traceText(tr))
			}
			Expect(s.Violations(m)).To(BeEmpty(), "MOD-004 (%s): the hub closed the module's connection\n%s", c.name, traceText(tr))
			must(s.WaitTelemetry(ctx, m, func(msg hub.Message) bool { return msg.Identity == s.ID && string(msg.Payload) == payload }))
		}
	})

	Conformance("a module's reported patch answered 429, 500 or 503 is sent again on the module's own connection until its module twin holds it", []string{"MOD-005"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{ModuleID: "TwinErrMod"})
		twinResynced(ctx, s, s.Start())
		parent := iothub.Identity{DeviceID: s.ID.DeviceID}
		// The retry may follow the throttled minimum (10 s, capped by the
		// board's retry ceiling) after 429; its timing is TWIN-005's and
		// RECON-003's, not judged here.
		wait := 2*min(10*time.Second, s.Env.Timing.RetryMax) + s.Env.Timing.Quiet
		for i, st := range []int{429, 500, 503} {
			m := s.Mark()
			key := fmt.Sprintf("modErr%d", st)
			must(0, s.Env.Hub.FailTwinRequests(s.ID, st, 1))
			res, err := twinReport(ctx, s, map[string]any{key: fmt.Sprintf("try-%d", i)})
			first := must(s.WaitTrace(ctx, m, "the module's reported PATCH", twinPublishTo(twinReportedPrefix)))
			answer := must(s.WaitTrace(ctx, m, fmt.Sprintf("the %d answer to the PATCH", st), twinAnswerTo(twinRID(first.Topic))))
			Expect(answer.Topic).To(HavePrefix(fmt.Sprintf("%s%d/", twinResPrefix, st)), "precondition: the hub answers %d\n%s", st, traceText(s.Trace(m)))
			wctx, cancel := context.WithTimeout(ctx, wait)
			retry, werr := s.WaitTrace(wctx, m, "", func(e hub.Entry) bool {
				return e.Seq > answer.Seq && twinPublishTo(twinReportedPrefix)(e) && string(e.Payload) == string(first.Payload)
			})
			cancel()
			tr := s.Trace(m)
			Expect(werr).NotTo(HaveOccurred(), "MOD-005 (TWIN-005): expected the module to send its patch %s again after the %d answer (%s), as a device does (002 L13838: the twin topics are identical for modules and devices); not seen within %s (twin.report: %+v, %v)\n%s",
				first.Payload, st, answer.Topic, wait, res, err, traceText(tr))
			Expect(retry.ConnID).To(Equal(first.ConnID), "MOD-005: the retried patch belongs on the module's own connection %d; seen on %d\n%s", first.ConnID, retry.ConnID, traceText(tr))
			ok := must(s.WaitTrace(ctx, m, "the answer to the retried PATCH", twinAnswerTo(twinRID(retry.Topic))))
			Expect(ok.Topic).To(HavePrefix(twinResPrefix+"204/"), "precondition: the hub accepts the retried patch\n%s", traceText(tr))
			rep, _ := s.Env.Hub.ReportedOf(s.ID)
			Expect(rep).To(HaveKeyWithValue(key, fmt.Sprintf("try-%d", i)), "MOD-005: expected the module twin to hold %s after the retried patch was accepted; it holds %v\n%s", key, rep, traceText(tr))
			devRep, _ := s.Env.Hub.ReportedOf(parent)
			Expect(devRep).NotTo(HaveKey(key), "MOD-005: the parent device's twin must not receive the module's patch")
		}
	})
})

// x509ModuleConnect opens a module of a fresh parent device with a
// CA-issued X.509 certificate and returns its first CONNECT. A board that
// cannot authenticate a module with X.509 gets not-applicable.
func x509ModuleConnect(ctx context.Context, module string) (*fixtures.Session, fixtures.Marks, hub.Entry) {
	GinkgoHelper()
	s := NewSession(ctx, fixtures.SessionOptions{Auth: fixtures.AuthX509CA, ModuleID: module, NoOpen: true}, agentproto.CapX509)
	m := s.Mark()
	if err := s.Call(ctx, agentproto.OpOpen, nil, nil); !optional(agentproto.CapModuleX509, "client.open of a module with X.509", err) {
		NotApplicable("the board cannot authenticate a module with an X.509 certificate (" + err.Error() + ")")
	} else {
		must(0, err)
	}
	connect := must(waitHub(ctx, s, m, "the module's first CONNECT", func(e hub.Entry) bool { return e.Dir == hub.DirIn && e.Type == "CONNECT" }))
	return s, m, connect
}
