package awsproto

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseShadowTopic(t *testing.T) {
	for _, c := range []struct {
		topic string
		want  ShadowRef
		ok    bool
	}{
		{"$aws/things/t1/shadow/get", ShadowRef{Thing: "t1", Op: "get"}, true},
		{"$aws/things/t1/shadow/update/delta", ShadowRef{Thing: "t1", Op: "update", Answer: "delta"}, true},
		{"$aws/things/t1/shadow/name/cfg/update/documents", ShadowRef{Thing: "t1", Name: "cfg", Op: "update", Answer: "documents"}, true},
		{"$aws/things/t1/shadow/name/cfg/delete/accepted", ShadowRef{Thing: "t1", Name: "cfg", Op: "delete", Answer: "accepted"}, true},
		{"$aws/things/t1/shadow/get/delta", ShadowRef{}, false},
		{"$aws/things/t1/shadow/name//get", ShadowRef{}, false},
		{"$aws/things/t1/shadow", ShadowRef{}, false},
		{"$aws/things//shadow/get", ShadowRef{}, false},
		{"device/t1/messages/events", ShadowRef{}, false},
		{"$aws/things/t1/shadow/patch", ShadowRef{}, false},
	} {
		got, ok := ParseShadowTopic(c.topic)
		if ok != c.ok || got != c.want {
			t.Errorf("%s: got %+v %v, want %+v %v", c.topic, got, ok, c.want, c.ok)
		}
		if ok && got.String() != c.topic {
			t.Errorf("%s: String() = %s", c.topic, got.String())
		}
	}
}

func TestKeepAliveAndEndpoint(t *testing.T) {
	for in, want := range map[uint16]uint16{0: 1200, 5: 30, 30: 30, 60: 60, 1200: 1200, 1201: 1200} {
		if got := EffectiveKeepAlive(in); got != want {
			t.Errorf("EffectiveKeepAlive(%d) = %d, want %d", in, got, want)
		}
	}
	if !IsATSEndpoint(DefaultEndpoint) || IsATSEndpoint("abc.iot.eu-west-1.amazonaws.com") || IsATSEndpoint("x-ats.iot.eu-west-1.amazonaws.com.evil") {
		t.Error("IsATSEndpoint")
	}
}

func TestFilters(t *testing.T) {
	for _, c := range []struct {
		f, topic string
		match    bool
	}{
		{"$aws/things/a/shadow/#", "$aws/things/a/shadow/update/delta", true},
		{"#", "$aws/things/a/shadow/get", false},
		{"device/+/messages/devicebound/#", "device/a/messages/devicebound/x", true},
		{"device/a/messages/events", "device/a/messages/events", true},
		{"device/a", "device/a/b", false},
	} {
		if got := FilterMatches(c.f, c.topic); got != c.match {
			t.Errorf("FilterMatches(%s, %s) = %v", c.f, c.topic, got)
		}
	}
	if FilterProblem("a/#/b") == "" || FilterProblem("a/b+") == "" || FilterProblem("a/+/#") != "" {
		t.Error("FilterProblem")
	}
	if TopicProblem("a/b/c/d/e/f/g/h/i") == "" || TopicProblem("$aws/things/t/shadow/name/n/update/accepted") != "" {
		t.Error("TopicProblem slash count")
	}
}

func TestParseRequestRefusals(t *testing.T) {
	deep := `{"state":{"reported":{"a":{"b":{"c":{"d":{"e":{"f":{"g":1}}}}}}}}}`
	for _, c := range []struct {
		name string
		body string
		code int
	}{
		{"invalid JSON", `{"state":`, 400},
		{"seed SDK clientToken", `{"state":{"reported":{"a":1}},clientToken:abc}`, 400},
		{"missing state", `{"clientToken":"x"}`, 400},
		{"state not object", `{"state":5}`, 400},
		{"reported not object", `{"state":{"reported":[1]}}`, 400},
		{"unknown node", `{"state":{"delta":{"a":1}}}`, 400},
		{"long token", `{"state":{"reported":{}},"clientToken":"` + strings.Repeat("x", 65) + `"}`, 400},
		{"bad version", `{"state":{"reported":{}},"version":"3"}`, 400},
		{"too deep", deep, 400},
		{"trailing data", `{"state":{"reported":{}}} {}`, 400},
		{"not UTF-8", "{\"state\":{\"reported\":{\"a\":\"\xff\"}}}", 415},
		{"oversized", `{"state":{"reported":{"a":"` + strings.Repeat("x", 9000) + `"}}}`, 413},
		{"empty", ``, 400},
	} {
		_, err := ParseRequest([]byte(c.body), true)
		if err == nil || err.Code != c.code {
			t.Errorf("%s: got %v, want %d", c.name, err, c.code)
		}
	}
	if _, err := ParseRequest(nil, false); err != nil {
		t.Errorf("empty get: %v", err)
	}
}

