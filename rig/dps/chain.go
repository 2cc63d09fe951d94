package dps

import (
	"crypto/tls"
	"fmt"

	"github.com/hilrun/hilrun/certs"
	"github.com/hilrun/hilrun/rig/hub"
)

// Chain names a server chain the endpoint can present in place of its own.
// CERT-005: the provisioning endpoint's certificate must be checked exactly
// as strictly as the hub's (000 L369-371, L451-453: the device is given the
// Azure root for DPS as for the hub), so the endpoint can present every
// chain the hub's CONN-003 / CLOCK-003 specs present, here for the DPS host.
type Chain int

const (
	// ChainOwn is the endpoint's own chain: a leaf for the DPS host under
	// the hub PKI's intermediate, the root the board trusts.
	ChainOwn Chain = iota
	// ChainUntrustedRoot is a valid leaf for the DPS host under a root of
	// its own that no board trusts.
	ChainUntrustedRoot
	// ChainWrongHost is a valid leaf under the trusted root that names only
	// certs.WrongHostName (not the DPS host, no IP address).
	ChainWrongHost
	// ChainExpired is a leaf for the DPS host under the trusted root whose
	// validity ended a day ago.
	ChainExpired
	// ChainNotYetValid is a leaf for the DPS host under the trusted root
	// whose validity starts in a day.
	ChainNotYetValid
)

// BadChains are the chains a device must refuse (CERT-005).
var BadChains = []Chain{ChainUntrustedRoot, ChainWrongHost, ChainExpired, ChainNotYetValid}

func (c Chain) String() string {
	switch c {
	case ChainOwn:
		return "own chain"
	case ChainUntrustedRoot:
		return "chain under an untrusted root"
	case ChainWrongHost:
		return "leaf for another host name under the trusted root"
	case ChainExpired:
		return "expired leaf under the trusted root"
	case ChainNotYetValid:
		return "not-yet-valid leaf under the trusted root"
	}
	return fmt.Sprintf("Chain(%d)", int(c))
}

// PresentChain makes new handshakes get chain c (CERT-005); existing
// connections keep theirs. ChainOwn puts the endpoint's own chain back.
// Each bad chain is issued fresh; the untrusted root is made once per
// endpoint. The switch is recorded in the wire trace.
func (e *Endpoint) PresentChain(c Chain) error {
	var cert tls.Certificate
	if c == ChainOwn {
		cert = *e.own
	} else {
		sc, err := e.scenario()
		if err != nil {
			return err
		}
		var root *certs.CA
		var kind certs.ServerLeafKind
		switch c {
		case ChainUntrustedRoot:
			root, kind = sc.NewRoot, certs.Valid
		case ChainWrongHost:
			root, kind = sc.OldRoot, certs.WrongHost
		case ChainExpired:
			root, kind = sc.OldRoot, certs.Expired
		case ChainNotYetValid:
			root, kind = sc.OldRoot, certs.NotYetValid
		default:
			return fmt.Errorf("dps: unknown chain %d", int(c))
		}
		if cert, err = sc.Server(root, 1, kind); err != nil {
			return fmt.Errorf("dps: %s: %w", c, err)
		}
	}
	e.cert.Store(&cert)
	e.trace.AddExternal(hub.Entry{Dir: hub.DirEvent, Type: hub.EventFault, Requirement: "CERT-005",
		Reason: "DPS: server chain replaced: " + c.String()})
	return nil
}

// scenario is the endpoint's certificate scenario: the hub PKI's root and
// intermediate (what the board trusts), a fresh untrusted root, leaves for
// the DPS host.
func (e *Endpoint) scenario() (*certs.Scenario, error) {
	e.scMu.Lock()
	defer e.scMu.Unlock()
	if e.sc != nil {
		return e.sc, nil
	}
	sc, err := certs.NewScenarioFromHub(e.hub.PKI(), certs.ECDSAP256)
	if err != nil {
		return nil, fmt.Errorf("dps: certificate scenario: %w", err)
	}
	sc.Host = e.cfg.Host // the leaves name the DPS host, not the hub's
	e.sc = sc
	return sc, nil
}
