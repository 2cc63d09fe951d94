package hub

import (
	"testing"
)

// FuzzFileUploadBodies feeds arbitrary bodies to the file-upload start and
// notification parsers: a refusal or an answer, never a panic, and no
// upload URI without a blobName.
func FuzzFileUploadBodies(f *testing.F) {
	h, err := Start(Config{Host: "fuzz.azure-devices.net", MQTTAddr: "127.0.0.1:0", HTTPSAddr: "off"})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = h.Close() })
	f.Add([]byte(`{"blobName":"a.txt"}`))
	f.Add([]byte(`{"correlationId":"x","isSuccess":true,"statusCode":200,"statusDescription":"ok"}`))
	f.Add([]byte(`{"blobName":"../x"}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, body []byte) {
		a, err := h.issueUpload("fuzz-dev", body)
		if err == nil && (a == nil || a.BlobName == "" || a.CorrelationID == "") {
			t.Fatalf("answer %+v for %q", a, body)
		}
		_ = h.fileNotified("fuzz-dev", body)
		// Keep the outstanding URIs from reaching the limit.
		h.files.mu.Lock()
		for _, u := range h.files.issued {
			u.Notified = true
		}
		h.files.mu.Unlock()
	})
}
