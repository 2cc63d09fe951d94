package sim

import (
	"crypto/tls"
	"crypto/x509"
)

// Defect switches added for the AWS boundary specs (issue 15): bugs at a
// boundary the one-example AWS specs did not visit (a server chain bad in
// another way than its root, a long thing name, a named shadow's delta).
// Each has a row in DEFECTS.md ("Added for the AWS boundary specs").
const (
	DefAWSSkipHostname      = "aws-skip-hostname"
	DefAWSIgnoreValidity    = "aws-ignore-validity"
	DefAWSClientID23        = "aws-clientid-23"
	DefAWSNamedDeltaClassic = "aws-named-delta-as-classic"
	DefAWSIAMFallback       = "aws-iam-fallback"
)

var awsBoundsDefects = []Defect{
	{DefAWSSkipHostname, "AWS-003", "the server chain is verified against the trusted root and the clock, but not against the endpoint's host name"},
	{DefAWSIgnoreValidity, "AWS-003", "the server chain's signatures and host name are checked, its validity dates are not (an expired leaf is accepted)"},
	{DefAWSClientID23, "AWS-005", "the ClientId is cut to 23 characters (the MQTT 3.1 limit), so a longer thing name is not the ClientId"},
	{DefAWSIAMFallback, "AWS-002", "after a refused certificate the next attempts go without a client certificate, with a username and password instead (an IAM fallback the SDK does not offer)"},
	{DefAWSNamedDeltaClassic, "AWS-009", "the delta topic's shadow name is not parsed: a named shadow's delta reaches the application as the classic shadow's"},
}

func init() { Defects = append(Defects, awsBoundsDefects...) }

// awsVerifyDefects weakens the server check in one way each, as a
// hand-rolled verifier does (InsecureSkipVerify plus its own check).
func (ac *awsClient) awsVerifyDefects(tlsc *tls.Config, trust []*x509.Certificate, host string) {
	now := ac.fw.rtc.Now
	switch {
	case ac.on(DefAWSSkipHostname):
		verifyChainSkippingHostname(tlsc, now)
	case ac.on(DefAWSIgnoreValidity):
		tlsc.InsecureSkipVerify = true
		tlsc.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			return verifyIgnoringDates(raw, trust, host) // defect: no dates
		}
	}
}
