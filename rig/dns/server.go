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
	conn *net.UDPConn
	now  func() time.Time
	done chan struct{}

	mu      sync.Mutex
	records map[string]record
	queries []Query
	changed chan struct{}
	onQuery func(Query)
	closed  bool
}

// Start listens on cfg.Addr and serves until Close. It knows no names
// until SetA.
func Start(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	ua, err := net.ResolveUDPAddr("udp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	c, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("dns: listen %s: %w", cfg.Addr, err)
	}
	s := &Server{conn: c, now: cfg.Now, done: make(chan struct{}), records: map[string]record{}, changed: make(chan struct{})}
	go s.serve()
	return s, nil
}

// Addr is the address the server listens on (host:port).
func (s *Server) Addr() string { return s.conn.LocalAddr().String() }

// Port is the UDP port the server listens on.
func (s *Server) Port() int { return s.conn.LocalAddr().(*net.UDPAddr).Port }

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

// OnQuery sets a function called (outside the server's lock, in arrival
// order) for every datagram, before its answer is sent.
func (s *Server) OnQuery(f func(Query)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onQuery = f
}

// Queries returns every datagram received so far.
func (s *Server) Queries() []Query {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Query(nil), s.queries...)
}

// Count is the number of datagrams received so far (use it as a mark).
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queries)
}

// Since returns the queries after the first n (a mark from Count).
func (s *Server) Since(n int) []Query {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n >= len(s.queries) {
		return nil
	}
	return append([]Query(nil), s.queries[max(n, 0):]...)
}

// ErrClosed is returned by waits on a closed server.
var ErrClosed = errors.New("dns: server closed")

// Wait waits until cond holds for the queries received so far (cond must
// not keep the slice) or ctx ends.
func (s *Server) Wait(ctx context.Context, cond func([]Query) bool) error {
	for {
		s.mu.Lock()
		ok := cond(s.queries)
		ch, closed := s.changed, s.closed
		s.mu.Unlock()
		if ok {
			return nil
		}
		if closed {
			return ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

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

// Close stops the server.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	err := s.conn.Close()
	<-s.done
	return err
}

func (s *Server) serve() {
	defer close(s.done)
	buf := make([]byte, 1500)
	for {
		n, remote, err := s.conn.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. ICMP port unreachable reported on a later read
		}
		s.handle(buf[:n], remote)
	}
}

// handle answers one datagram and records it. The query is recorded (and
// OnQuery called) before the answer leaves, so whatever the client does
// with the answer comes after the query in every record.
func (s *Server) handle(b []byte, remote *net.UDPAddr) {
	q := Query{Time: s.now(), Remote: remote.String()}
	answer := s.answer(b, &q)
	s.mu.Lock()
	q.N = len(s.queries) + 1
	s.queries = append(s.queries, q)
	close(s.changed)
	s.changed = make(chan struct{})
	hook := s.onQuery
	s.mu.Unlock()
	if hook != nil {
		hook(q)
	}
	if answer != nil {
		_, _ = s.conn.WriteToUDP(answer, remote)
	}
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
