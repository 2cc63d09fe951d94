// Package secrets is the rig's one redaction rule. Every key, token and
// private key the rig provisions (device, module and policy symmetric keys,
// the SAS tokens it signs, the private keys of its test PKI, Wi-Fi
// passwords) is registered here at the moment it is created, and Mask hides
// any occurrence of a registered secret in the forms it takes on its way into
// a trace, a log or a report: the text itself, its bytes, standard and
// URL-safe Base64 with and without padding, hex, percent-encoded (upper- and
// lower-case hex), JSON- and HTML-escaped, and for private keys their DER,
// PEM and every PEM line that carries private material.
//
// Masking by value complements the pattern rules elsewhere (reports.Redact
// knows "sig=" and "SharedAccessKey="): a pattern cannot recognise a bare
// device key sent as a password, a registry can.
//
// The rig masks at the source, before text reaches a hub trace entry, a
// console log line, a spec failure or a report file, so a secret is not
// stored first and filtered later.
package secrets

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Redacted replaces every masked occurrence.
const Redacted = "<redacted>"

// MinLen is the shortest form that is masked. Shorter forms would hit
// ordinary text (a 4-byte key's raw bytes are likely somewhere in any
// payload) and are no credential anyone provisions.
const MinLen = 8

// The index samples every stride-th position of the text with a window of
// win bytes; a form of at least longMin bytes always has one of its first
// stride windows on a sampled position (see scan). Shorter forms are
// searched one by one. stride trades memory (stride index entries per
// form) against probes per text byte (1/stride): at 4, a secret costs about
// 1.8 KB and a 256-byte payload about 0.2 µs against 2000 secrets.
const (
	win     = 8
	stride  = 4
	longMin = win + stride - 1
)

// Found names a registered secret that Mask hid, never its value.
type Found struct {
	Label string `json:"label"` // what the secret is, as registered ("symmetric key (primary) of dev1")
	Form  string `json:"form"`  // which form of it was seen ("Base64", "URL-encoded Base64", "raw bytes", …)
}

// Form is one registered form of a secret, for scanners and tests.
type Form struct {
	Label string
	Desc  string
	Text  string
}

type form struct {
	text   string
	secret int32
	desc   uint16 // index into Registry.descs: a handful of distinct texts
}

// A window's index value is form<<3 | offset (offset < stride <= 8);
// refMany marks a window value
// shared by several (form, offset) pairs, kept in Registry.many. Almost
// every window is unique, so one map of uint32 holds the index in about 16
// bytes per window.
const refMany = ^uint32(0)

// Registry holds registered secrets and the index Mask scans with. It is
// safe for concurrent use. The zero value is not usable; use New.
type Registry struct {
	// minLen is the length of the shortest registered form, 0 while none
	// is registered: Mask returns at once for shorter text, without a lock.
	minLen atomic.Int64

	mu      sync.RWMutex
	labels  []string
	byValue map[string]int32 // canonical value → secret, so re-registration is free
	forms   []form
	descs   []string
	descIdx map[string]uint16
	long    map[uint64]uint32   // window value → form<<3 | offset, or refMany
	many    map[uint64][]uint32 // the window values shared by several
	filter  []uint64            // bit set over hashed window values; a cheap "not here"
	bits    uint                // log2 of the filter size in bits
	short   []int32             // forms shorter than longMin

	dump func(kind, label, value string) // set on Default when the test dump is on
}

// New returns an empty registry.
func New() *Registry {
	r := &Registry{byValue: map[string]int32{}, descIdx: map[string]uint16{}, long: map[uint64]uint32{}, many: map[uint64][]uint32{}}
	r.resize(16)
	return r
}

// AddText registers a secret that is text only: a Wi-Fi password, a
// connection string, a token. Its text forms are masked (see the package
// comment).
func (r *Registry) AddText(label, s string) {
	if s == "" {
		return
	}
	r.add("text", label, s, func(add adder) { addText(add, "", s) })
}

