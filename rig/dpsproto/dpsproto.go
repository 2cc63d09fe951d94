// Package dpsproto holds the device-facing wire conventions of the Azure IoT
// Hub Device Provisioning Service (DPS) over MQTT, shared by the reference
// endpoint (rig/dps) and the reference firmware (devicefw/sim) so the two
// cannot drift: the CONNECT Username, the SAS token scope and policy name,
// the group-enrollment key derivation, the request and response topics and
// the JSON bodies.
//
// None of this is in the seed documents (catalog section 11, GAP): the
// shapes follow [NS-4] (nanoFramework ProvisioningDeviceClient.cs) and the
// research notes (device-sdk-behaviours.md §0, "DPS"), and are test
// assumptions. Each function names the requirement it serves.
package dpsproto

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Constants of the DPS MQTT surface.
const (
	// APIVersion is the api-version in the Username (DPS-002, Appendix A [NS-4]).
	APIVersion = "2019-03-31"
	// DefaultHost is the global device endpoint (DPS-001, 000 L365).
	DefaultHost = "global.azure-devices-provisioning.net"
	// Port is the MQTT-over-TLS port (DPS-001, 000 L32).
	Port = 8883
	// KeyName is the skn of a registration SAS token (DPS-003 [NS-4]).
	KeyName = "registration"
	// ResponseFilter is the filter a device subscribes before registering (DPS-004).
	ResponseFilter = "$dps/registrations/res/#"
	// RegisterPrefix and StatusPrefix start the two request topics (DPS-004, DPS-005).
	RegisterPrefix = "$dps/registrations/PUT/iotdps-register/?"
	StatusPrefix   = "$dps/registrations/GET/iotdps-get-operationstatus/?"
	// ResponsePrefix starts every answer topic.
	ResponsePrefix = "$dps/registrations/res/"
	// MaxRequestBytes bounds a request body. DPS documents no figure in the
	// seeds; 4 KB of custom payload (000 L483 warns of modem limits) plus
	// the envelope is what the endpoint takes, and a larger body is
	// refused with 400 (test assumption).
	MaxRequestBytes = 8 * 1024
	// MaxIDLength bounds a registration ID (the IoT Hub device ID limit, 128).
	MaxIDLength = 128
)

// Registration statuses in an operation answer (DPS-006).
const (
	StatusAssigning  = "assigning"
	StatusAssigned   = "assigned"
	StatusFailed     = "failed"
	StatusDisabled   = "disabled"
	StatusUnassigned = "unassigned"
)

// Final reports whether a status ends the polling (DPS-005, DPS-006).
func Final(status string) bool {
	return status == StatusAssigned || status == StatusFailed || status == StatusDisabled
}

// FormatUsername is the DPS CONNECT Username (DPS-002):
// "{idScope}/registrations/{registrationId}/api-version=2019-03-31",
// followed by extra parameters ("&k=v", sorted), as [NS-4] appends
// DeviceClientType.
func FormatUsername(idScope, registrationID string, extra url.Values) string {
	s := idScope + "/registrations/" + registrationID + "/api-version=" + APIVersion
	if enc := extra.Encode(); enc != "" {
		s += "&" + enc
	}
	return s
}

// Username is a parsed DPS CONNECT Username.
type Username struct {
	IDScope        string
	RegistrationID string
	APIVersion     string
	Extra          url.Values // parameters other than api-version
}

// ParseUsername parses a DPS Username (DPS-002). The form is fixed:
// scope, the literal "registrations", the registration ID, and a last
// segment of '&'-separated parameters that starts with api-version=.
func ParseUsername(s string) (Username, error) {
	parts := strings.SplitN(s, "/", 4)
	if len(parts) != 4 {
		return Username{}, fmt.Errorf("DPS-002: Username %q is not {idScope}/registrations/{registrationId}/api-version=%s", s, APIVersion)
	}
	if parts[1] != "registrations" {
		return Username{}, fmt.Errorf("DPS-002: second Username segment is %q, not \"registrations\"", parts[1])
	}
	if err := CheckIDScope(parts[0]); err != nil {
		return Username{}, err
	}
	if err := CheckRegistrationID(parts[2]); err != nil {
		return Username{}, err
	}
	u := Username{IDScope: parts[0], RegistrationID: parts[2], Extra: url.Values{}}
	last := parts[3]
	if !strings.HasPrefix(last, "api-version=") {
		return Username{}, fmt.Errorf("DPS-002: last Username segment %q does not start with api-version= (the IoT Hub form \"/?api-version=\" is not the DPS one)", last)
	}
	for i, piece := range strings.Split(last, "&") {
		k, v, _ := strings.Cut(piece, "=")
		kd, err1 := url.QueryUnescape(k)
		vd, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil {
			return Username{}, fmt.Errorf("DPS-002: Username parameter %q is not validly percent-encoded", piece)
		}
		if i == 0 {
			u.APIVersion = vd
			continue
		}
		if kd != "" {
			u.Extra.Add(kd, vd)
		}
	}
	return u, nil
}

