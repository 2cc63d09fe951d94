package suites

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/rig/blob"
	"github.com/hilrun/hilrun/rig/hub"
)

// Boundary specs for the twin-driven OTA of seed 004 (issue 15): the rules
// of suites/ota.go along the dimensions of fixtures/catalog/dimensions.yaml
// that one example left open: a CodeVersion whose decimal text grows a
// digit (OTA-002), a file larger than a read buffer in the documented
// upper-case dashed Signature form (OTA-004), a start that is a wake from
// sleep (OTA-001) and an empty Files array (OTA-006).
var _ = Describe("twin-driven OTA (seed 004), boundaries", func() {
	Conformance("CodeVersion steps 9, 10, 99, 100 each cause one download: the change is judged on the value, not on the order of its text", []string{"OTA-002"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{NoOpen: true})
		tok := must(s.OTAToken(time.Hour))
		// The installed version persists on the board; 9 differs from any
		// version an earlier spec installed (otaNewVersion is larger).
		for i, v := range []int64{9, 10, 99, 100} {
			f := must(s.PutOTAFile("step.pe", []byte("application of "+s.ID.DeviceID+" at CodeVersion "+otaVersionText(v))))
			otaPublish(s, otaDesired([]fixtures.OTAFile{f}, tok, v, nil))
			m := s.Mark()
			if i == 0 {
				must(0, s.Open(ctx))
			} else {
				must(0, s.Reboot(ctx, false)) // the engine runs at every start (OTA-001)
			}
			done, err := otaSettled(ctx, s, m, v)
			Expect(err).NotTo(HaveOccurred(), "OTA-002: after CodeVersion changed to %d the engine must act at the next start (004 L122)\n%s", v, blobText(s, m))
			if i == 0 && done.State != agentproto.OTACurrent {
				PreconditionUnmet("CodeVersion 9 did not install (" + done.State + ": " + done.Detail + ")")
			}
			Expect(blobGets(s, m, f.Name)).To(HaveLen(1), "OTA-002: CodeVersion changed from %q to %d, so the file must be downloaded once (004 L122: downloaded \"if there is a change in the CodeVersion\"); a text comparison takes %q for older than %q\n%s",
				done.Installed, v, otaVersionText(v), done.Installed, blobText(s, m))
			Expect(done.State).To(Equal(agentproto.OTACurrent), "OTA-002: CodeVersion %d must install (engine: %s %s)\n%s", v, done.State, done.Detail, blobText(s, m))
			Expect(otaStatus(ctx, s).Installed).To(Equal(otaVersionText(v)), "OTA-002: after the download CodeVersion %d is the installed one (004 L122)", v)
		}
	})

	Conformance("a 256 KB file in the documented upper-case dashed Signature form installs, and one whose bytes differ only after its first 64 KB is neither stored nor run", []string{"OTA-004"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{NoOpen: true})
		big := bytes.Repeat([]byte("0123456789abcdef"), 256<<10/16)
		copy(big, "large application of "+s.ID.DeviceID)
		good := must(s.PutOTAFile("large.pe", big)) // fixtures.Signature: upper-case hex pairs joined by "-" (004 L118)
		tok := must(s.OTAToken(time.Hour))
		v := otaNewVersion()
		otaPublish(s, otaDesired([]fixtures.OTAFile{good}, tok, v, nil))
		m := s.Mark()
		must(0, s.Open(ctx))
		done, err := otaSettled(ctx, s, m, v)
		Expect(err).NotTo(HaveOccurred(), "OTA-004: the engine must finish the update of CodeVersion %d\n%s", v, blobText(s, m))
		Expect(done.State).To(Equal(agentproto.OTACurrent), "OTA-004: the %d-byte file's SHA-256 is its Signature %s… in the documented form (004 L118, L141); it must verify and install, the device reported %s: %s", len(big), good.Signature[:11], done.State, done.Detail)
		before := otaStatus(ctx, s)
		Expect(before.Installed).To(Equal(otaVersionText(v)), "OTA-004: after a verified download CodeVersion %d is installed; ota.status says %q", v, before.Installed)

		// The same size, the same first 64 KB, a different tail: the
		// Signature names the original bytes.
		tampered := append([]byte(nil), big...)
		copy(tampered[len(tampered)-32:], "tampered tail of the application")
		bad := must(s.PutOTAFile("large-tampered.pe", tampered))
		bad.Signature = fixtures.Signature(big)
		v2 := v + 1
		otaPublish(s, otaDesired([]fixtures.OTAFile{bad}, tok, v2, nil))
		m2 := s.Mark()
		s.Close(ctx)
		must(0, s.Open(ctx))
		_, err = s.WaitBlobRequest(ctx, m2, "GET "+bad.Name, func(r blob.Request) bool { return r.Method == "GET" && r.Blob == bad.Name && r.Status == 200 })
		Expect(err).NotTo(HaveOccurred(), "precondition: the device must download the tampered file\n%v", err)
		out, err := otaSettled(ctx, s, m2, v2)
		Expect(err).NotTo(HaveOccurred(), "OTA-004: the engine must finish with CodeVersion %d (an error)\n%s", v2, blobText(s, m2))
		after := otaStatus(ctx, s)
		Expect(after.Installed).To(Equal(before.Installed), "OTA-004: the %d-byte file differs from its Signature in its last 32 bytes: its SHA-256 over all bytes does not match, so it must be neither stored nor run (004 L122); the installed version went from %q to %q (engine: %s %s)", len(tampered), before.Installed, after.Installed, out.State, out.Detail)
		Expect(after.Files).To(Equal(before.Files), "OTA-004: the tampered file must not be stored (004 L122); installed files changed from %v to %v", before.Files, after.Files)
	})

	Conformance("after a wake from sleep the device reads Files, Token and CodeVersion again and acts on a CodeVersion changed while it slept", []string{"OTA-001"}, func(ctx SpecContext) {
		s, _, tok, v := otaSetup(ctx, 1, nil)
		m := s.Mark()
		must(0, s.Open(ctx))
		done, err := otaSettled(ctx, s, m, v)
		Expect(err).NotTo(HaveOccurred(), "precondition: the first update must finish\n%s", blobText(s, m))
		Expect(done.State).To(Equal(agentproto.OTACurrent), "precondition: CodeVersion %d must install (%s)", v, done.Detail)
		must(0, s.Sleep(ctx, 100, true)) // deep sleep; the board wakes without a client
		f2 := must(s.PutOTAFile("woken.pe", []byte("application published while "+s.ID.DeviceID+" slept")))
		v2 := v + 1
		otaPublish(s, otaDesired([]fixtures.OTAFile{f2}, tok, v2, nil))
		m2 := s.Mark()
		must(0, s.Open(ctx))
		read, err := otaEvent(ctx, s, m2, "the OTA settings read after the wake", func(o agentproto.OTAEvent) bool { return o.State == agentproto.OTARead })
		Expect(err).NotTo(HaveOccurred(), "OTA-001: on every start/wake the device reads Files, Token and CodeVersion from its twin (004 L101, L117-121); after the wake no ota read event came\n%s\n%s", traceText(s.Trace(m2)), blobText(s, m2))
		Expect(read.CodeVersion).To(Equal(otaVersionText(v2)), "OTA-001: after the wake CodeVersion is read as %q; the twin holds %d (004 L120)", read.CodeVersion, v2)
		Expect(read.HasToken).To(BeTrue(), "OTA-001: after the wake the twin's Token was not read (004 L119)")
		_, err = s.WaitBlobRequest(ctx, m2, "GET "+f2.Name, func(r blob.Request) bool { return r.Method == "GET" && r.Blob == f2.Name })
		Expect(err).NotTo(HaveOccurred(), "OTA-001/OTA-002: CodeVersion changed to %d while the device slept; at the wake it must fetch %s (004 L101, L122)\n%s", v2, f2.URL, blobText(s, m2))
		_, _ = otaSettled(ctx, s, m2, v2)
	})

	Conformance("an empty Files array is accepted: the device still reads CodeVersion and Token and downloads nothing", []string{"OTA-006"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{NoOpen: true})
		tok := must(s.OTAToken(time.Hour))
		v := otaNewVersion()
		otaPublish(s, otaDesired(nil, tok, v, nil))
		m := s.Mark()
		must(0, s.Open(ctx))
		read, err := otaEvent(ctx, s, m, "the parsed OTA settings", func(o agentproto.OTAEvent) bool { return o.State == agentproto.OTARead })
		Expect(err).NotTo(HaveOccurred(), "OTA-006: the twin parser must accept a JSON array in desired properties, an empty one too (004 L117-118); with Files [] the device did not read CodeVersion and Token (no ota read event)\n%s", traceText(s.Trace(m)))
		Expect(read.CodeVersion).To(Equal(otaVersionText(v)), "OTA-006: with Files [] CodeVersion is read as %q; the twin holds %d (004 L120)", read.CodeVersion, v)
		Expect(read.Files).To(BeZero(), "OTA-006: Files [] has no entries; the device parsed %d", read.Files)
		wctx, cancel := context.WithTimeout(ctx, s.Env.Timing.Event)
		defer cancel()
		_, _ = otaSettled(wctx, s, m, v)
		var gets []blob.Request
		for _, r := range s.BlobRequests(m) {
			if r.Method == "GET" {
				gets = append(gets, r)
			}
		}
		Expect(gets).To(BeEmpty(), "OTA-006: an empty Files array names no file to fetch (004 L117-118); the device fetched:\n%s", fixtures.FormatBlobRequests(gets))
	})

	// OTA-003: a download the storage does not answer 200 is not an
	// update: the device may report it or (for a 5xx) try again, but it
	// never records the new CodeVersion without the verified file.
	storageFaults := []struct {
		name  string
		setup func(s *fixtures.Session, f *fixtures.OTAFile)
	}{
		{"404 (no such blob)", func(s *fixtures.Session, f *fixtures.OTAFile) {
			f.URL = strings.Replace(f.URL, f.Name, f.Name+"-missing", 1)
			f.Name += "-missing"
		}},
		{"500 (storage fault, once)", func(s *fixtures.Session, f *fixtures.OTAFile) {
			s.Env.Hub.Blob().FailGets(1)
			DeferCleanup(func() { s.Env.Hub.Blob().FailGets(0) })
		}},
	}
	for _, c := range storageFaults {
		Conformance("a download the storage answers "+c.name+" never leads to the new CodeVersion being installed without its file", []string{"OTA-003"}, func(ctx SpecContext) {
			s := NewSession(ctx, fixtures.SessionOptions{NoOpen: true})
			f := must(s.PutOTAFile("app.pe", []byte("application for "+s.ID.DeviceID)))
			before := otaStatus(ctx, s)
			c.setup(s, &f)
			tok := must(s.OTAToken(time.Hour))
			v := otaNewVersion()
			otaPublish(s, otaDesired([]fixtures.OTAFile{f}, tok, v, nil))
			m := s.Mark()
			must(0, s.Open(ctx))
			out, err := otaSettled(ctx, s, m, v)
			Expect(err).NotTo(HaveOccurred(), "OTA-003: the engine must end its cycle for CodeVersion %d (reported error or, after a retry, installed)\n%s", v, blobText(s, m))
			gets := blobGets(s, m, f.Name)
			Expect(gets).NotTo(BeEmpty(), "precondition: the device tried the download of %s\n%s", f.Name, blobText(s, m))
			after := otaStatus(ctx, s)
			if after.Installed != before.Installed || out.State == agentproto.OTACurrent {
				ok := false
				for _, g := range gets {
					if g.Method == "GET" && g.Status == 200 {
						ok = true
					}
				}
				Expect(ok).To(BeTrue(), "OTA-003: CodeVersion %d is reported %s / installed %q, yet the storage never delivered %s (answers: %s); a file that was not fetched cannot be verified or installed (004 L117-119, L122)\n%s",
					v, out.State, after.Installed, f.Name, blobStatuses(gets), blobText(s, m))
			}
		})
	}

	Conformance("reports a failed update (a tampered file) as error in reported properties", []string{"OTA-007"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{NoOpen: true})
		bad := must(s.PutOTAFile("tampered.pe", []byte("tampered application of "+s.ID.DeviceID)))
		bad.Signature = fixtures.Signature([]byte("the application that was signed"))
		tok := must(s.OTAToken(time.Hour))
		v := otaNewVersion()
		otaPublish(s, otaDesired([]fixtures.OTAFile{bad}, tok, v, nil))
		m := s.Mark()
		must(0, s.Open(ctx))
		out, err := otaSettled(ctx, s, m, v)
		Expect(err).NotTo(HaveOccurred(), "precondition: the engine must end its cycle for CodeVersion %d\n%s", v, blobText(s, m))
		Expect(out.State).To(Equal(agentproto.OTAError), "precondition: a file whose SHA-256 is not its Signature fails the update (OTA-004); the engine said %s", out.State)
		_, err = s.WaitTrace(ctx, m, "a reported PATCH with status error", func(e hub.Entry) bool {
			return slices.Contains(otaStatusesIn(e), "error")
		})
		var seen []string
		for _, e := range publishes(s.Trace(m), "$iothub/twin/PATCH/properties/reported/") {
			seen = append(seen, otaStatusesIn(e)...)
		}
		Expect(err).NotTo(HaveOccurred(), "OTA-007: a failed update should be reported with status error in reported properties (002 L8272-8281, L8260-8292); the statuses reported were %v\n%s", seen, traceText(s.Trace(m)))
	})
})

// blobStatuses lists the statuses of requests.
func blobStatuses(rs []blob.Request) string {
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%s %d", r.Method, r.Status))
	}
	return strings.Join(out, ", ")
}
