package blob

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hilrun/hilrun/certs"
)

func startTest(t *testing.T, now func() time.Time) (*Server, *http.Client) {
	t.Helper()
	pki, err := certs.NewHubPKI(DefaultHost, certs.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	c := pki.ServerTLSCertificate()
	s, err := Start(Config{Certificate: &c, Now: now, MaxBlob: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	pool := x509.NewCertPool()
	pool.AddCert(pki.Root.Cert)
	addr := s.Addr()
	tr2 := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: DefaultHost}}
	tr2.Dial = func(_, _ string) (net.Conn, error) { return net.Dial("tcp", addr) }
	t.Cleanup(tr2.CloseIdleConnections)
	return s, &http.Client{Transport: tr2, Timeout: 5 * time.Second}
}

func do(t *testing.T, c *http.Client, method, url string, body []byte, hdr map[string]string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b, res.Header
}

func TestGetRangePutAndRefusals(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	s, c := startTest(t, clock)
	data := []byte("0123456789abcdef")
	if err := s.Put("app/CountMeasurement.pe", data); err != nil {
		t.Fatal(err)
	}
	read, _ := s.IssueToken(TokenOptions{Permissions: "r", Owner: "dev1"})
	write, _ := s.IssueToken(TokenOptions{Permissions: "cw", Blob: "dev1/up.bin"})
	expired, _ := s.IssueToken(TokenOptions{Permissions: "r", Expiry: now.Add(-time.Minute)})
	early, _ := s.IssueToken(TokenOptions{Permissions: "r", Start: now.Add(time.Hour), Expiry: now.Add(2 * time.Hour)})
	other, _ := s.IssueToken(TokenOptions{Permissions: "r", Blob: "other.pe"})
	u := s.URL("app/CountMeasurement.pe")
	tampered := strings.Replace(read, "sp=r", "sp=rw", 1)
	cases := []struct {
		name, method, url string
		body              []byte
		hdr               map[string]string
		status            int
		want              string
	}{
		{"whole", "GET", u + "?" + read, nil, nil, 200, string(data)},
		{"range", "GET", u + "?" + read, nil, map[string]string{"Range": "bytes=2-5"}, 206, "2345"},
		{"x-ms-range", "GET", u + "?" + read, nil, map[string]string{"x-ms-range": "bytes=10-"}, 206, "abcdef"},
		{"suffix", "GET", u + "?" + read, nil, map[string]string{"Range": "bytes=-3"}, 206, "def"},
		{"unsatisfiable", "GET", u + "?" + read, nil, map[string]string{"Range": "bytes=99-"}, 416, ""},
		{"multi ignored", "GET", u + "?" + read, nil, map[string]string{"Range": "bytes=0-1,3-4"}, 200, string(data)},
		{"no token", "GET", u, nil, nil, 403, ""},
		{"expired", "GET", u + "?" + expired, nil, nil, 403, ""},
		{"not yet valid", "GET", u + "?" + early, nil, nil, 403, ""},
		{"tampered", "GET", u + "?" + tampered, nil, nil, 403, ""},
		{"other blob's token", "GET", u + "?" + other, nil, nil, 403, ""},
		{"garbage token", "GET", u + "?sig=%%%", nil, nil, 403, ""},
		{"missing", "GET", s.URL("nope") + "?" + read, nil, nil, 404, ""},
		{"other container", "GET", "https://" + DefaultHost + "/etc/passwd?" + read, nil, nil, 403, ""},
		{"traversal", "GET", "https://" + DefaultHost + "/hilrun/a/../../x?" + read, nil, nil, 400, ""},
		{"encoded slash", "GET", "https://" + DefaultHost + "/hilrun/a%2F..%2Fx?" + read, nil, nil, 400, ""},
		{"read token cannot write", "PUT", s.URL("dev1/up.bin") + "?" + read, []byte("x"), map[string]string{"x-ms-blob-type": "BlockBlob"}, 403, ""},
		{"put needs blob type", "PUT", s.URL("dev1/up.bin") + "?" + write, []byte("x"), nil, 400, ""},
		{"put too large", "PUT", s.URL("dev1/up.bin") + "?" + write, make([]byte, 1<<17), map[string]string{"x-ms-blob-type": "BlockBlob"}, 413, ""},
		{"put", "PUT", s.URL("dev1/up.bin") + "?" + write, []byte("hello"), map[string]string{"x-ms-blob-type": "BlockBlob"}, 201, ""},
		{"delete refused", "DELETE", u + "?" + read, nil, nil, 405, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, body, _ := do(t, c, tc.method, tc.url, tc.body, tc.hdr)
			if st != tc.status {
				t.Fatalf("status %d, want %d: %s", st, tc.status, body)
			}
			if tc.want != "" && string(body) != tc.want {
				t.Fatalf("body %q, want %q", body, tc.want)
			}
		})
	}
	if up := s.Uploads(); len(up) != 1 || string(up[0].Data) != "hello" || up[0].Name != "dev1/up.bin" {
		t.Fatalf("uploads %+v", up)
	}
	reqs := s.Requests()
	if len(reqs) != len(cases) {
		t.Fatalf("%d requests logged, want %d", len(reqs), len(cases))
	}
	if reqs[0].Owner != "dev1" || reqs[0].Status != 200 || reqs[0].Bytes != int64(len(data)) {
		t.Fatalf("first request %+v", reqs[0])
	}
	for _, r := range reqs {
		if strings.Contains(MarshalRequest(r), "sig=") {
			t.Fatalf("request log holds a signature: %s", MarshalRequest(r))
		}
	}
}

