package sim

// The OTA engine of seed 004 (AzureEdgeOTAEngine): at every start or wake
// the device reads desired `Files` (array of {FileName, Signature}),
// `Token` and `CodeVersion` from its twin (OTA-001, OTA-006); only when
// `CodeVersion` differs from the installed version, kept in NVS across
// reboots (OTA-002), it downloads each file over HTTPS as FileName + "?" +
// Token (OTA-003, OTA-008), checks its SHA-256 against `Signature`
// (32 bytes as hex pairs joined by "-", compared case-insensitively;
// OTA-004) and installs the set only when every file verified; it reports
// its progress with the tutorial's `firmware` reported property
// (fwUpdateStatus current / downloading / verifying / applying / error,
// 002 L8260-8292; OTA-007). The installed "application" honours the
// desired `UpdateTime` (milliseconds) as its telemetry period (OTA-005).
// `sleep` finishes the cycle and disconnects cleanly first (OTA-009).

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hilrun/hilrun/devicefw/agentproto"
)

// OTAStore is the installed application in NVS.
type OTAStore struct {
	Version string               `json:"version,omitempty"`
	Files   []agentproto.OTAFile `json:"files,omitempty"`
	// Woke is set by sleep under ota-not-read-on-wake only (the flag that
	// survives deep sleep in RTC memory).
	Woke bool `json:"woke,omitempty"`
}

func (o OTAStore) clone() OTAStore {
	return OTAStore{Version: o.Version, Files: append([]agentproto.OTAFile(nil), o.Files...), Woke: o.Woke}
}

// Limits of the engine.
const (
	otaMaxFiles    = 16
	otaMaxFileSize = 4 << 20
	// otaHashChunk is the buffer ota-hash-first-chunk hashes (64 KB).
	otaHashChunk   = 64 << 10
	otaHTTPTimeout = 20 * time.Second
	sleepMaxMS     = 2000
	// otaRetryLoopMax bounds ota-retry-403-loop.
	otaRetryLoopMax = 50
	// otaMinPeriod bounds the application's telemetry period from below.
	otaMinPeriod = 50 * time.Millisecond
)

// otaState is the engine's RAM state.
type otaState struct {
	mu       sync.Mutex
	cycle    sync.WaitGroup // a running cycle (sleep waits for it)
	state    string
	detail   string
	ramVer   *string // ota-version-not-persisted: the version held in RAM only
	appStop  context.CancelFunc
	appVer   string
	appEvery time.Duration
	appGen   uint64
}

// otaDesired is the part of the desired properties the engine reads.
type otaDesired struct {
	Files       json.RawMessage `json:"Files"`
	Token       *string         `json:"Token"`
	CodeVersion json.RawMessage `json:"CodeVersion"`
	UpdateTime  *float64        `json:"UpdateTime"`
}

type otaFileEntry struct {
	FileName  string `json:"FileName"`
	Signature string `json:"Signature"`
}

// codeVersionText renders CodeVersion (a number in seed 004 L120, or a
// string) as text.
func codeVersionText(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, s != ""
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String(), true
	}
	return "", false
}

// otaAfterResync runs one OTA cycle after the twin was fetched (every
// start or wake, OTA-001). It returns at once; the cycle runs on.
func (dc *deviceClient) otaAfterResync(s *session, cc connConfig) {
	o := &dc.ota
	o.cycle.Add(1)
	go func() {
		defer o.cycle.Done()
		if dc.on(DefOTANotReadAtStart) {
			return // defect: settings taken only from desired patches (otaOnPatch)
		}
		if dc.on(DefOTANotReadOnWake) {
			dc.fw.nvs.mu.Lock()
			woke := dc.fw.nvs.OTA.Woke
			dc.fw.nvs.OTA.Woke = false
			dc.fw.nvs.mu.Unlock()
			if woke {
				dc.fw.changed(changedNVS)
				return // defect: the "already checked" flag survived the deep sleep
			}
		}
		dc.otaCycle(s.ctx, cc)
	}()
	dc.heartbeat(s) // heartbeat-as-telemetry only (limits.go)
}

