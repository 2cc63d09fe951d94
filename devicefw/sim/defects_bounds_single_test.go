package sim

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/rig/iothub"
	"github.com/hilrun/hilrun/rig/iothub/twin"
)

func TestBoundsSingleDefectHelpers(t *testing.T) {
	body := (&agentproto.Gen{Size: 128 << 10, Seed: 3}).JSONString()
	if len(body) != 128<<10 || !json.Valid(body) {
		t.Errorf("Gen.JSONString: %d bytes, valid JSON %v", len(body), json.Valid(body))
	}
	if got := string((*agentproto.Gen)(nil).JSONString()); got != `""` {
		t.Errorf("nil Gen.JSONString() = %q", got)
	}

	bag := iothub.PropertyBag{{Name: iothub.PropMessageID, Value: "m1"}, {Name: "app", Value: "v"}}
	if got := sysNameBytes(bag); got != len(iothub.PropMessageID) {
		t.Errorf("sysNameBytes = %d, want %d", got, len(iothub.PropMessageID))
	}

	mid := "c:+%#?"
	topic := "devices/d/messages/devicebound/" + iothub.PropertyBag{{Name: iothub.PropMessageID, Value: mid}}.Encode()
	if got := c2dDedupKey(false, topic, mid); got != mid {
		t.Errorf("c2dDedupKey off = %q", got)
	}
	if got := c2dDedupKey(true, topic, mid); got == mid || !strings.Contains(got, "%") {
		t.Errorf("c2dDedupKey on = %q, want the encoded text", got)
	}
	if got := c2dDedupKey(true, topic, "plain"); got == "" {
		t.Errorf("c2dDedupKey on, plain id = %q", got)
	}

	small := map[string]any{"a": "b"}
	if _, over := indentedTooLarge(small); over {
		t.Error("indentedTooLarge: a small patch is over")
	}
	// 75 members whose compact size is within 8 KB: indented, over it.
	sp := agentproto.Spread{Prefix: "m", Members: 75, Len: 98}
	patch := sp.Build()
	if n := twin.Size(patch); n > twin.MaxSectionBytes {
		t.Fatalf("test bug: compact size %d", n)
	}
	if n, over := indentedTooLarge(patch); !over {
		t.Errorf("indentedTooLarge: %d bytes indented, want over %d", n, twin.MaxSectionBytes)
	}

	doc := []byte(`{"desired":{"a":1,"$version":2,"$metadata":{"$lastUpdated":"2024-01-01T00:00:00.000Z"}},"reported":{"$version":1}}`)
	desired, _, _, _, err := twin.ParseDeviceDocument(doc)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := desired["$metadata"]; ok {
		t.Fatal("test bug: ParseDeviceDocument kept $metadata")
	}
	kept := getMetadataKept(doc, desired)
	if _, ok := kept["$metadata"]; !ok || kept["a"] == nil {
		t.Errorf("getMetadataKept = %v", kept)
	}
	if _, ok := desired["$metadata"]; ok {
		t.Error("getMetadataKept changed its input")
	}
}

func TestAckBell(t *testing.T) {
	dc := &deviceClient{fw: &Firmware{defects: defectSet{DefTelAckAnyPuback: true}}}
	ch := dc.anyAck()
	if ch == nil {
		t.Fatal("anyAck nil with the defect on")
	}
	dc.ringAck()
	select {
	case <-ch:
	default:
		t.Error("ringAck did not wake a waiter")
	}
	if next := dc.anyAck(); next == ch {
		t.Error("anyAck after a ring returns the closed channel")
	}
	never := make(chan struct{})
	merged := dc.ackOrAny(never)
	dc.ringAck()
	select {
	case <-merged:
	case <-time.After(5 * time.Second):
		t.Error("ackOrAny did not close at the ring")
	}
	off := &deviceClient{fw: &Firmware{defects: defectSet{}}}
	if off.ackOrAny(never) != (<-chan struct{})(never) {
		t.Error("ackOrAny with the defect off is not the token's channel")
	}
	if off.anyAck() != nil {
		t.Error("anyAck not nil with the defect off")
	}
	off.ringAck() // no panic without a bell
}
