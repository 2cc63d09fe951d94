package iothub

import "testing"

func TestCheckDevicePublish(t *testing.T) {
	dev := Identity{DeviceID: "dev1"}
	mod := Identity{DeviceID: "dev1", ModuleID: "mod1"}
	tests := []struct {
		name     string
		id       Identity
		topic    string
		wantKind TopicKind
		wantRule string // "" = allowed; "none" = refused without a rule ID
	}{
		{"device telemetry", dev, "devices/dev1/messages/events/", TopicTelemetry, ""},
		{"device telemetry with bag", dev, "devices/dev1/messages/events/%24.mid=1&a=b", TopicTelemetry, ""},
		{"module telemetry", mod, "devices/dev1/modules/mod1/messages/events/", TopicTelemetry, ""},
		{"twin get", dev, "$iothub/twin/GET/?$rid=1", TopicTwinGet, ""},
		{"twin get from module", mod, "$iothub/twin/GET/?$rid=1", TopicTwinGet, ""},
		{"twin reported", dev, "$iothub/twin/PATCH/properties/reported/?$rid=2", TopicTwinReported, ""},
		{"method response", dev, "$iothub/methods/res/200/?$rid=AB", TopicMethodResponse, ""},
		{"method response from module", mod, "$iothub/methods/res/504/?$rid=1", TopicMethodResponse, ""},
		{"special id", Identity{DeviceID: "a.b$c(1)!="}, "devices/a.b$c(1)!=/messages/events/", TopicTelemetry, ""},

		{"other device telemetry", dev, "devices/dev2/messages/events/", TopicTelemetry, "TEL-001"},
		{"case-folded device", Identity{DeviceID: "Dev1"}, "devices/dev1/messages/events/", TopicTelemetry, "TEL-001"},
		{"module on device topic", mod, "devices/dev1/messages/events/", TopicTelemetry, "MOD-004"},
		{"device on module topic", dev, "devices/dev1/modules/mod1/messages/events/", TopicTelemetry, "TEL-001"},
		{"other module", mod, "devices/dev1/modules/mod2/messages/events/", TopicTelemetry, "TEL-001"},
		{"c2d topic", dev, "devices/dev1/messages/devicebound/", TopicC2D, "C2D-001"},
		{"twin response", dev, "$iothub/twin/res/200/?$rid=1", TopicTwinResponse, "TWIN-004"},
		{"twin desired", dev, "$iothub/twin/PATCH/properties/desired/?$version=1", TopicTwinDesired, "TWIN-009"},
		{"method request", dev, "$iothub/methods/POST/x/?$rid=1", TopicMethodRequest, "METH-002"},
		{"twin get without rid", dev, "$iothub/twin/GET/", TopicTwinGet, "TWIN-002"},
		{"twin get empty rid", dev, "$iothub/twin/GET/?$rid=", TopicTwinGet, "TWIN-002"},
		{"reported without rid", dev, "$iothub/twin/PATCH/properties/reported/?x=1", TopicTwinReported, "TWIN-006"},
		{"method response without rid", dev, "$iothub/methods/res/200/", TopicMethodResponse, "METH-003"},
		{"method response bad status", dev, "$iothub/methods/res/ok/?$rid=1", TopicMethodResponse, "METH-004"},
		{"wildcard #", dev, "devices/dev1/messages/events/#", TopicTelemetry, "MQTT-3.3.2-2"},
		{"wildcard +", dev, "devices/+/messages/events/", TopicTelemetry, "MQTT-3.3.2-2"},
		{"plus in bag", dev, "devices/dev1/messages/events/a=b+c", TopicTelemetry, "MQTT-3.3.2-2"},
		// '#' is a legal ID character (CONN-024), so the topic parses as
		// telemetry; only the MQTT wildcard rule refuses it.
		{"id with #", Identity{DeviceID: "a#b"}, "devices/a#b/messages/events/", TopicTelemetry, "MQTT-3.3.2-2"},
		{"nul", dev, "devices/dev1/messages/events/a=\x00", TopicTelemetry, "MQTT-4.7.3-2"},
		{"empty", dev, "", TopicUnknown, "MQTT-4.7.3-1"},
		{"unknown", dev, "hello/world", TopicUnknown, "none"},
		{"bad bag", dev, "devices/dev1/messages/events/a=%zz", TopicTelemetry, "TEL-002"},
		{"bad bag from module", mod, "devices/dev1/modules/mod1/messages/events/a=%zz", TopicTelemetry, "TEL-002"},
		{"no trailing slash", dev, "devices/dev1/messages/events", TopicUnknown, "TEL-001"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CheckDevicePublish(tt.id, tt.topic)
			if got.Kind != tt.wantKind {
				t.Errorf("kind %v, want %v", got.Kind, tt.wantKind)
			}
			if tt.wantRule == "" {
				if err != nil {
					t.Errorf("CheckDevicePublish(%v, %q): %v", tt.id, tt.topic, err)
				}
				return
			}
			if tt.wantRule == "none" {
				tt.wantRule = ""
			}
			checkRule(t, "CheckDevicePublish("+tt.topic+")", err, tt.wantRule)
		})
	}
}

