package agentproto

import "encoding/json"

// Operations added for the DPS and IoT Plug and Play capabilities
// (PROTOCOL.md §4.3). A firmware that does not declare `dps` / `pnp` in its
// hello may answer them `unknown_op`; it stays a valid protocol-1 firmware
// and the specs of those areas are not applicable on it.
const (
	OpDPSRegister = "dps.register" // DPSRegisterArgs → DPSResult (after the final answer or the time bound)
	OpPnPDefine   = "pnp.define"   // PnPDefinition: components, writable properties, commands (stored like method.define)
)

// DPSRegisterArgs asks the device to provision itself through DPS.
type DPSRegisterArgs struct {
	Host    string `json:"host"`              // global device endpoint (SNI); default global.azure-devices-provisioning.net
	Port    int    `json:"port,omitempty"`    // default 8883
	Address string `json:"address,omitempty"` // dial this host:port instead (the rig's listener)
	IDScope string `json:"idScope"`
	// RegistrationID of the device (ClientId, Username, token scope).
	RegistrationID string `json:"registrationId"`
	// Auth: "sas" with the individual key, or with the group key and
	// Group true (the device derives its key); "x509" with the
	// certificate of cert.set.
	Auth  *AuthConfig `json:"auth"`
	Group bool        `json:"group,omitempty"`
	// Payload is custom registration data (JSON, DPS-008); with a
	// configured modelId the device adds "modelId" (PNP-006).
	Payload json.RawMessage `json:"payload,omitempty"`
	// TimeoutMS bounds the whole attempt (DPS-006); default 60000.
	TimeoutMS int `json:"timeoutMs,omitempty"`
	// Apply: on "assigned", store the assigned hub host and device ID
	// (and a group's derived key) as the hub configuration, keeping
	// hub.address, so that client.open connects there.
	Apply bool `json:"apply,omitempty"`
}

// DPSResult is the outcome of dps.register.
type DPSResult struct {
	Status       string          `json:"status"` // assigned, failed, disabled, or "error" (a non-2xx answer, refused CONNECT, timeout)
	AssignedHub  string          `json:"assignedHub,omitempty"`
	DeviceID     string          `json:"deviceId,omitempty"`
	OperationID  string          `json:"operationId,omitempty"`
	ErrorCode    int             `json:"errorCode,omitempty"`
	ErrorMessage string          `json:"errorMessage,omitempty"`
	Payload      json.RawMessage `json:"payload,omitempty"` // custom data returned with the assignment (DPS-008)
	Polls        int             `json:"polls"`
}

// PnPDefinition declares the Plug and Play parts of the device's model
// and the model ID: writable properties the
// device acknowledges (PNP-003/004) and commands it serves (PNP-005).
type PnPDefinition struct {
	// ModelID is the DTMI the device announces (PNP-001); it takes the
	// place of configure's modelId and is forgotten with the definition
	// (method.clear), so a later session without PnP announces none.
	ModelID  string        `json:"modelId,omitempty"`
	Writable []PnPProperty `json:"writable,omitempty"`
	Commands []PnPCommand  `json:"commands,omitempty"`
}

// PnPProperty is a writable property, in a component or the default one.
type PnPProperty struct {
	Component string `json:"component,omitempty"`
	Name      string `json:"name"`
	// Max, when set, is the largest numeric value the device accepts: a
	// desired value above it is refused and acknowledged with ac 400
	// (PNP-003; boards declaring pnp-refuse).
	Max *float64 `json:"max,omitempty"`
}

// PnPCommand is a command: served as the direct method
// "component*name" (or "name"), answering Status with the JSON Payload.
type PnPCommand struct {
	Component string `json:"component,omitempty"`
	Name      string `json:"name"`
	Status    int    `json:"status,omitempty"` // default 200
	Payload   string `json:"payload,omitempty"`
}
