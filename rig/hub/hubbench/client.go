package hubbench

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// MQTT 3.1.1 packet types (first byte, upper nibble) the load client uses.
const (
	typeConnect    = 1
	typeConnack    = 2
	typePublish    = 3
	typePuback     = 4
	typeSubscribe  = 8
	typeSuback     = 9
	typePingresp   = 13
	typeDisconnect = 14
)

// maxPacket bounds a packet the load client accepts (IoT Hub's messages
// are at most 256 KB; the slack covers topic and properties).
const maxPacket = 1 << 20

// errClosed is returned by waits on a connection that went away.
var errClosed = errors.New("connection closed")

// client is the load generator's device: a lean MQTT 3.1.1 client over TLS
// that does only what the benchmark needs (CONNECT, QoS 1 PUBLISH with one
// message in flight, SUBSCRIBE, answering direct methods, acknowledging
// C2D). It is deliberately small: one reader goroutine, writes under a
// mutex straight to the TLS connection, no per-message allocation beyond
// the packet buffer it reuses, so that the generator is never what limits
// a broker's throughput.
type client struct {
	id   string // client identifier (the device ID)
	conn net.Conn
	br   *bufio.Reader

	wmu  sync.Mutex
	wbuf []byte
	pid  uint16

	ack    chan uint16 // PUBACK / SUBACK packet ids
	twin   chan string // twin response topics
	closed chan struct{}
	err    error // why the reader stopped; read after closed

	methods, c2d uint64 // counted by the reader only
	statsMu      sync.Mutex
}

// dialClient opens TLS to addr, sends CONNECT and waits for CONNACK 0.
func dialClient(d *net.Dialer, addr string, tc *tls.Config, id, user, pass string, keepAlive uint16, timeout time.Duration) (*client, error) {
	deadline := time.Now().Add(timeout)
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	conn := tls.Client(raw, tc)
	_ = conn.SetDeadline(deadline)
	if err := conn.Handshake(); err != nil {
		_ = raw.Close()
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	c := &client{id: id, conn: conn, br: bufio.NewReaderSize(conn, 2048),
		ack: make(chan uint16, 1), twin: make(chan string, 1), closed: make(chan struct{})}
	if _, err := conn.Write(connectPacket(id, user, pass, keepAlive)); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("write CONNECT: %w", err)
	}
	typ, body, err := readPacket(c.br)
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("waiting for CONNACK: %w", err)
	}
	if typ>>4 != typeConnack || len(body) != 2 {
		_ = conn.Close()
		return nil, fmt.Errorf("expected CONNACK, got packet type %d", typ>>4)
	}
	if body[1] != 0 {
		_ = conn.Close()
		return nil, fmt.Errorf("CONNACK return code %d", body[1])
	}
	_ = conn.SetDeadline(time.Time{})
	go c.readLoop()
	return c, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func appendRemaining(b []byte, n int) []byte {
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

func connectPacket(id, user, pass string, keepAlive uint16) []byte {
	var v []byte
	v = appendString(v, "MQTT")
	flags := byte(0x02) // clean session
	if user != "" {
		flags |= 0x80
	}
	if pass != "" {
		flags |= 0x40
	}
	v = append(v, 4, flags)
	v = binary.BigEndian.AppendUint16(v, keepAlive)
	v = appendString(v, id)
	if user != "" {
		v = appendString(v, user)
	}
	if pass != "" {
		v = appendString(v, pass)
	}
	out := appendRemaining([]byte{typeConnect << 4}, len(v))
	return append(out, v...)
}

// readPacket reads one packet: its first byte and its body.
func readPacket(br *bufio.Reader) (byte, []byte, error) {
	first, err := br.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mult := 0, 1
	for i := 0; ; i++ {
		b, err := br.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n += int(b&0x7f) * mult
		if b&0x80 == 0 {
			break
		}
		if i == 3 {
			return 0, nil, errors.New("malformed remaining length")
		}
		mult *= 128
	}
	if n > maxPacket {
		return 0, nil, fmt.Errorf("packet of %d bytes is larger than any the benchmark expects", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		return 0, nil, err
	}
	return first, body, nil
}

// parsePublish splits a PUBLISH body into topic, packet id (QoS > 0) and payload.
func parsePublish(first byte, body []byte) (topic string, pid uint16, payload []byte, err error) {
	if len(body) < 2 {
		return "", 0, nil, errors.New("short PUBLISH")
	}
	tl := int(binary.BigEndian.Uint16(body))
	if len(body) < 2+tl {
		return "", 0, nil, errors.New("short PUBLISH topic")
	}
	topic = string(body[2 : 2+tl])
	rest := body[2+tl:]
	if (first>>1)&3 > 0 {
		if len(rest) < 2 {
			return "", 0, nil, errors.New("short PUBLISH packet id")
		}
		pid = binary.BigEndian.Uint16(rest)
		rest = rest[2:]
	}
	return topic, pid, rest, nil
}

func (c *client) readLoop() {
	defer close(c.closed)
	for {
		first, body, err := readPacket(c.br)
		if err != nil {
			c.err = err
			return
		}
		switch first >> 4 {
		case typePuback, typeSuback:
			if len(body) >= 2 {
				select {
				case c.ack <- binary.BigEndian.Uint16(body):
				default: // nobody waits: an ack for a message given up on
				}
			}
		case typePublish:
			topic, pid, _, err := parsePublish(first, body)
			if err != nil {
				c.err = err
				_ = c.conn.Close()
				return
			}
			if pid != 0 {
				_ = c.write(func(b []byte) []byte { return append(b, typePuback<<4, 2, byte(pid>>8), byte(pid)) })
			}
			switch {
			case strings.HasPrefix(topic, "$iothub/methods/POST/"):
				c.statsMu.Lock()
				c.methods++
				c.statsMu.Unlock()
				if i := strings.Index(topic, "$rid="); i >= 0 {
					rid := topic[i+len("$rid="):]
					if j := strings.IndexByte(rid, '&'); j >= 0 {
						rid = rid[:j]
					}
					_ = c.publish("$iothub/methods/res/200/?$rid="+rid, 0, []byte(`{"ok":true}`))
				}
			case strings.HasPrefix(topic, "$iothub/twin/res/"):
				select {
				case c.twin <- topic:
				default:
				}
			case strings.HasPrefix(topic, "devices/"):
				c.statsMu.Lock()
				c.c2d++
				c.statsMu.Unlock()
			}
		case typePingresp:
		}
	}
}

// write builds a packet into the client's buffer and writes it.
func (c *client) write(build func([]byte) []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = build(c.wbuf[:0])
	_, err := c.conn.Write(c.wbuf)
	return err
}

// nextID is the next packet id, never 0. Called with wmu held.
func (c *client) nextID() uint16 {
	c.pid++
	if c.pid == 0 {
		c.pid = 1
	}
	return c.pid
}

// publish sends a PUBLISH at QoS 0 or 1 and returns its packet id (0 for QoS 0).
func (c *client) publish(topic string, qos byte, payload []byte) error {
	_, err := c.publishID(topic, qos, payload)
	return err
}

func (c *client) publishID(topic string, qos byte, payload []byte) (uint16, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var pid uint16
	n := 2 + len(topic) + len(payload)
	if qos > 0 {
		pid = c.nextID()
		n += 2
	}
	b := appendRemaining(append(c.wbuf[:0], typePublish<<4|qos<<1), n)
	b = appendString(b, topic)
	if qos > 0 {
		b = binary.BigEndian.AppendUint16(b, pid)
	}
	b = append(b, payload...)
	c.wbuf = b
	_, err := c.conn.Write(b)
	return pid, err
}

// publishAck sends a QoS 1 PUBLISH and waits for its PUBACK.
func (c *client) publishAck(topic string, payload []byte, timeout time.Duration) error {
	pid, err := c.publishID(topic, 1, payload)
	if err != nil {
		return err
	}
	return c.waitAck(pid, timeout)
}

func (c *client) waitAck(pid uint16, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case got := <-c.ack:
			if got == pid {
				return nil
			}
		case <-c.closed:
			return fmt.Errorf("%w: %v", errClosed, c.err)
		case <-t.C:
			return fmt.Errorf("no acknowledgement for packet %d within %s", pid, timeout)
		}
	}
}

