// Package dns is the board's name server on the rig: a small authoritative
// DNS server (RFC 1035) over UDP that answers A queries for the rig's host
// names (the hub host) with an address and a TTL the spec chooses. A board
// that can take a DNS server by configuration (agent protocol capability
// "dns", `hub.dnsServer`) resolves the hub host through it, so a spec sees
// every lookup the device makes: each query is recorded (time, remote,
// name, type, answer) and can be waited for, and an OnQuery hook lets the
// fixtures put it into the hub's wire trace, ordered with the device's TCP
// connects and TLS handshakes (RECON-012: the hub host name is resolved
// again on reconnect, 002 L10896).
//
// The message code is written for this server: it parses a query's header
// and question, skips the rest, and builds answers with one A record. It
// never trusts a length or a pointer from the wire.
package dns

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Record types and classes used here (RFC 1035 §3.2.2, §3.2.4; RFC 3596;
// RFC 6891).
const (
	TypeA    uint16 = 1
	TypeNS   uint16 = 2
	TypeSOA  uint16 = 6
	TypeAAAA uint16 = 28
	TypeOPT  uint16 = 41
	TypeANY  uint16 = 255
	ClassIN  uint16 = 1
)

// Response codes (RFC 1035 §4.1.1).
const (
	RCodeSuccess  = 0
	RCodeFormErr  = 1
	RCodeServFail = 2
	RCodeNXDomain = 3
	RCodeNotImp   = 4
	RCodeRefused  = 5
)

// HeaderSize is the size of a DNS message header.
const HeaderSize = 12

// MaxUDP is the largest message a plain (non-EDNS) UDP exchange carries
// (RFC 1035 §2.3.4); this server never answers with more.
const MaxUDP = 512

// Header flags.
const (
	flagQR = 1 << 15
	flagAA = 1 << 10
	flagTC = 1 << 9
	flagRD = 1 << 8
	flagRA = 1 << 7
)

// Header is a DNS message header.
type Header struct {
	ID      uint16
	Flags   uint16 // QR, Opcode, AA, TC, RD, RA, Z, RCODE as on the wire
	QDCount uint16
	ANCount uint16
	NSCount uint16
	ARCount uint16
}

// Response reports whether the QR bit is set.
func (h Header) Response() bool { return h.Flags&flagQR != 0 }

// Opcode is the 4-bit kind of query (0: standard query).
func (h Header) Opcode() int { return int(h.Flags>>11) & 0xf }

// RecursionDesired reports the RD bit.
func (h Header) RecursionDesired() bool { return h.Flags&flagRD != 0 }

// RCode is the 4-bit response code.
func (h Header) RCode() int { return int(h.Flags & 0xf) }

// Question is one entry of the question section.
type Question struct {
	Name  string // lower-case, without the trailing dot ("" is the root)
	Type  uint16
	Class uint16
}

// TypeName renders a record type for traces.
func TypeName(t uint16) string {
	switch t {
	case TypeA:
		return "A"
	case TypeNS:
		return "NS"
	case TypeSOA:
		return "SOA"
	case TypeAAAA:
		return "AAAA"
	case TypeOPT:
		return "OPT"
	case TypeANY:
		return "ANY"
	}
	return fmt.Sprintf("TYPE%d", t)
}

// RCodeName renders a response code for traces.
func RCodeName(rc int) string {
	switch rc {
	case RCodeSuccess:
		return "NOERROR"
	case RCodeFormErr:
		return "FORMERR"
	case RCodeServFail:
		return "SERVFAIL"
	case RCodeNXDomain:
		return "NXDOMAIN"
	case RCodeNotImp:
		return "NOTIMP"
	case RCodeRefused:
		return "REFUSED"
	}
	return fmt.Sprintf("RCODE%d", rc)
}

// Errors of ParseHeader and ParseQuery.
var (
	ErrShort      = errors.New("dns: message shorter than its header")
	ErrNotQuery   = errors.New("dns: not a query (QR set)")
	ErrQuestions  = errors.New("dns: a query must carry exactly one question")
	ErrName       = errors.New("dns: malformed name")
	ErrTruncated  = errors.New("dns: message ends inside the question")
	ErrNameTooBig = errors.New("dns: name longer than 255 octets")
)

// ParseHeader decodes the header of b.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("%w (%d bytes)", ErrShort, len(b))
	}
	return Header{
		ID:      binary.BigEndian.Uint16(b[0:]),
		Flags:   binary.BigEndian.Uint16(b[2:]),
		QDCount: binary.BigEndian.Uint16(b[4:]),
		ANCount: binary.BigEndian.Uint16(b[6:]),
		NSCount: binary.BigEndian.Uint16(b[8:]),
		ARCount: binary.BigEndian.Uint16(b[10:]),
	}, nil
}

