package dps

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/hilrun/hilrun/certs"
	"github.com/hilrun/hilrun/rig/dpsproto"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/iothub"
	"github.com/hilrun/hilrun/rig/secrets"
)

// dconn is the endpoint's state of one device connection.
type dconn struct {
	id       uint64
	clientID string
	remote   string
	regID    string
	auth     string // sas-individual, sas-group, x509-individual, x509-group
	key      string // the key the device signed with (SAS), for the hub identity
	thumb    string // device certificate thumbprint (X.509)
	leafCA   bool   // X.509 group: the hub identity is CA-authenticated
	enroll   string

	mu         sync.Mutex
	subscribed bool
	afterAck   []func()
}

type hooks struct {
	mqtt.HookBase
	e *Endpoint
}

func (k *hooks) ID() string { return "hilrun-dps" }

func (k *hooks) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPacketRead, mqtt.OnPacketEncode,
		mqtt.OnPacketProcessed, mqtt.OnSubscribe, mqtt.OnPublish, mqtt.OnDisconnect:
		return true
	}
	return false
}

func (e *Endpoint) connOf(cl *mqtt.Client) *dconn {
	if v, ok := e.dcs.Load(cl); ok {
		return v.(*dconn)
	}
	return nil
}

func (e *Endpoint) event(c *dconn, typ, req, reason string) {
	e.trace.AddExternal(hub.Entry{ConnID: c.id, ClientID: c.clientID, Remote: c.remote, Dir: hub.DirEvent, Type: typ, Requirement: req, Reason: "DPS: " + reason})
}

func fill(en *hub.Entry, pk packets.Packet) {
	switch pk.FixedHeader.Type {
	case packets.Connect:
		en.Username = string(pk.Connect.Username)
		en.KeepAlive = pk.Connect.Keepalive
		en.CleanSession = pk.Connect.Clean
		en.ProtoLevel = pk.ProtocolVersion
		if pk.Connect.PasswordFlag {
			en.Password = describePassword(pk.Connect.Password)
		}
	case packets.Connack:
		en.ReturnCode = pk.ReasonCode
	case packets.Publish:
		en.Topic, en.QoS, en.PacketID, en.Dup, en.Retain = pk.TopicName, pk.FixedHeader.Qos, pk.PacketID, pk.FixedHeader.Dup, pk.FixedHeader.Retain
		en.Payload, en.PayloadLen = pk.Payload, len(pk.Payload)
	case packets.Subscribe, packets.Unsubscribe:
		en.PacketID = pk.PacketID
		for _, f := range pk.Filters {
			en.Filters = append(en.Filters, hub.FilterQoS{Filter: f.Filter, QoS: f.Qos})
		}
	case packets.Suback:
		en.PacketID = pk.PacketID
		en.Granted = append([]byte(nil), pk.ReasonCodes...)
	case packets.Puback:
		en.PacketID = pk.PacketID
	}
}

// describePassword keeps the facts of a SAS password (sr, se, skn), never
// the signature (as the hub does, rig/hub describePassword).
func describePassword(pw []byte) string {
	rest, ok := strings.CutPrefix(string(pw), "SharedAccessSignature ")
	if !ok {
		return fmt.Sprintf("not a SAS token (%d bytes)", len(pw))
	}
	var out []string
	for _, p := range strings.Split(rest, "&") {
		k, _, _ := strings.Cut(p, "=")
		switch k {
		case "sr", "se", "skn":
			out = append(out, p)
		case "sig":
			out = append(out, "sig="+secrets.Redacted)
		default:
			out = append(out, secrets.Redacted)
		}
	}
	return "SharedAccessSignature " + strings.Join(out, "&")
}

func packetName(t byte) string { return strings.ToUpper(packets.PacketNames[t]) }

func (k *hooks) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	e := k.e
	c := e.connOf(cl)
	if pk.FixedHeader.Type == packets.Connect {
		if c != nil {
			e.event(c, hub.EventViolation, "DPS-002", "second CONNECT on the connection")
			return pk, packets.ErrRejectPacket
		}
		c = &dconn{clientID: pk.Connect.ClientIdentifier, remote: cl.Net.Remote}
		if v, ok := e.infos.LoadAndDelete(cl.Net.Conn); ok {
			c.id = v.(*connInfo).id
		} else {
			c.id = e.hub.NewConnID()
		}
		e.dcs.Store(cl, c)
	}
	if c == nil {
		return pk, nil
	}
	en := hub.Entry{ConnID: c.id, ClientID: c.clientID, Remote: c.remote, Dir: hub.DirIn, Type: packetName(pk.FixedHeader.Type)}
	fill(&en, pk)
	e.trace.AddExternal(en)
	return pk, nil
}

func (k *hooks) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	e := k.e
	en := hub.Entry{Dir: hub.DirOut, Type: packetName(pk.FixedHeader.Type), ClientID: cl.ID, Remote: cl.Net.Remote}
	if c := e.connOf(cl); c != nil {
		en.ConnID, en.ClientID = c.id, c.clientID
	}
	fill(&en, pk)
	e.trace.AddExternal(en)
	return pk
}

