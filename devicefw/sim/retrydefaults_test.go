package sim

import (
	"testing"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// TestInstantFailureFloor: the 1 s minimum after an attempt that failed
// at once applies to the default policy only, and not to refusals the hub
// answered (RECON-002, RECON-003).
func TestInstantFailureFloor(t *testing.T) {
	now := time.Now()
	cases := []struct {
		name    string
		def     bool
		rc      byte
		tried   time.Time
		defects defectSet
		want    time.Duration
	}{
		{"default policy, reset at once", true, packets.ErrNetworkError, now, nil, time.Second},
		{"default policy, no CONNACK code", true, 0, now, nil, time.Second},
		{"configured policy", false, packets.ErrNetworkError, now, nil, 100 * time.Millisecond},
		{"CONNACK 3 is the throttling rule's", true, 3, now, nil, 100 * time.Millisecond},
		{"slow failure", true, packets.ErrNetworkError, now.Add(-2 * time.Second), nil, 100 * time.Millisecond},
		{"defect", true, packets.ErrNetworkError, now, defectSet{DefRetryInstantNoFloor: true}, 100 * time.Millisecond},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dc := newDeviceClient(&Firmware{defects: c.defects})
			got := dc.instantFailureFloor(connConfig{defaultRetry: c.def}, c.rc, c.tried, 100*time.Millisecond)
			if got != c.want {
				t.Fatalf("delay %s, want %s", got, c.want)
			}
		})
	}
}