// ParseQuery decodes a query: its header and its one question. What
// follows the question (an EDNS OPT record in the additional section, for
// instance) is not read. The header comes back whenever b holds one, also
// with an error, so that the server can answer FORMERR to the right ID.
func ParseQuery(b []byte) (Header, Question, error) {
	h, err := ParseHeader(b)
	if err != nil {
		return h, Question{}, err
	}
	if h.Response() {
		return h, Question{}, ErrNotQuery
	}
	if h.QDCount != 1 {
		return h, Question{}, fmt.Errorf("%w (QDCOUNT %d)", ErrQuestions, h.QDCount)
	}
	name, off, err := readName(b, HeaderSize)
	if err != nil {
		return h, Question{}, err
	}
	if off+4 > len(b) {
		return h, Question{}, ErrTruncated
	}
	q := Question{Name: name, Type: binary.BigEndian.Uint16(b[off:]), Class: binary.BigEndian.Uint16(b[off+2:])}
	return h, q, nil
}

// readName reads a domain name starting at off and returns it with the
// offset just after it in the message. Compression pointers (RFC 1035
// §4.1.4) are followed only to a point before the start of the labels
// being read, so every jump goes strictly backwards and a name cannot
// loop; the decoded name is bounded to 255 octets.
func readName(b []byte, off int) (string, int, error) {
	var labels []string
	end := -1 // where the name ends in the message, once a pointer was taken
	total := 0
	seg := off // start of the labels being read
	for {
		if off >= len(b) {
			return "", 0, ErrTruncated
		}
		l := int(b[off])
		switch {
		case l == 0:
			if end < 0 {
				end = off + 1
			}
			return strings.Join(labels, "."), end, nil
		case l&0xc0 == 0xc0:
			if off+1 >= len(b) {
				return "", 0, ErrTruncated
			}
			ptr := int(binary.BigEndian.Uint16(b[off:]) & 0x3fff)
			if ptr >= seg {
				return "", 0, fmt.Errorf("%w: compression pointer %d does not point before %d", ErrName, ptr, seg)
			}
			if end < 0 {
				end = off + 2
			}
			off, seg = ptr, ptr
		case l&0xc0 != 0:
			return "", 0, fmt.Errorf("%w: label type %#x", ErrName, l&0xc0)
		default:
			if off+1+l > len(b) {
				return "", 0, ErrTruncated
			}
			total += l + 1
			if total > 254 { // 255 with the root's zero octet
				return "", 0, ErrNameTooBig
			}
			label := b[off+1 : off+1+l]
			if bytes.IndexByte(label, '.') >= 0 {
				// Legal on the wire, but no host name here has one, and
				// the name could not be written back as it came.
				return "", 0, fmt.Errorf("%w: a label holds a dot", ErrName)
			}
			labels = append(labels, asciiLower(label))
			off += 1 + l
		}
	}
}

// asciiLower folds A-Z only (DNS names compare case-insensitively in
// ASCII, RFC 4343); other bytes stay as they are, so the length does not
// change (strings.ToLower would rewrite invalid UTF-8).
func asciiLower(b []byte) string {
	out := make([]byte, len(b))
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return string(out)
}

// appendName appends name in wire form (no compression). It refuses names
// that cannot be encoded: empty labels, labels over 63 octets, more than
// 255 octets in all.
func appendName(b []byte, name string) ([]byte, error) {
	name = strings.TrimSuffix(name, ".")
	if name != "" {
		total := 0
		for _, l := range strings.Split(name, ".") {
			if l == "" || len(l) > 63 {
				return nil, fmt.Errorf("%w: label %q", ErrName, l)
			}
			total += len(l) + 1
			if total > 254 {
				return nil, ErrNameTooBig
			}
			b = append(b, byte(len(l)))
			b = append(b, l...)
		}
	}
	return append(b, 0), nil
}