// OnConnect authenticates a registration (DPS-002, DPS-003, DPS-007). A
// refusal answers CONNACK 4 (malformed) or 5 (not authorized) and closes.
func (k *hooks) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	e := k.e
	c := e.connOf(cl)
	if c == nil {
		return packets.ErrRejectPacket
	}
	code, req, reason := e.authenticate(c, cl, pk)
	if code != packets.CodeSuccess {
		e.trace.AddExternal(hub.Entry{ConnID: c.id, ClientID: c.clientID, Remote: c.remote, Dir: hub.DirEvent, Type: hub.EventConnRejected,
			Requirement: req, Reason: "DPS: " + reason})
		_ = e.srv.SendConnack(cl, code, false, nil)
		e.dcs.Delete(cl)
		return fmt.Errorf("dps: connect refused: %s", reason)
	}
	e.trace.AddExternal(hub.Entry{ConnID: c.id, ClientID: c.clientID, Remote: c.remote, Dir: hub.DirEvent, Type: hub.EventConnOpened,
		Reason: fmt.Sprintf("DPS: registration %s authenticated (%s, enrollment %s)", c.regID, c.auth, c.enroll)})
	return nil
}

func (e *Endpoint) authenticate(c *dconn, cl *mqtt.Client, pk packets.Packet) (packets.Code, string, string) {
	bad, unauth := packets.ErrMalformedUsername, packets.ErrBadUsernameOrPassword
	if pk.ProtocolVersion != 4 {
		return packets.ErrUnsupportedProtocolVersion, "DPS-001", fmt.Sprintf("protocol level %d; DPS speaks MQTT 3.1.1", pk.ProtocolVersion)
	}
	if !pk.Connect.UsernameFlag {
		return bad, "DPS-002", "no Username; DPS needs {idScope}/registrations/{registrationId}/api-version=" + dpsproto.APIVersion
	}
	u, err := dpsproto.ParseUsername(string(pk.Connect.Username))
	if err != nil {
		return bad, "DPS-002", err.Error()
	}
	if u.APIVersion != dpsproto.APIVersion {
		e.event(c, hub.EventWarning, "DPS-002", fmt.Sprintf("api-version %q is not %s", u.APIVersion, dpsproto.APIVersion))
	}
	if u.IDScope != e.cfg.IDScope {
		return unauth, "DPS-002", fmt.Sprintf("ID scope %q is not this DPS instance's (%s)", u.IDScope, e.cfg.IDScope)
	}
	if pk.Connect.ClientIdentifier != u.RegistrationID {
		return packets.ErrClientIdentifierNotValid, "DPS-002", fmt.Sprintf("ClientId %q is not the registration ID %q of the Username", pk.Connect.ClientIdentifier, u.RegistrationID)
	}
	c.regID = u.RegistrationID
	var leaf *x509.Certificate
	var chain []*x509.Certificate
	if cs, ok := cl.Net.Conn.(interface{ ConnectionState() tls.ConnectionState }); ok {
		if st := cs.ConnectionState(); len(st.PeerCertificates) > 0 {
			leaf, chain = st.PeerCertificates[0], st.PeerCertificates[1:]
		}
	}
	e.mu.Lock()
	ind := e.individual[c.regID]
	var groups []*Enrollment
	for _, g := range e.groups {
		groups = append(groups, g)
	}
	e.mu.Unlock()
	if pk.Connect.PasswordFlag && len(pk.Connect.Password) > 0 {
		tok, err := iothub.ParseSASToken(string(pk.Connect.Password))
		if err != nil {
			return bad, "DPS-003", "password is not a shared access signature"
		}
		sr, err := tok.ResourceURI()
		if err != nil || !strings.EqualFold(sr, dpsproto.ResourceURI(u.IDScope, c.regID)) {
			return unauth, "DPS-003", fmt.Sprintf("sr %q is not %s", sr, dpsproto.ResourceURI(u.IDScope, c.regID))
		}
		if tok.KeyName != dpsproto.KeyName {
			return unauth, "DPS-003", fmt.Sprintf("skn %q; a registration token names skn=%s", tok.KeyName, dpsproto.KeyName)
		}
		if !tok.ExpiresAt().After(e.cfg.Now()) {
			return unauth, "DPS-003", "SAS token expired at " + tok.ExpiresAt().Format(time.RFC3339)
		}
		verify := func(key string) bool { ok, _ := tok.Verify(key); return ok }
		if ind != nil && ind.Attestation.Type == AttestSymmetricKey {
			for _, key := range []string{ind.Attestation.PrimaryKey, ind.Attestation.SecondaryKey} {
				if verify(key) {
					c.auth, c.key, c.enroll = "sas-individual", key, ind.RegistrationID
					return packets.CodeSuccess, "", ""
				}
			}
			return unauth, "DPS-003", "signature does not verify with the individual enrollment's keys"
		}
		for _, g := range groups {
			if g.Attestation.Type != AttestSymmetricKey {
				continue
			}
			for _, gk := range []string{g.Attestation.PrimaryKey, g.Attestation.SecondaryKey} {
				dk, err := dpsproto.DeriveKey(gk, c.regID)
				if err != nil {
					continue
				}
				secrets.AddBase64("DPS derived key of "+c.regID, dk)
				if verify(dk) {
					c.auth, c.key, c.enroll = "sas-group", dk, "group "+g.GroupID
					return packets.CodeSuccess, "", ""
				}
			}
		}
		if ind == nil {
			return unauth, "DPS-003", fmt.Sprintf("registration ID %q has no individual enrollment and the signature matches no group's derived key", c.regID)
		}
		return unauth, "DPS-003", "signature does not verify"
	}
	if leaf == nil {
		if ind == nil {
			return unauth, "DPS-003", fmt.Sprintf("unknown registration ID %q and no credentials", c.regID)
		}
		return unauth, "DPS-003", "no SAS token and no client certificate"
	}
	tp := certs.Thumbprint(leaf)
	c.thumb = tp
	if ind != nil && ind.Attestation.Type == AttestX509 {
		if tp != ind.Attestation.Thumbprint {
			return unauth, "DPS-007", fmt.Sprintf("client certificate %s is not the enrolled one", tp)
		}
		c.auth, c.enroll = "x509-individual", ind.RegistrationID
		return packets.CodeSuccess, "", ""
	}
	// Group: the same chain rules as the hub (rig/hub authenticate,
	// CONN-013): the leaf with the intermediates the device sent must chain
	// to the group's signing certificate, for client auth, now; CN is the
	// registration ID.
	inter := x509.NewCertPool()
	for _, ic := range chain {
		inter.AddCert(ic)
	}
	for _, g := range groups {
		if g.Attestation.Type != AttestX509 || g.Attestation.ca == nil {
			continue
		}
		roots := x509.NewCertPool()
		roots.AddCert(g.Attestation.ca)
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CurrentTime: e.cfg.Now()}); err != nil {
			continue
		}
		if leaf.Subject.CommonName != c.regID {
			return unauth, "DPS-007", fmt.Sprintf("certificate CN %q is not the registration ID %q", leaf.Subject.CommonName, c.regID)
		}
		c.auth, c.enroll, c.leafCA = "x509-group", "group "+g.GroupID, true
		return packets.CodeSuccess, "", ""
	}
	return unauth, "DPS-007", "client certificate matches no enrollment (thumbprint or group chain)"
}

