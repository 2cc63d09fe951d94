package hub

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/time/rate"

	"github.com/hilrun/hilrun/certs"
	"github.com/hilrun/hilrun/rig/iothub"
	"github.com/hilrun/hilrun/rig/secrets"
)

// Authentication methods as recorded on a connection.
const (
	MethodSAS          = "sas"
	MethodSASPolicy    = "sas-policy"
	MethodX509Thumb    = "x509-thumbprint"
	MethodX509CA       = "x509-ca"
	maxClientKeepAlive = 1177 // IoT Hub's largest honoured client keep-alive, seconds (CONN-023 note)
)

// conn is the hub's state for one MQTT connection.
type conn struct {
	id        uint64
	cl        *mqtt.Client
	clientID  string
	identity  iothub.Identity
	remote    string
	facts     *TLSFacts
	accepted  time.Time // the listener's TCP accept (connInfo.accepted); zero when unknown
	netConn   net.Conn
	username  iothub.Username
	auth      string
	sasExpiry time.Time
	clean     bool
	keepAlive uint16
	opened    time.Time

	authed bool
	// established: the hub's bookkeeping for the connection is complete
	// (OnSessionEstablished), so service calls may use it. Read without a
	// lock by service goroutines, hence atomic.
	established atomic.Bool
	// abandoned: the connection closed, or was taken over, while it was the
	// identity's pending active connection. Guarded by Hub.mu.
	abandoned bool
	// revoked: the registry disabled or deleted the identity (or its
	// device) while this connection existed; set under mu, which the
	// telemetry store also holds for its check, so nothing the device
	// sends is accepted once Registry.SetStatus/Put/Delete has returned.
	revoked atomic.Bool
	// ready is closed once the connection is established or abandoned, so
	// a service call that finds it pending can wait for the outcome.
	ready     chan struct{}
	readyOnce sync.Once

	mu          sync.Mutex
	closeReason string
	closeReq    string
	takenOver   bool
	graceful    bool
	silent      bool // fault: hub stops answering
	expiry      *time.Timer
	twinLimit   *rate.Limiter
	telemLimit  *rate.Limiter
	afterAck    []func()
	pub         pubState // the read goroutine's PUBLISH parse and masking (hotpath.go)
	c2dInflight map[uint16]*c2dMessage
	will        *mqtt.Will // declared in CONNECT (CONN-021)
	willSent    bool

	// What admitConnect kept from mochi's CONNECT validation, which would
	// refuse it with an MQTT 5 reason code: a zero-length password and a
	// zero-length Will Message, both legal in MQTT 3.1.1.
	emptyPassword bool
	emptyWill     *emptyWill
}

// emptyWill is a Will with a zero-length message, hidden from mochi.
type emptyWill struct {
	topic  string
	qos    byte
	retain bool
}

func (c *conn) setClose(reason, req string) {
	c.mu.Lock()
	if c.closeReason == "" {
		c.closeReason, c.closeReq = reason, req
	}
	c.mu.Unlock()
}

// session is the per-identity MQTT session kept across connections when
// CleanSession is 0 (CONN-017).
type session struct {
	subs map[string]byte // filter → granted QoS
	// c2dFrom is the C2D enqueue sequence number at the time the session
	// subscribed to its devicebound filter: IoT Hub delivers messages sent
	// after the subscription, and CleanSession 0 keeps the subscription,
	// and so the offline backlog, across connections (002 L13928, C2D-006).
	c2dFrom uint64
}

type hooks struct {
	mqtt.HookBase
	h *Hub
}

func (k *hooks) ID() string { return "hilrun-iothub" }

// Provides is asked before every hook call, several times per packet.
func (k *hooks) Provides(b byte) bool { return provided[b] }

// provided is the set of hook events the hub implements.
var provided = func() (set [256]bool) {
	for _, b := range []byte{
		mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnSessionEstablish,
		mqtt.OnSessionEstablished, mqtt.OnDisconnect, mqtt.OnPacketRead, mqtt.OnPacketEncode,
		mqtt.OnPacketProcessed, mqtt.OnSubscribed, mqtt.OnUnsubscribed,
		mqtt.OnPublish, mqtt.OnWill,
	} {
		set[b] = true
	}
	return set
}()

// connOf is the hub's state for a mochi client, nil when it has none. Every
// hook calls it, several times per packet, so it takes no lock.
func (h *Hub) connOf(cl *mqtt.Client) *conn {
	if s := connSlot(cl); s != nil {
		return s.Load()
	}
	if v, ok := h.conns.Load(cl); ok {
		return v.(*conn)
	}
	return nil
}

// connSlot is the copy of a client's entry in h.conns kept on the
// hubConn mochi reads it from, so connOf is one pointer load instead of a
// map lookup (several per packet). nil for a client on another net.Conn.
// h.conns stays the record (Range walks it); every change to it goes
// through storeConn / deleteConn / compareAndDeleteConn / loadAndDeleteConn,
// which update both.
func connSlot(cl *mqtt.Client) *atomic.Pointer[conn] {
	if hc, ok := cl.Net.Conn.(*hubConn); ok {
		return &hc.conn
	}
	return nil
}

