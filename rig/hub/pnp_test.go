package hub_test

import (
	"net/url"

	paho "github.com/eclipse/paho.mqtt.golang"
	"testing"
	"time"

	"github.com/hilrun/hilrun/rig/hub/hubtest"
	"github.com/hilrun/hilrun/rig/iothub"
)

// The model ID of the Username is kept per identity and shown in the twin
// (PNP-001); a connection without one clears it.
func TestModelIDRecorded(t *testing.T) {
	h := hubtest.Start(t)
	d := h.AddSASDevice("pnp1")
	id := iothub.Identity{DeviceID: "pnp1"}
	dev := hubtest.Device{Identity: id, Key: d.Authentication.SymmetricKey.PrimaryKey}
	o := h.ClientOptions(dev)
	o.SetUsername(iothub.FormatUsername(h.Host(), id, iothub.DefaultAPIVersion, url.Values{"model-id": {"dtmi:com:example:Thermostat;1"}}))
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	if err := h.WaitConnected(hubtest.Context(t, 5*time.Second), id); err != nil {
		t.Fatal(err)
	}
	if got := h.ModelID(id); got != "dtmi:com:example:Thermostat;1" {
		t.Errorf("ModelID = %q", got)
	}
	tw, err := h.GetTwin(id)
	if err != nil || tw.ModelID != "dtmi:com:example:Thermostat;1" {
		t.Errorf("twin modelId %q, %v", tw.ModelID, err)
	}
	c.Disconnect(0)
	if err := h.WaitDisconnected(hubtest.Context(t, 5*time.Second), id); err != nil {
		t.Fatal(err)
	}
	h.Connect(dev).Disconnect(0)
	if got := h.ModelID(id); got != "" {
		t.Errorf("ModelID after a connection without model-id = %q", got)
	}
}
