package suites

import (
	"context"
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/rig/blob"
	"github.com/hilrun/hilrun/rig/hub"
)

// Specs for the suite gaps mutation analysis found (issue 15,
// docs/mutation.md): behaviours no spec visited, so a firmware changed
// there passed the whole suite: a twin GET whose answers are all failures,
// and an update on a board with nothing installed yet. (A one-digit
// CodeVersion, the third gap, is the first step of bounds_ota.go's
// 9-10-99-100 spec, added after that analysis.)
var _ = Describe("gaps found by mutation analysis", func() {
	// TWIN-008: only a 2xx status on the matching $rid is success. The hub
	// answers every GET of the identity with a failure status while the
	// device's twin.get runs: 400 and 404 (4xx, final) and 503 (a server
	// error the device may retry, answered 503 again every time).
	for _, st := range []int{400, 404, 503} {
		Conformance(fmt.Sprintf("a twin GET the hub answers %d, and never 2xx, is not taken as the twin: the device reports the hub's failure", st), []string{"TWIN-008"}, func(ctx SpecContext) {
			s := NewSession(ctx, fixtures.SessionOptions{})
			twinResynced(ctx, s, s.Start())
			m := s.Mark()
			// More failures than any retry budget within the call: the
			// hub does not answer 2xx before the call ends.
			must(0, s.Env.Hub.FailTwinRequests(s.ID, st, 1000))
			DeferCleanup(func() { _ = s.Env.Hub.FailTwinRequests(s.ID, st, 0) })
			cctx, cancel := context.WithTimeout(ctx, 6*s.Env.Timing.RetryMax+s.Env.Timing.TwinTimeout+s.Env.Timing.Op)
			defer cancel()
			var res agentproto.TwinResult
			err := s.Call(cctx, agentproto.OpTwinGet, nil, &res)
			get := must(s.WaitTrace(ctx, m, "the device's twin GET", twinPublishTo(twinGetPrefix)))
			ans, aerr := s.WaitTrace(ctx, m, "the answer to the GET", twinAnswerTo(twinRID(get.Topic)))
			tr := s.Trace(m)
			Expect(aerr == nil && strings.HasPrefix(ans.Topic, fmt.Sprintf("%s%d/", twinResPrefix, st))).To(BeTrue(), "precondition: the hub answers the GET %d (fault injection)\n%s", st, traceText(tr))
			for _, e := range tr {
				ok2xx := e.Dir == hub.DirOut && e.Type == "PUBLISH" && strings.HasPrefix(e.Topic, twinResPrefix+"2")
				Expect(ok2xx).To(BeFalse(), "precondition: no 2xx twin answer during the call, seen %s\n%s", e.Topic, traceText(tr))
			}
			Expect(err).To(HaveOccurred(), "TWIN-008: the hub answered the twin GET %d (%s) and never 2xx; only a 2xx status on the matching $rid is success (catalog TWIN-008; 002 L13956-13961: the GET's statuses are 2xx success, 429 and 5** failures; L13984-13990), so the answer's body (an error object) is not the twin. The device reported success with the twin %+v\n%s",
				st, ans.Topic, res, traceText(tr))
			ae, ok := fixtures.IsDeviceError(err)
			if !ok {
				return // the call did not end within the bound: the device took nothing as its twin
			}
			// A retrying device may give up waiting (timeout); anything else
			// means it read the failure's body (devicefw/PROTOCOL.md L75:
			// `rejected` is a failure status from the hub).
			Expect(ae.Code == agentproto.ErrRejected || ae.Code == agentproto.ErrTimeout).To(BeTrue(),
				"TWIN-008: the hub answered the twin GET %d (%s), a failure status (002 L13956-13961, L13984-13990); the device must report that failure (agent error `rejected`, devicefw/PROTOCOL.md L75, or `timeout` if it gave up retrying), not read the answer's body as a twin document; it reported %s: %s\n%s",
				st, ans.Topic, ae.Code, ae.Msg, traceText(tr))
		})
	}
})

// OTA-002 on a board fresh from the factory: nothing installed, so any
// desired CodeVersion is a change. The installed version persists on the
// board (NVS) and no agent operation erases it, so the spec can only judge
// a board on which no update ran yet; on any other it ends
// precondition-unmet. (On a fresh board the first OTA spec of the run,
// whichever it is, also starts from nothing; this one names the case.)
var _ = Describe("gaps found by mutation analysis: OTA from nothing installed", func() {
	Conformance("on a board with nothing installed yet, a desired CodeVersion starts the update", []string{"OTA-002"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{NoOpen: true})
		if st := otaStatus(ctx, s); st.Installed != "" {
			PreconditionUnmet(fmt.Sprintf("this spec needs a board with no installed version; ota.status reports %q installed (an earlier spec of this run installed one; it runs on a fresh board)", st.Installed))
		}
		f := must(s.PutOTAFile("first.pe", []byte("first application of "+s.ID.DeviceID)))
		tok := must(s.OTAToken(time.Hour))
		v := otaNewVersion()
		otaPublish(s, otaDesired([]fixtures.OTAFile{f}, tok, v, nil))
		m := s.Mark()
		must(0, s.Open(ctx))
		otaUpdateStarted(ctx, s, m, f, v, "", "with nothing installed any desired CodeVersion differs from the installed one")
	})
})

// otaUpdateStarted judges an update that must happen at this start (since
// m): the file is downloaded once the twin was read, the engine installs v
// and ota.status names it. installed is the version before; why says why
// v is a change (for the failure messages).
func otaUpdateStarted(ctx context.Context, s *fixtures.Session, m fixtures.Marks, f fixtures.OTAFile, v int64, installed, why string) {
	GinkgoHelper()
	twinResynced(ctx, s, m) // the engine reads its settings now (OTA-001)
	wctx, cancel := context.WithTimeout(ctx, s.Env.Timing.Event)
	defer cancel()
	_, err := s.WaitBlobRequest(wctx, m, "GET "+f.Name, func(r blob.Request) bool { return r.Method == "GET" && r.Blob == f.Name })
	Expect(err).NotTo(HaveOccurred(), "OTA-002: the desired CodeVersion %d differs from the installed %q (%s), so the file must be downloaded (004 L122: \"downloaded if there is a change in the CodeVersion\"); no GET of %s within %s of the twin being read\n%s",
		v, installed, why, f.Name, s.Env.Timing.Event, blobText(s, m))
	done, err := otaSettled(wctx, s, m, v)
	Expect(err).NotTo(HaveOccurred(), "OTA-002: the engine must finish the update to CodeVersion %d (004 L122)\n%s", v, blobText(s, m))
	Expect(done.State).To(Equal(agentproto.OTACurrent), "OTA-002: CodeVersion %d with a verified file must install (engine: %s %s)\n%s", v, done.State, done.Detail, blobText(s, m))
	Expect(otaStatus(ctx, s).Installed).To(Equal(otaVersionText(v)), "OTA-002: after the update CodeVersion %d is the installed one (004 L122)", v)
}