func (h *Hub) storeConn(cl *mqtt.Client, c *conn) {
	h.conns.Store(cl, c)
	if s := connSlot(cl); s != nil {
		s.Store(c)
	}
}

func (h *Hub) deleteConn(cl *mqtt.Client) {
	h.conns.Delete(cl)
	if s := connSlot(cl); s != nil {
		s.Store(nil)
	}
}

func (h *Hub) compareAndDeleteConn(cl *mqtt.Client, c *conn) {
	h.conns.CompareAndDelete(cl, c)
	if s := connSlot(cl); s != nil {
		s.CompareAndSwap(c, nil)
	}
}

func (h *Hub) loadAndDeleteConn(cl *mqtt.Client) *conn {
	var c *conn
	if v, ok := h.conns.LoadAndDelete(cl); ok {
		c = v.(*conn)
	}
	if s := connSlot(cl); s != nil {
		s.CompareAndSwap(c, nil)
	}
	return c
}

// describePassword is what the trace keeps of a CONNECT password: facts the
// specs judge (CONN-007..012, MOD-003, RECON-006/007), never the password,
// whatever the caller of the trace API may read. A password shaped like a
// SAS token (any of the fields sr, sig, se, skn, '&'-separated, with or
// without the "SharedAccessSignature " prefix) is rendered field by field in
// the order sent, every sig value and every piece that is no known field
// replaced by <redacted>; sr, se and skn stay as sent: a resource, a time and
// a policy name, none of them secret (a registered secret inside them is
// still masked by the trace). Anything else becomes "not a SAS token (N
// bytes)": it may be the raw device key (CONN-011), so not even its shape is
// kept.
func describePassword(pw []byte, flag bool) string {
	if !flag {
		return ""
	}
	const prefix = "SharedAccessSignature "
	rest, hasPrefix := strings.CutPrefix(string(pw), prefix)
	pieces := strings.Split(rest, "&")
	known := 0
	for i, p := range pieces {
		k, v, ok := strings.Cut(p, "=")
		switch {
		case ok && (k == "sr" || k == "se" || k == "skn"):
			known++
		case ok && k == "sig":
			known++
			if v != "" {
				pieces[i] = "sig=" + secrets.Redacted
			}
		default:
			pieces[i] = secrets.Redacted
		}
	}
	if known == 0 {
		return fmt.Sprintf("not a SAS token (%d bytes)", len(pw))
	}
	out := strings.Join(pieces, "&")
	if hasPrefix {
		out = prefix + out
	}
	return out
}

// sasProblem is why ParseSASToken refused a password, without the
// password (its error quotes the token with sig redacted, but an unknown
// field could still carry a secret).
func sasProblem(err error) string {
	var ie *iothub.Error
	if errors.As(err, &ie) {
		if ie.Rule != "" {
			return ie.Reason + " [" + ie.Rule + "]"
		}
		return ie.Reason
	}
	return "unparsable"
}

// newConn registers the connection when its CONNECT arrives.
func (h *Hub) newConn(cl *mqtt.Client, pk packets.Packet) *conn {
	c := &conn{cl: cl, clientID: pk.Connect.ClientIdentifier, remote: cl.Net.Remote, netConn: cl.Net.Conn,
		c2dInflight: map[uint16]*c2dMessage{}, ready: make(chan struct{})}
	if v, ok := h.infoByConn.LoadAndDelete(cl.Net.Conn); ok {
		info := v.(*connInfo)
		c.id, c.facts, c.accepted = info.id, info.facts, info.accepted
	} else {
		c.id = h.connSeq.Add(1)
	}
	h.storeConn(cl, c)
	return c
}

func (k *hooks) traceIn(c *conn, pk packets.Packet) {
	e := Entry{ConnID: c.id, ClientID: c.clientID, Remote: c.remote, Dir: DirIn, Type: packetName(pk.FixedHeader.Type)}
	if pk.FixedHeader.Type == packets.Publish {
		fillPublish(&e, pk)
		if t, err := c.parseTopic(pk.TopicName); err == nil {
			e.Properties = t.Properties
		}
		e.pre = c.maskPublish(&pk)
	} else {
		fillEntry(&e, pk)
	}
	if pk.FixedHeader.Type == packets.Connect {
		e.AcceptTime = c.accepted // RECON-001: when this attempt started
	}
	k.h.trace.add(e)
}

func fillPublish(e *Entry, pk packets.Packet) {
	e.Topic = pk.TopicName
	e.QoS = pk.FixedHeader.Qos
	e.PacketID = pk.PacketID
	e.Dup = pk.FixedHeader.Dup
	e.Retain = pk.FixedHeader.Retain
	e.Payload = pk.Payload
	e.PayloadLen = len(pk.Payload)
}

