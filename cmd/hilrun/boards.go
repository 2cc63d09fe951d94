package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/hilrun/hilrun/certs"
	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/rig/board"
	"github.com/hilrun/hilrun/rig/board/esp32"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/inventory"
)

// boardsLister lists serial ports for `hilrun boards`; tests replace it.
var boardsLister esp32.Lister = esp32.SystemLister

func newBoardsCmd() *cobra.Command {
	var invPath string
	cmd := &cobra.Command{
		Use:   "boards",
		Short: "List attached boards and print ready-to-paste inventory entries",
		Long: `Boards lists the USB serial ports whose bridge hilrun knows (CP210x,
CH340, CH9102, FTDI, Espressif USB-Serial-JTAG) with VID:PID, bridge, USB
serial number and port, and prints a hilrun.yaml entry for each (bound by USB
serial number, so the entry survives re-plugging). Boards already in the
inventory are marked with their id. Format: docs/inventory.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBoards(cmd.OutOrStdout(), invPath)
		},
	}
	cmd.Flags().StringVar(&invPath, "inventory", "", "inventory to compare with (default ./hilrun.yaml if present)")
	return cmd
}

func runBoards(w io.Writer, invPath string) error {
	ds, err := esp32.Devices(boardsLister)
	if err != nil {
		return &exitError{1, fmt.Sprintf("%v (on Linux hilrun reads /sys/class/tty)", err)}
	}
	if len(ds) == 0 {
		fmt.Fprintln(w, "no boards attached: no USB serial port with a known bridge (CP210x, CH340, CH9102, FTDI, Espressif USB-Serial-JTAG).")
		fmt.Fprintln(w, "Plug a board in (and check `dmesg` for its tty), or bind an unlisted bridge by port in hilrun.yaml (docs/inventory.md).")
		return nil
	}
	known := map[string]string{} // USB serial number or port → inventory id
	if invPath == "" {
		invPath = inventory.Default()
	}
	if invPath != "" {
		if inv, err := inventory.Load(invPath); err == nil {
			for _, b := range inv.Boards {
				if b.Serial != "" {
					known["serial:"+b.Serial] = b.ID
				}
				if b.Port != "" {
					known["port:"+b.Port] = b.ID
				}
			}
		} else {
			fmt.Fprintf(w, "(inventory not read: %v)\n", err)
		}
	}
	fmt.Fprintf(w, "%d board(s) attached:\n\n", len(ds))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PORT\tVID:PID\tBRIDGE\tUSB SERIAL\tINVENTORY")
	var fresh []esp32.Device
	for _, d := range ds {
		id := known["serial:"+d.Serial]
		if id == "" || d.Serial == "" {
			id = known["port:"+d.Port]
		}
		serial := d.Serial
		if serial == "" {
			serial = "(none)"
		}
		inv := id
		if inv == "" {
			inv = "-"
			fresh = append(fresh, d)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.Port, d.VIDPID(), d.Bridge.Name, serial, inv)
	}
	tw.Flush()
	if len(fresh) == 0 {
		fmt.Fprintln(w, "\nEvery attached board is in the inventory.")
		return nil
	}
	fmt.Fprintf(w, "\nInventory entries (paste under boards: in hilrun.yaml; edit chip and image):\n\n")
	for i, d := range fresh {
		fmt.Fprint(w, esp32.InventoryEntry(d, fmt.Sprintf("board-%d", i+1)))
	}
	return nil
}

// realBoard is a board hilrun run built from --board (an inventory id, or
// esp32/generic with --port) that it must flash, check and close itself.
type realBoard struct {
	b     board.Board
	flash bool        // flash before the run
	image board.Image // what to flash (empty Path: the configured image)
}

// builtinProfiles are the --board values that are not inventory ids.
var builtinProfiles = []string{"sim", "serial", "esp32", "generic"}

// resolveBoard fills opts for --board. It returns a realBoard for boards
// hilrun run must prepare (nil for the virtual board and --board serial,
// which runRun handles as before), or an exitError.
func resolveBoard(cmd *cobra.Command, o *runOptions, opts *fixtures.Options) (*realBoard, bool, error) {
	rb, err := resolveBoard1(cmd, o, opts)
	if err != nil {
		return nil, false, err
	}
	handled := rb != nil || (o.board != "sim" && o.board != "serial")
	return rb, handled, nil
}

func resolveBoard1(cmd *cobra.Command, o *runOptions, opts *fixtures.Options) (*realBoard, error) {
	log := cmd.ErrOrStderr()
	invPath := o.inventory
	if invPath == "" {
		invPath = inventory.Default()
	}
	var inv *inventory.Inventory
	if invPath != "" {
		var err error
		if inv, err = inventory.Load(invPath); err != nil {
			if o.inventory != "" || !contains(builtinProfiles, o.board) {
				return nil, &exitError{2, err.Error()}
			}
			inv = nil // ./hilrun.yaml is broken but not needed for a built-in profile
		}
	}
	if inv != nil {
		if ib, err := inv.Find(o.board); err == nil {
			return fromInventory(cmd, o, opts, inv, ib)
		} else if !contains(builtinProfiles, o.board) {
			return nil, &exitError{2, err.Error()}
		}
	}
	switch o.board {
	case "sim", "serial":
		if o.hubListen != "" {
			opts.NetListen = o.hubListen
		}
		return nil, nil
	case "esp32", "generic":
		if o.port == "" {
			return nil, &exitError{2, fmt.Sprintf("--board %s needs --port (or an inventory entry: --board ID with hilrun.yaml; `hilrun boards` prints one)", o.board)}
		}
		if o.board == "generic" {
			return nil, &exitError{2, "--board generic needs its flash and reset templates from an inventory entry (docs/inventory.md)"}
		}
		cfg := esp32.Config{ID: "esp32", Port: o.port, Baud: o.baud, Chip: o.chip, Log: log}
		if o.image != "" {
			cfg.Flasher = &esp32.Esptool{}
		}
		b, err := esp32.New(cfg)
		if err != nil {
			return nil, &exitError{2, err.Error()}
		}
		if err := applyNetwork(opts, o.hubListen, advertiseList(o.advertise), o.advertise); err != nil {
			return nil, err
		}
		opts.Board = b
		return &realBoard{b: b, flash: o.image != "", image: board.Image{Path: o.image}}, nil
	}
	msg := fmt.Sprintf("unknown board %q: use sim, serial or esp32 (with --port), or the id of a board in the inventory", o.board)
	if invPath == "" {
		msg += " (no inventory: --inventory FILE, or hilrun.yaml in the working directory)"
	}
	return nil, &exitError{2, msg}
}

func fromInventory(cmd *cobra.Command, o *runOptions, opts *fixtures.Options, inv *inventory.Inventory, ib inventory.Board) (*realBoard, error) {
	if o.port != "" {
		return nil, &exitError{2, fmt.Sprintf("--port does not apply to inventory board %s: its port is in %s (serial/port)", ib.ID, inv.Path)}
	}
	listen := o.hubListen
	if listen == "" {
		listen = inv.Hub.Listen
	}
	names := append(append([]string(nil), inv.Hub.Advertise...), ib.Advertise...)
	dial := o.advertise
	if dial == "" && len(ib.Advertise) > 0 {
		dial = ib.Advertise[0]
	} else if dial == "" && len(inv.Hub.Advertise) > 0 {
		dial = inv.Hub.Advertise[0]
	}
	if o.advertise != "" {
		names = append(names, o.advertise)
	}
	if ib.Profile == inventory.ProfileSim {
		dial = "" // the virtual board runs on this host and dials the proxy directly
	}
	if err := applyNetwork(opts, listen, names, dial); err != nil {
		return nil, err
	}
	if ssid, pw, ok, err := ib.WiFiCredentials(); err != nil {
		return nil, &exitError{2, err.Error()}
	} else if ok {
		opts.WiFi = &agentproto.WiFiConfig{SSID: ssid, Password: pw}
	}
	if ib.Profile == inventory.ProfileSim {
		img := o.image
		if img == "" {
			img = ib.Image
		}
		if img != "" {
			opts.Image = &board.Image{Path: img}
		}
		return nil, nil
	}
	if len(o.defects) > 0 {
		return nil, &exitError{2, "--defect works only with the virtual board"}
	}
	if ib.Profile == inventory.ProfileSerial && ib.Serial == "" {
		b := board.NewSerial(board.SerialConfig{Name: ib.ID, Port: ib.Port, Baud: ib.Baud})
		opts.Board = b
		return &realBoard{b: b}, nil
	}
	b, err := esp32.FromInventory(ib, esp32.Options{Log: cmd.ErrOrStderr()})
	if err != nil {
		return nil, &exitError{2, err.Error()}
	}
	opts.Board = b
	hasImage := o.image != "" || ib.Image != "" || ib.Parts != nil
	return &realBoard{b: b, flash: hasImage && ib.Profile != inventory.ProfileSerial && !o.noFlash, image: board.Image{Path: o.image}}, nil
}

// applyNetwork makes the hub reachable for a real board: the proxy in
// front of the hub listens on listen, the board dials dial, and the hub's
// server certificate carries every advertised name.
func applyNetwork(opts *fixtures.Options, listen string, names []string, dial string) error {
	if listen != "" {
		opts.NetListen = listen
	}
	opts.Advertise = dial
	if len(names) == 0 {
		return nil
	}
	pki, err := certs.NewHubPKIWithNames(fixtures.HubHost, certs.ECDSAP256, names...)
	if err != nil {
		return &exitError{2, fmt.Sprintf("hub certificate for the advertised names %v: %v", names, err)}
	}
	prev := opts.Hub
	opts.Hub = func(c *hub.Config) {
		if prev != nil {
			prev(c)
		}
		if c.Certificate == nil {
			tc := pki.ServerTLSCertificate()
			c.Certificate, c.PKI = &tc, pki
		}
	}
	return nil
}

func advertiseList(a string) []string {
	if a == "" {
		return nil
	}
	return []string{a}
}

// prepare flashes the board (when there is an image) and runs the
// pre-flight check (reset, wait for hello). A failure is a rig fault.
func (r *realBoard) prepare(ctx context.Context, w io.Writer) error {
	if r == nil {
		return nil
	}
	if r.flash {
		if err := r.b.Flash(ctx, r.image); err != nil {
			return rigFaultExit(ctx, err)
		}
	}
	if pc, ok := r.b.(board.Prechecker); ok {
		if err := pc.Preflight(ctx); err != nil {
			if errors.Is(err, board.ErrResetUnsupported) {
				fmt.Fprintf(w, "hilrun: pre-flight skipped: %v\n", err)
				return nil
			}
			return rigFaultExit(ctx, err)
		}
	}
	return nil
}

// rigFaultExit: a flash or pre-flight failure is a rig fault (exit 3),
// unless Ctrl-C caused it (the flasher killed, the wait cut): then it is an
// interruption (exit 1).
func rigFaultExit(ctx context.Context, err error) error {
	if errors.Is(err, context.Canceled) || ctx.Err() != nil {
		return &exitError{1, "interrupted: " + err.Error()}
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "rig fault") {
		msg = "rig fault: " + msg
	}
	return &exitError{exitRigFault, msg + "\n(not a verdict on the firmware: fix the rig and run again)"}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
