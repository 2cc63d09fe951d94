package hub

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// waitRevokedClose waits for the conn-closed entry of clientID after seq
// and checks that it names RECON-004 and contains reason.
func (e *restEnv) waitRevokedClose(clientID string, after uint64, reason string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got *Entry
	err := e.h.Wait(ctx, func() bool {
		for _, x := range e.h.Trace().ForClient(clientID) {
			if x.Seq > after && x.Type == EventConnClosed {
				got = &x
				return true
			}
		}
		return false
	})
	if err != nil {
		e.t.Fatalf("no conn-closed entry for %s within 5 s: %v", clientID, err)
	}
	if got.Requirement != "RECON-004" || !strings.Contains(got.Reason, reason) {
		e.t.Fatalf("close entry %q [%s], want RECON-004 and %q", got.Reason, got.Requirement, reason)
	}
}

func TestRESTDisableAndDeleteCloseConnections(t *testing.T) {
	// The service API's PUT of a device identity with "status": "disabled"
	// (002 L11098, L11222) and its DELETE end the device's live connection
	// and its modules'.
	e := restStart(t)
	d := e.putDevice("/devices/rest-dis")
	m := e.putDevice("/devices/rest-dis/modules/m1")
	e.restConnect(d)
	e.restConnect(m)

	after := e.h.Trace().LastSeq()
	body := map[string]any{"deviceId": "rest-dis", "status": "disabled", "authentication": d.Authentication}
	e.expect(http.StatusOK, http.MethodPut, "/devices/rest-dis", body, map[string]string{"If-Match": "*"})
	if e.h.Connected(d.Identity()) || e.h.Connected(m.Identity()) {
		t.Fatal("device or module still reported connected after the PUT returned")
	}
	e.waitRevokedClose("rest-dis", after, "disabled")
	e.waitRevokedClose("rest-dis/m1", after, "disabled")

	// Enabled again with the same keys: both connect.
	body["status"] = "enabled"
	e.expect(http.StatusOK, http.MethodPut, "/devices/rest-dis", body, map[string]string{"If-Match": "*"})
	e.restConnect(d)
	e.restConnect(m)

	after = e.h.Trace().LastSeq()
	e.expect(http.StatusNoContent, http.MethodDelete, "/devices/rest-dis", nil, map[string]string{"If-Match": "*"})
	e.waitRevokedClose("rest-dis", after, "deleted")
	e.waitRevokedClose("rest-dis/m1", after, "deleted")
}
