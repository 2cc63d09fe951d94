package awsiot

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/hilrun/hilrun/certs"
	"github.com/hilrun/hilrun/rig/awsproto"
	"github.com/hilrun/hilrun/rig/hub"
)

func startEndpoint(t *testing.T) *Endpoint {
	t.Helper()
	e, err := Start(Config{MQTTAddr: "127.0.0.1:0", HTTPSAddr: "127.0.0.1:0", HandshakeTimeout: 3 * time.Second, ExtraNames: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// thing registers a thing with a certificate issued by a registered CA.
func thing(t *testing.T, e *Endpoint, name string) (*certs.Leaf, Certificate) {
	t.Helper()
	root, err := certs.NewRoot("test CA", certs.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	e.Registry().AddCA(root.Cert)
	leaf, err := root.IssueClient(certs.LeafOptions{CommonName: name})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Registry().AddThing(Thing{Name: name}); err != nil {
		t.Fatal(err)
	}
	c, err := e.Registry().AddCertificate(leaf.Cert, name)
	if err != nil {
		t.Fatal(err)
	}
	if c.CA == "" {
		t.Fatal("certificate not linked to its CA")
	}
	return leaf, c
}

type msg struct {
	topic   string
	payload []byte
}

func dial(t *testing.T, e *Endpoint, clientID string, leaf *certs.Leaf, sni string) (paho.Client, chan msg, error) {
	t.Helper()
	ch := make(chan msg, 64)
	o := paho.NewClientOptions().AddBroker("tls://" + e.MQTTAddr()).SetClientID(clientID).SetAutoReconnect(false).
		SetConnectTimeout(3 * time.Second).SetKeepAlive(60 * time.Second).SetOrderMatters(false)
	tc := &tls.Config{RootCAs: e.RootCAs(), ServerName: sni}
	if leaf != nil {
		tc.Certificates = []tls.Certificate{leaf.TLSCertificate()}
	}
	o.SetTLSConfig(tc)
	o.SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { ch <- msg{m.Topic(), m.Payload()} })
	c := paho.NewClient(o)
	tok := c.Connect()
	tok.WaitTimeout(5 * time.Second)
	if err := tok.Error(); err != nil {
		return nil, nil, err
	}
	if !c.IsConnected() {
		return nil, nil, fmt.Errorf("not connected")
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, ch, nil
}

// held keeps, per subscription channel, the messages a next call read
// while it waited for another topic: the endpoint publishes an update's
// accepted and documents answers in no fixed order.
var (
	heldMu sync.Mutex
	held   = map[chan msg][]msg{}
)

func next(t *testing.T, ch chan msg, topic string) msg {
	t.Helper()
	heldMu.Lock()
	for i, m := range held[ch] {
		if m.topic == topic {
			held[ch] = append(held[ch][:i:i], held[ch][i+1:]...)
			heldMu.Unlock()
			return m
		}
	}
	heldMu.Unlock()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case m := <-ch:
			if m.topic == topic {
				return m
			}
			heldMu.Lock()
			held[ch] = append(held[ch], m)
			heldMu.Unlock()
		case <-deadline:
			t.Fatalf("no message on %s within 5 s", topic)
		}
	}
}

func TestShadowOverMQTT(t *testing.T) {
	e := startEndpoint(t)
	leaf, _ := thing(t, e, "dev1")
	c, ch, err := dial(t, e, "dev1", leaf, e.Host())
	if err != nil {
		t.Fatal(err)
	}
	pre := awsproto.ShadowPrefix("dev1", "")
	for _, f := range []string{pre + "/get/+", pre + "/update/+", pre + "/delete/+", awsproto.ShadowPrefix("dev1", "cfg") + "/update/+"} {
		if tok := c.Subscribe(f, 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("subscribe %s: %v", f, tok.Error())
		}
	}
	c.Publish(pre+"/get", 1, false, "")
	var rej awsproto.Error
	_ = json.Unmarshal(next(t, ch, pre+"/get/rejected").payload, &rej)
	if rej.Code != 404 {
		t.Errorf("get of a missing shadow: %+v", rej)
	}
	c.Publish(pre+"/update", 1, false, `{"state":{"reported":{"fw":"1.0"}},"clientToken":"tok-1"}`)
	var acc awsproto.ResponseDoc
	_ = json.Unmarshal(next(t, ch, pre+"/update/accepted").payload, &acc)
	if acc.Version != 1 || acc.ClientToken != "tok-1" {
		t.Errorf("accepted: %+v", acc)
	}
	next(t, ch, pre+"/update/documents")
	if _, err := e.UpdateShadow("dev1", "", []byte(`{"state":{"desired":{"fw":"2.0"}}}`)); err != nil {
		t.Fatal(err)
	}
	d := next(t, ch, pre+"/update/delta")
	if !strings.Contains(string(d.payload), `"state":{"fw":"2.0"}`) {
		t.Errorf("delta = %s", d.payload)
	}
	c.Publish(pre+"/update", 1, false, `{"state":{"reported":{"fw":"2.0"}},"version":1}`)
	_ = json.Unmarshal(next(t, ch, pre+"/update/rejected").payload, &rej)
	if rej.Code != 409 {
		t.Errorf("stale version: %+v", rej)
	}
	c.Publish(pre+"/update", 1, false, `{"state":{"reported":{"fw":"2.0"}},clientToken:abc}`)
	_ = json.Unmarshal(next(t, ch, pre+"/update/rejected").payload, &rej)
	if rej.Code != 400 {
		t.Errorf("invalid JSON: %+v", rej)
	}
	c.Publish(pre+"/update", 1, false, `{"state":{"reported":{"blob":"`+strings.Repeat("x", 9000)+`"}}}`)
	_ = json.Unmarshal(next(t, ch, pre+"/update/rejected").payload, &rej)
	if rej.Code != 413 {
		t.Errorf("oversized: %+v", rej)
	}
	named := awsproto.ShadowPrefix("dev1", "cfg")
	c.Publish(named+"/update", 1, false, `{"state":{"desired":{"rate":5}}}`)
	next(t, ch, named+"/update/accepted")
	next(t, ch, named+"/update/delta")
	e.RejectShadowUpdates("dev1", 500, 1)
	c.Publish(pre+"/update", 1, false, `{"state":{"reported":{"x":1}}}`)
	_ = json.Unmarshal(next(t, ch, pre+"/update/rejected").payload, &rej)
	if rej.Code != 500 {
		t.Errorf("fault injection: %+v", rej)
	}
	if doc, err := e.GetShadow("dev1", ""); err != nil || !strings.Contains(string(doc), `"version":2`) {
		t.Errorf("GetShadow: %s %v", doc, err)
	}
}

func TestRefusals(t *testing.T) {
	e := startEndpoint(t)
	leaf, cert := thing(t, e, "dev2")
	stranger, _ := certs.SelfSigned(certs.LeafOptions{CommonName: "stranger"})
	if _, _, err := dial(t, e, "dev2", stranger, e.Host()); err == nil {
		t.Error("unregistered certificate accepted")
	}
	if _, _, err := dial(t, e, "dev2", nil, e.Host()); err == nil {
		t.Error("no client certificate accepted")
	}
	if _, _, err := dial(t, e, "dev2", leaf, "legacy.iot.eu-west-1.amazonaws.com"); err == nil {
		t.Error("foreign SNI accepted")
	}
	if _, _, err := dial(t, e, "dev2-other", leaf, e.Host()); err == nil {
		t.Error("ClientId other than the thing name accepted")
	}
	// Self-signed, registered without a CA.
	self, _ := certs.SelfSigned(certs.LeafOptions{CommonName: "dev3"})
	e.Registry().AddThing(Thing{Name: "dev3"})
	if c, err := e.Registry().AddCertificate(self.Cert, "dev3"); err != nil || c.CA != "" {
		t.Fatalf("self-signed registration: %+v %v", c, err)
	}
	if _, _, err := dial(t, e, "dev3", self, e.Host()); err != nil {
		t.Errorf("registered self-signed certificate refused: %v", err)
	}
	// Unauthorized publish closes the connection.
	c, _, err := dial(t, e, "dev2", leaf, e.Host())
	if err != nil {
		t.Fatal(err)
	}
	c.Publish("$aws/things/dev3/shadow/update", 1, false, `{}`).WaitTimeout(2 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.Wait(ctx, func() bool { return !e.Connected("dev2") }); err != nil {
		t.Error("unauthorized publish did not close the connection")
	}
	// Revocation ends a live connection and refuses the next handshake.
	if _, _, err = dial(t, e, "dev2", leaf, e.Host()); err != nil {
		t.Fatal(err)
	}
	if err := e.Registry().SetStatus(cert.ID, StatusRevoked); err != nil {
		t.Fatal(err)
	}
	if err := e.Wait(ctx, func() bool { return !e.Connected("dev2") }); err != nil {
		t.Error("revoked certificate's connection stays up")
	}
	if _, _, err := dial(t, e, "dev2", leaf, e.Host()); err == nil {
		t.Error("revoked certificate accepted")
	}
	var reasons []string
	for _, en := range e.Trace().Entries(func(en *hub.Entry) bool { return en.Type == hub.EventTLSFailed || en.Type == hub.EventConnRejected }) {
		reasons = append(reasons, en.Reason)
	}
	all := strings.Join(reasons, "\n")
	for _, want := range []string{"not registered", "REVOKED", "AWS-004", "iot:Connect"} {
		if !strings.Contains(all, want) {
			t.Errorf("trace lacks a refusal naming %q:\n%s", want, all)
		}
	}
}

func TestREST(t *testing.T) {
	e := startEndpoint(t)
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.RootCAs(), ServerName: e.Host()}}, Timeout: 5 * time.Second}
	do := func(method, path, body, key string) (int, string) {
		req, _ := http.NewRequest(method, "https://"+e.HTTPSAddr()+path, bytes.NewBufferString(body))
		req.Header.Set("Authorization", "Bearer "+key)
		res, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, _ := do("GET", "/things/x/shadow", "", "wrong"); code != 401 {
		t.Errorf("no key: %d", code)
	}
	k := e.ServiceKey()
	if code, _ := do("PUT", "/hilrun/things/rest1", "", k); code != 200 {
		t.Errorf("register thing: %d", code)
	}
	if code, b := do("POST", "/things/rest1/shadow?name=cfg", `{"state":{"desired":{"a":1}}}`, k); code != 200 || !strings.Contains(b, `"version":1`) {
		t.Errorf("update: %d %s", code, b)
	}
	if code, b := do("POST", "/things/rest1/shadow", `{"state":`, k); code != 400 {
		t.Errorf("malformed: %d %s", code, b)
	}
	if code, b := do("GET", "/things/rest1/shadow?name=cfg", "", k); code != 200 || !strings.Contains(b, `"delta":{"a":1}`) {
		t.Errorf("get: %d %s", code, b)
	}
	if code, _ := do("GET", "/things/rest1/shadow", "", k); code != 404 {
		t.Errorf("missing classic shadow: %d", code)
	}
	if code, _ := do("POST", "/topics/device/rest1/messages/devicebound/x?qos=1", "hi", k); code != 200 {
		t.Errorf("publish: %d", code)
	}
	if code, b := do("GET", "/hilrun/trace", "", k); code != 200 || strings.Contains(b, k) {
		t.Errorf("trace: %d", code)
	}
}

func TestConcurrentRequestsNoRace(t *testing.T) {
	e := startEndpoint(t)
	leaf, _ := thing(t, e, "dev4")
	c, _, err := dial(t, e, "dev4", leaf, e.Host())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Publish("$aws/things/dev4/shadow/update", 1, false, fmt.Sprintf(`{"state":{"reported":{"n":%d}}}`, i)).WaitTimeout(3 * time.Second)
			_, _ = e.UpdateShadow("dev4", "", []byte(`{"state":{"desired":{"n":1}}}`))
		}()
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.Wait(ctx, func() bool { s := e.Shadow("dev4", ""); return s != nil && s.Version == 40 }); err != nil {
		t.Errorf("version after 40 updates: %+v", e.Shadow("dev4", ""))
	}
}

