package dps

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/hilrun/hilrun/rig/dpsproto"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/hub/hubtest"
	"github.com/hilrun/hilrun/rig/iothub"
)

const scope = "0ne00TEST01"

func start(t *testing.T) (*hubtest.Hub, *Endpoint) {
	t.Helper()
	h := hubtest.Start(t)
	e, err := Start(Config{Hub: h.Hub, IDScope: scope, RetryAfter: -1, HandshakeTimeout: 5 * time.Second, RESTAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return h, e
}

type client struct {
	cli  paho.Client
	ans  chan paho.Message
	lost chan struct{}
	rid  int
}

func token(t *testing.T, regID, key, skn string, exp time.Time) string {
	t.Helper()
	tok, err := iothub.NewSASToken(dpsproto.ResourceURI(scope, regID), key, exp, skn)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func dial(t *testing.T, e *Endpoint, clientID, username, password string) (*client, error) {
	t.Helper()
	tc := &tls.Config{ServerName: e.Host(), RootCAs: e.Hub().RootCAs(), MinVersion: tls.VersionTLS12}
	c := &client{ans: make(chan paho.Message, 16), lost: make(chan struct{})}
	o := paho.NewClientOptions().AddBroker("ssl://" + e.Addr()).SetClientID(clientID).SetUsername(username).SetPassword(password).
		SetTLSConfig(tc).SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { c.ans <- m }).
		SetConnectionLostHandler(func(paho.Client, error) { close(c.lost) })
	c.cli = paho.NewClient(o)
	tok := c.cli.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, fmt.Errorf("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.cli.Disconnect(0) })
	return c, nil
}

func (c *client) subscribe(t *testing.T) {
	t.Helper()
	tok := c.cli.Subscribe(dpsproto.ResponseFilter, 1, nil)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
}

// request publishes to topicOf(rid) and returns the answer.
func (c *client) request(t *testing.T, topicOf func(rid string) string, body []byte) (dpsproto.Response, []byte) {
	t.Helper()
	c.rid++
	rid := fmt.Sprint(c.rid)
	tok := c.cli.Publish(topicOf(rid), 1, false, body)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	select {
	case m := <-c.ans:
		r, err := dpsproto.ParseResponseTopic(m.Topic())
		if err != nil {
			t.Fatal(err)
		}
		if r.RID != rid {
			t.Fatalf("answer rid %q to request %q", r.RID, rid)
		}
		return r, m.Payload()
	case <-time.After(5 * time.Second):
		t.Fatalf("no answer to %s", topicOf(rid))
	}
	return dpsproto.Response{}, nil
}

func register(t *testing.T, c *client, regID string, payload string) (dpsproto.Response, dpsproto.Operation) {
	t.Helper()
	body := `{"registrationId":"` + regID + `"` + payload + `}`
	r, b := c.request(t, dpsproto.RegisterTopic, []byte(body))
	var op dpsproto.Operation
	_ = json.Unmarshal(b, &op)
	return r, op
}

func poll(t *testing.T, c *client, opID string) (dpsproto.Response, dpsproto.Operation) {
	t.Helper()
	r, b := c.request(t, func(rid string) string { return dpsproto.StatusTopic(rid, opID) }, nil)
	var op dpsproto.Operation
	_ = json.Unmarshal(b, &op)
	return r, op
}

func TestIndividualAndGroupSAS(t *testing.T) {
	h, e := start(t)
	ind, err := e.AddIndividual(Enrollment{RegistrationID: "dev-1", DeviceID: "Device-One", Attestation: Attestation{Type: AttestSymmetricKey},
		ReturnPayload: json.RawMessage(`{"hello":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	grp, err := e.AddGroup(Enrollment{GroupID: "fleet", Attestation: Attestation{Type: AttestSymmetricKey}})
	if err != nil {
		t.Fatal(err)
	}
	derived, _ := dpsproto.DeriveKey(grp.Attestation.PrimaryKey, "sensor-7")
	for _, c := range []struct{ reg, key, device string }{{"dev-1", ind.Attestation.PrimaryKey, "Device-One"}, {"sensor-7", derived, "sensor-7"}} {
		cl, err := dial(t, e, c.reg, dpsproto.FormatUsername(scope, c.reg, url.Values{"DeviceClientType": {"test"}}), token(t, c.reg, c.key, "registration", time.Now().Add(time.Hour)))
		if err != nil {
			t.Fatalf("%s: connect: %v", c.reg, err)
		}
		cl.subscribe(t)
		r, op := register(t, cl, c.reg, `,"payload":{"modelId":"dtmi:com:example:Thermostat;1"}`)
		if r.Status != 202 || !r.HasRetryAfter || op.OperationID == "" || op.Status != dpsproto.StatusAssigning {
			t.Fatalf("%s: register answer %+v %+v", c.reg, r, op)
		}
		r, op = poll(t, cl, op.OperationID)
		if r.Status != 200 || op.Status != dpsproto.StatusAssigned || op.RegistrationState == nil ||
			op.RegistrationState.AssignedHub != hubtest.Host || op.RegistrationState.DeviceID != c.device {
			t.Fatalf("%s: poll answer %+v %+v", c.reg, r, op.RegistrationState)
		}
		d, err := h.Registry().Get(iothub.Identity{DeviceID: c.device})
		if err != nil || d.Authentication.SymmetricKey == nil || d.Authentication.SymmetricKey.PrimaryKey != c.key {
			t.Fatalf("%s: hub identity %+v, %v", c.reg, d, err)
		}
		reg, ok := e.Registration(c.reg)
		if !ok || reg.ModelID != "dtmi:com:example:Thermostat;1" || reg.Status != dpsproto.StatusAssigned {
			t.Fatalf("%s: registration record %+v", c.reg, reg)
		}
	}
}

func TestConnectRefusals(t *testing.T) {
	_, e := start(t)
	ind, _ := e.AddIndividual(Enrollment{RegistrationID: "dev-1", Attestation: Attestation{Type: AttestSymmetricKey}})
	grp, _ := e.AddGroup(Enrollment{GroupID: "g", Attestation: Attestation{Type: AttestSymmetricKey}})
	key := ind.Attestation.PrimaryKey
	good := dpsproto.FormatUsername(scope, "dev-1", nil)
	soon := time.Now().Add(time.Hour)
	for _, c := range []struct{ name, clientID, user, pw, why string }{
		{"no skn", "dev-1", good, token(t, "dev-1", key, "", soon), "skn"},
		{"wrong key", "dev-1", good, token(t, "dev-1", grp.Attestation.PrimaryKey, "registration", soon), "does not verify"},
		{"group key not derived", "other-9", dpsproto.FormatUsername(scope, "other-9", nil), token(t, "other-9", grp.Attestation.PrimaryKey, "registration", soon), "no individual enrollment"},
		{"expired", "dev-1", good, token(t, "dev-1", key, "registration", time.Now().Add(-time.Minute)), "expired"},
		{"hub username form", "dev-1", scope + "/registrations/dev-1/?api-version=2019-03-31", token(t, "dev-1", key, "registration", soon), "api-version="},
		{"other scope", "dev-1", "0ne00OTHER/registrations/dev-1/api-version=2019-03-31", token(t, "dev-1", key, "registration", soon), "ID scope"},
		{"clientid mismatch", "dev-2", good, token(t, "dev-1", key, "registration", soon), "ClientId"},
		{"not a token", "dev-1", good, key, "shared access signature"},
		{"unknown, no credentials", "nobody", dpsproto.FormatUsername(scope, "nobody", nil), "", "unknown registration ID"},
	} {
		since := e.Hub().Trace().LastSeq()
		if _, err := dial(t, e, c.clientID, c.user, c.pw); err == nil {
			t.Errorf("%s: connect accepted", c.name)
			continue
		}
		found := false
		for _, en := range e.Hub().Trace().Entries(func(en *hub.Entry) bool { return en.Seq > since }) {
			if en.Type == "conn-rejected" && strings.Contains(en.Reason, c.why) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no conn-rejected entry naming %q", c.name, c.why)
		}
	}
}

func TestBadRequests(t *testing.T) {
	_, e := start(t)
	ind, _ := e.AddIndividual(Enrollment{RegistrationID: "dev-1", Attestation: Attestation{Type: AttestSymmetricKey}})
	cl, err := dial(t, e, "dev-1", dpsproto.FormatUsername(scope, "dev-1", nil), token(t, "dev-1", ind.Attestation.PrimaryKey, "registration", time.Now().Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	// A filter other than the answer filter is refused.
	st := cl.cli.Subscribe("$dps/registrations/#", 1, nil)
	st.WaitTimeout(5 * time.Second)
	if codes := st.(*paho.SubscribeToken).Result(); codes["$dps/registrations/#"] != 0x80 {
		t.Errorf("SUBACK for $dps/registrations/# = %v; want 0x80", codes)
	}
	cl.subscribe(t)
	for _, c := range []struct {
		name string
		body []byte
		want int
	}{
		{"non-JSON", []byte("not json"), 400},
		{"array", []byte("[1]"), 400},
		{"other registration", []byte(`{"registrationId":"dev-2"}`), 400},
		{"oversized", []byte(`{"registrationId":"dev-1","payload":"` + strings.Repeat("x", dpsproto.MaxRequestBytes) + `"}`), 400},
		{"empty", nil, 400},
	} {
		r, b := cl.request(t, dpsproto.RegisterTopic, c.body)
		var eb dpsproto.ErrorBody
		if r.Status != c.want || json.Unmarshal(b, &eb) != nil || eb.Message == "" || eb.ErrorCode == 0 {
			t.Errorf("%s: answer %d %s; want %d with an error body", c.name, r.Status, b, c.want)
		}
	}
	if r, _ := poll(t, cl, "4.unknown.op"); r.Status != 404 {
		t.Errorf("unknown operationId answered %d; want 404", r.Status)
	}
	// An undocumented topic closes the connection; the endpoint lives on.
	cl.cli.Publish("$dps/registrations/PUT/other/?$rid=1", 1, false, []byte("{}")).WaitTimeout(2 * time.Second)
	select {
	case <-cl.lost:
	case <-time.After(5 * time.Second):
		t.Error("connection still open after a PUBLISH to an undocumented topic")
	}
	cl2, err := dial(t, e, "dev-1", dpsproto.FormatUsername(scope, "dev-1", nil), token(t, "dev-1", ind.Attestation.PrimaryKey, "registration", time.Now().Add(time.Hour)))
	if err != nil {
		t.Fatalf("reconnect after the refusal: %v", err)
	}
	cl2.subscribe(t)
	if r, _ := register(t, cl2, "dev-1", ""); r.Status != 202 {
		t.Errorf("register after a refusal: %d", r.Status)
	}
}

func TestFaults(t *testing.T) {
	_, e := start(t)
	conn := func(reg string, f Faults, disabled bool) *client {
		st := Enabled
		if disabled {
			st = Disabled
		}
		en, err := e.AddIndividual(Enrollment{RegistrationID: reg, Status: st, Attestation: Attestation{Type: AttestSymmetricKey}})
		if err != nil {
			t.Fatal(err)
		}
		e.SetFaults(reg, f)
		cl, err := dial(t, e, reg, dpsproto.FormatUsername(scope, reg, nil), token(t, reg, en.Attestation.PrimaryKey, "registration", time.Now().Add(time.Hour)))
		if err != nil {
			t.Fatal(err)
		}
		cl.subscribe(t)
		return cl
	}
	three := 3
	cl := conn("throttled", Faults{Throttle: 1, RetryAfter: &three}, false)
	if r, _ := register(t, cl, "throttled", ""); r.Status != 429 || r.RetryAfter != 3 {
		t.Errorf("throttle: %+v; want 429 retry-after 3", r)
	}
	if r, _ := register(t, cl, "throttled", ""); r.Status != 202 || r.RetryAfter != 3 {
		t.Errorf("after the throttle: %+v", r)
	}
	cl = conn("no-retry", Faults{OmitRetryAfter: true, Polls: 1}, false)
	r, op := register(t, cl, "no-retry", "")
	if r.Status != 202 || r.HasRetryAfter {
		t.Errorf("omitRetryAfter: %+v", r)
	}
	if r, op2 := poll(t, cl, op.OperationID); r.Status != 202 || r.HasRetryAfter || op2.Status != dpsproto.StatusAssigning {
		t.Errorf("omitRetryAfter poll 1: %+v %+v", r, op2)
	}
	if r, op2 := poll(t, cl, op.OperationID); r.Status != 200 || op2.Status != dpsproto.StatusAssigned {
		t.Errorf("omitRetryAfter poll 2: %+v %+v", r, op2)
	}
	cl = conn("fail200", Faults{FailWith200: true}, false)
	_, op = register(t, cl, "fail200", "")
	if r, op2 := poll(t, cl, op.OperationID); r.Status != 200 || op2.Status != dpsproto.StatusFailed || op2.RegistrationState.ErrorMessage == "" {
		t.Errorf("failWith200: %+v %+v", r, op2)
	}
	cl = conn("off", Faults{}, true)
	_, op = register(t, cl, "off", "")
	if r, op2 := poll(t, cl, op.OperationID); r.Status != 200 || op2.Status != dpsproto.StatusDisabled || op2.RegistrationState.ErrorCode == 0 {
		t.Errorf("disabled: %+v %+v", r, op2)
	}
	if _, err := e.Hub().Registry().Get(iothub.Identity{DeviceID: "off"}); err == nil {
		t.Error("a disabled registration created a hub identity")
	}
}

func TestREST(t *testing.T) {
	_, e := start(t)
	tok, _ := iothub.NewSASToken(e.Host(), e.ServiceKey(), time.Now().Add(time.Hour), ServicePolicy)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{ServerName: e.Host(), RootCAs: e.Hub().RootCAs()}}, Timeout: 5 * time.Second}
	do := func(method, path, auth string, body string) (int, string) {
		req, _ := http.NewRequest(method, "https://"+e.RESTAddr()+path, bytes.NewBufferString(body))
		req.Header.Set("Authorization", auth)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if st, _ := do("PUT", "/enrollments/dev-9", tok, `{"attestation":{"type":"symmetricKey"}}`); st != 200 {
		t.Errorf("PUT enrollment: %d", st)
	}
	if st, b := do("GET", "/enrollments/dev-9", tok, ""); st != 200 || !strings.Contains(b, `"registrationId":"dev-9"`) {
		t.Errorf("GET enrollment: %d %s", st, b)
	}
	if st, _ := do("PUT", "/enrollmentGroups/g1", tok, `{"attestation":{"type":"symmetricKey"}}`); st != 200 {
		t.Errorf("PUT group: %d", st)
	}
	if st, _ := do("GET", "/registrations", tok, ""); st != 200 {
		t.Errorf("GET registrations: %d", st)
	}
	for _, c := range []struct {
		method, path, auth, body string
		want                     int
	}{
		{"GET", "/enrollments/dev-9", "", "", 401},
		{"GET", "/enrollments/dev-9", "SharedAccessSignature sr=x&sig=y&se=1&skn=provisioningserviceowner", "", 401},
		{"PUT", "/enrollments/dev-8", tok, "not json", 400},
		{"PUT", "/enrollments/dev-8", tok, `{"attestation":{"type":"tpm"}}`, 400},
		{"PUT", "/enrollments/BAD%20ID", tok, `{"attestation":{"type":"symmetricKey"}}`, 400},
		{"PUT", "/enrollments/dev-8", tok, `{"attestation":{"type":"symmetricKey"},"returnPayload":` + strings.Repeat("1", restMaxBody) + `}`, 413},
		{"GET", "/registrations/none", tok, "", 404},
		{"GET", "/nothing", tok, "", 404},
		{"POST", "/enrollments/dev-9", tok, "", 405},
	} {
		if st, b := do(c.method, c.path, c.auth, c.body); st != c.want {
			t.Errorf("%s %s: %d %s; want %d", c.method, c.path, st, b, c.want)
		}
	}
}
