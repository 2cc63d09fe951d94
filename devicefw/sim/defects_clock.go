package sim

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"time"

	"github.com/hilrun/hilrun/devicefw/agentproto"
)

// Defect switches added for the CLOCK specs. Each needs a row in DEFECTS.md
// (section "Added for the CLOCK specs") and an implementation at the point
// in the client where the rule is kept.
const (
	DefClockIgnoreSync  = "clock-ignore-sync"
	DefSNTPHammer       = "sntp-hammer"
	DefSNTPIgnoreKoD    = "sntp-ignore-kod"
	DefTokenSELocalTime = "token-se-local-time"
)

// clockDefects lists them; see Defects.
var clockDefects = []Defect{
	{DefClockIgnoreSync, "CLOCK-001", "the client connects without waiting for UTC time: SNTP runs in the background while the first attempt goes out; with the RTC unsynced the server certificate's validity dates are not checked (as mbedTLS without a time source) and the SAS se is computed from the 1970 clock"},
	{DefSNTPHammer, "CLOCK-001", "an unanswered SNTP query is repeated at once after a 50 ms timeout, without backoff; bounded: 200 such queries per wait"},
	{DefSNTPIgnoreKoD, "CLOCK-001", "a kiss-o'-death answer is treated like a lost answer: the server is asked again after the normal backoff instead of being left alone"},
	{DefTokenSELocalTime, "CLOCK-002", "the SAS se is computed from local time (UTC+1) read as UTC, so tokens expire one hour later than the configured lifetime"},
}

const (
	// sntp-hammer: per-query timeout and the bound of the tight loop.
	sntpHammerTimeout = 50 * time.Millisecond
	sntpHammerMax     = 200
	// token-se-local-time: the zone offset taken for UTC.
	localZoneOffset = time.Hour
)

// awaitClock holds a connection attempt until the RTC holds UTC (CLOCK-001):
// a board that boots at 1970 learns the time over SNTP first, retrying
// with backoff while the time server is unreachable, and neither opens TLS
// nor signs a token meanwhile. It returns false when the session ended.
func (dc *deviceClient) awaitClock(s *session, cc connConfig) bool {
	if dc.fw.rtc.Synced() {
		return true
	}
	if dc.on(DefClockIgnoreSync) {
		// Defect: sync in the background (once) and connect right away.
		dc.fw.sntp.mu.Lock()
		start := !dc.fw.sntp.background
		dc.fw.sntp.background = true
		dc.fw.sntp.mu.Unlock()
		if start {
			go func() {
				dc.fw.waitForTime(s.ctx, cc, nil)
				dc.fw.sntp.mu.Lock()
				dc.fw.sntp.background = false
				dc.fw.sntp.mu.Unlock()
			}()
		}
		return true
	}
	dc.fw.logf("I", "RTC not set (%s): getting UTC time before connecting", dc.fw.rtc.Now().UTC().Format(time.RFC3339))
	return dc.fw.waitForTime(s.ctx, cc, func(reason string, attempt int, next time.Duration) {
		dc.setState(agentproto.ConnEvent{State: agentproto.StateBackoff, Reason: reason, Attempt: attempt, NextMS: int(next.Milliseconds())})
	})
}

// clockTLS makes the server certificate check use the RTC, as a device's
// TLS stack does (CLOCK-003 relies on it). clock-ignore-sync: with the RTC
// unsynced, validity dates are not checked at all (chain and host name
// still are), like mbedTLS built without a time source.
func (dc *deviceClient) clockTLS(tlsc *tls.Config, cc connConfig) {
	if dc.fw.rtc.Synced() || !dc.on(DefClockIgnoreSync) {
		tlsc.Time = dc.fw.rtc.Now
		return
	}
	tlsc.InsecureSkipVerify = true
	tlsc.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("no server certificate")
		}
		inter := x509.NewCertPool()
		var leaf *x509.Certificate
		var at time.Time
		for i, der := range raw {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				return err
			}
			if i == 0 {
				leaf = c
			} else {
				inter.AddCert(c)
			}
			if c.NotBefore.After(at) {
				at = c.NotBefore
			}
		}
		// A moment at which every presented certificate is valid: the
		// dates do not count.
		_, err := leaf.Verify(x509.VerifyOptions{Roots: tlsc.RootCAs, Intermediates: inter, DNSName: cc.host, CurrentTime: at.Add(time.Second)})
		return err
	}
}

// tokenClock is the time a SAS token's se is computed from: the RTC
// (CLOCK-002), or (token-se-local-time) local time read as UTC.
func (dc *deviceClient) tokenClock() time.Time {
	now := dc.fw.rtc.Now()
	if dc.on(DefTokenSELocalTime) {
		now = now.Add(localZoneOffset)
	}
	return now
}
