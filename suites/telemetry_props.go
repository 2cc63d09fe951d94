package suites

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/iothub"
)

var _ = Describe("telemetry properties", func() {
	Conformance("no message carries two property names equal ignoring case when the application gives unique names", []string{"TEL-007"}, func(ctx SpecContext) {
		// 002 L10417 recommends unique names to whoever picks them (the
		// application) because the hub keeps one of a case-insensitive
		// pair. What the client owes is not to make two names out of the
		// application's one: names with upper-case letters, mixed with
		// others, must reach the wire without a case-folded twin. An
		// application that itself asks for "unit" and "Unit" breaks the
		// recommendation, not the client, so that is not asked here.
		s := NewSession(ctx, fixtures.SessionOptions{})
		m := s.Mark()
		_ = s.Call(ctx, agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: `{"case":"mixed"}`, ContentType: "application/json",
			Properties: map[string]string{"Unit": "F", "SiteID": "Hall-7", "level": "3"}, Wait: true}, nil)
		// A second message on the same connection: once the hub has it,
		// anything the first send published is in the trace before it
		// (one ordered MQTT stream), so no quiet wait is needed.
		_ = s.Call(ctx, agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: `{"case":"end"}`, Properties: map[string]string{"Unit": "C"}, Wait: true}, nil)
		must(s.WaitTrace(ctx, m, "the second telemetry PUBLISH", func(e hub.Entry) bool {
			return e.Dir == hub.DirIn && e.Type == "PUBLISH" && string(e.Payload) == `{"case":"end"}`
		}))
		tr := s.Trace(m)
		for _, pub := range telemetryPublishes(tr) {
			bag := wireBag(pub, tr)
			seen := map[string]string{}
			for _, p := range bag {
				f := strings.ToLower(p.Name)
				first, dup := seen[f]
				Expect(dup).To(BeFalse(), "TEL-007: PUBLISH #%d carries both %q and %q, though the application gave each name once (002 L10417: names equal ignoring case are folded, the hub keeps one)\n%s", pub.Seq, first, p.Name, traceText(tr))
				seen[f] = p.Name
			}
		}
	})

	Conformance("application property names and values stay within TEL-008's character set and go out unchanged", []string{"TEL-008"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		m := s.Mark()
		props := map[string]string{"site_id": "Hall-7.b", "flags": "!#$%&^*+-._,|~"}
		_ = s.Call(ctx, agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: `{"chars":1}`, Properties: props, Wait: true}, nil)
		pub := waitTelemetryPublish(ctx, s, m)
		tr := s.Trace(m)
		allowed := regexp.MustCompile(`^[A-Za-z0-9!#$%&^*+\-._,|~]*$`)
		got := map[string]string{}
		for _, p := range wireBag(pub, tr) {
			if iothub.IsSystemProperty(p.Name) {
				continue // system property values such as $.ct=application/json are not application properties
			}
			Expect(allowed.MatchString(p.Name) && allowed.MatchString(p.Value)).To(BeTrue(),
				"TEL-008: application property %q=%q has characters outside ASCII letters, digits and ! # $ %% & ^ * + - . _ , | ~\n%s", p.Name, p.Value, traceText(tr))
			got[p.Name] = p.Value
		}
		Expect(got).To(Equal(props), "TEL-008: the application properties on the wire must be exactly those sent\n%s", traceText(tr))
	})

	Conformance("a JSON body declares $.ct=application/json and a UTF content encoding in $.ce", []string{"TEL-010"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		m := s.Mark()
		_ = s.Call(ctx, agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: `{"temp":20.5}`, ContentType: "application/json", Wait: true}, nil)
		pub := waitTelemetryPublish(ctx, s, m)
		tr := s.Trace(m)
		bag := wireBag(pub, tr)
		ct, okCT := bag.Get(iothub.PropContentType)
		Expect(okCT && ct == "application/json").To(BeTrue(), "TEL-010: the bag must carry $.ct=application%%2Fjson; topic %q\n%s", pub.Topic, traceText(tr))
		ce, okCE := bag.Get(iothub.PropContentEncoding)
		Expect(okCE).To(BeTrue(), "TEL-010: a JSON body must declare its encoding in $.ce (utf-8); topic %q\n%s", pub.Topic, traceText(tr))
		Expect(strings.ToLower(ce)).To(BeElementOf("utf-8", "utf-16", "utf-32"), "TEL-010: $.ce must be UTF-8, UTF-16 or UTF-32; topic %q\n%s", pub.Topic, traceText(tr))
	})

	Conformance("the device never sets the hub-stamped iothub-connection-* properties", []string{"TEL-011"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		m := s.Mark()
		_ = s.Call(ctx, agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: `{"spoof":0}`, MessageID: "m-11", ContentType: "application/json",
			Properties: map[string]string{"unit": "C"}, Wait: true}, nil)
		pub := waitTelemetryPublish(ctx, s, m)
		tr := s.Trace(m)
		for _, p := range wireBag(pub, tr) {
			Expect(strings.ToLower(p.Name)).NotTo(BeElementOf("iothub-connection-device-id", "iothub-connection-auth-generation-id", "iothub-connection-auth-method"),
				"TEL-011: the device set %q=%q, which only the hub stamps; topic %q\n%s", p.Name, p.Value, pub.Topic, traceText(tr))
		}
	})

	Conformance("a creation time goes out as $.ctime in explicit UTC, close to the hub's clock", []string{"TEL-012"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		m := s.Mark()
		// TEL-012 binds "a device that sends a creation timestamp" (002
		// L10254): a board that cannot stamp one (no ctime capability,
		// answer unsupported, or no $.ctime on the wire) cannot break it.
		err := s.Call(ctx, agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: `{"ctime":1}`, CreationTime: true, Wait: true}, nil)
		if !optional(agentproto.CapCTime, "telemetry.send ctime", err) {
			NotApplicable("the board sends no creation time $.ctime (" + err.Error() + ")")
		}
		pub := waitTelemetryPublish(ctx, s, m)
		tr := s.Trace(m)
		v, ok := wireBag(pub, tr).Get(iothub.PropCreationTime)
		if !ok && !boardHas(agentproto.CapCTime) {
			NotApplicable(fmt.Sprintf("the board sends no creation time $.ctime (asked for one, it published %q) and does not declare ctime", pub.Topic))
		}
		Expect(ok).To(BeTrue(), "TEL-012: the board declares ctime; asked to stamp a creation time, it sent no $.ctime; topic %q\n%s", pub.Topic, traceText(tr))
		Expect(v).To(MatchRegexp(`(Z|[+-]00:?00)$`), "TEL-012: $.ctime %q must state UTC explicitly (ISO 8601 ending in Z)\n%s", v, traceText(tr))
		t, err := time.Parse(time.RFC3339Nano, v)
		Expect(err).NotTo(HaveOccurred(), "TEL-012: $.ctime %q is not ISO 8601\n%s", v, traceText(tr))
		Expect(t.Sub(pub.Time).Abs()).To(BeNumerically("<=", fixtures.ClockTolerance), "TEL-012: $.ctime %s is %s from the hub's receive time %s\n%s",
			v, t.Sub(pub.Time), pub.Time.UTC().Format(time.RFC3339Nano), traceText(tr))
	})

	Conformance("a 128-character device ID with special characters is used verbatim in ClientId, Username and topics and URL-encoded only in sr", []string{"CONN-024"}, func(ctx SpecContext) {
		id := specialDeviceID()
		s := NewSession(ctx, fixtures.SessionOptions{NoOpen: true, DeviceID: id})
		m, connect := openForConnect(ctx, s)
		tr := hubSince(s, m)
		Expect(connect.ClientID).To(Equal(id), "CONN-024: ClientId must be the device ID verbatim\n%s", traceText(tr))
		Expect(connect.Username).To(HavePrefix(fixtures.HubHost+"/"+id+"/?"), "CONN-024: Username must carry the device ID verbatim\n%s", traceText(tr))
		var sr string
		for _, f := range strings.Split(strings.TrimPrefix(connect.Password, "SharedAccessSignature "), "&") {
			if k, v, _ := strings.Cut(f, "="); k == "sr" {
				sr = v
			}
		}
		dec, err := url.QueryUnescape(sr)
		Expect(err).NotTo(HaveOccurred(), "CONN-024: sr %q must be URL-encoded\n%s", sr, traceText(tr))
		_, path, _ := strings.Cut(dec, "/")
		Expect(path).To(Equal("devices/"+id), "CONN-024: sr must decode (once) to {host}/devices/{deviceId}; got %q\n%s", dec, traceText(tr))
		Expect(sr).NotTo(ContainSubstring("@"), "CONN-024: the ID inside sr must be URL-encoded; got %q\n%s", sr, traceText(tr))
		expectAccepted(ctx, s, m, connect)
		waitBoardConnected(ctx, s, m)

		filter := iothub.C2DFilter(id)
		must(waitHub(ctx, s, m, "SUBSCRIBE to "+filter, func(e hub.Entry) bool {
			if e.Dir != hub.DirIn || e.Type != "SUBSCRIBE" || e.ConnID != connect.ConnID {
				return false
			}
			for _, f := range e.Filters {
				if f.Filter == filter {
					return true
				}
			}
			return false
		}))
		m2 := s.Mark()
		_ = s.Call(ctx, agentproto.OpTelemetry, agentproto.TelemetryArgs{Payload: `{"id":"special"}`, Wait: true}, nil)
		pub := must(waitHub(ctx, s, m2, "a telemetry PUBLISH", func(e hub.Entry) bool {
			return e.Dir == hub.DirIn && e.Type == "PUBLISH" && e.ConnID == connect.ConnID && string(e.Payload) == `{"id":"special"}`
		}))
		Expect(pub.Topic).To(HavePrefix("devices/"+id+"/messages/events/"), "CONN-024: the telemetry topic must carry the device ID verbatim\n%s", traceText(hubSince(s, m)))
		Expect(s.Violations(m)).To(BeEmpty(), "CONN-024: the hub flagged violations\n%s", traceText(hubSince(s, m)))
	})
})

