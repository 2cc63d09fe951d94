package esp32

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hilrun/hilrun/rig/board"
	"github.com/hilrun/hilrun/rig/console/ptytest"
)

// slack bounds how late a timer may fire on a loaded machine (-race, CI).
const slack = 150 * time.Millisecond

func TestResetSequences(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name string
		run  func(context.Context, Lines) error
		seq  string
		// gaps: minimum time between event i-1 and event i (0: none required)
		gaps map[int]time.Duration
		// result: what the fake chip did; -1: not checked (the fake models
		// the two-transistor circuit, not the USB-Serial-JTAG decoder)
		boots, downloads int
	}{
		{"classic run mode", ClassicReset{}.RunMode, "D0 R1 R0", map[int]time.Duration{2: 100 * ms}, 1, 0},
		{"classic bootloader", ClassicReset{}.Bootloader, "D0 R1 D1 R0 D0", map[int]time.Duration{2: 100 * ms, 4: 50 * ms}, 0, 1},
		{"usb-jtag run mode", USBJTAGReset{}.RunMode, "D0 R1 R0", map[int]time.Duration{2: 200 * ms}, 1, 0},
		{"usb-jtag bootloader", USBJTAGReset{}.Bootloader, "R0 D0 D1 R0 R1 D0 R1 D0 R0", map[int]time.Duration{2: 100 * ms, 4: 100 * ms, 7: 100 * ms}, -1, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newChip()
			start := time.Now()
			if err := tc.run(context.Background(), c); err != nil {
				t.Fatal(err)
			}
			total := time.Since(start)
			ev := c.Events()
			var names []string
			for _, e := range ev {
				names = append(names, e.String())
			}
			if got := strings.Join(names, " "); got != tc.seq {
				t.Fatalf("sequence %q, want %q", got, tc.seq)
			}
			var want time.Duration
			for i := 1; i < len(ev); i++ {
				gap := ev[i].At - ev[i-1].At
				min := tc.gaps[i]
				want += min
				if gap < min || gap > min+slack {
					t.Errorf("gap before %s (#%d) = %v, want [%v, %v]", ev[i], i, gap, min, min+slack)
				}
			}
			if total > want+2*slack+250*ms {
				t.Errorf("sequence took %v", total)
			}
			if tc.boots >= 0 && (c.boots != tc.boots || c.dl != tc.downloads) {
				t.Errorf("fake chip: %d boots, %d download entries; want %d, %d", c.boots, c.dl, tc.boots, tc.downloads)
			}
		})
	}
}

func TestResetCustomTimings(t *testing.T) {
	c := newChip()
	if err := (ClassicReset{Hold: 20 * time.Millisecond, Delay: 10 * time.Millisecond}).Bootloader(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	ev := c.Events()
	if g := ev[2].At - ev[1].At; g < 20*time.Millisecond || g > 20*time.Millisecond+slack {
		t.Errorf("hold %v", g)
	}
	if g := ev[4].At - ev[3].At; g < 10*time.Millisecond || g > 10*time.Millisecond+slack {
		t.Errorf("delay %v", g)
	}
}

func TestResetCancelled(t *testing.T) {
	c := newChip()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := (ClassicReset{}).RunMode(ctx, c); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if n := len(c.Events()); n != 2 {
		t.Errorf("%d line changes before the cancelled wait, want 2", n)
	}
}

// On a pseudo-terminal the modem-line ioctls fail: the strategy must say
// so with board.ErrResetUnsupported, not hang or claim success.
func TestResetUnsupportedOnPty(t *testing.T) {
	pair, err := ptytest.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	p, err := SerialOpener(pair.Path, 115200)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, s := range []ResetStrategy{ClassicReset{}, USBJTAGReset{}} {
		err := s.RunMode(context.Background(), p)
		if !errors.Is(err, board.ErrResetUnsupported) || !strings.Contains(err.Error(), "reset.command") {
			t.Errorf("%s on a pty: %v", s.Name(), err)
		}
	}
}