// subscribe sends one SUBSCRIBE with the filters at QoS 1 and waits for the SUBACK.
func (c *client) subscribe(filters []string, timeout time.Duration) error {
	c.wmu.Lock()
	pid := c.nextID()
	var v []byte
	v = binary.BigEndian.AppendUint16(v, pid)
	for _, f := range filters {
		v = appendString(v, f)
		v = append(v, 1)
	}
	b := appendRemaining(append(c.wbuf[:0], typeSubscribe<<4|2), len(v))
	c.wbuf = append(b, v...)
	_, err := c.conn.Write(c.wbuf)
	c.wmu.Unlock()
	if err != nil {
		return err
	}
	return c.waitAck(pid, timeout)
}

// twinReported sends a reported-properties patch and waits for the hub's answer.
func (c *client) twinReported(rid int, patch []byte, timeout time.Duration) error {
	for len(c.twin) > 0 { // a late answer from an earlier request
		<-c.twin
	}
	want := fmt.Sprintf("$rid=%d", rid)
	if err := c.publish("$iothub/twin/PATCH/properties/reported/?"+want, 0, patch); err != nil {
		return err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case topic := <-c.twin:
			if !strings.Contains(topic, want) {
				continue
			}
			if !strings.HasPrefix(topic, "$iothub/twin/res/204/") {
				return fmt.Errorf("twin update answered %s", topic)
			}
			return nil
		case <-c.closed:
			return fmt.Errorf("%w: %v", errClosed, c.err)
		case <-t.C:
			return fmt.Errorf("no twin response within %s", timeout)
		}
	}
}

func (c *client) ping() error {
	return c.write(func(b []byte) []byte { return append(b, 0xC0, 0) })
}

// close sends DISCONNECT and closes the connection.
func (c *client) close() {
	_ = c.write(func(b []byte) []byte { return append(b, typeDisconnect<<4, 0) })
	_ = c.conn.Close()
	<-c.closed
}

func (c *client) counts() (methods, c2d uint64) {
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	return c.methods, c.c2d
}
