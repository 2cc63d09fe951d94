package suites

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/rig/dps"
	"github.com/hilrun/hilrun/rig/dpsproto"
	"github.com/hilrun/hilrun/rig/hub"
)

// Boundary specs for DPS (issue 15): the rules of suites/dps.go along the
// dimensions of fixtures/catalog/dimensions.yaml that one example left open:
// registration ID shapes (DPS-002), request IDs past 9, 15 and 255
// (DPS-004), retry-after values other than 1 and a 429 answer (DPS-005),
// and an individual (self-signed) X.509 enrollment (DPS-007). The topic
// level of DPS is the catalog's [NS-4] test assumption; the seeds describe
// the flow at API level (000 L348-483).
var _ = Describe("device provisioning (DPS), boundaries", func() {
	// DPS-002: the registration ID goes into ClientId and Username as it
	// is; DPS takes up to 128 characters of letters, digits and "-._:"
	// (dpsproto.CheckRegistrationID).
	regIDShapes := []struct {
		name  string
		shape func(base string) string
	}{
		{"of 128 characters", func(base string) string { return base + "-" + strings.Repeat("x", dpsproto.MaxIDLength-len(base)-1) }},
		{"holding the characters - . _ :", func(base string) string { return base + ".a_b:c-d" }},
	}
	for _, c := range regIDShapes {
		Conformance("a registration ID "+c.name+" is carried unchanged in ClientId, Username and body, and is assigned", []string{"DPS-002"}, func(ctx SpecContext) {
			ds := newDPS(ctx, fixtures.DPSOptions{Name: "dps002s", RegID: c.shape, TimeoutMS: 6000})
			m := ds.Mark()
			res := must(ds.Register(ctx))
			tr := ds.DPSTrace(m)
			connect := dpsConnect(tr, res)
			Expect(connect.ClientID).To(Equal(ds.RegID), "DPS-002: ClientId is the registration ID %q (%d characters) (000 L354-359); seen %q\n%s", ds.RegID, len(ds.RegID), connect.ClientID, traceText(tr))
			u, err := dpsproto.ParseUsername(connect.Username)
			Expect(err).NotTo(HaveOccurred(), "DPS-002: Username %q is not {idScope}/registrations/{registrationId}/api-version=%s (000 L357, L366 [NS-4]): %v\n%s", connect.Username, dpsproto.APIVersion, err, traceText(tr))
			Expect(u.RegistrationID).To(Equal(ds.RegID), "DPS-002: the Username names the registration ID %q as it is (000 L357); seen %q\n%s", ds.RegID, u.RegistrationID, traceText(tr))
			put := dpsRegisterPublish(tr)
			body, err := dpsproto.ParseRegisterBody(put.Payload)
			Expect(err).NotTo(HaveOccurred(), "DPS-002: the registration body (000 L479-481): %v\n%s", err, traceText(tr))
			Expect(body.RegistrationID).To(Equal(ds.RegID), "DPS-002: registrationId in the body is the registration ID (000 L354-359); seen %q\n%s", body.RegistrationID, traceText(tr))
			Expect(res.Status).To(Equal(dpsproto.StatusAssigned), "DPS-002: registration %q is enrolled and must be assigned (000 L373-382); the device reported %+v\n%s", ds.RegID, res, traceText(tr))
		})
	}

	Conformance("the device's $rid values past 9, 15 and 255 still correlate: 256 assigning answers with retry-after 0 end in the final status", []string{"DPS-004"}, func(ctx SpecContext) {
		zero := 0
		const polls = 256 // requests $rid 1..257 if the device counts from 1
		ds := newDPS(ctx, fixtures.DPSOptions{Name: "dps004r", RetryAfter: &zero, Faults: dps.Faults{Polls: polls}, TimeoutMS: 20000})
		m := ds.Mark()
		res := must(ds.Register(ctx))
		tr := ds.DPSTrace(m)
		rids := map[string]bool{}
		answered := 0
		for _, e := range tr {
			switch {
			case e.Dir == hub.DirIn && e.Type == "PUBLISH" && (strings.HasPrefix(e.Topic, dpsproto.RegisterPrefix) || strings.HasPrefix(e.Topic, dpsproto.StatusPrefix)):
				req, err := dpsproto.ParseRequestTopic(e.Topic)
				Expect(err).NotTo(HaveOccurred(), "DPS-004: request topic %q carries ?$rid={rid} (000 L402-410 [NS-4]): %v", e.Topic, err)
				Expect(req.RID).NotTo(BeEmpty(), "DPS-004: request topic %q has an empty $rid", e.Topic)
				rids[req.RID] = true
			case e.Dir == hub.DirOut && e.Type == "PUBLISH" && strings.HasPrefix(e.Topic, dpsproto.ResponsePrefix):
				answered++
			}
		}
		Expect(answered).To(BeNumerically(">=", polls+1), "DPS-004: expected the endpoint to answer the registration and %d polls; it answered %d (result %+v)\n%s", polls, answered, res, traceText(tr))
		Expect(res.Status).To(Equal(dpsproto.StatusAssigned),
			"DPS-004/DPS-005: each answer echoes the $rid of its request (000 L402-410 [NS-4]); after %d assigning answers the device must take the final one and report assigned; it reported %+v after %d requests with %d distinct $rid values (largest numeric %s)\n%s",
			polls, res, len(rids), len(rids), largestRID(rids), traceText(tr))
	})

	// DPS-005: every request that follows an answer carrying retry-after
	// comes no sooner than that many seconds later; an answer without it
	// leaves the wait to the device (the docs give no default).
	raCases := []struct {
		name  string
		ra    *int
		omit  bool
		polls int
	}{
		{"retry-after 0 (two assigning answers)", dpsIntPtr(0), false, 2},
		{"retry-after 3", dpsIntPtr(3), false, 0},
		{"no retry-after at all (the device's own wait)", nil, true, 1},
	}
	for _, c := range raCases {
		Conformance("on a 202 with "+c.name+" the device polls no sooner than advertised and reaches the final status", []string{"DPS-005"}, func(ctx SpecContext) {
			o := fixtures.DPSOptions{Name: "dps005v", RetryAfter: c.ra, Faults: dps.Faults{Polls: c.polls, OmitRetryAfter: c.omit}}
			ds := newDPS(ctx, o)
			m := ds.Mark()
			res := must(ds.Register(ctx))
			tr := ds.DPSTrace(m)
			polls := dpsJudgeWaits(tr, "DPS-005")
			Expect(polls).To(BeNumerically(">=", c.polls+1), "DPS-005: expected a poll after each of the %d assigning answers; seen %d (result %+v)\n%s", c.polls+1, polls, res, traceText(tr))
			Expect(res.Status).To(Equal(dpsproto.StatusAssigned), "DPS-005: polling continues until the final status (assigned) [NS-4]; the device reported %+v\n%s", res, traceText(tr))
		})
	}

	Conformance("after a 429 answer with retry-after 2 the device sends the request again no sooner than 2 s later and completes the registration", []string{"DPS-005"}, func(ctx SpecContext) {
		two := 2
		ds := newDPS(ctx, fixtures.DPSOptions{Name: "dps005t", RetryAfter: &two, Faults: dps.Faults{Throttle: 1}})
		m := ds.Mark()
		res := must(ds.Register(ctx))
		tr := ds.DPSTrace(m)
		throttled := false
		for _, e := range tr {
			if e.Dir == hub.DirOut && e.Type == "PUBLISH" && strings.HasPrefix(e.Topic, dpsproto.ResponsePrefix+"429/") {
				throttled = true
			}
		}
		Expect(throttled).To(BeTrue(), "DPS-005: expected the endpoint's 429 answer to the first request\n%s", traceText(tr))
		dpsJudgeWaits(tr, "DPS-005")
		Expect(res.Status).To(Equal(dpsproto.StatusAssigned), "DPS-005: a throttled request is sent again after retry-after and the registration goes on to its final status [NS-4]; the device reported %+v\n%s", res, traceText(tr))
	})

	Conformance("with an individual (self-signed) X.509 enrollment the same certificate and chain are presented at DPS and at the hub", []string{"DPS-007"}, func(ctx SpecContext) {
		ds := newDPS(ctx, fixtures.DPSOptions{Name: "dps007i", Auth: fixtures.DPSIndividualX509}, agentproto.CapX509)
		m := ds.Mark()
		res := must(ds.Register(ctx))
		dtr := ds.DPSTrace(m)
		Expect(res.Status).To(Equal(dpsproto.StatusAssigned), "DPS-007: registering with the enrolled self-signed certificate (000 L424-430): the device reported %+v\n%s", res, traceText(dtr))
		atDPS := dpsLastTLS(dtr)
		Expect(atDPS).NotTo(BeNil(), "DPS-007: the DPS TLS handshake\n%s", traceText(dtr))
		hm := ds.Mark()
		must(0, ds.Open(ctx))
		htr := ds.Trace(hm)
		atHub := dpsLastTLS(htr)
		Expect(atHub).NotTo(BeNil(), "DPS-007: the hub TLS handshake\n%s", traceText(htr))
		Expect(atHub.TLS.ClientCertThumbprint).To(Equal(atDPS.TLS.ClientCertThumbprint), "DPS-007: the same device certificate at DPS and at the hub (000 L457-469)\n%s\n%s", traceText(dtr), traceText(htr))
		Expect(atHub.TLS.ClientCertChainLen).To(Equal(atDPS.TLS.ClientCertChainLen), "DPS-007: the same chain at DPS (%d certificates) and at the hub (%d) (000 L430)\n%s\n%s", atDPS.TLS.ClientCertChainLen, atHub.TLS.ClientCertChainLen, traceText(dtr), traceText(htr))
	})

	Conformance("nested custom registration data with non-ASCII text is sent as the same JSON value", []string{"DPS-008"}, func(ctx SpecContext) {
		custom := json.RawMessage(`{"site":{"name":"Zürich Süd ✓","floor":-1,"racks":[1,2,{"u":42,"tags":["ä","日本"]}]},"note":"quote \" and \\ backslash"}`)
		ds := newDPS(ctx, fixtures.DPSOptions{Name: "dps008s", Payload: custom})
		m := ds.Mark()
		res := must(ds.Register(ctx))
		tr := ds.DPSTrace(m)
		put := dpsRegisterPublish(tr)
		body, err := dpsproto.ParseRegisterBody(put.Payload)
		Expect(err).NotTo(HaveOccurred(), "DPS-008: %v\n%s", err, traceText(tr))
		Expect(jsonValue(body.Payload)).To(Equal(jsonValue(custom)), "DPS-008: the payload member carries the custom data as the same JSON value, nesting and non-ASCII text included (000 L479-481); sent %s, seen %s\n%s", custom, body.Payload, traceText(tr))
		Expect(res.Status).To(Equal(dpsproto.StatusAssigned), "DPS-008: registration with custom data is assigned; the device reported %+v", res)
	})

	// DPS-006: an error answer is an outcome other than assigned: reported
	// with its status and error, no hub connection. The fault answers one
	// request, so a device that tries again (allowed, for a 5xx above all)
	// may still be assigned.
	errAnswers := []struct {
		status, code int
	}{{400, 400004}, {500, 500000}}
	for _, c := range errAnswers {
		Conformance(fmt.Sprintf("an error answer %d to the registration request is reported with its status and error, or the request is tried again; no hub connection without an assignment", c.status), []string{"DPS-006"}, func(ctx SpecContext) {
			ds := newDPS(ctx, fixtures.DPSOptions{Name: "dps006e", TimeoutMS: 4000, Faults: dps.Faults{Fail: 1, FailStatus: c.status, FailCode: c.code}})
			m := ds.Mark()
			res := must(ds.Register(ctx))
			tr := ds.DPSTrace(m)
			answered := false
			for _, e := range tr {
				if e.Dir == hub.DirOut && e.Type == "PUBLISH" && strings.HasPrefix(e.Topic, fmt.Sprintf("%s%d/", dpsproto.ResponsePrefix, c.status)) {
					answered = true
				}
			}
			Expect(answered).To(BeTrue(), "precondition: the endpoint answered the registration request %d\n%s", c.status, traceText(tr))
			if res.Status == dpsproto.StatusAssigned {
				return // the device tried again and was assigned: allowed
			}
			Expect(res.ErrorMessage).NotTo(BeEmpty(), "DPS-006: an outcome other than assigned is reported with its error message (000 L377); seen %+v\n%s", res, traceText(tr))
			Expect(res.ErrorCode == c.code || strings.Contains(res.ErrorMessage, strconv.Itoa(c.status))).To(BeTrue(),
				"DPS-006: the outcome is reported with its status (000 L377): expected error code %d or status %d in the result; seen %+v\n%s", c.code, c.status, res, traceText(tr))
			dpsConns := ds.DPSConnIDs(m)
			for _, e := range hubSince(ds.Session, m) {
				Expect(e.Dir == hub.DirIn && e.Type == "CONNECT" && !dpsConns[e.ConnID]).To(BeFalse(),
					"DPS-006: only an assigned result leads to a hub connection (000 L375-379); after the %d answer the board sent a hub CONNECT as %q", c.status, e.ClientID)
			}
		})
	}
})

