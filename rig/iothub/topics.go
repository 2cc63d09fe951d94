package iothub

import (
	"strconv"
	"strings"
)

// Subscription filters documented for devices (CONN-018), and one that is
// undocumented but accepted.
const (
	// TwinResponseFilter receives answers to twin GET and reported PATCH
	// requests (TWIN-001).
	TwinResponseFilter = "$iothub/twin/res/#"
	// TwinDesiredFilter receives desired-property patches (TWIN-009).
	TwinDesiredFilter = "$iothub/twin/PATCH/properties/desired/#"
	// MethodsFilter receives every direct-method request (METH-001).
	MethodsFilter = "$iothub/methods/POST/#"
	// TwinWildcardFilter covers both twin filters at once. IoT Hub accepts
	// it although it is undocumented, and the nanoFramework client uses it;
	// CONN-018 reports it as a warning.
	TwinWildcardFilter = "$iothub/twin/#"
)

// Fixed topic text.
const (
	devicesPrefix     = "devices/"
	eventsSuffix      = "messages/events/"
	deviceboundSuffix = "messages/devicebound/"
	modulesSegment    = "modules/"

	twinPrefix        = "$iothub/twin/"
	twinGet           = "GET/"
	twinReported      = "PATCH/properties/reported/"
	twinDesired       = "PATCH/properties/desired/"
	twinRes           = "res/"
	methodsPrefix     = "$iothub/methods/"
	methodsPost       = "POST/"
	methodsRes        = "res/"
	paramRID          = "$rid"
	paramVersion      = "$version"
	iothubTopicPrefix = "$iothub/"
)

// TelemetryTopic returns the topic id publishes telemetry to, followed by the
// encoded bag: devices/{d}/messages/events/ (TEL-001) or
// devices/{d}/modules/{m}/messages/events/ (MOD-004).
func TelemetryTopic(id Identity, bag PropertyBag) string {
	t := devicesPrefix + id.DeviceID + "/"
	if id.IsModule() {
		t += modulesSegment + id.ModuleID + "/"
	}
	return t + eventsSuffix + bag.Encode()
}

// C2DTopic returns the topic the hub delivers a cloud-to-device message on,
// devices/{d}/messages/devicebound/ followed by the encoded bag (C2D-002).
func C2DTopic(deviceID string, bag PropertyBag) string {
	return devicesPrefix + deviceID + "/" + deviceboundSuffix + bag.Encode()
}

// C2DFilter returns the one filter a device subscribes to for
// cloud-to-device messages, devices/{d}/messages/devicebound/# (C2D-001).
func C2DFilter(deviceID string) string {
	return devicesPrefix + deviceID + "/" + deviceboundSuffix + "#"
}

// TwinGetTopic returns the topic that requests the full twin (TWIN-002). The
// rid is written verbatim; it must not contain '&'.
func TwinGetTopic(rid string) string {
	return twinPrefix + twinGet + "?" + paramRID + "=" + rid
}

// TwinReportedTopic returns the topic a reported-properties patch is
// published to (TWIN-006).
func TwinReportedTopic(rid string) string {
	return twinPrefix + twinReported + "?" + paramRID + "=" + rid
}

// TwinResponseTopic returns the topic the hub answers a twin request on
// (TWIN-004, TWIN-008), with the new version appended when hasVersion.
func TwinResponseTopic(status int, rid string, version int64, hasVersion bool) string {
	t := twinPrefix + twinRes + strconv.Itoa(status) + "/?" + paramRID + "=" + rid
	if hasVersion {
		t += "&" + paramVersion + "=" + strconv.FormatInt(version, 10)
	}
	return t
}

// TwinDesiredTopic returns the topic a desired-properties patch is delivered
// on (TWIN-009).
func TwinDesiredTopic(version int64) string {
	return twinPrefix + twinDesired + "?" + paramVersion + "=" + strconv.FormatInt(version, 10)
}

// MethodRequestTopic returns the topic a direct-method request is delivered
// on (METH-002).
func MethodRequestTopic(name, rid string) string {
	return methodsPrefix + methodsPost + name + "/?" + paramRID + "=" + rid
}

// MethodResponseTopic returns the topic a device answers a direct method on
// (METH-003, METH-004).
func MethodResponseTopic(status int, rid string) string {
	return methodsPrefix + methodsRes + strconv.Itoa(status) + "/?" + paramRID + "=" + rid
}

// TopicKind says which of IoT Hub's device-facing topics a topic name is.
type TopicKind int

// Topic kinds recognised by ParseTopic.
const (
	TopicUnknown        TopicKind = iota
	TopicTelemetry                // devices/{d}[/modules/{m}]/messages/events/{bag}
	TopicC2D                      // devices/{d}/messages/devicebound/{bag}
	TopicTwinGet                  // $iothub/twin/GET/?$rid=
	TopicTwinReported             // $iothub/twin/PATCH/properties/reported/?$rid=
	TopicTwinResponse             // $iothub/twin/res/{status}/?$rid=[&$version=]
	TopicTwinDesired              // $iothub/twin/PATCH/properties/desired/?$version=
	TopicMethodRequest            // $iothub/methods/POST/{name}/?$rid=
	TopicMethodResponse           // $iothub/methods/res/{status}/?$rid=
)

