package awsiot

import (
	"errors"
	"fmt"

	"github.com/hilrun/hilrun/rig/awsproto"
	"github.com/hilrun/hilrun/rig/hub"
)

// The Device Shadow service (AWS-007, AWS-008, AWS-009, AWS-012): requests
// arrive on `$aws/things/{thing}/shadow[/name/{name}]/{get|update|delete}`
// and are answered on `…/accepted` or `…/rejected`; an accepted update
// also publishes `…/update/documents` and, when desired and reported
// differ, `…/update/delta`. Answers are ordinary messages: a client gets
// them only when subscribed.

func (e *Endpoint) now() int64 { return e.cfg.Now().Unix() }

// shadowRequest serves one device request. c is nil for service calls.
func (e *Endpoint) shadowRequest(ref awsproto.ShadowRef, payload []byte, c *conn) {
	e.mu.Lock()
	f := e.faults[ref.Thing]
	if f != nil && f.silent {
		e.mu.Unlock()
		e.trace.AddExternal(hub.Entry{ClientID: clientOf(c), Dir: hub.DirEvent, Type: hub.EventFault, Requirement: "AWS-007",
			Reason: fmt.Sprintf("shadow service silent for %s: %s not answered", ref.Thing, ref)})
		return
	}
	update := ref.Op == awsproto.OpUpdate
	req, perr := awsproto.ParseRequest(payload, update)
	if perr == nil && update && f != nil && f.rejectLeft > 0 {
		f.rejectLeft--
		perr = &awsproto.Error{Code: f.rejectCode, Message: faultMessage(f.rejectCode), ClientToken: req.ClientToken}
		e.trace.AddExternal(hub.Entry{ClientID: clientOf(c), Dir: hub.DirEvent, Type: hub.EventFault, Requirement: "AWS-012",
			Reason: fmt.Sprintf("shadow update of %s answered %d by fault injection", ref.Thing, f.rejectCode)})
	}
	key := shadowKey{ref.Thing, ref.Name}
	now := e.now()
	var pubs []published
	answer := func(kind string, body []byte) {
		pubs = append(pubs, published{awsproto.ShadowTopic(ref.Thing, ref.Name, ref.Op, kind), body})
	}
	reject := func(err *awsproto.Error) {
		if err.Timestamp == 0 {
			err.Timestamp = now
		}
		answer(awsproto.Rejected, err.Marshal())
	}
	switch {
	case perr != nil:
		reject(perr)
	case ref.Op == awsproto.OpGet:
		s := e.shadows[key]
		if s == nil || !s.Exists {
			reject(awsproto.NotFound(ref.Thing, ref.Name, now, req.ClientToken))
			break
		}
		answer(awsproto.Accepted, s.Document(now, req.ClientToken))
	case ref.Op == awsproto.OpDelete:
		s := e.shadows[key]
		if s == nil || !s.Exists {
			reject(awsproto.NotFound(ref.Thing, ref.Name, now, req.ClientToken))
			break
		}
		body, err := s.Delete(req, now)
		if err != nil {
			reject(err)
			break
		}
		answer(awsproto.Accepted, body)
	case update:
		s := e.shadows[key]
		if s == nil {
			s = &awsproto.Shadow{}
			e.shadows[key] = s
		}
		out, err := s.Update(req, now)
		if err != nil {
			reject(err)
			break
		}
		answer(awsproto.Accepted, out.Accepted)
		if out.Delta != nil {
			pubs = append(pubs, published{awsproto.ShadowTopic(ref.Thing, ref.Name, awsproto.OpUpdate, awsproto.Delta), out.Delta})
		}
		pubs = append(pubs, published{awsproto.ShadowTopic(ref.Thing, ref.Name, awsproto.OpUpdate, awsproto.Documents), out.Documents})
	}
	e.mu.Unlock()
	for _, p := range pubs {
		_ = e.srv.Publish(p.topic, p.body, false, 1)
	}
	e.notify()
}

type published struct {
	topic string
	body  []byte
}

func clientOf(c *conn) string {
	if c == nil {
		return ""
	}
	return c.clientID
}

func faultMessage(code int) string {
	switch code {
	case 400:
		return "Bad Request"
	case 401:
		return awsproto.MsgUnauthorized
	case 403:
		return "Forbidden"
	case 409:
		return awsproto.MsgVersionConflict
	case 413:
		return awsproto.MsgTooLarge
	case 429:
		return "Too Many Requests"
	}
	return awsproto.MsgInternal
}

