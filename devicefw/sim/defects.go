package sim

import (
	"fmt"
	"sort"
	"strings"
)

// Defect is a switch that makes the reference firmware break one documented
// rule in exactly one way, so that a conformance spec can prove it catches
// that failure. DEFECTS.md lists them for humans; a test keeps the two in
// step.
type Defect struct {
	Name        string
	Requirement string
	Does        string // the exact misbehaviour
}

// The defect switches. Names are stable: specs and CI refer to them.
const (
	DefUsernameNoHost      = "username-no-host"
	DefClientIDLowercase   = "clientid-lowercase"
	DefTokenExpired        = "token-expired"
	DefTokenWrongKey       = "token-wrong-key"
	DefTelemetryWrongTopic = "telemetry-wrong-topic"
	DefBagNotEncoded       = "propbag-not-encoded"
	DefTelemetryQoS0       = "telemetry-qos0"
	DefTelemetryQoS2       = "telemetry-qos2"
	DefTelemetryRetain     = "telemetry-retain"
	DefSizeCountsTopic     = "telemetry-size-counts-topic"
	DefNoC2DPuback         = "c2d-no-puback"
	DefNoC2DSubscribe      = "c2d-no-subscribe"
	DefC2DNoDedup          = "c2d-no-dedup"
	DefTwinGetBeforeSub    = "twin-get-before-subscribe"
	DefTwinAnyRID          = "twin-any-rid"
	DefStaleDesired        = "twin-stale-desired-applied"
	DefNoTwinResync        = "twin-no-resync"
	DefReportedDollarKey   = "twin-reported-dollar-key"
	DefMethodRIDUpper      = "method-rid-hex-upper"
	DefMethodUnknownSilent = "method-unknown-silent"
	DefMethodStatusText    = "method-status-text"
	DefSubscribeWildcard   = "subscribe-plus-wildcard"
	DefNoBackoff           = "reconnect-no-backoff"
	DefNoResubscribe       = "no-resubscribe"
	DefRenewLate           = "token-renew-after-expiry"
	DefRetryAfterAuth      = "retry-after-not-authorized"
	DefNoDisconnect        = "close-without-disconnect"
	DefWillWrongTopic      = "will-wrong-topic"
)

// Defects is the catalog.
// Defects is the catalog: the first switches plus the per-area lists that
// the conformance specs added (defects_*.go), kept apart so that work on
// different areas does not collide.
var Defects = concatDefects(coreDefects, connTelDefects, c2dMethodDefects, twinDefects, reconNetDefects, reconSessionDefects, clockDefects, certDefects, tlsDefects, twinStatusDefects, tokenDefects, moduleDefects, telPropDefects, shouldSessionDefects, otaDefects, dpsPnPDefects, dnsDefects, telAppDefects, reconOpDefects, retryDefaultsDefects, boundsDefects, boundsConnDefects, dpsBoundsDefects, otaBoundsDefects, boundsBModDefects, boundsMoreDefects, boundsGapsDefects, boundsSingleDefects, clockBoundsDefects, boundsGaps2Defects)