// AddBase64 registers a secret handed out as Base64 text: symmetric keys
// and SAS signatures. Besides the text forms, the decoded bytes are masked
// with every Base64 flavour and hex of them.
func (r *Registry) AddBase64(label, s string) {
	if s == "" {
		return
	}
	r.add("base64", label, s, func(add adder) {
		addText(add, "Base64", s)
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			if raw, err := enc.DecodeString(s); err == nil && len(raw) > 0 {
				addBytes(add, "", raw)
				break
			}
		}
	})
}

// AddBytes registers a binary secret: its raw bytes, every Base64 flavour
// and hex of them, and the text forms of those.
func (r *Registry) AddBytes(label string, b []byte) {
	if len(b) == 0 {
		return
	}
	r.add("bytes", label, string(b), func(add adder) { addBytes(add, "", b) })
}

// AddPrivateKey registers a private key (*ecdsa.PrivateKey,
// *rsa.PrivateKey, ed25519.PrivateKey): its PKCS#8 DER and the algorithm's
// own DER (SEC 1, PKCS#1), each with the byte forms, as PEM and as every PEM
// body line that carries private material, and the raw private numbers. A
// key of another type is registered by its PKCS#8 DER if it has one.
func (r *Registry) AddPrivateKey(label string, k crypto.PrivateKey) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return
	}
	r.add("pkcs8", label, string(der), func(add adder) { addPrivateKey(add, k, der) })
}

// adder adds one form of the secret being registered.
type adder func(desc, text string)

func (r *Registry) add(kind, label, canonical string, forms func(adder)) {
	r.mu.Lock()
	if id, ok := r.byValue[canonical]; ok {
		// Registered again, usually by the code that gives a generated
		// key its role (NewKey, then the registry naming the identity):
		// the later label is the more specific one.
		changed := r.labels[id] != label
		r.labels[id] = label
		dump := r.dump
		r.mu.Unlock()
		if dump != nil && changed {
			dump(kind, label, canonical) // a later line renames it on load
		}
		return
	}
	id := int32(len(r.labels))
	r.labels = append(r.labels, label)
	r.byValue[canonical] = id
	var cands []candidate
	forms(func(desc, text string) {
		if len(text) >= MinLen && !strings.Contains(Redacted, text) {
			// A form inside the marker would make masked text match again.
			cands = append(cands, candidate{desc, text})
		}
	})
	for _, c := range minimalForms(cands) {
		r.addForm(id, c.desc, c.text)
	}
	r.growFilter()
	dump := r.dump
	r.mu.Unlock()
	if dump != nil {
		dump(kind, label, canonical)
	}
}

type candidate struct{ desc, text string }

// minimalForms drops every form that contains another form of the same
// secret: wherever it occurs the shorter one does too and is masked, so
// indexing both only costs memory. The kept form takes the description of
// the first form it stands for (the padded "Base64 text" rather than the
// unpadded one inside it).
func minimalForms(cs []candidate) []candidate {
	keep := make([]bool, len(cs))
	first := make([]int, len(cs)) // the earliest candidate each one stands for
	for i := range cs {
		keep[i], first[i] = true, i
	}
	for i, c := range cs {
		for j, d := range cs {
			if i == j || !keep[j] || !strings.Contains(c.text, d.text) || (len(d.text) == len(c.text) && j > i) {
				continue
			}
			// d stands for c, and so for everything c stood for.
			keep[i] = false
			first[j] = min(first[j], first[i])
			break
		}
	}
	var out []candidate
	for i, c := range cs {
		if keep[i] {
			out = append(out, candidate{cs[first[i]].desc, c.text})
		}
	}
	return out
}

func (r *Registry) addForm(id int32, desc, text string) {
	di, ok := r.descIdx[desc]
	if !ok {
		di = uint16(len(r.descs))
		r.descs = append(r.descs, desc)
		r.descIdx[desc] = di
	}
	fi := int32(len(r.forms))
	r.forms = append(r.forms, form{text: text, desc: di, secret: id})
	if m := r.minLen.Load(); m == 0 || int64(len(text)) < m {
		r.minLen.Store(int64(len(text)))
	}
	if len(text) < longMin {
		r.short = append(r.short, fi)
		return
	}
	for off := 0; off < stride; off++ {
		v := load64(text, off)
		ref := uint32(fi)<<3 | uint32(off)
		switch old, ok := r.long[v]; {
		case !ok:
			r.long[v] = ref
		case old == refMany:
			r.many[v] = append(r.many[v], ref)
		default:
			r.long[v] = refMany
			r.many[v] = []uint32{old, ref}
		}
		r.setBit(v)
	}
}

