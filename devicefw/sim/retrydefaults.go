package sim

import (
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/hilrun/hilrun/devicefw/agentproto"
)

// The default reconnect policy (RECON-002): with no retry initialMs /
// maxMs configured the firmware follows the SDK reference of 002
// L16737-16738 (first retry after 100 ms, doubling, a 10 s ceiling, 20 %
// jitter) and, as L16742 asks, spaces attempts that fail at once (a
// refused or reset TCP connection, no route: no CONNACK within a second)
// by at least 1 s, so a dead network does not make it spin.
const instantFailureMinGap = time.Second

// DefRetryInstantNoFloor is the defect switch of the 1 s floor.
const DefRetryInstantNoFloor = "retry-instant-no-floor"

var retryDefaultsDefects = []Defect{
	{DefRetryInstantNoFloor, "RECON-002", "the default policy retries an attempt that failed at once (connection refused or reset) after its 100 ms initial delay, without the 1 s minimum: a dead network makes it try several times a second"},
}

// retryDefaultsHello is the hello's declaration (PROTOCOL.md §3).
func retryDefaultsHello() *agentproto.RetryConfig {
	return &agentproto.RetryConfig{InitialMS: int(defaultRetryInitial / time.Millisecond), MaxMS: int(defaultRetryMax / time.Millisecond), JitterPct: defaultJitterPct}
}

// instantFailureFloor raises the delay after an attempt that failed
// without a CONNACK within instantFailureMinGap of its start, under the
// default policy.
func (dc *deviceClient) instantFailureFloor(cc connConfig, rc byte, tried time.Time, delay time.Duration) time.Duration {
	if !cc.defaultRetry || (rc != 0 && rc != packets.ErrNetworkError) || time.Since(tried) >= instantFailureMinGap {
		return delay
	}
	if dc.on(DefRetryInstantNoFloor) {
		return delay
	}
	return max(delay, instantFailureMinGap)
}
