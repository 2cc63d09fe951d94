package sntp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hilrun/hilrun/rig/udprec"
)

// What the server does with a query (Server.Behaviour, Query.Answer).
const (
	AnswerTime = "time"    // answer with the served time (true time + offset)
	AnswerNone = "dropped" // no answer: the time service is unreachable
	AnswerKoD  = "kod"     // answer with a kiss-o'-death (Query.Answer says "kod RATE" etc.)
	// AnswerZeroTransmit is a faulty server: a well-formed answer (mode 4,
	// stratum 1, the originate echo, a receive timestamp) whose transmit
	// timestamp is zero, which RFC 4330 §5 tells a client to discard.
	AnswerZeroTransmit = "zero-transmit"
)

// Answer prefixes for queries that were not answered because they were
// not valid requests.
const answerIgnored = "ignored: "

// Config configures a server.
type Config struct {
	// Addr is the UDP address to listen on; default 127.0.0.1:0.
	Addr string
	// Now is the true time; default time.Now.
	Now func() time.Time
}

// Query is one packet the server received.
type Query struct {
	N      int       `json:"n"`    // 1-based, in order of arrival
	Time   time.Time `json:"time"` // host time of arrival
	Remote string    `json:"remote"`
	// Version and Mode as the client sent them.
	Version uint8 `json:"version"`
	Mode    uint8 `json:"mode"`
	// ClientTransmit is the client's transmit timestamp as sent (the
	// client's clock; a board whose clock is unset sends 1970 or 0).
	ClientTransmit Timestamp `json:"clientTransmit"`
	// Answer is what the server did: AnswerTime, AnswerNone,
	// AnswerZeroTransmit, "kod CODE", or "ignored: reason" for a packet
	// that is not a valid request.
	Answer string `json:"answer"`
	// Served is the transmit timestamp of the answer as a time (zero when
	// no time was served).
	Served time.Time `json:"served,omitzero"`
}

// String renders the query for traces and failure messages.
func (q Query) String() string {
	ct := "0"
	if q.ClientTransmit != 0 {
		ct = q.ClientTransmit.Time().Format(time.RFC3339Nano)
	}
	s := fmt.Sprintf("SNTP query #%d from %s (v%d mode %d, client transmit %s): %s", q.N, q.Remote, q.Version, q.Mode, ct, q.Answer)
	if !q.Served.IsZero() {
		s += " " + q.Served.Format(time.RFC3339Nano)
	}
	return s
}

// Answered reports whether the query got a time.
func (q Query) Answered() bool { return q.Answer == AnswerTime }

// KissOfDeath reports whether the query was answered with a kiss-o'-death.
func (q Query) KissOfDeath() bool {
	return len(q.Answer) > len(AnswerKoD) && q.Answer[:len(AnswerKoD)+1] == AnswerKoD+" "
}

// Server is an SNTP server under the suite's control. It is safe for
// concurrent use.
type Server struct {
	*udprec.Server[Query] // Addr, Port, OnQuery, Queries, Count, Since, Wait, Close
	now                   func() time.Time

	mu        sync.Mutex
	behaviour string
	kiss      string
	offset    time.Duration
}

// Start listens on cfg.Addr and serves until Close.
func Start(cfg Config) (*Server, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{now: cfg.Now, behaviour: AnswerTime}
	rs, err := udprec.Listen("sntp", cfg.Addr, 1024, ErrClosed, s.handle)
	if err != nil {
		return nil, err
	}
	s.Server = rs
	return s, nil
}

// SetOffset makes the server serve true time + d.
func (s *Server) SetOffset(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.offset = d
}

// Offset is the current offset.
func (s *Server) Offset() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.offset
}

// Answer makes the server answer queries with the time (the default).
func (s *Server) Answer() { s.setBehaviour(AnswerTime, "") }

// Drop makes the server receive and record queries but never answer.
func (s *Server) Drop() { s.setBehaviour(AnswerNone, "") }

// KissOfDeath makes the server answer every query with a kiss-o'-death
// carrying code (KissRate, KissDeny, KissRstr).
func (s *Server) KissOfDeath(code string) { s.setBehaviour(AnswerKoD, code) }

// ZeroTransmit makes the server answer every query with a zero transmit
// timestamp (AnswerZeroTransmit): the answer carries no time to take.
func (s *Server) ZeroTransmit() { s.setBehaviour(AnswerZeroTransmit, "") }

