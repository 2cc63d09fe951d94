package sim

import (
	"net"
	"net/url"
	"testing"
	"time"
)

// clientWith returns a bare deviceClient with the given defects on (enough
// for the helpers of defects_bounds_conn.go, which read only switches).
func clientWith(defects ...string) *deviceClient {
	set := defectSet{}
	for _, d := range defects {
		set[d] = true
	}
	return &deviceClient{fw: &Firmware{defects: set}}
}

func TestSRDeviceIDEncodedTwice(t *testing.T) {
	cases := []struct {
		id      string
		changed bool
	}{
		{"HIL-plain-001", false},
		{"lower-case-id", false},
		{"a.b-c_d@e$f(1)!=%*?,'", true},
		{"pct%41", true},
	}
	on := clientWith(DefSRIDEncodedTwice)
	off := clientWith()
	for _, c := range cases {
		if got := off.srDeviceID(c.id); got != c.id {
			t.Errorf("without the switch %q became %q", c.id, got)
		}
		got := on.srDeviceID(c.id)
		if (got != c.id) != c.changed {
			t.Errorf("with the switch %q became %q; changed=%v, want %v", c.id, got, got != c.id, c.changed)
		}
		// Decoding the sr once must not give the ID back when it changed.
		if dec, err := url.QueryUnescape(url.QueryEscape(got)); err != nil || (dec == c.id) == c.changed {
			t.Errorf("%q: one decode of the twice-encoded sr gives %q (%v)", c.id, dec, err)
		}
	}
}

func TestInboundPingConn(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	dc := clientWith(DefPingSkipOnInbound)
	nc := dc.keepAliveConn(a, connConfig{keepAlive: 2 * time.Second})
	pc, ok := nc.(*inboundPingConn)
	if !ok {
		t.Fatalf("keepAliveConn returned %T, want *inboundPingConn", nc)
	}
	got := make(chan []byte, 4)
	go func() {
		buf := make([]byte, 16)
		for {
			n, err := b.Read(buf)
			if err != nil {
				return
			}
			got <- append([]byte(nil), buf[:n]...)
		}
	}()
	// Nothing read yet: the ping goes out.
	if _, err := pc.Write([]byte{0xC0, 0x00}); err != nil {
		t.Fatal(err)
	}
	if p := <-got; len(p) != 2 || p[0] != 0xC0 {
		t.Fatalf("idle ping: peer read % x", p)
	}
	// Just read something: the ping is swallowed, other packets are not.
	go func() { _, _ = b.Write([]byte{0x30, 0x00}) }()
	if _, err := pc.Read(make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.Write([]byte{0xC0, 0x00}); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.Write([]byte{0xE0, 0x00}); err != nil {
		t.Fatal(err)
	}
	if p := <-got; p[0] != 0xE0 {
		t.Fatalf("after a read the ping must be dropped; peer read % x first", p)
	}
	if clientWith().keepAliveConn(a, connConfig{keepAlive: time.Second}) != a {
		t.Error("without the switch the connection must be returned as is")
	}
}
