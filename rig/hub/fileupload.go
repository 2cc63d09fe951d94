package hub

// IoT Hub file upload (FUP-001..003) and the storage endpoint it hands out
// (rig/blob), which also serves OTA files (OTA-003).
//
// Device side, on the hub's HTTPS listener, authenticated with the
// device's SAS token in the Authorization header as IoT Hub's device REST
// API is (sr = {host}/devices/{deviceId}):
//
//   - POST /devices/{id}/files {"blobName": …} → {correlationId, hostName,
//     containerName, blobName ("{deviceId}/{blobName}"), sasToken ("?…")}
//     (002 L10930-10950); at most 10 SAS URIs outstanding per device
//     (002 L13459), beyond that 403 DeviceMaximumActiveFileUploadLimitExceeded;
//   - POST /devices/{id}/files/notifications {correlationId, isSuccess,
//     statusCode, statusDescription} → 204 (002 L10963-10976);
//   - GET /devices/{id}/files/{name}, the deprecated form (002 L10952-10958),
//     is answered like the POST and traced as a FUP-001 warning.
//
// Every such request is a trace entry (Type TypeHTTPS, Dir in) of the
// device, with the body masked. The service side reads notifications
// (FileNotifications, GET /hilrun/files/notifications) and the blobs
// (Blob(), PUT/GET /hilrun/blobs/{name}).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hilrun/hilrun/certs"
	"github.com/hilrun/hilrun/rig/blob"
	"github.com/hilrun/hilrun/rig/iothub"
)

// Trace entry types of the hub's HTTPS device API and the storage endpoint.
const (
	TypeHTTPS = "HTTPS" // a device request on the HTTPS listener (Topic "METHOD path", Payload the body, Extra the status)
	EventBlob = "blob"  // a request at the storage endpoint (AddExternal; Extra is blob.MarshalRequest)
)

// File upload limits and values.
const (
	// MaxOutstandingUploads is the number of SAS URIs a device may hold at
	// one time (002 L13459).
	MaxOutstandingUploads = 10
	// uploadSASLifetime is how long an issued upload SAS URI is valid
	// (IoT Hub's default file-upload SAS TTL, one hour).
	uploadSASLifetime = time.Hour
	// maxKeptUploads is the storage account's limit on outstanding SAS
	// URIs (002 L13459); it also bounds what the hub remembers.
	maxKeptUploads = 10000
	// maxFileBody bounds a file-upload request body.
	maxFileBody = 64 << 10
)

var errUploadLimit = restCode{http.StatusForbidden, "DeviceMaximumActiveFileUploadLimitExceeded", 403006}

// FileNotification is a completed-upload notification a device sent.
type FileNotification struct {
	Seq               uint64    `json:"seq"`
	DeviceID          string    `json:"deviceId"`
	CorrelationID     string    `json:"correlationId"`
	BlobName          string    `json:"blobName"` // as issued, "{deviceId}/{name}"; empty for an unknown correlationId
	BlobURI           string    `json:"blobUri,omitempty"`
	IsSuccess         bool      `json:"isSuccess"`
	StatusCode        int       `json:"statusCode"`
	StatusDescription string    `json:"statusDescription"`
	Uploaded          bool      `json:"uploaded"` // the blob was stored at the endpoint when the notification came
	EnqueuedTime      time.Time `json:"enqueuedTimeUtc"`
}

// FileUpload is an upload SAS URI the hub issued.
type FileUpload struct {
	DeviceID      string    `json:"deviceId"`
	CorrelationID string    `json:"correlationId"`
	BlobName      string    `json:"blobName"`
	Issued        time.Time `json:"issued"`
	Expires       time.Time `json:"expires"`
	Notified      bool      `json:"notified"`
}

type fileState struct {
	mu     sync.Mutex
	blob   *blob.Server
	issued []*FileUpload // every upload URI issued, in order
	notes  []FileNotification
	seq    uint64
}

