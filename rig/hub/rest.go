package hub

// The hub's service REST API, served on the HTTPS listener next to MQTT over
// WebSocket. It has two parts:
//
//   - a subset of IoT Hub's own service API, with the same paths, bodies and
//     status codes, so service-side tools written for Azure can drive the
//     reference hub: /devices (registry), /twins (twins and direct methods);
//   - hilrun's own endpoints under /hilrun/ that IoT Hub exposes only over
//     AMQP or Event Hubs, or not at all: sending and inspecting C2D messages,
//     reading and waiting for telemetry, the wire trace, fault injection and
//     a status summary.
//
// Every request carries a hub-level SAS token in the Authorization header
// ("SharedAccessSignature sr=...&sig=...&se=...&skn=<policy>"), signed with
// one of the policy's keys. Errors come back as IoT Hub shapes them:
// {"Message":"ErrorCode:<Name>;<text>","ExceptionMessage":"Tracking ID:..."},
// plus the numeric "errorCode" and the iothub-errorcode header. The api-version
// query parameter is accepted with any value and otherwise ignored.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hilrun/hilrun/rig/iothub"
	"github.com/hilrun/hilrun/rig/iothub/twin"
)

// Request body limits.
const (
	// restMaxBody bounds registry and twin bodies.
	restMaxBody = 1 << 20
	// restMaxMethodBody bounds a direct-method invocation: the largest
	// payload IoT Hub accepts (METH-007) plus room for the envelope.
	restMaxMethodBody = iothub.MaxMethodPayloadBytes + 4*1024
	// restMaxWait bounds long polls and connect timeouts.
	restMaxWait = 300 * time.Second
	// restDefaultWait is the telemetry long-poll timeout when none is given.
	restDefaultWait = 30 * time.Second
)

// restCode is an error as IoT Hub's service API reports it: HTTP status,
// error name and numeric error code (0 when IoT Hub has no equivalent).
type restCode struct {
	status int
	name   string
	code   int
}

var (
	errArgumentInvalid  = restCode{http.StatusBadRequest, "ArgumentInvalid", 400004}
	errUnauthorized     = restCode{http.StatusUnauthorized, "IotHubUnauthorizedAccess", 401002}
	errQueueDepth       = restCode{http.StatusForbidden, "DeviceMaximumQueueDepthExceeded", 403004}
	errDeviceNotFound   = restCode{http.StatusNotFound, "DeviceNotFound", 404001}
	errModuleNotFound   = restCode{http.StatusNotFound, "ModuleNotFound", 404010}
	errDeviceNotOnline  = restCode{http.StatusNotFound, "DeviceNotOnline", 404103}
	errPathNotFound     = restCode{http.StatusNotFound, "NotFound", 0}
	errMethodNotAllowed = restCode{http.StatusMethodNotAllowed, "MethodNotAllowed", 0}
	errRequestTimeout   = restCode{http.StatusRequestTimeout, "RequestTimeout", 0}
	errDeviceExists     = restCode{http.StatusConflict, "DeviceAlreadyExists", 409001}
	errPrecondition     = restCode{http.StatusPreconditionFailed, "PreconditionFailed", 412001}
	errTooLarge         = restCode{http.StatusRequestEntityTooLarge, "MessageTooLarge", 413001}
	errServer           = restCode{http.StatusInternalServerError, "ServerError", 500001}
	errUnavailable      = restCode{http.StatusServiceUnavailable, "ServiceUnavailable", 503001}
	errGatewayTimeout   = restCode{http.StatusGatewayTimeout, "GatewayTimeout", 504101}
)

// restError is a failure a handler returns; serveREST writes it.
type restError struct {
	restCode
	msg string
}

func (e *restError) Error() string { return e.name + ": " + e.msg }

func restFail(c restCode, format string, args ...any) *restError {
	return &restError{restCode: c, msg: fmt.Sprintf(format, args...)}
}

// restHandlerFunc serves one method of one route; args are the path's
// captured segments, already unescaped.
type restHandlerFunc func(w http.ResponseWriter, r *http.Request, args []string) error

type restOp struct {
	right string
	serve restHandlerFunc
}

// restRoute is a path pattern ("{}" captures one non-empty segment) and its
// operations by HTTP method.
type restRoute struct {
	pattern []string
	ops     map[string]restOp
}

