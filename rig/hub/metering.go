package hub

// Quotas and throttles (LIMITS-001..005): the hub meters each identity's
// traffic in IoT Hub's billing units, from the wire trace, and compares its
// rates with the identity's share of the hub's throttles for a tier and
// unit count spread over a fleet (Config.Quota). The figures are IoT Hub's
// (002 L13403, L13417-13426, L13436, L13508-13523, L16880, L16899):
//
//   - D2C messages are metered in 4 KB chunks (0.5 KB on the free tier),
//     twin reads and updates in 512-byte chunks, direct-method requests and
//     responses each in 4 KB chunks; connection set-up and keep-alive
//     packets are not metered;
//   - S1 throttles: new connections and D2C sends the higher of 100/s or
//     12/s per unit, twin reads 100/s, twin updates 50/s, direct methods
//     160 KB/s per unit; an S1 unit carries 400,000 messages a day.
//
// Enforcement stays where it was (Config.Limits: telemetry above the rate
// closes the connection, twin requests are answered 429); SetIdentityLimits
// gives one identity its own limits, e.g. its share, from its next
// connection on.

import (
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hilrun/hilrun/rig/iothub"
)

// Profile is the hub's tier, units and the fleet sharing them.
type Profile struct {
	Tier         string `json:"tier"`         // F1, S1, S2 or S3
	Units        int    `json:"units"`        // provisioned units (≥ 1)
	FleetDevices int    `json:"fleetDevices"` // devices sharing the hub's throttles (≥ 1)
}

// DefaultProfile is one S1 unit shared by a fleet of ten devices.
var DefaultProfile = Profile{Tier: "S1", Units: 1, FleetDevices: 10}

// Share is one device's portion of the hub's throttles and quota.
type Share struct {
	D2CPerSecond         float64 `json:"d2cPerSecond"`
	ConnectsPerSecond    float64 `json:"connectsPerSecond"`
	TwinReadsPerSecond   float64 `json:"twinReadsPerSecond"`
	TwinUpdatesPerSecond float64 `json:"twinUpdatesPerSecond"`
	MethodBytesPerSecond float64 `json:"methodBytesPerSecond"`
	MessagesPerDay       float64 `json:"messagesPerDay"` // 0: not documented for the tier
	D2CMeterBytes        int     `json:"d2cMeterBytes"`
}

// Metering chunk sizes (002 L13403, L13508-13513, L13436).
const (
	MeterD2C       = 4096
	MeterD2CFree   = 512
	MeterTwin      = 512
	MeterMethod    = 4096
	methodKBPerSec = 1024.0
)

func (p Profile) norm() Profile {
	if p.Tier == "" {
		p = DefaultProfile
	}
	p.Tier = strings.ToUpper(p.Tier)
	p.Units = max(p.Units, 1)
	p.FleetDevices = max(p.FleetDevices, 1)
	return p
}

// Hub returns the hub-wide figures of the profile (FleetDevices 1).
func (p Profile) Hub() Share {
	p = p.norm()
	u := float64(p.Units)
	s := Share{D2CMeterBytes: MeterD2C}
	switch p.Tier {
	case "F1":
		s.D2CPerSecond, s.ConnectsPerSecond = 100, 100
		s.TwinReadsPerSecond, s.TwinUpdatesPerSecond = 100, 50
		s.MethodBytesPerSecond = 160 * methodKBPerSec * u
		s.MessagesPerDay = 8000 // 002 L16880
		s.D2CMeterBytes = MeterD2CFree
	case "S2":
		s.D2CPerSecond, s.ConnectsPerSecond = 120*u, 120*u
		s.TwinReadsPerSecond, s.TwinUpdatesPerSecond = math.Max(100, 10*u), math.Max(50, 5*u)
		s.MethodBytesPerSecond = 480 * methodKBPerSec * u
	case "S3":
		s.D2CPerSecond, s.ConnectsPerSecond = 6000*u, 6000*u
		s.TwinReadsPerSecond, s.TwinUpdatesPerSecond = 500*u, 250*u
		s.MethodBytesPerSecond = 24 * 1024 * methodKBPerSec * u
	default: // S1
		s.D2CPerSecond, s.ConnectsPerSecond = math.Max(100, 12*u), math.Max(100, 12*u)
		s.TwinReadsPerSecond, s.TwinUpdatesPerSecond = 100, 50
		s.MethodBytesPerSecond = 160 * methodKBPerSec * u
		s.MessagesPerDay = 400000 * u // 002 L16899
	}
	return s
}