// ErrNoShadow is returned by GetShadow for a shadow that does not exist.
var ErrNoShadow = errors.New("no such shadow")

// GetShadow returns the shadow's get document (state with delta,
// metadata, version, timestamp), as the REST GetThingShadow answers it.
func (e *Endpoint) GetShadow(thing, name string) ([]byte, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.shadows[shadowKey{thing, name}]
	if s == nil || !s.Exists {
		return nil, fmt.Errorf("%s: %w", awsproto.ShadowPrefix(thing, name), ErrNoShadow)
	}
	return s.Document(e.now(), ""), nil
}

// Shadow returns a copy of a shadow's state (nil when it never existed).
func (e *Endpoint) Shadow(thing, name string) *awsproto.Shadow {
	e.mu.Lock()
	defer e.mu.Unlock()
	if s := e.shadows[shadowKey{thing, name}]; s != nil {
		return s.Clone()
	}
	return nil
}

// UpdateShadow applies an update document as the service side
// (UpdateThingShadow): the same rules as a device update, and the same
// accepted / delta / documents messages go out to subscribers.
func (e *Endpoint) UpdateShadow(thing, name string, doc []byte) ([]byte, error) {
	req, perr := awsproto.ParseRequest(doc, true)
	if perr != nil {
		return nil, perr
	}
	now := e.now()
	e.mu.Lock()
	key := shadowKey{thing, name}
	s := e.shadows[key]
	if s == nil {
		s = &awsproto.Shadow{}
		e.shadows[key] = s
	}
	out, err := s.Update(req, now)
	e.mu.Unlock()
	if err != nil {
		return nil, err
	}
	_ = e.srv.Publish(awsproto.ShadowTopic(thing, name, awsproto.OpUpdate, awsproto.Accepted), out.Accepted, false, 1)
	if out.Delta != nil {
		_ = e.srv.Publish(awsproto.ShadowTopic(thing, name, awsproto.OpUpdate, awsproto.Delta), out.Delta, false, 1)
	}
	_ = e.srv.Publish(awsproto.ShadowTopic(thing, name, awsproto.OpUpdate, awsproto.Documents), out.Documents, false, 1)
	e.notify()
	return out.Accepted, nil
}

// DeleteShadow deletes a shadow as the service side (DeleteThingShadow).
func (e *Endpoint) DeleteShadow(thing, name string) ([]byte, error) {
	e.mu.Lock()
	s := e.shadows[shadowKey{thing, name}]
	if s == nil || !s.Exists {
		e.mu.Unlock()
		return nil, awsproto.NotFound(thing, name, e.now(), "")
	}
	body, err := s.Delete(awsproto.Request{}, e.now())
	e.mu.Unlock()
	if err != nil {
		return nil, err
	}
	_ = e.srv.Publish(awsproto.ShadowTopic(thing, name, awsproto.OpDelete, awsproto.Accepted), body, false, 1)
	e.notify()
	return body, nil
}

// Publish sends a message to a topic as the service (the data plane's
// Publish, e.g. a cloud-to-device message on a thing's C2D topic).
func (e *Endpoint) Publish(topic string, payload []byte, qos byte, retain bool) error {
	if qos > 1 {
		return fmt.Errorf("QoS %d: AWS IoT supports 0 and 1 (AWS-006)", qos)
	}
	if p := awsproto.TopicProblem(topic); p != "" {
		return fmt.Errorf("topic %q: %s", topic, p)
	}
	if len(payload) > awsproto.MaxPayloadBytes {
		return fmt.Errorf("payload of %d bytes exceeds %d", len(payload), awsproto.MaxPayloadBytes)
	}
	return e.srv.Publish(topic, payload, retain, qos)
}

// SilenceShadow makes the shadow service ignore every request of thing
// (rig fault injection: a device's bounded wait, AWS-007).
func (e *Endpoint) SilenceShadow(thing string, silent bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f := e.faultOf(thing)
	f.silent = silent
}

// RejectShadowUpdates answers the next n well-formed shadow updates of
// thing on `…/update/rejected` with code, after the broker acknowledged
// the PUBLISH (AWS-012); the shadow is left unchanged.
func (e *Endpoint) RejectShadowUpdates(thing string, code, n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f := e.faultOf(thing)
	f.rejectCode, f.rejectLeft = code, n
}

func (e *Endpoint) faultOf(thing string) *shadowFault {
	f := e.faults[thing]
	if f == nil {
		f = &shadowFault{}
		e.faults[thing] = f
	}
	return f
}
