package suites

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hilrun/hilrun/devicefw/agentproto"
	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/reports"
	"github.com/hilrun/hilrun/rig/awsiot"
	"github.com/hilrun/hilrun/rig/hub"
)

// awsCurrent is the AWS session of the running spec (for its evidence).
var awsCurrent *fixtures.AWSSession

// cloudScope records the cloud a run is judged against and narrows the
// label filter to it: an AWS run runs the AWS area only (the Azure areas
// are out of its scope); an Azure run keeps every spec, and the AWS specs
// are not applicable there (no board without the `aws` capability runs them).
func cloudScope(meta *reports.RunMeta, o fixtures.Options, filter string) string {
	meta.Cloud = o.CloudOf()
	if meta.Cloud != fixtures.CloudAWS {
		return filter
	}
	meta.HubVersion = "awsiot " + awsiot.Version
	if filter == "" {
		filter = "AWS"
	} else {
		filter = "(" + filter + ") && AWS"
	}
	meta.LabelFilter = filter
	return filter
}

// inCloud reports whether a requirement area belongs in the report of a
// run judged against o's cloud.
func inCloud(o fixtures.Options, area string) bool {
	if o.CloudOf() == fixtures.CloudAWS {
		return area == "AWS"
	}
	return true
}

// NewAWSSession starts an AWS spec's session; a board that does not
// declare `aws` makes the spec not applicable.
func NewAWSSession(ctx context.Context, o fixtures.AWSSessionOptions) *fixtures.AWSSession {
	GinkgoHelper()
	e := env
	Expect(e).NotTo(BeNil(), "suites.Run sets up the environment; specs cannot run under plain `go test`")
	if !boardHas(agentproto.CapAWS) {
		Skip(notApplicable + "board does not declare capability aws")
	}
	if e.AWS == nil {
		Skip(notApplicable + "this run is judged against Azure IoT Hub; AWS specs run with --cloud aws")
	}
	if o.Name == "" {
		o.Name = strings.ToLower(firstRequirement())
	}
	s, err := e.NewAWSSession(ctx, o)
	if s != nil {
		awsCurrent = s
		DeferCleanup(func(ctx SpecContext) { s.Close(ctx) })
	}
	if err != nil {
		if isUnsupported(err) {
			PreconditionUnmet("AWS session setup: the board answered " + err.Error())
		}
		Fail("AWS session setup: " + err.Error())
	}
	return s
}

// awsTLS returns the TLS events (finished or failed) in tr.
func awsTLS(tr []hub.Entry) []hub.Entry {
	var out []hub.Entry
	for _, e := range tr {
		if e.Dir == hub.DirEvent && (e.Type == hub.EventTLS || e.Type == hub.EventTLSFailed) && e.TLS != nil {
			out = append(out, e)
		}
	}
	return out
}

// awsDoc decodes a JSON payload (nil when it is not a JSON object).
func awsDoc(b []byte) map[string]any {
	var m map[string]any
	if json.Unmarshal(b, &m) != nil {
		return nil
	}
	return m
}

// jsonEq compares two values as JSON.
func jsonEq(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func awsTrace(s *fixtures.AWSSession) string { return s.TraceText() }

func describeErr(err error) string {
	if err == nil {
		return "no error"
	}
	return fmt.Sprintf("%v", err)
}