func (h *Hub) restRoutes() []restRoute {
	r := func(pattern string, ops map[string]restOp) restRoute {
		return restRoute{pattern: strings.Split(pattern, "/"), ops: ops}
	}
	read := func(f restHandlerFunc) restOp { return restOp{RightRegistryRead, f} }
	write := func(f restHandlerFunc) restOp { return restOp{RightRegistryWrite, f} }
	svc := func(f restHandlerFunc) restOp { return restOp{RightServiceConnect, f} }
	return []restRoute{
		r("devices", map[string]restOp{http.MethodGet: read(h.restListDevices)}),
		r("devices/{}", map[string]restOp{
			http.MethodGet: read(h.restGetDevice), http.MethodPut: write(h.restPutDevice), http.MethodDelete: write(h.restDeleteDevice)}),
		r("devices/{}/modules", map[string]restOp{http.MethodGet: read(h.restListModules)}),
		r("devices/{}/modules/{}", map[string]restOp{
			http.MethodGet: read(h.restGetDevice), http.MethodPut: write(h.restPutDevice), http.MethodDelete: write(h.restDeleteDevice)}),
		r("twins/{}", map[string]restOp{
			http.MethodGet: svc(h.restGetTwin), http.MethodPatch: svc(h.restPatchTwin), http.MethodPut: svc(h.restPatchTwin)}),
		r("twins/{}/modules/{}", map[string]restOp{
			http.MethodGet: svc(h.restGetTwin), http.MethodPatch: svc(h.restPatchTwin), http.MethodPut: svc(h.restPatchTwin)}),
		r("twins/{}/methods", map[string]restOp{http.MethodPost: svc(h.restInvoke)}),
		r("twins/{}/modules/{}/methods", map[string]restOp{http.MethodPost: svc(h.restInvoke)}),
		r("hilrun/devices/{}/messages/devicebound", map[string]restOp{
			http.MethodPost: svc(h.restSendC2D), http.MethodGet: svc(h.restC2DQueue)}),
		r("hilrun/telemetry", map[string]restOp{http.MethodGet: svc(h.restTelemetry)}),
		r("hilrun/telemetry/wait", map[string]restOp{http.MethodGet: svc(h.restWaitTelemetry)}),
		r("hilrun/trace", map[string]restOp{http.MethodGet: svc(h.restTrace)}),
		r("hilrun/faults", map[string]restOp{http.MethodPost: svc(h.restFaults)}),
		r("hilrun/status", map[string]restOp{http.MethodGet: svc(h.restStatus)}),
	}
}

// match reports whether segs fit the pattern and returns the captures.
func (rt restRoute) match(segs []string) ([]string, bool) {
	if len(segs) != len(rt.pattern) {
		return nil, false
	}
	var args []string
	for i, p := range rt.pattern {
		switch {
		case p == "{}":
			if segs[i] == "" {
				return nil, false
			}
			args = append(args, segs[i])
		case p != segs[i]:
			return nil, false
		}
	}
	return args, true
}

// restHandler serves IoT Hub's service REST API and hilrun's own endpoints.
func (h *Hub) restHandler() http.Handler {
	routes := append(h.restRoutes(), h.fileRoutes()...)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				h.log.Error("REST handler panicked", "method", r.Method, "path", r.URL.EscapedPath(), "panic", fmt.Sprint(v))
				restWriteError(w, restFail(errServer, "internal error"))
			}
		}()
		if err := h.serveREST(w, r, routes); err != nil {
			var re *restError
			if !errors.As(err, &re) {
				re = restFail(errServer, "%v", err)
			}
			if re.status == http.StatusUnauthorized {
				h.log.Info("REST request refused", "method", r.Method, "path", r.URL.EscapedPath(), "reason", re.msg)
			}
			restWriteError(w, re)
		}
	})
}

