package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/hilrun/hilrun/devicefw/sim"
)

// newSimFirmwareCmd is the reference firmware built into hilrun: the
// virtual board (rig/board.Sim) runs this executable with
// `sim-firmware --uart /dev/pts/N --state DIR …`, so one binary is the
// whole product. Hidden: users never call it directly.
func newSimFirmwareCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "sim-firmware",
		Short:              "Run the Go reference firmware on a UART (used by the virtual board)",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			os.Exit(sim.Main(args))
			return nil
		},
	}
}
