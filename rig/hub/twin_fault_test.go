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