// otaOnPatch is where ota-settings-not-read-at-start runs the engine: on
// a desired patch, never on the twin fetched at start.
func (dc *deviceClient) otaOnPatch() {
	if !dc.on(DefOTANotReadAtStart) {
		return
	}
	dc.mu.Lock()
	s := dc.sess
	dc.mu.Unlock()
	cc, err := dc.snapshot()
	if s == nil || err != nil {
		return
	}
	dc.ota.cycle.Add(1)
	go func() {
		defer dc.ota.cycle.Done()
		dc.otaCycle(s.ctx, cc)
	}()
}

func (dc *deviceClient) otaSet(state, detail string) {
	dc.ota.mu.Lock()
	dc.ota.state, dc.ota.detail = state, detail
	dc.ota.mu.Unlock()
}

func (dc *deviceClient) otaInstalled() string {
	dc.ota.mu.Lock()
	ram := dc.ota.ramVer
	dc.ota.mu.Unlock()
	if dc.on(DefOTAVersionNotPersisted) {
		if ram == nil {
			return ""
		}
		return *ram
	}
	dc.fw.nvs.mu.Lock()
	defer dc.fw.nvs.mu.Unlock()
	return dc.fw.nvs.OTA.Version
}

// otaReport sends the firmware reported property (OTA-007).
func (dc *deviceClient) otaReport(ctx context.Context, current, pending, status, sub string) {
	if dc.on(DefOTANoProgress) && status != agentproto.OTACurrent {
		return
	}
	if dc.on(DefOTAErrorReportedCurrent) && status == agentproto.OTAError {
		status, pending = agentproto.OTACurrent, "" // defect: a failed update is reported as the old version being current
	}
	patch := map[string]any{"firmware": map[string]any{"currentFwVersion": current, "pendingFwVersion": pending,
		"fwUpdateStatus": status, "fwUpdateSubstatus": sub}}
	if _, err := dc.report(ctx, patch); err != nil {
		dc.fw.logf("W", "ota: reporting %s: %s", status, err.Msg)
	}
}

