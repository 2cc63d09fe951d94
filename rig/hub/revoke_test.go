package hub_test

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/hub/hubtest"
)

// closeBound is how long the hub may take to close a connection whose
// identity was disabled or deleted.
const closeBound = 5 * time.Second

// lostClient connects d with paho and returns the client and a channel that
// receives the connection-lost error.
func lostClient(t *testing.T, h *hubtest.Hub, clientID string) (paho.Client, hubtest.Device, <-chan error) {
	t.Helper()
	d := h.AddSASDevice(clientID)
	lost := make(chan error, 1)
	hd := hubtest.Device{Identity: d.Identity(), Key: d.Authentication.SymmetricKey.PrimaryKey,
		OnLost: func(err error) {
			select {
			case lost <- err:
			default:
			}
		}}
	return h.Connect(hd), hd, lost
}

// expectCut waits, within closeBound of since, for paho to see the hub
// close the connection.
func expectCut(t *testing.T, lost <-chan error, since time.Time, what string) time.Duration {
	t.Helper()
	select {
	case <-lost:
		return time.Since(since)
	case <-time.After(closeBound - time.Since(since)):
		t.Fatalf("%s: connection still open %s after the registry change", what, closeBound)
		return 0
	}
}

// expectRevokedClose waits for the hub's conn-closed entry for clientID
// after seq and checks it names RECON-004 and contains reason.
func expectRevokedClose(t *testing.T, h *hubtest.Hub, clientID string, after uint64, reason string) hub.Entry {
	t.Helper()
	e, err := h.WaitEntry(hubtest.Context(t, closeBound), clientID, func(e hub.Entry) bool {
		return e.Seq > after && e.Type == hub.EventConnClosed
	})
	if err != nil {
		t.Fatal(err)
	}
	if e.Requirement != "RECON-004" || !strings.Contains(e.Reason, reason) {
		t.Fatalf("close entry %q [%s], want RECON-004 and %q\n%s", e.Reason, e.Requirement, reason, h.TraceSummary(clientID))
	}
	for _, x := range h.Trace().ForClient(clientID) {
		if x.Seq > after && x.Dir == hub.DirOut && x.Type == "DISCONNECT" {
			t.Fatalf("hub sent DISCONNECT; IoT Hub closes TCP")
		}
	}
	return e
}

// refused runs a raw CONNECT for d and checks the CONNACK code and the
// requirement of the hub's conn-rejected entry.
func refused(t *testing.T, h *hubtest.Hub, d hubtest.Device, code byte, req string) {
	t.Helper()
	since := h.Trace().LastSeq()
	if got := connack(t, h, d); got != code {
		t.Fatalf("CONNACK %d, want %d\n%s", got, code, h.TraceSummary(d.Identity.ClientID()))
	}
	e, err := h.WaitEntry(hubtest.Context(t, closeBound), d.Identity.ClientID(), func(e hub.Entry) bool {
		return e.Seq > since && e.Type == hub.EventConnRejected
	})
	if err != nil {
		t.Fatal(err)
	}
	if e.Requirement != req {
		t.Fatalf("refusal %q [%s], want %s", e.Reason, e.Requirement, req)
	}
}

func TestDisableWhileConnectedClosesConnection(t *testing.T) {
	// 002 L11222: a disabled device "cannot access any device-facing
	// endpoint". The live connection is closed (TCP, no DISCONNECT), the
	// trace says why under RECON-004, and the next CONNECT gets 0x05 not
	// authorized (L8716), with paho as the device.
	h := hubtest.Start(t)
	c, d, lost := lostClient(t, h, "dis-live")
	seq := h.LastTelemetrySeq()
	hubtest.Wait(t, c.Publish("devices/dis-live/messages/events/", 1, false, `{"before":1}`), "publish before disable")
	if _, err := h.WaitTelemetry(hubtest.Context(t, closeBound), d.Identity, seq, nil); err != nil {
		t.Fatal(err)
	}
	after := h.Trace().LastSeq()
	start := time.Now()
	if err := h.Registry().SetStatus(d.Identity, hub.StatusDisabled); err != nil {
		t.Fatal(err)
	}
	if h.Connected(d.Identity) {
		t.Fatal("hub still reports the disabled device connected after SetStatus returned")
	}
	took := expectCut(t, lost, start, "disable")
	expectRevokedClose(t, h, "dis-live", after, "disabled")
	t.Logf("connection closed %s after SetStatus(disabled)", took)

	refused(t, h, d, 5, "RECON-004")
	if _, err := h.Dial(d); err == nil || !strings.Contains(strings.ToLower(err.Error()), "not authorized") {
		t.Fatalf("paho reconnect of a disabled device: %v, want not authorized", err)
	}
	if err := h.Registry().SetStatus(d.Identity, hub.StatusEnabled); err != nil {
		t.Fatal(err)
	}
	h.Connect(d) // enabled again: accepted
}

