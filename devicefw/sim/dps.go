package sim

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/rig/dpsproto"
	"github.com/hilrun/hilrun/rig/iothub"
)

// DPS client of the reference firmware (dps.register, PROTOCOL.md §4.3):
// one provisioning attempt over MQTT per call, the way the Azure SDKs run
// it (DPS-001..008, PNP-006). Shapes from rig/dpsproto.

const (
	defaultDPSTimeout = 60 * time.Second // the examples' bound (000 L373)
	// dpsDefaultRetry is the wait before a poll when an answer names no
	// retry-after (the azure-sdk-for-c minimum retry delay, 1 s).
	dpsDefaultRetry = time.Second
	dpsMaxRetry     = 30 * time.Second
)

type dpsAnswer struct {
	resp dpsproto.Response
	body []byte
}

func (fw *Firmware) dpsRegister(ctx context.Context, a agentproto.DPSRegisterArgs) (agentproto.DPSResult, *agentproto.Error) {
	dc := fw.client
	if a.IDScope == "" || a.RegistrationID == "" {
		return agentproto.DPSResult{}, agentproto.Errorf(agentproto.ErrBadArgs, "dps.register needs idScope and registrationId")
	}
	if a.Auth == nil || (a.Auth.Type != "sas" && a.Auth.Type != "x509") {
		return agentproto.DPSResult{}, agentproto.Errorf(agentproto.ErrBadArgs, "dps.register needs auth sas or x509")
	}
	if len(a.Payload) > 0 && !json.Valid(a.Payload) {
		return agentproto.DPSResult{}, agentproto.Errorf(agentproto.ErrBadArgs, "dps.register payload must be JSON")
	}
	if dc.on(DefDPSRegIDTruncated) && len(a.RegistrationID) > 64 {
		a.RegistrationID = a.RegistrationID[:64] // defect: a 64-byte registration ID buffer
	}
	host := a.Host
	if host == "" {
		host = dpsproto.DefaultHost
	}
	port := a.Port
	if port == 0 {
		port = dpsproto.Port
	}
	addr := a.Address
	if addr == "" {
		addr = net.JoinHostPort(host, strconv.Itoa(port))
	}
	timeout := defaultDPSTimeout
	if a.TimeoutMS > 0 {
		timeout = time.Duration(a.TimeoutMS) * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	n := fw.nvs
	n.mu.Lock()
	trust := append([]*x509.Certificate(nil), n.Trust...)
	cert := n.Cert
	modelID := n.Config.ModelID
	if n.PnP != nil && n.PnP.ModelID != "" {
		modelID = n.PnP.ModelID // PNP-006: the model of pnp.define
	}
	n.mu.Unlock()

	key := ""
	password := ""
	if a.Auth.Type == "sas" {
		key = a.Auth.Key
		if a.Group && !dc.on(DefDPSGroupKeyNotDerived) {
			dk, err := dpsproto.DeriveKey(key, a.RegistrationID) // DPS-003
			if err != nil {
				return agentproto.DPSResult{}, agentproto.Errorf(agentproto.ErrBadArgs, "group key: %v", err)
			}
			key = dk
		}
		skn := dpsproto.KeyName
		if dc.on(DefDPSNoSkn) {
			skn = "" // defect: the nanoFramework client's token (no skn=registration)
		}
		ttl := time.Duration(a.Auth.TokenTTL) * time.Second
		if ttl <= 0 {
			ttl = defaultTokenTTL
		}
		tok, err := iothub.NewSASToken(dpsproto.ResourceURI(a.IDScope, a.RegistrationID), key, dc.tokenClock().Add(ttl), skn)
		if err != nil {
			return agentproto.DPSResult{}, agentproto.Errorf(agentproto.ErrBadArgs, "SAS token: %v", err)
		}
		password = tok
	} else if cert == nil {
		return agentproto.DPSResult{}, agentproto.Errorf(agentproto.ErrBadArgs, "auth x509 needs a device certificate (cert.set)")
	}

	tlsc := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12, RootCAs: x509.NewCertPool()}
	for _, r := range trust {
		tlsc.RootCAs.AddCert(r)
	}
	if dc.on(DefDPSNoSNI) {
		// defect: no SNI; the chain is still verified against the host.
		tlsc.ServerName = ""
		tlsc.InsecureSkipVerify = true
		roots := tlsc.RootCAs
		tlsc.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			leaf, inter, err := parseChain(raw)
			if err != nil {
				return err
			}
			_, err = leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, Intermediates: inter, CurrentTime: fw.rtc.Now()})
			return err
		}
	}
	dc.dpsVerifyDefects(tlsc, trust, host)
	if dc.on(DefDPSTLSNoVerify) {
		tlsc.InsecureSkipVerify, tlsc.VerifyPeerCertificate = true, nil // defect: no server check at DPS
	}
	if a.Auth.Type == "x509" {
		c := cert
		if dc.on(DefDPSX509LeafOnly) && len(c.Certificate) > 1 {
			cp := *c
			cp.Certificate = cp.Certificate[:1] // defect: the chain is dropped at DPS only
			c = &cp
		}
		if dc.on(DefDPSX509TrustInChain) {
			cp := *c
			cp.Certificate = append([][]byte(nil), c.Certificate...)
			for _, r := range trust {
				cp.Certificate = append(cp.Certificate, r.Raw) // defect: the trusted roots go into the client chain at DPS
			}
			c = &cp
		}
		tlsc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return c, nil }
	}
	username := dpsproto.FormatUsername(a.IDScope, a.RegistrationID, url.Values{"DeviceClientType": {deviceClientType}})
	if dc.on(DefDPSRegIDEscaped) {
		username = dpsproto.FormatUsername(a.IDScope, url.QueryEscape(a.RegistrationID), url.Values{"DeviceClientType": {deviceClientType}}) // defect: the ID is percent-encoded
	}
	if dc.on(DefDPSUsernameHubForm) {
		username = a.IDScope + "/registrations/" + a.RegistrationID + "/?api-version=" + dpsproto.APIVersion // defect: the IoT Hub form
	}

	answers := make(chan dpsAnswer, 8)
	o := paho.NewClientOptions().AddBroker((&url.URL{Scheme: "ssl", Host: addr}).String()).SetClientID(a.RegistrationID).SetProtocolVersion(4).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).SetKeepAlive(defaultKeepAlive).
		SetConnectTimeout(connectTimeout).SetWriteTimeout(connectTimeout).SetOrderMatters(false).SetTLSConfig(tlsc).
		SetCredentialsProvider(func() (string, string) { return username, password }).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
			r, err := dpsproto.ParseResponseTopic(m.Topic())
			if err != nil {
				fw.logf("W", "dps: unexpected topic %s", m.Topic())
				return
			}
			select {
			case answers <- dpsAnswer{resp: r, body: append([]byte(nil), m.Payload()...)}:
			default:
			}
		})
	cli := paho.NewClient(o)
	fail := func(msg string) (agentproto.DPSResult, *agentproto.Error) {
		fw.logf("W", "dps: %s", msg)
		return agentproto.DPSResult{Status: "error", ErrorMessage: msg}, nil
	}
	tok := cli.Connect()
	if !waitToken(ctx, tok) {
		cli.Disconnect(0)
		return fail("connect to the provisioning service timed out")
	}
	if err := tok.Error(); err != nil {
		return fail("CONNECT refused: " + err.Error())
	}
	defer cli.Disconnect(250)

	var rid uint64
	nextRID := func() string {
		rid++
		return strconv.FormatUint(rid, 10)
	}
	// ridMatches correlates an answer with the request in flight (DPS-004:
	// the answer echoes the request's $rid).
	ridMatches := func(got string) bool {
		if dc.on(DefDPSRIDHexCompare) {
			n, err := strconv.ParseUint(got, 16, 64) // defect: the echoed rid is read as hex
			return err == nil && n == rid
		}
		return got == strconv.FormatUint(rid, 10)
	}
	subscribe := func() error {
		st := cli.Subscribe(dpsproto.ResponseFilter, 1, nil)
		if !waitToken(ctx, st) {
			return errors.New("SUBACK timed out")
		}
		return st.Error()
	}
	body := map[string]any{"registrationId": a.RegistrationID}
	payload := dc.dpsPayload(a.Payload, modelID)
	if payload != nil {
		body["payload"] = payload
	}
	reqBody, _ := json.Marshal(body)
	subscribed := false
	if !dc.on(DefDPSRegisterBeforeSub) {
		if err := subscribe(); err != nil {
			return fail("subscribe " + dpsproto.ResponseFilter + ": " + err.Error())
		}
		subscribed = true
	}
	res := agentproto.DPSResult{}
	topic := dpsproto.RegisterTopic(nextRID())
	msg, isRegister := reqBody, true
	timedOut := func() (agentproto.DPSResult, *agentproto.Error) {
		res.Status, res.ErrorMessage = "error", fmt.Sprintf("no final answer within %s (%d polls)", timeout, res.Polls)
		return res, nil
	}
	for {
		pt := cli.Publish(topic, 1, false, msg)
		if !waitToken(ctx, pt) {
			return timedOut()
		}
		if pt.Error() != nil {
			return fail("publishing " + topic + " failed: " + pt.Error().Error())
		}
		if !subscribed {
			if err := subscribe(); err != nil { // defect dps-register-before-subscribe: subscribes only after the PUT
				return fail("subscribe: " + err.Error())
			}
			subscribed = true
		}
		var ans dpsAnswer
		for {
			select {
			case ans = <-answers:
			case <-ctx.Done():
				return timedOut()
			}
			if dc.on(DefDPSErrorAnswerIgnored) && ans.resp.Status >= 400 && ans.resp.Status != 429 {
				fw.logf("W", "dps: answer %d ignored", ans.resp.Status) // defect: only 200, 202 and 429 are understood
				continue
			}
			if ridMatches(ans.resp.RID) {
				break
			}
			fw.logf("W", "dps: answer for $rid=%s ignored (request in flight: %d)", ans.resp.RID, rid)
		}
		wait := dpsDefaultRetry
		if ans.resp.HasRetryAfter {
			wait = time.Duration(ans.resp.RetryAfter) * time.Second
		} else if ans.resp.Status == 202 && dc.on(DefDPSRetryAfterRequired) {
			return fail("a 202 answer without retry-after") // defect: the parameter is taken as mandatory
		}
		if ans.resp.HasRetryAfter && ans.resp.RetryAfter == 0 && ans.resp.Status == 202 && dc.on(DefDPSRetryAfterZeroRefused) {
			return fail("a 202 answer with retry-after=0") // defect: a zero wait is taken as invalid
		}
		if dc.on(DefDPSRetryAfterCapped) && wait > 2*time.Second {
			wait = 2 * time.Second // defect: a client-side cap below what the service asks
		}
		if dc.on(DefDPSRetryAfterFromBody) {
			wait = retryAfterFromBody(ans.body) // defect: looked for in the body, where it never is
		}
		if wait > dpsMaxRetry {
			wait = dpsMaxRetry
		}
		switch {
		case ans.resp.Status == 202 || ans.resp.Status == 200:
			var op dpsproto.Operation
			if err := json.Unmarshal(ans.body, &op); err != nil {
				return fail(fmt.Sprintf("answer %d is not an operation: %v", ans.resp.Status, err))
			}
			if op.OperationID != "" {
				res.OperationID = op.OperationID
			}
			if st := op.RegistrationState; st != nil && dpsproto.Final(op.Status) {
				res.Status, res.AssignedHub, res.DeviceID, res.ErrorCode, res.ErrorMessage, res.Payload =
					op.Status, st.AssignedHub, st.DeviceID, st.ErrorCode, st.ErrorMessage, st.Payload
				if op.Status != dpsproto.StatusAssigned && ans.resp.Status == 200 && dc.on(DefDPSFailedPolledForever) {
					// defect: only 200 + assigned ends the loop; the failed status is polled again
					res.Status = ""
					break
				}
				fw.logf("I", "dps: registration %s: %s (hub %s, device %s)", a.RegistrationID, res.Status, res.AssignedHub, res.DeviceID)
				if res.Status == dpsproto.StatusAssigned && a.Apply {
					dc.applyAssignment(res, a, key)
				}
				return res, nil
			}
		case ans.resp.Status == 429:
			// throttled: the same request again after retry-after
			if dc.on(DefDPS429NoWait) {
				wait = 0 // defect: a throttled request is sent again at once
			}
			if !sleepCtx(ctx, wait) {
				return timedOut()
			}
			if isRegister {
				topic = dpsproto.RegisterTopic(nextRID())
			} else {
				topic = dpsproto.StatusTopic(nextRID(), res.OperationID)
			}
			continue
		default:
			var eb dpsproto.ErrorBody
			_ = json.Unmarshal(ans.body, &eb)
			res.Status, res.ErrorCode, res.ErrorMessage = "error", eb.ErrorCode, fmt.Sprintf("%d: %s", ans.resp.Status, eb.Message)
			return res, nil
		}
		if res.OperationID == "" {
			return fail("a 202 answer without operationId")
		}
		if !sleepCtx(ctx, wait) {
			return timedOut()
		}
		res.Polls++
		topic, msg, isRegister = dpsproto.StatusTopic(nextRID(), res.OperationID), nil, false
	}
}