func (k *hooks) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	return k.e.connOf(cl) != nil
}

// OnACLCheck: a device publishes only the two request topics and
// subscribes only the answer filter (DPS-004).
func (k *hooks) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if write {
		return strings.HasPrefix(topic, dpsproto.RegisterPrefix) || strings.HasPrefix(topic, dpsproto.StatusPrefix)
	}
	return topic == dpsproto.ResponseFilter
}

// OnSubscribe refuses filters other than $dps/registrations/res/# (SUBACK 0x80).
func (k *hooks) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	c := k.e.connOf(cl)
	for _, f := range pk.Filters {
		if f.Filter != dpsproto.ResponseFilter {
			if c != nil {
				k.e.event(c, hub.EventWarning, "DPS-004", fmt.Sprintf("filter %q refused; DPS answers on %s", f.Filter, dpsproto.ResponseFilter))
			}
			continue // OnACLCheck refuses it: SUBACK 0x80
		}
		if c != nil {
			c.mu.Lock()
			c.subscribed = true
			c.mu.Unlock()
		}
	}
	return pk
}

// OnPublish takes a registration request or a status poll (DPS-004,
// DPS-005); the answer follows the PUBACK (OnPacketProcessed).
func (k *hooks) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	e := k.e
	c := e.connOf(cl)
	if c == nil {
		return pk, packets.ErrRejectPacket
	}
	body := bytes.Clone(pk.Payload)
	req, err := dpsproto.ParseRequestTopic(pk.TopicName)
	if err != nil {
		e.event(c, hub.EventViolation, "DPS-004", err.Error()+"; connection closed")
		return pk, packets.ErrRejectPacket
	}
	c.mu.Lock()
	c.afterAck = append(c.afterAck, func() { e.handle(c, cl, req, body) })
	c.mu.Unlock()
	return pk, packets.CodeSuccessIgnore
}

func (k *hooks) OnPacketProcessed(cl *mqtt.Client, pk packets.Packet, err error) {
	c := k.e.connOf(cl)
	if c == nil {
		return
	}
	c.mu.Lock()
	fns := c.afterAck
	c.afterAck = nil
	c.mu.Unlock()
	for _, f := range fns {
		f()
	}
}

func (k *hooks) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	e := k.e
	c := e.connOf(cl)
	if c == nil {
		return
	}
	e.dcs.Delete(cl)
	why := "client disconnected"
	if err != nil {
		why = err.Error()
	}
	e.trace.AddExternal(hub.Entry{ConnID: c.id, ClientID: c.clientID, Remote: c.remote, Dir: hub.DirEvent, Type: hub.EventConnClosed, Reason: "DPS: " + why})
}