// startBlob starts the storage endpoint (Config.BlobAddr, "off" disables),
// with a server certificate for its host from the hub's PKI, and puts its
// request log into the wire trace.
func (h *Hub) startBlob() error {
	if h.cfg.BlobAddr == "off" {
		return nil
	}
	host := h.cfg.BlobHost
	if host == "" {
		host = blob.DefaultHost
	}
	cert := *h.cert.Load()
	if h.pki != nil && h.pki.Intermediate != nil && h.pki.Intermediate.Key != nil {
		o, err := certs.HubServerOptions(host, certs.ECDSAP256)
		if err != nil {
			return err
		}
		leaf, err := h.pki.Intermediate.IssueServer(o)
		if err != nil {
			return fmt.Errorf("issue the storage endpoint's certificate: %w", err)
		}
		cert = leaf.TLSCertificate()
	}
	addr := h.cfg.BlobAddr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	// The plaintext trap (OTA-008) listens on the same host.
	plain := "127.0.0.1:0"
	if lh, _, err := net.SplitHostPort(addr); err == nil {
		plain = net.JoinHostPort(lh, "0")
	}
	b, err := blob.Start(blob.Config{Addr: addr, PlainAddr: plain, Host: host, Certificate: &cert, Now: h.cfg.Now})
	if err != nil {
		return err
	}
	b.OnRequest(func(r blob.Request) {
		h.trace.AddExternal(Entry{ClientID: r.Owner, Remote: r.Remote, Dir: DirEvent, Type: EventBlob, Reason: r.String(), Extra: blob.MarshalRequest(r)})
	})
	h.files.blob = b
	return nil
}

func (h *Hub) closeBlob() {
	if h.files.blob != nil {
		_ = h.files.blob.Close()
	}
}

// Blob is the storage endpoint, nil when disabled.
func (h *Hub) Blob() *blob.Server { return h.files.blob }

// FileNotifications returns the file-upload notifications devices sent
// (deviceID "" for all), oldest first.
func (h *Hub) FileNotifications(deviceID string) []FileNotification {
	h.files.mu.Lock()
	defer h.files.mu.Unlock()
	var out []FileNotification
	for _, n := range h.files.notes {
		if deviceID == "" || n.DeviceID == deviceID {
			out = append(out, n)
		}
	}
	return out
}

// FileUploads returns the upload SAS URIs issued to a device ("" for all).
func (h *Hub) FileUploads(deviceID string) []FileUpload {
	h.files.mu.Lock()
	defer h.files.mu.Unlock()
	var out []FileUpload
	for _, u := range h.files.issued {
		if deviceID == "" || u.DeviceID == deviceID {
			out = append(out, *u)
		}
	}
	return out
}

// outstandingLocked counts a device's unexpired, unnotified upload URIs.
func (h *Hub) outstandingLocked(deviceID string, now time.Time) int {
	n := 0
	for _, u := range h.files.issued {
		if u.DeviceID == deviceID && !u.Notified && now.Before(u.Expires) {
			n++
		}
	}
	return n
}

// serveDeviceFiles serves the device side of file upload; handled is
// false for any other path (the service API then serves it).
func (h *Hub) serveDeviceFiles(w http.ResponseWriter, r *http.Request, segs []string) (handled bool, _ error) {
	if len(segs) < 3 || segs[0] != "devices" || segs[2] != "files" {
		return false, nil
	}
	deviceID := segs[1]
	var body []byte
	rec := Entry{ClientID: deviceID, Remote: r.RemoteAddr, Dir: DirIn, Type: TypeHTTPS, Topic: r.Method + " " + r.URL.EscapedPath()}
	status := http.StatusOK
	var answer any
	err := func() error {
		if err := h.deviceAuthenticate(r, deviceID); err != nil {
			return err
		}
		switch {
		case len(segs) == 3 && r.Method == http.MethodPost:
			b, err := h.readFileBody(w, r)
			body = b
			if err != nil {
				return err
			}
			a, err := h.issueUpload(deviceID, b)
			answer = a
			return err
		case len(segs) == 4 && segs[3] == "notifications" && r.Method == http.MethodPost:
			b, err := h.readFileBody(w, r)
			body = b
			if err != nil {
				return err
			}
			status = http.StatusNoContent
			return h.fileNotified(deviceID, b)
		case len(segs) == 4 && r.Method == http.MethodGet:
			// The deprecated GET form (FUP-001: not to be used).
			h.trace.add(Entry{ClientID: deviceID, Remote: r.RemoteAddr, Dir: DirEvent, Type: EventWarning, Requirement: "FUP-001",
				Reason: "file upload started with the deprecated GET /devices/{id}/files/{name} (002 L10952-10958)"})
			b, _ := json.Marshal(map[string]string{"blobName": segs[3]})
			a, err := h.issueUpload(deviceID, b)
			answer = a
			return err
		case len(segs) <= 4:
			w.Header().Set("Allow", "POST")
			return restFail(errMethodNotAllowed, "%s is not supported on this resource", r.Method)
		}
		return restFail(errPathNotFound, "no resource at %s", r.URL.EscapedPath())
	}()
	rec.Payload, rec.PayloadLen = capPayload(body), len(body)
	if err != nil {
		var re *restError
		if !errors.As(err, &re) {
			re = restFail(errServer, "%v", err)
		}
		rec.Extra, rec.Reason = fmt.Sprintf("status %d", re.status), re.name+": "+re.msg
		h.trace.add(rec)
		return true, re
	}
	rec.Extra = fmt.Sprintf("status %d", status)
	if answer != nil {
		b, _ := json.Marshal(answer)
		rec.Reason = string(b)
	}
	h.trace.add(rec)
	if answer == nil {
		w.WriteHeader(status)
		return true, nil
	}
	restWriteJSON(w, status, answer)
	return true, nil
}