func fillEntry(e *Entry, pk packets.Packet) {
	switch pk.FixedHeader.Type {
	case packets.Connect:
		e.Username = string(pk.Connect.Username)
		e.Password = describePassword(pk.Connect.Password, pk.Connect.PasswordFlag)
		// The password itself is not kept; what is known about a secret in
		// it is (CONN-011: the device key sent as password).
		if pk.Connect.PasswordFlag {
			_, found := secrets.MaskBytesFind(pk.Connect.Password)
			e.Secrets = appendSeen(e.Secrets, "password", found)
		}
		e.KeepAlive = pk.Connect.Keepalive
		e.CleanSession = pk.Connect.Clean
		e.ProtoLevel = pk.ProtocolVersion
		if pk.Connect.WillFlag {
			e.WillTopic = pk.Connect.WillTopic
			e.Extra = fmt.Sprintf("will qos=%d retain=%v", pk.Connect.WillQos, pk.Connect.WillRetain)
		}
	case packets.Connack:
		e.ReturnCode = pk.ReasonCode
		e.Session = pk.SessionPresent
	case packets.Publish:
		fillPublish(e, pk)
		if t, err := iothub.ParseTopic(pk.TopicName); err == nil {
			e.Properties = t.Properties
		}
	case packets.Puback, packets.Pubrec, packets.Pubrel, packets.Pubcomp, packets.Unsuback:
		e.PacketID = pk.PacketID
	case packets.Subscribe, packets.Unsubscribe:
		e.PacketID = pk.PacketID
		for _, f := range pk.Filters {
			e.Filters = append(e.Filters, FilterQoS{Filter: f.Filter, QoS: f.Qos})
		}
	case packets.Suback:
		e.PacketID = pk.PacketID
		e.Granted = append([]byte(nil), pk.ReasonCodes...)
	}
}

func packetName(t byte) string {
	if int(t) < len(packetNames) {
		return packetNames[t]
	}
	return fmt.Sprintf("TYPE-%d", t)
}

// packetNames are the trace names of the 16 MQTT packet types ("PUBLISH"),
// built once rather than upper-cased for every traced packet.
var packetNames = func() (names [16]string) {
	for t := range names {
		names[t] = strings.ToUpper(packets.PacketNames[byte(t)])
	}
	return names
}()

// admitConnect runs on a CONNECT before mochi validates it, and keeps that
// validation from answering an MQTT 3.1.1 (or 3.1) client with an MQTT 5
// reason code (0x80 and up): 3.1.1 has return codes 0 to 5 only
// (§3.2.2.3), and IoT Hub speaks 3.1.1 (CONN-001, 002 L13767). It returns
// the packet mochi goes on with, or an error to close the connection
// without a CONNACK.
//
//   - A zero-length ClientId with CleanSession 0 gets 0x02 ([MQTT-3.1.3-8];
//     IoT Hub wants the device ID there, L13774): authenticate answers it
//     once mochi, shown CleanSession 1, lets it through.
//   - A zero-length password (§3.1.3.5: 0 to 65535 bytes) and a zero-length
//     Will Message (§3.1.3.3) are legal; mochi refuses both. The hub hides
//     them from mochi and judges them itself: an empty password is no SAS
//     token (CONN-007, 0x04), an empty Will is delivered like any other
//     (CONN-021; the hub delivers Wills itself, see OnDisconnect).
//   - A Will at QoS 2 is a message IoT Hub cannot take: it closes the
//     connection of a device that publishes at QoS 2 (L13907, CONN-020).
//   - Any other protocol violation mochi would answer (reserved flag set,
//     wrong protocol name, Username or Password without its flag, Will
//     RETAIN without a Will) closes the connection: §4.8, [MQTT-3.1.2-3].
func (h *Hub) admitConnect(c *conn, pk packets.Packet) (packets.Packet, error) {
	if pk.ProtocolVersion >= 5 {
		return pk, nil // authenticate refuses it with the MQTT 5 code (CONN-001)
	}
	cn := &pk.Connect
	if cn.ClientIdentifier == "" && !cn.Clean {
		cn.Clean = true // refused with 0x02 in authenticate all the same
	}
	if cn.PasswordFlag && len(cn.Password) == 0 {
		c.emptyPassword = true
		cn.PasswordFlag = false
	}
	refuse := func(req, reason string) (packets.Packet, error) {
		h.trace.add(Entry{ConnID: c.id, ClientID: c.clientID, Remote: c.remote, Dir: DirEvent, Type: EventConnRejected,
			Reason: reason + "; closed without CONNACK", Requirement: req})
		h.compareAndDeleteConn(c.cl, c)
		return pk, packets.ErrRejectPacket
	}
	if cn.WillFlag && cn.WillQos == 2 {
		return refuse("CONN-020", "Will at QoS 2; IoT Hub does not support QoS 2 messages and closes the connection (002 L13907)")
	}
	if cn.WillFlag && len(cn.WillPayload) == 0 && cn.WillTopic != "" {
		c.emptyWill = &emptyWill{topic: cn.WillTopic, qos: cn.WillQos, retain: cn.WillRetain}
		cn.WillFlag, cn.WillRetain, cn.WillQos = false, false, 0
	}
	if code := pk.ConnectValidate(); code != packets.CodeSuccess {
		return refuse("CONN-001", "MQTT 3.1.1 protocol violation in CONNECT ("+code.Reason+"); the server closes the connection (MQTT 3.1.1 §4.8)")
	}
	return pk, nil
}

