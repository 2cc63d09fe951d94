package sntp

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

func TestTimestamp(t *testing.T) {
	cases := []struct {
		name string
		t    time.Time
		ts   Timestamp
	}{
		{"unix epoch", time.Unix(0, 0), 0x83AA7E80_00000000},
		{"2000-01-01", time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), 0xBC17C200_00000000},
		{"half a second", time.Date(2000, 1, 1, 0, 0, 0, 500_000_000, time.UTC), 0xBC17C200_80000000},
		{"last second of era 0", time.Date(2036, 2, 7, 6, 28, 15, 0, time.UTC), 0xFFFFFFFF_00000000},
		{"first seconds of era 1", time.Date(2036, 2, 7, 6, 28, 17, 0, time.UTC), 0x00000001_00000000},
		{"2025", time.Date(2025, 6, 1, 12, 0, 0, 250_000_000, time.UTC), 0xEBE6BF40_40000000},
		{"zero time is unknown", time.Time{}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := TimestampOf(c.t); got != c.ts {
				t.Fatalf("TimestampOf(%v) = %#x, want %#x", c.t, uint64(got), uint64(c.ts))
			}
			if got := c.ts.Time(); !got.Equal(c.t) {
				t.Fatalf("%#x.Time() = %v, want %v", uint64(c.ts), got, c.t)
			}
		})
	}
	// Nanoseconds survive the round trip.
	for _, ns := range []int{1, 999, 123_456_789, 999_999_999} {
		tm := time.Date(2024, 2, 29, 23, 59, 59, ns, time.UTC)
		if got := TimestampOf(tm).Time(); !got.Equal(tm) {
			t.Errorf("round trip of %v gave %v", tm, got)
		}
	}
}

func TestPacketEncodeDecode(t *testing.T) {
	// A request as ntpdate/lwIP send it: LI 0, VN 4, mode 3, transmit set.
	req := Packet{Version: 4, Mode: ModeClient, Poll: 6, Transmit: 0x83AA7E81_80000000}
	wantReq := "23000600" + "00000000" + "00000000" + "00000000" +
		"0000000000000000" + "0000000000000000" + "0000000000000000" + "83aa7e8180000000"
	cases := []struct {
		name string
		p    Packet
		hex  string
	}{
		{"client request", req, wantReq},
		{"server reply", Packet{Leap: LeapNone, Version: 4, Mode: ModeServer, Stratum: 1, Poll: 6, Precision: -20,
			RootDelay: 0x10, RootDispersion: 0x100, RefID: refIDLocal, Reference: 0xBC17C200_00000000,
			Originate: 0x83AA7E81_80000000, Receive: 0xBC17C200_00000001, Transmit: 0xBC17C200_00000002},
			"240106ec" + "00000010" + "00000100" + "4c4f434c" +
				"bc17c20000000000" + "83aa7e8180000000" + "bc17c20000000001" + "bc17c20000000002"},
		{"kiss-o'-death", KissOfDeathReply(req, KissDeny),
			"e4000600" + "00000000" + "00000000" + "44454e59" +
				"0000000000000000" + "83aa7e8180000000" + "0000000000000000" + "0000000000000000"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := c.p.Marshal()
			if got := hex.EncodeToString(b); got != c.hex {
				t.Fatalf("Marshal:\n got %s\nwant %s", got, c.hex)
			}
			p, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			if p != c.p {
				t.Fatalf("Parse(Marshal(p)) = %+v, want %+v", p, c.p)
			}
		})
	}
}

