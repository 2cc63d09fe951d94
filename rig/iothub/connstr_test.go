package iothub

import (
	"strings"
	"testing"
)

func TestParseConnectionString(t *testing.T) {
	const key = "aGlscnVuLXRlc3QtZGV2aWNlLWtleS0zMi1ieXRlcyE="
	tests := []struct {
		in        string
		want      ConnectionString
		canonical string // "" = same as in
		wantErr   bool
	}{
		{in: "HostName=h.azure-devices.net;DeviceId=dev1;SharedAccessKey=" + key,
			want: ConnectionString{HostName: "h.azure-devices.net", DeviceID: "dev1", SharedAccessKey: key}},
		{in: "HostName=h;DeviceId=dev1;ModuleId=mod1;SharedAccessKey=" + key,
			want: ConnectionString{HostName: "h", DeviceID: "dev1", ModuleID: "mod1", SharedAccessKey: key}},
		{in: "HostName=h;SharedAccessKeyName=iothubowner;SharedAccessKey=" + key,
			want: ConnectionString{HostName: "h", SharedAccessKeyName: "iothubowner", SharedAccessKey: key}},
		{in: "HostName=h;DeviceId=dev1;x509=true",
			want: ConnectionString{HostName: "h", DeviceID: "dev1", X509: true}},
		{in: "DeviceId=dev1;SharedAccessKey=" + key + ";HostName=h;",
			want:      ConnectionString{HostName: "h", DeviceID: "dev1", SharedAccessKey: key},
			canonical: "HostName=h;DeviceId=dev1;SharedAccessKey=" + key},
		{in: "HostName=h;DeviceId=dev1;SharedAccessKey=" + key + ";GatewayHostName=edge.local",
			want: ConnectionString{HostName: "h", DeviceID: "dev1", SharedAccessKey: key, GatewayHostName: "edge.local"}},
		{in: "HostName=h;DeviceId=a$b=c;x509=True",
			want:      ConnectionString{HostName: "h", DeviceID: "a$b=c", X509: true},
			canonical: "HostName=h;DeviceId=a$b=c;x509=true"},
		{in: "HostName=h;SharedAccessKeyName=device",
			want: ConnectionString{HostName: "h", SharedAccessKeyName: "device"}},

		{in: "", wantErr: true},
		{in: "DeviceId=d;SharedAccessKey=" + key, wantErr: true},            // no HostName
		{in: "HostName=h;DeviceId=d", wantErr: true},                        // no credential
		{in: "HostName=h;DeviceId=d;x509=false", wantErr: true},             // no credential
		{in: "HostName=h;DeviceId=d;x509=yes", wantErr: true},               // bad bool
		{in: "hostname=h;DeviceId=d;SharedAccessKey=" + key, wantErr: true}, // key case
		{in: "HostName=h;DeviceID=d;SharedAccessKey=" + key, wantErr: true}, // key case
		{in: "HostName=h;HostName=i;x509=true", wantErr: true},              // duplicate
		{in: "HostName=h;DeviceId=d;SharedAccessKey", wantErr: true},        // no '='
		{in: "HostName=;DeviceId=d;x509=true", wantErr: true},               // empty value
		{in: "HostName=h;ModuleId=m;x509=true", wantErr: true},              // module without device
		{in: "HostName=h;DeviceId=d d;x509=true", wantErr: true},            // bad id
		{in: "HostName=h;DeviceId=d;Foo=bar;x509=true", wantErr: true},      // unknown key
	}
	for _, tt := range tests {
		got, err := ParseConnectionString(tt.in)
		if tt.wantErr {
			if err == nil {
				t.Errorf("ParseConnectionString(%q) = %+v, want error", tt.in, got)
			} else if strings.Contains(err.Error(), key) {
				t.Errorf("error leaks the key: %v", err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseConnectionString(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseConnectionString(%q)\n got %+v\nwant %+v", tt.in, got, tt.want)
		}
		canon := tt.canonical
		if canon == "" {
			canon = tt.in
		}
		if s := got.String(); s != canon {
			t.Errorf("String() = %q, want %q", s, canon)
		}
		again, err := ParseConnectionString(got.String())
		if err != nil || again != got {
			t.Errorf("String() does not round-trip: %+v, %v", again, err)
		}
		if got.Identity() != (Identity{DeviceID: tt.want.DeviceID, ModuleID: tt.want.ModuleID}) {
			t.Errorf("Identity() = %v", got.Identity())
		}
	}
}

func TestConnectionStringErrorRedacted(t *testing.T) {
	_, err := ParseConnectionString("DeviceId=d;SharedAccessKey=c2VjcmV0LWtleQ==")
	if err == nil || strings.Contains(err.Error(), "c2VjcmV0LWtleQ") {
		t.Errorf("err = %v", err)
	}
}
