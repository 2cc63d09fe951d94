// Package sntp is the suite's time server: SNTP (RFC 4330), answered as an
// NTPv4 server (RFC 5905 mode 4) over UDP. A board is pointed at it (agent
// protocol "sntp" configuration) so that a spec controls what time the
// board can learn: the true time, a time off by a chosen offset, no answer
// at all, or a kiss-o'-death. Every query is recorded (time, remote, the
// client's transmit timestamp, what was answered) and can be waited for,
// and an OnQuery hook lets the fixtures put it into the hub's wire trace,
// so that a spec sees SNTP queries and the device's TLS handshakes in one
// ordered trace (CLOCK-001).
package sntp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// PacketSize is the size of an NTP header without extension fields or MAC.
const PacketSize = 48

// Association modes (RFC 5905 §7.3).
const (
	ModeSymmetricActive = 1
	ModeClient          = 3
	ModeServer          = 4
	ModeBroadcast       = 5
)

// Leap indicator values.
const (
	LeapNone           = 0
	LeapUnsynchronized = 3 // "alarm condition (clock not synchronized)"
)

// Kiss codes a server may send in RefID with stratum 0 (RFC 4330 §8).
const (
	KissRate = "RATE" // reduce the polling rate
	KissDeny = "DENY" // access denied: stop sending to this server
	KissRstr = "RSTR" // access restricted: stop sending to this server
)

// ntpEpochOffset is the number of seconds from 1900-01-01 (the NTP epoch)
// to 1970-01-01 (the Unix epoch).
const ntpEpochOffset = 2208988800

// Timestamp is an NTP 64-bit timestamp: seconds since the NTP epoch in the
// upper 32 bits, the binary fraction of a second in the lower 32.
type Timestamp uint64

// TimestampOf converts t into an NTP timestamp. Times past 2036-02-07 wrap
// into NTP era 1, as on the wire.
func TimestampOf(t time.Time) Timestamp {
	if t.IsZero() {
		return 0
	}
	secs := uint64(t.Unix()+ntpEpochOffset) & 0xffffffff
	frac := (uint64(t.Nanosecond()) << 32) / 1e9
	return Timestamp(secs<<32 | frac)
}

// Time converts the timestamp to a time. The zero timestamp ("unknown")
// gives the zero time. Like RFC 4330 §3 suggests, a timestamp whose top
// bit is clear is taken to be in era 1 (2036-02-07 onwards), so the
// result lies between 1968-01-20 and 2104-02-26.
func (ts Timestamp) Time() time.Time {
	if ts == 0 {
		return time.Time{}
	}
	secs := int64(ts >> 32)
	if secs&0x80000000 == 0 {
		secs += 1 << 32 // era 1
	}
	nanos := (int64(ts&0xffffffff)*1e9 + 1<<31) >> 32
	return time.Unix(secs-ntpEpochOffset, nanos).UTC()
}

// Packet is an NTP header (RFC 5905 §7.3; RFC 4330 §4).
type Packet struct {
	Leap           uint8 // 2 bits
	Version        uint8 // 3 bits
	Mode           uint8 // 3 bits
	Stratum        uint8
	Poll           int8
	Precision      int8
	RootDelay      uint32 // NTP short format
	RootDispersion uint32
	RefID          [4]byte
	Reference      Timestamp
	Originate      Timestamp
	Receive        Timestamp
	Transmit       Timestamp
}

// Marshal encodes the header in network byte order.
func (p Packet) Marshal() []byte {
	b := make([]byte, PacketSize)
	b[0] = (p.Leap&3)<<6 | (p.Version&7)<<3 | p.Mode&7
	b[1] = p.Stratum
	b[2] = byte(p.Poll)
	b[3] = byte(p.Precision)
	binary.BigEndian.PutUint32(b[4:], p.RootDelay)
	binary.BigEndian.PutUint32(b[8:], p.RootDispersion)
	copy(b[12:16], p.RefID[:])
	binary.BigEndian.PutUint64(b[16:], uint64(p.Reference))
	binary.BigEndian.PutUint64(b[24:], uint64(p.Originate))
	binary.BigEndian.PutUint64(b[32:], uint64(p.Receive))
	binary.BigEndian.PutUint64(b[40:], uint64(p.Transmit))
	return b
}

// Errors of Parse and ParseRequest.
var (
	ErrShort   = errors.New("sntp: packet shorter than 48 bytes")
	ErrVersion = errors.New("sntp: unsupported version")
	ErrMode    = errors.New("sntp: not a client request")
)

// Parse decodes an NTP header. Extension fields and a MAC after the
// header are ignored; versions 1 to 4 are accepted.
func Parse(b []byte) (Packet, error) {
	if len(b) < PacketSize {
		return Packet{}, fmt.Errorf("%w (%d)", ErrShort, len(b))
	}
	p := Packet{
		Leap:           b[0] >> 6,
		Version:        (b[0] >> 3) & 7,
		Mode:           b[0] & 7,
		Stratum:        b[1],
		Poll:           int8(b[2]),
		Precision:      int8(b[3]),
		RootDelay:      binary.BigEndian.Uint32(b[4:]),
		RootDispersion: binary.BigEndian.Uint32(b[8:]),
		Reference:      Timestamp(binary.BigEndian.Uint64(b[16:])),
		Originate:      Timestamp(binary.BigEndian.Uint64(b[24:])),
		Receive:        Timestamp(binary.BigEndian.Uint64(b[32:])),
		Transmit:       Timestamp(binary.BigEndian.Uint64(b[40:])),
	}
	copy(p.RefID[:], b[12:16])
	if p.Version < 1 || p.Version > 4 {
		return p, fmt.Errorf("%w %d", ErrVersion, p.Version)
	}
	return p, nil
}

// ParseRequest decodes a packet a server should answer: a client request
// (mode 3), or mode 0 from a version 1 client (RFC 4330 §5).
func ParseRequest(b []byte) (Packet, error) {
	p, err := Parse(b)
	if err != nil {
		return p, err
	}
	if p.Mode != ModeClient && !(p.Version == 1 && p.Mode == 0) {
		return p, fmt.Errorf("%w (mode %d)", ErrMode, p.Mode)
	}
	return p, nil
}

// IsKissOfDeath reports whether p is a kiss-o'-death (stratum 0) and
// returns its kiss code.
func (p Packet) IsKissOfDeath() (string, bool) {
	if p.Stratum != 0 {
		return "", false
	}
	return kissCode(p.RefID), true
}

func kissCode(id [4]byte) string {
	n := 0
	for n < 4 && id[n] >= 0x20 && id[n] < 0x7f {
		n++
	}
	return string(id[:n])
}
