// Package blob is hilrun's storage endpoint: a stand-in for an Azure
// Storage blob container over HTTPS, the far end of twin-driven OTA
// (seed 004: devices download `Files` with the twin's `Token`, OTA-003)
// and of IoT Hub file upload (the SAS URI the hub hands out, FUP-002).
//
// It serves one container of blobs on 127.0.0.1 (an ephemeral port by
// default) with a TLS certificate from the rig's PKI. Every request must
// carry a SAS-like token in its query (sp, st, se, spr, sv, sr, sig; seed
// 004 L126), signed with the endpoint's account key and scoped to the
// container or one blob: a missing, malformed, wrongly signed, expired or
// not-yet-valid token, or one without the permission the method needs, is
// answered 403, as Azure Storage does. GET and HEAD honour a single byte
// range (Range or x-ms-range); PUT stores a block blob (x-ms-blob-type:
// BlockBlob). Paths outside the container are refused. Each request is
// recorded (Requests, OnRequest), never with the token's signature.
package blob

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hilrun/hilrun/rig/secrets"
)

// Defaults.
const (
	DefaultHost      = "hilrunstore.blob.core.windows.net"
	DefaultContainer = "hilrun"
	// DefaultMaxBlob bounds one upload (a PUT body).
	DefaultMaxBlob = 16 << 20
	// maxBlobName is Azure Storage's limit on a blob name (1024 characters).
	maxBlobName = 1024
	// maxRequests bounds the request log (oldest dropped).
	maxRequests = 10000
)

// Config configures the endpoint.
type Config struct {
	Addr        string // listen address; default 127.0.0.1:0
	Host        string // the storage account's host name; default DefaultHost
	Container   string // default DefaultContainer
	Certificate *tls.Certificate
	// PlainAddr is a plaintext HTTP listener for the account's port 80,
	// which refuses every request (400 AccountRequiresHttps, as a storage
	// account with secure transfer required does) and records it, so that
	// a client fetching over http is seen (OTA-008). Default 127.0.0.1:0;
	// "off" disables it.
	PlainAddr string
	MaxBlob   int64            // default DefaultMaxBlob
	Now       func() time.Time // token validity clock; default time.Now
}

// Request is one request as the endpoint saw it.
type Request struct {
	Seq       uint64    `json:"seq"`
	Time      time.Time `json:"time"`
	Remote    string    `json:"remote"`
	Method    string    `json:"method"`
	Path      string    `json:"path"`           // escaped path as sent
	Blob      string    `json:"blob,omitempty"` // blob name, when the path is inside the container
	SAS       []string  `json:"sas,omitempty"`  // names of the query parameters (never their values)
	Range     string    `json:"range,omitempty"`
	Status    int       `json:"status"`
	Bytes     int64     `json:"bytes"`  // body bytes served (GET) or stored (PUT)
	SHA256    string    `json:"sha256"` // of the blob served or stored, upper-case hex
	Owner     string    `json:"owner"`  // whom the token was issued for (IssueToken), if known
	Reason    string    `json:"reason"` // why it was refused, or what was done
	TLSServer string    `json:"sni"`    // SNI the client sent
	Proto     string    `json:"proto"`  // HTTP version
	BlobType  string    `json:"blobType,omitempty"`
	Plain     bool      `json:"plain,omitempty"` // plaintext HTTP (refused)
}

// String is a one-line summary for the wire trace.
func (r Request) String() string {
	s := fmt.Sprintf("%s %s → %d", r.Method, r.Path, r.Status)
	if r.Range != "" {
		s += " range " + r.Range
	}
	if r.Bytes > 0 {
		s += fmt.Sprintf(" (%d bytes)", r.Bytes)
	}
	if r.Reason != "" {
		s += ": " + r.Reason
	}
	return s
}

// Upload is a blob a client stored with PUT.
type Upload struct {
	Name   string
	Data   []byte
	Time   time.Time
	Remote string
}

