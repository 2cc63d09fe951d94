package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/hilrun/hilrun/rig/udprec"
)

// Config configures a server.
type Config struct {
	// Addr is the UDP address to listen on; default 127.0.0.1:0.
	Addr string
	// Now is the clock queries are stamped with; default time.Now.
	Now func() time.Time
}

// Query is one datagram the server received and what it answered.
type Query struct {
	N      int       `json:"n"`    // 1-based, in order of arrival
	Time   time.Time `json:"time"` // host time of arrival
	Remote string    `json:"remote"`
	ID     uint16    `json:"id"`
	Name   string    `json:"name,omitempty"` // lower-case, no trailing dot
	Type   string    `json:"type,omitempty"` // "A", "AAAA", …
	// RCode is the answer's response code name ("NOERROR", "NXDOMAIN",
	// …); empty when nothing was answered.
	RCode string `json:"rcode,omitempty"`
	// Addrs and TTL: the A records answered.
	Addrs []netip.Addr `json:"addrs,omitempty"`
	TTL   uint32       `json:"ttl,omitempty"`
	// Ignored says why a datagram got no answer (it was not a query).
	Ignored string `json:"ignored,omitempty"`
	// Malformed says why a query's question could not be read (answered
	// FORMERR).
	Malformed string `json:"malformed,omitempty"`
}

// String renders the query for traces and failure messages.
func (q Query) String() string {
	if q.Ignored != "" {
		return fmt.Sprintf("DNS datagram #%d from %s: ignored: %s", q.N, q.Remote, q.Ignored)
	}
	if q.Malformed != "" {
		return fmt.Sprintf("DNS query #%d from %s (id %d): %s: %s", q.N, q.Remote, q.ID, q.Malformed, q.RCode)
	}
	s := fmt.Sprintf("DNS query #%d from %s: %s %s (id %d): %s", q.N, q.Remote, q.Type, q.Name, q.ID, q.RCode)
	for _, a := range q.Addrs {
		s += " " + a.String()
	}
	if len(q.Addrs) > 0 {
		s += fmt.Sprintf(" ttl %d s", q.TTL)
	}
	return s
}

// IsA reports whether q was an A query for name (case-insensitive, a
// trailing dot ignored).
func (q Query) IsA(name string) bool {
	return q.Ignored == "" && q.Type == TypeName(TypeA) && q.Name == canonical(name)
}

func canonical(name string) string { return asciiLower([]byte(strings.TrimSuffix(name, "."))) }

type record struct {
	addrs []netip.Addr
	ttl   uint32
}

// Server is the rig's name server. It is safe for concurrent use.
type Server struct {
	*udprec.Server[Query] // Addr, Port, OnQuery, Queries, Count, Since, Wait, Close
	now                   func() time.Time

	mu      sync.Mutex
	records map[string]record
}

// Start listens on cfg.Addr and serves until Close. It knows no names
// until SetA.
func Start(cfg Config) (*Server, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{now: cfg.Now, records: map[string]record{}}
	rs, err := udprec.Listen("dns", cfg.Addr, 1500, ErrClosed, s.handle)
	if err != nil {
		return nil, err
	}
	s.Server = rs
	return s, nil
}

// SetA makes the server answer A queries for name with addrs (IPv4) and
// ttl (whole seconds; less than a second is answered as 0, "do not
// cache"). AAAA and other queries for a known name get NOERROR with no
// records, as from a zone that has only A records.
func (s *Server) SetA(name string, ttl time.Duration, addrs ...netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records[canonical(name)] = record{addrs: append([]netip.Addr(nil), addrs...), ttl: uint32(ttl / time.Second)}
}

// Remove forgets name: queries for it are answered NXDOMAIN.
func (s *Server) Remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.records, canonical(name))
}

// TTL is the TTL answered for name (0 when unknown).
func (s *Server) TTL(name string) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return time.Duration(s.records[canonical(name)].ttl) * time.Second
}

// ErrClosed is returned by waits on a closed server.
var ErrClosed = errors.New("dns: server closed")

// WaitA waits for an A query for name after the first n datagrams (a mark
// from Count) and returns it.
func (s *Server) WaitA(ctx context.Context, n int, name string) (Query, error) {
	var q Query
	err := s.Wait(ctx, func(qs []Query) bool {
		for _, x := range qs[min(max(n, 0), len(qs)):] {
			if x.IsA(name) {
				q = x
				return true
			}
		}
		return false
	})
	if err != nil {
		return Query{}, fmt.Errorf("dns: no A query for %s after datagram #%d (%d so far): %w", name, n, s.Count(), err)
	}
	return q, nil
}

// handle answers one datagram; udprec records it before the answer leaves.
func (s *Server) handle(b []byte, remote *net.UDPAddr) (Query, []byte) {
	q := Query{Time: s.now(), Remote: remote.String()}
	answer := s.answer(b, &q)
	return q, answer
}

// answer decides the response to b and notes it in q.
func (s *Server) answer(b []byte, q *Query) []byte {
	h, qu, err := ParseQuery(b)
	q.ID = h.ID
	switch {
	case errors.Is(err, ErrShort) || errors.Is(err, ErrNotQuery):
		// No header to answer to, or a response: never answer (an
		// answer to an answer could loop between two servers).
		q.Ignored = err.Error()
		return nil
	case err != nil:
		q.RCode, q.Malformed = RCodeName(RCodeFormErr), err.Error()
		return ErrorReply(h, RCodeFormErr)
	}
	q.Name, q.Type = qu.Name, TypeName(qu.Type)
	if h.Opcode() != 0 {
		q.RCode = RCodeName(RCodeNotImp)
		return ErrorReply(h, RCodeNotImp)
	}
	if qu.Class != ClassIN {
		q.RCode = RCodeName(RCodeRefused)
		return Reply(h, qu, RCodeRefused, nil, 0)
	}
	s.mu.Lock()
	rec, known := s.records[qu.Name]
	s.mu.Unlock()
	switch {
	case !known:
		// The board's only name server, and it knows the rig's names
		// only: anything else does not exist here.
		q.RCode = RCodeName(RCodeNXDomain)
		return Reply(h, qu, RCodeNXDomain, nil, 0)
	case qu.Type == TypeA || qu.Type == TypeANY:
		q.RCode, q.Addrs, q.TTL = RCodeName(RCodeSuccess), rec.addrs, rec.ttl
		return Reply(h, qu, RCodeSuccess, rec.addrs, rec.ttl)
	default:
		q.RCode = RCodeName(RCodeSuccess) // NODATA: the name exists, no records of this type
		return Reply(h, qu, RCodeSuccess, nil, 0)
	}
}

// WithN numbers q (udprec.Record).
func (q Query) WithN(n int) Query { q.N = n; return q }
