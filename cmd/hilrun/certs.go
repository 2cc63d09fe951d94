package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/hilrun/hilrun/certs"
)

func newCertsCmd() *cobra.Command {
	var out, host, keyType string
	var selfSigned []string
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Write the hub's test PKI (and optional self-signed device certificates) to a directory",
		Example: `  hilrun certs --out ./pki --host myhub.local
  hilrun certs --out ./pki --self-signed dev1 --self-signed gw/mod1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			kt, err := certs.ParseKeyType(keyType)
			if err != nil {
				return err
			}
			pki, created, err := certs.LoadOrCreateHubPKI(out, host, kt)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if created {
				fmt.Fprintf(w, "wrote hub PKI for %s to %s\n", host, out)
			} else {
				fmt.Fprintf(w, "hub PKI in %s already exists; kept its root\n", out)
			}
			fmt.Fprintf(w, "  trust anchor for devices: %s\n", filepath.Join(out, certs.RootCertFile))
			fmt.Fprintf(w, "  server certificate covers: %v %v\n", pki.Server.Cert.DNSNames, pki.Server.Cert.IPAddresses)
			for _, id := range selfSigned {
				leaf, err := certs.SelfSigned(certs.LeafOptions{CommonName: id})
				if err != nil {
					return err
				}
				base := filepath.Join(out, "device-"+sanitize(id))
				key, err := leaf.KeyPEM()
				if err != nil {
					return err
				}
				if err := os.WriteFile(base+".pem", leaf.CertPEM(), 0o644); err != nil {
					return err
				}
				if err := os.WriteFile(base+".key", key, 0o600); err != nil {
					return err
				}
				fmt.Fprintf(w, "  self-signed %s: %s.pem, thumbprint %s\n", id, base, certs.Thumbprint(leaf.Cert))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "pki", "directory to write")
	cmd.Flags().StringVar(&host, "host", "localhost", "hub FQDN the server certificate must cover")
	cmd.Flags().StringVar(&keyType, "key-type", "ecdsa", "ecdsa (P-256) or rsa (2048)")
	cmd.Flags().StringArrayVar(&selfSigned, "self-signed", nil, "also write a self-signed client certificate for this device ID (repeatable)")
	return cmd
}

func sanitize(id string) string {
	b := []byte(id)
	for i, c := range b {
		if c == '/' || c == '\\' {
			b[i] = '_'
		}
	}
	return string(b)
}
