package certs

import (
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Common names of the CAs that [NewScenario] creates. The old root plays
// Baltimore CyberTrust Root, the new one DigiCert Global Root G2, in the
// 2023 Azure IoT root migration; intermediates play the issuing CAs that
// roll over under one root ("... issuing CA 01", "02", ...).
const (
	ScenarioOldRootCommonName = "hilrun scenario old root (Baltimore role)"
	ScenarioNewRootCommonName = "hilrun scenario new root (DigiCert G2 role)"
)

// WrongHostName is the only name a [WrongHost] server leaf covers. It is
// under the reserved .invalid TLD, so no hub is ever reached by it.
const WrongHostName = "wrong-host.hilrun.invalid"

// ServerLeafKind selects the flavour of a scenario's hub server leaf.
type ServerLeafKind int

const (
	// Valid covers the hub host (see [HubServerOptions]) and is valid now.
	Valid ServerLeafKind = iota
	// Expired covers the hub host but expired a day ago (valid from two
	// years ago until one day ago).
	Expired
	// NotYetValid covers the hub host but becomes valid only in a day (and
	// stays valid for a year after that).
	NotYetValid
	// WrongHost is valid now but covers only [WrongHostName]: not the hub
	// host, not localhost, no IP address.
	WrongHost
)

func (k ServerLeafKind) String() string {
	switch k {
	case Valid:
		return "valid"
	case Expired:
		return "expired"
	case NotYetValid:
		return "not-yet-valid"
	case WrongHost:
		return "wrong-host"
	}
	return fmt.Sprintf("ServerLeafKind(%d)", int(k))
}

// Scenario is the PKI of one TLS scenario: two independent roots (old and
// new, for a root migration), intermediates that roll over under each root,
// and hub server leaves in every flavour a device must accept or refuse.
// All keys are of one type (RSA or ECDSA), chosen per scenario.
//
// Intermediates are numbered per root from 1 and created on first use; the
// same (root, n) always returns the same CA. A Scenario is safe for
// concurrent use.
type Scenario struct {
	// Host is the hub host name the Valid, Expired and NotYetValid leaves
	// cover (with localhost, 127.0.0.1 and ::1).
	Host string
	// KeyType is the type of every key the scenario generates.
	KeyType KeyType
	// OldRoot is the root devices trust before a migration; NewRoot is an
	// independent root (own key, own name) they must trust after it.
	OldRoot, NewRoot *CA

	mu     sync.Mutex
	inters map[*CA][]*CA
}

// NewScenario creates a scenario for host with two fresh roots. An empty kt
// means ECDSAP256.
func NewScenario(host string, kt KeyType) (*Scenario, error) {
	if _, err := HubServerOptions(host, kt); err != nil {
		return nil, err
	}
	oldRoot, err := NewRoot(ScenarioOldRootCommonName, kt)
	if err != nil {
		return nil, err
	}
	newRoot, err := NewRoot(ScenarioNewRootCommonName, kt)
	if err != nil {
		return nil, err
	}
	return &Scenario{Host: host, KeyType: kt, OldRoot: oldRoot, NewRoot: newRoot, inters: map[*CA][]*CA{}}, nil
}

// NewScenarioFromHub creates a scenario whose old root is the hub's own
// root (which a session's device already trusts) and whose intermediate 1
// under that root is the hub's intermediate; the host is the hub server
// leaf's common name. NewRoot is fresh, and so are later intermediates and
// all leaves, of type kt ("" means ECDSAP256; the hub's own CAs keep their
// key type).
func NewScenarioFromHub(p *HubPKI, kt KeyType) (*Scenario, error) {
	if p == nil || p.Root == nil || p.Intermediate == nil || p.Server == nil {
		return nil, errors.New("certs: scenario: hub PKI is incomplete")
	}
	if p.Root.Key == nil || p.Intermediate.Key == nil {
		return nil, errors.New("certs: scenario: hub PKI has no CA keys")
	}
	host := p.Server.Cert.Subject.CommonName
	if _, err := HubServerOptions(host, kt); err != nil {
		return nil, err
	}
	newRoot, err := NewRoot(ScenarioNewRootCommonName, kt)
	if err != nil {
		return nil, err
	}
	return &Scenario{Host: host, KeyType: kt, OldRoot: p.Root, NewRoot: newRoot,
		inters: map[*CA][]*CA{p.Root: {p.Intermediate}}}, nil
}

// Intermediate returns generation n (1, 2, ...) of the issuing CA under
// root, creating it and any missing earlier generations. Each generation
// has its own key and the common name "<root CN> issuing CA 0n".
func (s *Scenario) Intermediate(root *CA, n int) (*CA, error) {
	if root == nil {
		return nil, errors.New("certs: scenario: nil root")
	}
	if n < 1 {
		return nil, fmt.Errorf("certs: scenario: intermediate generation %d (want 1 or more)", n)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.intermediateLocked(root, n)
}

func (s *Scenario) intermediateLocked(root *CA, n int) (*CA, error) {
	for len(s.inters[root]) < n {
		cn := fmt.Sprintf("%s issuing CA %02d", root.Cert.Subject.CommonName, len(s.inters[root])+1)
		ca, err := root.NewIntermediate(cn, s.KeyType)
		if err != nil {
			return nil, err
		}
		s.inters[root] = append(s.inters[root], ca)
	}
	return s.inters[root][n-1], nil
}

// RollIntermediate creates the next generation of intermediate under root
// (a new key and name under the same root) and returns it.
func (s *Scenario) RollIntermediate(root *CA) (*CA, error) {
	if root == nil {
		return nil, errors.New("certs: scenario: nil root")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.intermediateLocked(root, len(s.inters[root])+1)
}

// ServerOptions returns the leaf options for a server leaf of kind k,
// relative to now.
func (s *Scenario) ServerOptions(k ServerLeafKind) (LeafOptions, error) {
	o, err := HubServerOptions(s.Host, s.KeyType)
	if err != nil {
		return LeafOptions{}, err
	}
	now := time.Now()
	switch k {
	case Valid:
	case Expired:
		o.NotBefore = now.AddDate(-2, 0, 0)
		o.NotAfter = now.Add(-24 * time.Hour)
	case NotYetValid:
		o.NotBefore = now.Add(24 * time.Hour)
		o.NotAfter = o.NotBefore.AddDate(1, 0, 0)
	case WrongHost:
		o = LeafOptions{CommonName: WrongHostName, DNSNames: []string{WrongHostName}, KeyType: s.KeyType}
	default:
		return LeafOptions{}, fmt.Errorf("certs: scenario: unknown server leaf kind %d", int(k))
	}
	return o, nil
}

// ServerLeaf issues a fresh server leaf of kind k from issuer (normally an
// [Scenario.Intermediate]); its Chain holds issuer's chain.
func (s *Scenario) ServerLeaf(issuer *CA, k ServerLeafKind) (*Leaf, error) {
	if issuer == nil {
		return nil, errors.New("certs: scenario: nil issuer")
	}
	o, err := s.ServerOptions(k)
	if err != nil {
		return nil, err
	}
	return issuer.IssueServer(o)
}

// Server returns a fresh server leaf of kind k issued by intermediate
// generation gen under root, with its chain, ready for
// hub.SetServerCertificate.
func (s *Scenario) Server(root *CA, gen int, k ServerLeafKind) (tls.Certificate, error) {
	inter, err := s.Intermediate(root, gen)
	if err != nil {
		return tls.Certificate{}, err
	}
	l, err := s.ServerLeaf(inter, k)
	if err != nil {
		return tls.Certificate{}, err
	}
	return l.TLSCertificate(), nil
}

// ModuleCommonName is the client certificate CN IoT Hub expects for a
// module identity: "deviceId/moduleId" (a device uses just its ID).
func ModuleCommonName(deviceID, moduleID string) string {
	return deviceID + "/" + moduleID
}
