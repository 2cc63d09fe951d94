package sim

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net"
	"strings"
	"testing"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/rig/blob"
	"github.com/hilrun/hilrun/rig/hub/hubtest"
	"github.com/hilrun/hilrun/rig/iothub/twin"
)

func hostsOf(h *hubtest.Hub) map[string]string {
	b := h.Blob()
	return map[string]string{
		net.JoinHostPort(h.Host(), "443"): h.HTTPSAddr(),
		net.JoinHostPort(b.Host(), "443"): b.Addr(),
		net.JoinHostPort(b.Host(), "80"):  b.PlainAddr(),
	}
}

// TestOTAEngine: a new CodeVersion downloads, verifies and installs; the
// same version after a reconnect downloads nothing; a tampered file is
// not installed.
func TestOTAEngine(t *testing.T) {
	t.Parallel()
	r := newRig(t, "ota-dev", nil, nil)
	r.fw.must(agentproto.OpConfigure, agentproto.Config{Hosts: hostsOf(r.hub)}, nil)
	b := r.hub.Blob()
	data := []byte("the application")
	if err := b.Put("app.pe", data); err != nil {
		t.Fatal(err)
	}
	tok, _ := b.IssueToken(blob.TokenOptions{Permissions: "r"})
	desired := func(v int, signature string) twin.Section {
		return twin.Section{"Files": []any{map[string]any{"FileName": b.URL("app.pe"), "Signature": signature}}, "Token": tok, "CodeVersion": v}
	}
	good := signatureOf(data)
	if _, err := r.hub.UpdateDesired(r.id, desired(7, strings.ToLower(good))); err != nil {
		t.Fatal(err)
	}
	from := r.fw.mark()
	r.open()
	r.fw.waitEvent(agentproto.EvOTA, func(d json.RawMessage) bool {
		o := decode[agentproto.OTAEvent](t, d)
		return o.State == agentproto.OTACurrent && o.Installed == "7"
	}, from)
	var st agentproto.OTAStatus
	r.fw.must(agentproto.OpOTAStatus, nil, &st)
	if st.Installed != "7" || len(st.Files) != 1 || st.Files[0].Size != len(data) {
		t.Fatalf("status %+v", st)
	}
	gets := len(b.Requests())
	// Same version after a reconnect: nothing fetched.
	r.fw.must(agentproto.OpClose, agentproto.CloseArgs{Graceful: true}, nil)
	from = r.fw.mark()
	r.open()
	r.fw.waitEvent(agentproto.EvOTA, func(d json.RawMessage) bool {
		return decode[agentproto.OTAEvent](t, d).State == agentproto.OTACurrent
	}, from)
	if n := len(b.Requests()); n != gets {
		t.Fatalf("%d new storage requests for an unchanged CodeVersion", n-gets)
	}
	// A wrong signature: error, nothing installed.
	if _, err := r.hub.UpdateDesired(r.id, desired(8, signatureOf([]byte("other")))); err != nil {
		t.Fatal(err)
	}
	r.fw.must(agentproto.OpClose, agentproto.CloseArgs{Graceful: true}, nil)
	from = r.fw.mark()
	r.open()
	r.fw.waitEvent(agentproto.EvOTA, func(d json.RawMessage) bool {
		return decode[agentproto.OTAEvent](t, d).State == agentproto.OTAError
	}, from)
	r.fw.must(agentproto.OpOTAStatus, nil, &st)
	if st.Installed != "7" {
		t.Fatalf("installed %q after a mismatch", st.Installed)
	}
}

func signatureOf(data []byte) string {
	sum := sha256.Sum256(data)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var pairs []string
	for i := 0; i < len(h); i += 2 {
		pairs = append(pairs, h[i:i+2])
	}
	return strings.Join(pairs, "-")
}

// TestFileUploadClient: the three steps against the reference hub.
func TestFileUploadClient(t *testing.T) {
	t.Parallel()
	r := newRig(t, "fup-dev", nil, nil)
	r.fw.must(agentproto.OpConfigure, agentproto.Config{Hosts: hostsOf(r.hub)}, nil)
	r.open()
	var res agentproto.FileUploadResult
	r.fw.must(agentproto.OpFileUpload, agentproto.FileUploadArgs{BlobName: "a.txt", Payload: "hello"}, &res)
	if res.StartStatus != 200 || res.UploadStatus != 201 || res.NotifyStatus != 204 || res.Error != "" {
		t.Fatalf("result %+v", res)
	}
	if data, ok := r.hub.Blob().Get("fup-dev/a.txt"); !ok || string(data) != "hello" {
		t.Fatalf("blob %q", data)
	}
	if ns := r.hub.FileNotifications("fup-dev"); len(ns) != 1 || !ns[0].IsSuccess || ns[0].CorrelationID != res.CorrelationID {
		t.Fatalf("notifications %+v", ns)
	}
}
