package hubbench

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// loadEnv makes this test binary act as the load generator process.
const loadEnv = "HILRUN_HUBBENCH_LOAD"

func TestMain(m *testing.M) {
	if os.Getenv(loadEnv) == "1" {
		if err := ServeLoad(os.Stdin, os.Stdout); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestRunSmoke runs the whole benchmark at toy size and checks that every
// operation completed and the figures are sane; it asserts no speed.
func TestRunSmoke(t *testing.T) {
	var progress bytes.Buffer
	o := Options{Devices: 20, Messages: 10, Payload: 64, Mosquitto: "off", Twin: 2, ServiceOps: 20, Rounds: 2, Progress: &progress,
		LoadCommand: func() *exec.Cmd {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), loadEnv+"=1")
			return cmd
		}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := Run(ctx, o)
	if err != nil {
		t.Fatalf("Run: %v\nprogress:\n%s", err, progress.String())
	}
	if r.Hub.Connect.Count != 20 || r.Hub.Connect.Errors != 0 {
		t.Fatalf("connected %d (errors %d), want 20", r.Hub.Connect.Count, r.Hub.Connect.Errors)
	}
	// 10 messages per device over 2 rounds: 5 each round, after one
	// unmeasured warm-up message per device that the hub stores too.
	if r.Hub.Telemetry.Count != 200 || r.TelemetryStored != 220 {
		t.Fatalf("telemetry: %d acknowledged (want 200), %d stored (want 220)", r.Hub.Telemetry.Count, r.TelemetryStored)
	}
	if r.Hub.Telemetry.PerSecond <= 0 || r.Hub.Telemetry.Latency.N != 200 || r.Hub.Telemetry.Latency.P50 <= 0 ||
		r.Hub.Telemetry.Latency.P50 > r.Hub.Telemetry.Latency.P99 || r.Hub.Telemetry.Latency.P99 > r.Hub.Telemetry.Latency.Max {
		t.Fatalf("telemetry figures not sane: %+v", r.Hub.Telemetry)
	}
	for name, op := range map[string]Op{"twin": r.Twin, "methods": r.Methods, "c2d": r.C2D} {
		want := 20
		if name == "twin" {
			want = 40
		}
		if op.Count != want || op.Errors != 0 {
			t.Fatalf("%s: %d done, %d failed (first: %s); want %d", name, op.Count, op.Errors, op.First, want)
		}
	}
	if r.Hub.Memory.GoroutinesPerConn <= 0 || r.Hub.Memory.RSSBytes == 0 {
		t.Fatalf("memory figures missing: %+v", r.Hub.Memory)
	}
	if r.Mosquitto != nil || !strings.Contains(r.MosquittoNote, "off") {
		t.Fatalf("mosquitto measured with --mosquitto off: %+v %q", r.Mosquitto, r.MosquittoNote)
	}
	if !strings.Contains(progress.String(), "telemetry round 2/2") {
		t.Fatalf("no progress lines:\n%s", progress.String())
	}
}

func TestSummarise(t *testing.T) {
	for _, c := range []struct {
		in            []time.Duration
		p50, p99, max time.Duration
	}{
		{nil, 0, 0, 0},
		{[]time.Duration{5}, 5, 5, 5},
		{[]time.Duration{4, 1, 3, 2}, 2, 4, 4},
	} {
		s := Summarise(c.in)
		if s.P50 != c.p50 || s.P99 != c.p99 || s.Max != c.max || s.N != len(c.in) {
			t.Errorf("Summarise(%v) = %+v, want p50 %d p99 %d max %d", c.in, s, c.p50, c.p99, c.max)
		}
	}
}

func TestParseProc(t *testing.T) {
	for _, c := range []struct {
		stat string
		want uint64
	}{
		{"1234 (hilrun) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15", 11 + 12},
		{"1234 (a b) c) S 1 2 3 4 5 6 7 8 9 10 100 200 13", 300},
		{"garbage", 0},
		{"1 (x) S 1 2", 0},
	} {
		if got := parseStatCPU(c.stat); got != c.want {
			t.Errorf("parseStatCPU(%q) = %d, want %d", c.stat, got, c.want)
		}
	}
	for _, c := range []struct {
		status string
		want   uint64
	}{
		{"Name:\thilrun\nVmRSS:\t   2048 kB\n", 2048 * 1024},
		{"Name:\thilrun\n", 0},
		{"VmRSS:\tlots kB\n", 0},
	} {
		if got := parseVmRSS(bufio.NewScanner(strings.NewReader(c.status))); got != c.want {
			t.Errorf("parseVmRSS(%q) = %d, want %d", c.status, got, c.want)
		}
	}
}

// FuzzReadPacket feeds the load client's packet reader and PUBLISH parser
// arbitrary bytes from the network: they must fail cleanly, never panic.
func FuzzReadPacket(f *testing.F) {
	f.Add([]byte{0x20, 0x02, 0x00, 0x00})                      // CONNACK
	f.Add([]byte{0x32, 0x07, 0x00, 0x03, 'a', '/', 'b', 0, 1}) // PUBLISH QoS 1
	f.Add([]byte{0x30, 0x05, 0x00, 0x01, 'a', 'x', 'y'})       // PUBLISH QoS 0
	f.Add([]byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01})          // malformed length
	f.Add([]byte{0x32, 0x03, 0x00, 0x05, 'a'})                 // short topic
	f.Fuzz(func(t *testing.T, b []byte) {
		br := bufio.NewReader(bytes.NewReader(b))
		for range 8 {
			first, body, err := readPacket(br)
			if err != nil {
				return
			}
			if first>>4 == typePublish {
				topic, _, payload, err := parsePublish(first, body)
				if err == nil && len(topic)+len(payload) > len(body) {
					t.Fatalf("topic %d + payload %d bytes from a %d-byte body", len(topic), len(payload), len(body))
				}
			}
		}
	})
}
