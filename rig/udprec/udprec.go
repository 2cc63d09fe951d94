// Package udprec is what the rig's UDP endpoints share — the time server
// (rig/sntp) and the name server (rig/dns): a socket on the loopback
// served one datagram at a time, and the ordered record of every datagram,
// which specs mark (Count), read (Since) and wait on (Wait). Each endpoint
// keeps its protocol: it turns a datagram into its record and its answer.
package udprec

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
)

// Record is an endpoint's record of one datagram; WithN returns it
// numbered (1-based, in order of arrival).
type Record[T any] interface {
	WithN(n int) T
}

// Handler turns one datagram into its record and the answer to send back
// (nil: none). It runs on the server's one goroutine, in arrival order.
type Handler[T any] func(b []byte, remote *net.UDPAddr) (rec T, answer []byte)

// Server serves one UDP socket with a Handler. It is safe for concurrent
// use.
type Server[T Record[T]] struct {
	conn      *net.UDPConn
	handle    Handler[T]
	errClosed error
	done      chan struct{}

	mu      sync.Mutex
	recs    []T
	changed chan struct{}
	hook    func(T)
	closed  bool
}

// Listen opens addr ("" is 127.0.0.1:0) and serves it until Close with
// handle, reading datagrams of up to size bytes. name prefixes errors;
// Wait on a closed server returns errClosed.
func Listen[T Record[T]](name, addr string, size int, errClosed error, handle Handler[T]) (*Server[T], error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	c, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("%s: listen %s: %w", name, addr, err)
	}
	s := &Server[T]{conn: c, handle: handle, errClosed: errClosed, done: make(chan struct{}), changed: make(chan struct{})}
	go s.serve(size)
	return s, nil
}

// Addr is the address the server listens on (host:port).
func (s *Server[T]) Addr() string { return s.conn.LocalAddr().String() }

// Port is the UDP port the server listens on.
func (s *Server[T]) Port() int { return s.conn.LocalAddr().(*net.UDPAddr).Port }

// OnQuery sets a function called (outside the server's lock, in arrival
// order) with every record, before its answer is sent.
func (s *Server[T]) OnQuery(f func(T)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hook = f
}

// Queries returns every record so far.
func (s *Server[T]) Queries() []T {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]T(nil), s.recs...)
}

// Count is the number of datagrams received so far (use it as a mark).
func (s *Server[T]) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.recs)
}

// Since returns the records after the first n (a mark from Count).
func (s *Server[T]) Since(n int) []T {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n >= len(s.recs) {
		return nil
	}
	return append([]T(nil), s.recs[max(n, 0):]...)
}

// Wait waits until cond holds for the records so far (cond must not keep
// the slice), ctx ends, or the server is closed.
func (s *Server[T]) Wait(ctx context.Context, cond func([]T) bool) error {
	for {
		s.mu.Lock()
		ok := cond(s.recs)
		ch, closed := s.changed, s.closed
		s.mu.Unlock()
		if ok {
			return nil
		}
		if closed {
			return s.errClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Close stops the server; waits end with the closed error.
func (s *Server[T]) Close() error {
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

func (s *Server[T]) serve(size int) {
	defer close(s.done)
	buf := make([]byte, size)
	for {
		n, remote, err := s.conn.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. ICMP port unreachable reported on a later read
		}
		rec, answer := s.handle(buf[:n], remote)
		// Recorded (and the hook called) before the answer leaves, so
		// whatever the client does with the answer comes after its
		// datagram in every record.
		s.mu.Lock()
		rec = rec.WithN(len(s.recs) + 1)
		s.recs = append(s.recs, rec)
		close(s.changed)
		s.changed = make(chan struct{})
		hook := s.hook
		s.mu.Unlock()
		if hook != nil {
			hook(rec)
		}
		if answer != nil {
			_, _ = s.conn.WriteToUDP(answer, remote)
		}
	}
}
