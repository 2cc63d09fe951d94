package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/spf13/cobra"

	"github.com/hilrun/hilrun/rig/hub/hubbench"
)

// newBenchCmd is `hilrun bench`: the reference hub at fleet scale, against
// Mosquitto in the same run (rig/hub/hubbench), or the agent round trip
// over the pty (--agent).
func newBenchCmd() *cobra.Command {
	var o hubbench.Options
	var tls13, asJSON bool
	var agent int
	var agentImage string
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmark the reference hub with N SAS devices (and Mosquitto, same run), or the agent round trip",
		Long: `bench drives the reference hub, in this process, with N SAS-authenticated
devices over real TLS on 127.0.0.1 from a load generator in a child process:
QoS 1 telemetry (one message in flight per device), twin reported patches,
direct methods and C2D messages. It prints throughput, latency percentiles
(p50/p90/p99) and the hub's memory per connection (Go heap and stacks added
per connection after GC, and RSS). When Mosquitto is installed it runs the
same QoS 1 telemetry load against a Mosquitto it starts itself and prints
the ratio hub/mosquitto. CPU use of broker and generator during telemetry
shows which side was the limit.

--hold keeps every connection open that long and measures memory again
(e.g. --devices 10000 --hold 1m). --agent N instead measures N echo round
trips over the pty to the virtual board's firmware (Go, or --image for the
C firmware's host build).

Figures, not asserts: nothing here fails on speed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			out := cmd.OutOrStdout()
			progress := cmd.ErrOrStderr()
			if !asJSON {
				progress = out
			}
			if agent > 0 {
				return runAgentBench(ctx, out, progress, agent, agentImage, asJSON)
			}
			if tls13 {
				o.TLSMax = 0x0304
			}
			o.Progress = progress
			res, err := hubbench.Run(ctx, o)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			printBench(out, res)
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Devices, "devices", 100, "concurrent SAS device connections")
	f.DurationVar(&o.Duration, "duration", 5*time.Second, "telemetry phase length per broker (ignored with --messages)")
	f.IntVar(&o.Messages, "messages", 0, "telemetry messages per device instead of --duration")
	f.IntVar(&o.Payload, "payload", 256, "telemetry payload bytes")
	f.StringVar(&o.Mosquitto, "mosquitto", "auto", "Mosquitto baseline: auto (when installed), off, or the binary's path")
	f.IntVar(&o.Twin, "twin", 2, "twin reported patches per device")
	f.IntVar(&o.ServiceOps, "service-ops", 1000, "direct method calls, and C2D messages, sent by the service side")
	f.DurationVar(&o.Hold, "hold", 0, "keep all connections open this long after the load, then measure memory again")
	f.IntVar(&o.Rounds, "rounds", 6, "telemetry rounds, alternating hub and Mosquitto (each gets --duration in total)")
	f.BoolVar(&o.Mochi, "mochi", false, "also measure a bare mochi-mqtt server (the library the hub is built on) in the same rounds")
	f.IntVar(&o.Sources, "sources", 0, "spread client sockets over 127.0.0.1…127.0.0.N")
	f.BoolVar(&tls13, "tls13", false, "negotiate TLS 1.3 (default TLS 1.2, as most device stacks)")
	f.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of the hub's telemetry phase to this file")
	f.StringVar(&o.MemProfile, "memprofile", "", "write a heap profile of the hub once all devices are connected to this file")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON on stdout (progress goes to stderr)")
	f.IntVar(&agent, "agent", 0, "measure N agent echo round trips over the pty instead")
	f.StringVar(&agentImage, "image", "", "with --agent: a firmware executable for the virtual board (the C firmware's host build); default the Go firmware")
	return cmd
}

// newBenchLoadCmd is the load generator process `hilrun bench` starts.
func newBenchLoadCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "bench-load",
		Short:  "Load generator of hilrun bench (JSON on stdin/stdout)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return hubbench.ServeLoad(cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
}

func printBench(w io.Writer, r *hubbench.Result) {
	fmt.Fprintf(w, "\nhilrun bench: %d devices, %s, %d-byte payloads, QoS 1, GOMAXPROCS %d, open files %d\n",
		r.Devices, r.TLS, r.Payload, r.GOMAXPROCS, r.OpenFiles)
	row := func(name string, o hubbench.Op, unit string) {
		if o.Count == 0 && o.Errors == 0 {
			return
		}
		fmt.Fprintf(w, "  %-22s %9.0f %-9s %s", name, o.PerSecond, unit, o.Latency)
		if o.Errors > 0 {
			fmt.Fprintf(w, "  [%d errors, first: %s]", o.Errors, o.First)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, " %s\n", r.Hub.Name)
	row("connect", r.Hub.Connect, "conn/s")
	row("telemetry QoS 1", r.Hub.Telemetry, "msg/s")
	row("twin reported", r.Twin, "patch/s")
	row("direct methods", r.Methods, "call/s")
	row("C2D (to completion)", r.C2D, "msg/s")
	fmt.Fprintf(w, "  %-22s heap %.1f KB + stacks %.1f KB; RSS %.1f KB (process RSS %.0f MB)\n", "memory per connection",
		r.Hub.Memory.HeapPerConn/1024, r.Hub.Memory.StackPerConn/1024, r.Hub.Memory.RSSPerConn/1024, float64(r.Hub.Memory.RSSBytes)/(1<<20))
	if r.Hold != nil {
		fmt.Fprintf(w, "  %-22s %d/%d connected; heap %.1f KB + stacks %.1f KB; RSS %.1f KB per connection\n", "after hold "+r.Hold.Duration.String(),
			r.Hold.Connected, r.Devices, r.Hold.Memory.HeapPerConn/1024, r.Hold.Memory.StackPerConn/1024, r.Hold.Memory.RSSPerConn/1024)
	}
	fmt.Fprintf(w, "  %-22s hub %.2f cores, generator %.2f cores\n", "cpu during telemetry", r.Hub.BrokerCPU, r.Hub.GeneratorCPU)
	fmt.Fprintf(w, "  %-22s %d entries (%d dropped by the bound); telemetry %d stored (%d dropped)\n", "trace",
		r.TraceEntries, r.TraceDropped, r.TelemetryStored, r.TelemetryDropped)
	if m := r.Mochi; m != nil {
		fmt.Fprintf(w, " %s\n", m.Name)
		row("telemetry QoS 1", m.Telemetry, "msg/s")
		fmt.Fprintf(w, "  %-22s heap %.1f KB + stacks %.1f KB\n", "memory per connection", m.Memory.HeapPerConn/1024, m.Memory.StackPerConn/1024)
		fmt.Fprintf(w, "  %-22s mochi %.2f cores, generator %.2f cores\n", "cpu during telemetry", m.BrokerCPU, m.GeneratorCPU)
		fmt.Fprintf(w, " ratio hub/bare mochi-mqtt, QoS 1 telemetry throughput: %.2f\n", r.MochiRatio)
	}
	if m := r.Mosquitto; m != nil {
		fmt.Fprintf(w, " %s\n", m.Name)
		row("connect", m.Connect, "conn/s")
		row("telemetry QoS 1", m.Telemetry, "msg/s")
		fmt.Fprintf(w, "  %-22s RSS %.1f KB (process RSS %.0f MB)\n", "memory per connection", m.Memory.RSSPerConn/1024, float64(m.Memory.RSSBytes)/(1<<20))
		fmt.Fprintf(w, "  %-22s mosquitto %.2f cores, generator %.2f cores\n", "cpu during telemetry", m.BrokerCPU, m.GeneratorCPU)
		fmt.Fprintf(w, " ratio hub/mosquitto, QoS 1 telemetry throughput: %.2f\n", r.Ratio)
	} else {
		fmt.Fprintf(w, " mosquitto: %s\n", r.MosquittoNote)
	}
}
