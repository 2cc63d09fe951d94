package suites

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/rig/agent"
	"github.com/hilrun/hilrun/rig/blob"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/iothub/twin"
)

// OTA-*: twin-driven code update, the contract of seed 004 (the
// nanoFramework AzureEdgeOTA sample). The suite publishes files at the
// hub's storage endpoint (rig/blob), writes desired `Files` (array of
// {FileName, Signature}), `Token` (a container read SAS) and `CodeVersion`,
// and judges what the device fetches (the endpoint's requests are in the
// wire trace) and what it reports and installs. The engine runs "on every
// start/wake" (OTA-001), so specs start it by opening the client, by a
// reconnect or by a reboot; none waits on real time beyond the engine's
// own steps.

// otaVersionSeq makes every spec's CodeVersion new to the board (the
// installed version persists in its NVS across specs).
var otaVersionSeq atomic.Int64

func otaNewVersion() int64 {
	// Steps of 10 leave room for the v+1 a spec moves on to.
	return time.Now().Unix()%100000*10000 + otaVersionSeq.Add(1)%1000*10
}

func otaVersionText(v int64) string { return strconv.FormatInt(v, 10) }

// otaDesired is the desired section of seed 004 L117-121.
func otaDesired(files []fixtures.OTAFile, token string, version int64, extra twin.Section) twin.Section {
	fs := make([]any, 0, len(files))
	for _, f := range files {
		fs = append(fs, map[string]any{"FileName": f.URL, "Signature": f.Signature})
	}
	d := twin.Section{"Files": fs, "Token": token, "CodeVersion": version}
	for k, v := range extra {
		d[k] = v
	}
	return d
}

// otaPublish writes an OTA twin. The Token in it is a storage credential
// (registered with rig/secrets, masked in the trace); when the spec ends
// the suite takes it out of the twin again, as an operator would once the
// update is done, so no twin keeps a live credential after its spec.
func otaPublish(s *fixtures.Session, desired twin.Section) {
	GinkgoHelper()
	must(s.Env.Hub.UpdateDesired(s.ID, desired))
	DeferCleanup(func() { _, _ = s.Env.Hub.UpdateDesired(s.ID, twin.Section{"Token": nil}) })
}

// otaSetup registers a session without opening it, publishes n files and
// writes the OTA twin; it returns the session, files, token and version.
func otaSetup(ctx context.Context, n int, extra twin.Section) (*fixtures.Session, []fixtures.OTAFile, string, int64) {
	GinkgoHelper()
	s := NewSession(ctx, fixtures.SessionOptions{NoOpen: true})
	var files []fixtures.OTAFile
	for i := 0; i < n; i++ {
		files = append(files, must(s.PutOTAFile(fmt.Sprintf("app%d.pe", i), []byte(fmt.Sprintf("application %d of %s: %s", i, s.ID.DeviceID, strings.Repeat("x", 900+i))))))
	}
	tok := must(s.OTAToken(time.Hour))
	v := otaNewVersion()
	otaPublish(s, otaDesired(files, tok, v, extra))
	return s, files, tok, v
}

// otaEvent waits for an ota event after m that matches.
func otaEvent(ctx context.Context, s *fixtures.Session, m fixtures.Marks, what string, match func(agentproto.OTAEvent) bool) (agentproto.OTAEvent, error) {
	var got agentproto.OTAEvent
	_, err := s.WaitEvent(ctx, m, agentproto.EvOTA, func(e agent.Event) bool {
		var o agentproto.OTAEvent
		if e.Decode(&o) != nil {
			return false
		}
		if match(o) {
			got = o
			return true
		}
		return false
	})
	if err != nil {
		return got, fmt.Errorf("expected ota event: %s; not seen: %v", what, err)
	}
	return got, nil
}

