package hubtest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Raw is a byte-level MQTT 3.1.1 client for tests that must misbehave in
// ways a real client library refuses to (withhold PUBACK, drop TCP without
// DISCONNECT, send garbage). It encodes and decodes with mochi's packets.
type Raw struct {
	Conn net.Conn
	r    *bufio.Reader
	t    testTB
}

type testTB interface {
	Helper()
	Fatalf(string, ...any)
	Cleanup(func())
}

// DialRaw opens a TLS connection to the hub's MQTT port.
func (h *Hub) DialRaw(cfg *tls.Config) *Raw {
	h.t.Helper()
	if cfg == nil {
		cfg = h.TLSConfig()
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", h.MQTTAddr(), cfg)
	if err != nil {
		h.t.Fatalf("dial raw: %v", err)
	}
	r := &Raw{Conn: c, r: bufio.NewReader(c), t: h.t}
	h.t.Cleanup(func() { _ = c.Close() })
	return r
}

// DialRawPlain opens a plaintext TCP connection to the hub's debug MQTT
// listener (Config.PlainMQTTAddr), for tests that connect thousands of
// times and whose subject lies above the transport: it skips the TLS
// handshake, which dominates the cost of a connection under -race.
func (h *Hub) DialRawPlain() *Raw {
	h.t.Helper()
	if h.PlainMQTTAddr() == "" {
		h.t.Fatalf("dial raw plain: the hub has no plaintext listener (set Config.PlainMQTTAddr)")
	}
	c, err := net.DialTimeout("tcp", h.PlainMQTTAddr(), 5*time.Second)
	if err != nil {
		h.t.Fatalf("dial raw plain: %v", err)
	}
	r := &Raw{Conn: c, r: bufio.NewReader(c), t: h.t}
	h.t.Cleanup(func() { _ = c.Close() })
	return r
}

// Send encodes and writes one packet.
func (r *Raw) Send(pk packets.Packet) {
	r.t.Helper()
	pk.ProtocolVersion = 4
	var buf bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		pk.Connect.ProtocolName = []byte("MQTT")
		err = pk.ConnectEncode(&buf)
	case packets.Publish:
		err = pk.PublishEncode(&buf)
	case packets.Puback:
		err = pk.PubackEncode(&buf)
	case packets.Subscribe:
		err = pk.SubscribeEncode(&buf)
	case packets.Pingreq:
		err = pk.PingreqEncode(&buf)
	case packets.Disconnect:
		err = pk.DisconnectEncode(&buf)
	default:
		err = fmt.Errorf("raw client cannot encode packet type %d", pk.FixedHeader.Type)
	}
	if err != nil {
		r.t.Fatalf("encode: %v", err)
	}
	r.Write(buf.Bytes())
}

// Write writes raw bytes.
func (r *Raw) Write(b []byte) {
	r.t.Helper()
	_ = r.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.Conn.Write(b); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// Read reads the next packet within d. It returns io.EOF (or a net error)
// when the hub closed the connection.
func (r *Raw) Read(d time.Duration) (packets.Packet, error) {
	_ = r.Conn.SetReadDeadline(time.Now().Add(d))
	b0, err := r.r.ReadByte()
	if err != nil {
		return packets.Packet{}, err
	}
	n, mul := 0, 1
	for i := 0; ; i++ {
		b, err := r.r.ReadByte()
		if err != nil {
			return packets.Packet{}, err
		}
		n += int(b&127) * mul
		if b&128 == 0 {
			break
		}
		if i == 3 {
			return packets.Packet{}, errors.New("malformed remaining length")
		}
		mul *= 128
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r.r, body); err != nil {
		return packets.Packet{}, err
	}
	var pk packets.Packet
	pk.ProtocolVersion = 4
	if err := pk.FixedHeader.Decode(b0); err != nil {
		return pk, err
	}
	pk.FixedHeader.Remaining = n
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackDecode(body)
	case packets.Publish:
		err = pk.PublishDecode(body)
	case packets.Puback:
		err = pk.PubackDecode(body)
	case packets.Suback:
		err = pk.SubackDecode(body)
	case packets.Pingresp, packets.Disconnect:
	default:
		err = fmt.Errorf("unexpected packet type %d", pk.FixedHeader.Type)
	}
	return pk, err
}

// Expect reads the next packet and fails the test unless it has type typ.
func (r *Raw) Expect(typ byte, d time.Duration) packets.Packet {
	r.t.Helper()
	pk, err := r.Read(d)
	if err != nil {
		r.t.Fatalf("reading packet type %d: %v", typ, err)
	}
	if pk.FixedHeader.Type != typ {
		r.t.Fatalf("got packet type %d, want %d", pk.FixedHeader.Type, typ)
	}
	return pk
}

// ExpectClosed waits up to d for the hub to close the connection, skipping
// any packets that arrive first.
func (r *Raw) ExpectClosed(d time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		_, err := r.Read(time.Until(deadline))
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			break
		}
		return
	}
	r.t.Fatalf("connection still open after %s", d)
}

// ConnectPacket builds a CONNECT for a SAS device of this hub.
func (h *Hub) ConnectPacket(d Device) packets.Packet {
	o := h.ClientOptions(d)
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}}
	pk.Connect.ClientIdentifier = o.ClientID
	pk.Connect.Clean = o.CleanSession
	pk.Connect.Keepalive = uint16(o.KeepAlive)
	pk.Connect.UsernameFlag = true
	pk.Connect.Username = []byte(o.Username)
	if o.Password != "" {
		pk.Connect.PasswordFlag = true
		pk.Connect.Password = []byte(o.Password)
	}
	if d.Will != nil {
		pk.Connect.WillFlag = true
		pk.Connect.WillTopic = d.Will.Topic
		pk.Connect.WillPayload = d.Will.Payload
		pk.Connect.WillQos = d.Will.QoS
	}
	return pk
}

// RawConnect dials, sends CONNECT for d and returns the client and CONNACK.
func (h *Hub) RawConnect(d Device) (*Raw, packets.Packet) {
	h.t.Helper()
	since := h.Trace().LastSeq()
	r := h.DialRaw(h.deviceTLS(d))
	r.Send(h.ConnectPacket(d))
	ack := r.Expect(packets.Connack, 5*time.Second)
	if ack.ReasonCode == 0 {
		h.waitOpened(d.Identity.ClientID(), since)
	}
	return r, ack
}
