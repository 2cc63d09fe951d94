package blob

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"
)

// A SAS-like token in the shape of Azure Storage service SAS (seed 004
// L126: sp, st, se, spr, sv, sr, sig), signed by this endpoint's account
// key. The string to sign is the endpoint's own (documented in
// StringToSign), not Azure Storage's: hilrun only needs a token that a
// device carries opaquely and that the endpoint can check (OTA-003, FUP-002).

// Permissions of a token (sp): read, add, create, write, delete.
const (
	PermRead   = "r"
	PermWrite  = "w"
	PermCreate = "c"
)

// SASVersion is the sv the endpoint issues (the version in seed 004 L126).
const SASVersion = "2020-08-04"

// timeLayout is how st and se are written (seed 004 L126).
const timeLayout = "2006-01-02T15:04:05Z"

// maxTokenLen bounds a query string the endpoint parses.
const maxTokenLen = 4096

// Token is a parsed SAS query.
type Token struct {
	Permissions string    // sp
	Start       time.Time // st (zero: none)
	Expiry      time.Time // se
	Protocol    string    // spr: "https" or "https,http"
	Version     string    // sv
	Resource    string    // sr: "c" (container) or "b" (one blob)
	Signature   string    // sig (Base64)
	// Fields lists the query parameter names present, in order of name.
	Fields []string
}

// tokenFields are the parameters a token must carry.
var tokenFields = []string{"se", "sig", "sp", "spr", "sr", "sv"}

// ParseToken parses the query part of a blob URL (without "?"). It
// refuses duplicate or missing parameters and times that do not parse;
// it does not check the signature (see Server.authorize).
func ParseToken(query string) (Token, error) {
	if len(query) > maxTokenLen {
		return Token{}, fmt.Errorf("query string is %d bytes (at most %d)", len(query), maxTokenLen)
	}
	v, err := url.ParseQuery(query)
	if err != nil {
		return Token{}, fmt.Errorf("query string does not parse: %v", err)
	}
	var t Token
	for k, vals := range v {
		if len(vals) != 1 {
			return Token{}, fmt.Errorf("parameter %q given %d times", k, len(vals))
		}
		t.Fields = append(t.Fields, k)
	}
	sort.Strings(t.Fields)
	for _, f := range tokenFields {
		if _, ok := v[f]; !ok {
			return Token{}, fmt.Errorf("no SAS parameter %q", f)
		}
	}
	t.Permissions, t.Protocol, t.Version, t.Resource, t.Signature = v.Get("sp"), v.Get("spr"), v.Get("sv"), v.Get("sr"), v.Get("sig")
	if t.Expiry, err = time.Parse(timeLayout, v.Get("se")); err != nil {
		return Token{}, errors.New("se is not a UTC time like 2022-05-01T15:36:22Z")
	}
	if st := v.Get("st"); st != "" {
		if t.Start, err = time.Parse(timeLayout, st); err != nil {
			return Token{}, errors.New("st is not a UTC time like 2022-02-23T08:36:22Z")
		}
	}
	if t.Resource != "c" && t.Resource != "b" {
		return Token{}, fmt.Errorf("sr %q: want c (container) or b (blob)", t.Resource)
	}
	if t.Protocol != "https" && t.Protocol != "https,http" {
		return Token{}, fmt.Errorf("spr %q: want https or https,http", t.Protocol)
	}
	for _, p := range t.Permissions {
		if !strings.ContainsRune("racwdl", p) {
			return Token{}, fmt.Errorf("sp %q: unknown permission %q", t.Permissions, p)
		}
	}
	if _, err := base64.StdEncoding.DecodeString(t.Signature); err != nil || t.Signature == "" {
		return Token{}, errors.New("sig is not Base64")
	}
	return t, nil
}

// StringToSign is what a token's sig is the HMAC-SHA256 of, under the
// account key: sp, st, se, the canonical resource
// "/blob/{account}/{container}" (plus "/{blob}" for sr=b), spr, sv and sr,
// each followed by a newline.
func StringToSign(t Token, account, container, blobName string) string {
	res := "/blob/" + account + "/" + container
	if t.Resource == "b" {
		res += "/" + blobName
	}
	st := ""
	if !t.Start.IsZero() {
		st = t.Start.UTC().Format(timeLayout)
	}
	return strings.Join([]string{t.Permissions, st, t.Expiry.UTC().Format(timeLayout), res, t.Protocol, t.Version, t.Resource}, "\n") + "\n"
}

func sign(key []byte, s string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(s))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// encode writes a token as a query string (no "?"), parameters in the
// order of seed 004 L126.
func (t Token) encode() string {
	q := []string{"sp=" + url.QueryEscape(t.Permissions)}
	if !t.Start.IsZero() {
		q = append(q, "st="+t.Start.UTC().Format(timeLayout))
	}
	q = append(q, "se="+t.Expiry.UTC().Format(timeLayout), "spr="+url.QueryEscape(t.Protocol),
		"sv="+t.Version, "sr="+t.Resource, "sig="+url.QueryEscape(t.Signature))
	return strings.Join(q, "&")
}
