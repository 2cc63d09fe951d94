// Package agentproto is the agent protocol v1 (devicefw/PROTOCOL.md) in Go:
// line framing with a magic prefix and CRC, the request/response/event
// envelopes, operation and event names, typed errors, and the deterministic
// payload generator. The host (rig/console, rig/agent) and the Go reference
// firmware (devicefw/sim) both use it; firmware in C implements the same
// document.
package agentproto

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
)

// Version is the agent protocol version this package speaks.
const Version = 1

// Magic starts every agent frame on the serial line. Lines without it are
// console output. It is printable so a human reading the raw log can spot
// frames, and unlikely in ordinary log text.
const Magic = "@hil1 "

// MaxFrame bounds a frame line including magic, CRC and newline, so an
// ESP32 agent can receive into a fixed buffer.
const MaxFrame = 4096

// Frame kinds.
const (
	KindRequest  = "req"
	KindResponse = "res"
	KindEvent    = "evt"
)

// Frame is the JSON envelope inside a frame line. Exactly one of the
// request, response or event field groups is used, per T.
type Frame struct {
	T string `json:"t"`

	// Request and response.
	ID   uint32          `json:"id,omitempty"`
	Op   string          `json:"op,omitempty"`
	Args json.RawMessage `json:"args,omitempty"`

	// Response.
	OK   bool            `json:"ok,omitempty"`
	Data json.RawMessage `json:"data,omitempty"`
	Err  *Error          `json:"err,omitempty"`

	// Event.
	Seq    uint64 `json:"seq,omitempty"`
	Uptime int64  `json:"up,omitempty"` // device uptime, milliseconds
	Ev     string `json:"ev,omitempty"`
}

// Error is a typed error in a response.
type Error struct {
	Code string `json:"code"`
	Msg  string `json:"msg"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Msg }

// Error codes.
const (
	ErrBadFrame     = "bad_frame"     // CRC mismatch, oversize, not JSON (sent with id 0)
	ErrUnknownOp    = "unknown_op"    // operation not implemented
	ErrBadArgs      = "bad_args"      // arguments missing or invalid
	ErrBusy         = "busy"          // another operation of this kind is in progress
	ErrNotConnected = "not_connected" // needs an open hub connection
	ErrTimeout      = "timeout"       // the device gave up waiting (e.g. for a twin response)
	ErrUnsupported  = "unsupported"   // capability not present on this board
	ErrRejected     = "rejected"      // the hub answered with a failure status
	ErrInternal     = "internal"
)

// Errorf builds an *Error.
func Errorf(code, format string, a ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, a...)}
}

// Encode renders a frame line: Magic, compact JSON, a space, '*', eight hex
// digits of CRC-32 (IEEE) over the JSON bytes, newline.
func Encode(f *Frame) ([]byte, error) {
	js, err := json.Marshal(f)
	if err != nil {
		return nil, err
	}
	return encodeJSON(js)
}

func encodeJSON(js []byte) ([]byte, error) {
	n := len(Magic) + len(js) + 11
	if n > MaxFrame {
		return nil, fmt.Errorf("frame of %d bytes exceeds %d", n, MaxFrame)
	}
	out := make([]byte, 0, n)
	out = append(out, Magic...)
	out = append(out, js...)
	out = append(out, " *"...)
	out = append(out, fmt.Sprintf("%08x", crc32.ChecksumIEEE(js))...)
	out = append(out, '\n')
	return out, nil
}

// Decode errors.
var (
	ErrNotFrame = errors.New("not an agent frame")
	ErrCRC      = errors.New("frame CRC mismatch")
	ErrTooLong  = errors.New("frame too long")
	ErrSyntax   = errors.New("malformed frame")
)

// IsFrame reports whether a console line (without its newline) carries an
// agent frame, i.e. contains the magic. Text before the magic (a log line
// the frame was glued to) is tolerated by Decode.
func IsFrame(line []byte) bool { return bytes.Contains(line, []byte(Magic)) }

// Decode parses one line (with or without trailing "\r\n"). Text before the
// magic is ignored so that a frame glued to the tail of a log line still
// decodes; the caller keeps that text as console output (see Split).
func Decode(line []byte) (*Frame, error) {
	_, f, err := Split(line)
	return f, err
}

// Split separates console text before the magic from the frame and decodes
// the frame. Without magic it returns the whole line as text and ErrNotFrame.
func Split(line []byte) (text []byte, f *Frame, err error) {
	line = bytes.TrimRight(line, "\r\n")
	i := bytes.Index(line, []byte(Magic))
	if i < 0 {
		return line, nil, ErrNotFrame
	}
	text, body := line[:i], line[i+len(Magic):]
	if len(body)+len(Magic)+1 > MaxFrame {
		return text, nil, ErrTooLong
	}
	j := bytes.LastIndex(body, []byte(" *"))
	if j < 0 || len(body)-j-2 != 8 {
		return text, nil, fmt.Errorf("%w: no CRC trailer", ErrSyntax)
	}
	js, crcText := body[:j], body[j+2:]
	want, perr := strconv.ParseUint(string(crcText), 16, 32)
	if perr != nil {
		return text, nil, fmt.Errorf("%w: CRC %q", ErrSyntax, crcText)
	}
	if crc32.ChecksumIEEE(js) != uint32(want) {
		return text, nil, ErrCRC
	}
	var fr Frame
	if err := json.Unmarshal(js, &fr); err != nil {
		return text, nil, fmt.Errorf("%w: %v", ErrSyntax, err)
	}
	switch fr.T {
	case KindRequest:
		if fr.Op == "" {
			return text, nil, fmt.Errorf("%w: request without op", ErrSyntax)
		}
	case KindResponse:
	case KindEvent:
		if fr.Ev == "" {
			return text, nil, fmt.Errorf("%w: event without name", ErrSyntax)
		}
	default:
		return text, nil, fmt.Errorf("%w: kind %q", ErrSyntax, fr.T)
	}
	return text, &fr, nil
}

// Request builds a request frame with JSON-encoded args.
func Request(id uint32, op string, args any) (*Frame, error) {
	f := &Frame{T: KindRequest, ID: id, Op: op}
	if args != nil {
		b, err := json.Marshal(args)
		if err != nil {
			return nil, err
		}
		f.Args = b
	}
	return f, nil
}

// Response builds a success response.
func Response(id uint32, data any) (*Frame, error) {
	f := &Frame{T: KindResponse, ID: id, OK: true}
	if data != nil {
		b, err := json.Marshal(data)
		if err != nil {
			return nil, err
		}
		f.Data = b
	}
	return f, nil
}

// Failure builds an error response.
func Failure(id uint32, e *Error) *Frame {
	return &Frame{T: KindResponse, ID: id, Err: e}
}

// Event builds an event frame.
func Event(seq uint64, uptimeMS int64, name string, data any) (*Frame, error) {
	f := &Frame{T: KindEvent, Seq: seq, Uptime: uptimeMS, Ev: name}
	if data != nil {
		b, err := json.Marshal(data)
		if err != nil {
			return nil, err
		}
		f.Data = b
	}
	return f, nil
}