// NewQuery builds a standard query with RD set (what a stub resolver
// sends); tests and the firmware's own checks use it.
func NewQuery(id uint16, name string, qtype uint16) ([]byte, error) {
	b := make([]byte, HeaderSize, HeaderSize+len(name)+6)
	binary.BigEndian.PutUint16(b[0:], id)
	binary.BigEndian.PutUint16(b[2:], flagRD)
	binary.BigEndian.PutUint16(b[4:], 1)
	b, err := appendName(b, name)
	if err != nil {
		return nil, err
	}
	b = binary.BigEndian.AppendUint16(b, qtype)
	return binary.BigEndian.AppendUint16(b, ClassIN), nil
}

// Answer is what a response says: its code and its A records.
type Answer struct {
	RCode int
	A     []netip.Addr
	TTL   uint32 // of the first A record
}

// Reply builds the answer to the query h/q: the ID, opcode, RD and the
// question copied, QR and AA set (the server is authoritative for the
// names it knows), RA clear (it does not recurse), rcode, and one A record
// per address in addrs (the name as a pointer to the question), each with
// ttl.
func Reply(h Header, q Question, rcode int, addrs []netip.Addr, ttl uint32) []byte {
	b := make([]byte, HeaderSize, MaxUDP)
	flags := uint16(flagQR|flagAA) | h.Flags&(0xf<<11) | h.Flags&flagRD | uint16(rcode&0xf)
	binary.BigEndian.PutUint16(b[0:], h.ID)
	binary.BigEndian.PutUint16(b[2:], flags)
	qb, err := appendName(b, q.Name)
	if err != nil {
		// A question that parsed always re-encodes.
		return ErrorReply(h, RCodeServFail)
	}
	b = binary.BigEndian.AppendUint16(qb, q.Type)
	b = binary.BigEndian.AppendUint16(b, q.Class)
	binary.BigEndian.PutUint16(b[4:], 1)
	n := 0
	for _, a := range addrs {
		if !a.Is4() || len(b)+16 > MaxUDP {
			continue
		}
		b = binary.BigEndian.AppendUint16(b, 0xc000|HeaderSize) // the question's name
		b = binary.BigEndian.AppendUint16(b, TypeA)
		b = binary.BigEndian.AppendUint16(b, ClassIN)
		b = binary.BigEndian.AppendUint32(b, ttl)
		b = binary.BigEndian.AppendUint16(b, 4)
		ip := a.As4()
		b = append(b, ip[:]...)
		n++
	}
	binary.BigEndian.PutUint16(b[6:], uint16(n))
	return b
}

// ErrorReply builds an answer without question or records (FORMERR to a
// message whose question cannot be read, NOTIMP to another opcode).
func ErrorReply(h Header, rcode int) []byte {
	b := make([]byte, HeaderSize)
	binary.BigEndian.PutUint16(b[0:], h.ID)
	binary.BigEndian.PutUint16(b[2:], uint16(flagQR)|h.Flags&(0xf<<11)|h.Flags&flagRD|uint16(rcode&0xf))
	return b
}

// ParseAnswer decodes a response to a query for an A record: its code and
// the A records of its answer section (other records are skipped). Tests
// use it to read what the server sent.
func ParseAnswer(b []byte) (Header, Answer, error) {
	h, err := ParseHeader(b)
	if err != nil {
		return h, Answer{}, err
	}
	a := Answer{RCode: h.RCode()}
	off := HeaderSize
	for range h.QDCount {
		_, o, err := readName(b, off)
		if err != nil {
			return h, a, err
		}
		if o+4 > len(b) {
			return h, a, ErrTruncated
		}
		off = o + 4
	}
	for range h.ANCount {
		_, o, err := readName(b, off)
		if err != nil {
			return h, a, err
		}
		if o+10 > len(b) {
			return h, a, ErrTruncated
		}
		typ, ttl, rdl := binary.BigEndian.Uint16(b[o:]), binary.BigEndian.Uint32(b[o+4:]), int(binary.BigEndian.Uint16(b[o+8:]))
		o += 10
		if o+rdl > len(b) {
			return h, a, ErrTruncated
		}
		if typ == TypeA && rdl == 4 {
			if len(a.A) == 0 {
				a.TTL = ttl
			}
			a.A = append(a.A, netip.AddrFrom4([4]byte(b[o:o+4])))
		}
		off = o + rdl
	}
	return h, a, nil
}