func TestBrokerLimitsAndRetained(t *testing.T) {
	e := startEndpoint(t)
	leaf, _ := thing(t, e, "dev5")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	closes := func(name string, act func(c paho.Client)) {
		t.Helper()
		c, _, err := dial(t, e, "dev5", leaf, e.Host())
		if err != nil {
			t.Fatal(err)
		}
		act(c)
		if err := e.Wait(ctx, func() bool { return !e.Connected("dev5") }); err != nil {
			t.Errorf("%s did not close the connection", name)
		}
	}
	closes("a 129 KB publish", func(c paho.Client) {
		c.Publish("device/dev5/messages/events", 1, false, strings.Repeat("x", awsproto.MaxPayloadBytes+1)).WaitTimeout(2 * time.Second)
	})
	closes("a QoS 2 publish", func(c paho.Client) {
		c.Publish("device/dev5/messages/events", 2, false, "x").WaitTimeout(2 * time.Second)
	})
	closes("a publish to an answer topic", func(c paho.Client) {
		c.Publish("$aws/things/dev5/shadow/update/accepted", 1, false, "{}").WaitTimeout(2 * time.Second)
	})
	closes("a retained shadow request", func(c paho.Client) {
		c.Publish("$aws/things/dev5/shadow/update", 1, true, `{"state":{"reported":{}}}`).WaitTimeout(2 * time.Second)
	})
	closes("an unauthorized subscribe", func(c paho.Client) {
		c.Subscribe("$aws/things/other/shadow/update/delta", 1, nil).WaitTimeout(2 * time.Second)
	})
	// Retained messages on ordinary topics reach a later subscriber.
	c, ch, err := dial(t, e, "dev5", leaf, e.Host())
	if err != nil {
		t.Fatal(err)
	}
	c.Publish("device/dev5/state", 1, true, "kept").WaitTimeout(2 * time.Second)
	c.Subscribe("device/dev5/state", 1, nil).WaitTimeout(2 * time.Second)
	if m := next(t, ch, "device/dev5/state"); string(m.payload) != "kept" {
		t.Errorf("retained = %q", m.payload)
	}
	// A QoS 2 subscription is granted QoS 1 (AWS-006).
	c.Subscribe("device/dev5/q2", 2, nil).WaitTimeout(2 * time.Second)
	var granted []byte
	for _, en := range e.Trace().Entries(func(en *hub.Entry) bool { return en.Type == "SUBACK" }) {
		granted = en.Granted
	}
	if len(granted) != 1 || granted[0] != 1 {
		t.Errorf("QoS 2 SUBSCRIBE granted %v, want [1]", granted)
	}
	// The keep-alive is brought into range.
	var warned bool
	for _, en := range e.Trace().Entries(nil) {
		if en.Type == hub.EventWarning && strings.Contains(en.Reason, "keep-alive") {
			warned = true
		}
	}
	if warned {
		t.Error("keep-alive 60 s is in range; no warning expected")
	}
	if !e.Connected("dev5") {
		t.Error("endpoint lost the connection")
	}
}

