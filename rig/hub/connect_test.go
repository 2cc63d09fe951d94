package hub_test

import (
	"bytes"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/hilrun/hilrun/certs"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/hub/hubtest"
	"github.com/hilrun/hilrun/rig/iothub"
)

func dev(id string) iothub.Identity {
	i, err := iothub.ParseClientID(id)
	if err != nil {
		panic(err)
	}
	return i
}

// connack runs a raw CONNECT and returns the CONNACK return code.
func connack(t *testing.T, h *hubtest.Hub, d hubtest.Device) byte {
	t.Helper()
	_, pk := h.RawConnect(d)
	return pk.ReasonCode
}

func TestConnectSAS(t *testing.T) {
	h := hubtest.Start(t)
	d := h.AddSASDevice("Dev-Mixed.Case_1")
	keys := d.Authentication.SymmetricKey
	id := dev("Dev-Mixed.Case_1")
	other := hub.NewKey()
	dpol, err := h.Registry().Policy("device")
	if err != nil {
		t.Fatal(err)
	}
	svc, _ := h.Registry().Policy("service")
	policyToken := func(p hub.Policy) string {
		tok, err := iothub.NewSASToken(h.Host(), p.PrimaryKey, time.Now().Add(time.Hour), p.KeyName)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	cases := []struct {
		name, req string
		d         hubtest.Device
		want      byte
	}{
		{"primary key", "CONN-009", hubtest.Device{Identity: id, Key: keys.PrimaryKey}, 0},
		{"secondary key", "CONN-009", hubtest.Device{Identity: id, Key: keys.SecondaryKey}, 0},
		{"wrong key", "CONN-009", hubtest.Device{Identity: id, Key: other}, 5},
		{"expired se", "CONN-010", hubtest.Device{Identity: id, Key: keys.PrimaryKey, TokenExpiry: time.Now().Add(-time.Second)}, 5},
		{"policy with DeviceConnect (skn)", "CONN-007", hubtest.Device{Identity: id, Password: policyToken(dpol)}, 0},
		{"policy without DeviceConnect", "CONN-007", hubtest.Device{Identity: id, Password: policyToken(svc)}, 5},
		{"not a SAS token", "CONN-007", hubtest.Device{Identity: id, Password: "hunter2"}, 4},
		{"case-folded client id", "CONN-005", hubtest.Device{Identity: dev("dev-mixed.case_1"), Key: keys.PrimaryKey}, 5},
		{"username for another hub", "CONN-006", hubtest.Device{Identity: id, Key: keys.PrimaryKey,
			Username: "other.azure-devices.net/Dev-Mixed.Case_1/?api-version=2021-04-12"}, 5},
		{"username for another device", "CONN-006", hubtest.Device{Identity: id, Key: keys.PrimaryKey,
			Username: hubtest.Host + "/someone-else/?api-version=2021-04-12"}, 5},
		{"malformed username", "CONN-006", hubtest.Device{Identity: id, Key: keys.PrimaryKey, Username: "no-slashes"}, 4},
		{"unknown device", "CONN-005", hubtest.Device{Identity: dev("ghost"), Key: keys.PrimaryKey}, 5},
	}
	for _, c := range cases {
		t.Run(c.req+" "+c.name, func(t *testing.T) {
			if got := connack(t, h, c.d); got != c.want {
				t.Fatalf("CONNACK %d, want %d\n%s", got, c.want, h.TraceSummary(c.d.Identity.ClientID()))
			}
		})
	}

	t.Run("RECON-004 disabled device refused", func(t *testing.T) {
		h.AddSASDevice("off")
		doff, _ := h.Registry().Get(dev("off"))
		if err := h.Registry().SetStatus(dev("off"), hub.StatusDisabled); err != nil {
			t.Fatal(err)
		}
		if got := connack(t, h, hubtest.Device{Identity: dev("off"), Key: doff.Authentication.SymmetricKey.PrimaryKey}); got != 5 {
			t.Fatalf("CONNACK %d, want 5", got)
		}
	})

	t.Run("CONN-011 keys and signatures never reach the trace", func(t *testing.T) {
		var b bytes.Buffer
		if err := h.Trace().WriteJSON(&b, nil); err != nil {
			t.Fatal(err)
		}
		tok := h.Token(hubtest.Device{Identity: id, Key: keys.PrimaryKey})
		st, _ := iothub.ParseSASToken(tok)
		for _, secret := range []string{keys.PrimaryKey, keys.SecondaryKey, st.Signature, url.QueryEscape(st.Signature)} {
			if strings.Contains(b.String(), secret) {
				t.Fatalf("trace contains a secret")
			}
		}
		if !strings.Contains(b.String(), `sig=\u003credacted\u003e`) { // JSON escapes '<' and '>'

			t.Fatalf("trace does not show the redacted password")
		}
	})
}

func TestConnectRecordsUsernameFacts(t *testing.T) {
	// CONN-006: model-id and DeviceClientType are recorded from the Username.
	h := hubtest.Start(t)
	d := h.AddSASDevice("pnp")
	u := iothub.FormatUsername(h.Host(), dev("pnp"), "2021-04-12", url.Values{"model-id": {"dtmi:com:example:Thermostat;1"}})
	h.Connect(hubtest.Device{Identity: dev("pnp"), Key: d.Authentication.SymmetricKey.PrimaryKey, Username: u})
	var connect hub.Entry
	for _, e := range h.Trace().ForClient("pnp") {
		if e.Type == "CONNECT" {
			connect = e
		}
	}
	if !strings.Contains(connect.Username, "model-id=dtmi") {
		t.Fatalf("CONNECT username not recorded: %+v", connect)
	}
	if strings.Contains(connect.Password, "sig=") && !strings.Contains(connect.Password, "sig=<redacted>") {
		t.Fatalf("password not redacted: %q", connect.Password)
	}
}

func TestConnectX509(t *testing.T) {
	h := hubtest.Start(t)
	self1, err := certs.SelfSigned(certs.LeafOptions{CommonName: "thumb"})
	if err != nil {
		t.Fatal(err)
	}
	self2, _ := certs.SelfSigned(certs.LeafOptions{CommonName: "thumb"})
	stranger, _ := certs.SelfSigned(certs.LeafOptions{CommonName: "thumb"})
	if _, err := h.Registry().Add(hub.Device{DeviceID: "thumb", Authentication: hub.Authentication{Type: hub.AuthSelfSigned,
		X509Thumbprint: &hub.X509Thumbprint{PrimaryThumbprint: certs.Thumbprint(self1.Cert), SecondaryThumbprint: certs.Thumbprint(self2.Cert)}}}); err != nil {
		t.Fatal(err)
	}
	root, _ := certs.NewRoot("device root", certs.ECDSAP256)
	inter, _ := root.NewIntermediate("device intermediate", certs.ECDSAP256)
	otherRoot, _ := certs.NewRoot("rogue root", certs.ECDSAP256)
	h.Registry().AddCA(root.Cert)
	for _, id := range []string{"ca-dev", "ca-dev/mod1"} {
		i := dev(id)
		if _, err := h.Registry().Add(hub.Device{DeviceID: i.DeviceID, ModuleID: i.ModuleID, Authentication: hub.Authentication{Type: hub.AuthCA}}); err != nil {
			t.Fatal(err)
		}
	}
	leaf := func(ca *certs.CA, cn string) *certs.Leaf {
		l, err := ca.IssueClient(certs.LeafOptions{CommonName: cn})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	sasDev := h.AddSASDevice("sas-only")
	_ = sasDev
	cases := []struct {
		name, req, id string
		cert          *certs.Leaf
		password      string
		want          byte
	}{
		{"thumbprint primary", "CONN-014", "thumb", self1, "", 0},
		{"thumbprint secondary", "CONN-014", "thumb", self2, "", 0},
		{"thumbprint unknown", "CONN-014", "thumb", stranger, "", 5},
		{"thumbprint identity without certificate", "CONN-012", "thumb", nil, "", 5},
		{"CA-signed via intermediate", "CONN-013", "ca-dev", leaf(inter, "ca-dev"), "", 0},
		{"CA-signed module CN dev/mod", "MOD-006", "ca-dev/mod1", leaf(inter, "ca-dev/mod1"), "", 0},
		{"CA-signed CN mismatch", "CONN-015", "ca-dev", leaf(inter, "someone"), "", 5},
		{"CA-signed by unregistered root", "CONN-013", "ca-dev", leaf(otherRoot, "ca-dev"), "", 5},
		{"SAS identity with only a certificate", "CONN-007", "sas-only", self1, "", 5},
	}
	for _, c := range cases {
		t.Run(c.req+" "+c.name, func(t *testing.T) {
			d := hubtest.Device{Identity: dev(c.id), Cert: c.cert, Password: c.password}
			if got := connack(t, h, d); got != c.want {
				t.Fatalf("CONNACK %d, want %d\n%s", got, c.want, h.TraceSummary(c.id))
			}
		})
	}
	t.Run("CONN-012 TLS facts record the client certificate", func(t *testing.T) {
		var opened *hub.Entry
		for _, e := range h.Trace().ForClient("thumb") {
			if e.Type == hub.EventConnOpened {
				opened = &e
				break
			}
		}
		if opened == nil || opened.TLS == nil || opened.TLS.ClientCertThumbprint == "" || opened.Extra != "auth="+hub.MethodX509Thumb {
			t.Fatalf("conn-opened entry lacks certificate facts: %+v", opened)
		}
	})
}

func TestTakeoverClosesOldConnectionWithoutDisconnect(t *testing.T) {
	// CONN-016: one live connection per identity; the older one is closed
	// by TCP, never by an MQTT DISCONNECT packet.
	h := hubtest.Start(t)
	d := h.AddSASDevice("twin-brother")
	dd := hubtest.Device{Identity: dev("twin-brother"), Key: d.Authentication.SymmetricKey.PrimaryKey}
	old, ack := h.RawConnect(dd)
	if ack.ReasonCode != 0 {
		t.Fatalf("first CONNACK %d", ack.ReasonCode)
	}
	_, ack2 := h.RawConnect(dd)
	if ack2.ReasonCode != 0 {
		t.Fatalf("second CONNACK %d", ack2.ReasonCode)
	}
	pk, err := old.Read(5 * time.Second)
	if err == nil {
		t.Fatalf("old connection received packet type %d; IoT Hub sends nothing, it closes TCP", pk.FixedHeader.Type)
	}
	ctx := hubtest.Context(t, 5*time.Second)
	e, err := h.WaitEntry(ctx, "twin-brother", func(e hub.Entry) bool { return e.Type == hub.EventConnClosed })
	if err != nil {
		t.Fatal(err)
	}
	if e.Requirement != "CONN-016" {
		t.Fatalf("close reason %q [%s], want CONN-016", e.Reason, e.Requirement)
	}
	for _, e := range h.Trace().ForClient("twin-brother") {
		if e.Dir == hub.DirOut && e.Type == "DISCONNECT" {
			t.Fatalf("hub sent DISCONNECT")
		}
	}
	if !h.Connected(dev("twin-brother")) {
		t.Fatalf("new connection not live")
	}
}

func TestKeepAliveEnforced(t *testing.T) {
	t.Parallel() // a hub of its own; waits on the hub's timers
	// CONN-023: no packet within 1.5 × keep-alive → the hub drops the connection.
	h := hubtest.Start(t)
	d := h.AddSASDevice("sleepy")
	r, ack := h.RawConnect(hubtest.Device{Identity: dev("sleepy"), Key: d.Authentication.SymmetricKey.PrimaryKey, KeepAlive: time.Second})
	if ack.ReasonCode != 0 {
		t.Fatal("connect refused")
	}
	start := time.Now()
	r.ExpectClosed(5 * time.Second)
	// 1.5 × 1 s exactly (mochi alone would close after 1 s: whole seconds).
	if el := time.Since(start); el < 1450*time.Millisecond {
		t.Fatalf("closed after %s, before 1.5 × keep-alive", el)
	}
	e, err := h.WaitEntry(hubtest.Context(t, 5*time.Second), "sleepy", func(e hub.Entry) bool { return e.Type == hub.EventConnClosed })
	if err != nil {
		t.Fatal(err)
	}
	if e.Requirement != "CONN-023" {
		t.Fatalf("close entry %q [%s], want CONN-023", e.Reason, e.Requirement)
	}
}

func TestPingKeepsConnectionAlive(t *testing.T) {
	// CONN-023 counterpart: PINGREQ within the keep-alive keeps the session.
	h := hubtest.Start(t)
	d := h.AddSASDevice("pinger")
	r, _ := h.RawConnect(hubtest.Device{Identity: dev("pinger"), Key: d.Authentication.SymmetricKey.PrimaryKey, KeepAlive: time.Second})
	for i := 0; i < 3; i++ {
		r.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
		r.Expect(packets.Pingresp, 2*time.Second)
	}
}

func TestSASExpiryDropsConnection(t *testing.T) {
	t.Parallel() // a hub of its own; waits on the hub's timers
	// RECON-006: a connection whose token expires is dropped by the hub.
	h := hubtest.Start(t)
	d := h.AddSASDevice("short-lived")
	r, ack := h.RawConnect(hubtest.Device{Identity: dev("short-lived"), Key: d.Authentication.SymmetricKey.PrimaryKey,
		TokenExpiry: time.Now().Add(1500 * time.Millisecond)})
	if ack.ReasonCode != 0 {
		t.Fatalf("CONNACK %d", ack.ReasonCode)
	}
	go func() { // keep the connection alive by pings so only the token can end it
		for i := 0; i < 10; i++ {
			time.Sleep(300 * time.Millisecond) // pacing of a keep-alive generator, not synchronisation
			var b bytes.Buffer
			_ = (&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}}).PingreqEncode(&b)
			if _, err := r.Conn.Write(b.Bytes()); err != nil {
				return
			}
		}
	}()
	e, err := h.WaitEntry(hubtest.Context(t, 6*time.Second), "short-lived", func(e hub.Entry) bool { return e.Type == hub.EventConnClosed })
	if err != nil {
		t.Fatal(err)
	}
	if e.Requirement != "RECON-006" {
		t.Fatalf("closed for %q [%s], want RECON-006", e.Reason, e.Requirement)
	}
}