var topicKindNames = [...]string{
	TopicUnknown:        "unknown",
	TopicTelemetry:      "telemetry",
	TopicC2D:            "c2d",
	TopicTwinGet:        "twin-get",
	TopicTwinReported:   "twin-reported",
	TopicTwinResponse:   "twin-response",
	TopicTwinDesired:    "twin-desired",
	TopicMethodRequest:  "method-request",
	TopicMethodResponse: "method-response",
}

func (k TopicKind) String() string {
	if k >= 0 && int(k) < len(topicKindNames) {
		return topicKindNames[k]
	}
	return "TopicKind(" + strconv.Itoa(int(k)) + ")"
}

// Topic is a parsed topic name.
type Topic struct {
	Kind TopicKind
	Raw  string // the topic exactly as given

	// Identity is set for telemetry (device or module) and C2D (device).
	Identity Identity
	// Properties is the decoded bag of a telemetry or C2D topic.
	Properties PropertyBag

	// RID is the $rid parameter exactly as it appears in the topic; it is
	// opaque and is never decoded, so a reply can echo it byte for byte
	// (TWIN-003, METH-003).
	RID    string
	HasRID bool
	// Status is the {status} segment of twin and method responses.
	Status int
	// Version is the $version parameter of a twin response (TWIN-008) or
	// desired patch (TWIN-009).
	Version    int64
	HasVersion bool
	// MethodName is the {name} segment of a method request (METH-002).
	MethodName string
}

// ParseTopic parses any of the topic names built by this package's topic
// functions.
//
// Telemetry and C2D topics take everything after ".../messages/events/" or
// ".../messages/devicebound/" as the property bag, which may be empty. For
// $iothub topics the text after "/?" is split on '&' into key=value pairs;
// "$rid" is kept verbatim, "$version" must be a decimal number, other keys
// are ignored. Whether a required parameter is present is not checked here
// (see HasRID, HasVersion, and CheckDevicePublish). A {status} segment must
// be all digits.
//
// A topic that is none of the above yields Kind TopicUnknown and an error
// saying why. A recognised topic with a malformed part (a bad ID, bag or
// parameter) yields its Kind, the parts parsed so far, and an error.
func ParseTopic(topic string) (Topic, error) {
	t := Topic{Raw: topic}
	var err error
	switch {
	case strings.HasPrefix(topic, devicesPrefix):
		err = parseDeviceTopic(&t, topic[len(devicesPrefix):])
	case strings.HasPrefix(topic, twinPrefix):
		err = parseTwinTopic(&t, topic[len(twinPrefix):])
	case strings.HasPrefix(topic, methodsPrefix):
		err = parseMethodTopic(&t, topic[len(methodsPrefix):])
	case topic == "":
		err = topicError(topic, "", "topic is empty")
	default:
		err = topicError(topic, "", "not an IoT Hub device topic (expected devices/... or $iothub/twin/... or $iothub/methods/...)")
	}
	return t, err
}

func topicError(topic, rule, reason string) error {
	return newError("parse topic", topic, rule, reason)
}

// parseDeviceTopic handles the part after "devices/".
func parseDeviceTopic(t *Topic, rest string) error {
	dev, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return topicError(t.Raw, "TEL-001", "device id is not followed by '/'")
	}
	var rule string
	switch {
	case strings.HasPrefix(rest, eventsSuffix):
		t.Kind, rule = TopicTelemetry, "TEL-001"
		rest = rest[len(eventsSuffix):]
	case strings.HasPrefix(rest, deviceboundSuffix):
		t.Kind, rule = TopicC2D, "C2D-002"
		rest = rest[len(deviceboundSuffix):]
	case strings.HasPrefix(rest, modulesSegment):
		mod, after, ok := strings.Cut(rest[len(modulesSegment):], "/")
		switch {
		case ok && strings.HasPrefix(after, eventsSuffix):
			t.Kind, rule = TopicTelemetry, "MOD-004"
			t.Identity.ModuleID = mod
			rest = after[len(eventsSuffix):]
		case ok && strings.HasPrefix(after, deviceboundSuffix):
			return topicError(t.Raw, "MOD-010", "IoT Hub has no cloud-to-device topic for modules")
		default:
			return topicError(t.Raw, "MOD-004", "module topic is not devices/{deviceId}/modules/{moduleId}/messages/events/")
		}
	case rest == "messages/events" || rest == "messages/devicebound":
		return topicError(t.Raw, "TEL-001", "missing '/' after "+quote(rest))
	default:
		return topicError(t.Raw, "TEL-001", "not devices/{deviceId}/messages/events/ or devices/{deviceId}/messages/devicebound/")
	}
	t.Identity.DeviceID = dev
	if rule, why := checkID(dev); why != "" {
		return topicError(t.Raw, rule, "device id "+why)
	}
	if rule == "MOD-004" {
		if rule, why := checkID(t.Identity.ModuleID); why != "" {
			return topicError(t.Raw, rule, "module id "+why)
		}
	}
	bag, err := ParsePropertyBag(rest)
	if err != nil {
		// A badly encoded bag breaks the bag rule (TEL-002), not the topic
		// rule (TEL-001, MOD-004) of the topic it ends. C2D bags are the
		// hub's own text: their errors stay with the C2D topic rule.
		if t.Kind == TopicTelemetry {
			rule = err.(*Error).Rule
		}
		return topicError(t.Raw, rule, "property bag: "+err.(*Error).Reason)
	}
	t.Properties = bag
	return nil
}