func TestBadInputNeverCrashes(t *testing.T) {
	e := startEndpoint(t)
	leaf, _ := thing(t, e, "dev6")
	c, ch, err := dial(t, e, "dev6", leaf, e.Host())
	if err != nil {
		t.Fatal(err)
	}
	pre := awsproto.ShadowPrefix("dev6", "")
	if tok := c.Subscribe(pre+"/update/rejected", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal("subscribe")
	}
	for _, body := range []string{"\x00\x01\x02", "{", "[]", `{"state":[]}`, `{"state":{"reported":"x"}}`, `{"state":{"desired":{"a":1}},"version":-1}`,
		strings.Repeat("[", 5000), `{"state":{"reported":{}},"clientToken":7}`, "{\"state\":{\"reported\":{\"a\":\"\xc3\x28\"}}}"} {
		c.Publish(pre+"/update", 1, false, body)
		m := next(t, ch, pre+"/update/rejected")
		var rej awsproto.Error
		if json.Unmarshal(m.payload, &rej) != nil || rej.Code < 400 || rej.Code >= 500 {
			t.Errorf("%q: rejected %s", body, m.payload)
		}
	}
	if !e.Connected("dev6") {
		t.Error("malformed shadow documents closed the connection; the service answers them on /rejected")
	}
	// A deleted thing's certificate no longer connects.
	if err := e.Registry().DeleteThing("dev6"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.Wait(ctx, func() bool { return !e.Connected("dev6") }); err != nil {
		t.Error("deleting the thing left its connection up")
	}
	if _, _, err := dial(t, e, "dev6", leaf, e.Host()); err == nil {
		t.Error("the certificate of a deleted thing connected")
	}
}

func TestKeepAliveRange(t *testing.T) {
	e := startEndpoint(t)
	leaf, _ := thing(t, e, "dev7")
	o := paho.NewClientOptions().AddBroker("tls://" + e.MQTTAddr()).SetClientID("dev7").SetAutoReconnect(false).SetKeepAlive(5 * time.Second).
		SetTLSConfig(&tls.Config{RootCAs: e.RootCAs(), ServerName: e.Host(), Certificates: []tls.Certificate{leaf.TLSCertificate()}})
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal("connect")
	}
	defer c.Disconnect(0)
	var got string
	for _, en := range e.Trace().Entries(func(en *hub.Entry) bool { return en.Type == hub.EventWarning }) {
		got += en.Reason
	}
	if !strings.Contains(got, "keep-alive 5 s is outside 30–1200 s; AWS IoT applies 30 s") {
		t.Errorf("warnings: %q", got)
	}
}
