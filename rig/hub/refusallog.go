package hub

import "strconv"

// logRefusal logs every refusal the hub makes — a rule the device broke
// (the connection is closed), a CONNECT refused, a tolerated deviation, a
// failed TLS handshake, plaintext on a TLS port — with its reason and the
// requirement ID it enforces, so that a developer running `hilrun hub`
// sees why a client was cut off (issue 16: an undocumented topic was
// logged with an empty message and no rule ID). Entries are masked before
// they reach here (Trace.add), so no secret is logged.
func (h *Hub) logRefusal(e Entry) {
	if e.Dir != DirEvent {
		return
	}
	var msg string
	switch e.Type {
	case EventViolation:
		msg = "hub closed the connection: the device broke a documented rule"
	case EventConnRejected:
		msg = "hub refused CONNECT"
	case EventWarning:
		msg = "hub tolerated a deviation from the documentation"
	case EventTLSFailed:
		msg = "TLS handshake failed"
	case EventPlaintext:
		msg = "plaintext MQTT on a TLS port refused"
	default:
		return
	}
	attrs := []any{"client", e.ClientID, "conn", e.ConnID}
	if e.Remote != "" {
		attrs = append(attrs, "remote", e.Remote)
	}
	reason := e.Reason
	if reason == "" {
		reason = "no reason recorded"
	}
	rule := e.Requirement
	if rule == "" {
		rule = "-"
	}
	attrs = append(attrs, "reason", reason, "requirement", rule)
	if e.Type == EventConnRejected {
		attrs = append(attrs, "returnCode", strconv.Itoa(int(e.ReturnCode)))
	}
	if e.Topic != "" {
		attrs = append(attrs, "topic", e.Topic)
	}
	h.log.Warn(msg, attrs...)
}