// CheckIDScope refuses an empty or implausible ID scope (DPS-002).
func CheckIDScope(s string) error {
	if s == "" || len(s) > 64 {
		return errors.New("DPS-002: ID scope is empty or longer than 64 characters")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return fmt.Errorf("DPS-002: ID scope %q holds %q (letters and digits only)", s, c)
		}
	}
	return nil
}

// CheckRegistrationID refuses registration IDs DPS would not take: empty,
// longer than 128, or outside lower-case letters, digits and "-._:"
// (registration IDs are case-insensitive on DPS; upper case is accepted).
func CheckRegistrationID(s string) error {
	if s == "" || len(s) > MaxIDLength {
		return fmt.Errorf("DPS-002: registration ID is empty or longer than %d characters", MaxIDLength)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '.' || c == '_' || c == ':') {
			return fmt.Errorf("DPS-002: registration ID %q holds %q", s, c)
		}
	}
	return nil
}

// ResourceURI is what a registration SAS token is scoped to (DPS-003):
// "{idScope}/registrations/{registrationId}".
func ResourceURI(idScope, registrationID string) string {
	return idScope + "/registrations/" + registrationID
}

// DeriveKey is the device key of a group enrollment (DPS-003, GAP): the
// Base64 HMAC-SHA256 of the registration ID under the Base64-decoded group
// key.
func DeriveKey(groupKeyBase64, registrationID string) (string, error) {
	k, err := base64.StdEncoding.DecodeString(groupKeyBase64)
	if err != nil || len(k) == 0 {
		return "", errors.New("dpsproto: group key is not non-empty standard Base64")
	}
	m := hmac.New(sha256.New, k)
	m.Write([]byte(registrationID))
	return base64.StdEncoding.EncodeToString(m.Sum(nil)), nil
}

// RegisterTopic is the registration request topic (DPS-004).
func RegisterTopic(rid string) string { return RegisterPrefix + "$rid=" + url.QueryEscape(rid) }

// StatusTopic is the operation-status poll topic (DPS-005).
func StatusTopic(rid, operationID string) string {
	return StatusPrefix + "$rid=" + url.QueryEscape(rid) + "&operationId=" + url.QueryEscape(operationID)
}

// ResponseTopic is an answer topic: "$dps/registrations/res/{status}/?$rid={rid}",
// with "&retry-after={s}" when retryAfter ≥ 0 (DPS-005).
func ResponseTopic(status int, rid string, retryAfter int) string {
	s := ResponsePrefix + strconv.Itoa(status) + "/?$rid=" + url.QueryEscape(rid)
	if retryAfter >= 0 {
		s += "&retry-after=" + strconv.Itoa(retryAfter)
	}
	return s
}

// Request kinds.
const (
	KindRegister = "register"
	KindStatus   = "status"
)

// Request is a parsed device request topic.
type Request struct {
	Kind        string // KindRegister or KindStatus
	RID         string
	OperationID string // status polls only
}

// ParseRequestTopic parses a device PUBLISH topic (DPS-004, DPS-005).
func ParseRequestTopic(topic string) (Request, error) {
	var r Request
	var q string
	switch {
	case strings.HasPrefix(topic, RegisterPrefix):
		r.Kind, q = KindRegister, strings.TrimPrefix(topic, RegisterPrefix)
	case strings.HasPrefix(topic, StatusPrefix):
		r.Kind, q = KindStatus, strings.TrimPrefix(topic, StatusPrefix)
	default:
		return r, fmt.Errorf("DPS-004: topic %q is neither %s… nor %s…", topic, RegisterPrefix, StatusPrefix)
	}
	vals, err := url.ParseQuery(q)
	if err != nil {
		return r, fmt.Errorf("DPS-004: topic query %q: %v", q, err)
	}
	r.RID = vals.Get("$rid")
	if r.RID == "" {
		return r, fmt.Errorf("DPS-004: topic %q has no $rid", topic)
	}
	if r.Kind == KindStatus {
		r.OperationID = vals.Get("operationId")
		if r.OperationID == "" {
			return r, fmt.Errorf("DPS-005: status poll %q has no operationId", topic)
		}
	}
	return r, nil
}