// OnConnect applies IoT Hub's CONNECT rules (CONN-001..024). A refusal
// sends the CONNACK return code IoT Hub would use and closes the socket.
func (k *hooks) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	h := k.h
	c := h.connOf(cl)
	if c == nil {
		c = h.newConn(cl, pk)
	}
	code, reason, req := h.authenticate(c, pk)
	if code != packets.CodeSuccess {
		h.trace.add(Entry{ConnID: c.id, ClientID: c.clientID, Remote: c.remote, Dir: DirEvent, Type: EventConnRejected,
			Reason: reason, Requirement: req, ReturnCode: v3Code(code)})
		_ = h.srv.SendConnack(cl, code, false, nil)
		h.deleteConn(cl)
		return fmt.Errorf("connect refused: %s", reason)
	}
	c.authed = true
	// IoT Hub honours client keep-alives up to 1177 s and applies that
	// ceiling to larger values and to 0 (CONN-023).
	if ka := pk.Connect.Keepalive; ka == 0 || ka > maxClientKeepAlive {
		h.trace.add(Entry{ConnID: c.id, ClientID: c.clientID, Dir: DirEvent, Type: EventWarning, Requirement: "CONN-023",
			Reason: fmt.Sprintf("keep-alive %d s outside 1..%d; hub applies %d s", ka, maxClientKeepAlive, maxClientKeepAlive)})
		cl.State.Keepalive = maxClientKeepAlive
	}
	return nil
}

func v3Code(code packets.Code) byte {
	if v3, ok := packets.V5CodesToV3[code]; ok {
		return v3.Code
	}
	return code.Code
}

