package hub_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/hub/hubtest"
	"github.com/hilrun/hilrun/rig/iothub"
)

func TestFailTwinRequests(t *testing.T) {
	// TWIN-005: the next n twin requests (GET and reported PATCH alike) are
	// answered with the fault's status, the twin is not changed, and then
	// the hub answers normally again.
	h := hubtest.Start(t)
	d := sasDevice(h, "faulted")
	other := sasDevice(h, "bystander")
	c, res, _ := twinClient(t, h, d)
	oc, ores, _ := twinClient(t, h, other)
	if err := h.FailTwinRequests(d.Identity, 503, 2); err != nil {
		t.Fatal(err)
	}

	hubtest.Wait(t, c.Publish(iothub.TwinReportedTopic("p1"), 0, false, `{"a":1}`), "PATCH")
	m := res.next(t, h, "faulted", "PATCH response")
	if m.Topic() != "$iothub/twin/res/503/?$rid=p1" {
		t.Fatalf("faulted PATCH answered on %q", m.Topic())
	}
	var body struct {
		ErrorCode int    `json:"errorCode"`
		Message   string `json:"message"`
	}
	if err := json.Unmarshal(m.Payload(), &body); err != nil || body.ErrorCode != 503001 {
		t.Fatalf("error body %s: %v", m.Payload(), err)
	}
	if rep, v := h.ReportedOf(d.Identity); len(rep) != 0 || v != 1 {
		t.Fatalf("a refused PATCH changed the twin: v%d %v", v, rep)
	}

	// Another identity is not affected.
	hubtest.Wait(t, oc.Publish(iothub.TwinGetTopic("o1"), 0, false, ""), "bystander GET")
	if m := ores.next(t, h, "bystander", "GET response"); !strings.HasPrefix(m.Topic(), "$iothub/twin/res/200/") {
		t.Fatalf("bystander GET answered on %q", m.Topic())
	}

	hubtest.Wait(t, c.Publish(iothub.TwinGetTopic("g1"), 0, false, ""), "GET")
	if m := res.next(t, h, "faulted", "GET response"); m.Topic() != "$iothub/twin/res/503/?$rid=g1" {
		t.Fatalf("faulted GET answered on %q", m.Topic())
	}
	// The fault is used up: the same patch now goes through.
	hubtest.Wait(t, c.Publish(iothub.TwinReportedTopic("p2"), 0, false, `{"a":1}`), "PATCH again")
	if m := res.next(t, h, "faulted", "PATCH response"); m.Topic() != "$iothub/twin/res/204/?$rid=p2&$version=2" {
		t.Fatalf("PATCH after the fault answered on %q", m.Topic())
	}

	// The trace notes the fault and each faulted answer.
	var faults []string
	for _, e := range h.Trace().ForClient("faulted") {
		if e.Type == hub.EventFault && e.Requirement == "TWIN-005" {
			faults = append(faults, e.Reason)
		}
	}
	if len(faults) != 3 || !strings.Contains(faults[1], "$rid=p1 answered 503") || !strings.Contains(faults[2], "$rid=g1 answered 503") {
		t.Fatalf("fault trace entries %q", faults)
	}
}

func TestFailTwinRequestsArguments(t *testing.T) {
	// TWIN-005: only error statuses; n <= 0 clears a pending fault.
	h := hubtest.Start(t)
	d := sasDevice(h, "cleared")
	for _, status := range []int{200, 204, 399, 600} {
		if err := h.FailTwinRequests(d.Identity, status, 1); err == nil {
			t.Fatalf("status %d accepted", status)
		}
	}
	if err := h.FailTwinRequests(d.Identity, 429, 5); err != nil {
		t.Fatal(err)
	}
	if err := h.FailTwinRequests(d.Identity, 429, 0); err != nil {
		t.Fatal(err)
	}
	c, res, _ := twinClient(t, h, d)
	hubtest.Wait(t, c.Publish(iothub.TwinGetTopic("g"), 0, false, ""), "GET")
	if m := res.next(t, h, "cleared", "GET response"); !strings.HasPrefix(m.Topic(), "$iothub/twin/res/200/") {
		t.Fatalf("GET after clearing the fault answered on %q", m.Topic())
	}
}

func TestHoldTwinAnswers(t *testing.T) {
	// TWIN-003: the next n answers are held until all n are ready, then sent
	// newest first (or in request order); later answers go out at once.
	// The order is read from the hub's trace (the test client may hand
	// messages over out of order).
	h := hubtest.Start(t)
	d := sasDevice(h, "held")
	c, res, _ := twinClient(t, h, d)
	sent := func() []string {
		var out []string
		for _, e := range h.Trace().ForClient("held") {
			if e.Dir == hub.DirOut && e.Type == "PUBLISH" && strings.HasPrefix(e.Topic, "$iothub/twin/res/") {
				_, rid, _ := strings.Cut(e.Topic, "$rid=")
				out = append(out, rid)
			}
		}
		return out
	}
	get := func(rids ...string) {
		for _, rid := range rids {
			hubtest.Wait(t, c.Publish(iothub.TwinGetTopic(rid), 0, false, ""), "GET "+rid)
		}
		for range rids {
			res.next(t, h, "held", "GET response")
		}
	}
	h.HoldTwinAnswers(d.Identity, 3, true)
	get("r1", "r2", "r3")
	h.HoldTwinAnswers(d.Identity, 2, false)
	get("g1", "g2")
	get("after")
	// Disarming releases what is held, in order.
	h.HoldTwinAnswers(d.Identity, 5, false)
	hubtest.Wait(t, c.Publish(iothub.TwinGetTopic("x1"), 0, false, ""), "GET x1")
	if err := h.Wait(t.Context(), func() bool {
		return len(h.Trace().Entries(func(e *hub.Entry) bool { return e.Dir == hub.DirIn && strings.Contains(e.Topic, "rid=x1") })) > 0
	}); err != nil {
		t.Fatal(err)
	}
	h.HoldTwinAnswers(d.Identity, 0, false)
	res.next(t, h, "held", "released GET response")
	want := []string{"r3", "r2", "r1", "g1", "g2", "after", "x1"}
	if got := sent(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("answers sent in the order %q, want %q", got, want)
	}
}