func TestDisabledTelemetryInFlightNotRecorded(t *testing.T) {
	t.Parallel() // a hub of its own
	// 002 L11222: once the registry call that disabled the device has
	// returned, nothing the device sends is accepted, including PUBLISHes
	// already on the wire or in the hub's read buffer.
	h := hubtest.Start(t)
	c, d, lost := lostClient(t, h, "dis-flood")
	start := h.LastTelemetrySeq()
	stop := make(chan struct{})
	var sent atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 200000; i++ { // bounded; ends at the close long before
			select {
			case <-stop:
				return
			default:
			}
			// QoS 0 without waiting for each write, so that PUBLISHes queue
			// up in the socket and the hub's read buffer: some are in flight
			// when the device is disabled.
			tok := c.Publish("devices/dis-flood/messages/events/", 0, false, fmt.Sprintf(`{"n":%d}`, i))
			sent.Add(1)
			if i%500 == 499 {
				select {
				case <-tok.Done():
				case <-stop:
					return
				}
			}
			if !c.IsConnectionOpen() {
				return
			}
		}
	}()
	var once sync.Once
	halt := func() {
		once.Do(func() {
			close(stop)
			ended := make(chan struct{})
			go func() { wg.Wait(); close(ended) }()
			select {
			case <-ended:
			case <-time.After(2 * closeBound):
				// paho's Publish is bounded by its write timeout; the
				// verdict does not depend on the publisher, so it is
				// left to finish with the client's cleanup.
				t.Logf("publisher still inside paho after %s", 2*closeBound)
			}
		})
	}
	t.Cleanup(halt)
	if _, err := h.WaitTelemetryCount(hubtest.Context(t, closeBound), d.Identity, start, 2000); err != nil {
		t.Fatal(err)
	}
	if err := h.Registry().SetStatus(d.Identity, hub.StatusDisabled); err != nil {
		t.Fatal(err)
	}
	cut := h.LastTelemetrySeq()
	atCut := len(h.Telemetry(d.Identity))
	expectCut(t, lost, time.Now(), "disable during a flood")
	halt()
	expectRevokedClose(t, h, "dis-flood", 0, "disabled")
	for _, m := range h.Telemetry(d.Identity) {
		if m.Seq > cut {
			t.Fatalf("telemetry #%d recorded after the device was disabled (cut at #%d)", m.Seq, cut)
		}
	}
	t.Logf("%d messages recorded before the disable, %d handed to paho in all", atCut, sent.Load())
}

func TestDisableDeviceClosesItsModules(t *testing.T) {
	// Modules have no enabled/disabled flag of their own (002 L11102,
	// L22539); they connect as part of their device, which, disabled,
	// cannot access any device-facing endpoint (L11222). Deleting a module
	// alone ends only the module's connection.
	h := hubtest.Start(t)
	_, dd, devLost := lostClient(t, h, "parent")
	_, md, modLost := lostClient(t, h, "parent/modA")
	_, md2, mod2Lost := lostClient(t, h, "parent/modB")

	after := h.Trace().LastSeq()
	start := time.Now()
	if err := h.Registry().Delete(md2.Identity); err != nil {
		t.Fatal(err)
	}
	expectCut(t, mod2Lost, start, "delete module")
	expectRevokedClose(t, h, "parent/modB", after, "deleted")
	if !h.Connected(dd.Identity) || !h.Connected(md.Identity) {
		t.Fatal("deleting one module ended its device's or a sibling's connection")
	}

	after = h.Trace().LastSeq()
	start = time.Now()
	if err := h.Registry().SetStatus(dd.Identity, hub.StatusDisabled); err != nil {
		t.Fatal(err)
	}
	expectCut(t, devLost, start, "disable device")
	expectCut(t, modLost, start, "disable device (its module)")
	expectRevokedClose(t, h, "parent", after, "disabled")
	expectRevokedClose(t, h, "parent/modA", after, "device parent of module parent/modA disabled")
	refused(t, h, md, 5, "RECON-004")
	if err := h.Registry().SetStatus(dd.Identity, hub.StatusEnabled); err != nil {
		t.Fatal(err)
	}
	h.Connect(md)
}

