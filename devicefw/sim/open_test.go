package sim

import (
	"testing"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/rig/hub"
)

// client.open on an open client starts nothing and says already
// (PROTOCOL.md §4); after a stop it starts a new loop.
func TestOpenAlreadyOpen(t *testing.T) {
	t.Parallel()
	r := newRig(t, "open-twice", nil, nil)
	r.open()
	connects := len(r.entries(isType(hub.DirIn, "CONNECT")))
	before := r.fw.countEvents(agentproto.EvConn, nil)
	var st agentproto.Status
	r.fw.must(agentproto.OpOpen, nil, &st)
	if !st.Already || st.State != agentproto.StateConnected {
		t.Fatalf("client.open on a connected client: %+v, want already and connected", st)
	}
	r.fw.must(agentproto.OpEcho, agentproto.EchoArgs{Data: "x"}, nil)
	if n := r.fw.countEvents(agentproto.EvConn, nil) - before; n != 0 {
		t.Fatalf("%d conn events after client.open on an open client, want none", n)
	}
	if n := len(r.entries(isType(hub.DirIn, "CONNECT"))); n != connects {
		t.Fatalf("%d CONNECTs after the second client.open, want %d", n, connects)
	}
	r.fw.must(agentproto.OpClose, agentproto.CloseArgs{Graceful: true}, nil)
	st = agentproto.Status{}
	r.fw.must(agentproto.OpOpen, nil, &st)
	if st.Already {
		t.Fatalf("client.open after client.close: %+v, want a new loop (already false)", st)
	}
}