// authenticate decides a CONNECT. IoT Hub answers malformed credentials with
// 0x04 (bad user name or password), well-formed but wrong or expired ones
// and unknown or disabled identities with 0x05 (not authorized, cf. 002
// L8716), a bad client identifier with 0x02, and a throttled or faulted
// hub with 0x03.
func (h *Hub) authenticate(c *conn, pk packets.Packet) (packets.Code, string, string) {
	if pk.ProtocolVersion != 4 {
		return packets.ErrUnsupportedProtocolVersion, fmt.Sprintf("protocol level %d; IoT Hub speaks MQTT 3.1.1 (level 4)", pk.ProtocolVersion), "CONN-001"
	}
	id, err := iothub.ParseClientID(pk.Connect.ClientIdentifier)
	if err != nil {
		return packets.ErrClientIdentifierNotValid, "client identifier: " + err.Error(), "CONN-005"
	}
	c.identity = id
	c.clean = pk.Connect.Clean
	c.keepAlive = pk.Connect.Keepalive
	if hc, ok := c.netConn.(*hubConn); ok && c.keepAlive > 0 {
		hc.idleLimit.Store(int64(time.Duration(c.keepAlive) * 1500 * time.Millisecond))
	}
	if code, reason, ok := h.connectFault(id); ok {
		// Server unavailable (3) is throttling, whose retry spacing RECON-003
		// judges; an authentication refusal (4, 5) is final for the device
		// until something changes (RECON-004).
		req := "RECON-003"
		if code == packets.ErrMalformedUsername || code == packets.ErrBadUsernameOrPassword {
			req = "RECON-004"
		}
		return code, reason, req
	}
	if !pk.Connect.UsernameFlag {
		return packets.ErrMalformedUsername, "no Username; IoT Hub needs {host}/{deviceId}/?api-version=...", "CONN-006"
	}
	u, err := iothub.ParseUsername(string(pk.Connect.Username))
	if err != nil {
		return packets.ErrMalformedUsername, "Username: " + err.Error(), "CONN-006"
	}
	c.username = u
	if !strings.EqualFold(u.Host, h.cfg.Host) {
		return packets.ErrBadUsernameOrPassword, fmt.Sprintf("Username host %q is not this hub (%q)", u.Host, h.cfg.Host), "CONN-006"
	}
	if u.Identity != id {
		// Device IDs are case-sensitive (002 L11373) and the Username
		// names the same identity as the ClientId (L13774-13775, L13835).
		reason := fmt.Sprintf("Username identity %q does not match ClientId %q", u.Identity, id)
		if u.Bare && strings.HasPrefix(u.Identity.ClientID(), id.ClientID()+"?") {
			reason += "; a query needs \"/?\" after the ID ({host}/{deviceId}/?api-version=...)"
		}
		return packets.ErrBadUsernameOrPassword, reason, "CONN-006"
	}
	switch {
	case u.Bare:
		// "{host}/{deviceId}" is what 002 L11356, L11373 and the sample at
		// L13885 put in the Username, so IoT Hub accepts it; the catalog
		// lets a missing query only warn (CONN-006 evidence, MOD-002 "same
		// tolerance"). The documented full form is L13775 / L13835.
		h.warn(c, "CONN-006", "Username is the bare {host}/{deviceId} form (002 L11356) without \"/?api-version=\" (L13775, L13835)")
	case !u.HasQuery || u.APIVersion == "":
		h.warn(c, "CONN-006", "Username carries no api-version")
	case !contains(h.cfg.APIVersions, u.APIVersion):
		h.warn(c, "CONN-006", fmt.Sprintf("api-version %q is not on the accepted list %v", u.APIVersion, h.cfg.APIVersions))
	}
	willFlag, willTopic, willQoS, willRetain := pk.Connect.WillFlag, pk.Connect.WillTopic, pk.Connect.WillQos, pk.Connect.WillRetain
	if ew := c.emptyWill; ew != nil { // zero-length Will Message (admitConnect)
		willFlag, willTopic, willQoS, willRetain = true, ew.topic, ew.qos, ew.retain
	}
	if willFlag {
		wt, err := iothub.CheckDevicePublish(id, willTopic)
		if err != nil || wt.Kind != iothub.TopicTelemetry {
			return packets.ErrBadUsernameOrPassword, fmt.Sprintf("Will topic %q is not this identity's telemetry topic", willTopic), "CONN-021"
		}
		if willRetain {
			h.warn(c, "CONN-021", "Will has RETAIN set; IoT Hub never retains")
		}
		c.will = &mqtt.Will{TopicName: willTopic, Payload: append([]byte(nil), pk.Connect.WillPayload...), Qos: willQoS}
	}

	dev, err := h.reg.Get(id)
	if err != nil {
		return packets.ErrBadUsernameOrPassword, fmt.Sprintf("identity %q is not registered", id), "CONN-005"
	}
	// A disabled identity "cannot access any device-facing endpoint" (002
	// L11222, L11253): refused as not authorized (0x05, as for any
	// credential IoT Hub no longer accepts, L8716), a refusal the device
	// must not retry in a fast loop (RECON-004). Modules have no flag of
	// their own (L11102, L22539): their device's status governs them, so a
	// module of a disabled device is refused too.
	if dev.Status != StatusEnabled {
		return packets.ErrBadUsernameOrPassword, fmt.Sprintf("identity %q is disabled (002 L11222)", id), "RECON-004"
	}
	if id.IsModule() {
		parent, err := h.reg.Get(iothub.Identity{DeviceID: id.DeviceID})
		if err != nil {
			return packets.ErrBadUsernameOrPassword, fmt.Sprintf("device %q of module %q is not registered", id.DeviceID, id), "CONN-005"
		}
		if parent.Status != StatusEnabled {
			return packets.ErrBadUsernameOrPassword, fmt.Sprintf("device %q of module %q is disabled (002 L11222, L11102)", id.DeviceID, id), "RECON-004"
		}
	}

	var leaf *x509.Certificate
	var chain []*x509.Certificate
	if cs, ok := c.netConn.(interface{ ConnectionState() tls.ConnectionState }); ok {
		st := cs.ConnectionState()
		if len(st.PeerCertificates) > 0 {
			leaf, chain = st.PeerCertificates[0], st.PeerCertificates[1:]
		}
	}
	password := string(pk.Connect.Password)
	passwordFlag := pk.Connect.PasswordFlag || c.emptyPassword // a zero-length password is one (admitConnect)
	hasSAS := passwordFlag && strings.HasPrefix(password, "SharedAccessSignature ")

	switch dev.Authentication.Type {
	case AuthSAS:
		if !passwordFlag {
			return packets.ErrBadUsernameOrPassword, "SAS identity sent no password", "CONN-007"
		}
		tok, err := iothub.ParseSASToken(password)
		if err != nil {
			return packets.ErrMalformedPassword, "password is not a shared access signature: " + sasProblem(err), "CONN-007"
		}
		return h.checkSAS(c, dev, tok)
	case AuthSelfSigned, AuthCA:
		if leaf == nil {
			return packets.ErrBadUsernameOrPassword, "X.509 identity presented no client certificate", "CONN-012"
		}
		if hasSAS {
			h.warn(c, "CONN-012", "X.509 identity also sent a SAS token as password")
		} else if passwordFlag {
			h.warn(c, "CONN-012", "X.509 identity sent a password")
		}
		if dev.Authentication.Type == AuthSelfSigned {
			tp := certs.Thumbprint(leaf)
			t := dev.Authentication.X509Thumbprint
			if tp != t.PrimaryThumbprint && (t.SecondaryThumbprint == "" || tp != t.SecondaryThumbprint) {
				return packets.ErrBadUsernameOrPassword, fmt.Sprintf("client certificate thumbprint %s matches neither registered thumbprint", tp), "CONN-014"
			}
			if leaf.Subject.CommonName != id.ClientID() {
				h.warn(c, "CONN-015", fmt.Sprintf("certificate CN %q differs from %q", leaf.Subject.CommonName, id.ClientID()))
			}
			c.auth = MethodX509Thumb
			return packets.CodeSuccess, "", ""
		}
		inter := x509.NewCertPool()
		for _, ic := range chain {
			inter.AddCert(ic)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: h.reg.caPool(), Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CurrentTime: h.cfg.Now()}); err != nil {
			return packets.ErrBadUsernameOrPassword, "client certificate does not chain to a registered CA: " + err.Error(), "CONN-013"
		}
		if leaf.Subject.CommonName != id.ClientID() {
			return packets.ErrBadUsernameOrPassword, fmt.Sprintf("certificate CN %q is not %q", leaf.Subject.CommonName, id.ClientID()), "CONN-015"
		}
		c.auth = MethodX509CA
		return packets.CodeSuccess, "", ""
	}
	return packets.ErrBadUsernameOrPassword, "unsupported authentication type " + dev.Authentication.Type, "CONN-007"
}

