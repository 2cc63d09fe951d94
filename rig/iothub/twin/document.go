package twin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// encode writes v as compact JSON with sorted object keys, exact json.Number
// literals and no HTML escaping of <, > and &.
func encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("twin: encode: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// withVersion returns a shallow copy of s with $version set to version.
func withVersion(s Section, version int64) Section {
	out := make(Section, len(s)+1)
	for k, v := range s {
		out[k] = v
	}
	out[VersionKey] = version
	return out
}

// DeviceDocument builds the body the hub returns to a device's twin GET
// (TWIN-004):
//
//	{"desired":{...,"$version":D},"reported":{...,"$version":R}}
//
// Each section is written as given (including any '$' members such as
// $metadata the caller chose to keep, see TWIN-017) with "$version" set to
// the section's version, replacing any $version already present. A nil
// section is written as an object holding only $version. The inputs are not
// modified.
func DeviceDocument(desired Section, desiredVersion int64, reported Section, reportedVersion int64) ([]byte, error) {
	return encode(map[string]any{
		"desired":  withVersion(desired, desiredVersion),
		"reported": withVersion(reported, reportedVersion),
	})
}

// DesiredPatchDocument builds the body of a desired-property notification
// pushed to the device (TWIN-009): the patch members plus "$version": version.
// patch is not modified.
func DesiredPatchDocument(patch Section, version int64) ([]byte, error) {
	return encode(withVersion(patch, version))
}

// ParseDeviceDocument is the firmware-side reading of a GET response body
// (TWIN-004). The body must be a JSON object with "desired" and "reported"
// objects, each carrying an integer "$version". Other top-level members are
// ignored. The returned sections are stripped of every '$' member at any
// depth ($version, $metadata, $lastUpdated ...; see StripReadOnly and
// TWIN-017), leaving only configuration. Errors wrap ErrNotObject when the
// body is not a JSON object and ErrMalformedDocument otherwise.
func ParseDeviceDocument(body []byte) (desired Section, desiredVersion int64, reported Section, reportedVersion int64, err error) {
	doc, err := ParseObject(body)
	if err != nil {
		return nil, 0, nil, 0, err
	}
	desired, desiredVersion, err = versionedSection(doc, "desired")
	if err != nil {
		return nil, 0, nil, 0, err
	}
	reported, reportedVersion, err = versionedSection(doc, "reported")
	if err != nil {
		return nil, 0, nil, 0, err
	}
	return desired, desiredVersion, reported, reportedVersion, nil
}

func versionedSection(doc Section, name string) (Section, int64, error) {
	raw, ok := doc[name]
	if !ok {
		return nil, 0, fmt.Errorf("%w: no %q member", ErrMalformedDocument, name)
	}
	sec, ok := raw.(map[string]any)
	if !ok {
		return nil, 0, fmt.Errorf("%w: %q is %s, want object", ErrMalformedDocument, name, jsonKind(raw))
	}
	ver, err := parseVersion(sec)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %s: %w", ErrMalformedDocument, name, err)
	}
	return StripReadOnly(sec), ver, nil
}

func parseVersion(sec Section) (int64, error) {
	raw, ok := sec[VersionKey]
	if !ok {
		return 0, fmt.Errorf("no %s member", VersionKey)
	}
	num, ok := raw.(json.Number)
	if !ok {
		return 0, fmt.Errorf("%s is %s, want integer", VersionKey, jsonKind(raw))
	}
	v, err := strconv.ParseInt(string(num), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s %s is not a 64-bit integer", VersionKey, num)
	}
	return v, nil
}

// ParseDesiredPatch is the firmware-side reading of a desired-property
// notification body (TWIN-009). It returns the patch without "$version" (and
// without any other '$' member, see StripReadOnly) together with the version,
// which the device compares against the version it already holds (TWIN-010).
// Errors wrap ErrNotObject when the body is not a JSON object and
// ErrMalformedDocument when $version is missing or not an integer.
func ParseDesiredPatch(body []byte) (patch Section, version int64, err error) {
	doc, err := ParseObject(body)
	if err != nil {
		return nil, 0, err
	}
	version, err = parseVersion(doc)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrMalformedDocument, err)
	}
	return StripReadOnly(doc), version, nil
}
