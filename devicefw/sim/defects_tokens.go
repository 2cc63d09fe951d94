package sim

import (
	"sync"
	"time"
)

// Defect switches added for the RECON-007 specs (tokens never reused). Each
// needs a row in DEFECTS.md (section "Added for the RECON-007 specs") and an
// implementation at the point in the client where the rule is kept: the
// correct client signs a fresh token for every attempt (token), so the
// defects add the cache a token-reusing client would have.
const (
	DefTokenReuseRefused = "token-reuse-after-refusal"
	DefTokenReuseExpired = "token-reuse-expired"
)

// tokenDefects lists them; see Defects.
var tokenDefects = []Defect{
	{DefTokenReuseRefused, "RECON-007", "a SAS token refused with CONNACK 4 or 5 is kept and presented again on the next attempts (the next client.open included) as long as its se lies ahead, instead of a freshly signed one"},
	{DefTokenReuseExpired, "RECON-007", "after a lost connection every reconnect attempt of that client.open presents the lost connection's token again without looking at its se, so an outage longer than the token's life ends with an expired token on the wire"},
}

// cachedToken is a SAS token with what it was made for.
type cachedToken struct {
	password string
	exp      time.Time
	sr, key  string // the resource and key it was signed for
}

func (t *cachedToken) fits(sr, key string) bool { return t != nil && t.sr == sr && t.key == key }

// tokenCache holds the tokens the reuse defects present again. The correct
// client never reads it.
type tokenCache struct {
	mu      sync.Mutex
	refused *cachedToken // the last token refused with CONNACK 4 or 5
	last    *cachedToken // the token of the last accepted connection
	lostIn  *session     // the client.open whose connection was lost since
}

// reuseToken returns the password (and its se) an attempt presents: the
// freshly signed one, or under the reuse defects a cached one.
func (dc *deviceClient) reuseToken(s *session, cc connConfig, password string, exp time.Time) (string, time.Time) {
	reuseRefused, reuseExpired := dc.on(DefTokenReuseRefused), dc.on(DefTokenReuseExpired)
	if !reuseRefused && !reuseExpired {
		return password, exp
	}
	sr := dc.resourceURI(cc)
	tc := &dc.toks
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if reuseRefused && tc.refused.fits(sr, cc.key) && tc.refused.exp.After(dc.fw.rtc.Now()) {
		return tc.refused.password, tc.refused.exp // defect: the refused token again
	}
	if reuseExpired && tc.lostIn == s && tc.last.fits(sr, cc.key) {
		return tc.last.password, tc.last.exp // defect: se is not looked at
	}
	return password, exp
}

// noteToken records the outcome of an attempt that presented password:
// rc 0 accepted, 4 or 5 refused; other outcomes leave the cache alone.
func (dc *deviceClient) noteToken(s *session, cc connConfig, password string, exp time.Time, rc byte) {
	if cc.authType != "sas" || password == "" {
		return
	}
	t := &cachedToken{password: password, exp: exp, sr: dc.resourceURI(cc), key: cc.key}
	tc := &dc.toks
	tc.mu.Lock()
	defer tc.mu.Unlock()
	switch rc {
	case 0:
		tc.refused, tc.last, tc.lostIn = nil, t, nil
	case 4, 5:
		tc.refused = t
	}
}

// noteTokenLost records that the connection of client.open s was lost (not
// ended by the client itself).
func (dc *deviceClient) noteTokenLost(s *session) {
	dc.toks.mu.Lock()
	dc.toks.lostIn = s
	dc.toks.mu.Unlock()
}
