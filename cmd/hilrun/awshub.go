package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/hilrun/hilrun/certs"
	"github.com/hilrun/hilrun/rig/awsiot"
	"github.com/hilrun/hilrun/rig/awsproto"
)

// AWSReadyInfo is what `hilrun hub --cloud aws --ready-file` writes once
// the endpoint listens. The service key and the things' private keys are
// secrets: they are in files next to it (mode 0600), never logged.
type AWSReadyInfo struct {
	Cloud     string          `json:"cloud"`
	Host      string          `json:"host"`
	MQTTAddr  string          `json:"mqttAddr"`
	HTTPSAddr string          `json:"httpsAddr,omitempty"`
	CABundle  string          `json:"caBundle"`       // the endpoint's root (stands in for Amazon Root CA 1)
	KeyFile   string          `json:"serviceKeyFile"` // bearer token of the REST API
	Things    []AWSReadyThing `json:"things"`
	Version   string          `json:"version"`
	PID       int             `json:"pid"`
}

// AWSReadyThing is one registered thing with its certificate files.
type AWSReadyThing struct {
	Name          string `json:"thingName"`
	CertificateID string `json:"certificateId"`
	CertFile      string `json:"certFile"`
	KeyFile       string `json:"keyFile"`
}

// runAWSHub runs the reference AWS IoT Core endpoint standalone.
func runAWSHub(ctx context.Context, cmd *cobra.Command, o *hubOptions, stdout, stderr io.Writer) error {
	host := o.host
	if !cmd.Flags().Changed("host") {
		host = awsproto.DefaultEndpoint
	}
	httpsAddr := o.httpsAddr
	if !cmd.Flags().Changed("https-addr") {
		httpsAddr = ":8443"
	}
	dir := o.pkiDir
	if dir == "" {
		d, err := os.MkdirTemp("", "hilrun-aws-")
		if err != nil {
			return err
		}
		dir = d
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelInfo
	}
	ep, err := awsiot.Start(awsiot.Config{Host: host, ExtraNames: []string{"localhost"}, MQTTAddr: o.mqttAddr, HTTPSAddr: httpsAddr,
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))})
	if err != nil {
		return err
	}
	defer ep.Close()
	info := AWSReadyInfo{Cloud: "aws", Host: host, MQTTAddr: ep.MQTTAddr(), HTTPSAddr: ep.HTTPSAddr(), Version: awsiot.Version, PID: os.Getpid(),
		CABundle: filepath.Join(dir, "root.pem"), KeyFile: filepath.Join(dir, "service.key")}
	if err := os.WriteFile(info.CABundle, ep.PKI().Root.CertPEM(), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(info.KeyFile, []byte(ep.ServiceKey()+"\n"), 0o600); err != nil {
		return err
	}
	if len(o.things) > 0 {
		ca, err := certs.NewRoot("hilrun AWS thing CA", certs.ECDSAP256)
		if err != nil {
			return err
		}
		ep.Registry().AddCA(ca.Cert)
		for _, name := range o.things {
			if _, err := ep.Registry().AddThing(awsiot.Thing{Name: name}); err != nil {
				return &exitError{2, err.Error()}
			}
			leaf, err := ca.IssueClient(certs.LeafOptions{CommonName: name})
			if err != nil {
				return err
			}
			c, err := ep.Registry().AddCertificate(leaf.Cert, name)
			if err != nil {
				return err
			}
			key, err := leaf.KeyPEM()
			if err != nil {
				return err
			}
			t := AWSReadyThing{Name: name, CertificateID: c.ID, CertFile: filepath.Join(dir, name+".crt"), KeyFile: filepath.Join(dir, name+".key")}
			if err := os.WriteFile(t.CertFile, leaf.ChainPEM(), 0o644); err != nil {
				return err
			}
			if err := os.WriteFile(t.KeyFile, key, 0o600); err != nil {
				return err
			}
			info.Things = append(info.Things, t)
		}
	}
	fmt.Fprintf(stdout, "reference AWS IoT endpoint %s: MQTT %s, REST %s; trust %s\n", host, info.MQTTAddr, info.HTTPSAddr, info.CABundle)
	if o.readyFile != "" {
		b, _ := json.MarshalIndent(info, "", "  ")
		if err := os.WriteFile(o.readyFile, b, 0o600); err != nil {
			return err
		}
	}
	if awsHubReady != nil {
		awsHubReady(ep, info)
	}
	<-ctx.Done()
	return nil
}

// awsHubReady, when set (tests), is called once the endpoint listens.
var awsHubReady func(*awsiot.Endpoint, AWSReadyInfo)
