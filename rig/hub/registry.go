package hub

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hilrun/hilrun/certs"
	"github.com/hilrun/hilrun/rig/iothub"
	"github.com/hilrun/hilrun/rig/secrets"
)

// Authentication types, spelled as IoT Hub's service REST API spells them.
const (
	AuthSAS        = "sas"
	AuthSelfSigned = "selfSigned"           // X.509 thumbprint (CONN-014)
	AuthCA         = "certificateAuthority" // X.509 signed by a registered CA (CONN-013)
)

// Identity status values.
const (
	StatusEnabled  = "enabled"
	StatusDisabled = "disabled"
)

// ErrNotFound is returned for unknown devices, modules and policies.
var ErrNotFound = errors.New("not found")

// ErrExists is returned when creating an identity that is already registered.
var ErrExists = errors.New("already exists")

// SymmetricKey holds the two base64 keys of a SAS identity.
type SymmetricKey struct {
	PrimaryKey   string `json:"primaryKey"`
	SecondaryKey string `json:"secondaryKey"`
}

// X509Thumbprint holds the two registered thumbprints of a self-signed identity.
type X509Thumbprint struct {
	PrimaryThumbprint   string `json:"primaryThumbprint"`
	SecondaryThumbprint string `json:"secondaryThumbprint"`
}

// Authentication mirrors the "authentication" member of IoT Hub's device and
// module resources so the REST API can pass it through unchanged.
type Authentication struct {
	Type           string          `json:"type"`
	SymmetricKey   *SymmetricKey   `json:"symmetricKey,omitempty"`
	X509Thumbprint *X509Thumbprint `json:"x509Thumbprint,omitempty"`
}

// Device is a registered device or module identity (ModuleID set), shaped
// like IoT Hub's registry resource.
type Device struct {
	DeviceID       string         `json:"deviceId"`
	ModuleID       string         `json:"moduleId,omitempty"`
	GenerationID   string         `json:"generationId"`
	Etag           string         `json:"etag"`
	Status         string         `json:"status"`
	StatusReason   string         `json:"statusReason,omitempty"`
	Authentication Authentication `json:"authentication"`
	// Read-only, maintained by the hub.
	ConnectionState           string    `json:"connectionState"`
	LastActivityTime          time.Time `json:"lastActivityTime"`
	CloudToDeviceMessageCount int       `json:"cloudToDeviceMessageCount"`
}

// Identity returns the identity key of d.
func (d *Device) Identity() iothub.Identity {
	return iothub.Identity{DeviceID: d.DeviceID, ModuleID: d.ModuleID}
}

// Policy is a hub-level shared access policy (skn=... tokens, CONN-007).
type Policy struct {
	KeyName      string   `json:"keyName"`
	PrimaryKey   string   `json:"primaryKey"`
	SecondaryKey string   `json:"secondaryKey"`
	Rights       []string `json:"rights"` // RegistryRead, RegistryWrite, ServiceConnect, DeviceConnect
}

// Has reports whether the policy grants right.
func (p *Policy) Has(right string) bool {
	for _, r := range p.Rights {
		if r == right {
			return true
		}
	}
	return false
}

// Policy rights.
const (
	RightRegistryRead   = "RegistryRead"
	RightRegistryWrite  = "RegistryWrite"
	RightServiceConnect = "ServiceConnect"
	RightDeviceConnect  = "DeviceConnect"
)

// Registry is the hub's identity registry. Safe for concurrent use.
type Registry struct {
	mu       sync.RWMutex
	devices  map[string]*Device // by ClientID form
	policies map[string]*Policy
	cas      []*x509.Certificate // verified CA certificates for AuthCA identities
	onChange func()
	// onRevoke is told, outside mu and before the mutating call returns,
	// that an identity was disabled or deleted ("disabled", "deleted"), so
	// the hub can end its connections (and those of a device's modules).
	onRevoke func(id iothub.Identity, why string)
}

func (r *Registry) revoked(id iothub.Identity, why string) {
	if r.onRevoke != nil {
		r.onRevoke(id, why)
	}
}

