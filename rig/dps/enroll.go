package dps

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hilrun/hilrun/certs"
	"github.com/hilrun/hilrun/rig/dpsproto"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/secrets"
)

// Attestation types of an enrollment.
const (
	AttestSymmetricKey = "symmetricKey"
	AttestX509         = "x509"
)

// Provisioning statuses of an enrollment.
const (
	Enabled  = "enabled"
	Disabled = "disabled"
)

// Attestation is how a registration proves itself (DPS-003, DPS-007).
type Attestation struct {
	Type string `json:"type"` // AttestSymmetricKey or AttestX509
	// Symmetric keys (Base64). Generated when empty. For a group they are
	// the group keys; a device signs with DeriveKey(group key, regID).
	PrimaryKey   string `json:"primaryKey,omitempty"`
	SecondaryKey string `json:"secondaryKey,omitempty"`
	// Thumbprint (SHA-256, upper-case hex) of an individual enrollment's
	// device certificate.
	Thumbprint string `json:"thumbprint,omitempty"`
	// CAPEM is a group enrollment's signing certificate (root or
	// intermediate): device certificates must chain to it.
	CAPEM string `json:"caPem,omitempty"`
	ca    *x509.Certificate
}

// Enrollment is an individual enrollment (RegistrationID set) or an
// enrollment group (GroupID set).
type Enrollment struct {
	RegistrationID string      `json:"registrationId,omitempty"`
	GroupID        string      `json:"enrollmentGroupId,omitempty"`
	Attestation    Attestation `json:"attestation"`
	// DeviceID is the device an individual enrollment provisions (default:
	// the registration ID; groups always use the registration ID).
	DeviceID string `json:"deviceId,omitempty"`
	// Status: Enabled (default) or Disabled (DPS-006: a disabled
	// enrollment ends in status "disabled").
	Status string `json:"provisioningStatus,omitempty"`
	// ReturnPayload is custom data handed back with an assignment
	// (DPS-008, 000 L481).
	ReturnPayload json.RawMessage `json:"returnPayload,omitempty"`
	Created       time.Time       `json:"createdDateTimeUtc"`
}

func (en *Enrollment) normalise() error {
	if en.Status == "" {
		en.Status = Enabled
	}
	if en.Status != Enabled && en.Status != Disabled {
		return fmt.Errorf("provisioningStatus %q: want enabled or disabled", en.Status)
	}
	if len(en.ReturnPayload) > 0 && !json.Valid(en.ReturnPayload) {
		return errors.New("returnPayload is not JSON")
	}
	a := &en.Attestation
	switch a.Type {
	case AttestSymmetricKey:
		if a.PrimaryKey == "" {
			a.PrimaryKey = hub.NewKey()
		}
		if a.SecondaryKey == "" {
			a.SecondaryKey = hub.NewKey()
		}
		for _, k := range []string{a.PrimaryKey, a.SecondaryKey} {
			if _, err := dpsproto.DeriveKey(k, "x"); err != nil {
				return errors.New("attestation keys must be non-empty standard Base64")
			}
		}
		secrets.AddBase64("DPS enrollment "+en.key()+" primary key", a.PrimaryKey)
		secrets.AddBase64("DPS enrollment "+en.key()+" secondary key", a.SecondaryKey)
	case AttestX509:
		if en.GroupID != "" {
			cs, err := certs.ParseCertificatesPEM([]byte(a.CAPEM))
			if err != nil || len(cs) == 0 {
				return errors.New("an X.509 enrollment group needs caPem, its signing certificate")
			}
			a.ca = cs[0]
		} else {
			a.Thumbprint = strings.ToUpper(strings.ReplaceAll(a.Thumbprint, ":", ""))
			if len(a.Thumbprint) != 64 {
				return errors.New("an X.509 individual enrollment needs the SHA-256 thumbprint of its device certificate")
			}
		}
	default:
		return fmt.Errorf("attestation type %q: want %s or %s", a.Type, AttestSymmetricKey, AttestX509)
	}
	if en.Created.IsZero() {
		en.Created = time.Now().UTC()
	}
	return nil
}

func (en *Enrollment) key() string {
	if en.GroupID != "" {
		return "group " + en.GroupID
	}
	return en.RegistrationID
}

