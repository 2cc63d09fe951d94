package hub

import (
	"bytes"
	"context"
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

	"github.com/hilrun/hilrun/rig/iothub"
)

// restEnv is a running hub plus an HTTPS client for its REST API.
type restEnv struct {
	t      *testing.T
	h      *Hub
	base   string
	client *http.Client
	owner  string // iothubowner token scoped to the hub
}

func restStart(t *testing.T) *restEnv {
	t.Helper()
	h, err := Start(Config{Host: "hub.test", MQTTAddr: "127.0.0.1:0", HTTPSAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	e := &restEnv{t: t, h: h, base: "https://" + h.HTTPSAddr()}
	e.client = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: h.RootCAs(), ServerName: "localhost", MinVersion: tls.VersionTLS12},
	}}
	t.Cleanup(e.client.CloseIdleConnections)
	e.owner = e.token("iothubowner", h.Host(), time.Now().Add(time.Hour), false)
	return e
}

// token signs a policy token for resource sr; secondary picks the secondary key.
func (e *restEnv) token(policy, sr string, exp time.Time, secondary bool) string {
	e.t.Helper()
	p, err := e.h.Registry().Policy(policy)
	if err != nil {
		e.t.Fatal(err)
	}
	key := p.PrimaryKey
	if secondary {
		key = p.SecondaryKey
	}
	tok, err := iothub.NewSASToken(sr, key, exp, policy)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// do sends a request with the owner token unless hdr sets Authorization
// (an empty value sends none). body may be nil, string, []byte or a value
// to encode as JSON.
func (e *restEnv) do(method, path string, body any, hdr map[string]string) (*http.Response, []byte) {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", e.owner)
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, b
}

// expect sends a request and fails unless the status matches.
func (e *restEnv) expect(want int, method, path string, body any, hdr map[string]string) (*http.Response, []byte) {
	e.t.Helper()
	resp, b := e.do(method, path, body, hdr)
	if resp.StatusCode != want {
		e.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, resp.StatusCode, want, b)
	}
	return resp, b
}

// restErr is the error body the API returns.
type restErr struct {
	Message          string
	ExceptionMessage string
	ErrorCode        int `json:"errorCode"`
}

func restDecodeErr(t *testing.T, b []byte) restErr {
	t.Helper()
	var e restErr
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("error body is not JSON: %v: %s", err, b)
	}
	if !strings.HasPrefix(e.Message, "ErrorCode:") || e.ExceptionMessage == "" {
		t.Fatalf("error body is not shaped like IoT Hub's: %s", b)
	}
	return e
}

// expectErr sends a request and checks status, error code and error name.
func (e *restEnv) expectErr(status, code int, name, method, path string, body any, hdr map[string]string) restErr {
	e.t.Helper()
	_, b := e.expect(status, method, path, body, hdr)
	re := restDecodeErr(e.t, b)
	if re.ErrorCode != code {
		e.t.Fatalf("%s %s: errorCode %d, want %d; body %s", method, path, re.ErrorCode, code, b)
	}
	if !strings.HasPrefix(re.Message, "ErrorCode:"+name+";") {
		e.t.Fatalf("%s %s: Message %q, want ErrorCode:%s;...", method, path, re.Message, name)
	}
	return re
}

func restJSON[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("response is not the expected JSON: %v: %s", err, b)
	}
	return v
}

// restConnect connects a device over MQTT with paho, as a device SDK would.
func (e *restEnv) restConnect(d Device) paho.Client {
	e.t.Helper()
	id := d.Identity()
	tok, err := iothub.NewSASToken(iothub.DeviceResourceURI(e.h.Host(), id), d.Authentication.SymmetricKey.PrimaryKey, time.Now().Add(time.Hour), "")
	if err != nil {
		e.t.Fatal(err)
	}
	o := paho.NewClientOptions().AddBroker("ssl://" + e.h.MQTTAddr()).SetClientID(id.ClientID()).
		SetUsername(iothub.FormatUsername(e.h.Host(), id, "2021-04-12", nil)).SetPassword(tok).
		SetProtocolVersion(4).SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(5 * time.Second).SetWriteTimeout(5 * time.Second).SetOrderMatters(false).
		SetTLSConfig(&tls.Config{RootCAs: e.h.RootCAs(), ServerName: e.h.Host(), MinVersion: tls.VersionTLS12})
	c := paho.NewClient(o)
	restWait(e.t, c.Connect(), "connect "+id.ClientID())
	e.t.Cleanup(func() { c.Disconnect(50) })
	// paho returns at CONNACK; the hub registers the connection just after.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.h.WaitConnected(ctx, id); err != nil {
		e.t.Fatalf("hub never registered %s: %v", id, err)
	}
	return c
}