func newRegistry() *Registry {
	return &Registry{devices: map[string]*Device{}, policies: map[string]*Policy{}}
}

// NewKey returns a fresh random 32-byte symmetric key in base64. The key
// is registered with rig/secrets at once, so it is masked wherever it goes
// even before it is given to an identity or policy (which then names it).
func NewKey() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	k := base64.StdEncoding.EncodeToString(b)
	secrets.AddBase64("generated symmetric key", k)
	return k
}

// KeyLabel is how an identity's symmetric key is named in rig/secrets and
// so in the trace's facts about masked secrets (Entry.Secrets); slot is
// "primary" or "secondary".
func KeyLabel(id iothub.Identity, slot string) string {
	return "symmetric key (" + slot + ") of " + id.ClientID()
}

// PolicyKeyLabel names a shared access policy's key in rig/secrets.
func PolicyKeyLabel(policy, slot string) string {
	return "policy " + policy + " key (" + slot + ")"
}

// registerSecrets registers an identity's keys with rig/secrets, whoever
// chose them (generated here, sent in a REST PUT, restored from disk).
func registerSecrets(d *Device) {
	if k := d.Authentication.SymmetricKey; k != nil {
		secrets.AddBase64(KeyLabel(d.Identity(), "primary"), k.PrimaryKey)
		secrets.AddBase64(KeyLabel(d.Identity(), "secondary"), k.SecondaryKey)
	}
}

func registerPolicySecrets(p *Policy) {
	secrets.AddBase64(PolicyKeyLabel(p.KeyName, "primary"), p.PrimaryKey)
	secrets.AddBase64(PolicyKeyLabel(p.KeyName, "secondary"), p.SecondaryKey)
}

func newEtag() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return base64.RawStdEncoding.EncodeToString(b)
}

func (r *Registry) changed() {
	if r.onChange != nil {
		r.onChange()
	}
}

// Add registers a device or module. A SAS identity without keys gets fresh
// keys; the stored copy is returned.
func (r *Registry) Add(d Device) (Device, error) {
	id := d.Identity()
	if err := iothub.ValidateID(id.DeviceID); err != nil {
		return Device{}, fmt.Errorf("device id: %w", err)
	}
	if id.ModuleID != "" {
		if err := iothub.ValidateID(id.ModuleID); err != nil {
			return Device{}, fmt.Errorf("module id: %w", err)
		}
	}
	if err := normaliseAuth(&d.Authentication); err != nil {
		return Device{}, err
	}
	registerSecrets(&d)
	if d.Status == "" {
		d.Status = StatusEnabled
	}
	if d.Status != StatusEnabled && d.Status != StatusDisabled {
		return Device{}, fmt.Errorf("status %q: want %q or %q", d.Status, StatusEnabled, StatusDisabled)
	}
	r.mu.Lock()
	if _, ok := r.devices[id.ClientID()]; ok {
		r.mu.Unlock()
		return Device{}, fmt.Errorf("%s: %w", id, ErrExists)
	}
	if id.ModuleID != "" {
		if _, ok := r.devices[id.DeviceID]; !ok {
			r.mu.Unlock()
			return Device{}, fmt.Errorf("module %s: parent device %s: %w", id, id.DeviceID, ErrNotFound)
		}
	}
	d.GenerationID = newEtag()
	d.Etag = newEtag()
	d.ConnectionState = "Disconnected"
	stored := d
	r.devices[id.ClientID()] = &stored
	out := stored // copy under the lock: a connection may update the stored record at once
	r.mu.Unlock()
	r.changed()
	return out, nil
}