func TestShadowUpdateMergeDeltaVersion(t *testing.T) {
	s := &Shadow{}
	up := func(body string) (Outcome, *Error) {
		t.Helper()
		r, err := ParseRequest([]byte(body), true)
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		return s.Update(r, 1000)
	}
	o, err := up(`{"state":{"desired":{"color":"red","cfg":{"a":1,"b":2}}},"clientToken":"c1"}`)
	if err != nil || o.Version != 1 {
		t.Fatalf("first update: %v %d", err, o.Version)
	}
	var acc ResponseDoc
	_ = json.Unmarshal(o.Accepted, &acc)
	if acc.ClientToken != "c1" || acc.Version != 1 || acc.Timestamp != 1000 || !strings.Contains(string(acc.Metadata), `"timestamp":1000`) {
		t.Errorf("accepted = %s", o.Accepted)
	}
	if o.Delta == nil || !strings.Contains(string(o.Delta), `"color":"red"`) {
		t.Errorf("delta = %s", o.Delta)
	}
	o, _ = up(`{"state":{"reported":{"color":"red","cfg":{"a":1}}}}`)
	if o.Delta != nil {
		t.Errorf("a reported update publishes no delta: %s", o.Delta)
	}
	doc := string(s.Document(1001, ""))
	if !strings.Contains(doc, `"delta":{"cfg":{"b":2}}`) {
		t.Errorf("get document delta: %s", doc)
	}
	if _, err := up(`{"state":{"desired":{"x":1}},"version":1}`); err == nil || err.Code != 409 {
		t.Errorf("stale version: %v", err)
	}
	if _, err := up(`{"state":{"desired":{"cfg":{"b":null},"color":null}},"version":2}`); err != nil {
		t.Errorf("current version: %v", err)
	}
	if _, ok := s.Desired["color"]; ok {
		t.Error("null did not delete color")
	}
	if cfg, _ := s.Desired["cfg"].(map[string]any); len(cfg) != 1 {
		t.Errorf("nested null: desired = %v, want cfg {a:1}", s.Desired)
	}
	if _, err := up(`{"state":{"reported":{"big":"` + strings.Repeat("y", 8200) + `"}}}`); err == nil || err.Code != 413 {
		t.Errorf("oversized state: %v", err)
	}
	if s.Version != 3 {
		t.Errorf("version %d after refusals, want 3", s.Version)
	}
	if _, err := s.Delete(Request{}, 1002); err != nil || s.Exists {
		t.Fatal("delete")
	}
	if o, _ := up(`{"state":{"reported":{"z":1}}}`); o.Version != 4 {
		t.Errorf("recreated shadow version %d, want 4 (the sequence continues)", o.Version)
	}
}

// FuzzParseRequest: shadow request documents come from the network; the
// parser and the merge must never panic and must keep the shadow valid.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{`{"state":{"reported":{"a":1}}}`, `{"state":null}`, `{"state":{"desired":{"a":{"b":null}}},"version":1,"clientToken":"x"}`,
		`{"state":{"reported":{}},clientToken:abc}`, ``, `[]`, `{"state":{"desired":[1,2]}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s := &Shadow{}
		r, err := ParseRequest(b, true)
		if err != nil {
			if err.Code < 400 || err.Code > 415 {
				t.Fatalf("code %d", err.Code)
			}
			return
		}
		o, uerr := s.Update(r, 1)
		if uerr != nil {
			return
		}
		if !json.Valid(o.Accepted) || !json.Valid(o.Documents) || (o.Delta != nil && !json.Valid(o.Delta)) {
			t.Fatal("invalid JSON out")
		}
		if len(mustJSON(s.stateDoc(false))) > MaxShadowBytes {
			t.Fatal("state above the limit kept")
		}
	})
}

// FuzzParseShadowTopic: topics come from the network; a parsed topic
// renders back to itself.
func FuzzParseShadowTopic(f *testing.F) {
	for _, s := range []string{"$aws/things/t/shadow/get", "$aws/things/t/shadow/name/n/update/delta", "$aws/things/t/shadow/name//get", "$aws/things/t/shadow/update/x/y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		r, ok := ParseShadowTopic(topic)
		if ok && r.String() != topic {
			t.Fatalf("%q parsed as %+v renders %q", topic, r, r.String())
		}
		_ = TopicProblem(topic)
		_ = FilterProblem(topic)
		_ = FilterMatches(topic, topic)
	})
}