// otaSettled waits until the engine has finished its cycle for version v
// (an ota event current or error naming it).
func otaSettled(ctx context.Context, s *fixtures.Session, m fixtures.Marks, v int64) (agentproto.OTAEvent, error) {
	return otaEvent(ctx, s, m, "the engine's outcome for CodeVersion "+otaVersionText(v), func(o agentproto.OTAEvent) bool {
		return o.CodeVersion == otaVersionText(v) && (o.State == agentproto.OTACurrent || o.State == agentproto.OTAError)
	})
}

func otaStatus(ctx context.Context, s *fixtures.Session) agentproto.OTAStatus {
	GinkgoHelper()
	var st agentproto.OTAStatus
	must(0, s.Call(ctx, agentproto.OpOTAStatus, nil, &st))
	return st
}

// blobGets returns the GETs (and HEADs) of one blob since m.
func blobGets(s *fixtures.Session, m fixtures.Marks, name string) []blob.Request {
	var out []blob.Request
	for _, r := range s.BlobRequests(m) {
		if (r.Method == "GET" || r.Method == "HEAD") && (r.Blob == name || strings.HasSuffix(r.Path, "/"+name)) {
			out = append(out, r)
		}
	}
	return out
}

func blobText(s *fixtures.Session, m fixtures.Marks) string {
	return "storage endpoint requests:\n" + fixtures.FormatBlobRequests(s.BlobRequests(m))
}

