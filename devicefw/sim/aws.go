package sim

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/rig/awsproto"
)

// CloudAWS is the --cloud value of the firmware's AWS IoT Core mode: the
// image then declares the `aws` capability and its client speaks to AWS
// IoT Core (mutual TLS with the thing certificate, ClientId = thing name,
// the Device Shadow service, telemetry and C2D on configured topics)
// instead of IoT Hub. A real firmware is built for one cloud; so is this
// image, at flash time.
const CloudAWS = "aws"

// ValidateCloud checks a --cloud value ("" and "azure" are IoT Hub).
func ValidateCloud(c string) error {
	switch c {
	case "", "azure", CloudAWS:
		return nil
	}
	return fmt.Errorf("unknown cloud %q: want azure or aws", c)
}

// awsClient is the firmware's AWS IoT client: what the seed SDK
// (nanoFramework.Aws.IoTCore.Devices) does when it works as documented.
type awsClient struct {
	fw *Firmware

	mu       sync.Mutex
	state    string
	reason   string
	connects int
	open     bool
	stop     chan struct{}
	cli      paho.Client
	subbed   map[string]bool // shadow names whose answer topics are subscribed
	pending  []*shadowWait
	tokSeq   uint64
	ref      uint64
	versions map[string]int64          // last shadow version seen, by shadow name
	desired  map[string]map[string]any // desired state held, by shadow name
	oldCert  *tls.Certificate          // aws-rotate-ignored keeps presenting it
	iam      bool                      // aws-iam-fallback: a refused attempt was made
}

type shadowWait struct {
	name, op, token string
	ch              chan shadowAnswer
}

type shadowAnswer struct {
	accepted bool
	body     []byte
}

func newAWSClient(fw *Firmware) *awsClient {
	return &awsClient{fw: fw, state: agentproto.StateIdle, subbed: map[string]bool{}, versions: map[string]int64{}, desired: map[string]map[string]any{}}
}

func (ac *awsClient) on(d string) bool {
	ac.fw.client.mu.Lock()
	defer ac.fw.client.mu.Unlock()
	return ac.fw.defects[d]
}

type awsConf struct {
	endpoint, addr, thing, telemetry, c2d string
	qos                                   byte
	keepAlive                             time.Duration
	timeout                               time.Duration
	retryInitial, retryMax                time.Duration
	trust                                 []*x509.Certificate
	cert                                  *tls.Certificate
}

func (ac *awsClient) conf() (awsConf, *agentproto.Error) {
	n := ac.fw.nvs
	n.mu.Lock()
	defer n.mu.Unlock()
	a := n.Config.AWS
	if a == nil || a.ThingName == "" || a.Endpoint == "" {
		return awsConf{}, agentproto.Errorf(agentproto.ErrBadArgs, "configure the aws section (endpoint, thingName) first")
	}
	c := awsConf{endpoint: a.Endpoint, addr: a.Address, thing: a.ThingName, telemetry: a.TelemetryTopic, c2d: a.C2DFilter,
		qos: 1, keepAlive: 60 * time.Second, timeout: 20 * time.Second, retryInitial: time.Second, retryMax: 60 * time.Second,
		trust: append([]*x509.Certificate(nil), n.Trust...), cert: n.Cert}
	if c.addr == "" {
		port := a.Port
		if port == 0 {
			port = awsproto.Port
		}
		c.addr = net.JoinHostPort(a.Endpoint, strconv.Itoa(port))
	}
	if c.telemetry == "" {
		c.telemetry = awsproto.DefaultTelemetryTopic(a.ThingName)
	}
	if c.c2d == "" {
		c.c2d = awsproto.DefaultC2DFilter(a.ThingName)
	}
	if a.QoS != nil {
		c.qos = byte(*a.QoS)
	}
	if a.KeepAliveS > 0 {
		c.keepAlive = time.Duration(a.KeepAliveS) * time.Second
	}
	if a.ShadowTimeoutMS > 0 {
		c.timeout = time.Duration(a.ShadowTimeoutMS) * time.Millisecond
	}
	if r := n.Config.Retry; r != nil {
		if r.InitialMS > 0 {
			c.retryInitial = time.Duration(r.InitialMS) * time.Millisecond
		}
		if r.MaxMS > 0 {
			c.retryMax = time.Duration(r.MaxMS) * time.Millisecond
		}
	}
	return c, nil
}

