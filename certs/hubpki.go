package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Common names of the CAs that [NewHubPKI] creates.
const (
	HubRootCommonName         = "hilrun test root CA"
	HubIntermediateCommonName = "hilrun test intermediate CA"
)

// File names used by [HubPKI.WriteDir] and [LoadHubPKI].
const (
	RootCertFile         = "root.pem"
	RootKeyFile          = "root.key"
	IntermediateCertFile = "intermediate.pem"
	IntermediateKeyFile  = "intermediate.key"
	ServerCertFile       = "server.pem" // leaf followed by the intermediate
	ServerKeyFile        = "server.key"
)

var hubFiles = []string{
	RootCertFile, RootKeyFile,
	IntermediateCertFile, IntermediateKeyFile,
	ServerCertFile, ServerKeyFile,
}

// RenewWithin is how close to expiry a stored server leaf may be before
// [LoadOrCreateHubPKI] replaces it, and how close to expiry a stored CA may
// be before it refuses to use it.
const RenewWithin = 24 * time.Hour

// HubPKI is the reference hub's own PKI: a root (which devices trust), an
// intermediate, and the server leaf the hub presents, issued by the
// intermediate.
type HubPKI struct {
	Root         *CA
	Intermediate *CA
	Server       *Leaf
}

// NewHubPKI creates a fresh root, intermediate and server leaf for host,
// all with keys of type kt ("" means ECDSAP256). See [HubServerOptions] for
// the names the leaf covers.
func NewHubPKI(host string, kt KeyType) (*HubPKI, error) {
	return NewHubPKIWithNames(host, kt)
}

// NewHubPKIWithNames is NewHubPKI with extra names on the server leaf:
// the host names and IP addresses real boards dial to reach the hub (the
// inventory's advertise lists). Each name becomes a DNS or IP SAN.
func NewHubPKIWithNames(host string, kt KeyType, names ...string) (*HubPKI, error) {
	opts, err := HubServerOptions(host, kt)
	if err != nil {
		return nil, err
	}
	if err := AddServerNames(&opts, names...); err != nil {
		return nil, err
	}
	root, err := NewRoot(HubRootCommonName, kt)
	if err != nil {
		return nil, err
	}
	inter, err := root.NewIntermediate(HubIntermediateCommonName, kt)
	if err != nil {
		return nil, err
	}
	srv, err := inter.IssueServer(opts)
	if err != nil {
		return nil, err
	}
	return &HubPKI{Root: root, Intermediate: inter, Server: srv}, nil
}

// HubServerOptions returns the options for a hub server leaf: CN = host,
// and SANs host (as a DNS name, or as an IP address if it parses as one),
// "localhost", 127.0.0.1 and ::1, without duplicates. host may be an IPv6
// literal in brackets but must not carry a port.
func HubServerOptions(host string, kt KeyType) (LeafOptions, error) {
	h, err := normalizeHost(host)
	if err != nil {
		return LeafOptions{}, err
	}
	if _, err := kt.resolve(); err != nil {
		return LeafOptions{}, err
	}
	o := LeafOptions{CommonName: h, KeyType: kt}
	addDNS := func(n string) {
		for _, d := range o.DNSNames {
			if strings.EqualFold(d, n) {
				return
			}
		}
		o.DNSNames = append(o.DNSNames, n)
	}
	addIP := func(ip net.IP) {
		for _, x := range o.IPAddresses {
			if x.Equal(ip) {
				return
			}
		}
		o.IPAddresses = append(o.IPAddresses, ip)
	}
	if ip := net.ParseIP(h); ip != nil {
		addIP(ip)
	} else {
		addDNS(h)
	}
	addDNS("localhost")
	addIP(net.IPv4(127, 0, 0, 1))
	addIP(net.IPv6loopback)
	return o, nil
}

// AddServerNames adds host names or IP addresses (no ports) to a server
// leaf's SANs, without duplicates.
func AddServerNames(o *LeafOptions, names ...string) error {
	for _, n := range names {
		h, err := normalizeHost(n)
		if err != nil {
			return err
		}
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(o.IPAddresses, ip.Equal) {
				o.IPAddresses = append(o.IPAddresses, ip)
			}
			continue
		}
		if !slices.ContainsFunc(o.DNSNames, func(d string) bool { return strings.EqualFold(d, h) }) {
			o.DNSNames = append(o.DNSNames, h)
		}
	}
	return nil
}

