// Command hilrun is the hardware-in-the-loop conformance suite for IoT
// device clients: it runs the reference IoT Hub (`hilrun hub`), writes the
// test PKI (`hilrun certs`), and — as later work lands — drives boards
// through the conformance specs.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "hilrun:", err)
		os.Exit(exitCode(err))
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "hilrun",
		Short: "Hardware-in-the-loop conformance suite for Azure IoT Hub device clients",
		Long: `hilrun proves that device firmware talks to Azure IoT Hub as documented.

It plays the cloud with an embedded reference hub that records every packet,
and checks what crosses the wire against a numbered requirement catalog.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newHubCmd(), newCertsCmd(), newVersionCmd(), newSimFirmwareCmd(), newRunCmd(), newSelftestCmd(), newConsoleCmd(), newReportCmd(), newBoardsCmd(), newBenchCmd(), newBenchLoadCmd(), newTokenCmd(), newDurationsCmd())
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the hilrun and reference hub versions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "hilrun %s (reference hub %s)\n", version, hubVersion())
			return nil
		},
	}
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"
