package iothub

import (
	"errors"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func FuzzParsePropertyBag(f *testing.F) {
	for _, s := range []string{
		"", "a=1", "a=1&b=2", "k=hello+world", "k=hello%20world", "k=", "k", "k&j=1",
		"%24.mid=42", "$.mid=42", "%24.ct=application%2Fjson&%24.ce=utf-8", "a=1&&b=2",
		"a=%zz", "=1", "x=a=b", "x=%C3%A4&y=%ff", "&", "a=1/",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		bag, err := ParsePropertyBag(s)
		if err != nil {
			return
		}
		enc := bag.Encode()
		again, err := ParsePropertyBag(enc)
		if err != nil {
			t.Fatalf("Encode of %q gave %q which does not parse: %v", s, enc, err)
		}
		if len(bag) == 0 && len(again) == 0 {
			return
		}
		if !reflect.DeepEqual(bag, again) {
			t.Fatalf("round trip of %q via %q:\n got %#v\nwant %#v", s, enc, again, bag)
		}
		if enc2 := again.Encode(); enc2 != enc {
			t.Fatalf("Encode not stable: %q then %q", enc, enc2)
		}
		_ = MessageSize(nil, bag)
	})
}

func FuzzParseTopic(f *testing.F) {
	for _, s := range []string{
		"devices/dev1/messages/events/", "devices/dev1/messages/events/a=1&%24.mid=x",
		"devices/dev1/modules/mod1/messages/events/$.sub=c", "devices/dev1/messages/devicebound/%24.to=x",
		"$iothub/twin/GET/?$rid=1", "$iothub/twin/PATCH/properties/reported/?$rid=2",
		"$iothub/twin/res/204/?$rid=1&$version=6", "$iothub/twin/PATCH/properties/desired/?$version=3",
		"$iothub/methods/POST/reboot/?$rid=1", "$iothub/methods/res/200/?$rid=1",
		"$iothub/twin/res/abc/?$rid=1", "", "#", "devices/+/messages/events/", "$iothub/twin/#",
	} {
		f.Add(s)
	}
	dev := Identity{DeviceID: "dev1"}
	f.Fuzz(func(t *testing.T, s string) {
		tp, err := ParseTopic(s)
		if tp.Raw != s {
			t.Fatalf("Raw = %q, want %q", tp.Raw, s)
		}
		// The rule checks must never panic either.
		_, _ = CheckDevicePublish(dev, s)
		_, _ = CheckDevicePublish(Identity{DeviceID: "dev1", ModuleID: "m"}, s)
		_, _ = ClassifySubscribe(dev, s)
		if err != nil {
			return
		}
		if tp.Kind == TopicUnknown {
			t.Fatalf("ParseTopic(%q) gave TopicUnknown without an error", s)
		}
		// Rebuilding the topic from its parts must parse to the same parts.
		var rebuilt string
		switch tp.Kind {
		case TopicTelemetry:
			rebuilt = TelemetryTopic(tp.Identity, tp.Properties)
		case TopicC2D:
			rebuilt = C2DTopic(tp.Identity.DeviceID, tp.Properties)
		case TopicTwinGet, TopicTwinReported, TopicMethodResponse, TopicMethodRequest, TopicTwinResponse:
			if !tp.HasRID {
				return
			}
			switch tp.Kind {
			case TopicTwinGet:
				rebuilt = TwinGetTopic(tp.RID)
			case TopicTwinReported:
				rebuilt = TwinReportedTopic(tp.RID)
			case TopicMethodResponse:
				rebuilt = MethodResponseTopic(tp.Status, tp.RID)
			case TopicMethodRequest:
				rebuilt = MethodRequestTopic(tp.MethodName, tp.RID)
			case TopicTwinResponse:
				rebuilt = TwinResponseTopic(tp.Status, tp.RID, tp.Version, tp.HasVersion)
			}
		case TopicTwinDesired:
			if !tp.HasVersion || tp.HasRID {
				return
			}
			rebuilt = TwinDesiredTopic(tp.Version)
		}
		again, err := ParseTopic(rebuilt)
		if err != nil {
			t.Fatalf("rebuilt %q from %q does not parse: %v", rebuilt, s, err)
		}
		again.Raw = tp.Raw
		if len(again.Properties) == 0 && len(tp.Properties) == 0 {
			again.Properties = tp.Properties
		}
		if !reflect.DeepEqual(again, tp) {
			t.Fatalf("rebuilt %q from %q:\n got %+v\nwant %+v", rebuilt, s, again, tp)
		}
	})
}