func normalizeHost(host string) (string, error) {
	h := strings.TrimSpace(host)
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	if h == "" {
		return "", errors.New("certs: hub host name is empty")
	}
	if strings.Contains(h, ":") && net.ParseIP(h) == nil {
		return "", fmt.Errorf("certs: hub host %q is neither a host name nor an IP address (drop any port)", host)
	}
	return h, nil
}

// ReissueServer replaces p.Server with a new leaf for host, signed by
// p.Intermediate, with a key of type kt. Root and intermediate stay as
// they are. It does not touch any files.
func (p *HubPKI) ReissueServer(host string, kt KeyType) error {
	opts, err := HubServerOptions(host, kt)
	if err != nil {
		return err
	}
	srv, err := p.Intermediate.IssueServer(opts)
	if err != nil {
		return err
	}
	p.Server = srv
	return nil
}

// ServerTLSCertificate returns the server leaf with its chain, ready for
// tls.Config.Certificates.
func (p *HubPKI) ServerTLSCertificate() tls.Certificate { return p.Server.TLSCertificate() }

// RootPool returns a pool holding only the hub root, for clients'
// tls.Config.RootCAs.
func (p *HubPKI) RootPool() *x509.CertPool { return PoolOf(p.Root.Cert) }

// WriteDir stores p in dir under the names RootCertFile … ServerKeyFile.
// dir is created with mode 0700 if it does not exist; an existing dir keeps
// its mode. Certificates are written 0644 and keys 0600. Each file is
// replaced atomically (temporary file plus rename), but the set as a whole
// is not: a crash part-way can leave files from two generations, which
// [LoadHubPKI] detects because keys and signatures no longer match.
func (p *HubPKI) WriteDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("certs: create PKI directory: %w", err)
	}
	if err := writeCA(dir, RootCertFile, RootKeyFile, p.Root); err != nil {
		return err
	}
	if err := writeCA(dir, IntermediateCertFile, IntermediateKeyFile, p.Intermediate); err != nil {
		return err
	}
	return p.writeServer(dir)
}

func writeCA(dir, certName, keyName string, ca *CA) error {
	key, err := ca.KeyPEM()
	if err != nil {
		return err
	}
	if err := writeFileAtomic(dir, certName, ca.CertPEM(), 0o644); err != nil {
		return err
	}
	return writeFileAtomic(dir, keyName, key, 0o600)
}

func (p *HubPKI) writeServer(dir string) error {
	key, err := p.Server.KeyPEM()
	if err != nil {
		return err
	}
	if err := writeFileAtomic(dir, ServerCertFile, p.Server.ChainPEM(), 0o644); err != nil {
		return err
	}
	return writeFileAtomic(dir, ServerKeyFile, key, 0o600)
}

// writeFileAtomic writes data to dir/name through a temporary file in the
// same directory, so readers see either the old or the new content.
func writeFileAtomic(dir, name string, data []byte, perm fs.FileMode) (err error) {
	f, err := os.CreateTemp(dir, "."+name+".*.tmp")
	if err != nil {
		return fmt.Errorf("certs: write %s: %w", name, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
			err = fmt.Errorf("certs: write %s: %w", filepath.Join(dir, name), err)
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, name))
}

