package hub

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
)

// TestServiceBlobAndUsageREST: a service stores a file and gets its URL
// and a read token; reads it back; lists the endpoint; reads usage and
// notifications; bad input is refused.
func TestServiceBlobAndUsageREST(t *testing.T) {
	e := restStart(t)
	name := url.PathEscape("fw/app.pe")
	res, body := e.do(http.MethodPut, "/hilrun/blobs/"+name, []byte("application"), nil)
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("PUT blob: %d %s", res.StatusCode, body)
	}
	var put struct{ URL, Token string }
	if err := json.Unmarshal(body, &put); err != nil || put.URL != e.h.Blob().URL("fw/app.pe") || put.Token == "" {
		t.Fatalf("PUT answer %s (%v)", body, err)
	}
	if res, body := e.do(http.MethodGet, "/hilrun/blobs/"+name, nil, nil); res.StatusCode != 200 || string(body) != "application" {
		t.Fatalf("GET blob: %d %q", res.StatusCode, body)
	}
	if res, body := e.do(http.MethodGet, "/hilrun/blobs", nil, nil); res.StatusCode != 200 {
		t.Fatalf("GET blobs: %d %s", res.StatusCode, body)
	}
	if res, body := e.do(http.MethodPut, "/hilrun/blobs/"+url.PathEscape("../x"), []byte("x"), nil); res.StatusCode != http.StatusBadRequest {
		t.Fatalf("PUT ../x: %d %s", res.StatusCode, body)
	}
	if res, body := e.do(http.MethodGet, "/hilrun/blobs/missing", nil, nil); res.StatusCode != http.StatusNotFound {
		t.Fatalf("GET missing: %d %s", res.StatusCode, body)
	}
	res, body = e.do(http.MethodGet, "/hilrun/usage?deviceId=d1", nil, nil)
	var u struct {
		Profile Profile
		Share   Share
	}
	if res.StatusCode != 200 || json.Unmarshal(body, &u) != nil || u.Profile.Tier != "S1" || u.Share.D2CPerSecond != 10 {
		t.Fatalf("usage: %d %s", res.StatusCode, body)
	}
	for _, q := range []string{"", "?deviceId=d1&after=x"} {
		if res, body := e.do(http.MethodGet, "/hilrun/usage"+q, nil, nil); res.StatusCode != http.StatusBadRequest {
			t.Fatalf("usage%s: %d %s", q, res.StatusCode, body)
		}
	}
	if res, body := e.do(http.MethodGet, "/hilrun/files/notifications", nil, nil); res.StatusCode != 200 {
		t.Fatalf("notifications: %d %s", res.StatusCode, body)
	}
}