var _ = Describe("twin-driven OTA (seed 004)", func() {
	Conformance("reads Files, Token and CodeVersion from the twin at start and fetches every entry of a multi-element Files array", []string{"OTA-001", "OTA-006"}, func(ctx SpecContext) {
		s, files, _, v := otaSetup(ctx, 2, nil)
		m := s.Mark()
		must(0, s.Open(ctx))
		read, err := otaEvent(ctx, s, m, "the parsed OTA settings", func(o agentproto.OTAEvent) bool { return o.State == agentproto.OTARead })
		Expect(err).NotTo(HaveOccurred(), "OTA-001: at start the device must read Files, Token and CodeVersion from its twin (004 L101, L117-121); expected an ota event with the parsed values, none came\n%s\n%s", traceText(s.Trace(m)), blobText(s, m))
		tr := s.Trace(m)
		Expect(publishes(tr, "$iothub/twin/GET/")).NotTo(BeEmpty(), "OTA-001: the settings come from a twin GET after CONNECT (TWIN-010); none on the wire\n%s", traceText(tr))
		Expect(read.CodeVersion).To(Equal(otaVersionText(v)), "OTA-001: CodeVersion parsed as %q, the twin holds %d (004 L120)", read.CodeVersion, v)
		Expect(read.HasToken).To(BeTrue(), "OTA-001: the twin's Token was not read (004 L119)")
		Expect(read.Files).To(Equal(2), "OTA-006: the device must accept the JSON array Files in desired (004 L117-118); it parsed %d of 2 entries", read.Files)
		for _, f := range files {
			_, err := s.WaitBlobRequest(ctx, m, "GET "+f.Name, func(r blob.Request) bool { return r.Method == "GET" && r.Blob == f.Name })
			Expect(err).NotTo(HaveOccurred(), "OTA-006: every entry of the Files array must be fetched (004 L117-118, L122); %s was not\n%v", f.URL, err)
		}
		_, _ = otaSettled(ctx, s, m, v)
	})

	Conformance("downloads only when CodeVersion changes, and the installed version survives a reboot", []string{"OTA-002"}, func(ctx SpecContext) {
		s, files, tok, v := otaSetup(ctx, 1, nil)
		m := s.Mark()
		must(0, s.Open(ctx))
		done, err := otaSettled(ctx, s, m, v)
		Expect(err).NotTo(HaveOccurred(), "precondition: the first update must finish\n%s", blobText(s, m))
		Expect(done.State).To(Equal(agentproto.OTACurrent), "precondition: the first update of CodeVersion %d must install (%s)\n%s", v, done.Detail, blobText(s, m))
		Expect(blobGets(s, m, files[0].Name)).To(HaveLen(1), "OTA-002: a new CodeVersion must cause one GET per file (004 L122)\n%s", blobText(s, m))

		// Reboot with the twin unchanged: no download (004 L122).
		m2 := s.Mark()
		must(0, s.Reboot(ctx, false))
		_, err = otaSettled(ctx, s, m2, v)
		Expect(err).NotTo(HaveOccurred(), "OTA-002: after the reboot the engine must decide on CodeVersion %d\n%s", v, blobText(s, m2))
		Expect(blobGets(s, m2, files[0].Name)).To(BeEmpty(), "OTA-002: the twin's CodeVersion %d is the installed one, so a reboot must not download again (004 L122: \"only be downloaded if there is a change in the CodeVersion\"); expected 0 GETs, seen:\n%s", v, blobText(s, m2))

		// A new CodeVersion: one GET per file at the next start.
		v2 := v + 1
		otaPublish(s, otaDesired(files, tok, v2, nil))
		m3 := s.Mark()
		must(0, s.Reboot(ctx, false))
		_, err = otaSettled(ctx, s, m3, v2)
		Expect(err).NotTo(HaveOccurred(), "OTA-002: after CodeVersion changed to %d the engine must act at the next start\n%s", v2, blobText(s, m3))
		Expect(blobGets(s, m3, files[0].Name)).To(HaveLen(1), "OTA-002: a changed CodeVersion must cause exactly one GET per file (004 L122)\n%s", blobText(s, m3))
	})

	Conformance("fetches each FileName over HTTPS, authorised by the twin's SAS Token", []string{"OTA-003"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{NoOpen: true})
		f := must(s.PutOTAFile("app.pe", []byte("application for "+s.ID.DeviceID)))
		// st is set so that the token has every field of 004 L126.
		tok := must(s.Env.Hub.Blob().IssueToken(blob.TokenOptions{Permissions: blob.PermRead, Start: time.Now().Add(-5 * time.Minute), Expiry: time.Now().Add(time.Hour), Owner: s.ID.DeviceID}))
		v := otaNewVersion()
		otaPublish(s, otaDesired([]fixtures.OTAFile{f}, tok, v, nil))
		m := s.Mark()
		must(0, s.Open(ctx))
		r, err := s.WaitBlobRequest(ctx, m, "GET "+f.Name, func(r blob.Request) bool { return r.Method == "GET" && r.Blob == f.Name })
		Expect(err).NotTo(HaveOccurred(), "OTA-003: the device must fetch %s (004 L117-119)\n%v", f.URL, err)
		Expect(r.Plain).To(BeFalse(), "OTA-003: the file must be fetched over HTTPS (004 L117); it came over plaintext HTTP")
		Expect(r.TLSServer).To(Equal(s.Env.Hub.Blob().Host()), "OTA-003: the TLS handshake must name the storage host %s (SNI); it sent %q", s.Env.Hub.Blob().Host(), r.TLSServer)
		for _, p := range []string{"sp", "st", "se", "spr", "sv", "sr", "sig"} {
			Expect(r.SAS).To(ContainElement(p), "OTA-003: the GET must carry the twin's SAS Token (FileName + \"?\" + Token; fields as at 004 L126); parameter %s is missing (seen %v)", p, r.SAS)
		}
		Expect(r.Status).To(Equal(200), "OTA-003: the storage endpoint must accept the device's GET authorised by the twin's Token; it answered %d (%s)\n%s", r.Status, r.Reason, blobText(s, m))
		_, _ = otaSettled(ctx, s, m, v)
	})

	Conformance("a download the storage refuses (expired Token, 403) is reported, not looped on", []string{"OTA-003"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{NoOpen: true})
		f := must(s.PutOTAFile("app.pe", []byte("application for "+s.ID.DeviceID)))
		// A token whose window has passed (GAP: the catalog assumes a 403 is reported, not retried in a loop).
		tok := must(s.Env.Hub.Blob().IssueToken(blob.TokenOptions{Permissions: blob.PermRead, Start: time.Now().Add(-2 * time.Hour), Expiry: time.Now().Add(-time.Hour), Owner: s.ID.DeviceID}))
		v := otaNewVersion()
		otaPublish(s, otaDesired([]fixtures.OTAFile{f}, tok, v, nil))
		m := s.Mark()
		must(0, s.Open(ctx))
		out, err := otaEvent(ctx, s, m, "the engine's error for CodeVersion "+otaVersionText(v), func(o agentproto.OTAEvent) bool {
			return o.CodeVersion == otaVersionText(v) && o.State == agentproto.OTAError
		})
		Expect(err).NotTo(HaveOccurred(), "OTA-003: a download refused with 403 (the Token's window has passed) should be reported (004 L119, L126: st/se)\n%s", blobText(s, m))
		// Watch the quiet period after the report: no further attempts.
		after := len(blobGets(s, m, f.Name))
		qctx, cancel := context.WithTimeout(ctx, s.Env.Timing.Quiet)
		defer cancel()
		<-qctx.Done()
		gets := blobGets(s, m, f.Name)
		Expect(gets).NotTo(BeEmpty(), "precondition: the device tried the download\n%s", blobText(s, m))
		Expect(gets[0].Status).To(Equal(403), "precondition: the storage refused the expired Token\n%s", blobText(s, m))
		Expect(len(gets)).To(Equal(after), "OTA-003: after reporting the refused download (%s) the device must not loop on it; %d more GETs came within %s\n%s", out.Detail, len(gets)-after, s.Env.Timing.Quiet, blobText(s, m))
	})

	Conformance("checks each file's SHA-256 against Signature: a lower-case Signature of the right hash installs, a tampered file is neither stored nor run", []string{"OTA-004"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{NoOpen: true})
		good := must(s.PutOTAFile("good.pe", []byte("good application of "+s.ID.DeviceID)))
		good.Signature = strings.ToLower(good.Signature) // the same 32 bytes (GAP: case-insensitive compare assumed)
		tok := must(s.OTAToken(time.Hour))
		v := otaNewVersion()
		otaPublish(s, otaDesired([]fixtures.OTAFile{good}, tok, v, nil))
		m := s.Mark()
		must(0, s.Open(ctx))
		done, err := otaSettled(ctx, s, m, v)
		Expect(err).NotTo(HaveOccurred(), "OTA-004: the engine must finish the update of CodeVersion %d\n%s", v, blobText(s, m))
		Expect(done.State).To(Equal(agentproto.OTACurrent), "OTA-004: the file's SHA-256 is the Signature %s written in lower case (the same 32 bytes, 004 L118, L141); it must verify and install, the device reported %s: %s", good.Signature, done.State, done.Detail)
		before := otaStatus(ctx, s)
		Expect(before.Installed).To(Equal(otaVersionText(v)), "OTA-004: after a verified download CodeVersion %d must be installed; ota.status says %q", v, before.Installed)

		// A tampered file: served bytes differ from what Signature names.
		bad := must(s.PutOTAFile("tampered.pe", []byte("tampered application")))
		bad.Signature = fixtures.Signature([]byte("the application that was signed"))
		v2 := v + 1
		otaPublish(s, otaDesired([]fixtures.OTAFile{bad}, tok, v2, nil))
		m2 := s.Mark()
		s.Close(ctx)
		must(0, s.Open(ctx)) // the engine runs at every start
		_, err = s.WaitBlobRequest(ctx, m2, "GET "+bad.Name, func(r blob.Request) bool { return r.Method == "GET" && r.Blob == bad.Name && r.Status == 200 })
		Expect(err).NotTo(HaveOccurred(), "precondition: the device must download the tampered file\n%v", err)
		out, err := otaSettled(ctx, s, m2, v2)
		Expect(err).NotTo(HaveOccurred(), "OTA-004: the engine must finish with CodeVersion %d (an error)\n%s", v2, blobText(s, m2))
		after := otaStatus(ctx, s)
		Expect(after.Installed).To(Equal(before.Installed), "OTA-004: a file whose SHA-256 does not match Signature must be neither stored nor run (004 L122); the installed version went from %q to %q (engine: %s %s)", before.Installed, after.Installed, out.State, out.Detail)
		Expect(after.Files).To(Equal(before.Files), "OTA-004: the tampered file must not be stored (004 L122); installed files changed from %v to %v", before.Files, after.Files)
		Expect(out.State).To(Equal(agentproto.OTAError), "OTA-004: a signature mismatch must be reported as a failure (OTA-007); the engine said %s", out.State)
	})

	Conformance("the installed application honours the desired UpdateTime as its telemetry period", []string{"OTA-005"}, func(ctx SpecContext) {
		const period = 200 * time.Millisecond // 004 L123 uses 120000; compressed here, the rule is the same
		s, _, _, v := otaSetup(ctx, 1, twin.Section{"UpdateTime": period.Milliseconds()})
		m := s.Mark()
		must(0, s.Open(ctx))
		done, err := otaSettled(ctx, s, m, v)
		Expect(err).NotTo(HaveOccurred(), "precondition: the update must finish\n%s", blobText(s, m))
		Expect(done.State).To(Equal(agentproto.OTACurrent), "precondition: CodeVersion %d must install (%s)", v, done.Detail)
		// Four messages at 200 ms take about 0.8 s of real time.
		bound := 8*period + s.Env.Timing.Event
		wctx, cancel := context.WithTimeout(ctx, bound)
		defer cancel()
		msgs, err := s.Env.Hub.WaitTelemetryCount(wctx, s.ID, m.Telemetry, 4)
		Expect(err).NotTo(HaveOccurred(), "OTA-005: with UpdateTime %d ms the application must send telemetry every %s (004 L123); fewer than 4 messages arrived within %s\n%s", period.Milliseconds(), period, bound, traceText(s.Trace(m)))
		var gaps []time.Duration
		for i := 1; i < len(msgs); i++ {
			gaps = append(gaps, msgs[i].Received.Sub(msgs[i-1].Received))
		}
		slices.Sort(gaps)
		median := gaps[len(gaps)/2]
		Expect(median).To(BeNumerically("~", period, period*4/10), "OTA-005: the telemetry period must follow UpdateTime %s (004 L123); the median inter-arrival is %s (gaps %v)", period, median, gaps)
	})

	Conformance("reports update progress in reported properties", []string{"OTA-007"}, func(ctx SpecContext) {
		s, _, _, v := otaSetup(ctx, 1, nil)
		m := s.Mark()
		must(0, s.Open(ctx))
		done, err := otaSettled(ctx, s, m, v)
		Expect(err).NotTo(HaveOccurred(), "precondition: the update must finish\n%s", blobText(s, m))
		Expect(done.State).To(Equal(agentproto.OTACurrent), "precondition: CodeVersion %d must install (%s)", v, done.Detail)
		// The final report may still be on its way.
		_, _ = s.WaitTrace(ctx, m, "a reported PATCH with status current", func(e hub.Entry) bool {
			return otaStatusesIn(e) != nil && slices.Contains(otaStatusesIn(e), "current")
		})
		var seen []string
		for _, e := range publishes(s.Trace(m), "$iothub/twin/PATCH/properties/reported/") {
			seen = append(seen, otaStatusesIn(e)...)
		}
		progress := slices.ContainsFunc(seen, func(st string) bool { return st == "downloading" || st == "verifying" || st == "applying" })
		Expect(progress).To(BeTrue(), "OTA-007: during an update the device should report its progress in reported properties, stepping through downloading / verifying / applying (002 L8260-8292); the statuses reported were %v\n%s", seen, traceText(s.Trace(m)))
	})

	Conformance("refuses a FileName that is not https", []string{"OTA-008"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{NoOpen: true})
		f := must(s.PutOTAFile("insecure.pe", []byte("application over http")))
		f.URL = "http://" + strings.TrimPrefix(f.URL, "https://")
		tok := must(s.OTAToken(time.Hour))
		v := otaNewVersion()
		otaPublish(s, otaDesired([]fixtures.OTAFile{f}, tok, v, nil))
		m := s.Mark()
		must(0, s.Open(ctx))
		out, err := otaSettled(ctx, s, m, v)
		Expect(err).NotTo(HaveOccurred(), "OTA-008: the engine must end the cycle for CodeVersion %d (with an error)\n%s", v, blobText(s, m))
		var plain []blob.Request
		for _, r := range s.BlobRequests(m) {
			if r.Plain {
				plain = append(plain, r)
			}
		}
		Expect(plain).To(BeEmpty(), "OTA-008: a package URL that is not https must be refused, not fetched (002 L8187-8194); the device fetched it over plaintext HTTP:\n%s", fixtures.FormatBlobRequests(plain))
		Expect(out.State).To(Equal(agentproto.OTAError), "OTA-008: refusing an insecure package URI is reported as an error (002 L8188); the engine said %s", out.State)
	})

	Conformance("before sleeping the device finishes the twin read and reported update and disconnects cleanly", []string{"OTA-009"}, func(ctx SpecContext) {
		s, files, _, v := otaSetup(ctx, 1, nil)
		m := s.Mark()
		must(0, s.Open(ctx))
		twinResynced(ctx, s, m)
		// Sleep as soon as the twin is read: the cycle is still running.
		must(0, s.Sleep(ctx, 100, true))
		tr := s.Trace(m)
		var disc, lastPatch, get uint64
		for _, e := range tr {
			switch {
			case e.Dir == hub.DirIn && e.Type == "DISCONNECT":
				disc = e.Seq
			case e.Dir == hub.DirIn && e.Type == "PUBLISH" && strings.HasPrefix(e.Topic, "$iothub/twin/PATCH/properties/reported/"):
				lastPatch = e.Seq
			}
		}
		if gets := blobGets(s, m, files[0].Name); len(gets) > 0 {
			get = gets[0].Seq
		}
		Expect(disc).NotTo(BeZero(), "OTA-009: a device going to sleep must disconnect cleanly with DISCONNECT (004 L162; CONN-022); the connection ended without one\n%s", traceText(tr))
		Expect(get).NotTo(BeZero(), "OTA-009: the wake's download for the new CodeVersion %d must finish before sleeping (004 L162); no GET of %s\n%s", v, files[0].Name, blobText(s, m))
		Expect(lastPatch).NotTo(BeZero(), "OTA-009: the wake's reported update must be sent before sleeping (002 L14029); none on the wire\n%s", traceText(tr))
		Expect(lastPatch).To(BeNumerically("<", disc), "OTA-009: the reported update must come before DISCONNECT (CONNECT → SUBSCRIBE → GET → download → DISCONNECT)\n%s", traceText(tr))
	})
})

// otaStatusesIn returns the update statuses in a reported PATCH: every
// string leaf named like a status (…Status) whose value is one of the
// tutorial's (002 L8272-8281).
func otaStatusesIn(e hub.Entry) []string {
	if e.Dir != hub.DirIn || e.Type != "PUBLISH" || !strings.HasPrefix(e.Topic, "$iothub/twin/PATCH/properties/reported/") {
		return nil
	}
	var doc any
	if json.Unmarshal(e.Payload, &doc) != nil {
		return nil
	}
	known := []string{"current", "downloading", "verifying", "applying", "rebooting", "error", "rolledback"}
	var out []string
	var walk func(k string, v any)
	walk = func(k string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for kk, vv := range x {
				walk(kk, vv)
			}
		case string:
			if strings.HasSuffix(strings.ToLower(k), "status") && slices.Contains(known, x) {
				out = append(out, x)
			}
		}
	}
	walk("", doc)
	return out
}
