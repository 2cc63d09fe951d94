package hub

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestChunkLogMatchesSlice checks the chunked log against the plain slice it
// replaced in the trace and the telemetry store: the same elements in the
// same order after any mix of appends and drops of the oldest, across chunk
// boundaries.
func TestChunkLogMatchesSlice(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var l chunkLog[int]
	var want []int
	next := 0
	for step := range 2000 {
		if rng.IntN(10) < 6 {
			for range rng.IntN(3 * chunkSize / 2) {
				l.push(next)
				want = append(want, next)
				next++
			}
		} else {
			k := rng.IntN(3*chunkSize + 1)
			l.dropFront(k)
			want = want[min(k, len(want)):]
		}
		if l.len() != len(want) {
			t.Fatalf("step %d: len %d, want %d", step, l.len(), len(want))
		}
		if step%3 == 0 || l.len() < 3 {
			var got []int
			l.each(func(v *int) { got = append(got, *v) })
			if !slices.Equal(got, want) {
				t.Fatalf("step %d: elements differ (got %d, want %d)", step, len(got), len(want))
			}
		}
	}
}

// TestTraceLimitDropsOldestTenth checks the trace's size bound: at the limit
// the oldest tenth goes in one step and Dropped counts it.
func TestTraceLimitDropsOldestTenth(t *testing.T) {
	for _, limit := range []int{1, 5, 10, 1000, 3 * chunkSize} {
		tr := newTrace(limit, nil)
		var want []uint64 // Seq of the entries kept, by the old slice rule
		var dropped uint64
		for i := range 5*limit + 7 {
			if len(want) >= limit {
				n := max(1, limit/10)
				dropped += uint64(n)
				want = want[n:]
			}
			want = append(want, uint64(i+1))
			tr.add(Entry{Dir: DirEvent, Type: EventWarning})
		}
		var got []uint64
		for _, e := range tr.Entries(nil) {
			got = append(got, e.Seq)
		}
		if !slices.Equal(got, want) || tr.Dropped() != dropped {
			t.Fatalf("limit %d: kept %d entries (first %v), dropped %d; want %d (first %v), dropped %d",
				limit, len(got), got[:min(3, len(got))], tr.Dropped(), len(want), want[:min(3, len(want))], dropped)
		}
	}
}
