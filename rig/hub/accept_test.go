package hub_test

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/hub/hubtest"
	"github.com/hilrun/hilrun/rig/iothub"
)

// TestAcceptTimeBeforeHandshake: the tls entry carries when the listener
// accepted the TCP socket, which is before the handshake finished; a client
// that waits before its ClientHello shows the wait between the two.
func TestAcceptTimeBeforeHandshake(t *testing.T) {
	h := hubtest.Start(t)
	since := h.Trace().LastSeq()
	raw, err := net.DialTimeout("tcp", h.MQTTAddr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	// A slow client: the handshake starts a while after the TCP connect
	// (the situation of a loaded rig, made deterministic).
	const pause = 150 * time.Millisecond
	time.Sleep(pause)
	tc := tls.Client(raw, h.TLSConfig())
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	e := waitEntries(t, h, since, "tls entry", func(e *hub.Entry) bool { return e.Type == hub.EventTLS })[0]
	if e.AcceptTime.IsZero() || e.AcceptMono <= 0 {
		t.Fatalf("tls entry without accept time: %+v", e)
	}
	if got := e.Mono - e.AcceptMono; got < pause {
		t.Errorf("accept %s, handshake done %s: %s apart, want at least the client's pause %s", e.AcceptMono, e.Mono, got, pause)
	}
	if d := e.Time.Sub(e.AcceptTime) - (e.Mono - e.AcceptMono); d < -time.Millisecond || d > time.Millisecond {
		t.Errorf("AcceptTime and AcceptMono disagree by %s", d)
	}
}

// TestAcceptTimeOnConnect: the connection's CONNECT carries the same
// accept time as its tls entry; other packets carry none.
func TestAcceptTimeOnConnect(t *testing.T) {
	h := hubtest.Start(t)
	hd := h.AddSASDevice("accept-dev")
	d := hubtest.Device{Identity: iothub.Identity{DeviceID: hd.DeviceID}, Key: hd.Authentication.SymmetricKey.PrimaryKey}
	since := h.Trace().LastSeq()
	r, ack := h.RawConnect(d)
	defer r.Conn.Close()
	if ack.ReasonCode != 0 {
		t.Fatalf("CONNACK %d", ack.ReasonCode)
	}
	all := h.Trace().Entries(func(e *hub.Entry) bool { return e.Seq > since })
	var tlsE, connE *hub.Entry
	for i := range all {
		switch e := &all[i]; {
		case e.Type == hub.EventTLS:
			tlsE = e
		case e.Type == "CONNECT":
			connE = e
		case !e.AcceptTime.IsZero() || e.AcceptMono != 0:
			t.Errorf("%s entry carries an accept time: %+v", e.Type, e)
		}
	}
	if tlsE == nil || connE == nil {
		t.Fatalf("want a tls entry and a CONNECT, trace %+v", all)
	}
	if connE.ConnID != tlsE.ConnID || !connE.AcceptTime.Equal(tlsE.AcceptTime) || connE.AcceptMono != tlsE.AcceptMono {
		t.Errorf("CONNECT accept %s (conn %d), tls accept %s (conn %d)", connE.AcceptMono, connE.ConnID, tlsE.AcceptMono, tlsE.ConnID)
	}
	if connE.AcceptMono > tlsE.Mono || tlsE.Mono > connE.Mono {
		t.Errorf("want accept %s ≤ handshake %s ≤ CONNECT %s", connE.AcceptMono, tlsE.Mono, connE.Mono)
	}
}