// growFilter keeps the bit set at about 16 bits per indexed window, so a
// text window that is no form's window is rejected by one bit test in
// almost all cases.
func (r *Registry) growFilter() {
	want := uint(16)
	for want < 24 && (1<<want) < 16*len(r.long) {
		want++
	}
	if want > r.bits {
		r.resize(want)
		for v := range r.long {
			r.setBit(v)
		}
	}
}

func (r *Registry) resize(bits uint) {
	r.bits = bits
	r.filter = make([]uint64, (1<<bits)/64)
}

func (r *Registry) hash(v uint64) uint64 { return (v * 0x9E3779B97F4A7C15) >> (64 - r.bits) }

func (r *Registry) setBit(v uint64) {
	h := r.hash(v)
	r.filter[h>>6] |= 1 << (h & 63)
}

func load64(s string, i int) uint64 {
	return uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
		uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
}

// match is one occurrence of a form in the scanned text.
type match struct {
	start, end int
	form       int32
}

// scan returns every occurrence of every form in s. The caller holds mu.
//
// Each form of at least longMin bytes is indexed by its windows at offsets
// 0..stride-1. An occurrence starting at p0 covers exactly one sampled
// position p = p0+off (p a multiple of stride, off < stride), and its window
// there lies inside the form because off+win <= longMin <= len(form); so
// sampling every stride-th window finds every occurrence, once.
func (r *Registry) scan(s string) []match {
	var out []match
	filter, bits := r.filter, r.bits
	for p := 0; p+win <= len(s); p += stride {
		v := load64(s, p)
		h := (v * 0x9E3779B97F4A7C15) >> (64 - bits)
		if filter[h>>6]&(1<<(h&63)) == 0 {
			continue
		}
		ref, ok := r.long[v]
		if !ok {
			continue
		}
		refs := []uint32{ref}
		if ref == refMany {
			refs = r.many[v]
		}
		for _, ref := range refs {
			fi := int32(ref >> 3)
			f := r.forms[fi].text
			start := p - int(ref&7)
			if start < 0 || start+len(f) > len(s) || s[start:start+len(f)] != f {
				continue
			}
			out = append(out, match{start, padEnd(s, start+len(f)), fi})
		}
	}
	for _, fi := range r.short {
		f := r.forms[fi].text
		for i := 0; ; {
			j := strings.Index(s[i:], f)
			if j < 0 {
				break
			}
			out = append(out, match{i + j, padEnd(s, i+j+len(f)), fi})
			i += j + 1
		}
	}
	return out
}

// padEnd extends a match over Base64 padding right after it ("=", "==",
// or their percent-encoded "%3D"), so that the unpadded form, which is
// all the index holds, masks a padded occurrence whole.
func padEnd(s string, end int) int {
	for n := 0; n < 2 && end < len(s); n++ {
		switch {
		case s[end] == '=':
			end++
		case end+3 <= len(s) && s[end] == '%' && s[end+1] == '3' && (s[end+2] == 'D' || s[end+2] == 'd'):
			end += 3
		default:
			return end
		}
	}
	return end
}

// maxPasses bounds re-masking: replacing one secret can, for contrived
// secrets, make the marker and its neighbours spell another. Past it the
// whole text is withheld (fail closed).
const maxPasses = 4