// waitToken waits for a paho token within ctx.
func waitToken(ctx context.Context, t paho.Token) bool {
	select {
	case <-t.Done():
		return true
	case <-ctx.Done():
		return false
	}
}

var dpsApplyMu sync.Mutex

// applyAssignment stores the assignment as the hub configuration
// (DPS-006: the returned hub host and device ID), keeping the dial address.
func (dc *deviceClient) applyAssignment(res agentproto.DPSResult, a agentproto.DPSRegisterArgs, key string) {
	dpsApplyMu.Lock()
	defer dpsApplyMu.Unlock()
	deviceID := res.DeviceID
	if dc.on(DefDPSRegistrationIDAsDevice) {
		deviceID = a.RegistrationID // defect: the assigned device ID is ignored
	}
	n := dc.fw.nvs
	n.mu.Lock()
	c := &n.Config
	hc := agentproto.HubConfig{Port: 8883}
	if c.Hub != nil {
		hc = *c.Hub
	}
	hc.Host = res.AssignedHub
	c.Hub = &hc
	c.Identity = &agentproto.IdentityConfig{DeviceID: deviceID}
	auth := *a.Auth
	if auth.Type == "sas" {
		auth.Key = key
	}
	c.Auth = &auth
	n.mu.Unlock()
	dc.fw.changed(changedNVS)
}

