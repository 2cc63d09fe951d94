package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/rig/iothub"
	"github.com/hilrun/hilrun/rig/iothub/twin"
)

// IoT Plug and Play mode of the reference firmware (pnp.define): the model
// ID in the Username (PNP-001/002), writable-property acknowledgements
// (PNP-003/004) and commands as direct methods (PNP-005), following the
// conventions of rig/iothub/pnp.go.

func (fw *Firmware) pnpDefine(d agentproto.PnPDefinition) *agentproto.Error {
	if d.ModelID != "" && !iothub.ValidDTMI(d.ModelID) {
		return agentproto.Errorf(agentproto.ErrBadArgs, "modelId %q is not a DTMI (PNP-002)", d.ModelID)
	}
	for _, w := range d.Writable {
		if w.Name == "" {
			return agentproto.Errorf(agentproto.ErrBadArgs, "writable property without a name")
		}
	}
	for _, c := range d.Commands {
		if c.Name == "" || strings.Contains(c.Name, iothub.CommandSeparator) || strings.Contains(c.Component, iothub.CommandSeparator) {
			return agentproto.Errorf(agentproto.ErrBadArgs, "command needs a name; neither it nor its component may hold %q", iothub.CommandSeparator)
		}
		if c.Payload != "" && !json.Valid([]byte(c.Payload)) {
			return agentproto.Errorf(agentproto.ErrBadArgs, "command %s: payload must be JSON text", c.Name)
		}
	}
	n := fw.nvs
	n.mu.Lock()
	defer n.mu.Unlock()
	def := d
	n.PnP = &def
	if n.Methods == nil {
		n.Methods = map[string]agentproto.MethodBehaviour{}
	}
	for _, c := range d.Commands {
		st := c.Status
		if st == 0 {
			st = 200
		}
		name := iothub.CommandMethodName(c.Component, c.Name)
		n.Methods[name] = agentproto.MethodBehaviour{Name: name, Status: st, Payload: c.Payload}
	}
	return nil
}

// pnpModelID is the model ID a connection announces (PNP-001): pnp.define's,
// else configure's.
func (dc *deviceClient) pnpModelID(s *session, configured string) string {
	n := dc.fw.nvs
	n.mu.Lock()
	m := configured
	if n.PnP != nil && n.PnP.ModelID != "" {
		m = n.PnP.ModelID
	}
	n.mu.Unlock()
	if m == "" {
		return ""
	}
	if dc.on(DefPnPModelIDFirstOnly) && s != nil && s.connects > 0 {
		return "" // defect: the reconnect's options are built without it
	}
	if dc.on(DefPnPModelIDNoVersion) {
		m, _, _ = strings.Cut(m, ";")
	}
	return dc.boundsModelID(m)
}

// pnpAcks acknowledges the writable properties a desired patch carried
// (PNP-003): each becomes {"value", "ac": 200, "av": $version, "ad"}; a
// component's go into the component object marked "__t": "c". Runs in its
// own goroutine (never on the MQTT callback).
func (dc *deviceClient) pnpAcks(patch twin.Section, version int64) {
	n := dc.fw.nvs
	n.mu.Lock()
	var writable []agentproto.PnPProperty
	if n.PnP != nil {
		writable = append(writable, n.PnP.Writable...)
	}
	n.mu.Unlock()
	if len(writable) == 0 {
		return
	}
	dc.mu.Lock()
	av := version
	if dc.fw.defects.on(DefPnPAVNotDesiredVersion) {
		av = dc.reportedVer // defect: the reported version instead of the desired one
	}
	if dc.fw.defects.on(DefPnPAV8Bit) {
		av = int64(uint8(av)) // defect pnp-av-8bit
	}
	bare := dc.fw.defects.on(DefPnPAckBareValue)
	dc.mu.Unlock()
	report := map[string]any{}
	for _, w := range writable {
		src := map[string]any(patch)
		if w.Component != "" {
			c, ok := patch[w.Component].(map[string]any)
			if !ok {
				continue
			}
			src = c
		}
		v, ok := src[w.Name]
		if !ok {
			continue
		}
		var ack any = iothub.Ack{Value: v, Code: iothub.AckCompleted, Version: av, Description: "applied"}.Map()
		if f, isNum := pnpNumber(v); isNum && w.Max != nil && f > *w.Max {
			if dc.on(DefPnPRefusedNotAcked) {
				continue // defect pnp-refused-not-acked
			}
			ack = iothub.Ack{Value: v, Code: iothub.AckBadRequest, Version: av, Description: fmt.Sprintf("above the maximum %v", *w.Max)}.Map()
		}
		if bare {
			ack = v
		}
		if w.Component == "" {
			report[w.Name] = ack
			continue
		}
		comp, _ := report[w.Component].(map[string]any)
		if comp == nil {
			comp = map[string]any{iothub.ComponentMarker: iothub.ComponentMarkerValue}
			report[w.Component] = comp
		}
		comp[w.Name] = ack
	}
	if len(report) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := dc.report(ctx, report); err != nil {
		dc.fw.logf("W", "pnp: acknowledgement of desired $version %d not sent: %v", version, err)
	}
}

// pnpNumber reads a desired value as a number (PNP-003's max).
func pnpNumber(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}
