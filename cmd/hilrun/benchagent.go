package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/rig/board"
	"github.com/hilrun/hilrun/rig/hub/hubbench"
)

// AgentBenchResult is `hilrun bench --agent` as JSON.
type AgentBenchResult struct {
	Firmware     string           `json:"firmware"`
	Client       string           `json:"client"`
	Image        string           `json:"image,omitempty"`
	PayloadBytes int              `json:"payloadBytes"`
	Latency      hubbench.Summary `json:"latency"`
	PerSecond    float64          `json:"perSecond"`
}

// agentEchoPayload is the echo argument: a short line, as a spec's calls are.
var agentEchoPayload = strings.Repeat("x", 64)

// runAgentBench boots the virtual board (the Go firmware, or image) and
// measures n echo round trips over the pty: frame out, firmware agent,
// frame back, one at a time.
func runAgentBench(ctx context.Context, out, progress io.Writer, n int, image string, asJSON bool) error {
	opts := fixtures.Options{Log: progress, RunContext: ctx}
	if image != "" {
		opts.Image = &board.Image{Path: image}
	}
	env, err := fixtures.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer env.Close()
	res, err := agentEcho(ctx, env, n)
	if err != nil {
		return err
	}
	res.Image = image
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	fmt.Fprintf(out, "agent echo round trip over the pty, %s (%s), %d-byte argument: median %s  %s  (%.0f calls/s)\n",
		res.Firmware, res.Client, res.PayloadBytes, res.Latency.P50, res.Latency, res.PerSecond)
	return nil
}

func agentEcho(ctx context.Context, env *fixtures.Env, n int) (*AgentBenchResult, error) {
	args := agentproto.EchoArgs{Data: agentEchoPayload}
	// Warm-up: first calls pay for page faults and lazy state on both sides.
	for range min(n/10+1, 20) {
		var got agentproto.EchoArgs
		if err := env.Agent.Call(ctx, agentproto.OpEcho, args, &got); err != nil {
			return nil, fmt.Errorf("echo warm-up: %w", err)
		}
	}
	lat := make([]time.Duration, 0, n)
	start := time.Now()
	for i := range n {
		var got agentproto.EchoArgs
		t0 := time.Now()
		if err := env.Agent.Call(ctx, agentproto.OpEcho, args, &got); err != nil {
			return nil, fmt.Errorf("echo %d: %w", i, err)
		}
		lat = append(lat, time.Since(t0))
		if got.Data != args.Data {
			return nil, fmt.Errorf("echo %d: answered %d bytes, sent %d", i, len(got.Data), len(args.Data))
		}
	}
	el := time.Since(start)
	return &AgentBenchResult{Firmware: env.Hello.Firmware + " " + env.Hello.FWVersion, Client: env.Hello.Client + " " + env.Hello.ClientVer,
		PayloadBytes: len(args.Data), Latency: hubbench.Summarise(lat), PerSecond: float64(n) / el.Seconds()}, nil
}