func TestClassifySubscribe(t *testing.T) {
	dev := Identity{DeviceID: "dev1"}
	mod := Identity{DeviceID: "dev1", ModuleID: "mod1"}
	tests := []struct {
		id       Identity
		filter   string
		want     FilterClass
		wantRule string
	}{
		{dev, "devices/dev1/messages/devicebound/#", FilterDocumented, ""},
		{dev, TwinResponseFilter, FilterDocumented, ""},
		{dev, TwinDesiredFilter, FilterDocumented, ""},
		{dev, MethodsFilter, FilterDocumented, ""},
		{mod, TwinResponseFilter, FilterDocumented, ""},
		{mod, TwinDesiredFilter, FilterDocumented, ""},
		{mod, MethodsFilter, FilterDocumented, ""},
		{Identity{DeviceID: "a$b=c"}, "devices/a$b=c/messages/devicebound/#", FilterDocumented, ""},

		{dev, TwinWildcardFilter, FilterTolerated, "CONN-018"},
		{mod, TwinWildcardFilter, FilterTolerated, "CONN-018"},

		{dev, "", FilterRejected, "MQTT-4.7.3-1"},
		{dev, "#", FilterRejected, "CONN-018"},
		{dev, "devices/+/messages/devicebound/#", FilterRejected, "CONN-018"},
		{dev, "$iothub/twin/res/+/#", FilterRejected, "CONN-018"},
		{dev, "$iothub/methods/POST/+/#", FilterRejected, "CONN-018"},
		{dev, "$iothub/methods/POST/reboot/#", FilterRejected, "METH-001"},
		{dev, "$iothub/methods/#", FilterRejected, "CONN-018"},
		{dev, "$iothub/twin/res/200/#", FilterRejected, "CONN-018"},
		{dev, "$iothub/twin/PATCH/properties/desired/?", FilterRejected, "CONN-018"},
		{dev, "$iothub/#", FilterRejected, "CONN-018"},
		{dev, "devices/dev2/messages/devicebound/#", FilterRejected, "CONN-018"},
		{dev, "devices/Dev1/messages/devicebound/#", FilterRejected, "CONN-018"},
		{dev, "devices/dev1/messages/devicebound/", FilterRejected, "C2D-001"},
		{dev, "devices/dev1/messages/devicebound/%24.mid=1", FilterRejected, "C2D-001"},
		{dev, "devices/dev1/messages/events/#", FilterRejected, "CONN-018"},
		{mod, "devices/dev1/messages/devicebound/#", FilterRejected, "MOD-010"},
		{mod, "devices/dev1/mod1/messages/devicebound/#", FilterRejected, "MOD-010"},
		{mod, "devices/dev1/modules/mod1/messages/devicebound/#", FilterRejected, "MOD-010"},
		{Identity{DeviceID: "a+b"}, "devices/a+b/messages/devicebound/#", FilterRejected, "CONN-024"},
		{dev, "some/topic", FilterRejected, "CONN-018"},
	}
	for _, tt := range tests {
		got, err := ClassifySubscribe(tt.id, tt.filter)
		if got != tt.want {
			t.Errorf("ClassifySubscribe(%v, %q) = %v, want %v (err %v)", tt.id, tt.filter, got, tt.want, err)
		}
		if tt.wantRule == "" {
			if err != nil {
				t.Errorf("ClassifySubscribe(%v, %q): unexpected error %v", tt.id, tt.filter, err)
			}
			continue
		}
		checkRule(t, "ClassifySubscribe("+tt.filter+")", err, tt.wantRule)
	}
}

func TestFilterClassString(t *testing.T) {
	for c, s := range map[FilterClass]string{
		FilterDocumented: "documented", FilterTolerated: "tolerated", FilterRejected: "rejected", FilterClass(7): "FilterClass(7)",
	} {
		if c.String() != s {
			t.Errorf("%d.String() = %q, want %q", int(c), c.String(), s)
		}
	}
}
