package sim

import (
	"strings"

	"github.com/hilrun/hilrun/rig/iothub"
)

// More defect switches for the boundary specs (issue 15), for the specs of
// suites/bounds_more.go: bugs at a length past a small buffer and at a
// repetition of the same operation. Each has a row in DEFECTS.md (section
// "Added for the boundary specs").
const (
	DefMessageIDCut63  = "message-id-cut-63"
	DefMethodRIDByName = "method-rid-by-name"
	DefX509TwinOnly    = "x509-subscribe-twin-only"
	DefNestedNullDrop  = "reported-nested-null-dropped"
	DefTwinGet429Final = "twin-get-429-final"
	DefC2DBagFirst16   = "c2d-bag-first-16"
	DefTwinGetVer16    = "twin-get-version-uint16"
	DefTwinRIDZeroNone = "twin-rid-wrap-zero-omitted"
)

// boundsMoreDefects lists them; see Defects.
var boundsMoreDefects = []Defect{
	{DefMessageIDCut63, "TEL-009", "the message ID is copied into a 64-byte buffer (63 characters and the terminator), so an ID longer than 63 characters, allowed up to 128, goes out cut"},
	{DefMethodRIDByName, "METH-009", "the $rid of a pending method request is kept per method name, so a second request of the same method while the first is in progress overwrites it and both answers go out on the second $rid"},
	{DefX509TwinOnly, "C2D-001", "an X.509 connection subscribes to the twin filters only: the methods and C2D subscriptions are made in the SAS connect path, so an X.509 device gets no C2D messages and no method calls"},
	{DefNestedNullDrop, "TWIN-007", "null members below the top level of a reported patch are dropped (the client copies nested objects into its document model, which has no null), so a nested member is never deleted; a top-level null still goes out"},
	{DefTwinGet429Final, "TWIN-005", "a 429 answer to a twin GET is final (the client's throttling retry lives in its reported-patch path): the GET fails and is not sent again; a throttled reported patch is still retried"},
	{DefC2DBagFirst16, "C2D-007", "the C2D property bag is parsed into a fixed table of 16 entries (system properties included); the properties after the 16th are dropped without a word"},
	{DefTwinGetVer16, "TWIN-004", "the $version values of a twin GET answer are read into 16 bits (the full-document parser is not the patch parser), so a twin whose versions passed 65535 is taken with the wrapped version"},
	{DefTwinRIDZeroNone, "TWIN-002", "the twin request counter is 8 bits and 0 means \"no request id\": the 256th request (and every 256th after it) goes out without its ?$rid= part, and its answer never comes"},
}

// ridOmitted is twin-rid-wrap-zero-omitted's topic for the request with
// sequence number seq and request id rid.
func ridOmitted(topic string, seq uint64, rid string) string {
	if uint8(seq) != 0 {
		return topic
	}
	return strings.TrimSuffix(topic, "?$rid="+rid) // defect: rid 0 taken as none
}

// bagFirst16 is c2d-bag-first-16's reading of a delivery's bag.
func bagFirst16(bag iothub.PropertyBag) map[string]string {
	if len(bag) > 16 {
		bag = bag[:16] // defect: a fixed table of 16 entries
	}
	return bag.Map()
}

// get429Final is twin-get-429-final's verdict on the answer status of a
// twin GET: true when the GET must not be retried.
func (dc *deviceClient) get429Final(status int) bool {
	return status == 429 && dc.on(DefTwinGet429Final)
}

// nestedNullsDropped is reported-nested-null-dropped's copy of a patch:
// top-level members as they are, nested objects without their nulls.
func nestedNullsDropped(patch map[string]any) map[string]any {
	out := make(map[string]any, len(patch))
	for k, v := range patch {
		if m, ok := v.(map[string]any); ok {
			v = dropNulls(m) // defect: no null below the top level
		}
		out[k] = v
	}
	return out
}

// x509TwinOnly drops the methods and C2D filters of an X.509 connection
// (x509-subscribe-twin-only).
func x509TwinOnly(cc connConfig, filters map[string]byte) {
	if cc.authType != "x509" {
		return
	}
	delete(filters, iothub.MethodsFilter) // defect: subscribed in the SAS path only
	delete(filters, iothub.C2DFilter(cc.id.DeviceID))
}

// messageIDCut63 is message-id-cut-63's copy of a message ID.
func messageIDCut63(id string) string {
	if len(id) > 63 {
		return id[:63]
	}
	return id
}

// methodRIDByName records rid as the pending request of method name
// (method-rid-by-name); answer returns the rid the answer goes out on:
// the one recorded last for name.
func (dc *deviceClient) methodRIDByName(name, rid string) (answer func() string) {
	dc.mu.Lock()
	if dc.methodByName == nil {
		dc.methodByName = map[string]string{}
	}
	dc.methodByName[name] = rid // defect: one slot per method name
	dc.mu.Unlock()
	return func() string {
		dc.mu.Lock()
		defer dc.mu.Unlock()
		return dc.methodByName[name]
	}
}