func restWait(t *testing.T, tok paho.Token, what string) {
	t.Helper()
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatalf("%s: timed out", what)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func (e *restEnv) putDevice(path string) Device {
	e.t.Helper()
	_, b := e.expect(http.StatusOK, http.MethodPut, path, map[string]any{}, nil)
	return restJSON[Device](e.t, b)
}

func TestRESTDeviceCRUD(t *testing.T) {
	e := restStart(t)

	t.Run("empty registry lists as []", func(t *testing.T) {
		_, b := e.expect(http.StatusOK, http.MethodGet, "/devices?api-version=2021-04-12", nil, nil)
		if strings.TrimSpace(string(b)) != "[]" {
			t.Fatalf("body %s, want []", b)
		}
	})

	var created Device
	t.Run("PUT creates with generated keys", func(t *testing.T) {
		resp, b := e.expect(http.StatusOK, http.MethodPut, "/devices/dev1?api-version=2021-04-12",
			map[string]any{"deviceId": "dev1", "status": "enabled", "lastActivityTime": "0001-01-01T00:00:00"}, nil)
		created = restJSON[Device](t, b)
		if created.DeviceID != "dev1" || created.Etag == "" || created.Authentication.Type != AuthSAS ||
			created.Authentication.SymmetricKey == nil || created.Authentication.SymmetricKey.PrimaryKey == "" {
			t.Fatalf("created device %s", b)
		}
		if got := resp.Header.Get("ETag"); got != `"`+created.Etag+`"` {
			t.Fatalf("ETag header %q, want %q", got, created.Etag)
		}
	})

	t.Run("GET returns the device", func(t *testing.T) {
		_, b := e.expect(http.StatusOK, http.MethodGet, "/devices/dev1", nil, nil)
		if d := restJSON[Device](t, b); d.Etag != created.Etag {
			t.Fatalf("etag %q, want %q", d.Etag, created.Etag)
		}
		_, b = e.expect(http.StatusOK, http.MethodGet, "/devices", nil, nil)
		if ds := restJSON[[]Device](t, b); len(ds) != 1 || ds[0].DeviceID != "dev1" {
			t.Fatalf("list %s", b)
		}
	})

	t.Run("PUT with stale If-Match is 412", func(t *testing.T) {
		e.expectErr(http.StatusPreconditionFailed, 412001, "PreconditionFailed", http.MethodPut, "/devices/dev1",
			map[string]any{"deviceId": "dev1"}, map[string]string{"If-Match": `"stale"`})
	})

	t.Run("PUT with current If-Match replaces", func(t *testing.T) {
		_, b := e.expect(http.StatusOK, http.MethodPut, "/devices/dev1",
			map[string]any{"deviceId": "dev1", "status": "disabled"}, map[string]string{"If-Match": `"` + created.Etag + `"`})
		d := restJSON[Device](t, b)
		if d.Status != StatusDisabled || d.Etag == created.Etag || d.GenerationID != created.GenerationID {
			t.Fatalf("replaced device %s (old etag %s)", b, created.Etag)
		}
		created = d
	})

	t.Run("body id must match the path", func(t *testing.T) {
		e.expectErr(http.StatusBadRequest, 400004, "ArgumentInvalid", http.MethodPut, "/devices/dev1",
			map[string]any{"deviceId": "other"}, nil)
	})

	t.Run("CONN-024 invalid id is 400", func(t *testing.T) {
		e.expectErr(http.StatusBadRequest, 400004, "ArgumentInvalid", http.MethodPut, "/devices/bad%20id", map[string]any{}, nil)
	})

	t.Run("non-JSON body is 400", func(t *testing.T) {
		for _, body := range []string{"not json", "[1,2]", `{"deviceId":`, `{} {}`, ""} {
			e.expectErr(http.StatusBadRequest, 400004, "ArgumentInvalid", http.MethodPut, "/devices/dev2", body, nil)
		}
	})

	t.Run("body over 1 MiB is 413", func(t *testing.T) {
		big := `{"statusReason":"` + strings.Repeat("x", 1<<20) + `"}`
		e.expectErr(http.StatusRequestEntityTooLarge, 413001, "MessageTooLarge", http.MethodPut, "/devices/dev2", big, nil)
	})

	t.Run("escaped ids round-trip", func(t *testing.T) {
		d := e.putDevice("/devices/" + url.PathEscape("odd#id?%"))
		if d.DeviceID != "odd#id?%" {
			t.Fatalf("device id %q", d.DeviceID)
		}
		e.expect(http.StatusOK, http.MethodGet, "/devices/odd%23id%3F%25", nil, nil)
		e.expect(http.StatusNoContent, http.MethodDelete, "/devices/odd%23id%3F%25", nil, nil)
	})

	t.Run("DELETE with stale If-Match is 412", func(t *testing.T) {
		e.expectErr(http.StatusPreconditionFailed, 412001, "PreconditionFailed", http.MethodDelete, "/devices/dev1", nil,
			map[string]string{"If-Match": `"stale"`})
	})

	t.Run("DELETE is 204, then 404", func(t *testing.T) {
		e.expect(http.StatusNoContent, http.MethodDelete, "/devices/dev1", nil, map[string]string{"If-Match": `"` + created.Etag + `"`})
		e.expectErr(http.StatusNotFound, 404001, "DeviceNotFound", http.MethodGet, "/devices/dev1", nil, nil)
		e.expectErr(http.StatusNotFound, 404001, "DeviceNotFound", http.MethodDelete, "/devices/dev1", nil, nil)
	})
}

func TestRESTModuleCRUD(t *testing.T) {
	e := restStart(t)
	t.Run("MOD module on unknown device is 404", func(t *testing.T) {
		e.expectErr(http.StatusNotFound, 404001, "DeviceNotFound", http.MethodPut, "/devices/ghost/modules/m1", map[string]any{}, nil)
		e.expectErr(http.StatusNotFound, 404001, "DeviceNotFound", http.MethodGet, "/devices/ghost/modules", nil, nil)
	})
	e.putDevice("/devices/dev1")
	t.Run("MOD create, get, list, delete", func(t *testing.T) {
		_, b := e.expect(http.StatusOK, http.MethodGet, "/devices/dev1/modules", nil, nil)
		if strings.TrimSpace(string(b)) != "[]" {
			t.Fatalf("module list %s, want []", b)
		}
		m := e.putDevice("/devices/dev1/modules/m1")
		if m.DeviceID != "dev1" || m.ModuleID != "m1" {
			t.Fatalf("module %+v", m)
		}
		_, b = e.expect(http.StatusOK, http.MethodGet, "/devices/dev1/modules/m1", nil, nil)
		if got := restJSON[Device](t, b); got.Etag != m.Etag {
			t.Fatalf("module GET %s", b)
		}
		_, b = e.expect(http.StatusOK, http.MethodGet, "/devices/dev1/modules", nil, nil)
		if ms := restJSON[[]Device](t, b); len(ms) != 1 || ms[0].ModuleID != "m1" {
			t.Fatalf("module list %s", b)
		}
		e.expectErr(http.StatusPreconditionFailed, 412001, "PreconditionFailed", http.MethodPut, "/devices/dev1/modules/m1",
			map[string]any{}, map[string]string{"If-Match": "nope"})
		e.expectErr(http.StatusBadRequest, 400004, "ArgumentInvalid", http.MethodPut, "/devices/dev1/modules/m1",
			map[string]any{"moduleId": "m2"}, nil)
		e.expect(http.StatusNoContent, http.MethodDelete, "/devices/dev1/modules/m1", nil, nil)
		e.expectErr(http.StatusNotFound, 404010, "ModuleNotFound", http.MethodGet, "/devices/dev1/modules/m1", nil, nil)
	})
}

func TestRESTTwin(t *testing.T) {
	e := restStart(t)
	e.putDevice("/devices/dev1")

	t.Run("TWIN-017 GET has versions and metadata", func(t *testing.T) {
		_, b := e.expect(http.StatusOK, http.MethodGet, "/twins/dev1?api-version=2021-04-12", nil, nil)
		tw := restJSON[map[string]any](t, b)
		desired := tw["properties"].(map[string]any)["desired"].(map[string]any)
		if desired["$version"] != float64(1) || desired["$metadata"] == nil || tw["deviceId"] != "dev1" {
			t.Fatalf("twin %s", b)
		}
	})

	var etag string
	t.Run("TWIN-009 PATCH merges desired and tags", func(t *testing.T) {
		e.expect(http.StatusOK, http.MethodPatch, "/twins/dev1",
			`{"tags":{"site":"lab"},"properties":{"desired":{"a":1,"nested":{"x":true}}}}`, nil)
		_, b := e.expect(http.StatusOK, http.MethodPatch, "/twins/dev1",
			`{"properties":{"desired":{"b":"two","nested":{"y":12345678901234}}}}`, nil)
		tw := restJSON[Twin](t, b)
		d := tw.Properties.Desired
		nested, _ := d["nested"].(map[string]any)
		if d["a"] != float64(1) || d["b"] != "two" || nested["x"] != true || nested["y"] != float64(12345678901234) ||
			tw.Tags["site"] != "lab" || d["$version"] != float64(3) {
			t.Fatalf("merged twin %s", b)
		}
		if !strings.Contains(string(b), "12345678901234") {
			t.Fatalf("large integer lost its digits: %s", b)
		}
		etag = tw.Etag
	})

	t.Run("TWIN If-Match mismatch is 412", func(t *testing.T) {
		e.expectErr(http.StatusPreconditionFailed, 412001, "PreconditionFailed", http.MethodPatch, "/twins/dev1",
			`{"tags":{"x":1}}`, map[string]string{"If-Match": `"stale"`})
		e.expect(http.StatusOK, http.MethodPatch, "/twins/dev1", `{"tags":{"x":1}}`, map[string]string{"If-Match": `"` + etag + `"`})
	})

	t.Run("TWIN PUT replaces desired and tags", func(t *testing.T) {
		_, b := e.expect(http.StatusOK, http.MethodPut, "/twins/dev1", `{"tags":{"only":"me"},"properties":{"desired":{"c":3}}}`, nil)
		tw := restJSON[Twin](t, b)
		if _, ok := tw.Properties.Desired["a"]; ok || tw.Properties.Desired["c"] != float64(3) || len(tw.Tags) != 1 {
			t.Fatalf("replaced twin %s", b)
		}
	})

	t.Run("TWIN-011 invalid desired key is 400", func(t *testing.T) {
		e.expectErr(http.StatusBadRequest, 400004, "ArgumentInvalid", http.MethodPatch, "/twins/dev1",
			`{"properties":{"desired":{"a.b":1}}}`, nil)
	})

	t.Run("non-JSON twin body is 400", func(t *testing.T) {
		e.expectErr(http.StatusBadRequest, 400004, "ArgumentInvalid", http.MethodPatch, "/twins/dev1", "desired=1", nil)
		e.expectErr(http.StatusBadRequest, 400004, "ArgumentInvalid", http.MethodPatch, "/twins/dev1", `{"tags":[1]}`, nil)
	})

	t.Run("unknown twin is 404", func(t *testing.T) {
		e.expectErr(http.StatusNotFound, 404001, "DeviceNotFound", http.MethodGet, "/twins/ghost", nil, nil)
		e.expectErr(http.StatusNotFound, 404001, "DeviceNotFound", http.MethodPatch, "/twins/ghost", `{"tags":{"a":1}}`, nil)
	})

	t.Run("MOD module twin", func(t *testing.T) {
		e.expectErr(http.StatusNotFound, 404010, "ModuleNotFound", http.MethodGet, "/twins/dev1/modules/m1", nil, nil)
		e.putDevice("/devices/dev1/modules/m1")
		_, b := e.expect(http.StatusOK, http.MethodPatch, "/twins/dev1/modules/m1", `{"properties":{"desired":{"m":1}}}`, nil)
		if tw := restJSON[Twin](t, b); tw.ModuleID != "m1" || tw.Properties.Desired["m"] != float64(1) {
			t.Fatalf("module twin %s", b)
		}
	})
}

func TestRESTMethods(t *testing.T) {
	t.Parallel() // a hub of its own; waits on the hub's timers
	e := restStart(t)
	d := e.putDevice("/devices/dev1")
	call := `{"methodName":"reboot","payload":{"delay":1},"responseTimeoutInSeconds":5,"connectTimeoutInSeconds":0}`

	t.Run("METH device not online is 404103", func(t *testing.T) {
		e.expectErr(http.StatusNotFound, 404103, "DeviceNotOnline", http.MethodPost, "/twins/dev1/methods?api-version=2021-04-12", call, nil)
	})
	t.Run("METH unknown device is 404001", func(t *testing.T) {
		e.expectErr(http.StatusNotFound, 404001, "DeviceNotFound", http.MethodPost, "/twins/ghost/methods", call, nil)
	})
	t.Run("METH bad bodies are 400", func(t *testing.T) {
		for _, body := range []string{"reboot", `{"methodName":}`, `{"payload":1}`, `{"methodName":"x","responseTimeoutInSeconds":301}`,
			`{"methodName":"x","responseTimeoutInSeconds":-1}`, `{"methodName":"x","connectTimeoutInSeconds":1e9}`} {
			e.expectErr(http.StatusBadRequest, 400004, "ArgumentInvalid", http.MethodPost, "/twins/dev1/methods", body, nil)
		}
	})
	t.Run("METH-007 oversized body is 413", func(t *testing.T) {
		big := `{"methodName":"x","payload":"` + strings.Repeat("a", iothub.MaxMethodPayloadBytes+4*1024) + `"}`
		e.expectErr(http.StatusRequestEntityTooLarge, 413001, "MessageTooLarge", http.MethodPost, "/twins/dev1/methods", big, nil)
	})

	c := e.restConnect(d)
	restWait(t, c.Subscribe("$iothub/methods/POST/#", 0, func(c paho.Client, m paho.Message) {
		_, rid, _ := strings.Cut(m.Topic(), "?$rid=")
		if strings.Contains(m.Topic(), "/silent/") {
			return // never answered: the caller gets 504
		}
		c.Publish(iothub.MethodResponseTopic(201, rid), 0, false, append([]byte(`{"echo":`), append(m.Payload(), '}')...))
	}), "subscribe methods")

	t.Run("METH-003 success returns status and payload", func(t *testing.T) {
		_, b := e.expect(http.StatusOK, http.MethodPost, "/twins/dev1/methods", call, nil)
		res := restJSON[MethodResult](t, b)
		if res.Status != 201 || string(res.Payload) != `{"echo":{"delay":1}}` {
			t.Fatalf("method result %s", b)
		}
	})
	t.Run("METH-006 no answer is 504101", func(t *testing.T) {
		e.expectErr(http.StatusGatewayTimeout, 504101, "GatewayTimeout", http.MethodPost, "/twins/dev1/methods",
			`{"methodName":"silent","responseTimeoutInSeconds":1}`, nil)
	})
}

func TestRESTAuth(t *testing.T) {
	e := restStart(t)
	e.putDevice("/devices/dev1")
	host := e.h.Host()
	hour := time.Now().Add(time.Hour)
	owner, _ := e.h.Registry().Policy("iothubowner")
	wrongKey, err := iothub.NewSASToken(host, NewKey(), hour, "iothubowner")
	if err != nil {
		t.Fatal(err)
	}
	deviceKeyToken, err := iothub.NewSASToken(host, owner.PrimaryKey, hour, "")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, method, path, auth string
		body                     any
		want                     int
	}{
		{"no Authorization header", http.MethodGet, "/devices", "", nil, 401},
		{"not a SAS token", http.MethodGet, "/devices", "Bearer abc", nil, 401},
		{"wrong key", http.MethodGet, "/devices", wrongKey, nil, 401},
		{"token without skn", http.MethodGet, "/devices", deviceKeyToken, nil, 401},
		{"unknown policy", http.MethodGet, "/devices", strings.Replace(e.owner, "skn=iothubowner", "skn=nobody", 1), nil, 401},
		{"expired se", http.MethodGet, "/devices", e.token("iothubowner", host, time.Now().Add(-time.Second), false), nil, 401},
		{"sr for another hub", http.MethodGet, "/devices", e.token("iothubowner", "other.azure-devices.net", hour, false), nil, 401},
		{"sr host in other letter case", http.MethodGet, "/devices", e.token("iothubowner", strings.ToUpper(host), hour, false), nil, 200},
		{"secondary key", http.MethodGet, "/devices", e.token("iothubowner", host, hour, true), nil, 200},
		{"sr scoped to the device", http.MethodGet, "/devices/dev1", e.token("iothubowner", host+"/devices/dev1", hour, false), nil, 200},
		{"sr scoped to a device prefix", http.MethodGet, "/devices/dev1", e.token("iothubowner", host+"/devices/dev", hour, false), nil, 401},
		{"sr scoped to another device", http.MethodGet, "/devices/dev1", e.token("iothubowner", host+"/devices/dev2", hour, false), nil, 401},
		{"device policy cannot write the registry", http.MethodPut, "/devices/dev2", e.token("device", host, hour, false), map[string]any{}, 401},
		{"registryRead cannot write", http.MethodPut, "/devices/dev2", e.token("registryRead", host, hour, false), map[string]any{}, 401},
		{"registryRead can read", http.MethodGet, "/devices/dev1", e.token("registryRead", host, hour, false), nil, 200},
		{"registryReadWrite can write", http.MethodPut, "/devices/dev3", e.token("registryReadWrite", host, hour, false), map[string]any{}, 200},
		{"service policy cannot read the registry", http.MethodGet, "/devices", e.token("service", host, hour, false), nil, 401},
		{"service policy reads twins", http.MethodGet, "/twins/dev1", e.token("service", host, hour, false), nil, 200},
		{"registryRead cannot use hilrun endpoints", http.MethodGet, "/hilrun/status", e.token("registryRead", host, hour, false), nil, 401},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			auth := c.auth // do() sends no header for ""
			resp, b := e.do(c.method, c.path, c.body, map[string]string{"Authorization": auth})
			if resp.StatusCode != c.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.want, b)
			}
			if c.want == 401 {
				re := restDecodeErr(t, b)
				if re.ErrorCode != 401002 || !strings.HasPrefix(re.Message, "ErrorCode:IotHubUnauthorizedAccess;") {
					t.Fatalf("401 body %s", b)
				}
				if i := strings.Index(auth, "sig="); i >= 0 {
					sig, _, _ := strings.Cut(auth[i+4:], "&")
					if strings.Contains(string(b), sig) {
						t.Fatalf("401 body echoes the signature: %s", b)
					}
				}
			}
		})
	}
}

