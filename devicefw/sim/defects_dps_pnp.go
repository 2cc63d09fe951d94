package sim

// Defect switches added for the DPS and PNP specs. Each has a row in
// DEFECTS.md ("Added for the DPS and PNP specs") and is modelled on a client
// bug of the research notes (device-sdk-behaviours.md §1 "DPS", "Methods",
// "QoS / confirmations") or a common one.
const (
	DefDPSNoSNI                  = "dps-no-sni"
	DefDPSTLSNoVerify            = "dps-tls-no-verify"
	DefDPSUsernameHubForm        = "dps-username-hub-form"
	DefDPSNoSkn                  = "dps-sas-no-skn"
	DefDPSGroupKeyNotDerived     = "dps-group-key-not-derived"
	DefDPSRegisterBeforeSub      = "dps-register-before-subscribe"
	DefDPSRetryAfterFromBody     = "dps-retry-after-from-body"
	DefDPSFailedPolledForever    = "dps-failed-polled-forever"
	DefDPSRegistrationIDAsDevice = "dps-registration-id-as-device"
	DefDPSX509LeafOnly           = "dps-x509-leaf-only"
	DefDPSPayloadString          = "dps-payload-string"
	DefDPSModelIDMissing         = "dps-model-id-missing"

	// CERT-005: the provisioning connection is checked less strictly than
	// the hub's (which the TLS defects leave alone).
	DefDPSTrustServerChain = "dps-trust-server-chain"
	DefDPSSkipHostname     = "dps-skip-hostname"
	DefDPSIgnoreValidity   = "dps-ignore-validity"

	DefPnPModelIDFirstOnly      = "pnp-model-id-first-connect-only"
	DefPnPModelIDNoVersion      = "pnp-model-id-no-version"
	DefPnPAckBareValue          = "pnp-ack-bare-value"
	DefPnPAVNotDesiredVersion   = "pnp-av-not-desired-version"
	DefPnPComponentCmdUnmatched = "pnp-component-command-unmatched"
)

var dpsPnPDefects = []Defect{
	{DefDPSNoSNI, "DPS-001", "the TLS ClientHello to the provisioning service carries no SNI (the chain is still verified against the host)"},
	{DefDPSTLSNoVerify, "DPS-001", "the provisioning connection accepts any server certificate (InsecureSkipVerify), as some samples configure it; the hub connection still verifies"},
	{DefDPSUsernameHubForm, "DPS-002", "the DPS Username uses the IoT Hub form {idScope}/registrations/{registrationId}/?api-version=… (the endpoint refuses it)"},
	{DefDPSNoSkn, "DPS-003", "the registration SAS token carries no skn=registration (as the nanoFramework client's)"},
	{DefDPSGroupKeyNotDerived, "DPS-003", "with a group enrollment the token is signed with the group key itself instead of the key derived for the registration ID"},
	{DefDPSRegisterBeforeSub, "DPS-004", "the registration request is published before $dps/registrations/res/# is subscribed"},
	{DefDPSRetryAfterFromBody, "DPS-005", "retry-after is looked for in the answer body (where it never is), so polls follow at once"},
	{DefDPSFailedPolledForever, "DPS-006", "a 200 answer whose status is failed or disabled does not end the loop: the operation is polled again until the attempt's time bound"},
	{DefDPSRegistrationIDAsDevice, "DPS-006", "after an assignment the hub connection uses the registration ID as device ID instead of the assigned deviceId"},
	{DefDPSX509LeafOnly, "DPS-007", "at DPS the TLS Certificate message carries only the leaf, without the intermediates it sends to the hub"},
	{DefDPSPayloadString, "DPS-008", "custom registration data is sent as a JSON string holding the JSON text (double-encoded)"},
	{DefDPSModelIDMissing, "PNP-006", "the registration payload leaves out modelId although a model ID is configured"},
	{DefDPSTrustServerChain, "CERT-005", "the provisioning connection anchors the chain on the last CA certificate the endpoint sent (as if it were a configured root), so a chain under any root is accepted; name and dates are still checked; the hub connection is unchanged"},
	{DefDPSSkipHostname, "CERT-005", "the provisioning connection verifies the chain against the configured roots and the clock, but not against the DPS host name; the hub connection is unchanged"},
	{DefDPSIgnoreValidity, "CERT-005", "the provisioning connection checks the chain's signatures and the DPS host name but no validity dates (expired and not-yet-valid leaves are accepted); the hub connection is unchanged"},
	{DefPnPModelIDFirstOnly, "PNP-001", "the model ID is in the Username of the first connection of a client.open only; reconnects leave it out"},
	{DefPnPModelIDNoVersion, "PNP-002", "the model ID is cut at ';' (its version dropped) before it goes into the Username"},
	{DefPnPAckBareValue, "PNP-003", "writable-property acknowledgements report the bare value instead of {value, ac, av, ad}"},
	{DefPnPAVNotDesiredVersion, "PNP-004", "av is the twin's reported-properties version instead of the $version of the desired patch"},
	{DefPnPComponentCmdUnmatched, "PNP-005", "commands of a component (method component*command) are never matched and answered as unknown methods (404), as in the nanoFramework client"},
}