func (dc *deviceClient) otaCycle(ctx context.Context, cc connConfig) {
	dc.mu.Lock()
	desired := jsonable(dc.desired)
	dc.mu.Unlock()
	b, _ := json.Marshal(desired)
	var d otaDesired
	_ = json.Unmarshal(b, &d)
	ver, ok := codeVersionText(d.CodeVersion)
	if ok && len(d.CodeVersion) == 1 && dc.on(DefOTAOneCharVersionAbsent) {
		ok = false // defect: a one-character CodeVersion counts as absent
	}
	if !ok {
		return // no OTA settings in this twin
	}
	if dc.on(DefOTAEmptyFilesDropped) && strings.TrimSpace(string(d.Files)) == "[]" {
		return // defect: the parser indexes Files[0] and gives up on the whole desired section
	}
	var files []otaFileEntry
	if len(d.Files) > 0 {
		if err := json.Unmarshal(d.Files, &files); err != nil {
			dc.otaFail(ctx, "", ver, "desired Files is not an array of {FileName, Signature}")
			return
		}
	}
	if dc.on(DefOTAFilesFirstOnly) && len(files) > 1 {
		files = files[:1] // defect: a one-slot parser
	}
	token := ""
	if d.Token != nil {
		token = *d.Token
	}
	installed := dc.otaInstalled()
	dc.fw.logf("I", "ota: desired CodeVersion %s, %d file(s), Token %s; installed %q", ver, len(files), map[bool]string{true: "present", false: "absent"}[token != ""], installed)
	dc.emit(agentproto.EvOTA, agentproto.OTAEvent{State: agentproto.OTARead, CodeVersion: ver, Installed: installed, Files: len(files), HasToken: token != ""})
	dc.otaApp(ctx, cc, installed, ver, d.UpdateTime)
	same := ver == installed
	if installed == "" && dc.on(DefOTANothingInstalledNoUpdate) {
		same = true // defect: nothing installed is taken as no change
	}
	if dc.on(DefOTAVersionTextCompare) && installed != "" {
		same = ver <= installed // defect: "newer" judged on the text's order ("10" < "9")
	}
	if same && !dc.on(DefOTADownloadEveryBoot) {
		dc.otaSet(agentproto.OTACurrent, "")
		dc.emit(agentproto.EvOTA, agentproto.OTAEvent{State: agentproto.OTACurrent, CodeVersion: ver, Installed: installed})
		return
	}
	if len(files) == 0 || len(files) > otaMaxFiles {
		dc.otaFail(ctx, installed, ver, fmt.Sprintf("desired Files has %d entries (1..%d)", len(files), otaMaxFiles))
		return
	}
	dc.otaSet(agentproto.OTADownloading, "")
	dc.emit(agentproto.EvOTA, agentproto.OTAEvent{State: agentproto.OTADownloading, CodeVersion: ver, Installed: installed, Files: len(files)})
	dc.otaReport(ctx, installed, ver, agentproto.OTADownloading, fmt.Sprintf("%d file(s)", len(files)))
	client := dc.httpsClient(cc)
	defer client.CloseIdleConnections()
	var got []agentproto.OTAFile
	for _, f := range files {
		data, err := dc.otaDownload(ctx, client, f.FileName, token)
		for try := 1; err != nil && dc.on(DefOTARetryLoop) && try < otaRetryLoopMax && ctx.Err() == nil; try++ {
			dc.otaFail(ctx, installed, ver, fmt.Sprintf("%s: %v", f.FileName, err)) // defect: reported, then looped on
			time.Sleep(100 * time.Millisecond)
			data, err = dc.otaDownload(ctx, client, f.FileName, token)
		}
		if err != nil && dc.on(DefOTAMissingFileInstalled) && (strings.Contains(err.Error(), "answered 404") || strings.Contains(err.Error(), "answered 5")) {
			continue // defect: a missing or failed file is skipped and the update goes on
		}
		if err != nil {
			dc.otaFail(ctx, installed, ver, fmt.Sprintf("%s: %v", f.FileName, err))
			return
		}
		dc.otaReport(ctx, installed, ver, agentproto.OTAVerifying, f.FileName)
		hashed := data
		if dc.on(DefOTAHashFirstChunk) && len(hashed) > otaHashChunk {
			hashed = hashed[:otaHashChunk] // defect: only the first read buffer is hashed
		}
		sum := sha256.Sum256(hashed)
		if !dc.signatureMatches(sum[:], f.Signature) && !dc.on(DefOTAInstallOnMismatch) {
			dc.otaFail(ctx, installed, ver, fmt.Sprintf("%s: SHA-256 does not match Signature; not stored", f.FileName))
			return
		}
		got = append(got, agentproto.OTAFile{Name: f.FileName, SHA256: strings.ToUpper(hex.EncodeToString(sum[:])), Size: len(data)})
	}
	dc.otaSet(agentproto.OTAApplying, "")
	dc.emit(agentproto.EvOTA, agentproto.OTAEvent{State: agentproto.OTAApplying, CodeVersion: ver, Installed: installed, Files: len(got)})
	dc.otaReport(ctx, installed, ver, agentproto.OTAApplying, "")
	if dc.on(DefOTAVersionNotPersisted) {
		v := ver
		dc.ota.mu.Lock()
		dc.ota.ramVer = &v
		dc.ota.mu.Unlock()
		dc.fw.nvs.mu.Lock()
		dc.fw.nvs.OTA.Files = got
		dc.fw.nvs.mu.Unlock()
	} else {
		dc.fw.nvs.mu.Lock()
		dc.fw.nvs.OTA = OTAStore{Version: ver, Files: got}
		dc.fw.nvs.mu.Unlock()
	}
	dc.fw.changed(changedNVS)
	dc.otaSet(agentproto.OTACurrent, "installed "+ver)
	dc.emit(agentproto.EvOTA, agentproto.OTAEvent{State: agentproto.OTACurrent, CodeVersion: ver, Installed: ver, Files: len(got), Detail: "installed"})
	dc.otaReport(ctx, ver, "", agentproto.OTACurrent, "")
	dc.otaApp(ctx, cc, ver, ver, d.UpdateTime)
}

func (dc *deviceClient) otaFail(ctx context.Context, installed, ver, why string) {
	dc.fw.logf("E", "ota: %s", why)
	dc.otaSet(agentproto.OTAError, why)
	dc.emit(agentproto.EvOTA, agentproto.OTAEvent{State: agentproto.OTAError, CodeVersion: ver, Installed: installed, Detail: why})
	if len(why) > 500 {
		why = why[:500]
	}
	dc.otaReport(ctx, installed, ver, agentproto.OTAError, why)
}