func TestConnectRefusedByFault(t *testing.T) {
	// RECON-003 support: a window of CONNACK 3 for one identity.
	h := hubtest.Start(t)
	d := h.AddSASDevice("refused")
	dd := hubtest.Device{Identity: dev("refused"), Key: d.Authentication.SymmetricKey.PrimaryKey}
	h.RefuseConnects(dev("refused"), 3, time.Hour)
	if got := connack(t, h, dd); got != 3 {
		t.Fatalf("CONNACK %d, want 3", got)
	}
	h.RefuseConnects(dev("refused"), 3, 0)
	if got := connack(t, h, dd); got != 0 {
		t.Fatalf("CONNACK %d after the window, want 0", got)
	}
}

func TestWillDeliveredAsTelemetry(t *testing.T) {
	// CONN-021: the Will becomes telemetry tagged iothub-MessageType=Will on
	// an ungraceful loss, and does not fire after DISCONNECT (CONN-022).
	h := hubtest.Start(t)
	d := h.AddSASDevice("mortal")
	id := dev("mortal")
	will := &hubtest.Will{Topic: iothub.TelemetryTopic(id, iothub.PropertyBag{{Name: "reason", Value: "gone"}}), Payload: []byte(`{"bye":1}`), QoS: 1}
	dd := hubtest.Device{Identity: id, Key: d.Authentication.SymmetricKey.PrimaryKey, Will: will}

	r, _ := h.RawConnect(dd)
	r.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
	_ = r.Conn.Close()
	if err := h.WaitDisconnected(hubtest.Context(t, 5*time.Second), id); err != nil {
		t.Fatal(err)
	}

	r2, _ := h.RawConnect(dd)
	_ = r2.Conn.Close() // TCP gone, no DISCONNECT
	m, err := h.WaitTelemetry(hubtest.Context(t, 5*time.Second), id, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := m.Properties.Get(iothub.PropMessageType); v != "Will" || !m.Will || string(m.Payload) != `{"bye":1}` {
		t.Fatalf("will telemetry = %+v", m)
	}
	if v, _ := m.Properties.Get("reason"); v != "gone" {
		t.Fatalf("will property bag lost: %+v", m.Properties)
	}
	if n := len(h.Telemetry(id)); n != 1 {
		t.Fatalf("%d telemetry messages, want only the one Will (none after DISCONNECT)", n)
	}

	t.Run("CONN-021 will on a foreign topic is refused", func(t *testing.T) {
		bad := dd
		bad.Will = &hubtest.Will{Topic: "devices/other/messages/events/", QoS: 0}
		if got := connack(t, h, bad); got == 0 {
			t.Fatal("CONNECT with a foreign Will topic accepted")
		}
	})
}

func TestTLSFactsAndVersions(t *testing.T) {
	// CONN-004: TLS 1.2+ only; the trace records version, cipher and SNI.
	h := hubtest.Start(t)
	d := h.AddSASDevice("tls")
	h.Connect(hubtest.Device{Identity: dev("tls"), Key: d.Authentication.SymmetricKey.PrimaryKey})
	var facts *hub.TLSFacts
	for _, e := range h.Trace().ForClient("tls") {
		if e.Type == hub.EventConnOpened {
			facts = e.TLS
		}
	}
	if facts == nil || facts.ServerName != h.Host() || facts.Version == "" || facts.CipherSuite == "" || len(facts.OfferedVersions) == 0 {
		t.Fatalf("TLS facts incomplete: %+v", facts)
	}
	old := h.TLSConfig()
	old.MaxVersion = 0x0302 // TLS 1.1
	old.MinVersion = 0x0301
	since := h.Trace().LastSeq()
	c, err := tlsDial(h.MQTTAddr(), old)
	if err == nil {
		c.Close()
		t.Fatal("TLS 1.1 handshake accepted")
	}
	// The client may see the alert before the hub has traced the failure.
	failed := waitEntries(t, h, since, "failed handshake", func(e *hub.Entry) bool { return e.Type == hub.EventTLSFailed })
	b, _ := json.Marshal(failed[len(failed)-1])
	if !strings.Contains(string(b), "TLS 1.1") {
		t.Fatalf("failed handshake entry lacks offered versions: %s", b)
	}
}

// TestWillOnHubSideDrop: when the hub itself closes a connection (Drop, a
// violation), the device sent no DISCONNECT, so its Will must go out every
// time — also when the close lands between two packets, where mochi's read
// loop ends cleanly and drops the Will on its own (CONN-021).
func TestWillOnHubSideDrop(t *testing.T) {
	h := hubtest.Start(t)
	d := h.AddSASDevice("dropped")
	id := dev("dropped")
	will := &hubtest.Will{Topic: iothub.TelemetryTopic(id, nil), Payload: []byte(`{"bye":1}`), QoS: 0}
	dd := hubtest.Device{Identity: id, Key: d.Authentication.SymmetricKey.PrimaryKey, Will: will}
	const rounds = 20
	for i := 0; i < rounds; i++ {
		r, _ := h.RawConnect(dd)
		if err := h.WaitConnected(hubtest.Context(t, 5*time.Second), id); err != nil {
			t.Fatal(err)
		}
		if err := h.Drop(id, i%2 == 0, "test drop"); err != nil {
			t.Fatal(err)
		}
		if _, err := h.WaitTelemetryCount(hubtest.Context(t, 5*time.Second), id, 0, i+1); err != nil {
			t.Fatalf("round %d: Will not delivered after a hub-side drop: %v", i, err)
		}
		_ = r.Conn.Close()
		if err := h.WaitDisconnected(hubtest.Context(t, 5*time.Second), id); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(h.Telemetry(id)); n != rounds {
		t.Fatalf("%d Will messages for %d drops: each must fire exactly once", n, rounds)
	}
}

// TestModuleTokenScope: a module token signed with the module key but with
// the parent device's sr is accepted (its sr covers the module) and noted as
// a MOD-003 deviation; the module's own sr is not.
func TestModuleTokenScope(t *testing.T) {
	h := hubtest.Start(t)
	m := h.AddSASDevice("parent/mod1")
	key := m.Authentication.SymmetricKey.PrimaryKey
	id := iothub.Identity{DeviceID: "parent", ModuleID: "mod1"}
	deviceScoped, err := iothub.NewSASToken(iothub.DeviceResourceURI(h.Host(), iothub.Identity{DeviceID: "parent"}), key, time.Now().Add(time.Hour), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		d    hubtest.Device
		warn bool
	}{
		{"module resource", hubtest.Device{Identity: id, Key: key}, false},
		{"parent device resource", hubtest.Device{Identity: id, Password: deviceScoped}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			from := h.Trace().LastSeq()
			if got := connack(t, h, c.d); got != 0 {
				t.Fatalf("CONNACK %d, want 0\n%s", got, h.TraceSummary(id.ClientID()))
			}
			warned := len(h.Trace().Entries(func(e *hub.Entry) bool {
				return e.Seq > from && e.Type == hub.EventWarning && e.Requirement == "MOD-003"
			})) > 0
			if warned != c.warn {
				t.Fatalf("MOD-003 warning %v, want %v\n%s", warned, c.warn, h.TraceSummary(id.ClientID()))
			}
		})
	}
}

func TestUsernameFormsAtConnect(t *testing.T) {
	// CONN-006 / MOD-002: every Username form IoT Hub's documentation shows
	// is accepted; the bare and query-less forms are noted as CONN-006
	// warnings (the catalog's tolerance), while a wrong host or identity is
	// refused with 0x05 and a malformed one with 0x04.
	h := hubtest.Start(t)
	dv := h.AddSASDevice("Dev-1")
	mv := h.AddSASDevice("Dev-1/Mod-1")
	devKey, modKey := dv.Authentication.SymmetricKey.PrimaryKey, mv.Authentication.SymmetricKey.PrimaryKey
	host := h.Host()
	cases := []struct {
		name, clientID, username string
		want                     byte
		warn                     bool
	}{
		{"L13775 form", "Dev-1", host + "/Dev-1/?api-version=2018-06-30", 0, false},
		{"L5777 form with DeviceClientType", "Dev-1", host + "/Dev-1/?api-version=2017-11-08-preview&DeviceClientType=iothubclient%2f1.2.11%20(native%3b%20Linux%3b%20x86_64)", 0, false},
		{"model-id and DeviceClientType", "Dev-1", host + "/Dev-1/?api-version=2021-04-12&DeviceClientType=x%2F1&model-id=dtmi%3Acom%3Aexample%3BThermostat%3B1", 0, false},
		{"model-id first", "Dev-1", host + "/Dev-1/?model-id=dtmi%3Aa%3B1&api-version=2021-04-12", 0, false},
		{"bare L11356 / L11373 / L13885 form", "Dev-1", host + "/Dev-1", 0, true},
		{"host in other letter case", "Dev-1", strings.ToUpper(host) + "/Dev-1", 0, true},
		{"trailing slash, no query", "Dev-1", host + "/Dev-1/", 0, true},
		{"L13835 module form", "Dev-1/Mod-1", host + "/Dev-1/Mod-1/?api-version=2018-06-30", 0, false},
		{"bare module form", "Dev-1/Mod-1", host + "/Dev-1/Mod-1", 0, true},
		{"bare, wrong host", "Dev-1", "other.azure-devices.net/Dev-1", 5, false},
		{"bare, wrong device", "Dev-1", host + "/Dev-2", 5, false},
		{"bare, device case-folded (L11373 case-sensitive)", "Dev-1", host + "/dev-1", 5, false},
		{"query without its slash", "Dev-1", host + "/Dev-1?api-version=2018-06-30", 5, false},
		{"device ClientId, module Username", "Dev-1", host + "/Dev-1/Mod-1/?api-version=2018-06-30", 5, false},
		{"module ClientId, device Username", "Dev-1/Mod-1", host + "/Dev-1/?api-version=2018-06-30", 5, false},
		{"no slash at all", "Dev-1", host, 4, false},
		{"extra path segment", "Dev-1/Mod-1", host + "/Dev-1/Mod-1/x/?api-version=2018-06-30", 4, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := dev(c.clientID)
			key := devKey
			if id.IsModule() {
				key = modKey
			}
			since := h.Trace().LastSeq()
			r, ack := h.RawConnect(hubtest.Device{Identity: id, Key: key, Username: c.username})
			defer r.Conn.Close()
			if ack.ReasonCode != c.want {
				t.Fatalf("Username %q: CONNACK %d, want %d\n%s", c.username, ack.ReasonCode, c.want, h.TraceSummary(c.clientID))
			}
			warned := false
			for _, e := range h.Trace().ForClient(c.clientID) {
				if e.Seq > since && e.Type == hub.EventWarning && e.Requirement == "CONN-006" {
					warned = true
				}
				if e.Seq > since && e.Type == hub.EventConnRejected && e.Requirement != "CONN-006" {
					t.Fatalf("refusal names %s, want CONN-006: %q", e.Requirement, e.Reason)
				}
			}
			if c.want == 0 && warned != c.warn {
				t.Fatalf("Username %q: CONN-006 warning %v, want %v\n%s", c.username, warned, c.warn, h.TraceSummary(c.clientID))
			}
		})
	}
	// The ClientId itself must be the exact registered ID (CONN-005).
	refused(t, h, hubtest.Device{Identity: iothub.Identity{DeviceID: "dev-1"}, Key: devKey,
		Username: host + "/dev-1/?api-version=2018-06-30"}, 5, "CONN-005")
}