func TestParseRequest(t *testing.T) {
	ok := Packet{Version: 4, Mode: ModeClient}.Marshal()
	withMAC := append(Packet{Version: 3, Mode: ModeClient}.Marshal(), make([]byte, 20)...)
	v1 := Packet{Version: 1, Mode: 0}.Marshal()
	cases := []struct {
		name string
		b    []byte
		err  error
	}{
		{"v4 client", ok, nil},
		{"v3 client with key id and MAC", withMAC, nil},
		{"v1 mode 0", v1, nil},
		{"short", ok[:47], ErrShort},
		{"empty", nil, ErrShort},
		{"version 0", Packet{Version: 0, Mode: ModeClient}.Marshal(), ErrVersion},
		{"version 5", Packet{Version: 5, Mode: ModeClient}.Marshal(), ErrVersion},
		{"server mode", Packet{Version: 4, Mode: ModeServer}.Marshal(), ErrMode},
		{"broadcast", Packet{Version: 4, Mode: ModeBroadcast}.Marshal(), ErrMode},
		{"symmetric active", Packet{Version: 4, Mode: ModeSymmetricActive}.Marshal(), ErrMode},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseRequest(c.b)
			if !errors.Is(err, c.err) {
				t.Fatalf("ParseRequest: %v, want %v", err, c.err)
			}
		})
	}
}

func TestKissCode(t *testing.T) {
	for _, c := range []struct {
		p    Packet
		code string
		kod  bool
	}{
		{KissOfDeathReply(Packet{Version: 4}, KissRate), "RATE", true},
		{Packet{Stratum: 0, RefID: [4]byte{'X', 0, 0, 0}}, "X", true},
		{Packet{Stratum: 1, RefID: refIDLocal}, "", false},
	} {
		code, kod := c.p.IsKissOfDeath()
		if code != c.code || kod != c.kod {
			t.Errorf("IsKissOfDeath(%v) = %q %v, want %q %v", c.p.RefID, code, kod, c.code, c.kod)
		}
	}
}

// exchange sends one request and returns the answer (nil on timeout).
func exchange(t *testing.T, s *Server, req []byte, timeout time.Duration) []byte {
	t.Helper()
	c, err := net.Dial("udp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		t.Fatal(err)
	}
	return buf[:n]
}

