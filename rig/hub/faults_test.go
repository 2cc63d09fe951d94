package hub_test

import (
	"errors"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/hub/hubtest"
	"github.com/hilrun/hilrun/rig/iothub"
)

// TestFaultKindsOnTheWire checks what each IoT Hub fault kind does on the
// wire (faults.go, faultKinds): how the faulted connection ends (RST or FIN)
// and how a reconnect during the duration is answered (closed after its
// CONNECT without CONNACK, reset so, or refused with a CONNACK code).
func TestFaultKindsOnTheWire(t *testing.T) {
	t.Parallel() // a hub of its own; waits on the hub's timers
	cases := []struct {
		typ string
		rst bool // the faulted connection and the reconnects end with a reset
		// refuse: CONNACK code for a reconnect during the duration; 0: the
		// reconnect is closed after its CONNECT without any CONNACK.
		refuse byte
		req    string
	}{
		{hub.FaultKillTcp, true, 0, "RECON-011"},
		{hub.FaultShutDownMqtt, false, 0, "RECON-011"},
		{hub.FaultInvokeThrottling, false, 3, "RECON-003"},
		{hub.FaultInvokeMaxMessageQuota, false, 3, "RECON-003"},
		{hub.FaultInvokeAuthError, false, 5, "RECON-004"},
	}
	h := hubtest.Start(t, func(c *hub.Config) { c.FaultInjection = true })
	for _, tc := range cases {
		t.Run(tc.typ, func(t *testing.T) {
			t.Parallel() // a device of its own, each waiting out the fault's 1 s delay
			d := sasDevice(h, "fk-"+strings.ToLower(tc.typ))
			r, _ := h.RawConnect(d)
			bag := iothub.PropertyBag{{Name: hub.FaultPropType, Value: tc.typ}, {Name: hub.FaultPropReason, Value: "boom"},
				{Name: hub.FaultPropDelay, Value: "1"}, {Name: hub.FaultPropDuration, Value: "30"}}
			r.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
				TopicName: iothub.TelemetryTopic(d.Identity, bag), PacketID: 7, Payload: []byte("fault")})
			// With a delay the fault message is acknowledged first.
			if ack := r.Expect(packets.Puback, 2*time.Second); ack.PacketID != 7 {
				t.Fatalf("PUBACK for packet %d, want 7", ack.PacketID)
			}
			expectEnd(t, r, tc.rst, "the faulted connection")
			// A reconnect during the duration.
			r2 := h.DialRaw(h.TLSConfig())
			r2.Send(h.ConnectPacket(d))
			if tc.refuse != 0 {
				ack := r2.Expect(packets.Connack, 5*time.Second)
				if ack.ReasonCode != tc.refuse {
					t.Fatalf("reconnect during %s: CONNACK %d, want %d", tc.typ, ack.ReasonCode, tc.refuse)
				}
			} else {
				expectEnd(t, r2, tc.rst, "a reconnect during the fault (no CONNACK)")
			}
			// The trace names the requirement the fault exercises.
			var tagged bool
			for _, e := range h.Trace().Entries(nil) {
				if e.ClientID == d.Identity.ClientID() && e.Type == hub.EventFault && e.Requirement == tc.req {
					tagged = true
				}
			}
			if !tagged {
				t.Fatalf("no fault entry tagged %s\n%s", tc.req, h.TraceSummary(d.Identity.ClientID()))
			}
			h.RefuseConnects(d.Identity, 0, 0) // lifts every connect fault
			if got := connack(t, h, d); got != 0 {
				t.Fatalf("reconnect after the fault was lifted: CONNACK %d", got)
			}
		})
	}
}

// expectEnd reads r until the hub ends the connection and checks how: a
// reset (ECONNRESET) or a clean close (EOF), with no CONNACK on the way.
func expectEnd(t *testing.T, r *hubtest.Raw, rst bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		pk, err := r.Read(time.Until(deadline))
		if err == nil {
			if pk.FixedHeader.Type == packets.Connack {
				t.Fatalf("%s: CONNACK %d, want the connection ended without one", what, pk.ReasonCode)
			}
			continue
		}
		reset := errors.Is(err, syscall.ECONNRESET)
		eof := errors.Is(err, io.EOF)
		switch {
		case rst && reset, !rst && eof:
			return
		case reset || eof:
			t.Fatalf("%s: ended with %v, want reset=%v", what, err, rst)
		default:
			t.Fatalf("%s: %v", what, err)
		}
	}
	t.Fatalf("%s: still open", what)
}
