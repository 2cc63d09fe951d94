package suites

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/rig/hub"
)

// FUP-*: IoT Hub file upload over HTTPS (002 L10928-10976). The hub's
// HTTPS side serves POST /devices/{id}/files and /files/notifications
// (rig/hub/fileupload.go), its storage endpoint receives the file; every
// request is in the wire trace. The board is asked to upload with
// file.upload and judged on the wire and at the storage endpoint.

// fupUpload asks the board for one upload; a board that cannot upload
// (no file-upload capability) has been skipped by NewSession already.
func fupUpload(ctx context.Context, s *fixtures.Session, name, payload string) (agentproto.FileUploadResult, error) {
	var res agentproto.FileUploadResult
	err := s.Call(ctx, agentproto.OpFileUpload, agentproto.FileUploadArgs{BlobName: name, Payload: payload}, &res)
	return res, err
}

// fupRequests returns the device's HTTPS requests since m.
func fupRequests(s *fixtures.Session, m fixtures.Marks) []hub.Entry {
	var out []hub.Entry
	for _, e := range s.Trace(m) {
		if e.Type == hub.TypeHTTPS || (e.Type == hub.EventWarning && e.Requirement == "FUP-001") {
			out = append(out, e)
		}
	}
	return out
}

func fupText(s *fixtures.Session, m fixtures.Marks) string {
	var b strings.Builder
	b.WriteString("HTTPS requests of the device:\n")
	for _, e := range fupRequests(s, m) {
		fmt.Fprintf(&b, "  %s %s %s %s\n", e.Time.Format("15:04:05.000"), e.Topic, e.Extra, e.Reason)
	}
	return b.String() + blobText(s, m)
}

var _ = Describe("file upload", func() {
	Conformance("starts an upload with an HTTPS POST to /devices/{id}/files carrying blobName, never the deprecated GET", []string{"FUP-001"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		m := s.Mark()
		_, err := fupUpload(ctx, s, "report.txt", "hello from "+s.ID.DeviceID)
		Expect(err).NotTo(HaveOccurred(), "FUP-001: file.upload failed\n%s", fupText(s, m))
		want := "POST /devices/" + s.ID.DeviceID + "/files"
		var post *hub.Entry
		for _, e := range fupRequests(s, m) {
			Expect(e.Type == hub.EventWarning || !strings.HasPrefix(e.Topic, "GET /devices/")).To(BeTrue(), "FUP-001: the deprecated GET form must not be used (002 L10952-10958); seen %s\n%s", e.Topic, fupText(s, m))
			Expect(e.Type).NotTo(Equal(hub.EventWarning), "FUP-001: %s\n%s", e.Reason, fupText(s, m))
			if e.Topic == want && post == nil {
				post = &e
			}
		}
		Expect(post).NotTo(BeNil(), "FUP-001: an upload starts with %s (002 L10930-10938); not seen\n%s", want, fupText(s, m))
		var body map[string]any
		Expect(json.Unmarshal(post.Payload, &body)).To(Succeed(), "FUP-001: the POST body must be JSON {\"blobName\": …} (002 L10932-10936); it was %q", post.Payload)
		Expect(body).To(HaveKeyWithValue("blobName", "report.txt"), "FUP-001: the POST body must name the file in blobName (002 L10934); it was %s", post.Payload)
	})

	Conformance("puts the file at the storage location the hub returned", []string{"FUP-002"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		m := s.Mark()
		payload := "sensor log of " + s.ID.DeviceID
		res, err := fupUpload(ctx, s, "sensor.log", payload)
		Expect(err).NotTo(HaveOccurred(), "FUP-002: file.upload failed\n%s", fupText(s, m))
		ups := s.Env.Hub.FileUploads(s.ID.DeviceID)
		Expect(ups).NotTo(BeEmpty(), "precondition: the hub issued a storage location\n%s", fupText(s, m))
		loc := ups[len(ups)-1].BlobName
		data, ok := s.Env.Hub.Blob().Get(loc)
		Expect(ok).To(BeTrue(), "FUP-002: the file must go to the returned location https://{hostName}/{containerName}/{blobName}{sasToken} (002 L10940-10950); nothing was stored at %s (device: upload status %d, %s)\n%s", loc, res.UploadStatus, res.Error, fupText(s, m))
		Expect(string(data)).To(Equal(payload), "FUP-002: the blob at %s must hold the uploaded file", loc)
	})

	Conformance("reports every upload's outcome, success or failure, to /files/notifications with its correlationId", []string{"FUP-003"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		b := s.Env.Hub.Blob()
		DeferCleanup(func() { b.FailPuts(0) })
		m := s.Mark()
		_, err := fupUpload(ctx, s, "ok.bin", "a file that uploads")
		Expect(err).NotTo(HaveOccurred(), "FUP-003: file.upload failed\n%s", fupText(s, m))
		b.FailPuts(1) // the storage answers the next PUT 500
		_, err = fupUpload(ctx, s, "fails.bin", "a file the storage refuses")
		Expect(err).NotTo(HaveOccurred(), "FUP-003: file.upload failed\n%s", fupText(s, m))
		ups := s.Env.Hub.FileUploads(s.ID.DeviceID)
		Expect(ups).To(HaveLen(2), "precondition: two uploads were started\n%s", fupText(s, m))
		notes := s.Env.Hub.FileNotifications(s.ID.DeviceID)
		byCorr := map[string]hub.FileNotification{}
		for _, n := range notes {
			byCorr[n.CorrelationID] = n
		}
		for i, u := range ups {
			n, ok := byCorr[u.CorrelationID]
			Expect(ok).To(BeTrue(), "FUP-003: every upload must be completed with a POST to /devices/{id}/files/notifications carrying its correlationId (002 L10963-10976); upload %d (%s, correlationId %s) was not notified\n%s", i+1, u.BlobName, u.CorrelationID, fupText(s, m))
			Expect(n.IsSuccess).To(Equal(i == 0), "FUP-003: isSuccess must say whether the upload worked (002 L10974); upload %d (%s) notified isSuccess=%v\n%s", i+1, u.BlobName, n.IsSuccess, fupText(s, m))
		}
		for _, e := range fupRequests(s, m) {
			if strings.HasSuffix(e.Topic, "/files/notifications") {
				Expect(e.Extra).To(Equal("status 204"), "FUP-003: the hub refused a notification (%s): %s\n%s", e.Extra, e.Reason, fupText(s, m))
			}
		}
		outstanding := 0
		for _, u := range s.Env.Hub.FileUploads(s.ID.DeviceID) {
			if !u.Notified {
				outstanding++
			}
		}
		Expect(outstanding).To(BeNumerically("<=", hub.MaxOutstandingUploads), "FUP-003: no more than 10 upload URIs may be outstanding per device (002 L13459); %d are", outstanding)
	})
})