type blobItem struct {
	data []byte
	etag string
	mod  time.Time
}

// Server is a running endpoint.
type Server struct {
	cfg     Config
	key     []byte
	account string
	ln      net.Listener
	srv     *http.Server
	plainLn net.Listener
	plain   *http.Server

	mu         sync.Mutex
	blobs      map[string]*blobItem
	uploads    []Upload
	reqs       []Request
	seq        uint64
	owners     map[string]string // token signature → owner
	onReq      []func(Request)
	changed    chan struct{}
	failStatus int // FailPutsWith
	failPuts   int // the next failPuts PUTs are answered failStatus (FailPuts, FailPutsWith)
	failGets   int // the next failGets authorised GETs are answered 500 (FailGets)
	closed     bool
	closeErr   error
}

// Start binds the listener and serves.
func Start(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Host == "" {
		cfg.Host = DefaultHost
	}
	if cfg.Container == "" {
		cfg.Container = DefaultContainer
	}
	if cfg.MaxBlob == 0 {
		cfg.MaxBlob = DefaultMaxBlob
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Certificate == nil {
		return nil, errors.New("blob: a server certificate is required")
	}
	if !validName(cfg.Container) {
		return nil, fmt.Errorf("blob: container name %q is not valid", cfg.Container)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	secrets.AddBytes("blob account key", key)
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("blob: listen: %w", err)
	}
	account, _, _ := strings.Cut(cfg.Host, ".")
	s := &Server{cfg: cfg, key: key, account: account, ln: ln, blobs: map[string]*blobItem{},
		owners: map[string]string{}, changed: make(chan struct{})}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*cfg.Certificate}}
	s.srv = &http.Server{Handler: s, TLSConfig: tc, ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 60 * time.Second, WriteTimeout: 60 * time.Second, IdleTimeout: 30 * time.Second,
		MaxHeaderBytes: 16 << 10, ErrorLog: nil}
	go func() { _ = s.srv.ServeTLS(ln, "", "") }()
	if cfg.PlainAddr != "off" {
		pa := cfg.PlainAddr
		if pa == "" {
			pa = "127.0.0.1:0"
		}
		if s.plainLn, err = net.Listen("tcp", pa); err != nil {
			_ = s.Close()
			return nil, fmt.Errorf("blob: listen (plaintext): %w", err)
		}
		s.plain = &http.Server{Handler: http.HandlerFunc(s.servePlain), ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, MaxHeaderBytes: 16 << 10}
		go func() { _ = s.plain.Serve(s.plainLn) }()
	}
	return s, nil
}

// Close stops the endpoint.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return s.closeErr
	}
	s.closed = true
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		err = s.srv.Close()
	}
	if s.plain != nil {
		_ = s.plain.Close()
	}
	s.mu.Lock()
	s.closeErr = err
	s.mu.Unlock()
	return err
}

// Addr is the listener address (host:port) a client dials.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// PlainAddr is the plaintext trap's address ("" when off).
func (s *Server) PlainAddr() string {
	if s.plainLn == nil {
		return ""
	}
	return s.plainLn.Addr().String()
}

// servePlain refuses a plaintext request and records it.
func (s *Server) servePlain(w http.ResponseWriter, r *http.Request) {
	rec := Request{Time: time.Now(), Remote: r.RemoteAddr, Method: r.Method, Path: r.URL.EscapedPath(), Proto: r.Proto, Plain: true}
	if q, err := url.ParseQuery(r.URL.RawQuery); err == nil {
		for k := range q {
			rec.SAS = append(rec.SAS, k)
		}
		sort.Strings(rec.SAS)
	}
	e := refuse(http.StatusBadRequest, "AccountRequiresHttps", "the account being accessed does not support http")
	rec.Status, rec.Reason = e.status, e.code+": "+e.msg
	writeError(w, e)
	s.record(rec)
}

// Host is the storage account's host name (SNI, URLs).
func (s *Server) Host() string { return s.cfg.Host }