// signatureMatches compares a SHA-256 with a Signature of hex pairs
// joined by "-" (seed 004 L118, L141), in any letter case (OTA-004).
func (dc *deviceClient) signatureMatches(sum []byte, sig string) bool {
	want := strings.ToUpper(hex.EncodeToString(sum))
	var pairs []string
	for i := 0; i < len(want); i += 2 {
		pairs = append(pairs, want[i:i+2])
	}
	formatted := strings.Join(pairs, "-")
	if dc.on(DefOTASignatureCase) {
		return sig == formatted // defect: an exact string compare
	}
	return strings.EqualFold(strings.ReplaceAll(sig, "-", ""), want) && len(sig) == len(formatted)
}

// otaDownload fetches one file: https only (OTA-008), FileName + "?" +
// Token (OTA-003), bounded in size and time; a non-200 answer is an error
// reported once, never retried in a loop.
func (dc *deviceClient) otaDownload(ctx context.Context, client *http.Client, fileName, token string) ([]byte, error) {
	u, err := url.Parse(fileName)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("FileName is not a URL")
	}
	if u.Scheme != "https" && !(u.Scheme == "http" && dc.on(DefOTAHTTPAccepted)) {
		return nil, fmt.Errorf("insecure package URI (scheme %q): only https is used", u.Scheme)
	}
	full := fileName
	if token != "" && !dc.on(DefOTATokenDropped) {
		sep := "?"
		if strings.Contains(fileName, "?") {
			sep = "&"
		}
		full += sep + strings.TrimPrefix(token, "?")
	}
	ctx, cancel := context.WithTimeout(ctx, otaHTTPTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, full, nil)
	if err != nil {
		return nil, fmt.Errorf("bad request URL")
	}
	res, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("download: %v", redactURLError(err))
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 4096))
		return nil, fmt.Errorf("download answered %d %s", res.StatusCode, res.Header.Get("x-ms-error-code"))
	}
	data, err := io.ReadAll(io.LimitReader(res.Body, otaMaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("download: %v", redactURLError(err))
	}
	if len(data) > otaMaxFileSize {
		return nil, fmt.Errorf("file larger than %d bytes", otaMaxFileSize)
	}
	return data, nil
}

// redactURLError drops the URL (which holds the token) from a client error.
func redactURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return fmt.Errorf("%s: %v", ue.Op, ue.Err)
	}
	return err
}