func TestConnectValidationSpeaksMQTT311(t *testing.T) {
	// mochi validates a CONNECT before the hub's hooks decide it and would
	// answer these with MQTT 5 reason codes (0x80 and up), which MQTT 3.1.1
	// does not have (§3.2.2.3); the hub answers as a 3.1.1 server and IoT
	// Hub do (admitConnect).
	h := hubtest.Start(t)
	d := h.AddSASDevice("p311")
	base := hubtest.Device{Identity: d.Identity(), Key: d.Authentication.SymmetricKey.PrimaryKey}
	ack := func(pk packets.Packet) (packets.Packet, error) {
		r := h.DialRaw(nil)
		r.Send(pk)
		return r.Read(closeBound)
	}

	t.Run("CONN-005 empty ClientId with CleanSession 0 gets 0x02 [MQTT-3.1.3-8]", func(t *testing.T) {
		pk := h.ConnectPacket(base)
		pk.Connect.ClientIdentifier, pk.Connect.Clean = "", false
		if got, err := ack(pk); err != nil || got.ReasonCode != 2 {
			t.Fatalf("CONNACK %d (%v), want 2", got.ReasonCode, err)
		}
	})
	t.Run("CONN-007 zero-length password is no SAS token: 0x04", func(t *testing.T) {
		pk := h.ConnectPacket(base)
		pk.Connect.Password = []byte{}
		if got, err := ack(pk); err != nil || got.ReasonCode != 4 {
			t.Fatalf("CONNACK %d (%v), want 4\n%s", got.ReasonCode, err, h.TraceSummary("p311"))
		}
	})
	t.Run("CONN-021 zero-length Will Message is accepted and delivered", func(t *testing.T) {
		pk := h.ConnectPacket(hubtest.Device{Identity: base.Identity, Key: base.Key,
			Will: &hubtest.Will{Topic: "devices/p311/messages/events/", QoS: 1}})
		pk.Connect.WillPayload = []byte{}
		r := h.DialRaw(nil)
		r.Send(pk)
		if got := r.Expect(packets.Connack, closeBound); got.ReasonCode != 0 {
			t.Fatalf("CONNACK %d, want 0\n%s", got.ReasonCode, h.TraceSummary("p311"))
		}
		after := h.LastTelemetrySeq()
		_ = r.Conn.Close() // lost without DISCONNECT: the Will goes out
		m, err := h.WaitTelemetry(hubtest.Context(t, closeBound), base.Identity, after, func(m hub.Message) bool { return m.Will })
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Payload) != 0 {
			t.Fatalf("Will payload %q, want empty", m.Payload)
		}
	})
	t.Run("CONN-020 Will at QoS 2 closes without CONNACK", func(t *testing.T) {
		pk := h.ConnectPacket(hubtest.Device{Identity: base.Identity, Key: base.Key,
			Will: &hubtest.Will{Topic: "devices/p311/messages/events/", Payload: []byte("x"), QoS: 2}})
		since := h.Trace().LastSeq()
		if got, err := ack(pk); err == nil {
			t.Fatalf("got packet type %d code %d, want the connection closed", got.FixedHeader.Type, got.ReasonCode)
		}
		if _, err := h.WaitEntry(hubtest.Context(t, closeBound), "p311", func(e hub.Entry) bool {
			return e.Seq > since && e.Type == hub.EventConnRejected && e.Requirement == "CONN-020"
		}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("CONN-001 reserved flag set closes without CONNACK [MQTT-3.1.2-3]", func(t *testing.T) {
		r := h.DialRaw(nil)
		// CONNECT, protocol MQTT level 4, flags 0x03 (clean + reserved), keep-alive 60, ClientId "p311".
		r.Write([]byte{0x10, 16, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x03, 0, 60, 0, 4, 'p', '3', '1', '1'})
		if got, err := r.Read(closeBound); err == nil {
			t.Fatalf("got packet type %d code %d, want the connection closed", got.FixedHeader.Type, got.ReasonCode)
		}
	})
	t.Run("CONN-001 second CONNECT closes the connection [MQTT-3.1.0-2]", func(t *testing.T) {
		r, a := h.RawConnect(base)
		if a.ReasonCode != 0 {
			t.Fatalf("CONNACK %d", a.ReasonCode)
		}
		r.Send(h.ConnectPacket(base))
		r.ExpectClosed(closeBound)
		if err := h.WaitDisconnected(hubtest.Context(t, closeBound), base.Identity); err != nil {
			t.Fatalf("identity still connected after its connection closed: %v", err)
		}
		if dv, _ := h.Registry().Get(base.Identity); dv.ConnectionState != "Disconnected" {
			t.Fatalf("registry connectionState %q", dv.ConnectionState)
		}
	})
}