func TestDeleteWhileConnectedClosesConnection(t *testing.T) {
	// A deleted identity no longer exists: its connection and those of its
	// modules (deleted with it) are closed, and a reconnect is refused as
	// for any unregistered identity.
	h := hubtest.Start(t)
	_, dd, devLost := lostClient(t, h, "doomed")
	_, md, modLost := lostClient(t, h, "doomed/m")
	after := h.Trace().LastSeq()
	start := time.Now()
	if err := h.Registry().Delete(dd.Identity); err != nil {
		t.Fatal(err)
	}
	expectCut(t, devLost, start, "delete device")
	expectCut(t, modLost, start, "delete device (its module)")
	expectRevokedClose(t, h, "doomed", after, "deleted")
	expectRevokedClose(t, h, "doomed/m", after, "deleted")
	refused(t, h, dd, 5, "CONN-005")
	refused(t, h, md, 5, "CONN-005")
}

func TestDisableRacingConnect(t *testing.T) {
	// The identity is disabled while its CONNECT is being decided: either
	// the CONNECT is refused with 0x05, or the connection it opened is
	// closed; the hub never keeps a disabled device connected.
	h := hubtest.Start(t)
	for i := 0; i < 25; i++ {
		id := fmt.Sprintf("racer-%d", i)
		d := h.AddSASDevice(id)
		hd := hubtest.Device{Identity: d.Identity(), Key: d.Authentication.SymmetricKey.PrimaryKey}
		r := h.DialRaw(h.TLSConfig())
		pk := h.ConnectPacket(hd)
		done := make(chan error, 1)
		go func() { done <- h.Registry().SetStatus(hd.Identity, hub.StatusDisabled) }()
		r.Send(pk)
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(closeBound):
			t.Fatalf("SetStatus(disabled) of %s did not return within %s", id, closeBound)
		}
		ack, err := r.Read(closeBound)
		if err == nil && ack.FixedHeader.Type == packets.Connack && ack.ReasonCode == 0 {
			r.ExpectClosed(closeBound)
		}
		ctx := hubtest.Context(t, closeBound)
		if err := h.WaitDisconnected(ctx, hd.Identity); err != nil {
			t.Fatalf("%s disabled but still connected: %v\n%s", id, err, h.TraceSummary(id))
		}
		// Whatever the interleaving, the registry agrees once it settles.
		if err := h.Wait(ctx, func() bool {
			dv, err := h.Registry().Get(hd.Identity)
			return err == nil && dv.ConnectionState == "Disconnected"
		}); err != nil {
			t.Fatalf("%s: registry still says connected: %v\n%s", id, err, h.TraceSummary(id))
		}
	}
}

func TestDisabledDeviceSendsNoWill(t *testing.T) {
	// CONN-021 delivers the Will when a connection is lost without
	// DISCONNECT; a device the hub cut off because it was disabled may not
	// use the telemetry endpoint (002 L11222), and MQTT 3.1.1 §3.1.2.5
	// lists no such case, so its Will is not delivered.
	h := hubtest.Start(t)
	d := h.AddSASDevice("willful")
	hd := hubtest.Device{Identity: d.Identity(), Key: d.Authentication.SymmetricKey.PrimaryKey,
		Will: &hubtest.Will{Topic: "devices/willful/messages/events/", Payload: []byte(`{"will":1}`), QoS: 1}}
	h.Connect(hd)
	after := h.Trace().LastSeq()
	if err := h.Registry().SetStatus(hd.Identity, hub.StatusDisabled); err != nil {
		t.Fatal(err)
	}
	expectRevokedClose(t, h, "willful", after, "disabled")
	for _, m := range h.Telemetry(hd.Identity) {
		if m.Will {
			t.Fatalf("Will delivered for a disabled device: %+v", m)
		}
	}
}
