package dpsproto

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hilrun/hilrun/rig/iothub"
)

func TestGolden(t *testing.T) {
	b, err := os.ReadFile("../../devicefw/testdata/dps.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		DeriveKey []struct{ GroupKey, RegistrationID, DeviceKey string } `json:"deriveKey"`
		Username  []struct{ IDScope, RegistrationID, Username string }   `json:"username"`
		Token     []struct {
			Resource, Key, KeyName, Password string
			Expiry                           int64
		} `json:"token"`
		Topics []struct{ RID, OperationID, Register, Status string } `json:"topics"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	for _, d := range v.DeriveKey {
		got, err := DeriveKey(d.GroupKey, d.RegistrationID)
		if err != nil || got != d.DeviceKey {
			t.Errorf("DeriveKey(%s) = %q, %v; want %q", d.RegistrationID, got, err, d.DeviceKey)
		}
	}
	for _, u := range v.Username {
		if got := FormatUsername(u.IDScope, u.RegistrationID, nil); got != u.Username {
			t.Errorf("FormatUsername = %q; want %q", got, u.Username)
		}
	}
	for _, tk := range v.Token {
		got, err := iothub.NewSASToken(tk.Resource, tk.Key, time.Unix(tk.Expiry, 0), tk.KeyName)
		if err != nil || got != tk.Password {
			t.Errorf("token = %q, %v; want %q", got, err, tk.Password)
		}
	}
	for _, tp := range v.Topics {
		if tp.Register != "" && RegisterTopic(tp.RID) != tp.Register {
			t.Errorf("RegisterTopic = %q; want %q", RegisterTopic(tp.RID), tp.Register)
		}
		if tp.Status != "" && StatusTopic(tp.RID, tp.OperationID) != tp.Status {
			t.Errorf("StatusTopic = %q; want %q", StatusTopic(tp.RID, tp.OperationID), tp.Status)
		}
	}
}

func TestParseUsername(t *testing.T) {
	for _, c := range []struct {
		in, scope, reg, api, err string
		extra                    string
	}{
		{in: "0ne00A/registrations/dev-1/api-version=2019-03-31", scope: "0ne00A", reg: "dev-1", api: "2019-03-31"},
		{in: "0ne00A/registrations/dev-1/api-version=2019-03-31&DeviceClientType=nano%3B1", scope: "0ne00A", reg: "dev-1", api: "2019-03-31", extra: "nano;1"},
		{in: "0ne00A/registrations/dev-1/?api-version=2019-03-31", err: "does not start with api-version="},
		{in: "0ne00A/registration/dev-1/api-version=2019-03-31", err: "not \"registrations\""},
		{in: "0ne00A/registrations/dev-1", err: "is not"},
		{in: "", err: "is not"},
		{in: "0ne 0A/registrations/dev-1/api-version=x", err: "ID scope"},
		{in: "0ne00A/registrations/dev 1/api-version=x", err: "registration ID"},
		{in: "0ne00A/registrations//api-version=x", err: "registration ID"},
		{in: "0ne00A/registrations/d/api-version=%zz", err: "percent-encoded"},
	} {
		u, err := ParseUsername(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseUsername(%q) error %v; want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || u.IDScope != c.scope || u.RegistrationID != c.reg || u.APIVersion != c.api || u.Extra.Get("DeviceClientType") != c.extra {
			t.Errorf("ParseUsername(%q) = %+v, %v", c.in, u, err)
		}
	}
}

func TestRequestAndResponseTopics(t *testing.T) {
	for _, c := range []struct {
		in, kind, rid, op string
		bad               bool
	}{
		{in: RegisterTopic("7"), kind: KindRegister, rid: "7"},
		{in: StatusTopic("8", "4.a.b"), kind: KindStatus, rid: "8", op: "4.a.b"},
		{in: RegisterPrefix, bad: true},
		{in: StatusPrefix + "$rid=1", bad: true},
		{in: "$dps/registrations/PUT/other/?$rid=1", bad: true},
		{in: RegisterPrefix + "$rid=%zz", bad: true},
		{in: "devices/x/messages/events/", bad: true},
	} {
		r, err := ParseRequestTopic(c.in)
		if c.bad != (err != nil) || !c.bad && (r.Kind != c.kind || r.RID != c.rid || r.OperationID != c.op) {
			t.Errorf("ParseRequestTopic(%q) = %+v, %v", c.in, r, err)
		}
	}
	for _, c := range []struct {
		in         string
		status, ra int
		hasRA, bad bool
		rid        string
	}{
		{in: ResponseTopic(202, "1", 3), status: 202, ra: 3, hasRA: true, rid: "1"},
		{in: ResponseTopic(200, "2", -1), status: 200, rid: "2"},
		{in: "$dps/registrations/res/429/?retry-after=5&$rid=9", status: 429, ra: 5, hasRA: true, rid: "9"},
		{in: "$dps/registrations/res/abc/?$rid=1", bad: true},
		{in: "$dps/registrations/res/202", bad: true},
		{in: "$dps/registrations/res/202/?$rid=1&retry-after=-1", bad: true},
		{in: "$dps/registrations/res/202/?$rid=1&retry-after=x", bad: true},
		{in: "$iothub/twin/res/200/?$rid=1", bad: true},
	} {
		r, err := ParseResponseTopic(c.in)
		if c.bad != (err != nil) || !c.bad && (r.Status != c.status || r.RetryAfter != c.ra || r.HasRetryAfter != c.hasRA || r.RID != c.rid) {
			t.Errorf("ParseResponseTopic(%q) = %+v, %v", c.in, r, err)
		}
	}
}

func TestParseRegisterBody(t *testing.T) {
	for _, c := range []struct {
		in      string
		reg     string
		payload string
		err     string
	}{
		{in: `{"registrationId":"a"}`, reg: "a"},
		{in: `{"registrationId":"a","payload":{"modelId":"dtmi:x;1"}}`, reg: "a", payload: `{"modelId":"dtmi:x;1"}`},
		{in: `{"registrationId":"a","payload":null}`, reg: "a"},
		{in: `{"payload":{}}`, err: "no registrationId"},
		{in: `{"registrationId":7}`, err: "not a string"},
		{in: `[]`, err: "not a JSON object"},
		{in: `null`, err: "not a JSON object"},
		{in: `not json`, err: "not a JSON object"},
		{in: ``, err: "not a JSON object"},
		{in: `{"registrationId":"a","payload":` + strings.Repeat(" ", MaxRequestBytes) + `1}`, err: "above"},
	} {
		b, err := ParseRegisterBody([]byte(c.in))
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseRegisterBody(%.40q) error %v; want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || b.RegistrationID != c.reg || string(b.Payload) != c.payload {
			t.Errorf("ParseRegisterBody(%q) = %+v, %v", c.in, b, err)
		}
	}
}

func TestDeriveKeyRefusesBadKeys(t *testing.T) {
	for _, k := range []string{"", "not base64!", "===="} {
		if _, err := DeriveKey(k, "a"); err == nil {
			t.Errorf("DeriveKey(%q) accepted", k)
		}
	}
}

func TestFinal(t *testing.T) {
	for s, want := range map[string]bool{StatusAssigned: true, StatusFailed: true, StatusDisabled: true, StatusAssigning: false, StatusUnassigned: false, "": false} {
		if Final(s) != want {
			t.Errorf("Final(%q) != %v", s, want)
		}
	}
}

func FuzzParseUsername(f *testing.F) {
	f.Add("0ne00A/registrations/dev-1/api-version=2019-03-31&x=y")
	f.Add("a/registrations/b/")
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseUsername(s)
		if err != nil {
			return
		}
		if CheckRegistrationID(u.RegistrationID) != nil || CheckIDScope(u.IDScope) != nil {
			t.Fatalf("accepted %q with bad parts %+v", s, u)
		}
	})
}

func FuzzParseTopics(f *testing.F) {
	f.Add(RegisterTopic("1"))
	f.Add(StatusTopic("2", "4.x.y"))
	f.Add(ResponseTopic(202, "3", 1))
	f.Fuzz(func(t *testing.T, s string) {
		if r, err := ParseRequestTopic(s); err == nil && r.RID == "" {
			t.Fatalf("request %q accepted without $rid", s)
		}
		if r, err := ParseResponseTopic(s); err == nil && (r.Status < 100 || r.RetryAfter < 0) {
			t.Fatalf("response %q accepted as %+v", s, r)
		}
	})
}

func FuzzParseRegisterBody(f *testing.F) {
	f.Add([]byte(`{"registrationId":"a","payload":{"modelId":"dtmi:x;1"}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRegisterBody(b)
		if err != nil {
			return
		}
		if len(b) > MaxRequestBytes || (len(r.Payload) > 0 && !json.Valid(r.Payload)) {
			t.Fatalf("accepted %q as %+v", b, r)
		}
	})
}
