package hub

import (
	"context"
	"log/slog"
	"strconv"

	"github.com/mochi-mqtt/server/v2/packets"
)

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

// mochiLogger is the broker library's logger: its records with an empty
// message (a connection it ended, e.g. "packet rejected" after a hub
// refusal that logRefusal has already explained) are dropped when they
// only repeat a refusal, and otherwise get a message saying what they are.
func mochiLogger(log *slog.Logger) *slog.Logger {
	return slog.New(mochiHandler{log.Handler()}).With("component", "mochi")
}

type mochiHandler struct{ next slog.Handler }

func (m mochiHandler) Enabled(ctx context.Context, l slog.Level) bool { return m.next.Enabled(ctx, l) }

func (m mochiHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message != "" {
		return m.next.Handle(ctx, r)
	}
	var errText string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "error" {
			errText = a.Value.String()
		}
		return true
	})
	if errText == packets.ErrRejectPacket.Error() {
		return nil // the refusal that caused it is logged with its reason and rule
	}
	nr := slog.NewRecord(r.Time, r.Level, "mqtt broker: connection ended", r.PC)
	r.Attrs(func(a slog.Attr) bool { nr.AddAttrs(a); return true })
	return m.next.Handle(ctx, nr)
}

func (m mochiHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return mochiHandler{m.next.WithAttrs(as)}
}

func (m mochiHandler) WithGroup(name string) slog.Handler {
	return mochiHandler{m.next.WithGroup(name)}
}