// mask replaces every occurrence with Redacted. found collects what was
// hidden when non-nil.
func (r *Registry) mask(s string, found *[]Found) (string, bool) {
	if int64(len(s)) < r.minLen.Load() || r.minLen.Load() == 0 {
		return s, false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	changed := false
	for pass := 0; ; pass++ {
		ms := r.scan(s)
		if len(ms) == 0 {
			return s, changed
		}
		if pass == maxPasses {
			return Redacted, true
		}
		if found != nil && pass == 0 {
			for _, m := range ms {
				f := r.forms[m.form]
				*found = appendFound(*found, Found{Label: r.labels[f.secret], Form: r.descs[f.desc]})
			}
		}
		s, changed = replace(s, ms), true
	}
}

func appendFound(fs []Found, f Found) []Found {
	for _, x := range fs {
		if x == f {
			return fs
		}
	}
	return append(fs, f)
}

// replace substitutes Redacted for the union of the matched ranges.
func replace(s string, ms []match) string {
	sort.Slice(ms, func(i, j int) bool { return ms[i].start < ms[j].start })
	var b strings.Builder
	b.Grow(len(s))
	last := 0
	for i := 0; i < len(ms); {
		start, end := ms[i].start, ms[i].end
		for i++; i < len(ms) && ms[i].start <= end; i++ {
			end = max(end, ms[i].end)
		}
		b.WriteString(s[last:start])
		b.WriteString(Redacted)
		last = end
	}
	b.WriteString(s[last:])
	return b.String()
}

// Mask returns s with every occurrence of a registered secret, in any of
// its forms, replaced by Redacted.
func (r *Registry) Mask(s string) string {
	out, _ := r.mask(s, nil)
	return out
}

// MaskFind is Mask that also says what it hid.
func (r *Registry) MaskFind(s string) (string, []Found) {
	var found []Found
	out, _ := r.mask(s, &found)
	return out, found
}

// MaskBytes is Mask for bytes. It returns b itself (not a copy) when
// nothing was masked.
func (r *Registry) MaskBytes(b []byte) []byte {
	out, _ := r.MaskBytesFind(b)
	return out
}

// MaskBytesFind is MaskBytes that also says what it hid.
func (r *Registry) MaskBytesFind(b []byte) ([]byte, []Found) {
	if len(b) == 0 {
		return b, nil
	}
	var found []Found
	// The text is only read during the scan and copied when masked.
	out, changed := r.mask(unsafe.String(&b[0], len(b)), &found)
	if !changed {
		return b, nil
	}
	return []byte(out), found
}

// Contains reports whether s holds a registered secret in any form.
func (r *Registry) Contains(s string) bool {
	if int64(len(s)) < r.minLen.Load() || r.minLen.Load() == 0 {
		return false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.scan(s)) > 0
}

// Forms returns every registered form with its secret's label, for
// scanners that look for secrets by plain substring search (and so do not
// depend on the index Mask uses).
func (r *Registry) Forms() []Form {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Form, len(r.forms))
	for i, f := range r.forms {
		out[i] = Form{Label: r.labels[f.secret], Desc: r.descs[f.desc], Text: f.text}
	}
	return out
}

// Len is the number of registered secrets.
func (r *Registry) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.labels)
}

// --- forms -------------------------------------------------------------------

func join(prefix, desc string) string {
	if prefix == "" {
		return desc
	}
	return prefix + " " + desc
}

// htmlEscaper mirrors html/template's text escaping, which turns '+' (in
// every standard Base64 string) into "&#43;".
var htmlEscaper = strings.NewReplacer(`&`, "&amp;", `'`, "&#39;", `<`, "&lt;", `>`, "&gt;", `"`, "&#34;", `+`, "&#43;")

// addText adds the forms a piece of text takes in URLs, JSON and HTML.
func addText(add adder, prefix, s string) {
	add(join(prefix, "text"), s)
	q := url.QueryEscape(s)
	add(join(prefix, "URL-encoded"), q)
	add(join(prefix, "URL-encoded (lower-case hex)"), lowerHexEscapes(q))
	p := url.PathEscape(s)
	add(join(prefix, "path-escaped"), p)
	add(join(prefix, "path-escaped (lower-case hex)"), lowerHexEscapes(p))
	if js, err := json.Marshal(s); err == nil {
		add(join(prefix, "JSON-escaped"), string(js[1:len(js)-1]))
	}
	add(join(prefix, "JSON-escaped with \\/"), strings.ReplaceAll(s, "/", `\/`))
	add(join(prefix, "HTML-escaped"), htmlEscaper.Replace(s))
}