// DeviceShare is one device's portion: the hub figures over the fleet.
func (p Profile) DeviceShare() Share {
	p = p.norm()
	s := p.Hub()
	n := float64(p.FleetDevices)
	s.D2CPerSecond /= n
	s.ConnectsPerSecond /= n
	s.TwinReadsPerSecond /= n
	s.TwinUpdatesPerSecond /= n
	s.MethodBytesPerSecond /= n
	s.MessagesPerDay /= n
	return s
}

// Usage is an identity's metered traffic over a stretch of the trace.
type Usage struct {
	From, To         time.Time `json:"-"`
	Seconds          float64   `json:"seconds"`
	D2C              int       `json:"d2c"`
	D2CMeters        int       `json:"d2cMeters"`
	TwinReads        int       `json:"twinReads"`
	TwinReadMeters   int       `json:"twinReadMeters"`
	TwinUpdates      int       `json:"twinUpdates"`
	TwinUpdateMeters int       `json:"twinUpdateMeters"`
	MethodRequests   int       `json:"methodRequests"`
	MethodResponses  int       `json:"methodResponses"`
	MethodMeters     int       `json:"methodMeters"`
	MethodBytes      int       `json:"methodBytes"`
	Connects         int       `json:"connects"`
	ConnectAttempts  int       `json:"connectAttempts"` // CONNECT packets, answered or refused
	FreePackets      int       `json:"freePackets"`     // CONNECT, SUBSCRIBE, PINGREQ … (not metered)
	// Peak rates in any one-second window.
	PeakD2CPerSecond         int `json:"peakD2cPerSecond"`
	PeakConnectsPerSecond    int `json:"peakConnectsPerSecond"`
	PeakAttemptsPerSecond    int `json:"peakConnectAttemptsPerSecond"`
	PeakTwinReadsPerSecond   int `json:"peakTwinReadsPerSecond"`
	PeakTwinUpdatesPerSecond int `json:"peakTwinUpdatesPerSecond"`
	PeakMethodBytesPerSecond int `json:"peakMethodBytesPerSecond"`
	// Largest single method response payload.
	MaxMethodResponse int `json:"maxMethodResponse"`
}

// Messages is the metered message count (what the daily quota counts).
func (u Usage) Messages() int {
	return u.D2CMeters + u.TwinReadMeters + u.TwinUpdateMeters + u.MethodMeters
}

func meters(size, chunk int) int { return max(1, (size+chunk-1)/chunk) }

