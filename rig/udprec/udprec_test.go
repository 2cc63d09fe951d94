package udprec

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

type rec struct {
	N    int
	Body string
}

func (r rec) WithN(n int) rec { r.N = n; return r }

var errTestClosed = errors.New("test: closed")

// TestServerRecordsAnswersAndCloses: datagrams are recorded in order and
// numbered before their answer leaves; waits see them; Close ends waits.
func TestServerRecordsAnswersAndCloses(t *testing.T) {
	s, err := Listen("test", "", 64, errTestClosed, func(b []byte, _ *net.UDPAddr) (rec, []byte) {
		if string(b) == "quiet" {
			return rec{Body: "quiet"}, nil
		}
		return rec{Body: string(b)}, append([]byte("re:"), b...)
	})
	if err != nil {
		t.Fatal(err)
	}
	hooked := make(chan int, 3)
	s.OnQuery(func(r rec) { hooked <- r.N })
	c, err := net.Dial("udp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, m := range []string{"one", "quiet", "two"} {
		if _, err := c.Write([]byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 64)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for _, want := range []string{"re:one", "re:two"} {
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("answer %q, %v; want %q", buf[:n], err, want)
		}
	}
	if err := s.Wait(ctx, func(rs []rec) bool { return len(rs) == 3 }); err != nil {
		t.Fatal(err)
	}
	if got := s.Queries(); got[0] != (rec{1, "one"}) || got[1] != (rec{2, "quiet"}) || got[2] != (rec{3, "two"}) {
		t.Fatalf("records %+v", got)
	}
	if got := s.Since(2); len(got) != 1 || got[0].Body != "two" || s.Since(9) != nil || s.Count() != 3 {
		t.Fatalf("Since(2) %+v, Count %d", got, s.Count())
	}
	for want := 1; want <= 3; want++ {
		if n := <-hooked; n != want {
			t.Fatalf("hook saw record %d, want %d", n, want)
		}
	}
	done := make(chan error, 1)
	go func() { done <- s.Wait(ctx, func(rs []rec) bool { return len(rs) > 3 }) }()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, errTestClosed) {
		t.Fatalf("wait on a closed server: %v", err)
	}
	if s.Close() != nil {
		t.Fatal("second Close")
	}
}
