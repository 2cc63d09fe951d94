package iothub

import (
	"strconv"
	"strings"
)

// CheckDevicePublish applies the hub-side rule for what a connected identity
// may publish, and returns the parsed topic.
//
// Allowed are: telemetry on the identity's own topic (TEL-001; the module
// topic for a module, MOD-004), a twin GET (TWIN-002), a reported-properties
// PATCH (TWIN-006) and a method response (METH-003), the last three with a
// non-empty $rid. Everything else is refused with an error naming the rule:
// another identity's telemetry, hub-to-device topics (C2D, twin responses,
// desired patches, method requests), unknown topics, the empty topic and any
// topic containing MQTT wildcard characters. The parsed topic is returned
// even when the rule refuses it, as far as it could be parsed.
func CheckDevicePublish(id Identity, topic string) (Topic, error) {
	const op = "check publish"
	fail := func(t Topic, rule, reason string) (Topic, error) {
		return t, newError(op, topic, rule, reason)
	}
	if topic == "" {
		return fail(Topic{}, "MQTT-4.7.3-1", "topic is empty")
	}
	if i := strings.IndexAny(topic, "+#"); i >= 0 {
		reason := "a PUBLISH topic must not contain the wildcard " + describeByte(topic[i])
		if strings.ContainsAny(id.ClientID(), "+#") {
			reason += "; identities with '+' or '#' in their IDs cannot publish over MQTT (CONN-024 allows declaring them unsupported)"
		}
		t, _ := ParseTopic(topic)
		return fail(t, "MQTT-3.3.2-2", reason)
	}
	if strings.IndexByte(topic, 0) >= 0 {
		t, _ := ParseTopic(topic)
		return fail(t, "MQTT-4.7.3-2", "topic contains a NUL character")
	}
	t, err := ParseTopic(topic)
	if err != nil {
		e := err.(*Error)
		return fail(t, e.Rule, e.Reason)
	}
	switch t.Kind {
	case TopicTelemetry:
		if t.Identity == id {
			return t, nil
		}
		switch {
		case id.IsModule() && !t.Identity.IsModule() && t.Identity.DeviceID == id.DeviceID:
			return fail(t, "MOD-004", "a module publishes telemetry on devices/{deviceId}/modules/{moduleId}/messages/events/, not on its device's topic")
		case id.IsModule() != t.Identity.IsModule() && t.Identity.DeviceID == id.DeviceID:
			return fail(t, "TEL-001", "a device publishes telemetry on devices/{deviceId}/messages/events/, not on a module's topic")
		}
		return fail(t, "TEL-001", "telemetry topic belongs to "+strconv.Quote(t.Identity.ClientID())+", but the connection is "+strconv.Quote(id.ClientID()))
	case TopicTwinGet:
		return requireRID(t, op, "TWIN-002")
	case TopicTwinReported:
		return requireRID(t, op, "TWIN-006")
	case TopicMethodResponse:
		return requireRID(t, op, "METH-003")
	case TopicC2D:
		return fail(t, "C2D-001", "cloud-to-device topics are hub-to-device only; a device subscribes to them and never publishes")
	case TopicTwinResponse:
		return fail(t, "TWIN-004", "twin response topics are hub-to-device only")
	case TopicTwinDesired:
		return fail(t, "TWIN-009", "desired-property patch topics are hub-to-device only")
	case TopicMethodRequest:
		return fail(t, "METH-002", "method request topics are hub-to-device only")
	}
	return fail(t, "", "unrecognised topic")
}

func requireRID(t Topic, op, rule string) (Topic, error) {
	switch {
	case !t.HasRID:
		return t, newError(op, t.Raw, rule, "request has no $rid parameter")
	case t.RID == "":
		return t, newError(op, t.Raw, rule, "request has an empty $rid")
	}
	return t, nil
}

// FilterClass rates a SUBSCRIBE filter against CONN-018.
type FilterClass int

const (
	// FilterDocumented is one of the filters the service documents.
	FilterDocumented FilterClass = iota
	// FilterTolerated is accepted by IoT Hub but undocumented; it earns a
	// warning.
	FilterTolerated
	// FilterRejected is refused.
	FilterRejected
)

func (c FilterClass) String() string {
	switch c {
	case FilterDocumented:
		return "documented"
	case FilterTolerated:
		return "tolerated"
	case FilterRejected:
		return "rejected"
	}
	return "FilterClass(" + strconv.Itoa(int(c)) + ")"
}

// ClassifySubscribe rates one SUBSCRIBE filter sent by id (CONN-018).
//
// Documented filters are C2DFilter(id.DeviceID) for device identities
// (C2D-001; modules have none, MOD-010), TwinResponseFilter,
// TwinDesiredFilter and MethodsFilter; for them the error is nil.
// TwinWildcardFilter is tolerated and comes with an error describing the
// warning. Anything else is rejected with an error giving the reason: '+'
// wildcards, a bare "#", per-method or other per-subtopic filters, another
// device's C2D filter, a C2D filter on a module connection, and so on.
func ClassifySubscribe(id Identity, filter string) (FilterClass, error) {
	const op = "check subscribe"
	reject := func(rule, reason string) (FilterClass, error) {
		return FilterRejected, newError(op, filter, rule, reason)
	}
	switch filter {
	case TwinResponseFilter, TwinDesiredFilter, MethodsFilter:
		return FilterDocumented, nil
	case TwinWildcardFilter:
		return FilterTolerated, newError(op, filter, "CONN-018",
			"undocumented filter (accepted by IoT Hub); subscribe to "+TwinResponseFilter+" and "+TwinDesiredFilter+" instead")
	case "":
		return reject("MQTT-4.7.3-1", "filter is empty")
	case "#":
		return reject("CONN-018", "catch-all filter '#' is not a documented IoT Hub filter")
	}
	isC2D := strings.HasPrefix(filter, devicesPrefix) && strings.Contains(filter, "/messages/devicebound")
	if id.IsModule() && isC2D {
		return reject("MOD-010", "IoT Hub documents no cloud-to-device subscription for modules")
	}
	if !id.IsModule() && filter == C2DFilter(id.DeviceID) {
		if strings.ContainsAny(id.DeviceID, "+#") {
			return reject("CONN-024", "device id contains '+' or '#', which makes its C2D filter an invalid MQTT filter")
		}
		return FilterDocumented, nil
	}
	switch {
	case strings.Contains(filter, "+"):
		return reject("CONN-018", "'+' wildcards are not allowed in IoT Hub filters")
	case strings.HasPrefix(filter, methodsPrefix+methodsPost):
		return reject("METH-001", "per-method filter; subscribe once to "+MethodsFilter)
	case strings.HasPrefix(filter, twinPrefix):
		return reject("CONN-018", "per-subtopic twin filter; use "+TwinResponseFilter+" or "+TwinDesiredFilter)
	case strings.HasPrefix(filter, iothubTopicPrefix):
		return reject("CONN-018", "not a documented $iothub filter")
	case isC2D:
		want := C2DFilter(id.DeviceID)
		if dev, _, _ := strings.Cut(filter[len(devicesPrefix):], "/"); dev != id.DeviceID {
			return reject("CONN-018", "cloud-to-device filter for another device ("+strconv.Quote(dev)+"); expected "+want)
		}
		return reject("C2D-001", "cloud-to-device filter must be exactly "+want)
	}
	return reject("CONN-018", "not one of the documented IoT Hub filters")
}