func (h *Hub) serveREST(w http.ResponseWriter, r *http.Request, routes []restRoute) error {
	segs, err := restSegments(r.URL.EscapedPath())
	if err != nil {
		return err
	}
	// The device side of file upload authenticates the device (fileupload.go).
	if handled, err := h.serveDeviceFiles(w, r, segs); handled {
		return err
	}
	pol, err := h.restAuthenticate(r, segs)
	if err != nil {
		return err
	}
	for _, rt := range routes {
		args, ok := rt.match(segs)
		if !ok {
			continue
		}
		op, ok := rt.ops[r.Method]
		if !ok {
			allow := make([]string, 0, len(rt.ops))
			for m := range rt.ops {
				allow = append(allow, m)
			}
			sort.Strings(allow)
			w.Header().Set("Allow", strings.Join(allow, ", "))
			return restFail(errMethodNotAllowed, "%s is not supported on this resource; allowed: %s", r.Method, strings.Join(allow, ", "))
		}
		if !pol.Has(op.right) {
			return restFail(errUnauthorized, "policy %q lacks the %s right this operation needs", pol.KeyName, op.right)
		}
		return op.serve(w, r, args)
	}
	return restFail(errPathNotFound, "no resource at %s", r.URL.EscapedPath())
}

// restSegments splits an escaped path into unescaped segments. A trailing
// slash is ignored.
func restSegments(escaped string) ([]string, error) {
	p := strings.TrimPrefix(escaped, "/")
	p = strings.TrimSuffix(p, "/")
	if p == "" {
		return nil, nil
	}
	parts := strings.Split(p, "/")
	for i, s := range parts {
		u, err := url.PathUnescape(s)
		if err != nil {
			return nil, restFail(errArgumentInvalid, "path segment %d is not validly escaped", i+1)
		}
		parts[i] = u
	}
	return parts, nil
}

// restAuthenticate checks the Authorization header: a SAS token naming a
// hub policy (skn), signed with its primary or secondary key, not expired,
// and scoped (sr) to the hub or to a prefix of the requested resource. The
// token never appears in errors or logs.
func (h *Hub) restAuthenticate(r *http.Request, segs []string) (Policy, error) {
	header := r.Header.Get("Authorization")
	if header == "" {
		return Policy{}, restFail(errUnauthorized, "missing Authorization header; send a SharedAccessSignature signed with a hub policy key")
	}
	tok, err := iothub.ParseSASToken(header)
	if err != nil {
		reason := "not a SharedAccessSignature token"
		var ie *iothub.Error
		if errors.As(err, &ie) {
			reason = ie.Reason
		}
		return Policy{}, restFail(errUnauthorized, "malformed Authorization token: %s", reason)
	}
	if tok.KeyName == "" {
		return Policy{}, restFail(errUnauthorized, "token has no skn; the service API needs a shared access policy token")
	}
	pol, err := h.reg.Policy(tok.KeyName)
	if err != nil {
		return Policy{}, restFail(errUnauthorized, "unknown shared access policy %q", tok.KeyName)
	}
	valid := false
	for _, k := range []string{pol.PrimaryKey, pol.SecondaryKey} {
		if ok, err := tok.Verify(k); err == nil && ok {
			valid = true
			break
		}
	}
	if !valid {
		return Policy{}, restFail(errUnauthorized, "signature does not match a key of policy %q", tok.KeyName)
	}
	if now := h.cfg.Now(); !tok.ExpiresAt().After(now) {
		return Policy{}, restFail(errUnauthorized, "token expired at %s", tok.ExpiresAt().Format(time.RFC3339))
	}
	sr, err := tok.ResourceURI()
	if err != nil {
		return Policy{}, restFail(errUnauthorized, "sr is not validly URL-encoded")
	}
	if !restResourceCovers(sr, h.cfg.Host, segs) {
		return Policy{}, restFail(errUnauthorized, "token resource %q does not cover this request", sr)
	}
	return pol, nil
}

// restResourceCovers reports whether a decoded sr grants access to the
// request path: its host must be the hub's (any letter case) and its path,
// if any, the request path or a prefix of it ending on a segment boundary.
func restResourceCovers(sr, host string, segs []string) bool {
	gotHost, gotPath, _ := strings.Cut(sr, "/")
	if !strings.EqualFold(gotHost, host) {
		return false
	}
	gotPath = strings.TrimSuffix(gotPath, "/")
	if gotPath == "" {
		return true
	}
	want := strings.Join(segs, "/")
	return want == gotPath || strings.HasPrefix(want, gotPath+"/")
}

func restWriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		restWriteError(w, restFail(errServer, "encoding the response failed: %v", err))
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func restWriteError(w http.ResponseWriter, e *restError) {
	body := struct {
		Message          string `json:"Message"`
		ExceptionMessage string `json:"ExceptionMessage"`
		ErrorCode        int    `json:"errorCode,omitempty"`
	}{
		Message:          "ErrorCode:" + e.name + ";" + e.msg,
		ExceptionMessage: "Tracking ID:" + newEtag() + "-TimeStamp:" + time.Now().UTC().Format("01/02/2006 15:04:05"),
		ErrorCode:        e.code,
	}
	b, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("iothub-errorcode", e.name)
	w.WriteHeader(e.status)
	_, _ = w.Write(append(b, '\n'))
}

// restReadBody reads at most limit bytes; a larger body is a 413.
func restReadBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, restFail(errTooLarge, "request body exceeds %d bytes", limit)
		}
		return nil, restFail(errArgumentInvalid, "reading the request body failed: %v", err)
	}
	return b, nil
}

// restDecode reads a JSON object body into v, keeping numbers exact.
func restDecode(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	b, err := restReadBody(w, r, limit)
	if err != nil {
		return err
	}
	trimmed := strings.TrimLeft(string(b), " \t\r\n")
	if !strings.HasPrefix(trimmed, "{") {
		return restFail(errArgumentInvalid, "request body must be a JSON object")
	}
	dec := json.NewDecoder(strings.NewReader(trimmed))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return restFail(errArgumentInvalid, "request body is not valid JSON for this resource: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return restFail(errArgumentInvalid, "request body has data after the JSON object")
	}
	return nil
}

// restIdentity builds the identity addressed by a route's captures.
func restIdentity(args []string) iothub.Identity {
	id := iothub.Identity{DeviceID: args[0]}
	if len(args) > 1 {
		id.ModuleID = args[1]
	}
	return id
}

func restNotFound(id iothub.Identity) *restError {
	if id.ModuleID != "" {
		return restFail(errModuleNotFound, "module %q on device %q not found", id.ModuleID, id.DeviceID)
	}
	return restFail(errDeviceNotFound, "device %q not found", id.DeviceID)
}

// restRegistryError maps registry and twin errors to IoT Hub's codes.
func restRegistryError(id iothub.Identity, err error) error {
	var ve *twin.ValidationError
	switch {
	case errors.Is(err, ErrNotFound):
		return restNotFound(id)
	case errors.Is(err, ErrPreconditionFailed):
		return restFail(errPrecondition, "the If-Match etag does not match the current etag of %s", id)
	case errors.Is(err, ErrExists):
		return restFail(errDeviceExists, "%s already exists", id)
	case errors.Is(err, ErrTooLarge):
		return restFail(errTooLarge, "%v", err)
	case errors.As(err, &ve):
		return restFail(errArgumentInvalid, "%v", ve)
	default:
		return restFail(errArgumentInvalid, "%v", err)
	}
}

func restSetEtag(w http.ResponseWriter, etag string) {
	if etag != "" {
		w.Header().Set("ETag", `"`+etag+`"`)
	}
}

func restNonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// --- Registry ---------------------------------------------------------------

func (h *Hub) restListDevices(w http.ResponseWriter, r *http.Request, _ []string) error {
	restWriteJSON(w, http.StatusOK, restNonNil(h.reg.List("")))
	return nil
}

func (h *Hub) restListModules(w http.ResponseWriter, r *http.Request, args []string) error {
	id := iothub.Identity{DeviceID: args[0]}
	if _, err := h.reg.Get(id); err != nil {
		return restNotFound(id)
	}
	restWriteJSON(w, http.StatusOK, restNonNil(h.reg.List(args[0])))
	return nil
}

func (h *Hub) restGetDevice(w http.ResponseWriter, r *http.Request, args []string) error {
	id := restIdentity(args)
	d, err := h.reg.Get(id)
	if err != nil {
		return restNotFound(id)
	}
	restSetEtag(w, d.Etag)
	restWriteJSON(w, http.StatusOK, d)
	return nil
}

// restDeviceBody holds the writable members of a device or module resource.
// Read-only members (etag, connection state, times) are ignored, so bodies
// produced by Azure SDKs, whatever their date format, are accepted.
type restDeviceBody struct {
	DeviceID       string         `json:"deviceId"`
	ModuleID       string         `json:"moduleId"`
	Status         string         `json:"status"`
	StatusReason   string         `json:"statusReason"`
	Authentication Authentication `json:"authentication"`
}