// Meter computes an identity's usage from trace entries (in order).
func (p Profile) Meter(entries []Entry) Usage {
	share := p.Hub()
	var u Usage
	var d2c, conns, attempts, reads, updates []time.Duration
	type sized struct {
		at time.Duration
		n  int
	}
	var mbytes []sized
	for _, e := range entries {
		if u.From.IsZero() {
			u.From = e.Time
		}
		u.To = e.Time
		switch {
		case e.Dir == DirEvent && e.Type == EventConnOpened:
			u.Connects++
			conns = append(conns, e.Mono)
		case e.Dir == DirIn && e.Type == "PUBLISH":
			switch t, _ := iothub.ParseTopic(e.Topic); t.Kind {
			case iothub.TopicTelemetry:
				u.D2C++
				u.D2CMeters += meters(e.PayloadLen, share.D2CMeterBytes)
				d2c = append(d2c, e.Mono)
			case iothub.TopicTwinReported:
				u.TwinUpdates++
				u.TwinUpdateMeters += meters(e.PayloadLen, MeterTwin)
				updates = append(updates, e.Mono)
			case iothub.TopicMethodResponse:
				u.MethodResponses++
				u.MethodMeters += meters(e.PayloadLen, MeterMethod)
				u.MethodBytes += e.PayloadLen
				u.MaxMethodResponse = max(u.MaxMethodResponse, e.PayloadLen)
				mbytes = append(mbytes, sized{e.Mono, e.PayloadLen})
			}
		case e.Dir == DirOut && e.Type == "PUBLISH":
			switch {
			case strings.HasPrefix(e.Topic, "$iothub/twin/res/200/"):
				u.TwinReads++
				u.TwinReadMeters += meters(e.PayloadLen, MeterTwin)
				reads = append(reads, e.Mono)
			case strings.HasPrefix(e.Topic, "$iothub/methods/POST/"):
				u.MethodRequests++
				u.MethodMeters += meters(e.PayloadLen, MeterMethod)
				u.MethodBytes += e.PayloadLen
				mbytes = append(mbytes, sized{e.Mono, e.PayloadLen})
			}
		case e.Dir == DirIn:
			if e.Type == "CONNECT" {
				u.ConnectAttempts++
				attempts = append(attempts, e.Mono)
			}
			u.FreePackets++
		}
	}
	u.Seconds = u.To.Sub(u.From).Seconds()
	u.PeakD2CPerSecond = peakCount(d2c)
	u.PeakConnectsPerSecond = peakCount(conns)
	u.PeakAttemptsPerSecond = peakCount(attempts)
	u.PeakTwinReadsPerSecond = peakCount(reads)
	u.PeakTwinUpdatesPerSecond = peakCount(updates)
	sort.Slice(mbytes, func(i, j int) bool { return mbytes[i].at < mbytes[j].at })
	sum, lo := 0, 0
	for hi := range mbytes {
		sum += mbytes[hi].n
		for mbytes[hi].at-mbytes[lo].at >= time.Second {
			sum -= mbytes[lo].n
			lo++
		}
		u.PeakMethodBytesPerSecond = max(u.PeakMethodBytesPerSecond, sum)
	}
	return u
}

// peakCount is the most events in any one-second window.
func peakCount(ts []time.Duration) int {
	sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
	best, lo := 0, 0
	for hi := range ts {
		for ts[hi]-ts[lo] >= time.Second {
			lo++
		}
		best = max(best, hi-lo+1)
	}
	return best
}

// Quota is the hub's profile.
func (h *Hub) Quota() Profile { return h.cfg.Quota.norm() }

// Usage meters an identity's traffic in the trace after seq.
func (h *Hub) Usage(id iothub.Identity, afterSeq uint64) Usage {
	cid := id.ClientID()
	return h.Quota().Meter(h.trace.Entries(func(e *Entry) bool { return e.Seq > afterSeq && e.ClientID == cid }))
}

// SetIdentityLimits gives an identity its own throttles (nil: the hub's
// Config.Limits again), applied from its next connection on.
func (h *Hub) SetIdentityLimits(id iothub.Identity, l *Limits) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.idLimits == nil {
		h.idLimits = map[string]Limits{}
	}
	if l == nil {
		delete(h.idLimits, id.ClientID())
		return
	}
	h.idLimits[id.ClientID()] = *l
}

// limitsFor is the throttles of a connecting identity.
func (h *Hub) limitsFor(clientID string) Limits {
	h.mu.Lock()
	defer h.mu.Unlock()
	if l, ok := h.idLimits[clientID]; ok {
		return l
	}
	return h.cfg.Limits
}

// restUsage: GET /hilrun/usage?deviceId=…[&moduleId=…][&after=seq].
func (h *Hub) restUsage(w http.ResponseWriter, r *http.Request, _ []string) error {
	q := r.URL.Query()
	id := iothub.Identity{DeviceID: q.Get("deviceId"), ModuleID: q.Get("moduleId")}
	if id.DeviceID == "" {
		return restFail(errArgumentInvalid, "deviceId is required")
	}
	var after uint64
	if a := q.Get("after"); a != "" {
		n, err := strconv.ParseUint(a, 10, 64)
		if err != nil {
			return restFail(errArgumentInvalid, "after must be a trace sequence number")
		}
		after = n
	}
	p := h.Quota()
	restWriteJSON(w, http.StatusOK, map[string]any{"profile": p, "hub": p.Hub(), "share": p.DeviceShare(), "usage": h.Usage(id, after)})
	return nil
}
