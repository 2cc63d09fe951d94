// Package esp32 drives real boards over USB serial: ESP32-family boards
// (through a USB-UART bridge or the chip's own USB-Serial-JTAG) and, with
// command templates, boards hilrun has no profile for (the generic
// profile).
//
// A board is bound by its USB serial number, not by /dev path: the port is
// looked up through an injectable Lister (go.bug.st/serial/enumerator on a
// real machine) whenever it has to be opened, so a board that
// re-enumerates after a reset, or comes back as /dev/ttyUSB3 instead of
// /dev/ttyUSB0, is found again.
//
// The Board owns the physical port and keeps reading it across flashing
// and resets; the console attaches to it through Open and receives, in
// order, everything the board printed (and the flasher's output, as lines
// prefixed with the tool's name) even while no console was attached. That
// is how the boot banner after a flash is never lost.
//
// What is verified where: see docs/boards.md. In short, everything in this
// package is tested against fakes (an injected lister, a serial-port fake
// recording DTR/RTS with timings, fake esptool/nanoff executables, ptys);
// nothing has been run against real hardware yet.
package esp32

import (
	"fmt"
	"slices"
	"strings"

	"go.bug.st/serial/enumerator"
)

// Bridge is a USB serial bridge hilrun knows.
type Bridge struct {
	VID, PID string // upper-case hex, e.g. "10C4", "EA60"
	Name     string
	// USBJTAG is true for the chip's own USB-Serial-JTAG: reset through
	// esptool's USB-JTAG sequence, and the port may re-enumerate on reset.
	USBJTAG bool
}

// KnownBridges are the bridges found on ESP32 boards.
var KnownBridges = []Bridge{
	{VID: "10C4", PID: "EA60", Name: "Silicon Labs CP210x"},
	{VID: "1A86", PID: "7523", Name: "WCH CH340"},
	{VID: "1A86", PID: "55D4", Name: "WCH CH9102"},
	{VID: "0403", PID: "6001", Name: "FTDI FT232R"},
	{VID: "0403", PID: "6010", Name: "FTDI FT2232"},
	{VID: "0403", PID: "6014", Name: "FTDI FT232H"},
	{VID: "0403", PID: "6015", Name: "FTDI FT231X"},
	{VID: "303A", PID: "1001", Name: "Espressif USB-Serial-JTAG", USBJTAG: true},
}

// LookupBridge returns the known bridge with vid:pid (any case).
func LookupBridge(vid, pid string) (Bridge, bool) {
	vid, pid = strings.ToUpper(vid), strings.ToUpper(pid)
	for _, b := range KnownBridges {
		if b.VID == vid && b.PID == pid {
			return b, true
		}
	}
	return Bridge{}, false
}

// PortInfo is one serial port as a Lister reports it.
type PortInfo struct {
	Port         string // /dev/ttyUSB0
	IsUSB        bool
	VID, PID     string
	Serial       string // USB serial number (iSerial)
	Manufacturer string
	Product      string
}

// Lister lists the machine's serial ports. Tests inject one; SystemLister
// reads the operating system's (sysfs on Linux).
type Lister interface {
	List() ([]PortInfo, error)
}

// ListerFunc adapts a function to Lister.
type ListerFunc func() ([]PortInfo, error)

// List implements Lister.
func (f ListerFunc) List() ([]PortInfo, error) { return f() }

// SystemLister lists ports with go.bug.st/serial/enumerator.
var SystemLister Lister = ListerFunc(func() ([]PortInfo, error) {
	ds, err := enumerator.GetDetailedPortsList()
	if err != nil {
		return nil, fmt.Errorf("list serial ports: %w", err)
	}
	out := make([]PortInfo, 0, len(ds))
	for _, d := range ds {
		out = append(out, PortInfo{Port: d.Name, IsUSB: d.IsUSB, VID: d.VID, PID: d.PID,
			Serial: d.SerialNumber, Manufacturer: d.Manufacturer, Product: d.Product})
	}
	return out, nil
})

// Device is an attached board candidate: a USB serial port whose VID:PID
// is a known bridge.
type Device struct {
	PortInfo
	Bridge Bridge
}

