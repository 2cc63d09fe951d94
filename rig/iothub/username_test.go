package iothub

import (
	"net/url"
	"reflect"
	"strings"
	"testing"
)

func TestParseUsername(t *testing.T) {
	const host = "myhub.azure-devices.net"
	tests := []struct {
		name     string
		in       string
		want     Username
		wantRule string
	}{
		{
			name: "device with api-version",
			in:   host + "/dev1/?api-version=2018-06-30",
			want: Username{Host: host, Identity: Identity{DeviceID: "dev1"}, HasQuery: true,
				Query: url.Values{"api-version": {"2018-06-30"}}, APIVersion: "2018-06-30"},
		},
		{
			name: "module",
			in:   host + "/dev1/mod1/?api-version=2018-06-30",
			want: Username{Host: host, Identity: Identity{DeviceID: "dev1", ModuleID: "mod1"}, HasQuery: true,
				Query: url.Values{"api-version": {"2018-06-30"}}, APIVersion: "2018-06-30"},
		},
		{
			name: "nanoFramework style",
			in:   host + "/dev1/?api-version=2021-04-12&DeviceClientType=nanoFramework%2F1.0&model-id=dtmi%3Acom%3Aexample%3BThermostat%3B1",
			want: Username{Host: host, Identity: Identity{DeviceID: "dev1"}, HasQuery: true,
				Query: url.Values{
					"api-version":      {"2021-04-12"},
					"DeviceClientType": {"nanoFramework/1.0"},
					"model-id":         {"dtmi:com:example;Thermostat;1"},
				},
				APIVersion: "2021-04-12", DeviceClientType: "nanoFramework/1.0", ModelID: "dtmi:com:example;Thermostat;1"},
		},
		{
			name: "raw slash and semicolon in query",
			in:   host + "/dev1/?api-version=2017-11-08-preview&DeviceClientType=c/1.0;x",
			want: Username{Host: host, Identity: Identity{DeviceID: "dev1"}, HasQuery: true,
				Query:      url.Values{"api-version": {"2017-11-08-preview"}, "DeviceClientType": {"c/1.0;x"}},
				APIVersion: "2017-11-08-preview", DeviceClientType: "c/1.0;x"},
		},
		{
			name: "no query",
			in:   host + "/dev1/",
			want: Username{Host: host, Identity: Identity{DeviceID: "dev1"}, Query: url.Values{}},
		},
		{
			name: "empty query",
			in:   host + "/dev1/?",
			want: Username{Host: host, Identity: Identity{DeviceID: "dev1"}, Query: url.Values{}},
		},
		{
			name: "module without query",
			in:   host + "/dev1/mod1/",
			want: Username{Host: host, Identity: Identity{DeviceID: "dev1", ModuleID: "mod1"}, Query: url.Values{}},
		},
		{
			name: "special characters in device id",
			in:   host + "/a.b-c_d@e$f(1)!=/?api-version=2018-06-30",
			want: Username{Host: host, Identity: Identity{DeviceID: "a.b-c_d@e$f(1)!="}, HasQuery: true,
				Query: url.Values{"api-version": {"2018-06-30"}}, APIVersion: "2018-06-30"},
		},
		{
			name: "device id with ? and =",
			in:   host + "/x?y=1,z/?api-version=2018-06-30",
			want: Username{Host: host, Identity: Identity{DeviceID: "x?y=1,z"}, HasQuery: true,
				Query: url.Values{"api-version": {"2018-06-30"}}, APIVersion: "2018-06-30"},
		},
		{
			name: "device id starting with ?",
			in:   host + "/?dev/?api-version=2018-06-30",
			want: Username{Host: host, Identity: Identity{DeviceID: "?dev"}, HasQuery: true,
				Query: url.Values{"api-version": {"2018-06-30"}}, APIVersion: "2018-06-30"},
		},
		{
			name: "module id with ? inside",
			in:   host + "/d%1/m?o=d/?api-version=2018-06-30",
			want: Username{Host: host, Identity: Identity{DeviceID: "d%1", ModuleID: "m?o=d"}, HasQuery: true,
				Query: url.Values{"api-version": {"2018-06-30"}}, APIVersion: "2018-06-30"},
		},
		{
			name: "api-version without value", // fuzz regression
			in:   host + "/dev1/?api-version",
			want: Username{Host: host, Identity: Identity{DeviceID: "dev1"}, HasQuery: true,
				Query: url.Values{"api-version": {""}}},
		},
		{
			name: "empty parameters skipped",
			in:   host + "/dev1/?&api-version=1&&",
			want: Username{Host: host, Identity: Identity{DeviceID: "dev1"}, HasQuery: true,
				Query: url.Values{"api-version": {"1"}}, APIVersion: "1"},
		},
		// The bare forms the docs show: "{iothubhostname}/{deviceId}" in
		// the Username field (002 L11356), the example
		// "iothubname.azure-devices.net/DeviceId" (L11373) and the Python
		// sample's iot_hub_name+".azure-devices.net/"+device_id (L13885).
		{
			name: "bare device (002 L11356, L11373, L13885)",
			in:   "iothubname.azure-devices.net/DeviceId",
			want: Username{Host: "iothubname.azure-devices.net", Identity: Identity{DeviceID: "DeviceId"}, Bare: true, Query: url.Values{}},
		},
		{
			name: "bare module",
			in:   host + "/dev1/mod1",
			want: Username{Host: host, Identity: Identity{DeviceID: "dev1", ModuleID: "mod1"}, Bare: true, Query: url.Values{}},
		},
		{
			name: "bare device with special characters",
			in:   host + "/a.b-c_d@e$f(1)!=",
			want: Username{Host: host, Identity: Identity{DeviceID: "a.b-c_d@e$f(1)!="}, Bare: true, Query: url.Values{}},
		},
		{
			// '?' and '=' are ID characters (CONN-024): a query without its
			// '/' is part of a bare device ID, which then fails to match
			// the ClientId at the hub.
			name: "query without slash reads as a bare device id",
			in:   host + "/dev1?api-version=2018-06-30",
			want: Username{Host: host, Identity: Identity{DeviceID: "dev1?api-version=2018-06-30"}, Bare: true, Query: url.Values{}},
		},
		{
			// 002 L13775/L13780 verbatim.
			name: "documented example (002 L13780)",
			in:   "contoso.azure-devices.net/MyDevice01/?api-version=2018-06-30",
			want: Username{Host: "contoso.azure-devices.net", Identity: Identity{DeviceID: "MyDevice01"}, HasQuery: true,
				Query: url.Values{"api-version": {"2018-06-30"}}, APIVersion: "2018-06-30"},
		},
		{
			// 002 L5777 verbatim (the C SDK's trace).
			name: "C SDK trace (002 L5777)",
			in:   "IoTHubDeviceStreams.azure-devices.net/MyDevice/?api-version=2017-11-08-preview&DeviceClientType=iothubclient%2f1.2.11%20(native%3b%20Linux%3b%20x86_64)",
			want: Username{Host: "IoTHubDeviceStreams.azure-devices.net", Identity: Identity{DeviceID: "MyDevice"}, HasQuery: true,
				Query:      url.Values{"api-version": {"2017-11-08-preview"}, "DeviceClientType": {"iothubclient/1.2.11 (native; Linux; x86_64)"}},
				APIVersion: "2017-11-08-preview", DeviceClientType: "iothubclient/1.2.11 (native; Linux; x86_64)"},
		},
		{
			// 002 L13835 with <hubname> and the IDs filled in.
			name: "documented module form (002 L13835)",
			in:   "contoso.azure-devices.net/MyDevice01/MyModule/?api-version=2018-06-30",
			want: Username{Host: "contoso.azure-devices.net", Identity: Identity{DeviceID: "MyDevice01", ModuleID: "MyModule"}, HasQuery: true,
				Query: url.Values{"api-version": {"2018-06-30"}}, APIVersion: "2018-06-30"},
		},
		{
			name: "model-id before api-version, unknown parameter kept",
			in:   host + "/dev1/?model-id=dtmi%3Aa%3B1&x=y&api-version=2021-04-12",
			want: Username{Host: host, Identity: Identity{DeviceID: "dev1"}, HasQuery: true,
				Query:      url.Values{"api-version": {"2021-04-12"}, "model-id": {"dtmi:a;1"}, "x": {"y"}},
				APIVersion: "2021-04-12", ModelID: "dtmi:a;1"},
		},
		{
			name: "module query without api-version",
			in:   host + "/dev1/mod1/?DeviceClientType=c%2F1",
			want: Username{Host: host, Identity: Identity{DeviceID: "dev1", ModuleID: "mod1"}, HasQuery: true,
				Query: url.Values{"DeviceClientType": {"c/1"}}, DeviceClientType: "c/1"},
		},
		{name: "no slash", in: host, wantRule: "CONN-006"},
		{name: "bare empty device", in: host + "/", wantRule: "CONN-024"},
		{name: "bare bad device char", in: host + "/de v", wantRule: "CONN-024"},
		{name: "bare module bad char", in: host + "/dev1/m&d", wantRule: "CONN-024"},
		{name: "empty module", in: host + "/dev1//", wantRule: "CONN-024"},
		{name: "bare device too long", in: host + "/" + strings.Repeat("d", MaxIDLength+1), wantRule: "MOD-008"},
		{name: "empty host", in: "/dev1/?api-version=1", wantRule: "CONN-006"},
		{name: "host with space", in: "my hub/dev1/", wantRule: "CONN-006"},
		{name: "empty device", in: host + "//?api-version=1", wantRule: "CONN-024"},
		{name: "bad device char", in: host + "/de v/?api-version=1", wantRule: "CONN-024"},
		{name: "extra segment", in: host + "/dev1/mod1/x/?api-version=1", wantRule: "MOD-002"},
		{name: "bad escape", in: host + "/dev1/?api-version=%zz", wantRule: "CONN-006"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseUsername(tt.in)
			if tt.wantRule != "" {
				checkRule(t, "ParseUsername", err, tt.wantRule)
				return
			}
			if err != nil {
				t.Fatalf("ParseUsername(%q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseUsername(%q)\n got %+v\nwant %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestFormatUsername(t *testing.T) {
	const host = "h.azure-devices.net"
	tests := []struct {
		id    Identity
		api   string
		extra url.Values
		want  string
	}{
		{Identity{DeviceID: "d"}, "2018-06-30", nil, host + "/d/?api-version=2018-06-30"},
		{Identity{DeviceID: "d", ModuleID: "m"}, "2018-06-30", nil, host + "/d/m/?api-version=2018-06-30"},
		{Identity{DeviceID: "d"}, DefaultAPIVersion,
			url.Values{"model-id": {"dtmi:a;1"}, "DeviceClientType": {"hilrun/0.1"}},
			host + "/d/?api-version=2021-04-12&DeviceClientType=hilrun%2F0.1&model-id=dtmi%3Aa%3B1"},
		{Identity{DeviceID: "d"}, "2018-06-30", url.Values{"api-version": {"x"}, "a": {"1"}}, host + "/d/?api-version=2018-06-30&a=1"},
		{Identity{DeviceID: "d"}, "", nil, host + "/d/"},
		{Identity{DeviceID: "d"}, "", url.Values{"a": {"b c"}}, host + "/d/?a=b+c"},
	}
	for _, tt := range tests {
		got := FormatUsername(host, tt.id, tt.api, tt.extra)
		if got != tt.want {
			t.Errorf("FormatUsername(%v, %q, %v) = %q, want %q", tt.id, tt.api, tt.extra, got, tt.want)
		}
		u, err := ParseUsername(got)
		if err != nil {
			t.Errorf("ParseUsername(FormatUsername) = %v", err)
			continue
		}
		if u.Identity != tt.id || u.Host != host || u.APIVersion != tt.api {
			t.Errorf("round trip of %q gave %+v", got, u)
		}
	}
}

func TestKnownAPIVersions(t *testing.T) {
	for _, v := range []string{"2018-06-30", "2017-11-08-preview", "2021-04-12", DefaultAPIVersion} {
		if !IsKnownAPIVersion(v) {
			t.Errorf("%s not known", v)
		}
	}
	if IsKnownAPIVersion("2016-11-14") {
		t.Error("2016-11-14 reported known")
	}
}
