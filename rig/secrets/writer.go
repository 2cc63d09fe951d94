package secrets

import (
	"bytes"
	"io"
	"sync"
)

// maxHeld bounds what a Writer holds back waiting for a newline, so memory
// stays bounded whatever is written; a longer line is masked and written as
// it stands. No log line comes near it.
const maxHeld = 1 << 20

// Writer masks what is written through it before passing it on. It works a
// line at a time: a writer upstream may split a secret across two Write
// calls, and only a complete line can be masked reliably. Call Flush (or
// Close) at the end to write an unterminated last line.
type Writer struct {
	mu  sync.Mutex
	r   *Registry
	w   io.Writer
	buf []byte
}

// NewWriter returns a Writer masking with Default.
func NewWriter(w io.Writer) *Writer { return Default.NewWriter(w) }

// NewWriter returns a Writer masking with r.
func (r *Registry) NewWriter(w io.Writer) *Writer { return &Writer{r: r, w: w} }

// Write masks and writes every complete line of p (with what was held
// back); the rest is held until its newline, Flush or Close. It reports
// len(p) unless the underlying writer fails.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	i := bytes.LastIndexByte(w.buf, '\n')
	if i < 0 && len(w.buf) < maxHeld {
		return len(p), nil
	}
	if i < 0 {
		i = len(w.buf) - 1
	}
	err := w.emit(w.buf[:i+1])
	w.buf = append(w.buf[:0], w.buf[i+1:]...)
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

func (w *Writer) emit(b []byte) error {
	_, err := w.w.Write(w.r.MaskBytes(b))
	return err
}

// Flush masks and writes what is held back.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) == 0 {
		return nil
	}
	err := w.emit(w.buf)
	w.buf = w.buf[:0]
	return err
}

// Close flushes and closes the underlying writer if it is an io.Closer.
func (w *Writer) Close() error {
	err := w.Flush()
	if c, ok := w.w.(io.Closer); ok {
		if cerr := c.Close(); err == nil {
			err = cerr
		}
	}
	return err
}