// VIDPID is "VID:PID" in upper case.
func (d Device) VIDPID() string {
	return strings.ToUpper(d.VID) + ":" + strings.ToUpper(d.PID)
}

// Devices lists the attached ports whose VID:PID is a known bridge, sorted
// by port. Ports that are not USB or not a known bridge are left out.
func Devices(l Lister) ([]Device, error) {
	if l == nil {
		l = SystemLister
	}
	ps, err := l.List()
	if err != nil {
		return nil, err
	}
	var out []Device
	for _, p := range ps {
		if !p.IsUSB {
			continue
		}
		b, ok := LookupBridge(p.VID, p.PID)
		if !ok {
			continue
		}
		out = append(out, Device{PortInfo: p, Bridge: b})
	}
	slices.SortFunc(out, func(a, b Device) int { return strings.Compare(a.Port, b.Port) })
	return out, nil
}

// ErrNotFound is wrapped by Find when no port matches.
var ErrNotFound = fmt.Errorf("board not attached")

// Find returns the attached port with USB serial number serial (any known
// bridge or not: a board's bridge may be one hilrun does not list). When
// serial is empty it returns the port named port. The error lists what is
// attached, so a wrong serial number in hilrun.yaml is easy to fix.
func Find(l Lister, serial, port string) (PortInfo, error) {
	if l == nil {
		l = SystemLister
	}
	ps, err := l.List()
	if err != nil {
		return PortInfo{}, err
	}
	var matches []PortInfo
	for _, p := range ps {
		switch {
		case serial != "" && p.Serial == serial:
			matches = append(matches, p)
		case serial == "" && port != "" && p.Port == port:
			matches = append(matches, p)
		}
	}
	switch len(matches) {
	case 1:
		return matches[0], nil
	case 0:
		what := fmt.Sprintf("USB serial number %q", serial)
		if serial == "" {
			what = "port " + port
			if port == "" {
				return PortInfo{}, fmt.Errorf("%w: neither serial nor port given", ErrNotFound)
			}
			// A fixed port that the lister does not report (a pty, a
			// platform without enumeration) is still usable.
			return PortInfo{Port: port}, nil
		}
		return PortInfo{}, fmt.Errorf("%w: no port with %s; attached: %s (run `hilrun boards`)", ErrNotFound, what, describe(ps))
	default:
		var names []string
		for _, m := range matches {
			names = append(names, m.Port)
		}
		return PortInfo{}, fmt.Errorf("USB serial number %q is on several ports (%s): the bridge has no unique serial number; bind this board by port instead", serial, strings.Join(names, ", "))
	}
}

func describe(ps []PortInfo) string {
	var parts []string
	for _, p := range ps {
		if !p.IsUSB {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s (%s:%s serial %q)", p.Port, strings.ToUpper(p.VID), strings.ToUpper(p.PID), p.Serial))
	}
	if len(parts) == 0 {
		return "no USB serial ports"
	}
	return strings.Join(parts, ", ")
}

// InventoryEntry renders a ready-to-paste hilrun.yaml board entry for d.
// id is the suggested board id; chip a guess (empty: a placeholder the user
// must edit).
func InventoryEntry(d Device, id string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  - id: %s\n", id)
	fmt.Fprintf(&b, "    profile: esp32\n")
	chip := "esp32        # edit: esp32, esp32s3, esp32c3, …"
	if d.Bridge.USBJTAG {
		chip = "esp32s3      # edit: USB-Serial-JTAG chips are esp32s3, esp32c3, esp32c6, esp32h2, …"
	}
	fmt.Fprintf(&b, "    chip: %s\n", chip)
	if d.Serial != "" {
		fmt.Fprintf(&b, "    serial: %q   # %s %s, now at %s\n", d.Serial, d.VIDPID(), d.Bridge.Name, d.Port)
	} else {
		fmt.Fprintf(&b, "    port: %s   # %s %s has no USB serial number: bound by port\n", d.Port, d.VIDPID(), d.Bridge.Name)
	}
	fmt.Fprintf(&b, "    image: build/hilrun-fw-merged.bin   # edit: your instrumented firmware\n")
	return b.String()
}
