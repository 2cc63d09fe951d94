package awsproto

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"unicode/utf8"
)

// Error is the document the shadow service publishes on `…/rejected`
// ("Device Shadow error messages"): {"code":409,"message":"Version
// conflict","timestamp":…,"clientToken":…}.
type Error struct {
	Code        int    `json:"code"`
	Message     string `json:"message"`
	Timestamp   int64  `json:"timestamp,omitempty"`
	ClientToken string `json:"clientToken,omitempty"`
}

func (e *Error) Error() string { return fmt.Sprintf("%d: %s", e.Code, e.Message) }

func errorf(code int, format string, a ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, a...)}
}

// The service's messages for the refusals the endpoint produces.
const (
	MsgInvalidJSON     = "Invalid JSON"
	MsgMissingState    = "Missing required node: state"
	MsgVersionConflict = "Version conflict"
	MsgTooLarge        = "The payload exceeds the maximum size allowed"
	MsgBadEncoding     = "Unsupported documented encoding; supported encoding is UTF-8"
	MsgInvalidToken    = "Invalid clientToken"
	MsgInvalidVersion  = "Invalid version"
	MsgTooDeep         = "JSON contains too many levels of nesting; maximum is 6"
	MsgUnauthorized    = "Unauthorized"
	MsgInternal        = "Internal service failure"
)

// Request is a parsed shadow request document: an update
// `{"state":{"desired":{…},"reported":{…}},"clientToken":"…","version":n}`,
// or the optional `{"clientToken":"…"}` body of get and delete.
type Request struct {
	// Desired and Reported are the sections as sent; Has* tell whether the
	// section was present (a null section is present with a nil map and
	// clears the whole section).
	Desired, Reported       map[string]any
	HasDesired, HasReported bool
	// StateNull: `"state": null`, which deletes all of the shadow's state.
	StateNull   bool
	HasState    bool
	Version     *int64
	ClientToken string
}