func (h *Hub) restPutDevice(w http.ResponseWriter, r *http.Request, args []string) error {
	id := restIdentity(args)
	var body restDeviceBody
	if err := restDecode(w, r, restMaxBody, &body); err != nil {
		return err
	}
	if body.DeviceID != "" && body.DeviceID != id.DeviceID {
		return restFail(errArgumentInvalid, "deviceId %q in the body does not match %q in the path", body.DeviceID, id.DeviceID)
	}
	if body.ModuleID != "" && body.ModuleID != id.ModuleID {
		return restFail(errArgumentInvalid, "moduleId %q in the body does not match the path", body.ModuleID)
	}
	if id.ModuleID != "" {
		if _, err := h.reg.Get(iothub.Identity{DeviceID: id.DeviceID}); err != nil {
			return restNotFound(iothub.Identity{DeviceID: id.DeviceID})
		}
	}
	d := Device{DeviceID: id.DeviceID, ModuleID: id.ModuleID, Status: body.Status,
		StatusReason: body.StatusReason, Authentication: body.Authentication}
	stored, _, err := h.reg.Put(d, r.Header.Get("If-Match"))
	if err != nil {
		return restRegistryError(id, err)
	}
	restSetEtag(w, stored.Etag)
	restWriteJSON(w, http.StatusOK, stored)
	return nil
}

