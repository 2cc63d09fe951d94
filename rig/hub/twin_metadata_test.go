package hub_test

import (
	"encoding/json"
	"testing"

	"github.com/hilrun/hilrun/rig/hub/hubtest"
	"github.com/hilrun/hilrun/rig/iothub"
	"github.com/hilrun/hilrun/rig/iothub/twin"
)

func TestTwinGetMetadata(t *testing.T) {
	// TWIN-017: with SetTwinGetMetadata the GET answer's sections carry
	// $metadata with $lastUpdated per member; without it only $version.
	h := hubtest.Start(t)
	d := sasDevice(h, "metadata")
	if _, err := h.UpdateDesired(d.Identity, twin.Section{"cfg": map[string]any{"mode": "eco"}}); err != nil {
		t.Fatal(err)
	}
	c, res, _ := twinClient(t, h, d)
	get := func(rid string) map[string]map[string]any {
		t.Helper()
		hubtest.Wait(t, c.Publish(iothub.TwinGetTopic(rid), 0, false, ""), "GET")
		m := res.next(t, h, "metadata", "GET response")
		var doc map[string]map[string]any
		if err := json.Unmarshal(m.Payload(), &doc); err != nil {
			t.Fatalf("GET body %s: %v", m.Payload(), err)
		}
		return doc
	}
	if doc := get("g1"); doc["desired"]["$metadata"] != nil {
		t.Fatalf("$metadata without the switch: %v", doc)
	}
	h.SetTwinGetMetadata(d.Identity, true)
	doc := get("g2")
	md, _ := doc["desired"]["$metadata"].(map[string]any)
	cfg, _ := md["cfg"].(map[string]any)
	mode, _ := cfg["mode"].(map[string]any)
	if md["$lastUpdated"] == nil || md["$lastUpdatedVersion"] == nil || cfg["$lastUpdated"] == nil || mode["$lastUpdated"] == nil {
		t.Fatalf("desired $metadata %v", md)
	}
	if doc["reported"]["$metadata"] == nil || doc["desired"]["$version"] == nil {
		t.Fatalf("document %v", doc)
	}
	h.SetTwinGetMetadata(d.Identity, false)
	if doc := get("g3"); doc["desired"]["$metadata"] != nil {
		t.Fatalf("$metadata after the switch went off: %v", doc)
	}
}