func (h *Hub) checkSAS(c *conn, dev Device, tok iothub.SASToken) (packets.Code, string, string) {
	id := c.identity
	sr, err := tok.ResourceURI()
	if err != nil {
		return packets.ErrMalformedPassword, "sr is not URL-encoded correctly: " + err.Error(), "CONN-008"
	}
	var keys []string
	method := MethodSAS
	if tok.KeyName != "" {
		pol, err := h.reg.Policy(tok.KeyName)
		if err != nil || !pol.Has(RightDeviceConnect) {
			return packets.ErrBadUsernameOrPassword, fmt.Sprintf("skn %q is not a policy with DeviceConnect", tok.KeyName), "CONN-007"
		}
		keys = []string{pol.PrimaryKey, pol.SecondaryKey}
		method = MethodSASPolicy
	} else {
		keys = []string{dev.Authentication.SymmetricKey.PrimaryKey, dev.Authentication.SymmetricKey.SecondaryKey}
	}
	if !iothub.ResourceCovers(sr, h.cfg.Host, id) {
		return packets.ErrBadUsernameOrPassword, fmt.Sprintf("sr %q does not cover %s", sr, iothub.DeviceResourceURI(h.cfg.Host, id)), "CONN-008"
	}
	valid := false
	for _, key := range keys {
		if ok, _ := tok.Verify(key); ok {
			valid = true
			break
		}
	}
	if !valid {
		return packets.ErrBadUsernameOrPassword, "SAS signature does not verify with the identity's keys", "CONN-009"
	}
	now := h.cfg.Now()
	if exp := tok.ExpiresAt(); !exp.After(now) {
		return packets.ErrBadUsernameOrPassword, fmt.Sprintf("SAS token expired at %s (hub time %s)", exp.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)), "CONN-010"
	}
	// The signature covers sr as transmitted; IoT Hub documents lower-case
	// encoding but SDKs send %2F, so only note deviations (CONN-008).
	if strings.Contains(tok.Resource, "/") {
		h.warn(c, "CONN-008", "sr is not URL-encoded")
	}
	// A module signs with its own key for its own resource (MOD-003). A
	// broader sr that verified with the module key is accepted here as
	// ResourceCovers allows it, but noted as the deviation it is.
	if id.IsModule() && tok.KeyName == "" {
		if _, path, _ := strings.Cut(sr, "/"); path != strings.TrimPrefix(iothub.DeviceResourceURI(h.cfg.Host, id), h.cfg.Host+"/") {
			h.warn(c, "MOD-003", fmt.Sprintf("module token's sr %q is not the module resource", sr))
		}
	}
	c.auth = method
	c.sasExpiry = tok.ExpiresAt()
	return packets.CodeSuccess, "", ""
}

func (h *Hub) warn(c *conn, req, reason string) {
	h.trace.add(Entry{ConnID: c.id, ClientID: c.clientID, Remote: c.remote, Dir: DirEvent, Type: EventWarning, Requirement: req, Reason: reason})
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func (k *hooks) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	c := k.h.connOf(cl)
	return c != nil && c.authed
}

// OnACLCheck allows everything that reached mochi: topic rules were applied
// (and violators disconnected) in OnPacketRead, as IoT Hub closes rather
// than NACKs.
func (k *hooks) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool { return true }

// OnSessionEstablish runs after authentication and before mochi takes over
// an older session with the same client id and writes the CONNACK. This is
// where the connection becomes the identity's active one (CONN-016): mochi
// writes the CONNACK and resends inflight messages before it calls
// OnSessionEstablished, and a device that has its CONNACK may be acted on
// at once (a direct method, METH-001; a Drop; a desired patch, TWIN-009),
// so registering any later lets such a call miss a connected device. Until
// OnSessionEstablished has finished the bookkeeping, the connection is
// pending: lookups (activeConn) wait for it rather than write to it, so
// nothing goes out before the CONNACK either. A refused CONNECT never gets
// here (mochi returns after OnConnect's error), so it is never registered.
//
// The older connection, if any, is marked so that its end is reported as a
// takeover (CONN-016, RECON-009); its late OnDisconnect leaves the new
// registration alone because it only removes itself.
func (k *hooks) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	h := k.h
	c := h.connOf(cl)
	if c == nil {
		return
	}
	h.mu.Lock()
	old := h.active[c.clientID]
	h.active[c.clientID] = c
	// The registry says Connected from here too, so a service reading the
	// device right after the CONNACK does not see it Disconnected. Under
	// h.mu, so an old connection's OnDisconnect cannot overwrite it.
	h.reg.setConnection(c.identity, true, time.Now())
	h.mu.Unlock()
	h.noteModelID(c.identity, c.username.ModelID) // PNP-001 (pnp.go)
	if old != nil && old != c {
		old.mu.Lock()
		old.takenOver = true
		old.mu.Unlock()
		old.setClose(takeoverReason, "CONN-016")
		// An old connection that was itself still pending may not be in
		// mochi's client list yet, so mochi would not close it: the hub does.
		if h.abandonPending(old) {
			h.closeConn(old, takeoverReason, "CONN-016", false)
		}
	}
	// mochi does not call OnDisconnect when writing the CONNACK or resending
	// the inflight messages fails; the transport's Close is the one signal
	// every ending gives, so it withdraws a registration still pending.
	if hc, ok := c.netConn.(*hubConn); ok && !hc.whenClosed(func() { h.abandonPending(c) }) {
		h.abandonPending(c) // closed already
	}
}

