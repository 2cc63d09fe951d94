package agentproto

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	req, _ := Request(7, OpTelemetry, TelemetryArgs{Payload: `{"t":1}`, Properties: map[string]string{"a": "b"}})
	ev, _ := Event(42, 1234, EvConn, ConnEvent{State: StateConnected})
	res, _ := Response(7, TelemetryResult{Ref: 1, Acked: true})
	for _, f := range []*Frame{req, ev, res, Failure(3, Errorf(ErrBadArgs, "no payload"))} {
		line, err := Encode(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(line, []byte(Magic)) || line[len(line)-1] != '\n' {
			t.Fatalf("line %q", line)
		}
		got, err := Decode(line)
		if err != nil {
			t.Fatalf("decode %q: %v", line, err)
		}
		if got.T != f.T || got.ID != f.ID || got.Seq != f.Seq || got.Op != f.Op || got.Ev != f.Ev {
			t.Fatalf("round trip %+v → %+v", f, got)
		}
	}
}

func TestDecodeTable(t *testing.T) {
	good, _ := Encode(&Frame{T: KindEvent, Seq: 1, Ev: EvLog})
	goodS := strings.TrimSuffix(string(good), "\n")
	flip := []byte(goodS)
	flip[len(Magic)+3] ^= 0x01
	cases := []struct {
		name     string
		line     string
		wantErr  error
		wantText string
	}{
		{"plain log line", "I (123) wifi: connected", ErrNotFrame, "I (123) wifi: connected"},
		{"frame", goodS, nil, ""},
		{"frame with CRLF", goodS + "\r\n", nil, ""},
		{"frame glued to log text", "boot: ok" + goodS, nil, "boot: ok"},
		{"corrupted byte", string(flip), ErrCRC, ""},
		{"missing CRC", Magic + `{"t":"evt","ev":"x"}`, ErrSyntax, ""},
		{"bad CRC hex", Magic + `{"t":"evt","ev":"x"} *zzzzzzzz`, ErrSyntax, ""},
		{"not JSON", Magic + "hello *3610a686", ErrSyntax, ""},
		{"unknown kind", mustLine(`{"t":"zzz"}`), ErrSyntax, ""},
		{"request without op", mustLine(`{"t":"req","id":1}`), ErrSyntax, ""},
		{"event without name", mustLine(`{"t":"evt","seq":1}`), ErrSyntax, ""},
		{"too long", Magic + strings.Repeat("x", MaxFrame) + " *00000000", ErrTooLong, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			text, f, err := Split([]byte(c.line))
			if c.wantErr == nil && err != nil || c.wantErr != nil && !errors.Is(err, c.wantErr) {
				t.Fatalf("err %v, want %v", err, c.wantErr)
			}
			if c.wantErr == nil && f == nil {
				t.Fatal("no frame")
			}
			if string(text) != c.wantText {
				t.Fatalf("text %q, want %q", text, c.wantText)
			}
		})
	}
}

func mustLine(js string) string {
	b, err := encodeJSON([]byte(js))
	if err != nil {
		panic(err)
	}
	return strings.TrimSuffix(string(b), "\n")
}

func TestEncodeRejectsOversize(t *testing.T) {
	f, _ := Request(1, OpEcho, EchoArgs{Data: strings.Repeat("x", MaxFrame)})
	if _, err := Encode(f); err == nil {
		t.Fatal("oversize frame encoded")
	}
}

func TestGenerateDeterministic(t *testing.T) {
	a, b := Generate(1000, 5), Generate(1000, 5)
	if !bytes.Equal(a, b) || bytes.Equal(a, Generate(1000, 6)) || len(Generate(0, 1)) != 0 {
		t.Fatal("generator not deterministic per seed")
	}
}

func FuzzDecode(f *testing.F) {
	good, _ := Encode(&Frame{T: KindRequest, ID: 1, Op: OpHello})
	f.Add(good)
	f.Add([]byte("plain"))
	f.Add([]byte(Magic + `{"t":"evt"} *00000000`))
	f.Add([]byte("junk" + Magic))
	f.Fuzz(func(t *testing.T, line []byte) {
		text, fr, err := Split(line)
		if err == nil {
			if fr == nil {
				t.Fatal("nil frame without error")
			}
			again, err := Encode(fr)
			if err != nil {
				return // a decoded frame may re-encode larger (escaping); that is fine
			}
			if _, err := Decode(again); err != nil {
				t.Fatalf("re-encoded frame does not decode: %v", err)
			}
		}
		if len(text) > len(line) {
			t.Fatal("text longer than input")
		}
	})
}
