package sim

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/rig/hub/hubtest"
	"github.com/hilrun/hilrun/rig/sntp"
)

// clockRig boots a firmware whose RTC is at 1970, configured for a hub and
// pointed at a time server.
func clockRig(t *testing.T, defects []string) (*host, *hubtest.Hub, *sntp.Server) {
	t.Helper()
	h := hubtest.Start(t)
	d := h.AddSASDevice("clock-dev")
	ts, err := sntp.Start(sntp.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ts.Close() })
	fw := boot(t, Options{Defects: defects})
	fw.must(agentproto.OpTrustAdd, agentproto.Cert{PEM: string(h.PKI().Root.CertPEM())}, nil)
	fw.must(agentproto.OpConfigure, agentproto.Config{
		Hub:      &agentproto.HubConfig{Host: h.Host(), Address: h.MQTTAddr()},
		Identity: &agentproto.IdentityConfig{DeviceID: "clock-dev"},
		Auth:     &agentproto.AuthConfig{Type: "sas", Key: d.Authentication.SymmetricKey.PrimaryKey},
		Retry:    &agentproto.RetryConfig{InitialMS: 50, MaxMS: 400, JitterPct: 20},
		SNTP:     &agentproto.SNTPConfig{Server: ts.Addr()},
	}, nil)
	return fw, h, ts
}

func TestSNTPSyncBeforeConnect(t *testing.T) {
	t.Parallel()
	fw, _, ts := clockRig(t, nil)
	ts.SetOffset(90 * time.Minute)
	from := fw.mark()
	fw.must(agentproto.OpOpen, nil, nil)
	ev := decode[agentproto.Clock](t, fw.waitEvent(agentproto.EvClockSync, nil, from).Data)
	want := time.Now().Add(90 * time.Minute)
	if got := time.UnixMilli(ev.UnixMS); !ev.Synced || got.Sub(want).Abs() > 2*time.Second {
		t.Fatalf("clock.synced %v (synced %v), want about %v", got, ev.Synced, want)
	}
	fw.waitEvent(agentproto.EvConn, connState(agentproto.StateConnected), from)
	q := ts.Queries()[0]
	if q.ClientTransmit.Time().Year() != 1970 || q.Version != 4 || q.Mode != sntp.ModeClient {
		t.Fatalf("query %v", q)
	}
	var st agentproto.Status
	fw.must(agentproto.OpStatus, nil, &st)
	if want := time.Now().Add(90*time.Minute + time.Hour); !st.ClockSynced || time.Unix(st.TokenExpires, 0).Sub(want).Abs() > 5*time.Second {
		t.Fatalf("token se %v, want about %v (RTC + TTL)", time.Unix(st.TokenExpires, 0), want)
	}
}

func TestSNTPWaitsWithoutTime(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		set   func(*sntp.Server)
		check func(t *testing.T, qs []sntp.Query)
	}{
		{"no answer", (*sntp.Server).Drop, func(t *testing.T, qs []sntp.Query) {
			if len(qs) < 2 || len(qs) > 6 {
				t.Fatalf("%d queries in the window", len(qs))
			}
			for i := 1; i < len(qs); i++ {
				if gap := qs[i].Time.Sub(qs[i-1].Time); gap < 200*time.Millisecond {
					t.Fatalf("gap %d is %v: no backoff", i, gap)
				}
			}
		}},
		{"kiss-o'-death DENY", func(s *sntp.Server) { s.KissOfDeath(sntp.KissDeny) }, func(t *testing.T, qs []sntp.Query) {
			if len(qs) != 1 {
				t.Fatalf("%d queries after DENY, want 1", len(qs))
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			fw, h, ts := clockRig(t, nil)
			c.set(ts)
			fw.must(agentproto.OpOpen, nil, nil)
			ctx, cancel := context.WithTimeout(context.Background(), waitFor)
			defer cancel()
			if _, err := ts.WaitQuery(ctx, 1); err != nil {
				t.Fatal(err)
			}
			// Observe: nothing may reach the hub (a wait expected to time out).
			wctx, wcancel := context.WithTimeout(context.Background(), 800*time.Millisecond)
			defer wcancel()
			_ = ts.Wait(wctx, func([]sntp.Query) bool { return false })
			if n := len(h.Trace().Entries(nil)); n != 0 {
				t.Fatalf("the hub saw %d trace entries from a board without time\n%s", n, h.TraceSummary(""))
			}
			c.check(t, ts.Queries())
			if fw.countEvents(agentproto.EvConn, connState(agentproto.StateConnected)) != 0 {
				t.Fatal("connected without time")
			}
			// The time server comes back: the board syncs and connects.
			ts.Reset()
			if c.name != "no answer" {
				return // DENY holds the server off for 5 × the retry cap
			}
			from := fw.mark()
			fw.waitEvent(agentproto.EvConn, connState(agentproto.StateConnected), from)
		})
	}
}

func TestSNTPQueryIgnoresStrayAnswers(t *testing.T) {
	t.Parallel()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	now := time.Now()
	go func() {
		buf := make([]byte, 512)
		n, from, err := c.ReadFromUDP(buf)
		if err != nil {
			return
		}
		req, _ := sntp.ParseRequest(buf[:n])
		stray := sntp.Reply(sntp.Packet{Version: 4, Transmit: req.Transmit + 1}, now.Add(time.Hour), now.Add(time.Hour))
		_, _ = c.WriteToUDP(stray.Marshal(), from)
		_, _ = c.WriteToUDP(sntp.Reply(req, now, now).Marshal(), from)
	}()
	got, err := sntpQuery(context.Background(), c.LocalAddr().String(), time.Unix(42, 0), time.Second, func(string) bool { return false })
	if err != nil {
		t.Fatal(err)
	}
	if d := got.Sub(now); d < 0 || d > 500*time.Millisecond {
		t.Fatalf("time %v, want %v (the stray answer an hour later must be ignored)", got, now)
	}
}
