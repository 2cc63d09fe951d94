package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"

	"github.com/hilrun/hilrun/rig/dps"
	"github.com/hilrun/hilrun/rig/dpsproto"
	"github.com/hilrun/hilrun/rig/hub"
)

// dpsOptions are `hilrun hub`'s flags for the reference DPS that runs next
// to the hub.
type dpsOptions struct {
	addr       string
	restAddr   string
	host       string
	idScope    string
	retryAfter int
	enroll     []string
}

// ReadyDPS is the DPS part of the ready file.
type ReadyDPS struct {
	Host        string          `json:"host"`
	MQTTAddr    string          `json:"mqttAddr"`
	RESTAddr    string          `json:"restAddr,omitempty"`
	IDScope     string          `json:"idScope"`
	ServiceKey  string          `json:"serviceKey,omitempty"` // policy provisioningserviceowner (REST)
	Enrollments []ReadyEnrolled `json:"enrollments,omitempty"`
}

// ReadyEnrolled is one enrollment created with --dps-enroll.
type ReadyEnrolled struct {
	RegistrationID string `json:"registrationId,omitempty"`
	GroupID        string `json:"enrollmentGroupId,omitempty"`
	PrimaryKey     string `json:"primaryKey"` // a group's key: devices derive theirs (HMAC-SHA256 of the registration ID)
}

func addDPSFlags(f *pflag.FlagSet, o *dpsOptions) {
	f.StringVar(&o.addr, "dps-addr", "127.0.0.1:0", `reference DPS MQTT-over-TLS listen address (DPS: 8883; "off" disables)`)
	f.StringVar(&o.restAddr, "dps-rest-addr", "", "reference DPS service REST API (HTTPS) listen address (default: off)")
	f.StringVar(&o.host, "dps-host", dpsproto.DefaultHost, "DPS global device endpoint name (SNI, server certificate)")
	f.StringVar(&o.idScope, "dps-id-scope", dps.DefaultIDScope, "DPS ID scope")
	f.IntVar(&o.retryAfter, "dps-retry-after", 1, "retry-after (s) of the DPS's 202 answers")
	f.StringArrayVar(&o.enroll, "dps-enroll", nil, "create an enrollment: REGID (individual, symmetric key) or group:NAME (symmetric-key group); repeatable")
}

// startDPS starts the reference DPS for `hilrun hub`, prints how a device
// reaches it, and returns it (nil when disabled).
func startDPS(h *hub.Hub, o dpsOptions, stdout io.Writer) (*dps.Endpoint, *ReadyDPS, error) {
	if o.addr == "off" {
		return nil, nil, nil
	}
	ra := o.retryAfter
	if ra == 0 {
		ra = -1 // Config: negative means 0
	}
	d, err := dps.Start(dps.Config{Host: o.host, Addr: o.addr, RESTAddr: o.restAddr, IDScope: o.idScope, Hub: h, RetryAfter: ra})
	if err != nil {
		return nil, nil, err
	}
	info := &ReadyDPS{Host: d.Host(), MQTTAddr: d.Addr(), RESTAddr: d.RESTAddr(), IDScope: d.IDScope(), ServiceKey: d.ServiceKey()}
	for _, spec := range o.enroll {
		var en dps.Enrollment
		var err error
		if g, ok := strings.CutPrefix(spec, "group:"); ok {
			en, err = d.AddGroup(dps.Enrollment{GroupID: g, Attestation: dps.Attestation{Type: dps.AttestSymmetricKey}})
		} else {
			en, err = d.AddIndividual(dps.Enrollment{RegistrationID: spec, Attestation: dps.Attestation{Type: dps.AttestSymmetricKey}})
		}
		if err != nil {
			d.Close()
			return nil, nil, fmt.Errorf("--dps-enroll %s: %w", spec, err)
		}
		info.Enrollments = append(info.Enrollments, ReadyEnrolled{RegistrationID: en.RegistrationID, GroupID: en.GroupID, PrimaryKey: en.Attestation.PrimaryKey})
	}
	fmt.Fprintf(stdout, "reference DPS for %s, ID scope %s\n", d.Host(), d.IDScope())
	fmt.Fprintf(stdout, "  MQTT over TLS      %s  (SNI %s; same root as the hub; assigns devices to %s)\n", d.Addr(), d.Host(), h.Host())
	if a := d.RESTAddr(); a != "" {
		fmt.Fprintf(stdout, "  service REST       https://%s (/enrollments, /enrollmentGroups, /registrations; skn=%s)\n", a, dps.ServicePolicy)
	}
	for _, en := range info.Enrollments {
		if en.GroupID != "" {
			fmt.Fprintf(stdout, "  enrollment group   %s (device key = HMAC-SHA256 of the registration ID under the group key)\n", en.GroupID)
		} else {
			fmt.Fprintf(stdout, "  enrollment         %s\n", en.RegistrationID)
		}
	}
	fmt.Fprintf(stdout, "    a device connects with ClientId REGID, Username %s\n", dpsproto.FormatUsername(d.IDScope(), "REGID", nil))
	return d, info, nil
}
