package sim

// IoT Hub file upload over HTTPS (FUP-001..003; 002 L10928-10976): POST
// {hub}/devices/{id}/files {"blobName"} with the device's SAS token, PUT
// the file as a block blob to https://{hostName}/{containerName}/
// {blobName}{sasToken} (the catalog's assumption, FUP-002), then always
// POST the outcome, success or failure, to /files/notifications with the
// correlationId of that upload (FUP-003).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/hilrun/hilrun/devicefw/agentproto"
)

const fupMaxFile = 1 << 20

type fupAnswer struct {
	CorrelationID string `json:"correlationId"`
	HostName      string `json:"hostName"`
	ContainerName string `json:"containerName"`
	BlobName      string `json:"blobName"`
	SASToken      string `json:"sasToken"`
}

func (dc *deviceClient) fileUpload(ctx context.Context, a agentproto.FileUploadArgs) (agentproto.FileUploadResult, *agentproto.Error) {
	var res agentproto.FileUploadResult
	if a.BlobName == "" {
		return res, agentproto.Errorf(agentproto.ErrBadArgs, "file.upload needs a blobName")
	}
	data := []byte(a.Payload)
	if a.Gen != nil {
		if a.Gen.Size < 0 || a.Gen.Size > fupMaxFile {
			return res, agentproto.Errorf(agentproto.ErrBadArgs, "gen.size must be in 0..%d", fupMaxFile)
		}
		data = agentproto.Generate(a.Gen.Size, a.Gen.Seed)
	}
	res.Size = len(data)
	cc, cerr := dc.snapshot()
	if cerr != nil {
		return res, cerr
	}
	if cc.authType != "sas" {
		return res, agentproto.Errorf(agentproto.ErrUnsupported, "file upload is implemented with SAS authentication only")
	}
	tok, _, err := dc.token(cc)
	if err != nil {
		return res, agentproto.Errorf(agentproto.ErrInternal, "token: %v", err)
	}
	client := dc.httpsClient(cc)
	defer client.CloseIdleConnections()
	hub := "https://" + net.JoinHostPort(cc.host, "443") + "/devices/" + url.PathEscape(cc.id.DeviceID) + "/files"
	// 1. Ask for the storage location (FUP-001).
	var start *http.Request
	if dc.on(DefFUPDeprecatedGet) {
		start, err = http.NewRequestWithContext(ctx, http.MethodGet, hub+"/"+url.PathEscape(a.BlobName), nil)
	} else {
		body, _ := json.Marshal(map[string]string{"blobName": dc.boundsBlobName(a.BlobName)})
		start, err = http.NewRequestWithContext(ctx, http.MethodPost, hub, bytes.NewReader(body))
	}
	if err != nil {
		return res, agentproto.Errorf(agentproto.ErrInternal, "%v", err)
	}
	start.Header.Set("Authorization", tok)
	start.Header.Set("Content-Type", "application/json")
	var ans fupAnswer
	st, body, herr := doHTTP(client, start)
	res.StartStatus = st
	if herr != nil {
		res.Error = "start: " + herr.Error()
		return res, nil
	}
	if st != http.StatusOK || json.Unmarshal(body, &ans) != nil || ans.CorrelationID == "" {
		res.Error = fmt.Sprintf("start answered %d", st)
		return res, nil
	}
	res.CorrelationID, res.BlobName = ans.CorrelationID, ans.BlobName
	// 2. Upload to the returned location (FUP-002).
	name := ans.BlobName
	if dc.on(DefFUPWrongLocation) {
		name = a.BlobName // defect: the requested name, not the one returned
	}
	blobURL := "https://" + ans.HostName + "/" + ans.ContainerName + "/" + dc.boundsBlobPath(name) + ans.SASToken
	put, err := http.NewRequestWithContext(ctx, http.MethodPut, blobURL, bytes.NewReader(data))
	ok := false
	if err == nil && dc.boundsSkipEmpty(data) {
		ok, res.UploadStatus = true, http.StatusCreated // defect fup-empty-file-skipped
	} else if err == nil {
		put.Header.Set("x-ms-blob-type", "BlockBlob")
		put.Header.Set("Content-Type", "application/octet-stream")
		st, _, herr := doHTTP(client, put)
		res.UploadStatus = st
		ok = herr == nil && st == http.StatusCreated
		if herr != nil {
			res.Error = "upload: " + herr.Error()
		} else if !ok {
			res.Error = fmt.Sprintf("upload answered %d", st)
		}
	} else {
		res.Error = "upload: bad storage URL"
	}
	// 3. Notify the outcome, whatever it was (FUP-003).
	if dc.on(DefFUPNoNotification) || (!ok && dc.on(DefFUPNoFailureNotice)) {
		return res, nil
	}
	corr := ans.CorrelationID
	if dc.on(DefFUPWrongCorrelation) {
		corr = a.BlobName // defect: the blob name where the correlationId belongs
	}
	code, desc := res.UploadStatus, "Created"
	if !ok {
		desc = res.Error
		if code == 0 {
			code = 500
		}
		code = dc.boundsFailureCode(code)
	}
	nb, _ := json.Marshal(map[string]any{"correlationId": corr, "isSuccess": ok, "statusCode": code, "statusDescription": desc})
	note, err := http.NewRequestWithContext(ctx, http.MethodPost, hub+"/notifications", bytes.NewReader(nb))
	if err != nil {
		return res, agentproto.Errorf(agentproto.ErrInternal, "%v", err)
	}
	note.Header.Set("Authorization", tok)
	note.Header.Set("Content-Type", "application/json")
	st, _, herr = doHTTP(client, note)
	res.NotifyStatus = st
	if herr != nil && res.Error == "" {
		res.Error = "notify: " + herr.Error()
	}
	return res, nil
}

func escapeBlobPath(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}

// doHTTP runs a request and reads a bounded answer; errors carry no URL.
func doHTTP(c *http.Client, r *http.Request) (int, []byte, error) {
	res, err := c.Do(r)
	if err != nil {
		return 0, nil, redactURLError(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	if err != nil {
		return res.StatusCode, nil, redactURLError(err)
	}
	return res.StatusCode, b, nil
}