func normaliseAuth(a *Authentication) error {
	switch a.Type {
	case "", AuthSAS:
		a.Type = AuthSAS
		a.X509Thumbprint = nil
		if a.SymmetricKey == nil {
			a.SymmetricKey = &SymmetricKey{}
		}
		if a.SymmetricKey.PrimaryKey == "" {
			a.SymmetricKey.PrimaryKey = NewKey()
		}
		if a.SymmetricKey.SecondaryKey == "" {
			a.SymmetricKey.SecondaryKey = NewKey()
		}
		for _, k := range []string{a.SymmetricKey.PrimaryKey, a.SymmetricKey.SecondaryKey} {
			if _, err := base64.StdEncoding.DecodeString(k); err != nil {
				return fmt.Errorf("symmetric key is not base64: %w", err)
			}
		}
	case AuthSelfSigned:
		a.SymmetricKey = nil
		if a.X509Thumbprint == nil || a.X509Thumbprint.PrimaryThumbprint == "" {
			return errors.New("selfSigned authentication needs x509Thumbprint.primaryThumbprint")
		}
		a.X509Thumbprint.PrimaryThumbprint = certs.NormalizeThumbprint(a.X509Thumbprint.PrimaryThumbprint)
		a.X509Thumbprint.SecondaryThumbprint = certs.NormalizeThumbprint(a.X509Thumbprint.SecondaryThumbprint)
	case AuthCA:
		a.SymmetricKey = nil
		a.X509Thumbprint = nil
	default:
		return fmt.Errorf("authentication type %q: want %q, %q or %q", a.Type, AuthSAS, AuthSelfSigned, AuthCA)
	}
	return nil
}

// Put creates or replaces an identity (the REST API's PUT semantics). When
// ifMatch is non-empty and not "*", it must equal the stored etag.
func (r *Registry) Put(d Device, ifMatch string) (Device, bool, error) {
	id := d.Identity()
	r.mu.Lock()
	old, ok := r.devices[id.ClientID()]
	if !ok {
		r.mu.Unlock()
		nd, err := r.Add(d)
		return nd, true, err
	}
	if ifMatch != "" && ifMatch != "*" && strings.Trim(ifMatch, `"`) != old.Etag {
		r.mu.Unlock()
		return Device{}, false, ErrPreconditionFailed
	}
	if err := normaliseAuth(&d.Authentication); err != nil {
		r.mu.Unlock()
		return Device{}, false, err
	}
	registerSecrets(&d)
	if d.Status == "" {
		d.Status = StatusEnabled
	}
	if d.Status != StatusEnabled && d.Status != StatusDisabled {
		r.mu.Unlock()
		return Device{}, false, fmt.Errorf("status %q: want %q or %q", d.Status, StatusEnabled, StatusDisabled)
	}
	d.GenerationID = old.GenerationID
	d.ConnectionState = old.ConnectionState
	d.LastActivityTime = old.LastActivityTime
	d.CloudToDeviceMessageCount = old.CloudToDeviceMessageCount
	d.Etag = newEtag()
	stored := d
	r.devices[id.ClientID()] = &stored
	out := stored // copy under the lock (see Add)
	r.mu.Unlock()
	if d.Status == StatusDisabled {
		// A PUT with "status": "disabled" disables (002 L11098, L11222).
		r.revoked(id, revokeDisabled)
	}
	r.changed()
	return out, false, nil
}

// ErrPreconditionFailed is returned when an If-Match etag does not match.
var ErrPreconditionFailed = errors.New("etag mismatch")

// Get returns a copy of an identity.
func (r *Registry) Get(id iothub.Identity) (Device, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	d, ok := r.devices[id.ClientID()]
	if !ok {
		return Device{}, fmt.Errorf("%s: %w", id, ErrNotFound)
	}
	return *d, nil
}

// Delete removes an identity (and, for a device, its modules) and ends
// their connections before it returns (Hub.revoke).
func (r *Registry) Delete(id iothub.Identity) error {
	r.mu.Lock()
	if _, ok := r.devices[id.ClientID()]; !ok {
		r.mu.Unlock()
		return fmt.Errorf("%s: %w", id, ErrNotFound)
	}
	delete(r.devices, id.ClientID())
	if id.ModuleID == "" {
		for k, d := range r.devices {
			if d.DeviceID == id.DeviceID {
				delete(r.devices, k)
			}
		}
	}
	r.mu.Unlock()
	r.revoked(id, revokeDeleted)
	r.changed()
	return nil
}