func FuzzParseSASToken(f *testing.F) {
	for _, s := range []string{
		"SharedAccessSignature sr=" + testSR + "&sig=" + url.QueryEscape(testSig) + "&se=1700000000",
		"SharedAccessSignature sig=abc%3D&se=1&sr=h&skn=iothubowner",
		"SharedAccessSignature sr=x&sig=YQ%3D%3D&se=01", "SharedAccessSignature sr=x&sig=a+b&se=1",
		"SharedAccessSignature ", "sr=x&sig=YQ%3D%3D&se=1", "SharedAccessSignature sr=%zz&sig=YQ%3D%3D&se=1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_ = RedactSAS(s)
		tok, err := ParseSASToken(s)
		if err != nil {
			var e *Error
			want := RedactSAS(s)
			if !strings.HasPrefix(s, sasPrefix) {
				want = "(password not shown)" // may be a raw key (CONN-011)
			}
			if !errors.As(err, &e) || e.Input != want {
				t.Fatalf("error does not carry the redacted input: %#v", err)
			}
			return
		}
		if _, err := tok.ResourceURI(); err != nil {
			t.Fatalf("parsed token has undecodable sr: %v", err)
		}
		if _, err := tok.Verify(testKey); err != nil {
			t.Fatalf("Verify: %v", err)
		}
		rebuilt := sasPrefix + "sr=" + tok.Resource + "&sig=" + url.QueryEscape(tok.Signature) +
			"&se=" + strconv.FormatInt(tok.Expiry, 10)
		if tok.KeyName != "" {
			rebuilt += "&skn=" + url.QueryEscape(tok.KeyName)
		}
		again, err := ParseSASToken(rebuilt)
		if err != nil {
			t.Fatalf("rebuilt %q does not parse: %v", rebuilt, err)
		}
		if again != tok {
			t.Fatalf("rebuilt token differs:\n got %+v\nwant %+v", again, tok)
		}
	})
}

func FuzzParseUsername(f *testing.F) {
	for _, s := range []string{
		"h.azure-devices.net/dev1/?api-version=2018-06-30",
		"h.azure-devices.net/dev1/mod1/?api-version=2018-06-30",
		"h.azure-devices.net/dev1/?api-version=2021-04-12&DeviceClientType=x%2F1&model-id=dtmi%3Aa%3B1",
		"h.azure-devices.net/dev1/", "h/?x=1/?a=b", "h/a.b-c_d@e$f(1)!=/?api-version=1", "h/d/m", "h/d",
		"iothubname.azure-devices.net/DeviceId", "h/d?api-version=1", "h/d/m/?model-id=x&api-version=1", "h/d/?",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseUsername(s)
		if err != nil {
			return
		}
		if u.Query == nil {
			t.Fatal("Query is nil")
		}
		if err := u.Identity.Validate(); err != nil {
			t.Fatalf("parsed identity invalid: %v", err)
		}
		// The parse accounts for every byte: the bare form is exactly
		// host/clientId, every other form continues with "/" and the query.
		prefix := u.Host + "/" + u.Identity.ClientID()
		switch {
		case u.Bare && (s != prefix || u.HasQuery || len(u.Query) > 0):
			t.Fatalf("bare %q parsed as %+v", s, u)
		case !u.Bare && !strings.HasPrefix(s, prefix+"/"):
			t.Fatalf("%q does not start with %q/", s, prefix)
		case !u.Bare && u.HasQuery != (len(s) > len(prefix)+2):
			t.Fatalf("%q: HasQuery %v", s, u.HasQuery)
		}
		if strings.HasPrefix(u.Identity.ModuleID, "?") ||
			u.Query.Has("api-version") && (u.APIVersion == "" || len(u.Query["api-version"]) > 1) {
			return // ambiguous on the wire, or not representable by FormatUsername
		}
		extra := url.Values{}
		for k, v := range u.Query {
			if k != "api-version" {
				extra[k] = v
			}
		}
		rebuilt := FormatUsername(u.Host, u.Identity, u.APIVersion, extra)
		again, err := ParseUsername(rebuilt)
		if err != nil {
			t.Fatalf("rebuilt %q from %q does not parse: %v", rebuilt, s, err)
		}
		if again.Host != u.Host || again.Identity != u.Identity || again.APIVersion != u.APIVersion ||
			again.ModelID != u.ModelID || again.DeviceClientType != u.DeviceClientType {
			t.Fatalf("rebuilt %q from %q:\n got %+v\nwant %+v", rebuilt, s, again, u)
		}
		if len(u.Query) > 0 && !reflect.DeepEqual(again.Query, u.Query) {
			t.Fatalf("query of %q: got %v, want %v", rebuilt, again.Query, u.Query)
		}
	})
}
