package dns

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

const hubHost = "hilrun-hil.azure-devices.net"

func mustQuery(t testing.TB, id uint16, name string, qtype uint16) []byte {
	t.Helper()
	b, err := NewQuery(id, name, qtype)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseQuery(t *testing.T) {
	plain := mustQuery(t, 0x1234, hubHost, TypeA)
	withOPT := append(append([]byte(nil), plain...), 0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0) // EDNS0 OPT, 1232 bytes
	binary.BigEndian.PutUint16(withOPT[10:], 1)
	upper := mustQuery(t, 7, "HilRun-HIL.Azure-Devices.NET", TypeAAAA)
	// A question whose name is a pointer back into itself after one label.
	ptrSelf := append(mustQuery(t, 9, "a", TypeA)[:HeaderSize], 1, 'a', 0xc0, HeaderSize, 0, 1, 0, 1)
	// A pointer that points forwards (to itself): refused, never followed.
	ptrFwd := append(mustQuery(t, 9, "a", TypeA)[:HeaderSize], 0xc0, HeaderSize, 0, 1, 0, 1)
	// A name pointing back into the header: legal but odd; it must not crash.
	ptrHeader := append(mustQuery(t, 9, "a", TypeA)[:HeaderSize], 0xc0, 0, 0, 1, 0, 1)
	resp := append([]byte(nil), plain...)
	resp[2] |= 0x80
	twoQ := append([]byte(nil), plain...)
	binary.BigEndian.PutUint16(twoQ[4:], 2)
	longLabel := append(mustQuery(t, 1, "a", TypeA)[:HeaderSize], 0x40)
	tests := []struct {
		name    string
		in      []byte
		want    Question
		wantErr error
	}{
		{"A query", plain, Question{Name: hubHost, Type: TypeA, Class: ClassIN}, nil},
		{"with EDNS0 OPT", withOPT, Question{Name: hubHost, Type: TypeA, Class: ClassIN}, nil},
		{"upper case folded", upper, Question{Name: hubHost, Type: TypeAAAA, Class: ClassIN}, nil},
		{"root", mustQuery(t, 1, "", TypeNS), Question{Name: "", Type: TypeNS, Class: ClassIN}, nil},
		{"empty", nil, Question{}, ErrShort},
		{"header only", plain[:HeaderSize-1], Question{}, ErrShort},
		{"response", resp, Question{}, ErrNotQuery},
		{"two questions", twoQ, Question{}, ErrQuestions},
		{"name cut", plain[:HeaderSize+5], Question{}, ErrTruncated},
		{"type cut", plain[:len(plain)-1], Question{}, ErrTruncated},
		{"pointer after a label", ptrSelf, Question{}, ErrName},
		{"pointer forwards", ptrFwd, Question{}, ErrName},
		{"pointer into the header", ptrHeader, Question{}, nil},
		{"label type 01", longLabel, Question{}, ErrName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, q, err := ParseQuery(tt.in)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if tt.name == "pointer into the header" {
				return // whatever it decodes to, it decoded without crashing
			}
			if err != nil || q != tt.want {
				t.Fatalf("got %+v, %v; want %+v", q, err, tt.want)
			}
		})
	}
}

func TestNameLimits(t *testing.T) {
	long := bytes.Repeat([]byte("a"), 64)
	if _, err := NewQuery(1, string(long), TypeA); !errors.Is(err, ErrName) {
		t.Errorf("64-octet label: %v", err)
	}
	if _, err := NewQuery(1, "a..b", TypeA); !errors.Is(err, ErrName) {
		t.Errorf("empty label: %v", err)
	}
	var name []byte
	for len(name) < 260 {
		name = append(name, "abcdefghi."...)
	}
	if _, err := NewQuery(1, string(name[:len(name)-1]), TypeA); !errors.Is(err, ErrNameTooBig) {
		t.Errorf("long name: %v", err)
	}
	// A wire name of 300 octets in 1-octet labels is refused by the parser.
	b := mustQuery(t, 1, "a", TypeA)[:HeaderSize]
	for range 150 {
		b = append(b, 1, 'a')
	}
	b = append(b, 0, 0, 1, 0, 1)
	if _, _, err := ParseQuery(b); !errors.Is(err, ErrNameTooBig) {
		t.Errorf("parse long name: %v", err)
	}
}

func TestReplyRoundTrip(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	tests := []struct {
		name  string
		rcode int
		addrs []netip.Addr
		ttl   uint32
	}{
		{"one A", RCodeSuccess, []netip.Addr{lo}, 1},
		{"two A", RCodeSuccess, []netip.Addr{lo, netip.MustParseAddr("10.1.2.3")}, 300},
		{"NODATA", RCodeSuccess, nil, 0},
		{"NXDOMAIN", RCodeNXDomain, nil, 0},
		{"IPv6 skipped", RCodeSuccess, []netip.Addr{netip.MustParseAddr("::1")}, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, q, err := ParseQuery(mustQuery(t, 0xbeef, hubHost, TypeA))
			if err != nil {
				t.Fatal(err)
			}
			rh, a, err := ParseAnswer(Reply(h, q, tt.rcode, tt.addrs, tt.ttl))
			if err != nil {
				t.Fatal(err)
			}
			if rh.ID != 0xbeef || !rh.Response() || !rh.RecursionDesired() || rh.Flags&flagAA == 0 || a.RCode != tt.rcode {
				t.Fatalf("header %+v answer %+v", rh, a)
			}
			var want []netip.Addr
			for _, x := range tt.addrs {
				if x.Is4() {
					want = append(want, x)
				}
			}
			if len(a.A) != len(want) || (len(want) > 0 && a.TTL != tt.ttl) {
				t.Fatalf("answer %+v, want %v ttl %d", a, want, tt.ttl)
			}
			for i := range want {
				if a.A[i] != want[i] {
					t.Fatalf("answer %v, want %v", a.A, want)
				}
			}
		})
	}
}

