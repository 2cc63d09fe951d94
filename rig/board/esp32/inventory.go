package esp32

import (
	"fmt"
	"io"

	"github.com/hilrun/hilrun/rig/inventory"
)

// Options are the host-side dependencies FromInventory passes on (all
// optional; tests inject fakes).
type Options struct {
	Log      io.Writer
	Lister   Lister
	OpenPort PortOpener
	Look     LookPath
}

// FromInventory builds the board for an inventory entry of profile esp32,
// generic, or serial with a USB serial number (a serial board bound by
// serial number gets this package's re-enumeration handling; with only a
// port, board.NewSerial is the simpler choice).
func FromInventory(ib inventory.Board, o Options) (*Board, error) {
	cfg := Config{ID: ib.ID, Profile: ib.Profile, Serial: ib.Serial, Port: ib.Port, Baud: ib.Baud, Chip: ib.Chip,
		Image: ib.Image, ResetCommand: ib.Reset.Command, Log: o.Log, Lister: o.Lister, OpenPort: o.OpenPort, Look: o.Look}
	if ib.Parts != nil {
		cfg.Parts = &Parts{Bootloader: ib.Parts.Bootloader, PartitionTable: ib.Parts.PartitionTable, App: ib.Parts.App}
	}
	fl := ib.Flasher
	switch ib.Profile {
	case inventory.ProfileESP32:
		switch fl.Tool {
		case "", inventory.ToolEsptool:
			cfg.Flasher = &Esptool{Command: fl.Command, Baud: fl.Baud, Args: fl.Args, Look: o.Look}
		case inventory.ToolNanoff:
			cfg.Flasher = &Nanoff{Command: fl.Command, Target: fl.Target, Baud: fl.Baud, Args: fl.Args, Look: o.Look}
		case inventory.ToolCommand:
			cfg.Flasher = &Command{Template: fl.Command, Args: fl.Args, Baud: fl.Baud, Look: o.Look}
		default:
			return nil, fmt.Errorf("%s: flasher.tool %q unknown", ib.Where(), fl.Tool)
		}
	case inventory.ProfileGeneric:
		if len(fl.Command) > 0 {
			cfg.Flasher = &Command{Template: fl.Command, Args: fl.Args, Baud: fl.Baud, Look: o.Look}
		}
	case inventory.ProfileSerial:
	default:
		return nil, fmt.Errorf("%s: profile %q is not a USB serial board", ib.Where(), ib.Profile)
	}
	return New(cfg)
}
