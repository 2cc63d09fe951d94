package awsiot

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hilrun/hilrun/rig/awsproto"
)

// Certificate statuses (AWS IoT's ACTIVE / INACTIVE / REVOKED).
const (
	StatusActive   = "ACTIVE"
	StatusInactive = "INACTIVE"
	StatusRevoked  = "REVOKED"
)

// ThingVar is the policy variable replaced by the connection's thing name.
const ThingVar = "${iot:Connection.Thing.ThingName}"

// Statement allows one action on resources. Resources are AWS IoT
// resource names without the ARN prefix: `client/{clientId}`,
// `topic/{topic}`, `topicfilter/{filter}`; `*` matches any run of
// characters and ThingVar the connection's thing name.
type Statement struct {
	Action   string   `json:"action"` // iot:Connect, iot:Publish, iot:Subscribe, iot:Receive
	Resource []string `json:"resource"`
}

// Policy is the allow-list attached to a thing's certificate (AWS-005,
// AWS-010: what a thing may connect as, publish and subscribe to).
// Anything not allowed is denied.
type Policy struct {
	Name       string      `json:"name"`
	Statements []Statement `json:"statements"`
}

// DefaultPolicy lets a thing connect as itself and use its own shadows
// (classic and named) and the seed SDK's default telemetry and C2D
// topics `device/{thing}/…` — the policy AWS's getting-started guides
// scope per thing.
func DefaultPolicy() Policy {
	return Policy{Name: "hilrun-thing", Statements: []Statement{
		{Action: "iot:Connect", Resource: []string{"client/" + ThingVar}},
		{Action: "iot:Publish", Resource: []string{"topic/$aws/things/" + ThingVar + "/shadow/*", "topic/device/" + ThingVar + "/*"}},
		{Action: "iot:Subscribe", Resource: []string{"topicfilter/$aws/things/" + ThingVar + "/shadow/*", "topicfilter/device/" + ThingVar + "/*"}},
		{Action: "iot:Receive", Resource: []string{"topic/$aws/things/" + ThingVar + "/shadow/*", "topic/device/" + ThingVar + "/*"}},
	}}
}

// WithTopics returns p plus publish/subscribe/receive rights on extra
// topic patterns (e.g. a configured telemetry or C2D topic, AWS-010).
func (p Policy) WithTopics(patterns ...string) Policy {
	out := Policy{Name: p.Name, Statements: append([]Statement(nil), p.Statements...)}
	for _, pat := range patterns {
		out.Statements = append(out.Statements,
			Statement{Action: "iot:Publish", Resource: []string{"topic/" + pat}},
			Statement{Action: "iot:Subscribe", Resource: []string{"topicfilter/" + pat}},
			Statement{Action: "iot:Receive", Resource: []string{"topic/" + pat}})
	}
	return out
}

// Allows reports whether the policy allows action on resource for a
// connection of thing.
func (p Policy) Allows(action, resource, thing string) bool {
	for _, s := range p.Statements {
		if s.Action != action && s.Action != "iot:*" {
			continue
		}
		for _, r := range s.Resource {
			if globMatch(strings.ReplaceAll(r, ThingVar, thing), resource) {
				return true
			}
		}
	}
	return false
}

