package suites

import (
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/rig/hub"
)

var _ = Describe("connect", func() {
	Conformance("CONNECT carries the device ID as ClientId and the documented Username", []string{"CONN-005", "CONN-006"}, func(ctx SpecContext) {
		s := NewSession(ctx, fixtures.SessionOptions{})
		connect := must(s.WaitTrace(ctx, s.Start(), "CONNECT from the device", func(e hub.Entry) bool {
			return e.Dir == hub.DirIn && e.Type == "CONNECT"
		}))
		Expect(connect.ClientID).To(Equal(s.ID.DeviceID), "CONN-005: ClientId must be the device ID byte for byte\n%s", traceText(s.Trace(s.Start())))
		Expect(connect.Username).To(HavePrefix(fixtures.HubHost+"/"+s.ID.DeviceID+"/?api-version="),
			"CONN-006: Username must be {hub FQDN}/{deviceId}/?api-version=…\n%s", traceText(s.Trace(s.Start())))
		Expect(strings.Count(connect.Username, "/?")).To(Equal(1))
	})
})