func (ac *awsClient) setState(ev agentproto.ConnEvent) {
	ac.mu.Lock()
	ac.state, ac.reason = ev.State, ev.Reason
	ac.mu.Unlock()
	ac.fw.emit(agentproto.EvConn, ev)
}

func (ac *awsClient) status() agentproto.Status {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	return agentproto.Status{State: ac.state, Reason: ac.reason, Connects: ac.connects, ClockUnixMS: ac.fw.rtc.Now().UnixMilli(), ClockSynced: ac.fw.rtc.Synced()}
}

// openClient starts the connect loop; already is true when it runs.
func (ac *awsClient) openClient() (bool, *agentproto.Error) {
	if _, err := ac.conf(); err != nil {
		return false, err
	}
	ac.mu.Lock()
	if ac.open {
		ac.mu.Unlock()
		return true, nil
	}
	ac.open = true
	stop := make(chan struct{})
	ac.stop = stop
	ac.mu.Unlock()
	go ac.loop(stop)
	return false, nil
}

func (ac *awsClient) closeClient(graceful bool) {
	ac.mu.Lock()
	if !ac.open {
		ac.mu.Unlock()
		return
	}
	ac.open = false
	close(ac.stop)
	cli := ac.cli
	ac.cli = nil
	ac.mu.Unlock()
	if cli != nil {
		if graceful {
			cli.Disconnect(100)
		} else {
			cli.Disconnect(0)
		}
	}
	ac.setState(agentproto.ConnEvent{State: agentproto.StateIdle, Reason: "closed by the application"})
}

func (ac *awsClient) shutdown() { ac.closeClient(false) }

// loop connects, waits for the connection to end and reconnects after a
// backoff, until closed.
func (ac *awsClient) loop(stop chan struct{}) {
	for attempt := 1; ; attempt++ {
		select {
		case <-stop:
			return
		default:
		}
		c, aerr := ac.conf()
		if aerr != nil {
			//mutate:agent report: the stopped event the agent is told when the aws section is unusable; the loop returns either way
			ac.setState(agentproto.ConnEvent{State: agentproto.StateStopped, Reason: aerr.Msg})
			return
		}
		ac.setState(agentproto.ConnEvent{State: agentproto.StateConnecting, Attempt: attempt})
		lost := make(chan struct{})
		cli, err := ac.connect(c, lost)
		if err != nil && ac.on(DefAWSIAMFallback) {
			ac.mu.Lock()
			ac.iam = true // defect: the next attempts fall back to username/password
			ac.mu.Unlock()
		}
		if err == nil {
			ac.mu.Lock()
			if !ac.open || ac.stop != stop {
				ac.mu.Unlock()
				cli.Disconnect(0)
				return
			}
			ac.cli = cli
			ac.connects++
			ac.subbed = map[string]bool{}
			ac.mu.Unlock()
			if err = ac.subscribe(cli, c, ""); err == nil {
				ac.setState(agentproto.ConnEvent{State: agentproto.StateConnected, Attempt: attempt})
				attempt = 0
				select {
				case <-stop:
					return
				case <-lost:
				}
				ac.mu.Lock()
				if ac.cli == cli {
					ac.cli = nil
				}
				ac.mu.Unlock()
				err = errors.New("connection lost")
			} else {
				cli.Disconnect(0)
			}
		}
		d := c.retryInitial << min(max(attempt-1, 0), 10)
		if d > c.retryMax {
			d = c.retryMax
		}
		ac.setState(agentproto.ConnEvent{State: agentproto.StateBackoff, Reason: err.Error(), Attempt: attempt, NextMS: int(d / time.Millisecond)})
		select {
		case <-stop:
			return
		case <-time.After(d):
		}
	}
}