func TestParseRange(t *testing.T) {
	cases := []struct {
		h        string
		size     int64
		start, n int64
		err      error
	}{
		{"bytes=0-0", 10, 0, 1, nil},
		{"bytes=0-99", 10, 0, 10, nil},
		{"bytes=5-", 10, 5, 5, nil},
		{"bytes=-4", 10, 6, 4, nil},
		{"bytes=-40", 10, 0, 10, nil},
		{"bytes=10-", 10, 0, 0, errRangeUnsatisfiable},
		{"bytes=-0", 10, 0, 0, errRangeUnsatisfiable},
		{"bytes=3-2", 10, 0, 0, errRangeIgnored},
		{"bytes=a-b", 10, 0, 0, errRangeIgnored},
		{"items=0-1", 10, 0, 0, errRangeIgnored},
		{"bytes=0-1,2-3", 10, 0, 0, errRangeIgnored},
		{"bytes=+1-2", 10, 0, 0, errRangeIgnored},
		{"bytes=99999999999999999999-", 10, 0, 0, errRangeIgnored},
	}
	for _, c := range cases {
		s, n, err := parseRange(c.h, c.size)
		if err != c.err || (err == nil && (s != c.start || n != c.n)) {
			t.Errorf("parseRange(%q, %d) = %d, %d, %v; want %d, %d, %v", c.h, c.size, s, n, err, c.start, c.n, c.err)
		}
	}
}

func TestParseToken(t *testing.T) {
	good := "sp=racwd&st=2022-02-23T08:36:22Z&se=2022-05-01T15:36:22Z&spr=https&sv=2020-08-04&sr=c&sig=c29tZQ%3D%3D"
	if tok, err := ParseToken(good); err != nil || tok.Resource != "c" || len(tok.Fields) != 7 {
		t.Fatalf("seed 004 L126 shape: %+v %v", tok, err)
	}
	for _, bad := range []string{"", "sp=r", good + "&sp=r", strings.Replace(good, "sr=c", "sr=x", 1),
		strings.Replace(good, "spr=https", "spr=http", 1), strings.Replace(good, "se=2022-05-01T15:36:22Z", "se=tomorrow", 1),
		strings.Replace(good, "sp=racwd", "sp=z", 1), strings.Replace(good, "sig=c29tZQ%3D%3D", "sig=!!", 1), "%zz", strings.Repeat("a", 5000)} {
		if _, err := ParseToken(bad); err == nil {
			t.Errorf("ParseToken(%.60q) accepted", bad)
		}
	}
}

func FuzzParseToken(f *testing.F) {
	f.Add("sp=r&se=2022-05-01T15:36:22Z&spr=https&sv=2020-08-04&sr=c&sig=c29tZQ%3D%3D")
	f.Add("sp=&&&=%")
	f.Fuzz(func(t *testing.T, q string) {
		tok, err := ParseToken(q)
		if err == nil && (tok.Resource == "" || tok.Signature == "") {
			t.Fatalf("accepted a token without sr or sig: %q", q)
		}
		_ = sasOnly(q)
	})
}

func FuzzParseRange(f *testing.F) {
	f.Add("bytes=0-10", int64(100))
	f.Add("bytes=-5", int64(3))
	f.Fuzz(func(t *testing.T, h string, size int64) {
		if size < 0 {
			size = -size
		}
		if size < 0 {
			return
		}
		s, n, err := parseRange(h, size)
		if err == nil && (s < 0 || n <= 0 || s+n > size) {
			t.Fatalf("parseRange(%q, %d) = %d, %d outside the blob", h, size, s, n)
		}
	})
}

func FuzzBlobPath(f *testing.F) {
	f.Add("/hilrun/a/b.pe")
	f.Add("/hilrun/../x")
	f.Fuzz(func(t *testing.T, p string) {
		s := &Server{cfg: Config{Container: DefaultContainer}}
		name, ref := s.blobOf(p)
		if ref == nil && !validName(name) {
			t.Fatalf("blobOf(%q) accepted invalid name %q", p, name)
		}
	})
}

func TestPlainHTTPRefused(t *testing.T) {
	s, _ := startTest(t, nil)
	res, err := http.Get("http://" + s.PlainAddr() + "/hilrun/a.pe?sp=r")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 400 || res.Header.Get("x-ms-error-code") != "AccountRequiresHttps" {
		t.Fatalf("plaintext: %d %s", res.StatusCode, res.Header.Get("x-ms-error-code"))
	}
	if r := s.Requests(); len(r) != 1 || !r[0].Plain {
		t.Fatalf("log %+v", r)
	}
}

// TestFailPutsWith: the next n PUTs get the chosen error status (others
// are taken as 500), then uploads work again.
func TestFailPutsWith(t *testing.T) {
	s, c := startTest(t, time.Now)
	write, _ := s.IssueToken(TokenOptions{Permissions: "cw", Blob: "dev1/f.bin"})
	u := s.URL("dev1/f.bin") + "?" + write
	hdr := map[string]string{"x-ms-blob-type": "BlockBlob"}
	for _, tc := range []struct{ set, want int }{{403, 403}, {404, 404}, {413, 413}, {500, 500}, {503, 503}, {418, 500}} {
		s.FailPutsWith(1, tc.set)
		if st, body, _ := do(t, c, "PUT", u, []byte("x"), hdr); st != tc.want {
			t.Fatalf("FailPutsWith(1, %d): status %d, want %d: %s", tc.set, st, tc.want, body)
		}
		if st, body, _ := do(t, c, "PUT", u, []byte("x"), hdr); st != 201 {
			t.Fatalf("after the failure: status %d, want 201: %s", st, body)
		}
	}
	s.FailPuts(2)
	for i := 0; i < 2; i++ {
		if st, _, _ := do(t, c, "PUT", u, []byte("x"), hdr); st != 500 {
			t.Fatalf("FailPuts(2) PUT %d: status %d, want 500", i+1, st)
		}
	}
}