func TestRESTRouting(t *testing.T) {
	e := restStart(t)
	t.Run("unknown path is 404 JSON", func(t *testing.T) {
		for _, p := range []string{"/", "/nothing", "/devices/a/b", "/twins/a/modules", "/hilrun", "/devices//modules"} {
			_, b := e.expect(http.StatusNotFound, http.MethodGet, p, nil, nil)
			restDecodeErr(t, b)
		}
	})
	t.Run("wrong method is 405 with Allow", func(t *testing.T) {
		resp, b := e.expect(http.StatusMethodNotAllowed, http.MethodPost, "/devices/dev1", "{}", nil)
		restDecodeErr(t, b)
		if got := resp.Header.Get("Allow"); got != "DELETE, GET, PUT" {
			t.Fatalf("Allow %q", got)
		}
		resp, _ = e.expect(http.StatusMethodNotAllowed, http.MethodGet, "/twins/dev1/methods", nil, nil)
		if got := resp.Header.Get("Allow"); got != "POST" {
			t.Fatalf("Allow %q", got)
		}
	})
	t.Run("trailing slash and any api-version are accepted", func(t *testing.T) {
		e.expect(http.StatusOK, http.MethodGet, "/devices/?api-version=whatever", nil, nil)
	})
	t.Run("hub keeps serving after malformed requests", func(t *testing.T) {
		for _, body := range []string{"\x00\xff", "{", `{"methodName":["x"]}`, strings.Repeat("[", 10000)} {
			e.do(http.MethodPost, "/twins/x/methods", body, nil)
			e.do(http.MethodPut, "/devices/x", body, nil)
			e.do(http.MethodPost, "/hilrun/faults", body, nil)
		}
		e.expect(http.StatusOK, http.MethodGet, "/hilrun/status", nil, nil)
	})
}