const takeoverReason = "another connection with the same identity took over; IoT Hub closes the old one without DISCONNECT"

// abandonPending withdraws a connection that ended, or was taken over,
// before its bookkeeping finished, and reports whether it did. An
// established connection is left to OnDisconnect. It runs inside mochi's
// Client.Stop (through hubConn.Close), so it must not stop the client.
func (h *Hub) abandonPending(c *conn) bool {
	if c.established.Load() {
		return false
	}
	h.mu.Lock()
	if c.established.Load() || c.abandoned {
		h.mu.Unlock()
		return false
	}
	c.abandoned = true
	if h.active[c.clientID] == c {
		delete(h.active, c.clientID)
		h.reg.setConnection(c.identity, false, time.Now())
	}
	h.mu.Unlock()
	// OnDisconnect may never come for it (see OnSessionEstablish), so its
	// end is recorded here, once: without its state OnDisconnect returns early.
	h.compareAndDeleteConn(c.cl, c)
	c.markReady()
	c.mu.Lock()
	reason, req := c.closeReason, c.closeReq
	c.mu.Unlock()
	if reason == "" {
		reason = "connection closed before the hub finished opening it"
	}
	h.trace.add(Entry{ConnID: c.id, ClientID: c.clientID, Remote: c.remote, Dir: DirEvent, Type: EventConnClosed, Reason: reason, Requirement: req})
	return true
}

func (c *conn) markReady() { c.readyOnce.Do(func() { close(c.ready) }) }

// OnSessionEstablished runs after the CONNACK went out: it completes the
// bookkeeping of the connection OnSessionEstablish registered, then lets
// the service calls waiting for it proceed.
func (k *hooks) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	h := k.h
	c := h.connOf(cl)
	if c == nil {
		return
	}
	c.opened = time.Now()
	l := h.limitsFor(c.clientID) // Config.Limits or SetIdentityLimits (LIMITS-001/002)
	if l.TwinOpsPerSecond > 0 {
		c.twinLimit = rate.NewLimiter(rate.Limit(l.TwinOpsPerSecond), max(1, l.TwinBurst))
	}
	if l.TelemetryPerSecond > 0 {
		c.telemLimit = rate.NewLimiter(rate.Limit(l.TelemetryPerSecond), max(1, l.TelemetryBurst))
	}
	if hc, ok := c.netConn.(*hubConn); ok {
		h.faults.mu.Lock()
		hc.silent.Store(h.faults.silent[c.clientID])
		h.faults.mu.Unlock()
	}
	h.mu.Lock()
	if c.abandoned || h.active[c.clientID] != c {
		// Closed or taken over while its CONNACK was going out: never
		// established (abandonPending recorded and closed it).
		h.mu.Unlock()
		return
	}
	s := h.sessions[c.clientID]
	if s == nil || c.clean {
		s = &session{subs: map[string]byte{}}
		h.sessions[c.clientID] = s
	}
	c.established.Store(true)
	h.mu.Unlock()
	h.trace.add(Entry{ConnID: c.id, ClientID: c.clientID, Remote: c.remote, Dir: DirEvent, Type: EventConnOpened,
		Extra: "auth=" + c.auth, TLS: c.facts})
	if !c.sasExpiry.IsZero() {
		// RECON-006: a session whose token expires is dropped (after the grace).
		d := c.sasExpiry.Add(h.cfg.SASGrace).Sub(h.cfg.Now())
		c.mu.Lock()
		c.expiry = time.AfterFunc(d, func() {
			h.closeConn(c, "SAS token expired while connected (se passed; MQTT cannot refresh a token in-session)", "RECON-006", false)
		})
		c.mu.Unlock()
	}
	c.markReady()
	// Session present: C2D backlog goes out now (C2D-006).
	h.deliverC2D(c)
}

// closeConn ends a connection from the hub side the way IoT Hub does: the
// TCP connection is closed, no DISCONNECT is sent. rst aborts it with a
// reset instead of a FIN.
func (h *Hub) closeConn(c *conn, reason, req string, rst bool) {
	c.setClose(reason, req)
	if rst {
		resetTCP(c.netConn) // before TLS can send close_notify (faults.go)
	}
	c.cl.Stop(errors.New(reason))
}

// Why an identity's connections are revoked (Registry.onRevoke).
const (
	revokeDisabled = "disabled"
	revokeDeleted  = "deleted"
)

