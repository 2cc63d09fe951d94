package hub

// NewConnID returns a connection number from the hub's own sequence, for
// endpoints that record into this hub's wire trace (rig/dps): their entries
// then never share a connection number with a hub connection, and a
// session's trace that follows connection numbers stays exact.
func (h *Hub) NewConnID() uint64 { return h.connSeq.Add(1) }