// Container is the container's name.
func (s *Server) Container() string { return s.cfg.Container }

// URL is the https URL of a blob in the container (no token).
func (s *Server) URL(name string) string {
	return "https://" + s.cfg.Host + "/" + s.cfg.Container + "/" + escapeName(name)
}

func escapeName(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}

// validName: a blob or container name without empty, "." or ".."
// segments, backslashes or control characters, at most 1024 bytes.
func validName(name string) bool {
	if name == "" || len(name) > maxBlobName || strings.ContainsAny(name, "\\") {
		return false
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	for _, c := range name {
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// Put stores a blob (service side: the files an OTA twin names).
func (s *Server) Put(name string, data []byte) error {
	if !validName(name) {
		return fmt.Errorf("blob: name %q is not a valid blob name", name)
	}
	s.mu.Lock()
	s.blobs[name] = &blobItem{data: append([]byte(nil), data...), etag: newETag(), mod: time.Now()}
	s.notifyLocked()
	s.mu.Unlock()
	return nil
}

// Get returns a stored blob.
func (s *Server) Get(name string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.blobs[name]
	if !ok {
		return nil, false
	}
	return append([]byte(nil), b.data...), true
}

// Delete removes a blob.
func (s *Server) Delete(name string) {
	s.mu.Lock()
	delete(s.blobs, name)
	s.mu.Unlock()
}

// Uploads returns the blobs clients stored with PUT, oldest first.
func (s *Server) Uploads() []Upload {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Upload(nil), s.uploads...)
}

// Requests returns the request log.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.reqs...)
}

// OnRequest calls f (synchronously, after the answer was decided) for
// every request from now on, e.g. to put it into the hub's wire trace.
func (s *Server) OnRequest(f func(Request)) {
	s.mu.Lock()
	s.onReq = append(s.onReq, f)
	s.mu.Unlock()
}

// Wait blocks until cond holds (re-checked whenever a request was logged
// or a blob stored) or ctx ends.
func (s *Server) Wait(ctx context.Context, cond func() bool) error {
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// TokenOptions describe a token to issue.
type TokenOptions struct {
	Permissions string // e.g. PermRead, "rw", "cw"
	Blob        string // scope to one blob (sr=b); empty: the container (sr=c)
	Start       time.Time
	Expiry      time.Time // zero: one hour from now
	Owner       string    // whom it is for (shown in the request log)
	HTTP        bool      // spr=https,http instead of https
}

// IssueToken signs a token; the result is a query string without "?".
// Its signature is registered with rig/secrets.
func (s *Server) IssueToken(o TokenOptions) (string, error) {
	if o.Permissions == "" {
		return "", errors.New("blob: a token needs permissions")
	}
	if o.Blob != "" && !validName(o.Blob) {
		return "", fmt.Errorf("blob: name %q is not a valid blob name", o.Blob)
	}
	if o.Expiry.IsZero() {
		o.Expiry = s.cfg.Now().Add(time.Hour)
	}
	t := Token{Permissions: o.Permissions, Start: o.Start.Truncate(time.Second), Expiry: o.Expiry.Truncate(time.Second),
		Protocol: "https", Version: SASVersion, Resource: "c"}
	if o.HTTP {
		t.Protocol = "https,http"
	}
	if o.Blob != "" {
		t.Resource = "b"
	}
	t.Signature = sign(s.key, StringToSign(t, s.account, s.cfg.Container, o.Blob))
	secrets.AddBase64("blob SAS signature", t.Signature)
	if o.Owner != "" {
		s.mu.Lock()
		s.owners[t.Signature] = o.Owner
		s.mu.Unlock()
	}
	return t.encode(), nil
}

// refusal is a storage error: status, Azure Storage error code, text.
type refusal struct {
	status int
	code   string
	msg    string
}

func (r *refusal) Error() string { return r.code + ": " + r.msg }

func refuse(status int, code, format string, args ...any) *refusal {
	return &refusal{status, code, fmt.Sprintf(format, args...)}
}

// ServeHTTP answers one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := Request{Time: time.Now(), Remote: r.RemoteAddr, Method: r.Method, Path: r.URL.EscapedPath(), Proto: r.Proto,
		Range: firstNonEmpty(r.Header.Get("x-ms-range"), r.Header.Get("Range")), BlobType: r.Header.Get("x-ms-blob-type")}
	if r.TLS != nil {
		rec.TLSServer = r.TLS.ServerName
	}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			rec.Status, rec.Reason = http.StatusInternalServerError, "internal error"
			writeError(w, refuse(http.StatusInternalServerError, "InternalError", "internal error"))
		}
		s.record(rec)
	}()
	if err := s.serve(w, r, &rec); err != nil {
		rec.Status, rec.Reason = err.status, err.code+": "+err.msg
		writeError(w, err)
	}
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (s *Server) record(rec Request) {
	s.mu.Lock()
	s.seq++
	rec.Seq = s.seq
	s.reqs = append(s.reqs, rec)
	if len(s.reqs) > maxRequests {
		s.reqs = append([]Request(nil), s.reqs[len(s.reqs)-maxRequests:]...)
	}
	fs := append([]func(Request){}, s.onReq...)
	s.notifyLocked()
	s.mu.Unlock()
	for _, f := range fs {
		f(rec)
	}
}

