// Package awsproto holds AWS IoT Core's device-facing wire conventions:
// endpoint names, the Device Shadow topic tree, shadow request and response
// documents, the merge rules of the shadow service and the documented
// limits. The reference endpoint (rig/awsiot) and the reference firmware's
// AWS mode (devicefw/sim) both use it, so the two cannot drift apart; the
// specs (suites/aws*.go) use it to read the wire trace.
//
// Sources: the AWS requirements of the catalog (AWS-001…012, seed 001) and
// the AWS notes of shared/research/device-sdk-behaviours.md §9 (AWS "Device
// Shadow MQTT topics", "Device Shadow service documents", "Device Shadow
// error messages", "AWS IoT Core endpoints and quotas").
package awsproto

import (
	"fmt"
	"regexp"
	"strings"
)

// DefaultEndpoint is the ATS data endpoint the reference endpoint answers
// as: `<account>-ats.iot.<region>.amazonaws.com` (AWS-004, 001 L111).
const DefaultEndpoint = "hilrun0000000-ats.iot.eu-west-1.amazonaws.com"

// Port is AWS IoT's MQTT-over-TLS port (AWS-001, 001 L7, L38–42).
const Port = 8883

var atsPattern = regexp.MustCompile(`^[a-z0-9]+-ats\.iot\.[a-z0-9-]+\.amazonaws\.com$`)

// IsATSEndpoint reports whether host has the form of an account's ATS
// endpoint (AWS-004). The legacy `<account>.iot.<region>.amazonaws.com`
// (VeriSign-signed) name does not match.
func IsATSEndpoint(host string) bool { return atsPattern.MatchString(strings.ToLower(host)) }

// Documented limits ("AWS IoT Core endpoints and quotas", Device Shadow
// service quotas; device-sdk-behaviours.md §9).
const (
	MaxPayloadBytes     = 128 * 1024 // one MQTT message
	MaxShadowBytes      = 8 * 1024   // the state document of one shadow
	MaxShadowDepth      = 6          // nesting of the desired / reported sections
	MaxClientTokenBytes = 64
	MaxTopicBytes       = 256
	MaxTopicSlashes     = 7 // not counting the reserved prefix of $aws topics
	MaxFiltersPerSub    = 8
	MaxSubscriptions    = 50
	MinKeepAliveS       = 30
	MaxKeepAliveS       = 1200
	MaxThingNameBytes   = 128
)

// EffectiveKeepAlive is the keep-alive AWS IoT applies for the one a
// CONNECT asks for: 0 or above 1200 s becomes 1200 s, below 30 s becomes
// 30 s; the connection is closed after 1.5 times it without a packet.
func EffectiveKeepAlive(asked uint16) uint16 {
	switch {
	case asked == 0 || asked > MaxKeepAliveS:
		return MaxKeepAliveS
	case asked < MinKeepAliveS:
		return MinKeepAliveS
	}
	return asked
}

var thingNameRE = regexp.MustCompile(`^[a-zA-Z0-9:_-]{1,128}$`)

// ValidThingName reports whether name is a legal thing name.
func ValidThingName(name string) bool { return thingNameRE.MatchString(name) }

// Shadow operations and the answers the service publishes.
const (
	OpGet    = "get"
	OpUpdate = "update"
	OpDelete = "delete"

	Accepted  = "accepted"
	Rejected  = "rejected"
	Delta     = "delta"     // update/delta
	Documents = "documents" // update/documents
)

// ShadowPrefix is `$aws/things/{thing}/shadow` for the classic shadow and
// `$aws/things/{thing}/shadow/name/{name}` for a named one.
func ShadowPrefix(thing, name string) string {
	if name == "" {
		return "$aws/things/" + thing + "/shadow"
	}
	return "$aws/things/" + thing + "/shadow/name/" + name
}

// ShadowTopic is the topic of a shadow operation, e.g.
// ShadowTopic("t", "", "update", "accepted") = $aws/things/t/shadow/update/accepted.
func ShadowTopic(thing, name, op, answer string) string {
	t := ShadowPrefix(thing, name) + "/" + op
	if answer != "" {
		t += "/" + answer
	}
	return t
}

// ShadowWildcard is the broad filter `$aws/things/{thing}/shadow/#` the
// seed SDK subscribes to and AWS advises against (AWS-010).
func ShadowWildcard(thing string) string { return "$aws/things/" + thing + "/shadow/#" }

// ShadowRef names the shadow a topic is about and what it says.
type ShadowRef struct {
	Thing  string
	Name   string // "" for the classic shadow
	Op     string // get, update, delete
	Answer string // "", accepted, rejected, delta, documents
}