// globMatch matches s against a pattern where '*' stands for any run of
// characters (also '/') and '?' for one.
func globMatch(pat, s string) bool {
	for len(pat) > 0 {
		switch pat[0] {
		case '*':
			for i := len(s); i >= 0; i-- {
				if globMatch(pat[1:], s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if s == "" {
				return false
			}
			pat, s = pat[1:], s[1:]
		default:
			if s == "" || s[0] != pat[0] {
				return false
			}
			pat, s = pat[1:], s[1:]
		}
	}
	return s == ""
}

// Thing is a registered thing.
type Thing struct {
	Name   string `json:"thingName"`
	Policy Policy `json:"policy"`
}

// Certificate is a registered device certificate.
type Certificate struct {
	ID     string `json:"certificateId"` // SHA-256 of the DER, lower-case hex (AWS's certificate ID)
	Thing  string `json:"thing"`         // the principal it is attached to
	Status string `json:"status"`
	// CA is the ID of the registered CA that issued it; "" for a
	// certificate registered without a CA (self-signed, AWS's
	// multi-account registration).
	CA   string            `json:"caCertificateId,omitempty"`
	cert *x509.Certificate `json:"-"`
}

// CertID is AWS IoT's certificate ID of a certificate.
func CertID(c *x509.Certificate) string {
	s := sha256.Sum256(c.Raw)
	return hex.EncodeToString(s[:])
}

// Registry holds things, CA certificates and device certificates.
type Registry struct {
	mu       sync.Mutex
	things   map[string]*Thing
	cas      map[string]*x509.Certificate
	certs    map[string]*Certificate
	onRevoke func(certID, why string)
}

func newRegistry() *Registry {
	return &Registry{things: map[string]*Thing{}, cas: map[string]*x509.Certificate{}, certs: map[string]*Certificate{}}
}

// ErrNotFound is returned for an unknown thing or certificate.
var ErrNotFound = errors.New("not found")

// AddThing registers (or replaces) a thing; a zero policy gets DefaultPolicy.
func (r *Registry) AddThing(t Thing) (Thing, error) {
	if !awsproto.ValidThingName(t.Name) {
		return Thing{}, fmt.Errorf("invalid thing name %q", t.Name)
	}
	if len(t.Policy.Statements) == 0 {
		t.Policy = DefaultPolicy()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c := t
	r.things[t.Name] = &c
	return t, nil
}

// Thing returns a registered thing.
func (r *Registry) Thing(name string) (Thing, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.things[name]
	if !ok {
		return Thing{}, fmt.Errorf("thing %q: %w", name, ErrNotFound)
	}
	return *t, nil
}

// DeleteThing removes a thing; connections of it are closed.
func (r *Registry) DeleteThing(name string) error {
	r.mu.Lock()
	if _, ok := r.things[name]; !ok {
		r.mu.Unlock()
		return fmt.Errorf("thing %q: %w", name, ErrNotFound)
	}
	delete(r.things, name)
	var ids []string
	for id, c := range r.certs {
		if c.Thing == name {
			ids = append(ids, id)
		}
	}
	r.mu.Unlock()
	for _, id := range ids {
		r.revoked(id, "thing "+name+" deleted")
	}
	return nil
}

// AddCA registers a CA certificate: device certificates it issued can
// then be registered with it (AWS-002).
func (r *Registry) AddCA(ca *x509.Certificate) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	id := CertID(ca)
	r.cas[id] = ca
	return id
}

// AddCertificate registers a device certificate, ACTIVE and attached to
// thing. When the certificate was issued by a registered CA, the chain is
// checked now; a certificate no registered CA issued is registered
// without a CA (it must then be presented as is).
func (r *Registry) AddCertificate(cert *x509.Certificate, thing string, intermediates ...*x509.Certificate) (Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.things[thing]; !ok {
		return Certificate{}, fmt.Errorf("thing %q: %w", thing, ErrNotFound)
	}
	c := &Certificate{ID: CertID(cert), Thing: thing, Status: StatusActive, cert: cert}
	if caID, ok := r.issuerLocked(cert, intermediates); ok {
		c.CA = caID
	}
	r.certs[c.ID] = c
	return *c, nil
}

func (r *Registry) issuerLocked(cert *x509.Certificate, intermediates []*x509.Certificate) (string, bool) {
	inter := x509.NewCertPool()
	for _, i := range intermediates {
		inter.AddCert(i)
	}
	for id, ca := range r.cas {
		roots := x509.NewCertPool()
		roots.AddCert(ca)
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
			return id, true
		}
	}
	return "", false
}

// Certificate returns a registered certificate by ID.
func (r *Registry) Certificate(id string) (Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.certs[id]
	if !ok {
		return Certificate{}, fmt.Errorf("certificate %s: %w", id, ErrNotFound)
	}
	return *c, nil
}

// SetStatus changes a certificate's status; anything but ACTIVE ends the
// connections that authenticated with it, and their next handshake fails.
func (r *Registry) SetStatus(id, status string) error {
	switch status {
	case StatusActive, StatusInactive, StatusRevoked:
	default:
		return fmt.Errorf("status %q: want ACTIVE, INACTIVE or REVOKED", status)
	}
	r.mu.Lock()
	c, ok := r.certs[id]
	if ok {
		c.Status = status
	}
	r.mu.Unlock()
	if !ok {
		return fmt.Errorf("certificate %s: %w", id, ErrNotFound)
	}
	if status != StatusActive {
		r.revoked(id, "certificate "+strings.ToLower(status))
	}
	return nil
}

func (r *Registry) revoked(id, why string) {
	if r.onRevoke != nil {
		r.onRevoke(id, why)
	}
}

// verifyPeer is the TLS layer's check of a device certificate chain
// (AWS-002): the leaf must be registered and ACTIVE, its thing must
// exist, and a certificate registered with a CA must chain to it (the
// device sends the intermediates); it must be within its validity.
func (r *Registry) verifyPeer(chain []*x509.Certificate, now time.Time) (*Certificate, error) {
	if len(chain) == 0 {
		return nil, errors.New("AWS-002: no client certificate; AWS IoT requires mutual TLS")
	}
	leaf := chain[0]
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.certs[CertID(leaf)]
	if !ok {
		return nil, fmt.Errorf("AWS-002: client certificate %s is not registered", CertID(leaf)[:16])
	}
	if c.Status != StatusActive {
		return nil, fmt.Errorf("AWS-002: client certificate %s is %s", c.ID[:16], c.Status)
	}
	if _, ok := r.things[c.Thing]; !ok {
		return nil, fmt.Errorf("AWS-002: certificate %s is attached to no registered thing", c.ID[:16])
	}
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("AWS-002: client certificate %s is outside its validity (%s – %s)", c.ID[:16], leaf.NotBefore.Format(time.RFC3339), leaf.NotAfter.Format(time.RFC3339))
	}
	if c.CA != "" {
		ca, ok := r.cas[c.CA]
		if !ok {
			return nil, fmt.Errorf("AWS-002: the CA of certificate %s is no longer registered", c.ID[:16])
		}
		roots := x509.NewCertPool()
		roots.AddCert(ca)
		inter := x509.NewCertPool()
		for _, i := range chain[1:] {
			inter.AddCert(i)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			return nil, fmt.Errorf("AWS-002: certificate chain does not verify against its registered CA: %v", err)
		}
	}
	cp := *c
	return &cp, nil
}

func (r *Registry) thingPolicy(name string) (Policy, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.things[name]
	if !ok {
		return Policy{}, false
	}
	return t.Policy, true
}