func capPayload(b []byte) []byte {
	if len(b) > maxTracePayload {
		return b[:maxTracePayload]
	}
	return b
}

func (h *Hub) readFileBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := restReadBody(w, r, maxFileBody)
	if err != nil {
		return nil, err
	}
	if !json.Valid(b) || !strings.HasPrefix(strings.TrimLeft(string(b), " \t\r\n"), "{") {
		return b, restFail(errArgumentInvalid, "request body must be a JSON object")
	}
	return b, nil
}

// deviceAuthenticate checks a device's SAS token in the Authorization
// header, as the MQTT CONNECT check does (CONN-008..010).
func (h *Hub) deviceAuthenticate(r *http.Request, deviceID string) error {
	header := r.Header.Get("Authorization")
	if header == "" {
		return restFail(errUnauthorized, "missing Authorization header; send the device's SharedAccessSignature")
	}
	tok, err := iothub.ParseSASToken(header)
	if err != nil {
		return restFail(errUnauthorized, "malformed Authorization token: %s", sasProblem(err))
	}
	id := iothub.Identity{DeviceID: deviceID}
	dev, err := h.reg.Get(id)
	if err != nil {
		return restFail(errUnauthorized, "device %q is not registered or its token does not verify", deviceID)
	}
	if dev.Status == StatusDisabled {
		return restFail(errUnauthorized, "device %q is disabled", deviceID)
	}
	sr, err := tok.ResourceURI()
	if err != nil || !iothub.ResourceCovers(sr, h.cfg.Host, id) {
		return restFail(errUnauthorized, "token resource does not cover %s", iothub.DeviceResourceURI(h.cfg.Host, id))
	}
	var keys []string
	if tok.KeyName != "" {
		pol, err := h.reg.Policy(tok.KeyName)
		if err != nil || !pol.Has(RightDeviceConnect) {
			return restFail(errUnauthorized, "skn %q is not a policy with DeviceConnect", tok.KeyName)
		}
		keys = []string{pol.PrimaryKey, pol.SecondaryKey}
	} else if dev.Authentication.SymmetricKey != nil {
		keys = []string{dev.Authentication.SymmetricKey.PrimaryKey, dev.Authentication.SymmetricKey.SecondaryKey}
	}
	ok := false
	for _, k := range keys {
		if k == "" {
			continue
		}
		if v, _ := tok.Verify(k); v {
			ok = true
			break
		}
	}
	if !ok {
		return restFail(errUnauthorized, "SAS signature does not verify with the device's keys")
	}
	if !tok.ExpiresAt().After(h.cfg.Now()) {
		return restFail(errUnauthorized, "token expired at %s", tok.ExpiresAt().Format(time.RFC3339))
	}
	return nil
}

// uploadAnswer is IoT Hub's answer to POST /devices/{id}/files (002 L10940-10950).
type uploadAnswer struct {
	CorrelationID string `json:"correlationId"`
	HostName      string `json:"hostName"`
	ContainerName string `json:"containerName"`
	BlobName      string `json:"blobName"`
	SASToken      string `json:"sasToken"`
}