// ParseShadowTopic splits a Device Shadow topic; ok is false for any
// other topic (including malformed shadow topics).
func ParseShadowTopic(topic string) (ShadowRef, bool) {
	rest, ok := strings.CutPrefix(topic, "$aws/things/")
	if !ok {
		return ShadowRef{}, false
	}
	parts := strings.Split(rest, "/")
	if len(parts) < 3 || parts[0] == "" || parts[1] != "shadow" {
		return ShadowRef{}, false
	}
	r := ShadowRef{Thing: parts[0]}
	parts = parts[2:]
	if len(parts) >= 2 && parts[0] == "name" {
		if parts[1] == "" {
			return ShadowRef{}, false
		}
		r.Name = parts[1]
		parts = parts[2:]
	}
	if len(parts) == 0 || len(parts) > 2 {
		return ShadowRef{}, false
	}
	r.Op = parts[0]
	if len(parts) == 2 {
		if parts[1] == "" {
			return ShadowRef{}, false // ".../update/" is another topic than ".../update"
		}
		r.Answer = parts[1]
	}
	switch r.Op {
	case OpGet, OpDelete:
		if r.Answer != "" && r.Answer != Accepted && r.Answer != Rejected {
			return ShadowRef{}, false
		}
	case OpUpdate:
		switch r.Answer {
		case "", Accepted, Rejected, Delta, Documents:
		default:
			return ShadowRef{}, false
		}
	default:
		return ShadowRef{}, false
	}
	return r, true
}

// String renders the ref back into its topic.
func (r ShadowRef) String() string { return ShadowTopic(r.Thing, r.Name, r.Op, r.Answer) }

// DefaultTelemetryTopic and DefaultC2DFilter are the seed SDK's default
// topics (AWS-010, NS-5); both are configurable.
func DefaultTelemetryTopic(thing string) string { return "device/" + thing + "/messages/events" }

// DefaultC2DFilter is the seed SDK's cloud-to-device filter.
func DefaultC2DFilter(thing string) string { return "device/" + thing + "/messages/devicebound/#" }

// TopicProblem checks a topic name a client publishes to against AWS IoT's
// limits; "" when it is fine.
func TopicProblem(topic string) string {
	if topic == "" {
		return "empty topic"
	}
	if len(topic) > MaxTopicBytes {
		return fmt.Sprintf("topic is %d bytes, more than %d", len(topic), MaxTopicBytes)
	}
	if strings.ContainsAny(topic, "+#") {
		return "wildcard in a topic name"
	}
	if n := slashes(topic); n > MaxTopicSlashes {
		return fmt.Sprintf("topic has %d forward slashes, more than %d", n, MaxTopicSlashes)
	}
	return ""
}

// FilterProblem checks a subscription filter; "" when it is fine.
func FilterProblem(filter string) string {
	if filter == "" {
		return "empty filter"
	}
	if len(filter) > MaxTopicBytes {
		return fmt.Sprintf("filter is %d bytes, more than %d", len(filter), MaxTopicBytes)
	}
	if n := slashes(filter); n > MaxTopicSlashes {
		return fmt.Sprintf("filter has %d forward slashes, more than %d", n, MaxTopicSlashes)
	}
	for i, l := range strings.Split(filter, "/") {
		if strings.Contains(l, "#") && (l != "#" || i != strings.Count(filter, "/")) {
			return "'#' must be the last level on its own"
		}
		if strings.Contains(l, "+") && l != "+" {
			return "'+' must fill a whole level"
		}
	}
	return ""
}

// slashes counts the forward slashes of a topic, leaving out those of
// the reserved `$aws/things/{thing}/` prefix (3), which AWS does not
// count against the limit.
func slashes(t string) int {
	n := strings.Count(t, "/")
	if strings.HasPrefix(t, "$aws/") {
		n -= min(n, 3)
	}
	return n
}

// FilterMatches reports whether an MQTT filter matches a topic name.
func FilterMatches(filter, topic string) bool {
	f := strings.Split(filter, "/")
	t := strings.Split(topic, "/")
	for i, l := range f {
		if l == "#" {
			return !(i == 0 && strings.HasPrefix(topic, "$")) // wildcards do not match $ topics at the first level
		}
		if i >= len(t) {
			return false
		}
		if l == "+" {
			if i == 0 && strings.HasPrefix(t[0], "$") {
				return false
			}
			continue
		}
		if l != t[i] {
			return false
		}
	}
	return len(f) == len(t)
}
