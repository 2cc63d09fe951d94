package hub

import (
	"testing"
	"time"
)

func TestProfileShares(t *testing.T) {
	cases := []struct {
		p            Profile
		d2c, updates float64
		perDay       float64
	}{
		{Profile{Tier: "S1", Units: 1, FleetDevices: 1}, 100, 50, 400000},
		{Profile{Tier: "S1", Units: 9, FleetDevices: 1}, 108, 50, 3600000}, // 002 L13418 example: 9 × 12
		{Profile{Tier: "S1", Units: 1, FleetDevices: 10}, 10, 5, 40000},
		{Profile{Tier: "S2", Units: 2, FleetDevices: 2}, 120, 25, 0},
		{Profile{}, 10, 5, 40000}, // DefaultProfile
	}
	for _, c := range cases {
		s := c.p.DeviceShare()
		if s.D2CPerSecond != c.d2c || s.TwinUpdatesPerSecond != c.updates || s.MessagesPerDay != c.perDay {
			t.Errorf("%+v: share %+v", c.p, s)
		}
	}
	if Profile.Hub(Profile{Tier: "F1"}).D2CMeterBytes != 512 {
		t.Error("free tier meters D2C in 0.5 KB (002 L13403)")
	}
}

func TestMeter(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	at := time.Unix(1000, 0)
	es := []Entry{
		{Dir: DirEvent, Type: EventConnOpened, Mono: ms(0), Time: at},
		{Dir: DirIn, Type: "CONNECT", Mono: ms(0)},
		{Dir: DirIn, Type: "PUBLISH", Topic: "devices/d/messages/events/", PayloadLen: 6 * 1024, Mono: ms(10)}, // 2 messages (002 L13509)
		{Dir: DirIn, Type: "PUBLISH", Topic: "devices/d/messages/events/", PayloadLen: 10, Mono: ms(20)},
		{Dir: DirIn, Type: "PUBLISH", Topic: "devices/d/messages/events/", PayloadLen: 10, Mono: ms(1500)},
		{Dir: DirOut, Type: "PUBLISH", Topic: "$iothub/twin/res/200/?$rid=1", PayloadLen: 6 * 1024, Mono: ms(30)}, // 12 (002 L13514)
		{Dir: DirIn, Type: "PUBLISH", Topic: "$iothub/twin/PATCH/properties/reported/?$rid=2", PayloadLen: 100, Mono: ms(40)},
		{Dir: DirOut, Type: "PUBLISH", Topic: "$iothub/methods/POST/m/?$rid=3", PayloadLen: 4096, Mono: ms(50)},
		{Dir: DirIn, Type: "PUBLISH", Topic: "$iothub/methods/res/200/?$rid=3", PayloadLen: 0, Mono: ms(60)}, // 4 KB + empty = 2 (002 L13512)
		{Dir: DirIn, Type: "PINGREQ", Mono: ms(70), Time: at.Add(2 * time.Second)},
	}
	u := Profile{Tier: "S1", Units: 1, FleetDevices: 1}.Meter(es)
	if u.D2C != 3 || u.D2CMeters != 4 || u.TwinReadMeters != 12 || u.TwinUpdateMeters != 1 || u.MethodMeters != 2 || u.Connects != 1 || u.FreePackets != 2 {
		t.Fatalf("usage %+v", u)
	}
	if u.PeakD2CPerSecond != 2 || u.PeakMethodBytesPerSecond != 4096 || u.Messages() != 19 || u.Seconds != 2 {
		t.Fatalf("peaks %+v (messages %d)", u, u.Messages())
	}
}

func TestPeakCount(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		var out []time.Duration
		for _, n := range ns {
			out = append(out, time.Duration(n)*time.Millisecond)
		}
		return out
	}
	cases := []struct {
		ts   []time.Duration
		want int
	}{
		{nil, 0},
		{ms(0), 1},
		{ms(0, 999), 2},
		{ms(0, 1000), 1},
		{ms(500, 0, 900, 1400, 1450), 4},
	}
	for _, c := range cases {
		if got := peakCount(c.ts); got != c.want {
			t.Errorf("peakCount(%v) = %d, want %d", c.ts, got, c.want)
		}
	}
}