func (h *Hub) restDeleteDevice(w http.ResponseWriter, r *http.Request, args []string) error {
	id := restIdentity(args)
	d, err := h.reg.Get(id)
	if err != nil {
		return restNotFound(id)
	}
	if m := r.Header.Get("If-Match"); m != "" && m != "*" && trimQuotes(m) != d.Etag {
		return restFail(errPrecondition, "the If-Match etag does not match the current etag of %s", id)
	}
	if err := h.reg.Delete(id); err != nil {
		return restNotFound(id)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// --- Twins and methods ------------------------------------------------------

func (h *Hub) restGetTwin(w http.ResponseWriter, r *http.Request, args []string) error {
	id := restIdentity(args)
	t, err := h.GetTwin(id)
	if err != nil {
		return restRegistryError(id, err)
	}
	restSetEtag(w, t.Etag)
	restWriteJSON(w, http.StatusOK, t)
	return nil
}

// restPatchTwin serves PATCH (merge tags and desired properties) and PUT
// (replace them); reported properties in the body are ignored, as IoT Hub
// ignores them.
func (h *Hub) restPatchTwin(w http.ResponseWriter, r *http.Request, args []string) error {
	id := restIdentity(args)
	var p TwinPatch
	if err := restDecode(w, r, restMaxBody, &p); err != nil {
		return err
	}
	apply := h.PatchTwin
	if r.Method == http.MethodPut {
		apply = h.ReplaceTwin
	}
	t, err := apply(id, p, r.Header.Get("If-Match"))
	if err != nil {
		return restRegistryError(id, err)
	}
	restSetEtag(w, t.Etag)
	restWriteJSON(w, http.StatusOK, t)
	return nil
}

// restMethodBody is IoT Hub's direct-method invocation body.
type restMethodBody struct {
	MethodName      string          `json:"methodName"`
	Payload         json.RawMessage `json:"payload"`
	ResponseTimeout *int64          `json:"responseTimeoutInSeconds"`
	ConnectTimeout  *int64          `json:"connectTimeoutInSeconds"`
}

// restContext ends when the request does or the hub closes.
func (h *Hub) restContext(r *http.Request) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(r.Context())
	go func() {
		select {
		case <-h.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

func restSeconds(name string, v *int64) (time.Duration, error) {
	if v == nil {
		return 0, nil
	}
	if *v < 0 || *v > int64(restMaxWait/time.Second) {
		return 0, restFail(errArgumentInvalid, "%s %d outside 0..%d", name, *v, int64(restMaxWait/time.Second))
	}
	return time.Duration(*v) * time.Second, nil
}

// restInvoke invokes a direct method (METH-*): 200 with the device's status
// and payload, 404 DeviceNotOnline, 504 GatewayTimeout or 400.
func (h *Hub) restInvoke(w http.ResponseWriter, r *http.Request, args []string) error {
	id := restIdentity(args)
	var body restMethodBody
	if err := restDecode(w, r, restMaxMethodBody, &body); err != nil {
		return err
	}
	timeout, err := restSeconds("responseTimeoutInSeconds", body.ResponseTimeout)
	if err != nil {
		return err
	}
	connectTimeout, err := restSeconds("connectTimeoutInSeconds", body.ConnectTimeout)
	if err != nil {
		return err
	}
	if body.MethodName == "" {
		return restFail(errArgumentInvalid, "methodName is missing or empty")
	}
	if _, err := h.reg.Get(id); err != nil {
		return restNotFound(id)
	}
	wait := timeout
	if wait == 0 {
		wait = iothub.DefaultMethodTimeout
	}
	h.extendDeadlines(w, connectTimeout+wait)
	ctx, cancel := h.restContext(r)
	defer cancel()
	if connectTimeout > 0 && !h.Connected(id) {
		// IoT Hub waits up to connectTimeoutInSeconds for the device to come online.
		cctx, ccancel := context.WithTimeout(ctx, connectTimeout)
		_ = h.WaitConnected(cctx, id)
		ccancel()
	}
	var payload []byte
	if len(body.Payload) > 0 {
		payload = body.Payload
	}
	res, err := h.InvokeMethod(ctx, id, MethodRequest{Name: body.MethodName, Payload: payload, Timeout: timeout})
	if err != nil {
		var me *MethodError
		switch {
		case errors.As(err, &me) && me.Status == http.StatusNotFound:
			return restFail(errDeviceNotOnline, "%s", me.Reason)
		case errors.As(err, &me) && me.Status == http.StatusGatewayTimeout:
			return restFail(errGatewayTimeout, "%s", me.Reason)
		case errors.As(err, &me):
			return restFail(errArgumentInvalid, "%s", me.Reason)
		default:
			return restFail(errUnavailable, "method invocation ended: %v", err)
		}
	}
	restWriteJSON(w, http.StatusOK, res)
	return nil
}

// --- hilrun: cloud-to-device ------------------------------------------------

// restSendC2D enqueues the raw body as a C2D message (C2D-*). Message
// properties come from query parameters (messageId, correlationId, ack,
// ttlSeconds, and app.<name> for application properties) or, when a query
// parameter is absent, from the headers iothub-messageid,
// iothub-correlationid, iothub-ack and iothub-app-<name>. HTTP header names
// are case-insensitive, so names from headers arrive lower-cased; use the
// query form to keep letter case.
func (h *Hub) restSendC2D(w http.ResponseWriter, r *http.Request, args []string) error {
	deviceID := args[0]
	payload, err := restReadBody(w, r, iothub.MaxC2DBytes)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	pick := func(query, header string) string {
		if v := q.Get(query); v != "" {
			return v
		}
		return r.Header.Get(header)
	}
	m := C2DMessage{
		Payload:       payload,
		MessageID:     pick("messageId", "iothub-messageid"),
		CorrelationID: pick("correlationId", "iothub-correlationid"),
		Ack:           pick("ack", "iothub-ack"),
	}
	switch m.Ack {
	case "", "none", "positive", "negative", "full":
	default:
		return restFail(errArgumentInvalid, "ack %q: want none, positive, negative or full", m.Ack)
	}
	if v := q.Get("ttlSeconds"); v != "" {
		secs, err := strconv.ParseFloat(v, 64)
		if err != nil || secs <= 0 || secs > iothub.C2DMaxTTL.Seconds() {
			return restFail(errArgumentInvalid, "ttlSeconds %q: want a number of seconds above 0 and at most %d", v, int(iothub.C2DMaxTTL.Seconds()))
		}
		m.TTL = time.Duration(secs * float64(time.Second))
		if m.TTL <= 0 {
			m.TTL = time.Nanosecond
		}
	}
	var names []string
	for k := range q {
		if strings.HasPrefix(k, "app.") && len(k) > len("app.") {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	for _, k := range names {
		m.Properties = append(m.Properties, iothub.Property{Name: strings.TrimPrefix(k, "app."), Value: q.Get(k)})
	}
	var hnames []string
	for k := range r.Header {
		if lk := strings.ToLower(k); strings.HasPrefix(lk, "iothub-app-") && len(lk) > len("iothub-app-") {
			hnames = append(hnames, k)
		}
	}
	sort.Strings(hnames)
	for _, k := range hnames {
		name := strings.ToLower(k)[len("iothub-app-"):]
		if !m.Properties.Has(name) {
			m.Properties = append(m.Properties, iothub.Property{Name: name, Value: r.Header.Get(k)})
		}
	}
	mid, err := h.SendC2D(deviceID, m)
	if err != nil {
		id := iothub.Identity{DeviceID: deviceID}
		switch {
		case errors.Is(err, ErrQueueFull):
			return restFail(errQueueDepth, "%v", err)
		case errors.Is(err, ErrNotFound):
			return restNotFound(id)
		case errors.Is(err, ErrTooLarge):
			return restFail(errTooLarge, "%v", err)
		default:
			return restFail(errArgumentInvalid, "%v", err)
		}
	}
	restWriteJSON(w, http.StatusAccepted, map[string]string{"messageId": mid})
	return nil
}

func (h *Hub) restC2DQueue(w http.ResponseWriter, r *http.Request, args []string) error {
	id := iothub.Identity{DeviceID: args[0]}
	if _, err := h.reg.Get(id); err != nil {
		return restNotFound(id)
	}
	restWriteJSON(w, http.StatusOK, restNonNil(h.C2DQueue(args[0])))
	return nil
}

// --- hilrun: telemetry, trace, faults, status --------------------------------

// restTelemetryQuery reads deviceId, moduleId and after.
func restTelemetryQuery(q url.Values) (id iothub.Identity, after uint64, err error) {
	id = iothub.Identity{DeviceID: q.Get("deviceId"), ModuleID: q.Get("moduleId")}
	if id.DeviceID == "" && id.ModuleID != "" {
		return id, 0, restFail(errArgumentInvalid, "moduleId needs deviceId")
	}
	if v := q.Get("after"); v != "" {
		after, err = strconv.ParseUint(v, 10, 64)
		if err != nil {
			return id, 0, restFail(errArgumentInvalid, "after %q is not a sequence number", v)
		}
	}
	return id, after, nil
}

func (h *Hub) restTelemetry(w http.ResponseWriter, r *http.Request, _ []string) error {
	id, after, err := restTelemetryQuery(r.URL.Query())
	if err != nil {
		return err
	}
	var out []Message
	if id.DeviceID == "" {
		out = h.AllTelemetry(after)
	} else {
		for _, m := range h.Telemetry(id) {
			if m.Seq > after {
				out = append(out, m)
			}
		}
	}
	restWriteJSON(w, http.StatusOK, restNonNil(out))
	return nil
}

// restWaitTelemetry long-polls for the first message from deviceId (and
// moduleId) with a sequence number above after: 200 with the message, 408
// when timeoutSeconds (default 30, at most 300, fractions allowed) pass.
func (h *Hub) restWaitTelemetry(w http.ResponseWriter, r *http.Request, _ []string) error {
	q := r.URL.Query()
	id, after, err := restTelemetryQuery(q)
	if err != nil {
		return err
	}
	if id.DeviceID == "" {
		return restFail(errArgumentInvalid, "deviceId is required")
	}
	timeout := restDefaultWait
	if v := q.Get("timeoutSeconds"); v != "" {
		secs, err := strconv.ParseFloat(v, 64)
		if err != nil || secs < 0 || secs > restMaxWait.Seconds() {
			return restFail(errArgumentInvalid, "timeoutSeconds %q: want 0..%d", v, int(restMaxWait.Seconds()))
		}
		timeout = time.Duration(secs * float64(time.Second))
	}
	h.extendDeadlines(w, timeout)
	ctx, cancel := h.restContext(r)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, timeout)
	defer cancelT()
	m, err := h.WaitTelemetry(ctx, id, after, nil)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return restFail(errRequestTimeout, "no telemetry within %s: %v", timeout, err)
		}
		return restFail(errUnavailable, "%v", err)
	}
	restWriteJSON(w, http.StatusOK, m)
	return nil
}

// restTrace returns the wire trace, optionally for one clientId and only
// entries with a sequence number above after.
func (h *Hub) restTrace(w http.ResponseWriter, r *http.Request, _ []string) error {
	q := r.URL.Query()
	client, hasClient := q.Get("clientId"), q.Has("clientId")
	var after uint64
	if v := q.Get("after"); v != "" {
		var err error
		if after, err = strconv.ParseUint(v, 10, 64); err != nil {
			return restFail(errArgumentInvalid, "after %q is not a sequence number", v)
		}
	}
	out := h.trace.Entries(func(e *Entry) bool {
		return e.Seq > after && (!hasClient || e.ClientID == client)
	})
	restWriteJSON(w, http.StatusOK, restNonNil(out))
	return nil
}

// restFaultBody is a fault-injection request.
type restFaultBody struct {
	Action          string  `json:"action"` // drop, refuse, silent
	DeviceID        string  `json:"deviceId"`
	ModuleID        string  `json:"moduleId"`
	RST             bool    `json:"rst"`             // drop: TCP reset instead of a close
	Reason          string  `json:"reason"`          // drop: recorded in the trace
	ReturnCode      int     `json:"returnCode"`      // refuse: CONNACK return code 1..5
	DurationSeconds float64 `json:"durationSeconds"` // refuse: how long
	Silent          *bool   `json:"silent"`          // silent: on or off
}

// restFaults injects a fault: "drop" closes a live connection (404 when the
// identity is offline), "refuse" answers CONNECTs with a return code for a
// while (no deviceId: every identity), "silent" stops or resumes answering.
func (h *Hub) restFaults(w http.ResponseWriter, r *http.Request, _ []string) error {
	var f restFaultBody
	if err := restDecode(w, r, restMaxBody, &f); err != nil {
		return err
	}
	id := iothub.Identity{DeviceID: f.DeviceID, ModuleID: f.ModuleID}
	if id.DeviceID == "" && id.ModuleID != "" {
		return restFail(errArgumentInvalid, "moduleId needs deviceId")
	}
	switch f.Action {
	case "drop":
		if id.DeviceID == "" {
			return restFail(errArgumentInvalid, "drop needs deviceId")
		}
		if err := h.Drop(id, f.RST, f.Reason); err != nil {
			return restFail(errDeviceNotOnline, "%s has no live connection", id)
		}
	case "refuse":
		if f.ReturnCode < 1 || f.ReturnCode > 5 {
			return restFail(errArgumentInvalid, "returnCode %d: want an MQTT 3.1.1 CONNACK refusal code 1..5", f.ReturnCode)
		}
		if f.DurationSeconds <= 0 || f.DurationSeconds > 48*3600 {
			return restFail(errArgumentInvalid, "durationSeconds must be above 0 and at most 172800")
		}
		h.RefuseConnects(id, byte(f.ReturnCode), time.Duration(f.DurationSeconds*float64(time.Second)))
	case "silent":
		if id.DeviceID == "" {
			return restFail(errArgumentInvalid, "silent needs deviceId")
		}
		if f.Silent == nil {
			return restFail(errArgumentInvalid, "silent needs \"silent\": true or false")
		}
		h.SetSilent(id, *f.Silent)
	default:
		return restFail(errArgumentInvalid, "action %q: want drop, refuse or silent", f.Action)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// restStatusBody summarises the running hub.
type restStatusBody struct {
	Version   string   `json:"version"`
	Host      string   `json:"host"`
	MQTTAddr  string   `json:"mqttAddr"`
	HTTPSAddr string   `json:"httpsAddr"`
	Connected []string `json:"connected"` // client IDs with a live connection
}

func (h *Hub) restStatus(w http.ResponseWriter, r *http.Request, _ []string) error {
	st := restStatusBody{Version: Version, Host: h.cfg.Host, MQTTAddr: h.MQTTAddr(), HTTPSAddr: h.HTTPSAddr(), Connected: []string{}}
	for _, d := range h.reg.List("") {
		ids := []iothub.Identity{d.Identity()}
		for _, m := range h.reg.List(d.DeviceID) {
			ids = append(ids, m.Identity())
		}
		for _, id := range ids {
			if h.Connected(id) {
				st.Connected = append(st.Connected, id.ClientID())
			}
		}
	}
	sort.Strings(st.Connected)
	restWriteJSON(w, http.StatusOK, st)
	return nil
}