// exchange sends msg and returns the answer (nil when none came within
// wait: 2 s, or 300 ms for datagrams that must not be answered).
func exchange(t *testing.T, s *Server, msg []byte) []byte {
	return exchangeWait(t, s, msg, 2*time.Second)
}

func exchangeWait(t *testing.T, s *Server, msg []byte, wait time.Duration) []byte {
	t.Helper()
	c, err := net.Dial("udp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

func TestServerAnswers(t *testing.T) {
	s, err := Start(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	lo := netip.MustParseAddr("127.0.0.1")
	s.SetA(hubHost+".", 2*time.Second, lo)
	tests := []struct {
		name      string
		qname     string
		qtype     uint16
		wantRCode int
		wantA     int
	}{
		{"A for the hub host", hubHost, TypeA, RCodeSuccess, 1},
		{"case-insensitive", "HILRUN-hil.azure-devices.net", TypeA, RCodeSuccess, 1},
		{"AAAA is NODATA", hubHost, TypeAAAA, RCodeSuccess, 0},
		{"unknown name", "example.com", TypeA, RCodeNXDomain, 0},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := exchange(t, s, mustQuery(t, uint16(100+i), tt.qname, tt.qtype))
			h, a, err := ParseAnswer(b)
			if err != nil {
				t.Fatal(err)
			}
			if h.ID != uint16(100+i) || a.RCode != tt.wantRCode || len(a.A) != tt.wantA {
				t.Fatalf("got id %d %+v", h.ID, a)
			}
			if tt.wantA > 0 && (a.A[0] != lo || a.TTL != 2) {
				t.Fatalf("got %+v", a)
			}
		})
	}
	// A response and a runt are recorded, not answered.
	resp := mustQuery(t, 1, hubHost, TypeA)
	resp[2] |= 0x80
	if b := exchangeWait(t, s, resp, 300*time.Millisecond); b != nil {
		t.Fatalf("answered a response: %x", b)
	}
	if b := exchangeWait(t, s, []byte{1, 2, 3}, 300*time.Millisecond); b != nil {
		t.Fatalf("answered a runt: %x", b)
	}
	// A bad question gets FORMERR with the ID.
	bad := append(mustQuery(t, 77, "a", TypeA)[:HeaderSize], 0x80)
	h, a, err := ParseAnswer(exchange(t, s, bad))
	if err != nil || h.ID != 77 || a.RCode != RCodeFormErr {
		t.Fatalf("bad question: %+v %+v %v", h, a, err)
	}
	qs := s.Queries()
	if len(qs) != 7 || !qs[0].IsA(hubHost) || qs[2].IsA(hubHost) || qs[4].Ignored == "" || qs[6].Malformed == "" {
		for _, q := range qs {
			t.Log(q)
		}
		t.Fatalf("%d queries recorded", len(qs))
	}
	s.Remove(hubHost)
	_, a, _ = ParseAnswer(exchange(t, s, mustQuery(t, 5, hubHost, TypeA)))
	if a.RCode != RCodeNXDomain {
		t.Fatalf("removed name: %+v", a)
	}
}

// Go's own stub resolver, pointed at the server the way the reference
// firmware does it, gets the address.
func TestGoResolver(t *testing.T) {
	s, err := Start(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetA(hubHost, time.Second, netip.MustParseAddr("127.0.0.1"))
	var mu sync.Mutex
	seen := 0
	s.OnQuery(func(Query) { mu.Lock(); seen++; mu.Unlock() })
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", s.Addr())
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ips, err := r.LookupNetIP(ctx, "ip4", hubHost)
	if err != nil || len(ips) != 1 || ips[0].Unmap() != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("LookupNetIP = %v, %v", ips, err)
	}
	m := s.Count()
	if _, err := r.LookupNetIP(ctx, "ip4", "nowhere.example"); err == nil {
		t.Fatal("unknown name resolved")
	}
	if _, err := s.WaitA(ctx, 0, hubHost); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if s.Count() <= m || seen != s.Count() {
		t.Fatalf("queries %d, hook saw %d", s.Count(), seen)
	}
}

func TestWaitAClosed(t *testing.T) {
	s, err := Start(Config{})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Close() }()
	if _, err := s.WaitA(context.Background(), 0, hubHost); !errors.Is(err, ErrClosed) {
		t.Fatalf("err = %v", err)
	}
}

func FuzzParseQuery(f *testing.F) {
	q, _ := NewQuery(0x1234, hubHost, TypeA)
	f.Add(q)
	f.Add(append(append([]byte(nil), q...), 0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0))
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1})
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0, 0, 1, 0, 1})
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, q, err := ParseQuery(b)
		if err != nil {
			if len(b) >= HeaderSize {
				_ = ErrorReply(h, RCodeFormErr)
			}
			return
		}
		if len(q.Name) > 255 {
			t.Fatalf("name of %d octets accepted", len(q.Name))
		}
		// Every query that parses can be answered, and the answer parses
		// back to the same ID with the records sent.
		r := Reply(h, q, RCodeSuccess, []netip.Addr{netip.MustParseAddr("127.0.0.1")}, 1)
		if len(r) > MaxUDP {
			t.Fatalf("answer of %d bytes", len(r))
		}
		rh, a, err := ParseAnswer(r)
		if err != nil {
			t.Fatalf("answer to %x does not parse: %v", b, err)
		}
		if rh.ID != h.ID || a.RCode != RCodeSuccess {
			t.Fatalf("answer %+v %+v", rh, a)
		}
		_, _, _ = ParseAnswer(b) // never panics on arbitrary bytes either
	})
}