func TestRESTC2D(t *testing.T) {
	e := restStart(t)
	e.putDevice("/devices/dev1")
	const path = "/hilrun/devices/dev1/messages/devicebound"

	t.Run("C2D-001 send is 202 and queued as Enqueued", func(t *testing.T) {
		_, b := e.expect(http.StatusAccepted, http.MethodPost, path+"?correlationId=c1&ttlSeconds=120&app.Mixed=Case",
			"hello", map[string]string{"iothub-messageid": "m-1", "iothub-app-color": "red", "iothub-ack": "full"})
		if got := restJSON[map[string]string](t, b)["messageId"]; got != "m-1" {
			t.Fatalf("messageId %q", got)
		}
		_, b = e.expect(http.StatusOK, http.MethodGet, path, nil, nil)
		q := restJSON[[]C2DStatus](t, b)
		if len(q) != 1 || q[0].MessageID != "m-1" || q[0].State != C2DEnqueued {
			t.Fatalf("queue %s", b)
		}
		if ttl := q[0].Expiry.Sub(q[0].Enqueued); ttl != 120*time.Second {
			t.Fatalf("TTL %s, want 2m", ttl)
		}
	})
	t.Run("C2D-002 properties reach the topic", func(t *testing.T) {
		var topic string
		for _, en := range e.h.Trace().ForClient("dev1") {
			if en.Type == "c2d-enqueued" {
				topic = en.Topic
			}
		}
		for _, want := range []string{"%24.mid=m-1", "%24.cid=c1", "iothub-ack=full", "Mixed=Case", "color=red"} {
			if !strings.Contains(topic, want) {
				t.Fatalf("topic %q lacks %q", topic, want)
			}
		}
	})
	t.Run("generated message id", func(t *testing.T) {
		_, b := e.expect(http.StatusAccepted, http.MethodPost, path, []byte{0, 1, 2}, nil)
		if restJSON[map[string]string](t, b)["messageId"] == "" {
			t.Fatalf("no messageId: %s", b)
		}
	})
	t.Run("bad ack and ttl are 400", func(t *testing.T) {
		e.expectErr(http.StatusBadRequest, 400004, "ArgumentInvalid", http.MethodPost, path+"?ack=maybe", "x", nil)
		e.expectErr(http.StatusBadRequest, 400004, "ArgumentInvalid", http.MethodPost, path+"?ttlSeconds=-1", "x", nil)
		e.expectErr(http.StatusBadRequest, 400004, "ArgumentInvalid", http.MethodPost, path+"?ttlSeconds=999999999", "x", nil)
	})
	t.Run("C2D-007 payload over 64 KiB is 413", func(t *testing.T) {
		e.expectErr(http.StatusRequestEntityTooLarge, 413001, "MessageTooLarge", http.MethodPost, path,
			bytes.Repeat([]byte("a"), iothub.MaxC2DBytes+1), nil)
	})
	t.Run("unknown device is 404", func(t *testing.T) {
		e.expectErr(http.StatusNotFound, 404001, "DeviceNotFound", http.MethodPost, "/hilrun/devices/ghost/messages/devicebound", "x", nil)
		e.expectErr(http.StatusNotFound, 404001, "DeviceNotFound", http.MethodGet, "/hilrun/devices/ghost/messages/devicebound", nil, nil)
	})
	t.Run("C2D-006 queue full after 50 is 403", func(t *testing.T) {
		for i := 2; i < iothub.MaxC2DQueue; i++ {
			e.expect(http.StatusAccepted, http.MethodPost, path, fmt.Sprint(i), nil)
		}
		e.expectErr(http.StatusForbidden, 403004, "DeviceMaximumQueueDepthExceeded", http.MethodPost, path, "one too many", nil)
		_, b := e.expect(http.StatusOK, http.MethodGet, path, nil, nil)
		if q := restJSON[[]C2DStatus](t, b); len(q) != iothub.MaxC2DQueue {
			t.Fatalf("queue holds %d, want %d", len(q), iothub.MaxC2DQueue)
		}
	})
}