func (h *Hub) issueUpload(deviceID string, body []byte) (*uploadAnswer, error) {
	b := h.files.blob
	if b == nil {
		return nil, restFail(restCode{http.StatusBadRequest, "IotHubNotConfiguredForFileUpload", 400022}, "no storage endpoint is configured for file upload")
	}
	var req struct {
		BlobName *string `json:"blobName"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, restFail(errArgumentInvalid, "request body is not the JSON {\"blobName\": …}: %v", err)
	}
	if req.BlobName == nil || *req.BlobName == "" {
		return nil, restFail(errArgumentInvalid, "blobName is required")
	}
	name := deviceID + "/" + *req.BlobName
	if len(*req.BlobName) > 1024 || strings.Contains(*req.BlobName, "..") || strings.HasPrefix(*req.BlobName, "/") {
		return nil, restFail(errArgumentInvalid, "blobName %q is not a valid blob name", *req.BlobName)
	}
	now := h.cfg.Now()
	h.files.mu.Lock()
	if n := h.outstandingLocked(deviceID, now); n >= MaxOutstandingUploads {
		h.files.mu.Unlock()
		return nil, restFail(errUploadLimit, "device %s already holds %d upload SAS URIs; notify completion first (FUP-003, 002 L13459)", deviceID, n)
	}
	h.files.mu.Unlock()
	tok, err := b.IssueToken(blob.TokenOptions{Permissions: "rcw", Blob: name, Expiry: now.Add(uploadSASLifetime), Owner: deviceID})
	if err != nil {
		return nil, restFail(errArgumentInvalid, "blobName %q is not a valid blob name", *req.BlobName)
	}
	corr := newEtag()
	h.files.mu.Lock()
	if len(h.files.issued) >= maxKeptUploads {
		// Forget completed and expired URIs; outstanding ones stay.
		kept := h.files.issued[:0]
		for _, u := range h.files.issued {
			if !u.Notified && now.Before(u.Expires) {
				kept = append(kept, u)
			}
		}
		h.files.issued = kept
	}
	if len(h.files.issued) >= maxKeptUploads {
		h.files.mu.Unlock()
		return nil, restFail(errUploadLimit, "%d upload SAS URIs are outstanding for the storage account (002 L13459)", len(h.files.issued))
	}
	h.files.issued = append(h.files.issued, &FileUpload{DeviceID: deviceID, CorrelationID: corr, BlobName: name, Issued: now, Expires: now.Add(uploadSASLifetime)})
	h.files.mu.Unlock()
	return &uploadAnswer{CorrelationID: corr, HostName: b.Host(), ContainerName: b.Container(), BlobName: name, SASToken: "?" + tok}, nil
}

func (h *Hub) fileNotified(deviceID string, body []byte) error {
	var n struct {
		CorrelationID     *string `json:"correlationId"`
		IsSuccess         *bool   `json:"isSuccess"`
		StatusCode        int     `json:"statusCode"`
		StatusDescription string  `json:"statusDescription"`
	}
	if err := json.Unmarshal(body, &n); err != nil {
		return restFail(errArgumentInvalid, "notification is not the JSON {correlationId, isSuccess, statusCode, statusDescription}: %v", err)
	}
	if n.CorrelationID == nil || *n.CorrelationID == "" || n.IsSuccess == nil {
		return restFail(errArgumentInvalid, "notification needs correlationId and isSuccess")
	}
	h.files.mu.Lock()
	defer h.files.mu.Unlock()
	var up *FileUpload
	for _, u := range h.files.issued {
		if u.DeviceID == deviceID && u.CorrelationID == *n.CorrelationID {
			up = u
		}
	}
	if up == nil {
		return restFail(errArgumentInvalid, "correlationId %q was not issued to %s", *n.CorrelationID, deviceID)
	}
	if up.Notified {
		return restFail(errArgumentInvalid, "correlationId %q was already notified", *n.CorrelationID)
	}
	up.Notified = true
	_, stored := h.files.blob.Get(up.BlobName)
	h.files.seq++
	if len(h.files.notes) >= maxKeptUploads {
		h.files.notes = append([]FileNotification(nil), h.files.notes[len(h.files.notes)-maxKeptUploads/2:]...)
	}
	h.files.notes = append(h.files.notes, FileNotification{Seq: h.files.seq, DeviceID: deviceID, CorrelationID: up.CorrelationID,
		BlobName: up.BlobName, BlobURI: h.files.blob.URL(up.BlobName), IsSuccess: *n.IsSuccess, StatusCode: n.StatusCode,
		StatusDescription: n.StatusDescription, Uploaded: stored, EnqueuedTime: h.cfg.Now().UTC()})
	h.notify()
	return nil
}

// Service REST: the storage endpoint's blobs and the notifications.

func (h *Hub) fileRoutes() []restRoute {
	r := func(pattern string, ops map[string]restOp) restRoute {
		return restRoute{pattern: strings.Split(pattern, "/"), ops: ops}
	}
	svc := func(f restHandlerFunc) restOp { return restOp{RightServiceConnect, f} }
	return []restRoute{
		r("hilrun/files/notifications", map[string]restOp{http.MethodGet: svc(h.restFileNotifications)}),
		r("hilrun/usage", map[string]restOp{http.MethodGet: svc(h.restUsage)}),
		r("hilrun/blobs", map[string]restOp{http.MethodGet: svc(h.restBlobInfo)}),
		r("hilrun/blobs/{}", map[string]restOp{http.MethodGet: svc(h.restGetBlob), http.MethodPut: svc(h.restPutBlob)}),
	}
}

func (h *Hub) restFileNotifications(w http.ResponseWriter, r *http.Request, _ []string) error {
	restWriteJSON(w, http.StatusOK, h.FileNotifications(r.URL.Query().Get("deviceId")))
	return nil
}

// restBlobInfo says where the storage endpoint is and lists its uploads.
func (h *Hub) restBlobInfo(w http.ResponseWriter, r *http.Request, _ []string) error {
	b := h.files.blob
	if b == nil {
		return restFail(errPathNotFound, "the storage endpoint is off")
	}
	var ups []map[string]any
	for _, u := range b.Uploads() {
		ups = append(ups, map[string]any{"name": u.Name, "size": len(u.Data), "time": u.Time})
	}
	restWriteJSON(w, http.StatusOK, map[string]any{"host": b.Host(), "address": b.Addr(), "container": b.Container(), "uploads": ups})
	return nil
}

func (h *Hub) restGetBlob(w http.ResponseWriter, r *http.Request, args []string) error {
	b := h.files.blob
	if b == nil {
		return restFail(errPathNotFound, "the storage endpoint is off")
	}
	data, ok := b.Get(args[0])
	if !ok {
		return restFail(errPathNotFound, "no blob %q", args[0])
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(data)
	return nil
}

// restPutBlob stores a blob (body: the bytes) and answers its URL and a
// read token for it (?token=container for a container-wide one).
func (h *Hub) restPutBlob(w http.ResponseWriter, r *http.Request, args []string) error {
	b := h.files.blob
	if b == nil {
		return restFail(errPathNotFound, "the storage endpoint is off")
	}
	data, err := restReadBody(w, r, blob.DefaultMaxBlob)
	if err != nil {
		return err
	}
	if err := b.Put(args[0], data); err != nil {
		return restFail(errArgumentInvalid, "%v", err)
	}
	o := blob.TokenOptions{Permissions: blob.PermRead, Blob: args[0]}
	if r.URL.Query().Get("token") == "container" {
		o.Blob = ""
	}
	tok, err := b.IssueToken(o)
	if err != nil {
		return restFail(errArgumentInvalid, "%v", err)
	}
	restWriteJSON(w, http.StatusCreated, map[string]string{"url": b.URL(args[0]), "token": tok})
	return nil
}

// WaitFileNotification waits for a notification from deviceID after seq.
func (h *Hub) WaitFileNotification(ctx context.Context, deviceID string, after uint64) (FileNotification, error) {
	var got FileNotification
	err := h.waitFor(ctx, func() bool {
		for _, n := range h.FileNotifications(deviceID) {
			if n.Seq > after {
				got = n
				return true
			}
		}
		return false
	})
	return got, err
}