// ParseRequest parses a shadow request document. For an update (update
// true) a state node is required; get and delete accept an empty payload.
// Every refusal is the *Error the service publishes on `…/rejected`.
func ParseRequest(b []byte, update bool) (Request, *Error) {
	var r Request
	if len(bytes.TrimSpace(b)) == 0 {
		if update {
			return r, errorf(400, MsgInvalidJSON)
		}
		return r, nil
	}
	if len(b) > MaxShadowBytes+MaxClientTokenBytes+256 {
		return r, errorf(413, MsgTooLarge)
	}
	if !utf8.Valid(b) {
		return r, errorf(415, MsgBadEncoding)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var top map[string]any
	if err := dec.Decode(&top); err != nil || top == nil {
		return r, errorf(400, MsgInvalidJSON)
	}
	if dec.More() {
		return r, errorf(400, MsgInvalidJSON)
	}
	if _, err := dec.Token(); err == nil {
		return r, errorf(400, MsgInvalidJSON)
	}
	if v, ok := top["clientToken"]; ok {
		s, isStr := v.(string)
		if !isStr || len(s) > MaxClientTokenBytes {
			return r, errorf(400, MsgInvalidToken)
		}
		r.ClientToken = s
	}
	if v, ok := top["version"]; ok {
		n, isNum := v.(json.Number)
		i, err := n.Int64()
		if !isNum || err != nil || i < 0 {
			return r, withToken(errorf(400, MsgInvalidVersion), r.ClientToken)
		}
		r.Version = &i
	}
	st, ok := top["state"]
	if !ok {
		if update {
			return r, withToken(errorf(400, MsgMissingState), r.ClientToken)
		}
		return r, nil
	}
	if !update {
		return r, nil // get/delete ignore a state node
	}
	r.HasState = true
	if st == nil {
		r.StateNull = true
		return r, nil
	}
	sm, ok := st.(map[string]any)
	if !ok {
		return r, withToken(errorf(400, "State node must be an object"), r.ClientToken)
	}
	for k, v := range sm {
		switch k {
		case "desired", "reported":
		default:
			return r, withToken(errorf(400, "State contains an invalid node: '%s'", k), r.ClientToken)
		}
		var sec map[string]any
		if v != nil {
			m, ok := v.(map[string]any)
			if !ok {
				return r, withToken(errorf(400, "%s node must be an object", capital(k)), r.ClientToken)
			}
			if depth(m) > MaxShadowDepth {
				return r, withToken(errorf(400, MsgTooDeep), r.ClientToken)
			}
			sec = m
		}
		if k == "desired" {
			r.Desired, r.HasDesired = sec, true
		} else {
			r.Reported, r.HasReported = sec, true
		}
	}
	if !r.HasDesired && !r.HasReported {
		return r, withToken(errorf(400, "State node must contain desired or reported"), r.ClientToken)
	}
	return r, nil
}

func capital(s string) string {
	if s == "" {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

func withToken(e *Error, tok string) *Error {
	e.ClientToken = tok
	return e
}

// depth is the nesting depth of an object: {"a":1} is 1, {"a":{"b":1}} 2.
// Arrays count as a level, like objects.
func depth(v any) int {
	switch x := v.(type) {
	case map[string]any:
		d := 0
		for _, c := range x {
			d = max(d, depth(c))
		}
		return d + 1
	case []any:
		d := 0
		for _, c := range x {
			d = max(d, depth(c))
		}
		return d + 1
	}
	return 0
}

// Shadow is the service's state of one (classic or named) shadow.
type Shadow struct {
	Desired, Reported         map[string]any
	MetaDesired, MetaReported map[string]any
	// Version is the last version; it keeps counting after a delete
	// (a shadow recreated continues the sequence).
	Version int64
	Exists  bool
}

// Clone returns a deep copy.
func (s *Shadow) Clone() *Shadow {
	c := *s
	c.Desired, c.Reported = deepCopy(s.Desired), deepCopy(s.Reported)
	c.MetaDesired, c.MetaReported = deepCopy(s.MetaDesired), deepCopy(s.MetaReported)
	return &c
}

func deepCopy(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok {
			out[k] = deepCopy(sub)
			continue
		}
		out[k] = v
	}
	return out
}

// Outcome of an accepted update: the documents the service publishes.
type Outcome struct {
	Accepted  []byte // …/update/accepted
	Delta     []byte // …/update/delta, nil when there is nothing to publish
	Documents []byte // …/update/documents
	Version   int64
}

// Update applies an update request at time now (seconds since the epoch):
// desired and reported are merged key by key, a null member deletes the
// key, nested objects merge, anything else replaces; a request naming a
// version other than the current one is refused 409; a resulting state
// above 8 KB is refused 413 and leaves the shadow unchanged.
func (s *Shadow) Update(r Request, now int64) (Outcome, *Error) {
	if r.Version != nil && *r.Version != s.Version {
		return Outcome{}, &Error{Code: 409, Message: MsgVersionConflict, Timestamp: now, ClientToken: r.ClientToken}
	}
	prev := s.Clone()
	next := s.Clone()
	if r.StateNull {
		next.Desired, next.Reported, next.MetaDesired, next.MetaReported = nil, nil, nil, nil
	}
	reqMeta := map[string]any{}
	apply := func(has bool, patch map[string]any, state, meta *map[string]any, name string) {
		if !has {
			return
		}
		if patch == nil { // "desired": null
			*state, *meta = nil, nil
			reqMeta[name] = map[string]any{"timestamp": now}
			return
		}
		if *state == nil {
			*state = map[string]any{}
		}
		if *meta == nil {
			*meta = map[string]any{}
		}
		reqMeta[name] = merge(*state, *meta, patch, now)
		if len(*state) == 0 {
			*state, *meta = nil, nil
		}
	}
	apply(r.HasDesired, r.Desired, &next.Desired, &next.MetaDesired, "desired")
	apply(r.HasReported, r.Reported, &next.Reported, &next.MetaReported, "reported")
	if n := len(mustJSON(next.stateDoc(false))); n > MaxShadowBytes {
		return Outcome{}, &Error{Code: 413, Message: MsgTooLarge, Timestamp: now, ClientToken: r.ClientToken}
	}
	next.Version = s.Version + 1
	next.Exists = true
	*s = *next

	reqState := map[string]any{}
	if r.HasDesired {
		reqState["desired"] = nullable(r.Desired)
	}
	if r.HasReported {
		reqState["reported"] = nullable(r.Reported)
	}
	var stateOut any = reqState
	if r.StateNull {
		stateOut = nil
	}
	acc := map[string]any{"state": stateOut, "metadata": reqMeta, "version": s.Version, "timestamp": now}
	if r.ClientToken != "" {
		acc["clientToken"] = r.ClientToken
	}
	out := Outcome{Accepted: mustJSON(acc), Version: s.Version}
	if r.HasDesired || r.StateNull {
		if d := deltaOf(s.Desired, s.Reported); len(d) > 0 {
			dd := map[string]any{"version": s.Version, "timestamp": now, "state": d, "metadata": metaFor(d, s.MetaDesired)}
			if r.ClientToken != "" {
				dd["clientToken"] = r.ClientToken
			}
			out.Delta = mustJSON(dd)
		}
	}
	docs := map[string]any{"current": s.snapshot(), "timestamp": now}
	if prev.Exists {
		docs["previous"] = prev.snapshot()
	}
	if r.ClientToken != "" {
		docs["clientToken"] = r.ClientToken
	}
	out.Documents = mustJSON(docs)
	return out, nil
}

func nullable(m map[string]any) any {
	if m == nil {
		return nil
	}
	return m
}

// merge applies patch to state (and its metadata) and returns the
// metadata of the request.
func merge(state, meta, patch map[string]any, now int64) map[string]any {
	rm := map[string]any{}
	for k, v := range patch {
		switch pv := v.(type) {
		case nil:
			delete(state, k)
			delete(meta, k)
			rm[k] = map[string]any{"timestamp": now}
		case map[string]any:
			cur, ok := state[k].(map[string]any)
			if !ok {
				cur = map[string]any{}
			}
			cm, ok := meta[k].(map[string]any)
			if !ok || cm["timestamp"] != nil {
				cm = map[string]any{}
			}
			rm[k] = merge(cur, cm, pv, now)
			if len(cur) == 0 {
				delete(state, k)
				delete(meta, k)
				continue
			}
			state[k], meta[k] = cur, cm
		default:
			state[k] = v
			meta[k] = map[string]any{"timestamp": now}
			rm[k] = map[string]any{"timestamp": now}
		}
	}
	return rm
}

// deltaOf is the part of desired that differs from reported.
func deltaOf(desired, reported map[string]any) map[string]any {
	d := map[string]any{}
	for k, dv := range desired {
		rv, ok := reported[k]
		dm, dIsObj := dv.(map[string]any)
		rm, rIsObj := rv.(map[string]any)
		switch {
		case !ok:
			d[k] = dv
		case dIsObj && rIsObj:
			if sub := deltaOf(dm, rm); len(sub) > 0 {
				d[k] = sub
			}
		case !equalJSON(dv, rv):
			d[k] = dv
		}
	}
	return d
}

func equalJSON(a, b any) bool {
	if an, ok := a.(json.Number); ok {
		if bn, ok := b.(json.Number); ok {
			af, e1 := an.Float64()
			bf, e2 := bn.Float64()
			if e1 == nil && e2 == nil {
				return af == bf
			}
			return an == bn
		}
	}
	return reflect.DeepEqual(a, b)
}

// metaFor picks the metadata of the keys in d.
func metaFor(d, meta map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range d {
		m := meta[k]
		if sub, ok := v.(map[string]any); ok {
			if mm, ok := m.(map[string]any); ok {
				out[k] = metaFor(sub, mm)
				continue
			}
		}
		if m != nil {
			out[k] = m
		}
	}
	return out
}

// stateDoc is the state node of the shadow; withDelta adds the delta
// section as the get answer carries it.
func (s *Shadow) stateDoc(withDelta bool) map[string]any {
	st := map[string]any{}
	if s.Desired != nil {
		st["desired"] = s.Desired
	}
	if s.Reported != nil {
		st["reported"] = s.Reported
	}
	if withDelta {
		if d := deltaOf(s.Desired, s.Reported); len(d) > 0 {
			st["delta"] = d
		}
	}
	return st
}

func (s *Shadow) metaDoc() map[string]any {
	m := map[string]any{}
	if s.MetaDesired != nil {
		m["desired"] = s.MetaDesired
	}
	if s.MetaReported != nil {
		m["reported"] = s.MetaReported
	}
	return m
}

func (s *Shadow) snapshot() map[string]any {
	return map[string]any{"state": s.stateDoc(false), "metadata": s.metaDoc(), "version": s.Version}
}

// Document is the get answer: state (with delta), metadata, version,
// timestamp and the request's clientToken.
func (s *Shadow) Document(now int64, clientToken string) []byte {
	d := map[string]any{"state": s.stateDoc(true), "metadata": s.metaDoc(), "version": s.Version, "timestamp": now}
	if clientToken != "" {
		d["clientToken"] = clientToken
	}
	return mustJSON(d)
}

// Delete removes the shadow's document; the version keeps counting.
func (s *Shadow) Delete(r Request, now int64) ([]byte, *Error) {
	if r.Version != nil && *r.Version != s.Version {
		return nil, &Error{Code: 409, Message: MsgVersionConflict, Timestamp: now, ClientToken: r.ClientToken}
	}
	s.Desired, s.Reported, s.MetaDesired, s.MetaReported = nil, nil, nil, nil
	s.Exists = false
	d := map[string]any{"version": s.Version, "timestamp": now}
	if r.ClientToken != "" {
		d["clientToken"] = r.ClientToken
	}
	return mustJSON(d), nil
}

// NotFound is the 404 the service answers for a shadow that does not exist.
func NotFound(thing, name string, now int64, tok string) *Error {
	n := thing
	if name != "" {
		n = name
	}
	return &Error{Code: 404, Message: fmt.Sprintf("No shadow exists with name: '%s'", n), Timestamp: now, ClientToken: tok}
}

// Marshal renders an error document.
func (e *Error) Marshal() []byte { return mustJSON(e) }

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only maps of decoded JSON values reach here
	}
	return b
}