// telemetryPublishes returns the device PUBLISHes to devices/… in tr.
func telemetryPublishes(tr []hub.Entry) []hub.Entry {
	var out []hub.Entry
	for _, e := range tr {
		if e.Dir == hub.DirIn && e.Type == "PUBLISH" && strings.HasPrefix(e.Topic, "devices/") {
			out = append(out, e)
		}
	}
	return out
}

// wireBag decodes the property bag of a telemetry PUBLISH from the topic as
// sent (TEL-002 rules; failing on a bag that does not decode).
func wireBag(pub hub.Entry, tr []hub.Entry) iothub.PropertyBag {
	GinkgoHelper()
	_, raw, ok := strings.Cut(pub.Topic, "/messages/events/")
	Expect(ok).To(BeTrue(), "TEL-001: %q is not a telemetry topic\n%s", pub.Topic, traceText(tr))
	bag, err := iothub.ParsePropertyBag(raw)
	Expect(err).NotTo(HaveOccurred(), "TEL-002: property bag %q does not decode\n%s", raw, traceText(tr))
	return bag
}

var specialIDs atomic.Int64

// specialDeviceID returns a fresh 128-character device ID holding every
// character CONN-024 allows except '+' and '#' (which an implementation
// may declare unsupported).
func specialDeviceID() string {
	id := fmt.Sprintf("HIL-a.b-c_d@e$f(1)!=%%*?,'-%d-%d-", time.Now().UnixNano()%1_000_000_000, specialIDs.Add(1))
	return id + strings.Repeat("x", 128-len(id))
}
