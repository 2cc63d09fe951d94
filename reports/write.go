package reports

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hilrun/hilrun/rig/secrets"
)

// File names inside a report directory.
const (
	JSONFile     = "report.json"
	JUnitFile    = "junit.xml"
	HTMLFile     = "report.html"
	MarkdownFile = "summary.md"
)

// Write creates dir if needed and writes all four report files. The report
// is redacted first (r itself is not modified). Each file is written to a
// temporary name and renamed, so a reader never sees half a file. Write
// tries every file and returns the joined errors.
func Write(dir string, r *Report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("reports: %w", err)
	}
	red := r.Redacted()
	b, err := json.MarshalIndent(red, "", "  ")
	if err != nil {
		return fmt.Errorf("reports: encode %s: %w", JSONFile, err)
	}
	errJSON := writeFile(filepath.Join(dir, JSONFile), append(b, '\n'))
	return errors.Join(errJSON, render(dir, red))
}

// Render regenerates junit.xml, report.html and summary.md in dir from r
// (typically one read back with Load), redacting first.
func Render(dir string, r *Report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("reports: %w", err)
	}
	return render(dir, r.Redacted())
}

func render(dir string, r *Report) error {
	var errs []error
	for _, f := range []struct {
		name string
		gen  func(*bytes.Buffer, *Report) error
	}{
		{JUnitFile, writeJUnit},
		{HTMLFile, writeHTML},
		{MarkdownFile, writeMarkdown},
	} {
		var buf bytes.Buffer
		if err := f.gen(&buf, r); err != nil {
			errs = append(errs, fmt.Errorf("reports: render %s: %w", f.name, err))
			continue
		}
		errs = append(errs, writeFile(filepath.Join(dir, f.name), buf.Bytes()))
	}
	return errors.Join(errs...)
}

// Load reads a report.json. path may also be a report directory.
func Load(path string) (*Report, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, JSONFile)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reports: %w", err)
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("reports: %s: %w", path, err)
	}
	if !schemaReadable(r.SchemaVersion) {
		return nil, fmt.Errorf("reports: %s: schemaVersion %d, this hilrun reads %d to %d", path, r.SchemaVersion, MinSchemaVersion, SchemaVersion)
	}
	return &r, nil
}

func writeFile(path string, data []byte) error {
	// The model was masked before rendering; masking the rendered bytes
	// as well catches a secret a renderer could only have produced
	// itself (an escaped form, text from outside the model).
	data = secrets.MaskBytes(data)
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("reports: %w", err)
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("reports: write %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("reports: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("reports: %w", err)
	}
	return nil
}
