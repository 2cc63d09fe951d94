package sim

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hilrun/hilrun/devicefw/agentproto"
)

// The firmware's SNTP client (RFC 4330), written from the RFC on its own
// rather than sharing code with the suite's time server (rig/sntp), so the
// two check each other. A board without a battery-backed clock boots at
// 1970; before its first TLS handshake or token it must learn UTC
// (CLOCK-001). The client asks the configured server, waits a bounded
// time for the answer, retries with the reconnect backoff (no hammering)
// and honours kiss-o'-death: RATE holds the server off for the retry cap,
// DENY and RSTR (and unknown codes) for kodDenyFactor times that. lwIP's
// SNTP client, which ESP-IDF uses, behaves alike (15 s receive timeout,
// exponential retry); the timings here follow the configured retry policy
// so that the virtual board's compressed timing applies to them as well.

const (
	ntpEpochOffset = 2208988800 // seconds from 1900-01-01 to 1970-01-01
	ntpPacketSize  = 48
	// kodDenyFactor × the retry cap is how long a server that said DENY or
	// RSTR is left alone.
	kodDenyFactor = 5
)

// sntpState is what the SNTP client remembers across attempts.
type sntpState struct {
	mu         sync.Mutex
	holdUntil  map[string]time.Time // server → no query before (kiss-o'-death)
	background bool                 // a background sync runs (clock-ignore-sync)
}

func (st *sntpState) heldOff(server string) time.Duration {
	st.mu.Lock()
	defer st.mu.Unlock()
	return time.Until(st.holdUntil[server])
}

func (st *sntpState) holdOff(server string, d time.Duration) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.holdUntil == nil {
		st.holdUntil = map[string]time.Time{}
	}
	st.holdUntil[server] = time.Now().Add(d)
}

// kissError is a kiss-o'-death answer.
type kissError struct{ code string }

func (k *kissError) Error() string { return fmt.Sprintf("kiss-o'-death %q", k.code) }

// sntpTimeout is how long one query waits for its answer: twice the
// initial retry delay, between 200 ms and 5 s.
func sntpTimeout(cc connConfig) time.Duration {
	return min(max(2*cc.retryInitial, 200*time.Millisecond), 5*time.Second)
}

// kodHold is how long a server that sent a kiss-o'-death is left alone.
func kodHold(cc connConfig, code string) time.Duration {
	if code == "RATE" {
		return cc.retryMax
	}
	return kodDenyFactor * cc.retryMax
}

// sntpServer is the configured time server ("" when none).
func (fw *Firmware) sntpServer() string {
	fw.nvs.mu.Lock()
	defer fw.nvs.mu.Unlock()
	if c := fw.nvs.Config.SNTP; c != nil {
		return c.Server
	}
	return ""
}

// waitForTime blocks until the RTC holds UTC: set by the host (clock.set)
// or learnt over SNTP. report, when set, is told what the device waits for
// and how long until its next try. It returns false when ctx ended first.
func (fw *Firmware) waitForTime(ctx context.Context, cc connConfig, report func(reason string, attempt int, next time.Duration)) bool {
	attempt, hammered := 0, 0
	for {
		if fw.rtc.Synced() {
			return true
		}
		changed := fw.rtc.Changed()
		server := fw.sntpServer()
		var delay time.Duration
		var reason string
		switch hold := fw.sntp.heldOff(server); {
		case server == "":
			reason, delay = "no SNTP server configured", cc.retryMax
		case hold > 0:
			reason, delay = "SNTP server "+server+" sent a kiss-o'-death; not asking it again yet", hold
		default:
			attempt++
			timeout := sntpTimeout(cc)
			hammer := fw.clientOn(DefSNTPHammer) && hammered < sntpHammerMax
			if hammer {
				timeout = sntpHammerTimeout
			}
			t, err := sntpQuery(ctx, server, fw.rtc.Now(), timeout, fw.clientOn)
			if ctx.Err() != nil {
				return false
			}
			if err == nil {
				fw.rtc.Set(t, true)
				fw.changed(changedRTC)
				fw.logf("I", "SNTP: clock set to %s from %s", t.UTC().Format(time.RFC3339Nano), server)
				fw.client.emit(agentproto.EvClockSync, agentproto.Clock{UnixMS: t.UnixMilli(), Synced: true})
				return true
			}
			reason = "SNTP " + server + ": " + err.Error()
			delay = backoff(cc, attempt)
			var kod *kissError
			if errors.As(err, &kod) && fw.clientOn(DefSNTPKoDCrash) {
				kodCrash(server)
			}
			if errors.As(err, &kod) && !fw.clientOn(DefSNTPIgnoreKoD) {
				delay = kodHold(cc, kod.code)
				fw.sntp.holdOff(server, delay)
			}
			if hammer {
				hammered++
				delay = 0
			}
		}
		if report != nil {
			report("waiting for UTC time: "+reason, attempt, delay)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-changed:
		case <-t.C:
		}
		t.Stop()
	}
}

