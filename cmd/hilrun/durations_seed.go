package main

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hilrun/hilrun/suites"
)

// The durations seed is a checked-in copy of the virtual boards' measured
// spec durations (durations_seed.json, embedded): a sharded run on a
// machine whose durations file has never timed a spec (a fresh clone, a CI
// runner) still balances its shards by time, not by count. The user's own
// measurements always win; the seed only fills the specs they lack.
// `hilrun durations seed --out cmd/hilrun/durations_seed.json` rewrites it
// from the durations file (after a `hilrun run --shards 1`, say).

//go:embed durations_seed.json
var durationsSeedJSON []byte

// seedKinds are the board kinds the seed keeps: the virtual ones (the Go
// and C firmware, other images, the SDK boards), the same on every host;
// an inventory board's timings are its own.
func seedKind(key string) bool {
	return key == "sim" || strings.HasPrefix(key, "sim/") || strings.HasPrefix(key, "sim:") || strings.HasPrefix(key, "sim+") || strings.HasPrefix(key, sdkBoardPrefix)
}

// durationsSeed is the embedded seed (nil when it does not parse: the
// runs then balance by count, as before it existed).
func durationsSeed() *durationsFile {
	var d durationsFile
	if json.Unmarshal(durationsSeedJSON, &d) != nil || d.Version != 1 {
		return nil
	}
	return &d
}

// withSeed returns the file with every spec it has not timed, in a seed
// profile, taken from the seed, and how many entries came from the seed.
func (d *durationsFile) withSeed(seed *durationsFile) (*durationsFile, int) {
	if seed == nil {
		return d, 0
	}
	out := &durationsFile{Version: d.Version, Profiles: map[string]map[string]float64{}, Boards: d.Boards}
	for k, m := range d.Profiles {
		out.Profiles[k] = maps.Clone(m)
	}
	n := 0
	for k, sm := range seed.Profiles {
		m := out.Profiles[k]
		if m == nil {
			m = map[string]float64{}
			out.Profiles[k] = m
		}
		for name, ms := range sm {
			if _, ok := m[name]; !ok {
				m[name] = ms
				n++
			}
		}
	}
	return out, n
}

// seedFrom builds a seed from a durations file: the virtual board kinds'
// profiles, only specs the suite has now (names), rounded to milliseconds.
func seedFrom(d *durationsFile, names []string) *durationsFile {
	out := &durationsFile{Version: 1, Profiles: map[string]map[string]float64{}}
	for k, m := range d.Profiles {
		if !seedKind(k) {
			continue
		}
		p := map[string]float64{}
		for _, n := range names {
			if ms, ok := m[n]; ok {
				p[n] = math.Round(ms)
			}
		}
		if len(p) > 0 {
			out.Profiles[k] = p
		}
	}
	return out
}

func newDurationsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "durations",
		Short: "The spec durations that balance sharded runs (the durations file and its checked-in seed)",
	}
	var from, out string
	seed := &cobra.Command{
		Use:   "seed",
		Short: "Write the durations seed (the virtual boards' spec durations) from the durations file",
		Long: `seed writes the virtual boards' profiles of the durations file (--from,
default $HILRUN_DURATIONS, else <user cache dir>/hilrun/durations.json)
for the specs the suite has now, as the seed embedded in hilrun
(cmd/hilrun/durations_seed.json): a sharded run uses a seed entry for every
spec its own durations file has not timed. Refresh it after the suite
changes, from runs on an otherwise idle machine:

  hilrun run --shards 1 && hilrun run --firmware c --shards 1 && hilrun run --cloud aws
  hilrun run --board sdk:azure-iot-node --shards 1 && hilrun run --board sdk:azure-iot-python --shards 1
  hilrun durations seed --out cmd/hilrun/durations_seed.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			all, err := suites.List("", nil)
			if err != nil {
				return &exitError{2, err.Error()}
			}
			names := make([]string, len(all))
			for i, s := range all {
				names[i] = s.Name
			}
			path := durationsPath(from)
			s := seedFrom(loadDurations(path), names)
			b, err := json.MarshalIndent(s, "", " ")
			if err != nil {
				return err
			}
			b = append(b, '\n')
			for _, k := range slices.Sorted(maps.Keys(s.Profiles)) {
				fmt.Fprintf(cmd.ErrOrStderr(), "%-24s %3d of %d specs\n", k, len(s.Profiles[k]), len(names))
			}
			if out == "" || out == "-" {
				_, err = cmd.OutOrStdout().Write(b)
				return err
			}
			return os.WriteFile(out, b, 0o644)
		},
	}
	seed.Flags().StringVar(&from, "from", "", "durations file to read (default $HILRUN_DURATIONS, else <user cache dir>/hilrun/durations.json)")
	seed.Flags().StringVar(&out, "out", "", "write the seed here (default: standard output)")
	cmd.AddCommand(seed)
	return cmd
}