// connect makes one attempt: TLS 1.2+ to the ATS endpoint with SNI, the
// thing certificate (AWS-002), ClientId = thing name (AWS-005).
func (ac *awsClient) connect(c awsConf, lost chan struct{}) (paho.Client, error) {
	tlsc := &tls.Config{ServerName: c.endpoint, MinVersion: tls.VersionTLS12, RootCAs: x509.NewCertPool()}
	for _, r := range c.trust {
		tlsc.RootCAs.AddCert(r)
	}
	rtc := ac.fw.rtc
	tlsc.Time = rtc.Now
	cert := c.cert
	if ac.on(DefAWSRotateIgnored) {
		ac.mu.Lock()
		if ac.oldCert != nil {
			cert = ac.oldCert
		}
		ac.mu.Unlock()
	}
	iam, fallback := ac.on(DefAWSNoClientCert), ac.on(DefAWSIAMFallback)
	ac.mu.Lock()
	iam = iam || (fallback && ac.iam)
	ac.mu.Unlock()
	if cert != nil && !iam {
		tlsc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	if ac.on(DefAWSSkipVerify) {
		tlsc.InsecureSkipVerify = true
	}
	ac.awsVerifyDefects(tlsc, c.trust, c.endpoint)
	if ac.on(DefAWSLegacyEndpoint) {
		tlsc.ServerName = strings.Replace(c.endpoint, "-ats.", ".", 1)
	}
	scheme := "ssl"
	if ac.on(DefAWSPlaintext) {
		scheme = "tcp"
	}
	clientID := c.thing
	if ac.on(DefAWSClientID23) && len(clientID) > 23 {
		clientID = clientID[:23] // defect: MQTT 3.1's 23-character ClientId limit
	}
	if ac.on(DefAWSClientIDSuffix) {
		clientID = c.thing + "-client"
	}
	var once sync.Once
	o := paho.NewClientOptions().AddBroker(scheme + "://" + c.addr).SetClientID(clientID).SetCleanSession(true).
		SetAutoReconnect(false).SetConnectRetry(false).SetKeepAlive(c.keepAlive).SetConnectTimeout(5 * time.Second).
		SetWriteTimeout(5 * time.Second).SetOrderMatters(false).SetTLSConfig(tlsc).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { ac.onMessage(c, m) }).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			ac.fw.logf("W", "aws: connection lost: %v", err)
			once.Do(func() { close(lost) })
		})
	if iam {
		o.SetUsername(c.thing).SetPassword("iam-credentials") // the IAM path the seed SDK lists but does not support
	}
	cli := paho.NewClient(o)
	tok := cli.Connect()
	if !tok.WaitTimeout(8 * time.Second) {
		cli.Disconnect(0)
		return nil, errors.New("CONNECT timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	return cli, nil
}

// answerTopics are the exact topics a shadow's answers come on (AWS-010:
// no `shadow/#`, which would also deliver the device's own requests).
func answerTopics(thing, name string) []string {
	var out []string
	for _, op := range []string{awsproto.OpGet, awsproto.OpUpdate, awsproto.OpDelete} {
		for _, a := range []string{awsproto.Accepted, awsproto.Rejected} {
			out = append(out, awsproto.ShadowTopic(thing, name, op, a))
		}
	}
	return append(out, awsproto.ShadowTopic(thing, name, awsproto.OpUpdate, awsproto.Delta))
}

// subscribe subscribes to a shadow's answer topics (and, for the classic
// shadow at connect time, the C2D filter), once per connection.
func (ac *awsClient) subscribe(cli paho.Client, c awsConf, name string) error {
	ac.mu.Lock()
	done := ac.subbed[name]
	ac.mu.Unlock()
	if done {
		return nil
	}
	filters := map[string]byte{}
	if ac.on(DefAWSShadowWildcard) {
		filters[awsproto.ShadowWildcard(c.thing)] = 1 // what the seed SDK subscribes to
		ac.mu.Lock()
		ac.subbed[name] = true
		ac.mu.Unlock()
		if name != "" {
			return nil
		}
	} else {
		for _, t := range answerTopics(c.thing, name) {
			filters[t] = 1
		}
	}
	if name == "" {
		filters[c.c2d] = 1
	}
	tok := cli.SubscribeMultiple(filters, nil)
	if !tok.WaitTimeout(5 * time.Second) {
		return errors.New("SUBACK timed out")
	}
	if err := tok.Error(); err != nil {
		return err
	}
	ac.mu.Lock()
	ac.subbed[name] = true
	ac.mu.Unlock()
	return nil
}

func (ac *awsClient) onMessage(c awsConf, m paho.Message) {
	ref, isShadow := awsproto.ParseShadowTopic(m.Topic())
	switch {
	case isShadow && ref.Thing == c.thing && ref.Answer == awsproto.Delta:
		name := ref.Name
		if ac.on(DefAWSNamedDeltaClassic) {
			name = "" // defect: every delta is taken for the classic shadow's
		}
		ac.onDelta(name, m.Payload())
	case isShadow && (ref.Answer == awsproto.Accepted || ref.Answer == awsproto.Rejected):
		ac.deliver(ref, m.Payload())
	case isShadow:
		// documents, or the device's own requests echoed by a wide filter
	case awsproto.FilterMatches(c.c2d, m.Topic()):
		p := m.Payload()
		sum := sha256.Sum256(p)
		ev := agentproto.C2DEvent{Topic: m.Topic(), Properties: map[string]string{}, Size: len(p), SHA256: hex.EncodeToString(sum[:]), Dup: m.Duplicate()}
		ev.Payload = string(p[:min(len(p), 512)])
		ac.fw.emit(agentproto.EvC2D, ev)
	}
}

func (ac *awsClient) deliver(ref awsproto.ShadowRef, body []byte) {
	doc, _ := awsproto.ParseResponse(body)
	ac.mu.Lock()
	defer ac.mu.Unlock()
	pick := -1
	for i, w := range ac.pending {
		if w.name != ref.Name || w.op != ref.Op {
			continue
		}
		if doc.ClientToken != "" && w.token == doc.ClientToken {
			pick = i
			break
		}
		if doc.ClientToken == "" && pick < 0 {
			pick = i // an answer without a token (an empty get, invalid JSON) goes to the oldest request
		}
	}
	if pick < 0 {
		return
	}
	w := ac.pending[pick]
	ac.pending = append(ac.pending[:pick], ac.pending[pick+1:]...)
	w.ch <- shadowAnswer{accepted: ref.Answer == awsproto.Accepted, body: body}
}

func (ac *awsClient) onDelta(name string, body []byte) {
	var d struct {
		Version int64          `json:"version"`
		State   map[string]any `json:"state"`
	}
	if err := json.Unmarshal(body, &d); err != nil {
		ac.fw.logf("W", "aws: delta is not JSON: %v", err)
		return
	}
	state := d.State
	if ac.on(DefAWSDeltaAsShadow) {
		// The seed SDK reads the delta as a full shadow: only
		// state.desired / state.reported, which a delta does not have.
		var full awsproto.StateSections
		b, _ := json.Marshal(d.State)
		_ = json.Unmarshal(b, &full)
		state = full.Desired
	}
	if state == nil {
		state = map[string]any{}
	}
	ac.mu.Lock()
	if !ac.on(DefAWSNoVersion) {
		ac.versions[name] = max(ac.versions[name], d.Version)
	}
	held := ac.desired[name]
	if held == nil {
		held = map[string]any{}
	}
	for k, v := range state {
		held[k] = v
	}
	ac.desired[name] = held
	ac.mu.Unlock()
	ac.fw.emit(agentproto.EvShadowDelta, agentproto.ShadowDeltaEvent{Name: name, Version: d.Version, State: state})
}

func (ac *awsClient) live() (paho.Client, awsConf, *agentproto.Error) {
	c, aerr := ac.conf()
	if aerr != nil {
		return nil, c, aerr
	}
	ac.mu.Lock()
	cli := ac.cli
	ac.mu.Unlock()
	if cli == nil || !cli.IsConnectionOpen() {
		return nil, c, agentproto.Errorf(agentproto.ErrNotConnected, "not connected to AWS IoT")
	}
	return cli, c, nil
}

// request publishes a shadow request and waits, bounded, for its answer
// (AWS-007, AWS-008, AWS-012).
func (ac *awsClient) request(ctx context.Context, name, op string, body []byte, token string) (shadowAnswer, *agentproto.Error) {
	cli, c, aerr := ac.live()
	if aerr != nil {
		return shadowAnswer{}, aerr
	}
	if err := ac.subscribe(cli, c, name); err != nil {
		return shadowAnswer{}, agentproto.Errorf(agentproto.ErrInternal, "subscribe to the answers of shadow %q: %v", name, err)
	}
	w := &shadowWait{name: name, op: op, token: token, ch: make(chan shadowAnswer, 1)}
	ac.mu.Lock()
	ac.pending = append(ac.pending, w)
	ac.mu.Unlock()
	drop := func() {
		ac.mu.Lock()
		for i, p := range ac.pending {
			if p == w {
				ac.pending = append(ac.pending[:i], ac.pending[i+1:]...)
				break
			}
		}
		ac.mu.Unlock()
	}
	tok := cli.Publish(awsproto.ShadowTopic(c.thing, name, op, ""), 1, false, body)
	if !tok.WaitTimeout(c.timeout) || tok.Error() != nil {
		drop()
		return shadowAnswer{}, agentproto.Errorf(agentproto.ErrTimeout, "no PUBACK for the %s request: %v", op, tok.Error())
	}
	if op == awsproto.OpUpdate && ac.on(DefAWSPubackSuccess) {
		drop()
		return shadowAnswer{accepted: true, body: []byte(`{}`)}, nil // PUBACK taken as the confirmation
	}
	select {
	case a := <-w.ch:
		return a, nil
	case <-time.After(c.timeout):
		drop()
		return shadowAnswer{}, agentproto.Errorf(agentproto.ErrTimeout, "no answer to the shadow %s within %s", op, c.timeout)
	case <-ctx.Done():
		drop()
		return shadowAnswer{}, agentproto.Errorf(agentproto.ErrTimeout, "cancelled")
	}
}

func (ac *awsClient) token() string {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	ac.tokSeq++
	return fmt.Sprintf("hil-%d-%d", ac.fw.opts.BootCount, ac.tokSeq)
}

func result(a shadowAnswer) agentproto.ShadowResult {
	doc, _ := awsproto.ParseResponse(a.body)
	r := agentproto.ShadowResult{Status: 200, Version: doc.Version, ClientToken: doc.ClientToken}
	if !a.accepted {
		r.Status, r.Message, r.Version = doc.Code, doc.Message, 0
		if r.Status == 0 {
			r.Status = 500
		}
	}
	return r
}

func (ac *awsClient) shadowGet(ctx context.Context, a agentproto.ShadowArgs) (any, *agentproto.Error) {
	ans, aerr := ac.request(ctx, a.Name, awsproto.OpGet, nil, "") // an empty message (AWS-007)
	if aerr != nil {
		return nil, aerr
	}
	r := result(ans)
	if ans.accepted {
		var d struct {
			State awsproto.StateSections `json:"state"`
		}
		_ = json.Unmarshal(ans.body, &d)
		r.Desired, r.Reported = d.State.Desired, d.State.Reported
		ac.mu.Lock()
		ac.desired[a.Name] = d.State.Desired
		if ac.on(DefAWSNoVersion) {
			r.Version = 0 // the seed SDK keeps no version
		} else {
			ac.versions[a.Name] = r.Version
		}
		ac.mu.Unlock()
		//mutate:agent report: a shadow too large for one agent frame is answered without its documents
		if b, _ := json.Marshal(r); len(b) > agentproto.MaxFrame-512 {
			r.Desired, r.Reported = nil, nil
		}
	}
	return r, nil
}

func (ac *awsClient) shadowUpdate(ctx context.Context, a agentproto.ShadowUpdateArgs) (any, *agentproto.Error) {
	state := map[string]any{}
	if a.Reported != nil {
		state["reported"] = a.Reported
	}
	if a.Desired != nil {
		state["desired"] = a.Desired
	}
	if len(state) == 0 {
		return nil, agentproto.Errorf(agentproto.ErrBadArgs, "aws.shadow.update needs reported or desired")
	}
	tok := ac.token()
	doc := map[string]any{"state": state, "clientToken": tok}
	if a.Version != nil && !ac.on(DefAWSNoVersion) {
		doc["version"] = *a.Version
	}
	body, _ := json.Marshal(doc)
	if ac.on(DefAWSClientTokenJSON) {
		// The seed SDK's ToJson appends `,clientToken:{token}` unquoted.
		delete(doc, "clientToken")
		b, _ := json.Marshal(doc)
		body = append(append(b[:len(b)-1:len(b)-1], []byte(",clientToken:"+tok)...), '}')
	}
	ans, aerr := ac.request(ctx, a.Name, awsproto.OpUpdate, body, tok)
	if aerr != nil {
		//mutate:agent report: the error the agent is told when an update got no answer (the version is kept only on status 200 either way)
		return nil, aerr
	}
	r := result(ans)
	if r.Status == 200 && !ac.on(DefAWSNoVersion) {
		ac.mu.Lock()
		ac.versions[a.Name] = max(ac.versions[a.Name], r.Version)
		ac.mu.Unlock()
	}
	return r, nil
}

func (ac *awsClient) shadowDelete(ctx context.Context, a agentproto.ShadowArgs) (any, *agentproto.Error) {
	tok := ac.token()
	body, _ := json.Marshal(map[string]string{"clientToken": tok})
	ans, aerr := ac.request(ctx, a.Name, awsproto.OpDelete, body, tok)
	if aerr != nil {
		return nil, aerr
	}
	return result(ans), nil
}

// telemetry publishes on the configured topic at the configured QoS
// (AWS-006); a QoS 0 send is never waited for.
func (ac *awsClient) telemetry(a agentproto.TelemetryArgs) (any, *agentproto.Error) {
	cli, c, aerr := ac.live()
	if aerr != nil {
		return nil, aerr
	}
	payload := []byte(a.Payload)
	if a.Gen != nil {
		payload = agentproto.Generate(a.Gen.Size, a.Gen.Seed)
	}
	qos := c.qos
	if a.QoS != nil {
		qos = byte(*a.QoS)
	}
	if ac.on(DefAWSQoS0Default) {
		qos = 0 // the seed SDK's AtMostOnce default, whatever was asked for
	}
	if qos > 1 {
		return nil, agentproto.Errorf(agentproto.ErrBadArgs, "AWS IoT supports QoS 0 and 1 only")
	}
	if len(payload) > awsproto.MaxPayloadBytes {
		return nil, agentproto.Errorf(agentproto.ErrBadArgs, "message of %d bytes exceeds AWS IoT's %d-byte limit", len(payload), awsproto.MaxPayloadBytes)
	}
	ac.mu.Lock()
	ac.ref++
	ref := ac.ref
	ac.mu.Unlock()
	tok := cli.Publish(c.telemetry, qos, false, payload)
	res := agentproto.TelemetryResult{Ref: ref, Size: len(payload)}
	if qos == 0 {
		return res, nil
	}
	if a.Wait {
		if !tok.WaitTimeout(c.timeout) {
			res.Error = "no PUBACK"
			return res, nil
		}
		if err := tok.Error(); err != nil {
			res.Error = err.Error()
			return res, nil
		}
		res.Acked = true
		return res, nil
	}
	go func() {
		if tok.WaitTimeout(c.timeout) && tok.Error() == nil {
			ac.fw.emit(agentproto.EvTelemetry, agentproto.TelemetryResult{Ref: ref, Acked: true, Size: len(payload)})
		}
	}()
	return res, nil
}

// rotate switches to a new certificate and reconnects with it (AWS-011).
func (ac *awsClient) rotate(a agentproto.RotateArgs) *agentproto.Error {
	if a.PEM == "" || a.KeyPEM == "" {
		return agentproto.Errorf(agentproto.ErrBadArgs, "AWS IoT credentials are a certificate and key (pem, keyPem)")
	}
	cert, err := tls.X509KeyPair([]byte(a.PEM), []byte(a.KeyPEM))
	if err != nil {
		return agentproto.Errorf(agentproto.ErrBadArgs, "creds.rotate: %v", err)
	}
	n := ac.fw.nvs
	n.mu.Lock()
	old := n.Cert
	n.Cert = &cert
	n.mu.Unlock()
	ac.mu.Lock()
	if ac.oldCert == nil {
		ac.oldCert = old
	}
	open := ac.open
	ac.mu.Unlock()
	ac.fw.changed(changedNVS)
	ac.fw.emit(agentproto.EvCreds, agentproto.CredsEvent{Kind: "cert-rotated"})
	if open {
		ac.closeClient(true)
		if _, aerr := ac.openClient(); aerr != nil {
			return aerr
		}
	}
	return nil
}

// dispatchAWS serves the operations that act on the AWS connection; ok is
// false for operations the common agent code serves.
func (fw *Firmware) dispatchAWS(ctx context.Context, op string, raw []byte) (any, *agentproto.Error, bool) {
	ac := fw.aws
	switch op {
	case agentproto.OpConfigure:
		var c agentproto.Config
		if err := decodeArgs(raw, &c); err != nil {
			return nil, err, true
		}
		if c.AWS != nil && c.AWS.QoS != nil && *c.AWS.QoS > 1 {
			return nil, agentproto.Errorf(agentproto.ErrBadArgs, "aws.qos must be 0 or 1"), true
		}
		if err := fw.configure(c); err != nil {
			return nil, err, true
		}
		if c.AWS != nil {
			fw.nvs.mu.Lock()
			a := *c.AWS
			fw.nvs.Config.AWS = &a
			fw.nvs.mu.Unlock()
		}
		fw.changed(changedNVS)
		return ac.status(), nil, true
	case agentproto.OpStatus:
		return ac.status(), nil, true
	case agentproto.OpOpen:
		already, err := ac.openClient()
		if err != nil {
			return nil, err, true
		}
		st := ac.status()
		st.Already = already
		return st, nil, true
	case agentproto.OpClose:
		a := agentproto.CloseArgs{Graceful: true}
		if err := decodeArgs(raw, &a); err != nil {
			return nil, err, true
		}
		ac.closeClient(a.Graceful)
		return ac.status(), nil, true
	case agentproto.OpTelemetry:
		var a agentproto.TelemetryArgs
		if err := decodeArgs(raw, &a); err != nil {
			return nil, err, true
		}
		r, err := ac.telemetry(a)
		return r, err, true
	case agentproto.OpRotate:
		var a agentproto.RotateArgs
		if err := decodeArgs(raw, &a); err != nil {
			return nil, err, true
		}
		return nil, ac.rotate(a), true
	case agentproto.OpShadowGet, agentproto.OpShadowDelete:
		var a agentproto.ShadowArgs
		if err := decodeArgs(raw, &a); err != nil {
			return nil, err, true
		}
		if op == agentproto.OpShadowGet {
			r, err := ac.shadowGet(ctx, a)
			return r, err, true
		}
		r, err := ac.shadowDelete(ctx, a)
		return r, err, true
	case agentproto.OpShadowUpdate:
		var a agentproto.ShadowUpdateArgs
		if err := decodeArgs(raw, &a); err != nil {
			return nil, err, true
		}
		r, err := ac.shadowUpdate(ctx, a)
		return r, err, true
	case agentproto.OpTwinGet, agentproto.OpTwinReport, agentproto.OpMethodDefine:
		return nil, agentproto.Errorf(agentproto.ErrUnsupported, "%s: this image is built for AWS IoT Core", op), true
	}
	return nil, nil, false
}

// awsCaps is the hello of the AWS image.
var awsCaps = []string{agentproto.CapAWS, agentproto.CapX509, agentproto.CapC2D, agentproto.CapCertRotation,
	agentproto.CapTrustUpdate, agentproto.CapTelemetryQoS0, agentproto.CapDefects}
