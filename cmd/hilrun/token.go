package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/hilrun/hilrun/rig/iothub"
)

type tokenOptions struct {
	connStr    string
	readyFile  string
	device     string
	ttl        time.Duration
	apiVersion string
	jsonOut    bool
	now        func() time.Time // tests
}

// tokenResult is what `hilrun token` prints (also as --json).
type tokenResult struct {
	Kind             string `json:"kind"` // device, module or service
	Host             string `json:"host"`
	ClientID         string `json:"clientId,omitempty"`
	Username         string `json:"username,omitempty"`
	Password         string `json:"password,omitempty"`      // the device SAS token (MQTT Password)
	Authorization    string `json:"authorization,omitempty"` // the service SAS token (REST Authorization header)
	Expires          string `json:"expires"`
	ConnectionString string `json:"connectionString"`
}

func newTokenCmd() *cobra.Command {
	o := tokenOptions{now: time.Now}
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Make a SAS token, MQTT Username and ClientId from a connection string (for `hilrun hub` and real IoT Hubs)",
		Long: `token turns a connection string into what a client sends: for a device or
module connection string the MQTT ClientId, Username and Password (a SAS
token scoped to {host}/devices/{id}); for a service connection string
(HostName=…;SharedAccessKeyName=iothubowner;SharedAccessKey=…) the SAS token
for the REST API's Authorization header.

The connection string comes from --connection-string, or from the ready file
of a running ` + "`hilrun hub --ready-file FILE`" + ` (--device picks a device;
without it, the service connection string).

The output holds credentials valid until the expiry: treat it as a secret.`,
		Example: `  hilrun hub --mqtt-addr 127.0.0.1:8883 --https-addr 127.0.0.1:8443 --device dev1 --ready-file /tmp/hub.json &
  hilrun token --ready-file /tmp/hub.json --device dev1
  hilrun token --ready-file /tmp/hub.json                 # service token for the REST API
  hilrun token --connection-string "HostName=h;DeviceId=dev1;SharedAccessKey=..." --ttl 24h --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := makeToken(o)
			if err != nil {
				return err
			}
			return printToken(cmd.OutOrStdout(), res, o.jsonOut)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.connStr, "connection-string", "", "device, module or service connection string")
	f.StringVar(&o.readyFile, "ready-file", "", "ready file of `hilrun hub --ready-file` (instead of --connection-string)")
	f.StringVar(&o.device, "device", "", "with --ready-file: the device (or dev/module) to make a token for; default the service")
	f.DurationVar(&o.ttl, "ttl", time.Hour, "token lifetime")
	f.StringVar(&o.apiVersion, "api-version", iothub.DefaultAPIVersion, "api-version in the MQTT Username")
	f.BoolVar(&o.jsonOut, "json", false, "print JSON")
	return cmd
}

func makeToken(o tokenOptions) (tokenResult, error) {
	cs := o.connStr
	switch {
	case cs != "" && o.readyFile != "":
		return tokenResult{}, &exitError{2, "give --connection-string or --ready-file, not both"}
	case o.readyFile != "":
		b, err := os.ReadFile(o.readyFile)
		if err != nil {
			return tokenResult{}, &exitError{2, err.Error()}
		}
		var info ReadyInfo
		if err := json.Unmarshal(b, &info); err != nil {
			return tokenResult{}, &exitError{2, fmt.Sprintf("%s: not a hilrun hub ready file: %v", o.readyFile, err)}
		}
		cs = info.ServiceConnectionString
		if o.device != "" {
			cs = ""
			var ids []string
			for _, d := range info.Devices {
				ids = append(ids, d.ID)
				if d.ID == o.device {
					cs = d.ConnectionString
				}
			}
			if cs == "" {
				return tokenResult{}, &exitError{2, fmt.Sprintf("device %q is not in %s (devices: %v; register it with hilrun hub --device %s)", o.device, o.readyFile, ids, o.device)}
			}
		}
	case cs == "":
		return tokenResult{}, &exitError{2, "token needs --connection-string or --ready-file (see hilrun token --help)"}
	}
	if o.ttl <= 0 {
		return tokenResult{}, &exitError{2, "--ttl must be positive"}
	}
	c, err := iothub.ParseConnectionString(cs)
	if err != nil {
		return tokenResult{}, &exitError{2, "connection string: " + err.Error()}
	}
	if c.X509 {
		return tokenResult{}, &exitError{2, "an x509=true connection string authenticates with a certificate, not a SAS token"}
	}
	exp := o.now().Add(o.ttl)
	res := tokenResult{Host: c.HostName, Expires: exp.UTC().Format(time.RFC3339), ConnectionString: cs}
	if c.DeviceID == "" {
		if c.SharedAccessKeyName == "" {
			return tokenResult{}, &exitError{2, "connection string has neither DeviceId nor SharedAccessKeyName"}
		}
		res.Kind = "service"
		res.Authorization, err = iothub.NewSASToken(c.HostName, c.SharedAccessKey, exp, c.SharedAccessKeyName)
		return res, err
	}
	id := c.Identity()
	res.Kind = "device"
	if id.IsModule() {
		res.Kind = "module"
	}
	res.ClientID = id.ClientID()
	res.Username = iothub.FormatUsername(c.HostName, id, o.apiVersion, nil)
	res.Password, err = iothub.NewSASToken(iothub.DeviceResourceURI(c.HostName, id), c.SharedAccessKey, exp, c.SharedAccessKeyName)
	return res, err
}

func printToken(w io.Writer, r tokenResult, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	fmt.Fprintf(w, "%s identity on %s (valid until %s; treat these as secrets)\n", r.Kind, r.Host, r.Expires)
	if r.Kind == "service" {
		fmt.Fprintf(w, "  Authorization:      %s\n", r.Authorization)
		fmt.Fprintf(w, "  REST example:       curl --cacert root.pem -H \"Authorization: $TOKEN\" https://%s/twins/DEVICE?api-version=2021-04-12\n", r.Host)
	} else {
		fmt.Fprintf(w, "  MQTT ClientId:      %s\n", r.ClientID)
		fmt.Fprintf(w, "  MQTT Username:      %s\n", r.Username)
		fmt.Fprintf(w, "  MQTT Password:      %s\n", r.Password)
	}
	fmt.Fprintf(w, "  connection string:  %s\n", r.ConnectionString)
	return nil
}