func concatDefects(lists ...[]Defect) []Defect {
	var out []Defect
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

var coreDefects = []Defect{
	{DefUsernameNoHost, "CONN-006", "CONNECT Username omits the hub host: \"{deviceId}/?api-version=...\""},
	{DefClientIDLowercase, "CONN-005", "CONNECT ClientId is the device ID lower-cased"},
	{DefTokenExpired, "CONN-010", "SAS tokens carry an se one hour before the RTC time (at least 1)"},
	{DefTokenWrongKey, "CONN-009", "SAS tokens are signed with a key that is not the device key"},
	{DefTelemetryWrongTopic, "TEL-001", "telemetry goes to devices/{id}/messages/event/ (singular)"},
	{DefBagNotEncoded, "TEL-002", "property bag names and values are written raw, without percent-encoding"},
	{DefTelemetryQoS0, "TEL-003", "telemetry is published at QoS 0 even when QoS 1 is asked for, and reported as acknowledged"},
	{DefTelemetryQoS2, "CONN-020", "telemetry is published at QoS 2 (the hub closes the connection)"},
	{DefTelemetryRetain, "TEL-006", "telemetry is published with RETAIN set"},
	{DefSizeCountsTopic, "TEL-005", "the 256 KB limit is checked against the whole PUBLISH (topic with its property bag, plus payload) instead of the documented count, so a message at the limit is refused on the device"},
	{DefNoC2DPuback, "C2D-003", "C2D deliveries are reported to the host but never acknowledged (no PUBACK)"},
	{DefNoC2DSubscribe, "C2D-001", "the device never subscribes to its devicebound filter"},
	{DefC2DNoDedup, "C2D-004", "a redelivered C2D message (same $.mid) is treated as new: duplicate is never flagged"},
	{DefTwinGetBeforeSub, "TWIN-001", "the twin GET is published before subscribing to $iothub/twin/res/#"},
	{DefTwinAnyRID, "TWIN-003", "twin responses are matched to the oldest pending request, whatever their $rid"},
	{DefStaleDesired, "TWIN-010", "desired patches (and GET results) are applied even when their $version is not newer than the held one"},
	{DefNoTwinResync, "TWIN-010", "no twin GET after a reconnect: only the first connection after client.open fetches the twin, so desired changes made while offline are missed"},
	{DefReportedDollarKey, "TWIN-016", "reported patches carry a \"$lastUpdated\" member"},
	{DefMethodRIDUpper, "METH-003", "method responses re-print the $rid as upper-case hex (\"0a\" becomes \"A\"); a non-hex $rid gets no response (as the nanoFramework client does)"},
	{DefMethodUnknownSilent, "METH-010", "unknown methods get no response"},
	{DefMethodStatusText, "METH-004", "method responses carry the status as text (\"OK\") in the topic"},
	{DefSubscribeWildcard, "CONN-018", "methods are subscribed with $iothub/methods/POST/+ instead of /#"},
	{DefNoBackoff, "RECON-001", "reconnect attempts follow each other after a fixed 50 ms, without exponential backoff or jitter; bounded: after 40 failed attempts the client stops"},
	{DefNoResubscribe, "RECON-008", "after a reconnect without a session the device does not subscribe again"},
	{DefRenewLate, "RECON-006", "the SAS token is renewed only one second after it has expired (the hub drops the session at se first)"},
	{DefRetryAfterAuth, "RECON-004", "after CONNACK not-authorized (or bad credentials, a refused identity or a failed server certificate check) the device keeps retrying with normal backoff instead of stopping"},
	{DefNoDisconnect, "CONN-022", "client.close and credential reconnects drop TCP without sending DISCONNECT"},
	{DefWillWrongTopic, "CONN-021", "the Will targets devices/{id}/messages/will instead of the telemetry topic"},
}

// LookupDefect returns a defect by name.
func LookupDefect(name string) (Defect, bool) {
	for _, d := range Defects {
		if d.Name == name {
			return d, true
		}
	}
	return Defect{}, false
}

// ValidateDefects checks names and returns a helpful error for unknown ones.
func ValidateDefects(names []string) error {
	var bad []string
	for _, n := range names {
		if _, ok := LookupDefect(n); !ok {
			bad = append(bad, n)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	known := make([]string, 0, len(Defects))
	for _, d := range Defects {
		known = append(known, d.Name)
	}
	sort.Strings(known)
	return fmt.Errorf("unknown defect switch(es) %s; known: %s (see devicefw/sim/DEFECTS.md)",
		strings.Join(bad, ", "), strings.Join(known, ", "))
}

type defectSet map[string]bool

func (s defectSet) on(name string) bool { return s[name] }

func (s defectSet) list() []string {
	out := make([]string, 0, len(s))
	for k, v := range s {
		if v {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}