// blobOf splits an escaped request path into the blob name, refusing
// paths outside the container.
func (s *Server) blobOf(escaped string) (string, *refusal) {
	if strings.Contains(strings.ToLower(escaped), "%2f") || strings.Contains(escaped, "%5C") || strings.Contains(escaped, "%5c") {
		return "", refuse(http.StatusBadRequest, "InvalidUri", "encoded slashes are not allowed in the path")
	}
	p, err := url.PathUnescape(strings.TrimPrefix(escaped, "/"))
	if err != nil {
		return "", refuse(http.StatusBadRequest, "InvalidUri", "the path is not validly escaped")
	}
	cont, name, _ := strings.Cut(p, "/")
	if cont != s.cfg.Container {
		return "", refuse(http.StatusForbidden, "AuthorizationResourceTypeMismatch", "only container %q is served here; %q is outside it", s.cfg.Container, cont)
	}
	if name == "" {
		return "", refuse(http.StatusBadRequest, "InvalidUri", "no blob name after the container")
	}
	if !validName(name) {
		return "", refuse(http.StatusBadRequest, "InvalidUri", "blob name %q is not valid (empty, . or .. segments, backslashes, controls, or longer than %d)", name, maxBlobName)
	}
	return name, nil
}

// authorize checks the token for a request on blob name needing perm.
func (s *Server) authorize(r *http.Request, name, perm string, rec *Request) *refusal {
	raw := r.URL.RawQuery
	if raw == "" {
		return refuse(http.StatusForbidden, "AuthenticationFailed", "no SAS token in the query string")
	}
	// Non-SAS parameters (comp, blockid …) are not part of a token.
	tok, err := ParseToken(sasOnly(raw))
	if q, qerr := url.ParseQuery(raw); qerr == nil {
		for k := range q {
			rec.SAS = append(rec.SAS, k)
		}
		sort.Strings(rec.SAS)
	}
	if err != nil {
		return refuse(http.StatusForbidden, "AuthenticationFailed", "SAS token: %v", err)
	}
	s.mu.Lock()
	rec.Owner = s.owners[tok.Signature]
	s.mu.Unlock()
	want := sign(s.key, StringToSign(tok, s.account, s.cfg.Container, name))
	if subtle.ConstantTimeCompare([]byte(want), []byte(tok.Signature)) != 1 {
		return refuse(http.StatusForbidden, "AuthenticationFailed", "signature does not match (token for another blob or container, altered, or not issued here)")
	}
	now := s.cfg.Now()
	if !now.Before(tok.Expiry) {
		return refuse(http.StatusForbidden, "AuthenticationFailed", "token expired at %s", tok.Expiry.Format(timeLayout))
	}
	if !tok.Start.IsZero() && now.Before(tok.Start) {
		return refuse(http.StatusForbidden, "AuthenticationFailed", "token not valid before %s", tok.Start.Format(timeLayout))
	}
	if !strings.ContainsAny(tok.Permissions, perm) {
		return refuse(http.StatusForbidden, "AuthorizationPermissionMismatch", "token permissions %q lack %q", tok.Permissions, perm)
	}
	return nil
}

