package dps

// The service REST API of the reference DPS, on its own HTTPS listener
// (Config.RESTAddr), with the paths of the DPS service API: individual
// enrollments (/enrollments/{registrationId}), enrollment groups
// (/enrollmentGroups/{id}) and registration states
// (/registrations/{registrationId}), plus hilrun's /hilrun/faults/{id}.
// Every request carries a SAS token in the Authorization header, sr = the
// DPS host, skn = provisioningserviceowner, signed with ServiceKey.

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/iothub"
	"github.com/hilrun/hilrun/rig/secrets"
)

// ServicePolicy is the shared access policy of the service API.
const ServicePolicy = "provisioningserviceowner"

const restMaxBody = 64 * 1024

// ServiceKey is the service policy's key (Base64; a registered secret).
func (e *Endpoint) ServiceKey() string { return e.svcKey }

// RESTAddr is the bound service API address, "" when off.
func (e *Endpoint) RESTAddr() string {
	if e.restLn == nil {
		return ""
	}
	return e.restLn.Addr().String()
}

func (e *Endpoint) startREST(addr string) error {
	e.svcKey = hub.NewKey()
	secrets.AddBase64("DPS service policy key", e.svcKey)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("dps REST listener %s: %w", addr, err)
	}
	e.restLn = ln
	e.restSrv = &http.Server{Handler: http.HandlerFunc(e.serveREST), ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second}
	tl := tls.NewListener(ln, &tls.Config{MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return e.cert.Load(), nil }})
	go func() { _ = e.restSrv.Serve(tl) }()
	return nil
}

type restErr struct {
	status int
	code   int
	msg    string
}

func (r restErr) Error() string { return r.msg }

func (e *Endpoint) serveREST(w http.ResponseWriter, r *http.Request) {
	err := e.route(w, r)
	if err == nil {
		return
	}
	var re restErr
	if !errors.As(err, &re) {
		re = restErr{http.StatusBadRequest, 400004, err.Error()}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(re.status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errorCode": re.code, "message": re.msg})
}

func (e *Endpoint) authorize(r *http.Request) error {
	tok, err := iothub.ParseSASToken(r.Header.Get("Authorization"))
	if err != nil {
		return restErr{401, 401002, "Authorization is not a SAS token"}
	}
	sr, _ := tok.ResourceURI()
	host, _, _ := strings.Cut(sr, "/")
	if tok.KeyName != ServicePolicy || !strings.EqualFold(host, e.cfg.Host) {
		return restErr{401, 401002, "token must name skn=" + ServicePolicy + " and sr=" + e.cfg.Host}
	}
	if ok, _ := tok.Verify(e.svcKey); !ok || !tok.ExpiresAt().After(e.cfg.Now()) {
		return restErr{401, 401002, "signature invalid or token expired"}
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

func readJSON(r *http.Request, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, restMaxBody+1))
	if err != nil {
		return err
	}
	if len(b) > restMaxBody {
		return restErr{413, 413001, fmt.Sprintf("body above %d bytes", restMaxBody)}
	}
	if err := json.Unmarshal(b, v); err != nil {
		return restErr{400, 400004, "body is not the expected JSON: " + err.Error()}
	}
	return nil
}

func (e *Endpoint) route(w http.ResponseWriter, r *http.Request) error {
	if err := e.authorize(r); err != nil {
		return err
	}
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	notFound := restErr{404, 404000, "no such resource"}
	switch {
	case len(segs) == 2 && (segs[0] == "enrollments" || segs[0] == "enrollmentGroups"):
		group := segs[0] == "enrollmentGroups"
		switch r.Method {
		case http.MethodPut:
			var en Enrollment
			if err := readJSON(r, &en); err != nil {
				return err
			}
			var out Enrollment
			var err error
			if group {
				en.GroupID = segs[1]
				out, err = e.AddGroup(en)
			} else {
				en.RegistrationID = segs[1]
				out, err = e.AddIndividual(en)
			}
			if err != nil {
				return restErr{400, 400004, err.Error()}
			}
			return writeJSON(w, 200, out)
		case http.MethodGet:
			var en Enrollment
			var ok bool
			if group {
				en, ok = e.Group(segs[1])
			} else {
				en, ok = e.Individual(segs[1])
			}
			if !ok {
				return notFound
			}
			return writeJSON(w, 200, en)
		case http.MethodDelete:
			ok := false
			if group {
				ok = e.DeleteEnrollment("", segs[1])
			} else {
				ok = e.DeleteEnrollment(segs[1], "")
			}
			if !ok {
				return notFound
			}
			w.WriteHeader(http.StatusNoContent)
			return nil
		}
	case len(segs) == 1 && segs[0] == "registrations" && r.Method == http.MethodGet:
		return writeJSON(w, 200, e.Registrations())
	case len(segs) == 2 && segs[0] == "registrations" && r.Method == http.MethodGet:
		reg, ok := e.Registration(segs[1])
		if !ok {
			return notFound
		}
		return writeJSON(w, 200, reg)
	case len(segs) == 3 && segs[0] == "hilrun" && segs[1] == "faults" && r.Method == http.MethodPut:
		var f Faults
		if err := readJSON(r, &f); err != nil {
			return err
		}
		e.SetFaults(segs[2], f)
		return writeJSON(w, 200, f)
	default:
		return notFound
	}
	return restErr{405, 405000, "method not allowed"}
}
