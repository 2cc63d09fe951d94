package hub_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/hub/hubtest"
	"github.com/hilrun/hilrun/rig/iothub"
)

// deviceHTTPS is a device's HTTPS client for the hub and the storage
// endpoint: it dials the rig's listeners for the public host names.
func deviceHTTPS(h *hubtest.Hub) *http.Client {
	tc := h.TLSConfig()
	tc.ServerName = ""
	tr := &http.Transport{TLSClientConfig: tc}
	tr.Dial = func(_, addr string) (net.Conn, error) {
		host, _, _ := net.SplitHostPort(addr)
		if host == h.Blob().Host() {
			return net.Dial("tcp", h.Blob().Addr())
		}
		return net.Dial("tcp", h.HTTPSAddr())
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func call(t *testing.T, c *http.Client, method, url, auth string, body []byte, hdr ...string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

func TestFileUploadFlow(t *testing.T) {
	h := hubtest.Start(t)
	d := h.AddSASDevice("fup-dev")
	id := iothub.Identity{DeviceID: "fup-dev"}
	tok := h.Token(hubtest.Device{Identity: id, Key: d.Authentication.SymmetricKey.PrimaryKey})
	c := deviceHTTPS(h)
	base := "https://" + h.Host() + "/devices/fup-dev/files"

	st, b := call(t, c, "POST", base, tok, []byte(`{"blobName":"log.txt"}`))
	if st != 200 {
		t.Fatalf("POST files: %d %s", st, b)
	}
	var a struct{ CorrelationID, HostName, ContainerName, BlobName, SasToken string }
	if err := json.Unmarshal(b, &a); err != nil || a.CorrelationID == "" || a.BlobName != "fup-dev/log.txt" || !strings.HasPrefix(a.SasToken, "?") {
		t.Fatalf("answer %s (%v)", b, err)
	}
	url := "https://" + a.HostName + "/" + a.ContainerName + "/" + a.BlobName + a.SasToken
	if st, b := call(t, c, "PUT", url, "", []byte("file body"), "x-ms-blob-type", "BlockBlob"); st != 201 {
		t.Fatalf("PUT blob: %d %s", st, b)
	}
	note := []byte(`{"correlationId":"` + a.CorrelationID + `","isSuccess":true,"statusCode":200,"statusDescription":"ok"}`)
	if st, b := call(t, c, "POST", base+"/notifications", tok, note); st != 204 {
		t.Fatalf("notification: %d %s", st, b)
	}
	ns := h.FileNotifications("fup-dev")
	if len(ns) != 1 || !ns[0].IsSuccess || !ns[0].Uploaded || ns[0].BlobName != "fup-dev/log.txt" {
		t.Fatalf("notifications %+v", ns)
	}
	if data, ok := h.Blob().Get("fup-dev/log.txt"); !ok || string(data) != "file body" {
		t.Fatalf("blob %q %v", data, ok)
	}
	// Refusals, never a crash.
	other := h.AddSASDevice("fup-other")
	otherTok := h.Token(hubtest.Device{Identity: iothub.Identity{DeviceID: "fup-other"}, Key: other.Authentication.SymmetricKey.PrimaryKey})
	cases := []struct {
		name, url, auth string
		body            []byte
		status          int
	}{
		{"no token", base, "", []byte(`{"blobName":"x"}`), 401},
		{"other device's token", base, otherTok, []byte(`{"blobName":"x"}`), 401},
		{"garbage token", base, "SharedAccessSignature sig=%%", []byte(`{"blobName":"x"}`), 401},
		{"not JSON", base, tok, []byte(`blobName=x`), 400},
		{"no blobName", base, tok, []byte(`{}`), 400},
		{"traversal", base, tok, []byte(`{"blobName":"../../etc"}`), 400},
		{"oversized", base, tok, append([]byte(`{"blobName":"`), bytes.Repeat([]byte("a"), 70000)...), 413},
		{"unknown correlation", base + "/notifications", tok, []byte(`{"correlationId":"nope","isSuccess":true,"statusCode":200,"statusDescription":""}`), 400},
		{"repeated notification", base + "/notifications", tok, note, 400},
		{"notification not JSON", base + "/notifications", tok, []byte(`[1,2`), 400},
	}
	for _, tc := range cases {
		if st, b := call(t, c, "POST", tc.url, tc.auth, tc.body); st != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, st, b, tc.status)
		}
	}
	// At most 10 outstanding SAS URIs per device (002 L13459).
	for i := 0; i < hub.MaxOutstandingUploads; i++ {
		if st, b := call(t, c, "POST", base, tok, []byte(`{"blobName":"n"}`)); st != 200 {
			t.Fatalf("upload %d: %d %s", i, st, b)
		}
	}
	if st, b := call(t, c, "POST", base, tok, []byte(`{"blobName":"n"}`)); st != 403 || !strings.Contains(string(b), "DeviceMaximumActiveFileUploadLimitExceeded") {
		t.Fatalf("11th upload: %d %s", st, b)
	}
	var https, blobs int
	for _, e := range h.Trace().ForClient("fup-dev") {
		switch e.Type {
		case hub.TypeHTTPS:
			https++
		case hub.EventBlob:
			blobs++
		}
	}
	if https < 3 || blobs != 1 {
		t.Fatalf("trace: %d HTTPS entries, %d blob entries\n%s", https, blobs, h.TraceSummary("fup-dev"))
	}
}