// clientOn reports whether a defect switch is on (the client's lock
// guards the set).
func (fw *Firmware) clientOn(name string) bool { return fw.client.on(name) }

// sntpQuery asks server for the time once. now is the device's clock,
// sent as the transmit timestamp and expected back as the originate
// timestamp (RFC 4330 §5), so that stray or forged answers are ignored.
// on tells which defect switches are on (sntp-request-mode-2 and
// sntp-zero-transmit-accepted act here).
func sntpQuery(ctx context.Context, server string, now time.Time, timeout time.Duration, on func(string) bool) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", server)
	if err != nil {
		return time.Time{}, err
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	_ = c.SetDeadline(deadline)
	req := make([]byte, ntpPacketSize)
	req[0] = 0<<6 | 4<<3 | 3 // LI 0, version 4, mode 3 (client)
	if on(DefSNTPRequestMode2) {
		req[0] = sntpRequestMode2(req[0])
	}
	sent := ntpTimestamp(now)
	if sent == 0 {
		sent = 1 // 0 means "no timestamp"
	}
	binary.BigEndian.PutUint64(req[40:], sent)
	start := time.Now()
	if _, err := c.Write(req); err != nil {
		return time.Time{}, err
	}
	buf := make([]byte, 512)
	for {
		n, err := c.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return time.Time{}, fmt.Errorf("no answer within %s", timeout)
			}
			return time.Time{}, err
		}
		elapsed := time.Since(start)
		b := buf[:n]
		if n < ntpPacketSize || b[0]&7 != 4 || binary.BigEndian.Uint64(b[24:]) != sent {
			continue // not the answer to this request
		}
		if b[1] == 0 {
			return time.Time{}, &kissError{code: kissCode(b[12:16])}
		}
		if b[0]>>6 == 3 || b[1] > 15 {
			return time.Time{}, fmt.Errorf("server not synchronised (leap %d, stratum %d)", b[0]>>6, b[1])
		}
		recv := ntpTime(binary.BigEndian.Uint64(b[32:]))
		xmit := ntpTime(binary.BigEndian.Uint64(b[40:]))
		if xmit.IsZero() && !on(DefSNTPZeroTransmitTaken) {
			return time.Time{}, errors.New("answer without a transmit timestamp")
		}
		// The answer left the server at xmit; half the network round trip
		// (the time away less the server's own time) has passed since.
		delay := max(elapsed-xmit.Sub(recv), 0)
		return xmit.Add(delay / 2), nil
	}
}

func kissCode(b []byte) string {
	n := 0
	for n < len(b) && b[n] >= 0x20 && b[n] < 0x7f {
		n++
	}
	return string(b[:n])
}

// ntpTimestamp encodes t (NTP era 0 up to 2036, then era 1).
func ntpTimestamp(t time.Time) uint64 {
	secs := uint64(t.Unix()+ntpEpochOffset) & 0xffffffff
	return secs<<32 | (uint64(t.Nanosecond())<<32)/1e9
}

// ntpTime decodes a timestamp; a clear top bit means era 1 (RFC 4330 §3).
func ntpTime(ts uint64) time.Time {
	if ts == 0 {
		return time.Time{}
	}
	secs := int64(ts >> 32)
	if secs&0x80000000 == 0 {
		secs += 1 << 32
	}
	return time.Unix(secs-ntpEpochOffset, int64((ts&0xffffffff)*1e9>>32)).UTC()
}