// Response is a parsed answer topic.
type Response struct {
	Status        int
	RID           string
	RetryAfter    int // seconds; valid when HasRetryAfter
	HasRetryAfter bool
}

// ParseResponseTopic parses an answer topic (DPS-005). retry-after is read
// from its own parameter only.
func ParseResponseTopic(topic string) (Response, error) {
	rest, ok := strings.CutPrefix(topic, ResponsePrefix)
	if !ok {
		return Response{}, fmt.Errorf("topic %q is not a DPS answer", topic)
	}
	code, q, ok := strings.Cut(rest, "/")
	if !ok {
		return Response{}, fmt.Errorf("answer topic %q has no query", topic)
	}
	st, err := strconv.Atoi(code)
	if err != nil || st < 100 || st > 999 {
		return Response{}, fmt.Errorf("answer topic %q: status %q is not a number", topic, code)
	}
	vals, err := url.ParseQuery(strings.TrimPrefix(q, "?"))
	if err != nil {
		return Response{}, fmt.Errorf("answer topic %q: %v", topic, err)
	}
	r := Response{Status: st, RID: vals.Get("$rid")}
	if ra := vals.Get("retry-after"); ra != "" {
		n, err := strconv.Atoi(ra)
		if err != nil || n < 0 {
			return Response{}, fmt.Errorf("answer topic %q: retry-after %q is not a number of seconds", topic, ra)
		}
		r.RetryAfter, r.HasRetryAfter = n, true
	}
	return r, nil
}

// RegisterBody is the registration request body (DPS-004, DPS-008, PNP-006).
type RegisterBody struct {
	RegistrationID string          `json:"registrationId"`
	Payload        json.RawMessage `json:"payload,omitempty"`
}

// ParseRegisterBody checks a registration request body (DPS-004): a JSON
// object of at most MaxRequestBytes with a string registrationId and, when
// present, a payload that is a JSON value (DPS-008).
func ParseRegisterBody(b []byte) (RegisterBody, error) {
	var out RegisterBody
	if len(b) > MaxRequestBytes {
		return out, fmt.Errorf("DPS-004: request body of %d bytes is above %d", len(b), MaxRequestBytes)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil || raw == nil {
		return out, errors.New("DPS-004: request body is not a JSON object")
	}
	rid, ok := raw["registrationId"]
	if !ok {
		return out, errors.New("DPS-004: request body has no registrationId")
	}
	if err := json.Unmarshal(rid, &out.RegistrationID); err != nil {
		return out, errors.New("DPS-004: registrationId is not a string")
	}
	if p, ok := raw["payload"]; ok && string(p) != "null" {
		out.Payload = p
	}
	return out, nil
}

// RegistrationState is the result part of an operation answer (DPS-006).
type RegistrationState struct {
	RegistrationID     string          `json:"registrationId"`
	CreatedDateTimeUTC string          `json:"createdDateTimeUtc,omitempty"`
	AssignedHub        string          `json:"assignedHub,omitempty"`
	DeviceID           string          `json:"deviceId,omitempty"`
	Status             string          `json:"status"`
	SubStatus          string          `json:"substatus,omitempty"`
	ErrorCode          int             `json:"errorCode,omitempty"`
	ErrorMessage       string          `json:"errorMessage,omitempty"`
	LastUpdatedUTC     string          `json:"lastUpdatedDateTimeUtc,omitempty"`
	ETag               string          `json:"etag,omitempty"`
	Payload            json.RawMessage `json:"payload,omitempty"`
}

// Operation is the body of a 200 or 202 answer (DPS-005, DPS-006).
type Operation struct {
	OperationID       string             `json:"operationId"`
	Status            string             `json:"status"`
	RegistrationState *RegistrationState `json:"registrationState,omitempty"`
}

// ErrorBody is the body of an error answer (4xx, 5xx).
type ErrorBody struct {
	ErrorCode    int    `json:"errorCode"`
	TrackingID   string `json:"trackingId"`
	Message      string `json:"message"`
	TimestampUTC string `json:"timestampUtc,omitempty"`
}

// PnPPayload is the registration payload announcing a model ID (PNP-006 [NS-4]).
func PnPPayload(modelID string) json.RawMessage {
	b, _ := json.Marshal(map[string]string{"modelId": modelID})
	return b
}
