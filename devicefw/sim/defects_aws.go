package sim

// Defect switches of the AWS IoT Core image (--cloud aws), each modelled
// on a known bug or limitation of the seed SDK nanoFramework.Aws.IoTCore.
// Devices (seed 001; device-sdk-behaviours.md §2) or on a classic AWS
// client mistake. DEFECTS.md, section "AWS specs", lists them.
const (
	DefAWSPlaintext       = "aws-plaintext"
	DefAWSNoClientCert    = "aws-no-client-cert"
	DefAWSSkipVerify      = "aws-skip-server-verify"
	DefAWSLegacyEndpoint  = "aws-legacy-endpoint"
	DefAWSClientIDSuffix  = "aws-clientid-not-thing"
	DefAWSQoS0Default     = "aws-qos0-default"
	DefAWSNoVersion       = "aws-no-version"
	DefAWSClientTokenJSON = "aws-clienttoken-invalid-json"
	DefAWSDeltaAsShadow   = "aws-delta-as-shadow"
	DefAWSShadowWildcard  = "aws-shadow-wildcard"
	DefAWSRotateIgnored   = "aws-rotate-ignored"
	DefAWSPubackSuccess   = "aws-puback-success"
)

var awsDefects = []Defect{
	{DefAWSPlaintext, "AWS-001", "MQTT goes over plain TCP to the TLS port instead of TLS"},
	{DefAWSNoClientCert, "AWS-002", "no client certificate is presented; a username and password stand in (the IAM path the seed SDK lists but does not support)"},
	{DefAWSSkipVerify, "AWS-003", "the server certificate chain is not verified (any root, any name)"},
	{DefAWSLegacyEndpoint, "AWS-004", "SNI names the legacy endpoint `<account>.iot.<region>.amazonaws.com` instead of the ATS one"},
	{DefAWSClientIDSuffix, "AWS-005", "the MQTT ClientId is `{thing}-client` instead of the thing name"},
	{DefAWSQoS0Default, "AWS-006", "telemetry is always published at QoS 0 (the seed SDK's AtMostOnce default), whatever QoS was configured"},
	{DefAWSNoVersion, "AWS-007", "no version handling: the version of the fetched shadow is dropped (0) and updates never carry one (seed SDK: no version/409 handling)"},
	{DefAWSClientTokenJSON, "AWS-008", "the update document carries `,clientToken:{token}` unquoted, invalid JSON (the seed SDK's ToJson)"},
	{DefAWSDeltaAsShadow, "AWS-009", "the update/delta body is parsed as a full shadow, so the application gets its empty state.desired instead of the delta keys (seed SDK)"},
	{DefAWSShadowWildcard, "AWS-010", "subscribes to `$aws/things/{thing}/shadow/#` instead of the answer topics (seed SDK), receiving its own requests back"},
	{DefAWSRotateIgnored, "AWS-011", "creds.rotate stores the new certificate but reconnects with the old one"},
	{DefAWSPubackSuccess, "AWS-012", "a shadow update counts as accepted once its PUBACK arrives, without waiting for update/accepted (seed SDK)"},
}

func init() { Defects = append(Defects, awsDefects...) }
