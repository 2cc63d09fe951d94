package hub

// keyCount is what a bounded log knows about one key's elements (a trace
// client ID, a telemetry identity): how many are live and the sequence
// number from which its oldest live one is to be searched.
type keyCount struct {
	live   int
	cursor uint64
}

// sequenced is an element of a bounded log: consecutive sequence numbers
// (so the element with Seq s sits at index s − first), a key, and a
// tombstone set when the per-key bound removed it.
type sequenced[K comparable] interface {
	seq() uint64
	key() K
	isGone() bool
	bury() // clear the element, keep Seq, mark it gone
}

// keyBound caps the live elements one key may hold in a chunkLog whose
// elements carry consecutive sequence numbers: when a key goes over its
// limit, its oldest live element is replaced by a tombstone (readers skip
// it; its slot goes with the global bound), so one chatty device cannot
// push every other device's records out of the global bound. The zero
// key is never bounded (hub-wide entries).
type keyBound[K comparable] struct {
	limit int
	keys  map[K]*keyCount
}

// addedTo accounts for el, just pushed as the newest element of l, and
// returns the element to bury, nil while el's key is within its limit.
// The common case is one map lookup; the key and sequence number come in
// as arguments so that it makes no calls through el.
func addedTo[K comparable, T any, PT interface {
	*T
	sequenced[K]
}](b *keyBound[K], l *chunkLog[T], k K, seq uint64) PT {
	var zero K
	if b.limit <= 0 || k == zero {
		return nil
	}
	kc := b.keys[k]
	if kc == nil {
		if b.keys == nil {
			b.keys = map[K]*keyCount{}
		}
		kc = &keyCount{cursor: seq}
		b.keys[k] = kc
	}
	kc.live++
	if kc.live <= b.limit {
		return nil
	}
	first := PT(l.at(0)).seq()
	for s := max(kc.cursor, first); s <= seq; s++ {
		cand := PT(l.at(int(s - first)))
		if !cand.isGone() && cand.key() == k {
			kc.live--
			kc.cursor = s + 1
			return cand
		}
	}
	return nil
}

// droppedFrom accounts for an element the global bound removed.
func droppedFrom[K comparable, PT sequenced[K]](b *keyBound[K], el PT) {
	var zero K
	if b.limit <= 0 || el.isGone() || el.key() == zero {
		return
	}
	if kc := b.keys[el.key()]; kc != nil {
		kc.live--
		if kc.live <= 0 {
			delete(b.keys, el.key())
		}
	}
}
