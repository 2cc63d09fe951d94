package esp32

import (
	"errors"
	"strings"
	"testing"

	"github.com/hilrun/hilrun/rig/inventory"
)

func TestDevicesFilter(t *testing.T) {
	all := []PortInfo{
		{Port: "/dev/ttyS0"}, // not USB
		{Port: "/dev/ttyUSB1", IsUSB: true, VID: "1a86", PID: "7523", Serial: ""},
		{Port: "/dev/ttyUSB0", IsUSB: true, VID: "10c4", PID: "ea60", Serial: "0001"},
		{Port: "/dev/ttyACM0", IsUSB: true, VID: "303a", PID: "1001", Serial: "84:F7:03:12:34:56"},
		{Port: "/dev/ttyACM1", IsUSB: true, VID: "2341", PID: "0043", Serial: "ARDUINO"}, // unknown bridge
		{Port: "/dev/ttyUSB2", IsUSB: true, VID: "1A86", PID: "55D4", Serial: "5434"},
		{Port: "/dev/ttyUSB3", IsUSB: true, VID: "0403", PID: "6001", Serial: "A50285BI"},
		{Port: "/dev/ttyUSB4", IsUSB: true, VID: "0403", PID: "6010", Serial: "FT1"},
		{Port: "/dev/ttyUSB5", IsUSB: true, VID: "0403", PID: "6014", Serial: "FT2"},
		{Port: "/dev/ttyUSB6", IsUSB: true, VID: "0403", PID: "6015", Serial: "FT3"},
		{Port: "/dev/ttyUSB7", IsUSB: false, VID: "10c4", PID: "ea60"}, // not USB despite ids
	}
	ds, err := Devices(ListerFunc(func() ([]PortInfo, error) { return all, nil }))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ port, vidpid, bridge string }{
		{"/dev/ttyACM0", "303A:1001", "Espressif USB-Serial-JTAG"},
		{"/dev/ttyUSB0", "10C4:EA60", "Silicon Labs CP210x"},
		{"/dev/ttyUSB1", "1A86:7523", "WCH CH340"},
		{"/dev/ttyUSB2", "1A86:55D4", "WCH CH9102"},
		{"/dev/ttyUSB3", "0403:6001", "FTDI FT232R"},
		{"/dev/ttyUSB4", "0403:6010", "FTDI FT2232"},
		{"/dev/ttyUSB5", "0403:6014", "FTDI FT232H"},
		{"/dev/ttyUSB6", "0403:6015", "FTDI FT231X"},
	}
	if len(ds) != len(want) {
		t.Fatalf("got %d devices: %+v", len(ds), ds)
	}
	for i, w := range want {
		if ds[i].Port != w.port || ds[i].VIDPID() != w.vidpid || ds[i].Bridge.Name != w.bridge {
			t.Errorf("device %d = %s %s %s, want %+v", i, ds[i].Port, ds[i].VIDPID(), ds[i].Bridge.Name, w)
		}
	}
	if !ds[0].Bridge.USBJTAG || ds[1].Bridge.USBJTAG {
		t.Error("USB-JTAG flag wrong")
	}
	if _, ok := StrategyFor(ds[0].Bridge).(USBJTAGReset); !ok {
		t.Error("303A:1001 must reset with the USB-JTAG sequence")
	}
	if _, ok := StrategyFor(ds[1].Bridge).(ClassicReset); !ok {
		t.Error("CP210x must reset with the classic sequence")
	}

	lister := ListerFunc(func() ([]PortInfo, error) { return all, nil })
	for _, tc := range []struct {
		name, serial, port string
		want               string // port, or "" for an error
		errHas             []string
	}{
		{"by serial", "0001", "", "/dev/ttyUSB0", nil},
		{"by serial ignores port", "A50285BI", "/dev/ttyUSB0", "/dev/ttyUSB3", nil},
		{"serial with colons", "84:F7:03:12:34:56", "", "/dev/ttyACM0", nil},
		{"unknown bridge by serial", "ARDUINO", "", "/dev/ttyACM1", nil},
		{"missing serial", "nope", "", "", []string{`"nope"`, "/dev/ttyUSB0 (10C4:EA60 serial \"0001\")", "hilrun boards"}},
		{"by port listed", "", "/dev/ttyUSB1", "/dev/ttyUSB1", nil},
		{"by port unlisted (pty)", "", "/dev/pts/7", "/dev/pts/7", nil},
		{"neither", "", "", "", []string{"neither serial nor port"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Find(lister, tc.serial, tc.port)
			if tc.want == "" {
				if err == nil || !errors.Is(err, ErrNotFound) {
					t.Fatalf("err = %v, want ErrNotFound", err)
				}
				for _, s := range tc.errHas {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q lacks %q", err, s)
					}
				}
				return
			}
			if err != nil || p.Port != tc.want {
				t.Fatalf("Find = %q, %v; want %q", p.Port, err, tc.want)
			}
		})
	}
	dup := ListerFunc(func() ([]PortInfo, error) {
		return []PortInfo{{Port: "/dev/ttyUSB0", IsUSB: true, Serial: "0001"}, {Port: "/dev/ttyUSB1", IsUSB: true, Serial: "0001"}}, nil
	})
	if _, err := Find(dup, "0001", ""); err == nil || !strings.Contains(err.Error(), "several ports") {
		t.Errorf("duplicate serial: %v", err)
	}
}

func TestInventoryEntryParses(t *testing.T) {
	for _, d := range []Device{
		{PortInfo: PortInfo{Port: "/dev/ttyUSB0", IsUSB: true, VID: "10c4", PID: "ea60", Serial: "0001"}, Bridge: KnownBridges[0]},
		{PortInfo: PortInfo{Port: "/dev/ttyUSB1", IsUSB: true, VID: "1a86", PID: "7523"}, Bridge: KnownBridges[1]},
		{PortInfo: PortInfo{Port: "/dev/ttyACM0", IsUSB: true, VID: "303a", PID: "1001", Serial: "84:F7:03:12:34:56"}, Bridge: KnownBridges[7]},
	} {
		entry := InventoryEntry(d, "board-1")
		inv, err := inventory.Parse([]byte("boards:\n"+entry), "entry")
		if err != nil {
			t.Fatalf("entry for %s does not parse: %v\n%s", d.Port, err, entry)
		}
		b := inv.Boards[0]
		if b.Serial != d.Serial || (d.Serial == "" && b.Port != d.Port) || b.Profile != "esp32" {
			t.Errorf("entry for %s = %+v", d.Port, b)
		}
	}
}