func TestRESTTelemetryTraceStatus(t *testing.T) {
	e := restStart(t)
	d := e.putDevice("/devices/dev1")

	t.Run("unknown device telemetry is []", func(t *testing.T) {
		_, b := e.expect(http.StatusOK, http.MethodGet, "/hilrun/telemetry?deviceId=ghost", nil, nil)
		if strings.TrimSpace(string(b)) != "[]" {
			t.Fatalf("body %s, want []", b)
		}
		_, b = e.expect(http.StatusOK, http.MethodGet, "/hilrun/telemetry", nil, nil)
		if strings.TrimSpace(string(b)) != "[]" {
			t.Fatalf("body %s, want []", b)
		}
	})
	t.Run("bad telemetry queries are 400", func(t *testing.T) {
		e.expectErr(http.StatusBadRequest, 400004, "ArgumentInvalid", http.MethodGet, "/hilrun/telemetry?after=x", nil, nil)
		e.expectErr(http.StatusBadRequest, 400004, "ArgumentInvalid", http.MethodGet, "/hilrun/telemetry?moduleId=m", nil, nil)
		e.expectErr(http.StatusBadRequest, 400004, "ArgumentInvalid", http.MethodGet, "/hilrun/telemetry/wait?timeoutSeconds=1", nil, nil)
	})
	t.Run("wait times out with 408", func(t *testing.T) {
		re := e.expectErr(http.StatusRequestTimeout, 0, "RequestTimeout", http.MethodGet,
			"/hilrun/telemetry/wait?deviceId=dev1&timeoutSeconds=0.2", nil, nil)
		if !strings.Contains(re.Message, "other message(s) seen") {
			t.Fatalf("timeout message %q does not say what was seen", re.Message)
		}
	})
	t.Run("status before connecting", func(t *testing.T) {
		_, b := e.expect(http.StatusOK, http.MethodGet, "/hilrun/status", nil, nil)
		st := restJSON[restStatusBody](t, b)
		if st.Version != Version || st.Host != "hub.test" || st.Connected == nil || len(st.Connected) != 0 {
			t.Fatalf("status %s", b)
		}
	})

	c := e.restConnect(d)
	t.Run("TEL-001 telemetry is listed and awaited", func(t *testing.T) {
		after := e.h.LastTelemetrySeq()
		type reply struct {
			status int
			body   []byte
			err    error
		}
		done := make(chan reply, 1)
		go func() {
			// Not e.do: t.Fatal must stay on the test goroutine.
			req, _ := http.NewRequest(http.MethodGet, e.base+fmt.Sprintf("/hilrun/telemetry/wait?deviceId=dev1&after=%d&timeoutSeconds=10", after), nil)
			req.Header.Set("Authorization", e.owner)
			resp, err := e.client.Do(req)
			if err != nil {
				done <- reply{err: err}
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			done <- reply{resp.StatusCode, b, err}
		}()
		restWait(t, c.Publish(iothub.TelemetryTopic(d.Identity(), nil), 1, false, "temp=21"), "publish")
		r := <-done
		if r.err != nil || r.status != http.StatusOK {
			t.Fatalf("wait: status %d, err %v, body %s", r.status, r.err, r.body)
		}
		m := restJSON[Message](t, r.body)
		if string(m.Payload) != "temp=21" || m.Identity.DeviceID != "dev1" {
			t.Fatalf("awaited message %+v", m)
		}
		_, b := e.expect(http.StatusOK, http.MethodGet, fmt.Sprintf("/hilrun/telemetry?deviceId=dev1&after=%d", after), nil, nil)
		if ms := restJSON[[]Message](t, b); len(ms) != 1 || ms[0].Seq != m.Seq {
			t.Fatalf("listed %s", b)
		}
		_, b = e.expect(http.StatusOK, http.MethodGet, fmt.Sprintf("/hilrun/telemetry?deviceId=dev1&after=%d", m.Seq), nil, nil)
		if strings.TrimSpace(string(b)) != "[]" {
			t.Fatalf("after the last message: %s", b)
		}
	})
	t.Run("status lists the connected device", func(t *testing.T) {
		_, b := e.expect(http.StatusOK, http.MethodGet, "/hilrun/status", nil, nil)
		if st := restJSON[restStatusBody](t, b); len(st.Connected) != 1 || st.Connected[0] != "dev1" {
			t.Fatalf("status %s", b)
		}
	})
	t.Run("trace is a JSON array filtered by client and seq", func(t *testing.T) {
		_, b := e.expect(http.StatusOK, http.MethodGet, "/hilrun/trace?clientId=dev1", nil, nil)
		entries := restJSON[[]Entry](t, b)
		if len(entries) == 0 {
			t.Fatalf("no trace entries for dev1")
		}
		for _, en := range entries {
			if en.ClientID != "dev1" {
				t.Fatalf("entry for %q in dev1's trace", en.ClientID)
			}
		}
		last := entries[len(entries)-1].Seq
		_, b = e.expect(http.StatusOK, http.MethodGet, fmt.Sprintf("/hilrun/trace?clientId=dev1&after=%d", last), nil, nil)
		if strings.TrimSpace(string(b)) != "[]" {
			t.Fatalf("trace after the last entry: %s", b)
		}
		_, b = e.expect(http.StatusOK, http.MethodGet, "/hilrun/trace?clientId=nobody", nil, nil)
		if strings.TrimSpace(string(b)) != "[]" {
			t.Fatalf("trace for nobody: %s", b)
		}
		e.expectErr(http.StatusBadRequest, 400004, "ArgumentInvalid", http.MethodGet, "/hilrun/trace?after=-1", nil, nil)
	})
}

func TestRESTFaults(t *testing.T) {
	e := restStart(t)
	d := e.putDevice("/devices/dev1")
	const path = "/hilrun/faults"
	bad := []string{
		`{"action":"explode","deviceId":"dev1"}`,
		`not json`,
		`{"action":"drop"}`,
		`{"action":"refuse","deviceId":"dev1","returnCode":0,"durationSeconds":1}`,
		`{"action":"refuse","deviceId":"dev1","returnCode":3}`,
		`{"action":"silent","deviceId":"dev1"}`,
		`{"action":"silent","moduleId":"m"}`,
	}
	for _, body := range bad {
		t.Run("400 "+body, func(t *testing.T) {
			e.expectErr(http.StatusBadRequest, 400004, "ArgumentInvalid", http.MethodPost, path, body, nil)
		})
	}
	t.Run("RECON drop of an offline device is 404", func(t *testing.T) {
		e.expectErr(http.StatusNotFound, 404103, "DeviceNotOnline", http.MethodPost, path, `{"action":"drop","deviceId":"dev1","rst":true}`, nil)
	})
	t.Run("RECON silent on and off", func(t *testing.T) {
		e.expect(http.StatusNoContent, http.MethodPost, path, `{"action":"silent","deviceId":"dev1","silent":true}`, nil)
		e.expect(http.StatusNoContent, http.MethodPost, path, `{"action":"silent","deviceId":"dev1","silent":false}`, nil)
	})
	t.Run("RECON drop closes a live connection", func(t *testing.T) {
		e.restConnect(d)
		e.expect(http.StatusNoContent, http.MethodPost, path, `{"action":"drop","deviceId":"dev1","rst":true,"reason":"test"}`, nil)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if err := e.h.WaitDisconnected(ctx, d.Identity()); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("RECON refuse makes CONNECT fail", func(t *testing.T) {
		e.expect(http.StatusNoContent, http.MethodPost, path, `{"action":"refuse","deviceId":"dev1","returnCode":3,"durationSeconds":10}`, nil)
		if _, _, refused := e.h.connectFault(d.Identity()); !refused {
			t.Fatal("no refusal recorded for dev1")
		}
	})
}