func dpsIntPtr(v int) *int { return &v }

// dpsLastTLS is the last TLS entry with handshake details in tr.
func dpsLastTLS(tr []hub.Entry) *hub.Entry {
	var out *hub.Entry
	for i, e := range tr {
		if e.Type == hub.EventTLS && e.TLS != nil {
			out = &tr[i]
		}
	}
	return out
}

// dpsJudgeWaits checks DPS-005 over a registration's trace: every request
// (registration PUT or status poll) that follows an answer with retry-after
// (202 or 429) comes at least that many seconds after it. It returns the
// number of status polls.
func dpsJudgeWaits(tr []hub.Entry, req string) int {
	GinkgoHelper()
	var last *hub.Entry
	var lastRA int
	polls := 0
	for i, e := range tr {
		switch {
		case e.Dir == hub.DirOut && e.Type == "PUBLISH" && strings.HasPrefix(e.Topic, dpsproto.ResponsePrefix):
			r, err := dpsproto.ParseResponseTopic(e.Topic)
			if err == nil && (r.Status == 202 || r.Status == 429) && r.HasRetryAfter {
				last, lastRA = &tr[i], r.RetryAfter
			} else {
				last = nil
			}
		case e.Dir == hub.DirIn && e.Type == "PUBLISH" && (strings.HasPrefix(e.Topic, dpsproto.StatusPrefix) || strings.HasPrefix(e.Topic, dpsproto.RegisterPrefix)):
			if strings.HasPrefix(e.Topic, dpsproto.StatusPrefix) {
				polls++
			}
			if last != nil {
				gap := e.Time.Sub(last.Time)
				Expect(gap >= time.Duration(lastRA)*time.Second).To(BeTrue(),
					"%s: the request %s came %s after the answer %s, before its retry-after=%d s [NS-4]\n%s", req, e.Topic, gap.Round(time.Millisecond), last.Topic, lastRA, traceText(tr))
			}
			last = nil
		}
	}
	return polls
}

// largestRID is the largest decimal $rid in rids ("none" when none is).
func largestRID(rids map[string]bool) string {
	best := -1
	for r := range rids {
		if n, err := strconv.Atoi(r); err == nil && n > best {
			best = n
		}
	}
	if best < 0 {
		return "none"
	}
	return fmt.Sprint(best)
}
