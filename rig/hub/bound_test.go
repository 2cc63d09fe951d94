package hub

import (
	"testing"

	"github.com/hilrun/hilrun/rig/iothub"
)

func TestTracePerClientBound(t *testing.T) {
	tr := newTrace(0, nil)
	tr.perClient.limit = 3
	for i := range 10 {
		tr.add(Entry{ClientID: "chatty", Dir: DirIn, Type: "PUBLISH", PacketID: uint16(i + 1)})
		if i%3 == 0 {
			tr.add(Entry{ClientID: "quiet", Dir: DirIn, Type: "PUBLISH", PacketID: uint16(i + 1)})
		}
		tr.add(Entry{Dir: DirEvent, Type: EventTLS}) // hub-wide: never bounded per client
	}
	got := tr.ForClient("chatty")
	if len(got) != 3 || got[0].PacketID != 8 || got[2].PacketID != 10 {
		t.Fatalf("chatty kept %d entries (first %+v), want its newest 3 (8..10)", len(got), got)
	}
	if q := tr.ForClient("quiet"); len(q) != 3 || q[0].PacketID != 4 {
		t.Fatalf("quiet kept %d entries, want its newest 3 of 4 (from packet 4)", len(q))
	}
	if d := tr.Dropped(); d != 7+1 {
		t.Fatalf("Dropped = %d, want 8 (7 of chatty, 1 of quiet)", d)
	}
	events := tr.Entries(func(e *Entry) bool { return e.Type == EventTraceDropped })
	if len(events) != 2 {
		t.Fatalf("%d trace-dropped events, want one per trimmed client: %+v", len(events), events)
	}
	if n := len(tr.Entries(func(e *Entry) bool { return e.Type == EventTLS })); n != 10 {
		t.Fatalf("%d hub-wide entries, want 10", n)
	}
}

func TestTraceGlobalBoundKeepsClientCounts(t *testing.T) {
	tr := newTrace(100, nil)
	tr.perClient.limit = 50
	for i := range 1000 {
		tr.add(Entry{ClientID: []string{"a", "b", "c"}[i%3], Dir: DirIn, Type: "PUBLISH"})
	}
	if n := len(tr.Entries(nil)); n > 100 {
		t.Fatalf("trace holds %d entries, bound 100", n)
	}
	for k, kc := range tr.perClient.keys {
		if want := len(tr.ForClient(k)); kc.live != want {
			t.Fatalf("client %s: counted %d live, trace has %d", k, kc.live, want)
		}
	}
	if tr.Dropped() == 0 {
		t.Fatal("nothing counted as dropped")
	}
}

func TestTelemetryPerDeviceBound(t *testing.T) {
	s := newTelemetryStore(1000)
	s.perDevice.limit = 5
	a, b := iothub.Identity{DeviceID: "a"}, iothub.Identity{DeviceID: "b"}
	for i := range 20 {
		s.add(Message{Identity: a, PacketID: uint16(i + 1)})
		if i < 2 {
			s.add(Message{Identity: b, PacketID: uint16(i + 1)})
		}
	}
	got := s.list(func(m *Message) bool { return m.Identity == a })
	if len(got) != 5 || got[0].PacketID != 16 {
		t.Fatalf("a kept %d messages (first %+v), want its newest 5", len(got), got)
	}
	if n := len(s.list(func(m *Message) bool { return m.Identity == b })); n != 2 {
		t.Fatalf("b kept %d messages, want both", n)
	}
	if s.dropped != 15 {
		t.Fatalf("dropped = %d, want 15", s.dropped)
	}
}

func TestC2DDoneBounded(t *testing.T) {
	var q c2dQueue
	for i := range 3 * maxC2DDone {
		q.finish(C2DStatus{MessageID: string(rune('a' + i%26)), State: C2DCompleted})
	}
	if len(q.done) > maxC2DDone || q.doneDropped == 0 || uint64(len(q.done))+q.doneDropped != 3*maxC2DDone {
		t.Fatalf("done holds %d, dropped %d, after %d finished (bound %d)", len(q.done), q.doneDropped, 3*maxC2DDone, maxC2DDone)
	}
}