// AddIndividual creates or replaces an individual enrollment; the stored
// enrollment (with generated keys) is returned.
func (e *Endpoint) AddIndividual(en Enrollment) (Enrollment, error) {
	if err := dpsproto.CheckRegistrationID(en.RegistrationID); err != nil {
		return Enrollment{}, err
	}
	en.GroupID = ""
	if en.DeviceID == "" {
		en.DeviceID = en.RegistrationID
	}
	if err := en.normalise(); err != nil {
		return Enrollment{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.individual[en.RegistrationID] = &en
	return en, nil
}

// AddGroup creates or replaces an enrollment group.
func (e *Endpoint) AddGroup(en Enrollment) (Enrollment, error) {
	if en.GroupID == "" {
		return Enrollment{}, errors.New("enrollment group needs an ID")
	}
	en.RegistrationID, en.DeviceID = "", ""
	if err := en.normalise(); err != nil {
		return Enrollment{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.groups[en.GroupID] = &en
	return en, nil
}

// Individual returns an individual enrollment.
func (e *Endpoint) Individual(regID string) (Enrollment, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	en, ok := e.individual[regID]
	if !ok {
		return Enrollment{}, false
	}
	return *en, true
}

// Group returns an enrollment group.
func (e *Endpoint) Group(id string) (Enrollment, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	en, ok := e.groups[id]
	if !ok {
		return Enrollment{}, false
	}
	return *en, true
}

// DeleteEnrollment removes an individual enrollment or group.
func (e *Endpoint) DeleteEnrollment(regID, groupID string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if groupID != "" {
		_, ok := e.groups[groupID]
		delete(e.groups, groupID)
		return ok
	}
	_, ok := e.individual[regID]
	delete(e.individual, regID)
	return ok
}

// SetEnrollmentStatus enables or disables an enrollment (DPS-006).
func (e *Endpoint) SetEnrollmentStatus(regID, groupID, status string) error {
	if status != Enabled && status != Disabled {
		return fmt.Errorf("status %q: want enabled or disabled", status)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var en *Enrollment
	if groupID != "" {
		en = e.groups[groupID]
	} else {
		en = e.individual[regID]
	}
	if en == nil {
		return errors.New("no such enrollment")
	}
	en.Status = status
	return nil
}

// Registration is what DPS recorded about one registration ID.
type Registration struct {
	RegistrationID string          `json:"registrationId"`
	EnrollmentID   string          `json:"enrollment"` // registration ID or "group NAME"
	OperationID    string          `json:"operationId,omitempty"`
	Status         string          `json:"status"`
	AssignedHub    string          `json:"assignedHub,omitempty"`
	DeviceID       string          `json:"deviceId,omitempty"`
	ErrorCode      int             `json:"errorCode,omitempty"`
	ErrorMessage   string          `json:"errorMessage,omitempty"`
	Payload        json.RawMessage `json:"payload,omitempty"` // as the device sent it (DPS-008, PNP-006)
	ModelID        string          `json:"modelId,omitempty"` // payload.modelId, when present (PNP-006)
	Auth           string          `json:"auth"`              // sas-individual, sas-group, x509-individual, x509-group
	Thumbprint     string          `json:"thumbprint,omitempty"`
	Created        time.Time       `json:"createdDateTimeUtc"`
	Updated        time.Time       `json:"lastUpdatedDateTimeUtc"`
	Polls          int             `json:"polls"`
}

// Registration returns the record of a registration ID.
func (e *Endpoint) Registration(regID string) (Registration, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.regs[regID]
	if !ok {
		return Registration{}, false
	}
	return *r, true
}

// Registrations lists every registration record.
func (e *Endpoint) Registrations() []Registration {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Registration, 0, len(e.regs))
	for _, r := range e.regs {
		out = append(out, *r)
	}
	return out
}

// Faults are the endpoint's fault switches for one registration ID, in the
// style of the hub's (rig/hub/faults.go). Each names the client bug it
// exposes (device-sdk-behaviours.md §1 "DPS").
type Faults struct {
	// OmitRetryAfter leaves retry-after out of 202 and 429 answers.
	OmitRetryAfter bool `json:"omitRetryAfter,omitempty"`
	// FailWith200 ends the operation with a 200 answer whose status is
	// "failed" (a client that polls until 200 + assigned spins forever).
	FailWith200 bool `json:"failWith200,omitempty"`
	// Throttle answers the next N requests 429 with retry-after.
	Throttle int `json:"throttle,omitempty"`
	// Fail answers the next N requests with FailStatus (an error body with
	// FailCode), as DPS answers a request it cannot serve (DPS-006: the
	// device reports the outcome with its status and error).
	Fail       int `json:"fail,omitempty"`
	FailStatus int `json:"failStatus,omitempty"`
	FailCode   int `json:"failCode,omitempty"`
	// Polls is how many status polls answer 202 "assigning" before the
	// final answer (default 0: the first poll gets it).
	Polls int `json:"polls,omitempty"`
	// RetryAfter overrides the endpoint's retry-after (seconds) for this
	// registration; nil: Config.RetryAfter.
	RetryAfter *int `json:"retryAfter,omitempty"`
}

// SetFaults sets (or with the zero value clears) a registration's faults.
func (e *Endpoint) SetFaults(regID string, f Faults) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if f == (Faults{}) {
		delete(e.faults, regID)
		return
	}
	e.faults[regID] = &f
}