// httpsClient is the device's HTTPS client: the configured trust roots,
// the RTC as the clock, and the configured host map for dialing.
func (dc *deviceClient) httpsClient(cc connConfig) *http.Client {
	pool := x509.NewCertPool()
	for _, r := range cc.trust {
		pool.AddCert(r)
	}
	dc.fw.nvs.mu.Lock()
	hosts := map[string]string{}
	for k, v := range dc.fw.nvs.Config.Hosts {
		hosts[strings.ToLower(k)] = v
	}
	dc.fw.nvs.mu.Unlock()
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if a, ok := hosts[strings.ToLower(addr)]; ok {
			addr = a
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	tr := &http.Transport{DialContext: dial, TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12, Time: dc.fw.rtc.Now},
		TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: otaHTTPTimeout, DisableCompression: true, Proxy: nil}
	return &http.Client{Transport: tr, Timeout: otaHTTPTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// otaApp runs the installed application while connected: it sends a
// counter every UpdateTime ms (seed 004 L123, OTA-005) when the installed
// version is the desired one and UpdateTime is set.
func (dc *deviceClient) otaApp(ctx context.Context, cc connConfig, installed, desired string, updateMS *float64) {
	o := &dc.ota
	o.mu.Lock()
	defer o.mu.Unlock()
	if installed == "" || installed != desired || updateMS == nil || *updateMS <= 0 {
		return
	}
	every := time.Duration(*updateMS * float64(time.Millisecond))
	if dc.fw.defects.on(DefOTAUpdateTimeIgnored) {
		every = otaDefaultPeriod
	}
	every = max(every, otaMinPeriod)
	if o.appStop != nil && o.appVer == installed && o.appEvery == every {
		return
	}
	if o.appStop != nil {
		o.appStop()
	}
	actx, cancel := context.WithCancel(ctx)
	o.appGen++
	gen := o.appGen
	o.appStop, o.appVer, o.appEvery = cancel, installed, every
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		defer func() {
			o.mu.Lock()
			if o.appGen == gen {
				o.appStop = nil
			}
			o.mu.Unlock()
		}()
		for n := 1; ; n++ {
			select {
			case <-actx.Done():
				return
			case <-t.C:
			}
			payload := fmt.Sprintf(`{"counter":%d,"app":%s}`, n, strconv.Quote(installed))
			if _, err := dc.sendTelemetry(actx, agentproto.TelemetryArgs{Payload: payload, Properties: map[string]string{"ota-app": installed}}); err != nil && actx.Err() == nil {
				dc.fw.logf("W", "ota app: telemetry: %s", err.Msg)
			}
		}
	}()
}

// otaDefaultPeriod is the period of ota-updatetime-ignored (the sample's
// built-in default).
const otaDefaultPeriod = 60 * time.Second

// otaStatus answers ota.status.
func (fw *Firmware) otaStatus() agentproto.OTAStatus {
	dc := fw.client
	installed := dc.otaInstalled()
	fw.nvs.mu.Lock()
	files := append([]agentproto.OTAFile(nil), fw.nvs.OTA.Files...)
	fw.nvs.mu.Unlock()
	dc.ota.mu.Lock()
	defer dc.ota.mu.Unlock()
	st := agentproto.OTAStatus{Installed: installed, Files: files, State: dc.ota.state, Detail: dc.ota.detail}
	if dc.ota.appStop != nil {
		st.Running = dc.ota.appVer
	}
	return st
}

// sleep finishes the running OTA cycle, disconnects cleanly (OTA-009,
// CONN-022) and then reboots after ms (a wake from deep sleep is a boot).
func (fw *Firmware) sleep(ctx context.Context, a agentproto.SleepArgs) *agentproto.Error {
	if a.MS < 0 || a.MS > sleepMaxMS {
		return agentproto.Errorf(agentproto.ErrBadArgs, "sleep ms must be in 0..%d", sleepMaxMS)
	}
	dc := fw.client
	if dc.on(DefOTANotReadOnWake) {
		fw.nvs.mu.Lock()
		fw.nvs.OTA.Woke = true // defect: the flag survives the sleep
		fw.nvs.mu.Unlock()
		fw.changed(changedNVS)
	}
	if dc.on(DefOTASleepEarly) {
		dc.close(false) // defect: the radio goes down mid-cycle, no DISCONNECT
	} else {
		done := make(chan struct{})
		go func() { dc.ota.cycle.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			return agentproto.Errorf(agentproto.ErrInternal, "sleep: %v", ctx.Err())
		case <-time.After(2 * otaHTTPTimeout):
			return agentproto.Errorf(agentproto.ErrTimeout, "the OTA cycle did not finish")
		}
		dc.close(true)
	}
	fw.logf("I", "sleeping %d ms", a.MS)
	go func() {
		time.Sleep(time.Duration(a.MS) * time.Millisecond)
		fw.reset <- struct{}{}
	}()
	return nil
}

// dispatchOTA runs the OTA, sleep and file-upload operations.
func (fw *Firmware) dispatchOTA(ctx context.Context, op string, raw json.RawMessage) (any, *agentproto.Error) {
	switch op {
	case agentproto.OpOTAStatus:
		return fw.otaStatus(), nil
	case agentproto.OpSleep:
		var a agentproto.SleepArgs
		if err := decodeArgs(raw, &a); err != nil {
			return nil, err
		}
		return nil, fw.sleep(ctx, a)
	case agentproto.OpFileUpload:
		var a agentproto.FileUploadArgs
		if err := decodeArgs(raw, &a); err != nil {
			return nil, err
		}
		return fw.client.fileUpload(ctx, a)
	case agentproto.OpAppBurst:
		var a agentproto.BurstArgs
		if err := decodeArgs(raw, &a); err != nil {
			return nil, err
		}
		return fw.client.burst(a)
	}
	return nil, agentproto.Errorf(agentproto.ErrUnknownOp, "operation %q is not implemented", op)
}