func TestServerBehaviours(t *testing.T) {
	base := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	s, err := Start(Config{Now: func() time.Time { return base }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var mu sync.Mutex
	var hooked []Query
	s.OnQuery(func(q Query) { mu.Lock(); hooked = append(hooked, q); mu.Unlock() })

	sent := TimestampOf(time.Unix(5, 0)) // a board whose RTC is at 1970
	req := Packet{Version: 4, Mode: ModeClient, Poll: 4, Transmit: sent}.Marshal()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	cases := []struct {
		name   string
		set    func()
		answer string
		check  func(t *testing.T, p Packet, got []byte)
	}{
		{"true time", s.Answer, AnswerTime, func(t *testing.T, p Packet, _ []byte) {
			if p.Mode != ModeServer || p.Stratum != 1 || p.Version != 4 || p.Poll != 4 || p.Leap != LeapNone {
				t.Fatalf("header %+v", p)
			}
			if p.Originate != sent {
				t.Fatalf("originate %#x, want the client's transmit %#x", uint64(p.Originate), uint64(sent))
			}
			if !p.Transmit.Time().Equal(base) || !p.Receive.Time().Equal(base) {
				t.Fatalf("served %v / %v, want %v", p.Receive.Time(), p.Transmit.Time(), base)
			}
		}},
		{"offset +2h", func() { s.Answer(); s.SetOffset(2 * time.Hour) }, AnswerTime, func(t *testing.T, p Packet, _ []byte) {
			if want := base.Add(2 * time.Hour); !p.Transmit.Time().Equal(want) {
				t.Fatalf("served %v, want %v", p.Transmit.Time(), want)
			}
		}},
		{"offset -2h", func() { s.SetOffset(-2 * time.Hour) }, AnswerTime, func(t *testing.T, p Packet, _ []byte) {
			if want := base.Add(-2 * time.Hour); !p.Transmit.Time().Equal(want) {
				t.Fatalf("served %v, want %v", p.Transmit.Time(), want)
			}
		}},
		{"kiss-o'-death RATE", func() { s.KissOfDeath(KissRate) }, "kod RATE", func(t *testing.T, p Packet, _ []byte) {
			if code, kod := p.IsKissOfDeath(); !kod || code != KissRate || p.Leap != LeapUnsynchronized || p.Transmit != 0 {
				t.Fatalf("not a RATE kiss-o'-death: %+v", p)
			}
		}},
		{"kiss-o'-death DENY", func() { s.KissOfDeath(KissDeny) }, "kod DENY", func(t *testing.T, p Packet, _ []byte) {
			if code, _ := p.IsKissOfDeath(); code != KissDeny {
				t.Fatalf("code %q", code)
			}
		}},
		{"zero transmit timestamp", s.ZeroTransmit, AnswerZeroTransmit, func(t *testing.T, p Packet, _ []byte) {
			if p.Mode != ModeServer || p.Stratum != 1 || p.Originate != sent || p.Receive == 0 || p.Transmit != 0 {
				t.Fatalf("not a time answer with a zero transmit timestamp: %+v", p)
			}
		}},
		{"no answer", s.Drop, AnswerNone, nil},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.set()
			got := exchange(t, s, req, 300*time.Millisecond)
			q, err := s.WaitQuery(ctx, i+1)
			if err != nil {
				t.Fatal(err)
			}
			if q.Answer != c.answer || q.N != i+1 || q.ClientTransmit != sent || q.Version != 4 || q.Mode != ModeClient {
				t.Fatalf("recorded %+v", q)
			}
			if c.check == nil {
				if got != nil {
					t.Fatalf("answered although dropping: %x", got)
				}
				return
			}
			if got == nil {
				t.Fatal("no answer")
			}
			p, err := Parse(got)
			if err != nil {
				t.Fatal(err)
			}
			c.check(t, p, got)
		})
	}

	// Malformed packets are recorded, not answered.
	s.Reset()
	if got := exchange(t, s, []byte("hello"), 200*time.Millisecond); got != nil {
		t.Fatalf("answered a malformed packet: %x", got)
	}
	q, err := s.WaitQuery(ctx, len(cases)+1)
	if err != nil {
		t.Fatal(err)
	}
	if q.Answered() || !bytes.HasPrefix([]byte(q.Answer), []byte(answerIgnored)) {
		t.Fatalf("malformed packet recorded as %q", q.Answer)
	}
	if n := len(s.Since(2)); n != len(cases)-1 {
		t.Fatalf("Since(2) has %d queries", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(hooked) != len(cases)+1 {
		t.Fatalf("OnQuery saw %d queries, want %d", len(hooked), len(cases)+1)
	}
}

func TestWaitQueryDeadline(t *testing.T) {
	s, err := Start(Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.WaitQuery(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitQuery without queries: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.WaitQuery(context.Background(), 1)
		done <- err
	}()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("WaitQuery on a closed server: %v", err)
	}
}

func TestConcurrentQueries(t *testing.T) {
	s, err := Start(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var wg sync.WaitGroup
	const n = 20
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			exchange(t, s, Packet{Version: 4, Mode: ModeClient, Transmit: TimestampOf(time.Now())}.Marshal(), time.Second)
			_ = s.Queries()
			_ = s.Behaviour()
		}()
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.WaitQuery(ctx, n); err != nil {
		t.Fatal(err)
	}
	for i, q := range s.Queries() {
		if q.N != i+1 || !q.Answered() {
			t.Fatalf("query %d recorded as %+v", i, q)
		}
	}
}

func FuzzParseRequest(f *testing.F) {
	f.Add(Packet{Version: 4, Mode: ModeClient, Transmit: 0x83AA7E81_80000000}.Marshal())
	f.Add(Packet{Version: 1}.Marshal())
	f.Add([]byte{0x23})
	f.Add(append(Packet{Version: 3, Mode: ModeClient}.Marshal(), 1, 2, 3))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseRequest(b)
		if err != nil {
			return
		}
		if len(b) < PacketSize || p.Version < 1 || p.Version > 4 {
			t.Fatalf("accepted %x as %+v", b, p)
		}
		// A request that parses re-encodes to its header bytes.
		if got := p.Marshal(); !bytes.Equal(got, b[:PacketSize]) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", got, b[:PacketSize])
		}
		// And can always be answered.
		r := Reply(p, time.Now(), time.Now())
		if _, err := Parse(r.Marshal()); err != nil {
			t.Fatalf("reply does not parse: %v", err)
		}
	})
}