// ResponseDoc is the common shape of the service's accepted, delta and
// get answers, as a client reads them.
type ResponseDoc struct {
	State       json.RawMessage `json:"state"`
	Metadata    json.RawMessage `json:"metadata,omitempty"`
	Version     int64           `json:"version"`
	Timestamp   int64           `json:"timestamp"`
	ClientToken string          `json:"clientToken,omitempty"`
	Code        int             `json:"code,omitempty"`    // rejected only
	Message     string          `json:"message,omitempty"` // rejected only
}

// ParseResponse reads any of the service's answers.
func ParseResponse(b []byte) (ResponseDoc, error) {
	var d ResponseDoc
	err := json.Unmarshal(b, &d)
	return d, err
}

// StateSections splits a state node into desired / reported / delta.
type StateSections struct {
	Desired  map[string]any `json:"desired,omitempty"`
	Reported map[string]any `json:"reported,omitempty"`
	Delta    map[string]any `json:"delta,omitempty"`
}

// Keys returns the top-level keys of m (for failure messages and checks).
func Keys(m map[string]any) []string {
	return sortedKeys(m)
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range maps.Keys(m) {
		ks = append(ks, k)
	}
	for i := 1; i < len(ks); i++ {
		for j := i; j > 0 && ks[j] < ks[j-1]; j-- {
			ks[j], ks[j-1] = ks[j-1], ks[j]
		}
	}
	return ks
}
