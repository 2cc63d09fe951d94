package sim

// Defect switches added for the C2D and METH conformance specs. Each needs a row
// in DEFECTS.md (section "C2D and METH specs") and an implementation at the point
// in the client where the rule is kept.

// Names of the C2D and METH defect switches.
const (
	DefC2DBagNotDecoded     = "c2d-bag-not-decoded"
	DefC2DInboxLimit        = "c2d-inbox-limit"
	DefC2DTruncate          = "c2d-truncate-32k"
	DefMethodSubPerName     = "method-subscribe-per-name"
	DefMethodEmptyBody      = "method-empty-body-ignored"
	DefMethodBodyNotJSON    = "method-body-not-json"
	DefMethodReplyLate      = "method-reply-late"
	DefMethodRequest64K     = "method-request-64k"
	DefMethodRequestPuback  = "method-request-puback"
	DefMethodReplyLastRID   = "method-reply-last-rid"
	DefMethodFailNoReply    = "method-fail-no-reply"
	DefMethodNameCaseFold   = "method-name-case-fold"
	c2dInboxLimit           = 10
	c2dTruncateBytes        = 32 * 1024
	methodReplyLateDelay    = 3 * 1000 // ms
	methodRequestLimitBytes = 64 * 1024
)

// c2dMethodDefects lists them; see Defects.
var c2dMethodDefects = []Defect{
	{DefC2DBagNotDecoded, "C2D-002", "C2D property bags are reported without percent-decoding: \"%24.mid\" stays a key, \"a%20b\" a value"},
	{DefC2DInboxLimit, "C2D-006", "at most 10 C2D deliveries are taken per connection; later ones on that connection are neither reported nor acknowledged (an undersized inbound queue)"},
	{DefC2DTruncate, "C2D-007", "C2D payloads above 32 KB are cut to their first 32 KB (a fixed receive buffer) and still acknowledged"},
	{DefMethodSubPerName, "METH-001", "methods are subscribed one filter per defined method ($iothub/methods/POST/{name}/#) instead of $iothub/methods/POST/#"},
	{DefMethodEmptyBody, "METH-002", "method requests with an empty body get no response (the handler expects JSON)"},
	{DefMethodBodyNotJSON, "METH-005", "a method answered without a payload gets the text body OK instead of an empty or JSON body"},
	{DefMethodReplyLate, "METH-006", "method responses go out 3 s after the handler finished (queued behind other work), past short caller timeouts"},
	{DefMethodRequest64K, "METH-007", "method requests above 64 KB are dropped unanswered"},
	{DefMethodRequestPuback, "METH-008", "every method request (QoS 0) is answered with a PUBACK carrying packet id 0 before the response"},
	{DefMethodReplyLastRID, "METH-009", "method responses carry the $rid of the most recent request (one shared rid slot), so overlapping calls get crossed rids"},
	{DefMethodFailNoReply, "METH-011", "a method whose handler fails gets no response at all"},
	{DefMethodNameCaseFold, "METH-012", "method names are looked up case-insensitively (\"reboot\" runs \"Reboot\")"},
}