// parseTwinTopic handles the part after "$iothub/twin/".
func parseTwinTopic(t *Topic, rest string) error {
	var rule string
	switch {
	case strings.HasPrefix(rest, twinGet):
		t.Kind, rule = TopicTwinGet, "TWIN-002"
		rest = rest[len(twinGet):]
	case strings.HasPrefix(rest, twinReported):
		t.Kind, rule = TopicTwinReported, "TWIN-006"
		rest = rest[len(twinReported):]
	case strings.HasPrefix(rest, twinDesired):
		t.Kind, rule = TopicTwinDesired, "TWIN-009"
		rest = rest[len(twinDesired):]
	case strings.HasPrefix(rest, twinRes):
		t.Kind, rule = TopicTwinResponse, "TWIN-004"
		var err error
		if rest, err = parseStatus(t, rest[len(twinRes):], rule); err != nil {
			return err
		}
	default:
		return topicError(t.Raw, "", "unknown twin topic (expected GET/, PATCH/properties/reported/, PATCH/properties/desired/ or res/{status}/)")
	}
	return parseParams(t, rest, rule)
}

// parseMethodTopic handles the part after "$iothub/methods/".
func parseMethodTopic(t *Topic, rest string) error {
	switch {
	case strings.HasPrefix(rest, methodsPost):
		t.Kind = TopicMethodRequest
		name, after, ok := strings.Cut(rest[len(methodsPost):], "/")
		if !ok {
			return topicError(t.Raw, "METH-002", "method name is not followed by '/'")
		}
		if name == "" {
			return topicError(t.Raw, "METH-002", "method name is empty")
		}
		t.MethodName = name
		return parseParams(t, after, "METH-002")
	case strings.HasPrefix(rest, methodsRes):
		t.Kind = TopicMethodResponse
		after, err := parseStatus(t, rest[len(methodsRes):], "METH-004")
		if err != nil {
			return err
		}
		return parseParams(t, after, "METH-003")
	}
	return topicError(t.Raw, "", "unknown methods topic (expected POST/{name}/ or res/{status}/)")
}

// parseStatus reads "{status}/" into t.Status and returns what follows.
func parseStatus(t *Topic, s, rule string) (string, error) {
	status, after, ok := strings.Cut(s, "/")
	if !ok {
		return "", topicError(t.Raw, rule, "status is not followed by '/'")
	}
	if !allDigits(status) {
		return "", topicError(t.Raw, rule, "status "+quote(status)+" is not a decimal number")
	}
	n, err := strconv.Atoi(status)
	if err != nil {
		return "", topicError(t.Raw, rule, "status "+quote(status)+" is out of range")
	}
	t.Status = n
	return after, nil
}

// parseParams reads the "?k=v&k=v" tail of an $iothub topic. An empty tail
// is allowed; anything else must start with '?'.
func parseParams(t *Topic, s, rule string) error {
	if s == "" {
		return nil
	}
	if s[0] != '?' {
		return topicError(t.Raw, rule, "unexpected "+quote(s)+" where '?' and parameters were expected")
	}
	s = s[1:]
	if s == "" {
		return nil
	}
	for piece := range strings.SplitSeq(s, "&") {
		if piece == "" {
			return topicError(t.Raw, rule, "empty parameter (doubled, leading or trailing '&')")
		}
		k, v, _ := strings.Cut(piece, "=")
		switch k {
		case paramRID:
			if t.HasRID {
				return topicError(t.Raw, rule, "$rid appears more than once")
			}
			t.RID, t.HasRID = v, true
		case paramVersion:
			if t.HasVersion {
				return topicError(t.Raw, rule, "$version appears more than once")
			}
			if !allDigits(v) {
				return topicError(t.Raw, rule, "$version "+quote(v)+" is not a decimal number")
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return topicError(t.Raw, rule, "$version "+quote(v)+" is out of range")
			}
			t.Version, t.HasVersion = n, true
		}
	}
	return nil
}

// allDigits reports whether s is a non-empty string of ASCII digits.
func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