// SetStatus enables or disables an identity. Disabling ends the identity's
// connections, and a device's also those of its modules, before it
// returns (Hub.revoke, 002 L11098, L11222).
func (r *Registry) SetStatus(id iothub.Identity, status string) error {
	if status != StatusEnabled && status != StatusDisabled {
		return fmt.Errorf("status %q: want %q or %q", status, StatusEnabled, StatusDisabled)
	}
	r.mu.Lock()
	d, ok := r.devices[id.ClientID()]
	if !ok {
		r.mu.Unlock()
		return fmt.Errorf("%s: %w", id, ErrNotFound)
	}
	d.Status = status
	d.Etag = newEtag()
	r.mu.Unlock()
	if status == StatusDisabled {
		r.revoked(id, revokeDisabled)
	}
	r.changed()
	return nil
}

// List returns all devices (modules excluded when modules is false), sorted.
func (r *Registry) List(modulesOf string) []Device {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []Device
	for _, d := range r.devices {
		if modulesOf == "" && d.ModuleID == "" || modulesOf != "" && d.ModuleID != "" && d.DeviceID == modulesOf {
			out = append(out, *d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Identity().ClientID() < out[j].Identity().ClientID() })
	return out
}

func (r *Registry) setConnection(id iothub.Identity, connected bool, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d, ok := r.devices[id.ClientID()]; ok {
		if connected {
			d.ConnectionState = "Connected"
		} else {
			d.ConnectionState = "Disconnected"
		}
		d.LastActivityTime = at.UTC()
	}
}

// AddPolicy registers (or replaces) a shared access policy; empty keys are generated.
func (r *Registry) AddPolicy(p Policy) Policy {
	if p.PrimaryKey == "" {
		p.PrimaryKey = NewKey()
	}
	if p.SecondaryKey == "" {
		p.SecondaryKey = NewKey()
	}
	registerPolicySecrets(&p)
	r.mu.Lock()
	cp := p
	r.policies[p.KeyName] = &cp
	r.mu.Unlock()
	r.changed()
	return cp
}

// Policy returns a policy by key name.
func (r *Registry) Policy(name string) (Policy, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	p, ok := r.policies[name]
	if !ok {
		return Policy{}, fmt.Errorf("policy %q: %w", name, ErrNotFound)
	}
	return *p, nil
}

// AddCA registers a verified CA certificate for certificateAuthority identities.
func (r *Registry) AddCA(cert *x509.Certificate) {
	r.mu.Lock()
	for _, c := range r.cas {
		if c.Equal(cert) {
			r.mu.Unlock()
			return
		}
	}
	r.cas = append(r.cas, cert)
	r.mu.Unlock()
	r.changed()
}

func (r *Registry) caPool() *x509.CertPool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	p := x509.NewCertPool()
	for _, c := range r.cas {
		p.AddCert(c)
	}
	return p
}

// registryState is the persisted form of the registry.
type registryState struct {
	Devices  []Device `json:"devices"`
	Policies []Policy `json:"policies"`
	CAs      []string `json:"cas"` // PEM
}

func (r *Registry) snapshot() registryState {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var s registryState
	for _, d := range r.devices {
		s.Devices = append(s.Devices, *d)
	}
	sort.Slice(s.Devices, func(i, j int) bool {
		return s.Devices[i].Identity().ClientID() < s.Devices[j].Identity().ClientID()
	})
	for _, p := range r.policies {
		s.Policies = append(s.Policies, *p)
	}
	sort.Slice(s.Policies, func(i, j int) bool { return s.Policies[i].KeyName < s.Policies[j].KeyName })
	for _, c := range r.cas {
		s.CAs = append(s.CAs, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})))
	}
	return s
}

func (r *Registry) restore(s registryState) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range s.Devices {
		d := s.Devices[i]
		d.ConnectionState = "Disconnected"
		registerSecrets(&d)
		r.devices[d.Identity().ClientID()] = &d
	}
	for i := range s.Policies {
		p := s.Policies[i]
		registerPolicySecrets(&p)
		r.policies[p.KeyName] = &p
	}
	for _, p := range s.CAs {
		cs, err := certs.ParseCertificatesPEM([]byte(p))
		if err != nil {
			return fmt.Errorf("stored CA certificate: %w", err)
		}
		r.cas = append(r.cas, cs...)
	}
	return nil
}
