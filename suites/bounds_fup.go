package suites

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/rig/hub"
)

// Boundary specs for file upload (issue 15): blob names with folders,
// spaces, reserved and non-ASCII characters; empty, one-byte and larger
// files; and every failure status the storage can answer a Put Blob with,
// through more uploads than a device may hold URIs for at once.
var _ = Describe("file upload at its boundaries", func() {
	Conformance("blob names with folders, spaces, reserved, already-encoded and non-ASCII characters are requested as given and stored at the returned location", []string{"FUP-001", "FUP-002"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		for i, name := range []string{
			"plain.txt",
			"logs/2026/12/run 1.txt",
			"a+b=c&d;e,f(1).txt",
			"already%20encoded%2Fname.txt",
			"données/Größe-日本.bin",
		} {
			m := s.Mark()
			payload := fmt.Sprintf("file %d of %s", i, s.ID.DeviceID)
			res, err := fupUpload(ctx, s, name, payload)
			Expect(err).NotTo(HaveOccurred(), "FUP-001: file.upload of %q failed\n%s", name, fupText(s, m))
			var post *hub.Entry
			for _, e := range fupRequests(s, m) {
				if e.Type == hub.TypeHTTPS && e.Topic == "POST /devices/"+s.ID.DeviceID+"/files" {
					post = &e
					break
				}
			}
			Expect(post).NotTo(BeNil(), "FUP-001: expected the upload of %q to start with POST /devices/%s/files (002 L10930-10938); not seen\n%s", name, s.ID.DeviceID, fupText(s, m))
			var body map[string]any
			Expect(json.Unmarshal(post.Payload, &body)).To(Succeed(), "FUP-001: the POST body must be JSON {\"blobName\": …} (002 L10932-10936); it was %q", post.Payload)
			Expect(body).To(HaveKeyWithValue("blobName", name), "FUP-001: expected blobName %q, the file's name as given (002 L10934); the POST body was %s\n%s", name, post.Payload, fupText(s, m))
			ups := s.Env.Hub.FileUploads(s.ID.DeviceID)
			Expect(ups).NotTo(BeEmpty(), "precondition: the hub issued a storage location for %q\n%s", name, fupText(s, m))
			loc := ups[len(ups)-1].BlobName
			data, ok := s.Env.Hub.Blob().Get(loc)
			Expect(ok).To(BeTrue(), "FUP-002: expected the file %q at the returned location https://{hostName}/{containerName}/{blobName}{sasToken} with blobName %q (002 L10940-10950); nothing is stored there (device: upload status %d, %s)\n%s", name, loc, res.UploadStatus, res.Error, fupText(s, m))
			Expect(string(data)).To(Equal(payload), "FUP-002: the blob at %s must hold the uploaded file", loc)
		}
	})

	Conformance("empty, one-byte and 256 KiB files are stored whole at the returned location", []string{"FUP-002"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		for i, size := range []int{0, 1, 256 << 10} {
			m := s.Mark()
			name := fmt.Sprintf("size-%d.bin", size)
			gen := &agentproto.Gen{Size: size, Seed: uint32(i + 7)}
			var res agentproto.FileUploadResult
			err := s.Call(ctx, agentproto.OpFileUpload, agentproto.FileUploadArgs{BlobName: name, Gen: gen}, &res)
			Expect(err).NotTo(HaveOccurred(), "FUP-002: file.upload of %d bytes failed\n%s", size, fupText(s, m))
			ups := s.Env.Hub.FileUploads(s.ID.DeviceID)
			Expect(ups).NotTo(BeEmpty(), "precondition: the hub issued a storage location for %s\n%s", name, fupText(s, m))
			loc := ups[len(ups)-1].BlobName
			data, ok := s.Env.Hub.Blob().Get(loc)
			Expect(ok).To(BeTrue(), "FUP-002: expected the %d-byte file at the returned location %s (002 L10940-10950); nothing is stored there (device: upload status %d, %s)\n%s", size, loc, res.UploadStatus, res.Error, fupText(s, m))
			want := agentproto.Generate(size, gen.Seed)
			Expect(bytes.Equal(data, want)).To(BeTrue(), "FUP-002: expected the blob at %s to hold the whole %d-byte file; it holds %d bytes\n%s", loc, size, len(data), fupText(s, m))
		}
	})

	Conformance("twelve uploads in a row, the storage answering 201, 403, 404, 413, 500 and 503, are each notified with their correlationId, isSuccess and the storage's status; never more than 10 URIs are outstanding", []string{"FUP-003"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		b := s.Env.Hub.Blob()
		DeferCleanup(func() { b.FailPuts(0) })
		for i, st := range []int{201, 500, 201, 503, 403, 201, 404, 201, 413, 201, 201, 500} {
			m := s.Mark()
			if st != 201 {
				b.FailPutsWith(1, st)
			} else {
				b.FailPuts(0)
			}
			name := fmt.Sprintf("upload-%02d.bin", i+1)
			res, err := fupUpload(ctx, s, name, fmt.Sprintf("upload %d", i+1))
			Expect(err).NotTo(HaveOccurred(), "FUP-003: file.upload %d failed\n%s", i+1, fupText(s, m))
			ups := s.Env.Hub.FileUploads(s.ID.DeviceID)
			Expect(res.StartStatus).To(Equal(200), "FUP-003: upload %d: the hub refused a storage location (status %d): more than 10 URIs outstanding? (002 L13459)\n%s", i+1, res.StartStatus, fupText(s, m))
			Expect(ups).NotTo(BeEmpty(), "precondition: the hub issued a storage location for upload %d\n%s", i+1, fupText(s, m))
			u := ups[len(ups)-1]
			var note *hub.FileNotification
			for _, n := range s.Env.Hub.FileNotifications(s.ID.DeviceID) {
				if n.CorrelationID == u.CorrelationID {
					n := n
					note = &n
				}
			}
			Expect(note).NotTo(BeNil(), "FUP-003: upload %d (storage answered %d) must be completed with a POST to /devices/{id}/files/notifications carrying its correlationId %s (002 L10963-10976); not seen\n%s", i+1, st, u.CorrelationID, fupText(s, m))
			Expect(note.IsSuccess).To(Equal(st == 201), "FUP-003: upload %d: expected isSuccess=%v for a storage answer %d (002 L10974); seen %v\n%s", i+1, st == 201, st, note.IsSuccess, fupText(s, m))
			Expect(note.StatusCode).To(Equal(st), "FUP-003: upload %d: expected statusCode %d, the status of the upload to storage (002 L10974); seen %d\n%s", i+1, st, note.StatusCode, fupText(s, m))
			outstanding := 0
			for _, u := range s.Env.Hub.FileUploads(s.ID.DeviceID) {
				if !u.Notified {
					outstanding++
				}
			}
			Expect(outstanding).To(BeNumerically("<=", hub.MaxOutstandingUploads), "FUP-003: after upload %d, %d upload URIs are outstanding; at most 10 may be (002 L13459)\n%s", i+1, outstanding, fupText(s, m))
		}
		for _, e := range s.Trace(s.Start()) {
			if e.Type == hub.TypeHTTPS && strings.HasSuffix(e.Topic, "/files/notifications") {
				Expect(e.Extra).To(Equal("status 204"), "FUP-003: the hub refused a notification (%s): %s", e.Extra, e.Reason)
			}
		}
	})
})