// addBytes adds the byte forms of b: raw, Base64 (standard and URL-safe,
// padded and not) with their text forms, hex.
func addBytes(add adder, prefix string, b []byte) {
	add(join(prefix, "raw bytes"), string(b))
	for _, e := range []struct {
		desc string
		enc  *base64.Encoding
	}{
		{"Base64", base64.StdEncoding},
		{"unpadded Base64", base64.RawStdEncoding},
		{"URL-safe Base64", base64.URLEncoding},
		{"unpadded URL-safe Base64", base64.RawURLEncoding},
	} {
		addText(add, join(prefix, e.desc), e.enc.EncodeToString(b))
	}
	h := hex.EncodeToString(b)
	add(join(prefix, "hex"), h)
	add(join(prefix, "upper-case hex"), strings.ToUpper(h))
}

func lowerHexEscapes(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	b := []byte(s)
	for i := 0; i+2 < len(b); i++ {
		if b[i] == '%' {
			for j := i + 1; j <= i+2; j++ {
				if 'A' <= b[j] && b[j] <= 'F' {
					b[j] += 'a' - 'A'
				}
			}
			i += 2
		}
	}
	return string(b)
}

// addPrivateKey adds a private key's DER encodings and their PEM, the PEM
// lines holding private bytes, and the private numbers themselves.
func addPrivateKey(add adder, k crypto.PrivateKey, pkcs8 []byte) {
	var private [][]byte // big-endian private numbers as they appear in the DER
	type enc struct {
		desc, pemType string
		der           []byte
	}
	encs := []enc{{"PKCS#8", "PRIVATE KEY", pkcs8}}
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		if d, err := k.Bytes(); err == nil {
			private = append(private, d)
		}
		if der, err := x509.MarshalECPrivateKey(k); err == nil {
			encs = append(encs, enc{"SEC 1", "EC PRIVATE KEY", der})
		}
	case *rsa.PrivateKey:
		nums := []*big.Int{k.D}
		nums = append(nums, k.Primes...)
		nums = append(nums, k.Precomputed.Dp, k.Precomputed.Dq, k.Precomputed.Qinv)
		for _, n := range nums {
			if n != nil && n.Sign() > 0 {
				private = append(private, n.Bytes())
			}
		}
		encs = append(encs, enc{"PKCS#1", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k)})
	case ed25519.PrivateKey:
		private = append(private, k.Seed())
	}
	for _, p := range private {
		addBytes(add, "private key number", p)
	}
	for _, e := range encs {
		addBytes(add, e.desc+" DER", e.der)
		block := pem.EncodeToMemory(&pem.Block{Type: e.pemType, Bytes: e.der})
		add(e.desc+" PEM", string(block))
		addPEMLines(add, e.desc, e.der, private)
	}
}

// addPEMLines adds each 64-character PEM body line of der that encodes at
// least one byte of a private number. Lines over public parts only (the
// algorithm header, an EC public point, an RSA modulus) also occur in
// certificates and are no secret.
func addPEMLines(add adder, desc string, der []byte, private [][]byte) {
	const lineBytes = 48 // 64 Base64 characters
	var ranges [][2]int
	for _, p := range private {
		if i := indexBytes(der, p); i >= 0 {
			ranges = append(ranges, [2]int{i, i + len(p)})
		}
	}
	body := base64.StdEncoding.EncodeToString(der)
	for line := 0; line*lineBytes < len(der); line++ {
		lo, hi := line*lineBytes, min((line+1)*lineBytes, len(der))
		for _, rg := range ranges {
			if rg[0] < hi && lo < rg[1] {
				add(desc+" PEM line", body[line*64:min((line+1)*64, len(body))])
				break
			}
		}
	}
}

func indexBytes(b, sub []byte) int {
	return strings.Index(unsafe.String(unsafe.SliceData(b), len(b)), unsafe.String(unsafe.SliceData(sub), len(sub)))
}
