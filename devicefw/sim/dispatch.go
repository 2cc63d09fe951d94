package sim

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"time"

	"github.com/hilrun/hilrun/certs"
	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/rig/iothub"
)

// dispatch runs one operation.
func (fw *Firmware) dispatch(ctx context.Context, op string, raw json.RawMessage) (any, *agentproto.Error) {
	if fw.aws != nil {
		if data, err, ok := fw.dispatchAWS(ctx, op, raw); ok { // AWS IoT image (aws.go)
			return data, err
		}
	}
	switch op {
	case agentproto.OpHello:
		return fw.hello(), nil
	case agentproto.OpEcho:
		var a agentproto.EchoArgs
		if err := decodeArgs(raw, &a); err != nil {
			return nil, err
		}
		return a, nil
	case agentproto.OpConfigure:
		var c agentproto.Config
		if err := decodeArgs(raw, &c); err != nil {
			return nil, err
		}
		if err := fw.configure(c); err != nil {
			return nil, err
		}
		fw.changed(changedNVS)
		return fw.client.status(), nil
	case agentproto.OpStatus:
		return fw.client.status(), nil
	case agentproto.OpTrustClear:
		fw.nvs.mu.Lock()
		fw.nvs.Trust = nil
		fw.nvs.mu.Unlock()
		fw.client.trustReset()
		fw.changed(changedNVS)
		return nil, nil
	case agentproto.OpTrustAdd:
		var c agentproto.Cert
		if err := decodeArgs(raw, &c); err != nil {
			return nil, err
		}
		cs, err := certs.ParseCertificatesPEM([]byte(c.PEM))
		if err != nil || len(cs) == 0 {
			return nil, agentproto.Errorf(agentproto.ErrBadArgs, "trust.add needs a PEM certificate: %v", err)
		}
		if drop, n := fw.trustAddDropped(); drop {
			return map[string]int{"roots": n}, nil // defect trust-single-root
		}
		fw.nvs.mu.Lock()
		fw.nvs.Trust = append(fw.nvs.Trust, cs...)
		n := len(fw.nvs.Trust)
		fw.nvs.mu.Unlock()
		fw.changed(changedNVS)
		return map[string]int{"roots": n}, nil
	case agentproto.OpTrustList:
		var a agentproto.TrustListArgs
		if err := decodeArgs(raw, &a); err != nil {
			return nil, err
		}
		return fw.trustList(a.SHA256), nil
	case agentproto.OpCertSet:
		var c agentproto.Cert
		if err := decodeArgs(raw, &c); err != nil {
			return nil, err
		}
		cert, err := tls.X509KeyPair([]byte(c.PEM), []byte(c.KeyPEM))
		if err != nil {
			return nil, agentproto.Errorf(agentproto.ErrBadArgs, "cert.set: %v", err)
		}
		if err := fw.setCert(c.Slot, &cert); err != nil {
			return nil, err
		}
		fw.changed(changedNVS)
		return nil, nil
	case agentproto.OpOpen:
		already, err := fw.client.open()
		if err != nil {
			return nil, err
		}
		st := fw.client.status()
		st.Already = already
		return st, nil
	case agentproto.OpClose:
		a := agentproto.CloseArgs{Graceful: true}
		if err := decodeArgs(raw, &a); err != nil {
			return nil, err
		}
		fw.client.close(a.Graceful)
		return fw.client.status(), nil
	case agentproto.OpTelemetry:
		var a agentproto.TelemetryArgs
		if err := decodeArgs(raw, &a); err != nil {
			return nil, err
		}
		return fw.client.sendTelemetry(ctx, a)
	case agentproto.OpTwinGet:
		return fw.client.twinGetOp(ctx)
	case agentproto.OpTwinReport:
		var a agentproto.ReportArgs
		if err := decodeArgs(raw, &a); err != nil {
			return nil, err
		}
		if a.Spread != nil {
			if a.Spread.Members < 0 || a.Spread.Members > 1000 || a.Spread.Len < 0 || a.Spread.Len > 512 {
				return nil, agentproto.Errorf(agentproto.ErrBadArgs, "spread of %d members of %d bytes outside 0..1000 × 0..512", a.Spread.Members, a.Spread.Len)
			}
			if a.Patch == nil {
				a.Patch = map[string]any{}
			}
			for k, v := range a.Spread.Build() {
				a.Patch[k] = v
			}
		}
		return fw.client.report(ctx, a.Patch)
	case agentproto.OpMethodDefine:
		var m agentproto.MethodBehaviour
		if err := decodeArgs(raw, &m); err != nil {
			return nil, err
		}
		if m.Name == "" {
			return nil, agentproto.Errorf(agentproto.ErrBadArgs, "method.define needs a name (or \"*\")")
		}
		if m.Payload != "" && !json.Valid([]byte(m.Payload)) {
			return nil, agentproto.Errorf(agentproto.ErrBadArgs, "method payload must be JSON text")
		}
		fw.nvs.mu.Lock()
		if fw.nvs.Methods == nil {
			fw.nvs.Methods = map[string]agentproto.MethodBehaviour{}
		}
		fw.nvs.Methods[m.Name] = m
		fw.nvs.mu.Unlock()
		fw.changed(changedNVS)
		return nil, nil
	case agentproto.OpMethodClear:
		fw.nvs.mu.Lock()
		fw.nvs.Methods = nil
		fw.nvs.PnP = nil // pnp.define's commands are method definitions too
		fw.nvs.mu.Unlock()
		fw.changed(changedNVS)
		return nil, nil
	case agentproto.OpRotate:
		var a agentproto.RotateArgs
		if err := decodeArgs(raw, &a); err != nil {
			return nil, err
		}
		return nil, fw.client.rotate(a)
	case agentproto.OpClockGet:
		return agentproto.Clock{UnixMS: fw.rtc.Now().UnixMilli(), Synced: fw.rtc.Synced()}, nil
	case agentproto.OpClockSet:
		var c agentproto.Clock
		if err := decodeArgs(raw, &c); err != nil {
			return nil, err
		}
		fw.rtc.Set(time.UnixMilli(c.UnixMS), true)
		fw.changed(changedRTC)
		return agentproto.Clock{UnixMS: fw.rtc.Now().UnixMilli(), Synced: true}, nil
	case agentproto.OpReset:
		return nil, nil
	case agentproto.OpOTAStatus, agentproto.OpSleep, agentproto.OpFileUpload, agentproto.OpAppBurst:
		return fw.dispatchOTA(ctx, op, raw) // ota.go, fileupload.go
	case agentproto.OpHeartbeatStart, agentproto.OpTracingSet:
		return fw.dispatchApp(ctx, op, raw) // heartbeat.go
	case agentproto.OpDPSRegister:
		var a agentproto.DPSRegisterArgs
		if err := decodeArgs(raw, &a); err != nil {
			return nil, err
		}
		return fw.dpsRegister(ctx, a)
	case agentproto.OpPnPDefine:
		var d agentproto.PnPDefinition
		if err := decodeArgs(raw, &d); err != nil {
			return nil, err
		}
		if err := fw.pnpDefine(d); err != nil {
			return nil, err
		}
		fw.changed(changedNVS)
		return nil, nil
	}
	return nil, agentproto.Errorf(agentproto.ErrUnknownOp, "operation %q is not implemented by %s", op, FirmwareName)
}

