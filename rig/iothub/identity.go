package iothub

import (
	"strconv"
	"strings"
)

// Identity names a device, or a module on a device, as registered in the hub.
// IDs are case-sensitive (MOD-008) and are used verbatim on the wire
// (CONN-005, CONN-024).
type Identity struct {
	DeviceID string
	ModuleID string // "" for a device identity
}

// ClientID returns the MQTT ClientId the identity connects with: the device
// ID, or "{deviceId}/{moduleId}" for a module (CONN-005, MOD-001).
func (id Identity) ClientID() string {
	if id.ModuleID == "" {
		return id.DeviceID
	}
	return id.DeviceID + "/" + id.ModuleID
}

// String returns the same text as ClientID.
func (id Identity) String() string { return id.ClientID() }

// IsModule reports whether the identity is a module identity.
func (id Identity) IsModule() bool { return id.ModuleID != "" }

// Validate checks the device ID and, when set, the module ID with ValidateID.
func (id Identity) Validate() error {
	if err := ValidateID(id.DeviceID); err != nil {
		return err
	}
	if id.ModuleID != "" {
		if err := ValidateID(id.ModuleID); err != nil {
			return err
		}
	}
	return nil
}

// ParseClientID splits an MQTT ClientId into an Identity. A ClientId holds
// either one ID (device) or two IDs joined by a single '/' (module, MOD-001);
// each part must pass ValidateID.
func ParseClientID(s string) (Identity, error) {
	const op = "parse client id"
	dev, mod, isModule := strings.Cut(s, "/")
	if isModule && strings.Contains(mod, "/") {
		return Identity{}, newError(op, s, "MOD-001", "more than one '/'; expected {deviceId} or {deviceId}/{moduleId}")
	}
	if rule, why := checkID(dev); why != "" {
		return Identity{}, newError(op, s, rule, "device id "+why)
	}
	if isModule {
		if rule, why := checkID(mod); why != "" {
			return Identity{}, newError(op, s, rule, "module id "+why)
		}
	}
	return Identity{DeviceID: dev, ModuleID: mod}, nil
}

// ValidateID checks one device or module ID: 1 to MaxIDLength characters
// (MOD-008), each an ASCII letter or digit or one of
// - . + % _ # * ? ! ( ) , = @ $ ' (CONN-024).
func ValidateID(s string) error {
	if rule, why := checkID(s); why != "" {
		return newError("validate id", s, rule, "id "+why)
	}
	return nil
}

// checkID returns ("", "") for a valid ID, or the requirement ID and the
// reason it is invalid.
func checkID(s string) (rule, why string) {
	if s == "" {
		return "CONN-024", "is empty"
	}
	if len(s) > MaxIDLength {
		return "MOD-008", "is " + strconv.Itoa(len(s)) + " characters long, more than " + strconv.Itoa(MaxIDLength)
	}
	for i := 0; i < len(s); i++ {
		if !isIDChar(s[i]) {
			return "CONN-024", "contains " + describeByte(s[i]) + " at offset " + strconv.Itoa(i) + ", outside the allowed character set"
		}
	}
	return "", ""
}

// isIDChar reports whether c may appear in a device or module ID (CONN-024).
func isIDChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-.+%_#*?!(),=@$'", c) >= 0
}
