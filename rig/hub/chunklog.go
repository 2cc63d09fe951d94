package hub

// chunkSize is how many elements one chunk of a chunkLog holds.
const chunkSize = 512

// chunkLog is an ordered sequence that grows at the back and shrinks at the
// front, stored in fixed-size chunks. The wire trace and the telemetry store
// append one element per packet: a plain slice would copy every element it
// holds each time it grows (and, at its size limit, each time the oldest
// tenth is dropped), which made appending the hub's main cost per PUBLISH.
// Here an element is written once and never moved; dropping the oldest
// releases whole chunks. It is not safe for concurrent use.
//
// Its owners append under a mutex that every connection contends for, so
// the one costly step, allocating a chunk, can be done outside it: when
// needChunk says so, allocate with newChunk and hand it over with
// addChunk before the push.
type chunkLog[T any] struct {
	chunks [][]T // every chunk has cap chunkSize; all but the last are full
	head   int   // index of the oldest element in chunks[0]
	n      int   // number of elements
	spare  []T   // a fresh chunk for the next push that needs one
}

func newChunk[T any]() []T { return make([]T, 0, chunkSize) }

func (l *chunkLog[T]) len() int { return l.n }

// needChunk reports whether the next push needs a chunk that is not there.
func (l *chunkLog[T]) needChunk() bool {
	last := len(l.chunks) - 1
	return l.spare == nil && (last < 0 || len(l.chunks[last]) == chunkSize)
}

// addChunk gives the log a fresh chunk from newChunk for a later push.
func (l *chunkLog[T]) addChunk(c []T) {
	if l.spare == nil {
		l.spare = c
	}
}

// push appends v.
func (l *chunkLog[T]) push(v T) {
	last := len(l.chunks) - 1
	if last < 0 || len(l.chunks[last]) == chunkSize {
		c := l.spare
		l.spare = nil
		if c == nil {
			c = newChunk[T]()
		}
		l.chunks = append(l.chunks, c)
		last++
	}
	l.chunks[last] = append(l.chunks[last], v)
	l.n++
}

// at is the i-th element, oldest first (0 ≤ i < len).
func (l *chunkLog[T]) at(i int) *T {
	j := l.head + i
	return &l.chunks[j/chunkSize][j%chunkSize]
}

// dropFront removes the k oldest elements (all when k ≥ len).
func (l *chunkLog[T]) dropFront(k int) { l.dropFrontEach(k, nil) }

// dropFrontEach is dropFront calling fn (when not nil) with each element
// before it goes.
func (l *chunkLog[T]) dropFrontEach(k int, fn func(*T)) {
	k = min(k, l.n)
	if fn != nil {
		for i := range k {
			fn(l.at(i))
		}
	}
	for k > 0 {
		c := l.chunks[0]
		live := len(c) - l.head
		if k < live {
			clear(c[l.head : l.head+k]) // release what the elements point to
			l.head += k
			l.n -= k
			return
		}
		l.chunks[0] = nil // the whole chunk goes to the collector
		l.chunks = l.chunks[1:]
		l.head = 0
		l.n -= live
		k -= live
	}
}

// each calls fn with a pointer to every element, oldest first.
func (l *chunkLog[T]) each(fn func(*T)) {
	for i, c := range l.chunks {
		start := 0
		if i == 0 {
			start = l.head
		}
		for j := start; j < len(c); j++ {
			fn(&c[j])
		}
	}
}
