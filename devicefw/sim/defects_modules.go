package sim

import (
	"net/url"
	"strings"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/hilrun/hilrun/rig/iothub"
)

// Defect switches added for the MOD specs (module identities). Each has a
// row in DEFECTS.md (section "Added for the MOD specs"); each acts only when
// the configured identity is a module, at the point in the client where the
// module rule is kept.
const (
	DefModuleUsernameDeviceOnly = "module-username-device-only"
	DefModuleSASDeviceResource  = "module-sas-device-resource"
	DefModuleTelemetryDevice    = "module-telemetry-device-topic"
	DefModuleTwinUnsubscribed   = "module-twin-unsubscribed"
	DefModuleSecondConnection   = "module-second-connection"
	DefModuleIDLowercase        = "module-id-lowercase"
	DefModuleIDTruncated        = "module-id-truncated"
	DefModuleMethodsUnsub       = "module-methods-unsubscribed"
	DefModuleC2DSubscribe       = "module-c2d-subscribe"
)

// moduleIDBuffer is the module ID buffer of module-id-truncated (a fixed
// char[65] in C firmware).
const moduleIDBuffer = 64

// moduleDefects lists them; see Defects.
var moduleDefects = []Defect{
	{DefModuleUsernameDeviceOnly, "MOD-002", "a module's CONNECT Username leaves out the module segment: {host}/{deviceId}/?api-version=… (the ClientId is still {deviceId}/{moduleId})"},
	{DefModuleSASDeviceResource, "MOD-003", "a module's SAS token is scoped to its parent device: sr is {host}/devices/{deviceId} (still signed with the module key)"},
	{DefModuleTelemetryDevice, "MOD-004", "a module publishes telemetry on its device's topic devices/{deviceId}/messages/events/ instead of devices/{deviceId}/modules/{moduleId}/messages/events/"},
	{DefModuleTwinUnsubscribed, "MOD-005", "a module identity does not subscribe to $iothub/twin/res/# and $iothub/twin/PATCH/properties/desired/# (twins taken as a device-only feature), yet sends its twin GET and reported PATCHes"},
	{DefModuleSecondConnection, "MOD-007", "a module identity opens a second MQTT connection with the same ClientId and credentials right after its first connection is up (a per-feature client); once per client.open"},
	{DefModuleIDLowercase, "MOD-008", "the module ID is lower-cased wherever the client writes it (ClientId, Username, SAS sr, topics)"},
	{DefModuleIDTruncated, "MOD-008", "the module ID is cut to 64 characters wherever the client writes it (a fixed-size ID buffer)"},
	{DefModuleMethodsUnsub, "MOD-009", "a module identity does not subscribe to $iothub/methods/POST/# (direct methods taken as a device-only feature)"},
	{DefModuleC2DSubscribe, "MOD-010", "a module identity also subscribes to devices/{deviceId}/{moduleId}/messages/devicebound/# as the nanoFramework client does (the hub closes the connection: modules have no C2D)"},
}

// moduleState is what the module defects keep between calls.
type moduleState struct {
	secondFor *session // the client.open that already opened its second connection
}

// moduleIDOf returns the function snapshot applies to the configured
// module ID (MOD-008). It is called before snapshot takes the NVS lock
// (the lock order is client, then NVS).
func (dc *deviceClient) moduleIDOf() func(string) string {
	lower, trunc := dc.on(DefModuleIDLowercase), dc.on(DefModuleIDTruncated)
	return func(mod string) string {
		if lower {
			mod = strings.ToLower(mod)
		}
		if trunc && len(mod) > moduleIDBuffer {
			mod = mod[:moduleIDBuffer]
		}
		return mod
	}
}

// moduleUsername returns the CONNECT Username of a module (MOD-002).
func (dc *deviceClient) moduleUsername(cc connConfig, u string, extra url.Values) string {
	if cc.id.IsModule() && dc.on(DefModuleUsernameDeviceOnly) {
		return iothub.FormatUsername(cc.host, iothub.Identity{DeviceID: cc.id.DeviceID}, iothub.DefaultAPIVersion, extra)
	}
	return u
}

// moduleResource returns the SAS sr a module signs (MOD-003).
func (dc *deviceClient) moduleResource(cc connConfig, sr string) string {
	if cc.id.IsModule() && dc.on(DefModuleSASDeviceResource) {
		return iothub.DeviceResourceURI(cc.host, iothub.Identity{DeviceID: cc.id.DeviceID})
	}
	return sr
}

// telemetryIdentity is the identity whose telemetry topic a message goes
// to (MOD-004).
func (dc *deviceClient) telemetryIdentity(id iothub.Identity) iothub.Identity {
	if id.IsModule() && dc.on(DefModuleTelemetryDevice) {
		return iothub.Identity{DeviceID: id.DeviceID}
	}
	return id
}

// moduleFilters applies the module subscription defects (MOD-005, MOD-009,
// MOD-010) to the SUBSCRIBE of a module connection.
func (dc *deviceClient) moduleFilters(cc connConfig, filters map[string]byte) {
	if !cc.id.IsModule() {
		return
	}
	if dc.on(DefModuleTwinUnsubscribed) {
		delete(filters, iothub.TwinResponseFilter)
		delete(filters, iothub.TwinDesiredFilter)
	}
	if dc.on(DefModuleMethodsUnsub) {
		delete(filters, iothub.MethodsFilter)
	}
	if dc.on(DefModuleC2DSubscribe) {
		filters["devices/"+cc.id.DeviceID+"/"+cc.id.ModuleID+"/messages/devicebound/#"] = 1
	}
}

// moduleSecondConnection opens, under module-second-connection, a second
// connection with the module's ClientId once per client.open (MOD-007). It
// lives until the hub closes it (the next connection of the main loop
// takes over) or the client.open ends.
func (dc *deviceClient) moduleSecondConnection(s *session, cc connConfig) {
	if !cc.id.IsModule() || !dc.on(DefModuleSecondConnection) {
		return
	}
	dc.mu.Lock()
	if dc.mods.secondFor == s {
		dc.mu.Unlock()
		return
	}
	dc.mods.secondFor = s
	dc.mu.Unlock()
	// Its own session: no shared in-flight store with the main connection.
	side := &session{ctx: s.ctx, cancel: func() {}, kick: make(chan string, 1), done: make(chan struct{}), store: paho.NewOrderedMemoryStore()}
	go func() {
		c, _, _, _, err := dc.connect(side, cc)
		if err != nil {
			return
		}
		dc.fw.logf("I", "second connection for %s is up", cc.id.ClientID())
		select {
		case <-c.lost:
		case <-s.ctx.Done():
		}
		dc.drop(c, false)
	}()
}