// sasOnly keeps the SAS parameters of a query string.
func sasOnly(raw string) string {
	var keep []string
	for _, kv := range strings.Split(raw, "&") {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "sp", "st", "se", "spr", "sv", "sr", "sig", "skoid", "sktid", "sip", "si":
			keep = append(keep, kv)
		}
	}
	return strings.Join(keep, "&")
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request, rec *Request) *refusal {
	name, ref := s.blobOf(r.URL.EscapedPath())
	if ref != nil {
		return ref
	}
	rec.Blob = name
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if ref := s.authorize(r, name, PermRead, rec); ref != nil {
			return ref
		}
		return s.serveGet(w, r, name, rec)
	case http.MethodPut:
		if ref := s.authorize(r, name, PermWrite+PermCreate, rec); ref != nil {
			return ref
		}
		return s.servePut(w, r, name, rec)
	default:
		w.Header().Set("Allow", "GET, HEAD, PUT")
		return refuse(http.StatusMethodNotAllowed, "UnsupportedHttpVerb", "%s is not supported here", r.Method)
	}
}

// FailGets makes the next n authorised downloads fail with 500
// InternalError, as a storage outage would: the rig's way to see how a
// device reports a failed OTA download (OTA-003).
func (s *Server) FailGets(n int) {
	s.mu.Lock()
	s.failGets = n
	s.mu.Unlock()
}

func (s *Server) serveGet(w http.ResponseWriter, r *http.Request, name string, rec *Request) *refusal {
	s.mu.Lock()
	if s.failGets > 0 {
		s.failGets--
		s.mu.Unlock()
		return refuse(http.StatusInternalServerError, "InternalError", "download failed (rig fault switch FailGets)")
	}
	b, ok := s.blobs[name]
	s.mu.Unlock()
	if !ok {
		return refuse(http.StatusNotFound, "BlobNotFound", "no blob %q", name)
	}
	data := b.data
	sum := sha256.Sum256(data)
	rec.SHA256 = strings.ToUpper(hex.EncodeToString(sum[:]))
	h := w.Header()
	h.Set("Accept-Ranges", "bytes")
	h.Set("ETag", b.etag)
	h.Set("Last-Modified", b.mod.UTC().Format(http.TimeFormat))
	h.Set("x-ms-blob-type", "BlockBlob")
	h.Set("Content-Type", "application/octet-stream")
	status := http.StatusOK
	body := data
	if rec.Range != "" {
		start, n, err := parseRange(rec.Range, int64(len(data)))
		switch {
		case errors.Is(err, errRangeUnsatisfiable):
			h.Set("Content-Range", fmt.Sprintf("bytes */%d", len(data)))
			return refuse(http.StatusRequestedRangeNotSatisfiable, "InvalidRange", "range %q lies outside the %d-byte blob", rec.Range, len(data))
		case err == nil:
			status, body = http.StatusPartialContent, data[start:start+n]
			h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, start+n-1, len(data)))
		}
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	rec.Status = status
	if r.Method == http.MethodGet {
		nw, _ := w.Write(body)
		rec.Bytes = int64(nw)
	}
	return nil
}

// FailPuts makes the next n uploads fail with 500 InternalError, as a
// storage outage would: the rig's way to see how a device reports a failed
// upload (FUP-003).
func (s *Server) FailPuts(n int) {
	s.FailPutsWith(n, http.StatusInternalServerError)
}