// LoadHubPKI reads a PKI written by [HubPKI.WriteDir]. It checks that each
// key matches its certificate, that the intermediate is signed by the root
// and that the server leaf is signed by the intermediate; errors name the
// offending file. A missing file yields an error that matches
// fs.ErrNotExist. If server.pem holds only the leaf, the intermediate is
// used as its chain.
func LoadHubPKI(dir string) (*HubPKI, error) {
	read := func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("certs: hub PKI: %w", err)
		}
		return b, nil
	}
	loadCA := func(certName, keyName string, parent *CA) (*CA, error) {
		cb, err := read(certName)
		if err != nil {
			return nil, err
		}
		kb, err := read(keyName)
		if err != nil {
			return nil, err
		}
		cs, err := ParseCertificatesPEM(cb)
		if err != nil {
			return nil, fileErr(dir, certName, err)
		}
		c := cs[0]
		if !c.IsCA {
			return nil, fileErr(dir, certName, errors.New("certificate is not a CA"))
		}
		key, err := ParsePrivateKeyPEM(kb)
		if err != nil {
			return nil, fileErr(dir, keyName, err)
		}
		if !keyMatches(key, c.PublicKey) {
			return nil, fileErr(dir, keyName, fmt.Errorf("key does not match %s", certName))
		}
		if parent != nil {
			if err := c.CheckSignatureFrom(parent.Cert); err != nil {
				return nil, fileErr(dir, certName, fmt.Errorf("not signed by the root in %s: %w", RootCertFile, err))
			}
		}
		return &CA{Cert: c, Key: key, Parent: parent}, nil
	}

	root, err := loadCA(RootCertFile, RootKeyFile, nil)
	if err != nil {
		return nil, err
	}
	inter, err := loadCA(IntermediateCertFile, IntermediateKeyFile, root)
	if err != nil {
		return nil, err
	}

	cb, err := read(ServerCertFile)
	if err != nil {
		return nil, err
	}
	kb, err := read(ServerKeyFile)
	if err != nil {
		return nil, err
	}
	cs, err := ParseCertificatesPEM(cb)
	if err != nil {
		return nil, fileErr(dir, ServerCertFile, err)
	}
	key, err := ParsePrivateKeyPEM(kb)
	if err != nil {
		return nil, fileErr(dir, ServerKeyFile, err)
	}
	leaf := cs[0]
	if !keyMatches(key, leaf.PublicKey) {
		return nil, fileErr(dir, ServerKeyFile, fmt.Errorf("key does not match %s", ServerCertFile))
	}
	if err := leaf.CheckSignatureFrom(inter.Cert); err != nil {
		return nil, fileErr(dir, ServerCertFile, fmt.Errorf("not signed by the intermediate in %s: %w", IntermediateCertFile, err))
	}
	chain := cs[1:]
	if len(chain) == 0 {
		chain = inter.Chain()
	}
	return &HubPKI{
		Root:         root,
		Intermediate: inter,
		Server:       &Leaf{Cert: leaf, Key: key, Chain: chain},
	}, nil
}

func fileErr(dir, name string, err error) error {
	return fmt.Errorf("certs: hub PKI: %s: %w", filepath.Join(dir, name), err)
}

// LoadOrCreateHubPKI returns the hub PKI stored in dir, creating and
// writing a new one (created = true) if dir does not exist or holds none of
// the PKI files. If only some of the files exist, or any is unreadable or
// inconsistent, it returns an error rather than overwrite a root that
// devices may already trust.
//
// A stored PKI is checked against host and the clock. When the server leaf
// does not cover host, is not yet valid, or expires within [RenewWithin],
// a new leaf of type kt is issued from the stored intermediate and
// server.pem/server.key are rewritten; root and intermediate are kept and
// created is still false, so this happens silently. If the root or the
// intermediate itself expires within RenewWithin an error is returned; remove
// dir to start over. kt otherwise only applies to newly generated keys:
// a stored PKI of another key type is used as it is.
//
// Two processes must not run this on the same dir concurrently.
func LoadOrCreateHubPKI(dir, host string, kt KeyType) (p *HubPKI, created bool, err error) {
	if _, err := HubServerOptions(host, kt); err != nil {
		return nil, false, err
	}
	present := 0
	for _, name := range hubFiles {
		_, err := os.Stat(filepath.Join(dir, name))
		switch {
		case err == nil:
			present++
		case errors.Is(err, fs.ErrNotExist):
		default:
			return nil, false, fmt.Errorf("certs: hub PKI: %w", err)
		}
	}
	if present == 0 {
		p, err := NewHubPKI(host, kt)
		if err != nil {
			return nil, false, err
		}
		if err := p.WriteDir(dir); err != nil {
			return nil, false, err
		}
		return p, true, nil
	}

	p, err = LoadHubPKI(dir)
	if err != nil {
		return nil, false, err
	}
	now := time.Now()
	for _, c := range []struct {
		file string
		ca   *CA
	}{{RootCertFile, p.Root}, {IntermediateCertFile, p.Intermediate}} {
		if now.Add(RenewWithin).After(c.ca.Cert.NotAfter) {
			return nil, false, fileErr(dir, c.file, fmt.Errorf("CA expires at %s; remove %s to generate a new PKI",
				c.ca.Cert.NotAfter.Format(time.RFC3339), dir))
		}
	}
	if serverLeafStale(p.Server.Cert, host, now) {
		if err := p.ReissueServer(host, kt); err != nil {
			return nil, false, err
		}
		if err := p.writeServer(dir); err != nil {
			return nil, false, err
		}
	}
	return p, false, nil
}

// serverLeafStale reports whether leaf must be replaced to serve host at now.
func serverLeafStale(leaf *x509.Certificate, host string, now time.Time) bool {
	h, _ := normalizeHost(host)
	return leaf.VerifyHostname(h) != nil ||
		now.Before(leaf.NotBefore) ||
		now.Add(RenewWithin).After(leaf.NotAfter)
}
