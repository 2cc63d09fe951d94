package iothub

import (
	"regexp"
	"strings"
)

// IoT Plug and Play conventions (PNP-001..006). The seeds give only the API
// (000 L112-167); the wire shapes are the test assumptions of the catalog
// ([NS-1], [NS-3], [NS-4]).

// DTMIPattern is the simplified DTDL model-ID rule of PNP-002.
var DTMIPattern = regexp.MustCompile(`^dtmi:[A-Za-z][A-Za-z0-9_]*(:[A-Za-z][A-Za-z0-9_]*)*;[1-9][0-9]*$`)

// ValidDTMI reports whether s is a model ID under PNP-002.
func ValidDTMI(s string) bool { return len(s) <= 4096 && DTMIPattern.MatchString(s) }

// ComponentMarker is the member that marks a component object in reported
// properties ("__t": "c", [NS-4] PnpConvention).
const (
	ComponentMarker      = "__t"
	ComponentMarkerValue = "c"
)

// CommandSeparator joins component and command in a method name
// ("thermostat1*getMaxMinReport", PNP-005).
const CommandSeparator = "*"

// CommandMethodName is the direct-method name of a DTDL command (PNP-005):
// the command name for the default component, "component*command" otherwise.
func CommandMethodName(component, command string) string {
	if component == "" {
		return command
	}
	return component + CommandSeparator + command
}

// SplitCommand splits a method name into component and command.
func SplitCommand(method string) (component, command string) {
	if c, cmd, ok := strings.Cut(method, CommandSeparator); ok {
		return c, cmd
	}
	return "", method
}

// Writable-property acknowledgement status codes (PNP-003 [NS-3]).
const (
	AckCompleted  = 200
	AckInProgress = 202
	AckBadRequest = 400
	AckNotFound   = 404
	AckInternal   = 500
)

// AckCodes are the codes PNP-003 assumes.
var AckCodes = []int{AckCompleted, AckInProgress, AckBadRequest, AckNotFound, AckInternal}

// Ack is a writable-property acknowledgement (PNP-003, PNP-004): the value,
// status code ac, acknowledged desired version av, optional description ad.
type Ack struct {
	Value       any    `json:"value"`
	Code        int    `json:"ac"`
	Version     int64  `json:"av"`
	Description string `json:"ad,omitempty"`
}

// Map is the Ack as a JSON object member.
func (a Ack) Map() map[string]any {
	m := map[string]any{"value": a.Value, "ac": a.Code, "av": a.Version}
	if a.Description != "" {
		m["ad"] = a.Description
	}
	return m
}
