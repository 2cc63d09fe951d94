package iothub

import (
	"reflect"
	"testing"
)

func TestTopicBuilders(t *testing.T) {
	dev := Identity{DeviceID: "dev1"}
	mod := Identity{DeviceID: "dev1", ModuleID: "mod1"}
	bag := PropertyBag{{Name: PropMessageID, Value: "m 1"}, {Name: "k", Value: "v"}}
	tests := []struct{ got, want string }{
		{TelemetryTopic(dev, nil), "devices/dev1/messages/events/"},
		{TelemetryTopic(dev, bag), "devices/dev1/messages/events/%24.mid=m%201&k=v"},
		{TelemetryTopic(mod, nil), "devices/dev1/modules/mod1/messages/events/"},
		{TelemetryTopic(mod, bag), "devices/dev1/modules/mod1/messages/events/%24.mid=m%201&k=v"},
		{C2DTopic("dev1", nil), "devices/dev1/messages/devicebound/"},
		{C2DTopic("dev1", bag), "devices/dev1/messages/devicebound/%24.mid=m%201&k=v"},
		{C2DFilter("dev1"), "devices/dev1/messages/devicebound/#"},
		{TwinGetTopic("1"), "$iothub/twin/GET/?$rid=1"},
		{TwinReportedTopic("abc"), "$iothub/twin/PATCH/properties/reported/?$rid=abc"},
		{TwinResponseTopic(200, "1", 0, false), "$iothub/twin/res/200/?$rid=1"},
		{TwinResponseTopic(204, "1", 6, true), "$iothub/twin/res/204/?$rid=1&$version=6"},
		{TwinDesiredTopic(3), "$iothub/twin/PATCH/properties/desired/?$version=3"},
		{MethodRequestTopic("reboot", "7F"), "$iothub/methods/POST/reboot/?$rid=7F"},
		{MethodResponseTopic(200, "7F"), "$iothub/methods/res/200/?$rid=7F"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestParseTopic(t *testing.T) {
	tests := []struct {
		in       string
		want     Topic // Raw is filled in by the test
		wantRule string
		wantErr  bool // error expected (rule may be "")
	}{
		{in: "devices/dev1/messages/events/",
			want: Topic{Kind: TopicTelemetry, Identity: Identity{DeviceID: "dev1"}}},
		{in: "devices/dev1/messages/events/a=1&b=x%20y",
			want: Topic{Kind: TopicTelemetry, Identity: Identity{DeviceID: "dev1"},
				Properties: PropertyBag{{Name: "a", Value: "1"}, {Name: "b", Value: "x y"}}}},
		{in: "devices/dev1/messages/events/%24.mid=1&$.cid=2&%24.ct=application%2Fjson",
			want: Topic{Kind: TopicTelemetry, Identity: Identity{DeviceID: "dev1"},
				Properties: PropertyBag{{Name: PropMessageID, Value: "1"}, {Name: PropCorrelationID, Value: "2"}, {Name: PropContentType, Value: "application/json"}}}},
		{in: "devices/dev1/modules/mod1/messages/events/",
			want: Topic{Kind: TopicTelemetry, Identity: Identity{DeviceID: "dev1", ModuleID: "mod1"}}},
		{in: "devices/dev1/modules/mod1/messages/events/%24.sub=c1",
			want: Topic{Kind: TopicTelemetry, Identity: Identity{DeviceID: "dev1", ModuleID: "mod1"},
				Properties: PropertyBag{{Name: PropComponent, Value: "c1"}}}},
		{in: "devices/a.b-c_d@e$f(1)!=/messages/events/",
			want: Topic{Kind: TopicTelemetry, Identity: Identity{DeviceID: "a.b-c_d@e$f(1)!="}}},
		{in: "devices/messages/messages/events/",
			want: Topic{Kind: TopicTelemetry, Identity: Identity{DeviceID: "messages"}}},
		{in: "devices/dev1/messages/devicebound/",
			want: Topic{Kind: TopicC2D, Identity: Identity{DeviceID: "dev1"}}},
		{in: "devices/dev1/messages/devicebound/%24.mid=abc&%24.to=%2Fdevices%2Fdev1%2Fmessages%2FdeviceBound&k=a%26b",
			want: Topic{Kind: TopicC2D, Identity: Identity{DeviceID: "dev1"},
				Properties: PropertyBag{{Name: PropMessageID, Value: "abc"}, {Name: PropTo, Value: "/devices/dev1/messages/deviceBound"}, {Name: "k", Value: "a&b"}}}},
		{in: "devices/dev1/messages/devicebound/nullprop",
			want: Topic{Kind: TopicC2D, Identity: Identity{DeviceID: "dev1"},
				Properties: PropertyBag{{Name: "nullprop", NoValue: true}}}},
		{in: "$iothub/twin/GET/?$rid=1",
			want: Topic{Kind: TopicTwinGet, RID: "1", HasRID: true}},
		{in: "$iothub/twin/GET/?$rid=",
			want: Topic{Kind: TopicTwinGet, RID: "", HasRID: true}},
		{in: "$iothub/twin/GET/",
			want: Topic{Kind: TopicTwinGet}},
		{in: "$iothub/twin/GET/?",
			want: Topic{Kind: TopicTwinGet}},
		{in: "$iothub/twin/GET/?$rid=a%20b/c",
			want: Topic{Kind: TopicTwinGet, RID: "a%20b/c", HasRID: true}},
		{in: "$iothub/twin/PATCH/properties/reported/?$rid=42",
			want: Topic{Kind: TopicTwinReported, RID: "42", HasRID: true}},
		{in: "$iothub/twin/PATCH/properties/reported/?$rid=42&other=x",
			want: Topic{Kind: TopicTwinReported, RID: "42", HasRID: true}},
		{in: "$iothub/twin/res/200/?$rid=1",
			want: Topic{Kind: TopicTwinResponse, Status: 200, RID: "1", HasRID: true}},
		{in: "$iothub/twin/res/204/?$rid=1&$version=6",
			want: Topic{Kind: TopicTwinResponse, Status: 204, RID: "1", HasRID: true, Version: 6, HasVersion: true}},
		{in: "$iothub/twin/res/204/?$version=6&$rid=1",
			want: Topic{Kind: TopicTwinResponse, Status: 204, RID: "1", HasRID: true, Version: 6, HasVersion: true}},
		{in: "$iothub/twin/res/429/?$rid=x",
			want: Topic{Kind: TopicTwinResponse, Status: 429, RID: "x", HasRID: true}},
		{in: "$iothub/twin/PATCH/properties/desired/?$version=12",
			want: Topic{Kind: TopicTwinDesired, Version: 12, HasVersion: true}},
		{in: "$iothub/methods/POST/reboot/?$rid=1",
			want: Topic{Kind: TopicMethodRequest, MethodName: "reboot", RID: "1", HasRID: true}},
		{in: "$iothub/methods/POST/get.Value_2/?$rid=00ff",
			want: Topic{Kind: TopicMethodRequest, MethodName: "get.Value_2", RID: "00ff", HasRID: true}},
		{in: "$iothub/methods/res/200/?$rid=00ff",
			want: Topic{Kind: TopicMethodResponse, Status: 200, RID: "00ff", HasRID: true}},
		{in: "$iothub/methods/res/0/?$rid=1",
			want: Topic{Kind: TopicMethodResponse, Status: 0, RID: "1", HasRID: true}},

		// errors
		{in: "", wantErr: true},
		{in: "foo/bar", wantErr: true},
		{in: "$iothub/other/x", wantErr: true},
		{in: "$iothub/twin/res/abc/?$rid=1", wantRule: "TWIN-004"},
		{in: "$iothub/twin/res/-1/?$rid=1", wantRule: "TWIN-004"},
		{in: "$iothub/twin/res//?$rid=1", wantRule: "TWIN-004"},
		{in: "$iothub/twin/res/200?$rid=1", wantRule: "TWIN-004"},
		{in: "$iothub/twin/res/99999999999999999999/?$rid=1", wantRule: "TWIN-004"},
		{in: "$iothub/methods/res/2x0/?$rid=1", wantRule: "METH-004"},
		{in: "$iothub/methods/res/+200/?$rid=1", wantRule: "METH-004"},
		{in: "$iothub/methods/POST//?$rid=1", wantRule: "METH-002"},
		{in: "$iothub/methods/POST/reboot", wantRule: "METH-002"},
		{in: "$iothub/methods/GET/x/?$rid=1", wantErr: true},
		{in: "$iothub/twin/PATCH/properties/desired/?$version=x", wantRule: "TWIN-009"},
		{in: "$iothub/twin/PATCH/properties/desired/?$version=", wantRule: "TWIN-009"},
		{in: "$iothub/twin/PATCH/properties/desired/?$version=1&$version=2", wantRule: "TWIN-009"},
		{in: "$iothub/twin/GET/?$rid=1&$rid=2", wantRule: "TWIN-002"},
		{in: "$iothub/twin/GET/?$rid=1&", wantRule: "TWIN-002"},
		{in: "$iothub/twin/GET/x?$rid=1", wantRule: "TWIN-002"},
		{in: "$iothub/twin/GET?$rid=1", wantErr: true},
		{in: "$iothub/twin/PATCH/properties/other/?$rid=1", wantErr: true},
		{in: "devices/dev1/messages/events", wantRule: "TEL-001"},
		{in: "devices/dev1/messages/devicebound", wantRule: "TEL-001"},
		{in: "devices/dev1", wantRule: "TEL-001"},
		{in: "devices/dev1/messages/other/", wantRule: "TEL-001"},
		{in: "devices//messages/events/", wantRule: "CONN-024"},
		{in: "devices/de v/messages/events/", wantRule: "CONN-024"},
		{in: "devices/dev1/messages/events/a=%zz", wantRule: "TEL-002"},
		{in: "devices/dev1/messages/events/a=1&&b=2", wantRule: "TEL-002"},
		{in: "devices/dev1/messages/devicebound/a=%zz", wantRule: "C2D-002"},
		{in: "devices/dev1/modules/mod1/messages/events/a=%zz", wantRule: "TEL-002"},
		{in: "devices/dev1/modules//messages/events/", wantRule: "CONN-024"},
		{in: "devices/dev1/modules/mod1/messages/devicebound/", wantRule: "MOD-010"},
		{in: "devices/dev1/mod1/messages/devicebound/", wantRule: "TEL-001"},
		{in: "devices/dev1/modules/mod1", wantRule: "MOD-004"},
	}
	for _, tt := range tests {
		got, err := ParseTopic(tt.in)
		if tt.wantErr || tt.wantRule != "" {
			checkRule(t, "ParseTopic("+tt.in+")", err, tt.wantRule)
			continue
		}
		if err != nil {
			t.Errorf("ParseTopic(%q): %v", tt.in, err)
			continue
		}
		tt.want.Raw = tt.in
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseTopic(%q)\n got %+v\nwant %+v", tt.in, got, tt.want)
		}
	}
}

func TestParseTopicPartialResult(t *testing.T) {
	got, err := ParseTopic("devices/dev1/messages/events/a=%zz")
	if err == nil || got.Kind != TopicTelemetry || got.Identity.DeviceID != "dev1" {
		t.Errorf("got %+v, %v; want telemetry kind with identity and an error", got, err)
	}
	got, err = ParseTopic("nothing/here")
	if err == nil || got.Kind != TopicUnknown || got.Raw != "nothing/here" {
		t.Errorf("got %+v, %v; want unknown kind with error", got, err)
	}
}

func TestTopicBuildersParse(t *testing.T) {
	mod := Identity{DeviceID: "d", ModuleID: "m"}
	bag := PropertyBag{{Name: PropMessageID, Value: "x&y"}}
	cases := []struct {
		topic string
		want  Topic
	}{
		{TelemetryTopic(mod, bag), Topic{Kind: TopicTelemetry, Identity: mod, Properties: bag}},
		{C2DTopic("d", bag), Topic{Kind: TopicC2D, Identity: Identity{DeviceID: "d"}, Properties: bag}},
		{TwinGetTopic("r"), Topic{Kind: TopicTwinGet, RID: "r", HasRID: true}},
		{TwinReportedTopic("r"), Topic{Kind: TopicTwinReported, RID: "r", HasRID: true}},
		{TwinResponseTopic(400, "r", 9, true), Topic{Kind: TopicTwinResponse, Status: 400, RID: "r", HasRID: true, Version: 9, HasVersion: true}},
		{TwinDesiredTopic(1 << 40), Topic{Kind: TopicTwinDesired, Version: 1 << 40, HasVersion: true}},
		{MethodRequestTopic("m", "r"), Topic{Kind: TopicMethodRequest, MethodName: "m", RID: "r", HasRID: true}},
		{MethodResponseTopic(504, "r"), Topic{Kind: TopicMethodResponse, Status: 504, RID: "r", HasRID: true}},
	}
	for _, c := range cases {
		got, err := ParseTopic(c.topic)
		c.want.Raw = c.topic
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseTopic(%q) = %+v, %v; want %+v", c.topic, got, err, c.want)
		}
	}
}

func TestTopicKindString(t *testing.T) {
	want := map[TopicKind]string{
		TopicUnknown: "unknown", TopicTelemetry: "telemetry", TopicC2D: "c2d",
		TopicTwinGet: "twin-get", TopicTwinReported: "twin-reported", TopicTwinResponse: "twin-response",
		TopicTwinDesired: "twin-desired", TopicMethodRequest: "method-request", TopicMethodResponse: "method-response",
		TopicKind(99): "TopicKind(99)", TopicKind(-1): "TopicKind(-1)",
	}
	for k, s := range want {
		if k.String() != s {
			t.Errorf("%d.String() = %q, want %q", int(k), k.String(), s)
		}
	}
}