// revoke ends every connection of id, and of its modules when id is a
// device, because the registry has just disabled or deleted it: a disabled
// device "cannot access any device-facing endpoint" (002 L11222, L11253),
// so IoT Hub cuts the live connection too, and a deleted one has no entry
// left in the registry that enables its access (L20353). Modules have no enabled/disabled flag of their own (L11102,
// L22539) and are deleted with their device, so they share its fate. The
// close is IoT Hub's usual one (TCP, no DISCONNECT, L13767); the device's
// next CONNECT is refused with 0x05 (authenticate), which RECON-004 says it
// must not retry in a fast loop, hence the requirement in the trace.
//
// It runs in the registry caller's goroutine before SetStatus, Put or
// Delete returns. Every connection from its CONNECT packet on is in
// h.conns (newConn runs before authenticate reads the registry), so one
// whose CONNECT is still being decided is either refused by that read or
// found here; each is marked revoked under its mu before being stopped,
// so no PUBLISH it sends afterwards is accepted (OnPacketRead, OnPublish).
func (h *Hub) revoke(id iothub.Identity, why string) {
	key := id.ClientID()
	var victims []*conn
	h.conns.Range(func(_, v any) bool {
		c := v.(*conn)
		if c.clientID == key || !id.IsModule() && strings.HasPrefix(c.clientID, id.DeviceID+"/") {
			victims = append(victims, c)
		}
		return true
	})
	for _, c := range victims {
		c.mu.Lock()
		c.revoked.Store(true)
		c.mu.Unlock()
		subject := "identity " + key
		if c.clientID != key {
			subject = "device " + id.DeviceID + " of module " + c.clientID
		}
		var reason string
		if why == revokeDeleted {
			reason = subject + " deleted from the registry while connected; the registry is what enables its access (002 L20353), IoT Hub closes the connection"
		} else {
			reason = subject + " disabled in the registry while connected; a disabled device cannot access any device-facing endpoint (002 L11222), IoT Hub closes the connection"
		}
		h.closeConn(c, reason, "RECON-004", false)
	}
	if len(victims) > 0 {
		h.notify()
	}
}

func (k *hooks) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	h := k.h
	h.mu.Lock()
	c := h.loadAndDeleteConn(cl)
	if c != nil && h.active[c.clientID] == c {
		// Only its own registration: a connection that took this one over
		// stays the active one however late this disconnect runs (CONN-016).
		delete(h.active, c.clientID)
		// Under h.mu, ordered with the registration of the next connection.
		h.reg.setConnection(c.identity, false, time.Now())
	}
	if c != nil && expire {
		if h.active[c.clientID] == nil {
			delete(h.sessions, c.clientID)
		}
	}
	h.mu.Unlock()
	if c == nil {
		return
	}
	c.mu.Lock()
	if c.expiry != nil {
		c.expiry.Stop()
	}
	reason, req := c.closeReason, c.closeReq
	graceful := c.graceful
	will := c.will
	c.mu.Unlock()
	// mochi fires the Will only when its read loop ends with an error; when
	// the hub itself stops the client between two packets the loop ends
	// cleanly and mochi drops the Will. Without a DISCONNECT from the device
	// the loss is unclean all the same, so the Will goes out (CONN-021,
	// MQTT 3.1.1 §3.1.2.5).
	if will != nil && !graceful && c.established.Load() {
		h.deliverWill(c, *will)
	}
	if reason == "" {
		reason = describeDisconnect(err, graceful, c.keepAlive)
		if strings.Contains(reason, "keep-alive") {
			req = "CONN-023"
		}
	}
	h.abandonC2D(c)
	h.trace.add(Entry{ConnID: c.id, ClientID: c.clientID, Remote: c.remote, Dir: DirEvent, Type: EventConnClosed, Reason: reason, Requirement: req})
}

func describeDisconnect(err error, graceful bool, ka uint16) string {
	switch {
	case graceful:
		return "device sent DISCONNECT"
	case err == nil:
		return "connection closed"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Sprintf("no packet within 1.5 × keep-alive (%d s); hub closed the connection", ka)
	case errors.Is(err, io.EOF):
		return "device closed TCP without DISCONNECT"
	default:
		return "connection lost: " + err.Error()
	}
}

// OnWill turns the Will into telemetry tagged iothub-MessageType=Will
// (CONN-021). mochi publishes the will to MQTT subscribers, of which the
// hub has none for telemetry topics, so the store is its only destination.
// A connection taken over by a newer one does not fire its Will: MQTT
// 3.1.1 §3.1.2.5 lists no such case.
func (k *hooks) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	if c := k.h.connOf(cl); c != nil {
		k.h.deliverWill(c, will)
	}
	return will, nil
}

// deliverWill stores the Will as telemetry once per connection, unless the
// connection was taken over.
func (h *Hub) deliverWill(c *conn, will mqtt.Will) {
	c.mu.Lock()
	// A connection the hub closed because its identity was disabled or
	// deleted sends no Will: the identity may not use the telemetry
	// endpoint (002 L11222), and MQTT 3.1.1 §3.1.2.5 lists no such case.
	skip := c.takenOver || c.willSent || c.revoked.Load()
	c.willSent = true
	c.mu.Unlock()
	if skip {
		return
	}
	t, err := iothub.ParseTopic(will.TopicName)
	if err != nil {
		return
	}
	props := append(iothub.PropertyBag(nil), t.Properties...)
	props = props.Set(iothub.PropMessageType, "Will")
	msg := h.telem.add(Message{Identity: c.identity, ConnID: c.id, Topic: will.TopicName, QoS: will.Qos,
		Properties: props, Payload: append([]byte(nil), will.Payload...), Received: time.Now(), Will: true})
	h.trace.add(Entry{ConnID: c.id, ClientID: c.clientID, Dir: DirEvent, Type: EventWill, Topic: will.TopicName,
		Requirement: "CONN-021", Reason: "connection lost without DISCONNECT; Will delivered as telemetry", Extra: fmt.Sprintf("message %d", msg.Seq)})
}
