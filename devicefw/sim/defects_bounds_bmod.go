package sim

import (
	"errors"
	"io"
	"net/url"
	"path"
	"strings"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// Defect switches added with the boundary specs of issue 15 for the MOD,
// PNP and FUP areas (suites/bounds_mod.go, bounds_pnp.go, bounds_fup.go).
// Each acts only on one shape of value, one authentication mode or one
// status code, the boundary its spec visits; DEFECTS.md ("Added for the
// MOD, PNP and FUP boundary specs") has one row each.
const (
	DefModuleX509ClientID   = "module-x509-clientid-device"
	DefModuleBagNotEncoded  = "module-bag-not-encoded"
	DefModuleTwinErrorFinal = "module-twin-error-final"
	DefPnPModelIDBuffer     = "pnp-model-id-buffer-64"
	DefPnPCommandNameBuffer = "pnp-command-name-buffer-32"
	DefPnPAV8Bit            = "pnp-av-8bit"
	DefPnPRefusedNotAcked   = "pnp-refused-not-acked"
	DefFUPBlobNameBase      = "fup-blob-name-basename"
	DefFUPBlobURLQueryEsc   = "fup-blob-url-query-escaped"
	DefFUPFailureStatus500  = "fup-failure-status-500"
	DefFUPEmptyFileSkipped  = "fup-empty-file-skipped"
	DefPersistentNoResub    = "persistent-session-no-resubscribe"
	DefRenewalNoRestore     = "renewal-reconnect-no-restore"
	DefStopOnEarlyFIN       = "stop-on-early-fin"
	DefTLSNameRetry         = "tls-skip-hostname-after-failures"
	DefTLSDatesRetry        = "tls-ignore-dates-after-failures"
)

// pnpModelIDBuffer and pnpCommandNameBuffer are the fixed buffers of the
// two PnP defects (char[65] and char[33] in C firmware).
const (
	pnpModelIDBuffer     = 64
	pnpCommandNameBuffer = 32
)

// boundsBModDefects lists them; see Defects.
var boundsBModDefects = []Defect{
	{DefModuleX509ClientID, "MOD-001", "a module authenticating with X.509 connects with ClientId {deviceId} (the X.509 code path takes the ClientId from the device's configuration); with SAS the ClientId is {deviceId}/{moduleId}"},
	{DefModuleBagNotEncoded, "MOD-004", "a module's telemetry topic carries its property bag unencoded (names and values written as they are); devices still URL-encode theirs"},
	{DefModuleTwinErrorFinal, "MOD-005", "a module identity takes a 429 or 5xx answer to a twin request as final (its twin client lacks the device client's retry policy): the patch is not sent again"},
	{DefPnPModelIDBuffer, "PNP-002", "the model ID is cut to 64 characters before it goes into the Username (a fixed-size model ID buffer): a longer DTMI loses its ;version"},
	{DefPnPRefusedNotAcked, "PNP-003", "a writable-property value the device refuses is not acknowledged at all (only applied values are reported)"},
	{DefPnPAV8Bit, "PNP-004", "av is kept in an 8-bit counter: past $version 255 the acknowledgement carries the version modulo 256"},
	{DefPnPCommandNameBuffer, "PNP-005", "in PnP mode a command whose method name (component*command) is longer than 32 characters is never matched and answered as an unknown method (a fixed-size name buffer)"},
	{DefFUPBlobNameBase, "FUP-001", "the POST to /devices/{id}/files names the file by its last path segment only (blobName \"a/b/c.txt\" sent as \"c.txt\")"},
	{DefFUPBlobURLQueryEsc, "FUP-002", "the storage URL's blob path is escaped with query rules (space as '+', '/' as %2F) instead of path rules, so a name with spaces or folders lands elsewhere"},
	{DefFUPEmptyFileSkipped, "FUP-002", "an empty file is not PUT to storage (nothing to send), yet its upload is notified as a success"},
	{DefPersistentNoResub, "RECON-008", "with CleanSession 0 a reconnect never subscribes again: the client takes its own CleanSession 0 as proof the hub kept the subscriptions and ignores CONNACK session-present 0"},
	{DefRenewalNoRestore, "RECON-006", "the reconnect of a SAS token renewal is taken as a credential refresh inside the session: no SUBSCRIBE and no twin resync follow it, even when CONNACK says session-present 0"},
	{DefStopOnEarlyFIN, "RECON-010", "a connection attempt the other side closes cleanly (FIN, EOF) before its CONNACK is taken as the server refusing the device: the client stops (a reset at the same point is retried)"},
	{DefTLSNameRetry, "CERT-004", "after three host name mismatches in a row the client retries without the name check (chain and dates still verified), taking the hub for a custom domain; an unknown root is never accepted"},
	{DefTLSDatesRetry, "CERT-004", "after three server certificates out of their validity dates in a row the client takes its own clock for wrong and retries ignoring the dates (chain and name still verified)"},
	{DefFUPFailureStatus500, "FUP-003", "a failed upload is notified with statusCode 500 whatever status the storage answered"},
}

// boundsModuleClientID is the X.509 half of MOD-001 (module-x509-clientid-device).
func (dc *deviceClient) boundsModuleClientID(cc connConfig, clientID string) string {
	if cc.id.IsModule() && cc.authType == "x509" && dc.on(DefModuleX509ClientID) {
		return cc.id.DeviceID
	}
	return clientID
}

// boundsModuleBagRaw says whether a module's bag goes out unencoded (MOD-004).
func (dc *deviceClient) boundsModuleBagRaw(cc connConfig) bool {
	return cc.id.IsModule() && dc.fw.defects.on(DefModuleBagNotEncoded)
}

// boundsModelID cuts the model ID to its buffer (PNP-002).
func (dc *deviceClient) boundsModelID(m string) string {
	if dc.on(DefPnPModelIDBuffer) && len(m) > pnpModelIDBuffer {
		return m[:pnpModelIDBuffer]
	}
	return m
}

// boundsBlobName is the blobName the upload request carries (FUP-001).
func (dc *deviceClient) boundsBlobName(name string) string {
	if dc.on(DefFUPBlobNameBase) {
		return path.Base(name)
	}
	return name
}

// boundsBlobPath escapes the blob name for the storage URL (FUP-002).
func (dc *deviceClient) boundsBlobPath(name string) string {
	if dc.on(DefFUPBlobURLQueryEsc) {
		return url.QueryEscape(name)
	}
	return escapeBlobPath(name)
}

// boundsFailureCode is the statusCode of a failed upload's notification (FUP-003).
func (dc *deviceClient) boundsFailureCode(code int) int {
	if dc.on(DefFUPFailureStatus500) {
		return 500
	}
	return code
}

// boundsSkipEmpty says whether an empty file's PUT is left out (FUP-002).
func (dc *deviceClient) boundsSkipEmpty(data []byte) bool {
	return len(data) == 0 && dc.on(DefFUPEmptyFileSkipped)
}

// boundsNeedSub applies the two RECON defects to afterConnect's decision to
// subscribe (RECON-008, RECON-006). It runs without the client lock.
func (dc *deviceClient) boundsNeedSub(s *session, cc connConfig, need bool) bool {
	if s.connects > 1 && !cc.clean && dc.on(DefPersistentNoResub) {
		return false // defect persistent-session-no-resubscribe
	}
	if s.renewing && dc.on(DefRenewalNoRestore) {
		return false // defect renewal-reconnect-no-restore
	}
	return need
}

// boundsResync applies renewal-reconnect-no-restore to the twin resync.
func (dc *deviceClient) boundsResync(s *session, resync bool) bool {
	if s.renewing && dc.on(DefRenewalNoRestore) {
		return false
	}
	return resync
}

// boundsStopOnEarlyFIN is stop-on-early-fin (RECON-010): an attempt ended
// by EOF before any CONNACK stops the client.
func (dc *deviceClient) boundsStopOnEarlyFIN(rc byte, err error) bool {
	if rc != packets.ErrNetworkError || err == nil || !dc.on(DefStopOnEarlyFIN) {
		return false
	}
	return errors.Is(err, io.EOF) || strings.Contains(err.Error(), "EOF")
}