// dpsPayload is the registration payload: the custom data, with the
// model ID added when one is configured (PNP-006).
func (dc *deviceClient) dpsPayload(custom json.RawMessage, modelID string) any {
	if dc.on(DefDPSModelIDMissing) {
		modelID = "" // defect: the model ID is left out of the registration
	}
	var out any
	if dc.on(DefDPSPayloadASCII) {
		custom = asciiOnly(custom) // defect: non-ASCII characters become '?'
	}
	if len(custom) > 0 {
		if dc.on(DefDPSPayloadString) {
			return string(custom) // defect: the JSON text sent as a JSON string
		}
		out = json.RawMessage(custom)
	}
	if modelID == "" {
		return out
	}
	m := map[string]any{}
	if len(custom) > 0 {
		if err := json.Unmarshal(custom, &m); err != nil {
			return out
		}
	}
	m["modelId"] = modelID
	return m
}

func retryAfterFromBody(b []byte) time.Duration {
	var v struct {
		RetryAfter int `json:"retryAfter"`
	}
	_ = json.Unmarshal(b, &v)
	return time.Duration(v.RetryAfter) * time.Second
}

// dpsVerifyDefects applies the CERT-005 switches: the provisioning
// connection's server check is weaker than the hub's in one way each.
// They replace Go's check with InsecureSkipVerify plus a check of their
// own, as clients with a hand-rolled verifier do.
func (dc *deviceClient) dpsVerifyDefects(tlsc *tls.Config, trust []*x509.Certificate, host string) {
	now := dc.fw.rtc.Now
	switch {
	case dc.on(DefDPSTrustServerChain):
		tlsc.InsecureSkipVerify = true
		tlsc.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			leaf, inter, err := parseChain(raw)
			if err != nil {
				return err
			}
			roots := tlsc.RootCAs.Clone()
			if len(raw) > 1 {
				last, err := x509.ParseCertificate(raw[len(raw)-1])
				if err != nil {
					return err
				}
				roots.AddCert(last) // defect: the endpoint's own CA becomes an anchor
			}
			_, err = leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, Intermediates: inter, CurrentTime: now()})
			return err
		}
	case dc.on(DefDPSSkipHostname):
		verifyChainSkippingHostname(tlsc, now)
	case dc.on(DefDPSIgnoreValidity):
		tlsc.InsecureSkipVerify = true
		tlsc.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			return verifyIgnoringDates(raw, trust, host) // defect: no dates
		}
	}
}
