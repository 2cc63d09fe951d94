package awsiot

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/hilrun/hilrun/certs"
	"github.com/hilrun/hilrun/rig/awsproto"
	"github.com/hilrun/hilrun/rig/hub"
)

// The REST API. AWS IoT's data plane paths (GetThingShadow,
// UpdateThingShadow, DeleteThingShadow, Publish) plus hilrun's registry
// and trace under /hilrun/. Every call needs `Authorization: Bearer
// <ServiceKey>` (AWS signs with SigV4; a local stand-in keeps one key).
//
//	GET    /things/{thing}/shadow[?name=N]        → shadow document | 404 error document
//	POST   /things/{thing}/shadow[?name=N]        update document → accepted document | error document
//	DELETE /things/{thing}/shadow[?name=N]
//	POST   /topics/{topic}?qos=0|1[&retain=true]  body = payload
//	PUT    /hilrun/things/{thing}                 {"policy": …} (optional) → thing
//	POST   /hilrun/cacertificates                 {"certificatePem"} → {"certificateId"}
//	POST   /hilrun/certificates                   {"certificatePem","thing"} → certificate
//	PUT    /hilrun/certificates/{id}?newStatus=REVOKED|INACTIVE|ACTIVE
//	GET    /hilrun/trace[?client=ID]
const restMaxBody = 1 << 20

func (e *Endpoint) restHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /things/{thing}/shadow", func(w http.ResponseWriter, r *http.Request) {
		b, err := e.GetShadow(r.PathValue("thing"), r.URL.Query().Get("name"))
		if err != nil {
			writeErr(w, awsproto.NotFound(r.PathValue("thing"), r.URL.Query().Get("name"), e.now(), ""))
			return
		}
		writeRaw(w, 200, b)
	})
	mux.HandleFunc("POST /things/{thing}/shadow", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, restMaxBody))
		if err != nil {
			writeErr(w, &awsproto.Error{Code: 400, Message: err.Error()})
			return
		}
		b, err := e.UpdateShadow(r.PathValue("thing"), r.URL.Query().Get("name"), body)
		if err != nil {
			writeErr(w, err)
			return
		}
		writeRaw(w, 200, b)
	})
	mux.HandleFunc("DELETE /things/{thing}/shadow", func(w http.ResponseWriter, r *http.Request) {
		b, err := e.DeleteShadow(r.PathValue("thing"), r.URL.Query().Get("name"))
		if err != nil {
			writeErr(w, err)
			return
		}
		writeRaw(w, 200, b)
	})
	mux.HandleFunc("POST /topics/{topic...}", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, awsproto.MaxPayloadBytes+1))
		if err != nil {
			writeErr(w, &awsproto.Error{Code: 400, Message: err.Error()})
			return
		}
		qos, _ := strconv.Atoi(r.URL.Query().Get("qos"))
		if err := e.Publish(r.PathValue("topic"), body, byte(qos), r.URL.Query().Get("retain") == "true"); err != nil {
			writeErr(w, &awsproto.Error{Code: 400, Message: err.Error()})
			return
		}
		writeJSON(w, 200, map[string]string{"message": "OK"})
	})
	mux.HandleFunc("PUT /hilrun/things/{thing}", func(w http.ResponseWriter, r *http.Request) {
		var t Thing
		if r.ContentLength != 0 {
			if err := json.NewDecoder(io.LimitReader(r.Body, restMaxBody)).Decode(&t); err != nil && !errors.Is(err, io.EOF) {
				writeErr(w, &awsproto.Error{Code: 400, Message: "invalid JSON: " + err.Error()})
				return
			}
		}
		t.Name = r.PathValue("thing")
		out, err := e.reg.AddThing(t)
		if err != nil {
			writeErr(w, &awsproto.Error{Code: 400, Message: err.Error()})
			return
		}
		writeJSON(w, 200, out)
	})
	type certBody struct {
		PEM   string `json:"certificatePem"`
		Thing string `json:"thing"`
	}
	readCert := func(w http.ResponseWriter, r *http.Request) (certBody, bool) {
		var b certBody
		if err := json.NewDecoder(io.LimitReader(r.Body, restMaxBody)).Decode(&b); err != nil {
			writeErr(w, &awsproto.Error{Code: 400, Message: "invalid JSON: " + err.Error()})
			return b, false
		}
		return b, true
	}
	mux.HandleFunc("POST /hilrun/cacertificates", func(w http.ResponseWriter, r *http.Request) {
		b, ok := readCert(w, r)
		if !ok {
			return
		}
		cs, err := certs.ParseCertificatesPEM([]byte(b.PEM))
		if err != nil || len(cs) == 0 {
			writeErr(w, &awsproto.Error{Code: 400, Message: "certificatePem holds no certificate"})
			return
		}
		writeJSON(w, 200, map[string]string{"certificateId": e.reg.AddCA(cs[0])})
	})
	mux.HandleFunc("POST /hilrun/certificates", func(w http.ResponseWriter, r *http.Request) {
		b, ok := readCert(w, r)
		if !ok {
			return
		}
		cs, err := certs.ParseCertificatesPEM([]byte(b.PEM))
		if err != nil || len(cs) == 0 {
			writeErr(w, &awsproto.Error{Code: 400, Message: "certificatePem holds no certificate"})
			return
		}
		c, err := e.reg.AddCertificate(cs[0], b.Thing, cs[1:]...)
		if err != nil {
			writeErr(w, &awsproto.Error{Code: 404, Message: err.Error()})
			return
		}
		writeJSON(w, 200, c)
	})
	mux.HandleFunc("PUT /hilrun/certificates/{id}", func(w http.ResponseWriter, r *http.Request) {
		if err := e.reg.SetStatus(r.PathValue("id"), r.URL.Query().Get("newStatus")); err != nil {
			code := 400
			if errors.Is(err, ErrNotFound) {
				code = 404
			}
			writeErr(w, &awsproto.Error{Code: code, Message: err.Error()})
			return
		}
		c, _ := e.reg.Certificate(r.PathValue("id"))
		writeJSON(w, 200, c)
	})
	mux.HandleFunc("GET /hilrun/trace", func(w http.ResponseWriter, r *http.Request) {
		client := r.URL.Query().Get("client")
		w.Header().Set("Content-Type", "application/json")
		_ = e.trace.WriteJSON(w, func(en *hub.Entry) bool { return client == "" || en.ClientID == client })
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(tok), []byte(e.cfg.ServiceKey)) != 1 {
			writeErr(w, &awsproto.Error{Code: 401, Message: awsproto.MsgUnauthorized})
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func writeRaw(w http.ResponseWriter, code int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, _ := json.Marshal(v)
	writeRaw(w, code, b)
}

func writeErr(w http.ResponseWriter, err error) {
	var ae *awsproto.Error
	if !errors.As(err, &ae) {
		ae = &awsproto.Error{Code: 500, Message: err.Error()}
	}
	writeRaw(w, ae.Code, ae.Marshal())
}