// configure merges c into the stored configuration.
func (fw *Firmware) configure(c agentproto.Config) *agentproto.Error {
	if err := ValidateDefects(c.Defects); err != nil {
		return agentproto.Errorf(agentproto.ErrBadArgs, "%v", err)
	}
	if c.Identity != nil {
		id := iothub.Identity{DeviceID: c.Identity.DeviceID, ModuleID: c.Identity.ModuleID}
		if err := id.Validate(); err != nil {
			return agentproto.Errorf(agentproto.ErrBadArgs, "identity: %v", err)
		}
	}
	if c.Auth != nil {
		switch c.Auth.Type {
		case "sas":
			if _, err := base64.StdEncoding.DecodeString(c.Auth.Key); err != nil || c.Auth.Key == "" {
				return agentproto.Errorf(agentproto.ErrBadArgs, "auth.key must be a base64 SAS key")
			}
		case "x509":
		default:
			return agentproto.Errorf(agentproto.ErrBadArgs, "auth.type %q: want sas or x509", c.Auth.Type)
		}
		if c.Auth.RenewFraction < 0 || c.Auth.RenewFraction >= 1 {
			return agentproto.Errorf(agentproto.ErrBadArgs, "auth.renewFraction must be in [0,1)")
		}
	}
	if c.Hub != nil && c.Hub.Transport != "" && c.Hub.Transport != "mqtts" && c.Hub.Transport != "wss" {
		return agentproto.Errorf(agentproto.ErrBadArgs, "hub.transport %q: want mqtts or wss", c.Hub.Transport)
	}
	fw.nvs.mu.Lock()
	cur := &fw.nvs.Config
	if c.Hub != nil {
		cur.Hub = c.Hub
	}
	if c.Identity != nil {
		cur.Identity = c.Identity
	}
	if c.Auth != nil {
		cur.Auth = c.Auth
	}
	if c.MQTT != nil {
		cur.MQTT = c.MQTT
	}
	if c.Retry != nil {
		cur.Retry = c.Retry
	}
	if c.ModelID != "" {
		cur.ModelID = c.ModelID
	}
	if c.WiFi != nil {
		cur.WiFi = c.WiFi
	}
	if c.SNTP != nil {
		cur.SNTP = c.SNTP
	}
	if c.Twin != nil {
		cur.Twin = c.Twin
	}
	if c.Defects != nil {
		fw.nvs.Defects = append([]string(nil), c.Defects...)
	}
	if c.Hosts != nil {
		cur.Hosts = c.Hosts
	}
	fw.nvs.mu.Unlock()
	if c.Defects != nil {
		fw.client.mu.Lock()
		fw.defects = defectSet{}
		for _, d := range append(append([]string(nil), fw.opts.Defects...), c.Defects...) {
			fw.defects[d] = true
		}
		fw.client.mu.Unlock()
	}
	return nil
}