// Reset restores the defaults: answer with the true time.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.behaviour, s.kiss, s.offset = AnswerTime, "", 0
}

func (s *Server) setBehaviour(b, kiss string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.behaviour, s.kiss = b, kiss
}

// Behaviour is AnswerTime, AnswerNone, AnswerZeroTransmit or "kod CODE".
func (s *Server) Behaviour() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.behaviour == AnswerKoD {
		return AnswerKoD + " " + s.kiss
	}
	return s.behaviour
}

// ErrClosed is returned by waits on a closed server.
var ErrClosed = errors.New("sntp: server closed")

// WaitQuery waits until the n-th query (1-based, counted from the start)
// has arrived and returns it; it fails when ctx ends first.
func (s *Server) WaitQuery(ctx context.Context, n int) (Query, error) {
	var q Query
	err := s.Wait(ctx, func(qs []Query) bool {
		if len(qs) >= n && n > 0 {
			q = qs[n-1]
			return true
		}
		return false
	})
	if err != nil {
		return Query{}, fmt.Errorf("sntp: query #%d not received (%d so far): %w", n, s.Count(), err)
	}
	return q, nil
}

// handle answers (or not) one datagram and records it. The query is
// recorded (and OnQuery called) before the answer leaves, so that anything
// the client does with the time comes after the query in every record.
func (s *Server) handle(b []byte, remote *net.UDPAddr) (Query, []byte) {
	arrived := s.now()
	s.mu.Lock()
	behaviour, kiss, offset := s.behaviour, s.kiss, s.offset
	s.mu.Unlock()

	q := Query{Time: arrived, Remote: remote.String()}
	req, err := ParseRequest(b)
	if len(b) >= 1 {
		q.Version, q.Mode = (b[0]>>3)&7, b[0]&7
	}
	q.ClientTransmit = req.Transmit
	var answer []byte
	switch {
	case err != nil:
		q.Answer = answerIgnored + err.Error()
	case behaviour == AnswerNone:
		q.Answer = AnswerNone
	case behaviour == AnswerKoD:
		q.Answer = AnswerKoD + " " + kiss
		answer = KissOfDeathReply(req, kiss).Marshal()
	case behaviour == AnswerZeroTransmit:
		resp := Reply(req, arrived.Add(offset), s.now().Add(offset))
		resp.Transmit = 0
		q.Answer = AnswerZeroTransmit
		answer = resp.Marshal()
	default:
		resp := Reply(req, arrived.Add(offset), s.now().Add(offset))
		q.Answer, q.Served = AnswerTime, resp.Transmit.Time()
		answer = resp.Marshal()
	}
	return q, answer
}

// refIDLocal is the reference identifier of the served time: a stratum 1
// server names its source in ASCII (RFC 5905 §7.3); "LOCL" is the
// conventional name of an undisciplined local clock.
var refIDLocal = [4]byte{'L', 'O', 'C', 'L'}

// Reply builds a server's answer to req (RFC 4330 §5): the version and
// poll copied, originate = the client's transmit timestamp, receive and
// transmit the served times of arrival and departure, stratum 1.
func Reply(req Packet, received, transmit time.Time) Packet {
	v := req.Version
	if v == 0 {
		v = 4
	}
	return Packet{Leap: LeapNone, Version: v, Mode: ModeServer, Stratum: 1, Poll: req.Poll, Precision: -20,
		RootDispersion: 1 << 8, // ~4 ms, NTP short format
		RefID:          refIDLocal, Reference: TimestampOf(received), Originate: req.Transmit,
		Receive: TimestampOf(received), Transmit: TimestampOf(transmit)}
}

// KissOfDeathReply builds a kiss-o'-death answer to req (RFC 4330 §8):
// stratum 0, leap "unsynchronized", the kiss code as reference ID,
// originate = the client's transmit timestamp and no time in it.
func KissOfDeathReply(req Packet, code string) Packet {
	v := req.Version
	if v == 0 {
		v = 4
	}
	p := Packet{Leap: LeapUnsynchronized, Version: v, Mode: ModeServer, Stratum: 0, Poll: req.Poll, Originate: req.Transmit}
	copy(p.RefID[:], code)
	return p
}

// WithN numbers q (udprec.Record).
func (q Query) WithN(n int) Query { q.N = n; return q }