// putFailures are the Put Blob error answers FailPutsWith can give, with
// the storage error code Azure Storage documents for each.
// FUP-003: the device reports the storage's status in its notification.
var putFailures = map[int]string{
	http.StatusForbidden:             "AuthenticationFailed",
	http.StatusNotFound:              "ContainerNotFound",
	http.StatusRequestEntityTooLarge: "RequestBodyTooLarge",
	http.StatusInternalServerError:   "InternalError",
	http.StatusServiceUnavailable:    "ServerBusy",
}

// FailPutsWith makes the next n uploads fail with status, one of 403, 404,
// 413, 500, 503 (others are taken as 500): the rig's way to see which
// status a device reports for a failed upload (FUP-003).
func (s *Server) FailPutsWith(n, status int) {
	if _, ok := putFailures[status]; !ok {
		status = http.StatusInternalServerError
	}
	s.mu.Lock()
	s.failPuts, s.failStatus = n, status
	s.mu.Unlock()
}

func (s *Server) servePut(w http.ResponseWriter, r *http.Request, name string, rec *Request) *refusal {
	s.mu.Lock()
	fail, status := s.failPuts > 0, s.failStatus
	if fail {
		s.failPuts--
	}
	s.mu.Unlock()
	if fail {
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, s.cfg.MaxBlob))
		if status == 0 {
			status = http.StatusInternalServerError
		}
		return refuse(status, putFailures[status], "upload failed (rig fault switch FailPuts)")
	}
	if q := r.URL.Query(); q.Get("comp") != "" {
		return refuse(http.StatusBadRequest, "UnsupportedQueryParameter", "comp=%s (blocks, block lists, properties) is not served here; PUT the blob in one request", q.Get("comp"))
	}
	if !strings.EqualFold(rec.BlobType, "BlockBlob") {
		return refuse(http.StatusBadRequest, "MissingRequiredHeader", "x-ms-blob-type: BlockBlob is required (got %q)", rec.BlobType)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBlob))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return refuse(http.StatusRequestEntityTooLarge, "RequestBodyTooLarge", "the body exceeds %d bytes", s.cfg.MaxBlob)
		}
		return refuse(http.StatusBadRequest, "InvalidInput", "reading the body failed: %v", err)
	}
	sum := sha256.Sum256(body)
	rec.SHA256 = strings.ToUpper(hex.EncodeToString(sum[:]))
	rec.Bytes = int64(len(body))
	etag := newETag()
	s.mu.Lock()
	s.blobs[name] = &blobItem{data: body, etag: etag, mod: time.Now()}
	s.uploads = append(s.uploads, Upload{Name: name, Data: body, Time: time.Now(), Remote: r.RemoteAddr})
	s.mu.Unlock()
	w.Header().Set("ETag", etag)
	w.WriteHeader(http.StatusCreated)
	rec.Status = http.StatusCreated
	rec.Reason = "stored"
	return nil
}

func writeError(w http.ResponseWriter, e *refusal) {
	w.Header().Set("x-ms-error-code", e.code)
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(e.status)
	fmt.Fprintf(w, "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>%s</Code><Message>%s</Message></Error>\n", e.code, xmlEscape(e.msg))
}

func xmlEscape(s string) string {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", "\"", "&quot;")
	return r.Replace(s)
}

func newETag() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "\"0x" + strings.ToUpper(hex.EncodeToString(b)) + "\""
}

// MarshalRequest renders a request as JSON (the wire trace's Extra).
func MarshalRequest(r Request) string {
	b, _ := json.Marshal(r)
	return string(b)
}

// UnmarshalRequest reads what MarshalRequest wrote.
func UnmarshalRequest(s string) (Request, bool) {
	var r Request
	return r, json.Unmarshal([]byte(s), &r) == nil && r.Method != ""
}
