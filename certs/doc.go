// Package certs builds the test PKI that hilrun uses: certificate
// authorities, server certificates for the reference IoT Hub, and client
// certificates for devices and modules, both CA-signed (X.509 CA
// authentication) and self-signed (thumbprint authentication, CONN-014).
//
// Everything here is meant for tests and lab rigs. Keys are generated fresh
// with crypto/rand, serial numbers are random 128-bit integers, and nothing is
// protected beyond file permissions.
//
// The building blocks are deliberately small so that later scenarios can
// assemble unusual hierarchies from them:
//
//   - [NewRoot] and [CA.NewIntermediate] create CAs; a CA remembers its
//     parent, so [CA.Chain] yields the intermediates a peer must send.
//   - [CA.IssueServer], [CA.IssueClient] and [SelfSigned] create leaves.
//     [LeafOptions] lets callers choose the validity window, so expired or
//     not-yet-valid certificates, or certificates for the wrong host, are
//     one option away.
//   - [Thumbprint], [ThumbprintSHA1] and [NormalizeThumbprint] produce and
//     compare thumbprints in the form IoT Hub shows them.
//   - [ParseCertificatesPEM], [ParsePrivateKeyPEM] and [ParseCA] read PEM
//     material back.
//
// [Scenario] is the PKI of one TLS scenario: an old and a new root (the
// Baltimore → DigiCert Global Root G2 migration), numbered intermediates
// that roll over under one root, and hub server leaves that are valid,
// expired, not yet valid or for the wrong host. [NewScenarioFromHub] makes
// the hub's own root the old one, so a board that trusts the hub trusts it.
//
// The public roots themselves are embedded ([DigiCertGlobalRootG2],
// [BaltimoreCyberTrustRoot]); [CheckCloudReadiness] judges a board's trust
// store by their fingerprints.
//
// [HubPKI] bundles the PKI of the reference hub itself (root, intermediate
// and a server leaf) and stores it in a directory; [LoadOrCreateHubPKI] is
// the usual entry point for commands that need a stable hub identity across
// runs.
package certs
