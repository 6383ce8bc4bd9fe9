package localapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/pbx-agent/pbx-agent/agent/localapi"
	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

func TestOfflineEndpoints(t *testing.T) {
	h := newHarness(t, nil)
	refused := &license.Error{Doc: "offline licence file", Kind: license.ErrInvalid,
		Detail: "this licence file is for appliance dev-a, this is dev-b"}

	h.backend.SetOfflineFile(apitype.OfflineFile{File: "-----BEGIN PBX OFFLINE USAGE REPORT-----\n", Again: true}, nil)
	a := h.do(t, request{method: "POST", path: "/v1/offline/report"})
	var f apitype.OfflineFile
	if a.status != 200 || json.Unmarshal(a.body, &f) != nil || !f.Again || !strings.HasPrefix(f.File, "-----BEGIN") {
		t.Fatalf("report: %d %s", a.status, a.body)
	}
	a = h.do(t, request{method: "POST", path: "/v1/offline/request", body: `{"key": "` + testKey + `"}`})
	if a.status != 200 || len(h.backend.OfflineKeys()) != 1 {
		t.Fatalf("request: %d %s", a.status, a.body)
	}

	for _, tc := range []struct {
		name     string
		req      request
		setErr   func()
		status   int
		code     string
		contains string
	}{
		{"a licence file refused", request{method: "POST", path: "/v1/offline/licence", body: `{"file": "x"}`},
			func() { h.backend.SetInstallErr(fmt.Errorf("installing: %w", refused)) }, 400, apitype.CodeInvalidFile, "for appliance dev-a, this is dev-b"},
		{"no file", request{method: "POST", path: "/v1/offline/licence", body: `{"file": " "}`}, nil, 400, apitype.CodeInvalidFile, "no licence file"},
		{"a report before activation", request{method: "POST", path: "/v1/offline/report"},
			func() { h.backend.SetOfflineFile(apitype.OfflineFile{}, apitype.ErrNotActivated) }, 409, apitype.CodeNotActivated, "not activated"},
		{"no key", request{method: "POST", path: "/v1/offline/request", body: `{"key": ""}`}, nil, 400, apitype.CodeInvalidKey, "no key"},
		{"a write over TCP", request{via: "tcp", method: "POST", path: "/v1/offline/licence", body: `{"file": "x"}`}, nil, 403, apitype.CodeForbidden, ""},
		{"a write from a web page", request{method: "POST", path: "/v1/offline/licence", body: `{"file": "x"}`, origin: "http://evil.example"}, nil, 403, apitype.CodeForbidden, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setErr != nil {
				tc.setErr()
			}
			a := h.do(t, tc.req)
			eb := a.errorBody(t)
			if a.status != tc.status || eb.Code != tc.code || !strings.Contains(eb.Error, tc.contains) {
				t.Fatalf("got %d %+v, want %d %s with %q", a.status, eb, tc.status, tc.code, tc.contains)
			}
		})
	}
	if got := len(h.backend.LicenceFiles()); got != 1 {
		t.Errorf("InstallLicenceFile was called %d times, want once (only the write that passed the door)", got)
	}
}

// plainBackend hides every method but the Backend's: a daemon without
// the file exchange.
type plainBackend struct{ localapi.Backend }

// A daemon without the file exchange answers 501, never a panic.
func TestOfflineEndpointsWithoutOfflineBackend(t *testing.T) {
	h := newHarness(t, func(c *localapi.Config) { c.Backend = plainBackend{c.Backend} })
	a := h.do(t, request{method: "POST", path: "/v1/offline/report"})
	if a.status != http.StatusNotImplemented {
		t.Fatalf("got %d %s", a.status, a.body)
	}
}

// FuzzOfflineLicenceBody: whatever a writer posts to /v1/offline/licence,
// the backend only ever sees a file that is not blank, from a JSON body
// that decoded, and every refusal is a JSON error.
func FuzzOfflineLicenceBody(f *testing.F) {
	for _, s := range offlineSeeds() {
		f.Add(s[0], []byte(s[1]))
	}
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		rec, b := fuzzServe(t, "/v1/offline/licence", contentType, body)
		checkAnswer(t, rec, http.StatusOK, http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType)
		files := b.LicenceFiles()
		for _, f := range files {
			if strings.TrimSpace(f) == "" {
				t.Fatalf("the backend was asked to install a blank file from body %q", body)
			}
		}
		if (rec.Code == http.StatusOK) != (len(files) == 1) {
			t.Fatalf("status %d after %d installs", rec.Code, len(files))
		}
	})
}

func offlineSeeds() map[string][2]string {
	const js = "application/json"
	return map[string][2]string{
		"armoured":   {js, `{"file": "-----BEGIN PBX OFFLINE LICENCE-----\neyJhbGciOiJFZERTQSJ9.e30.c2ln\n-----END PBX OFFLINE LICENCE-----\n"}`},
		"blank-file": {js, `{"file": " \r\n"}`},
		"no-file":    {js, `{}`},
		"key-field":  {js, `{"key": "eyJ"}`},
		"oversized":  {js, `{"file": "` + strings.Repeat("A", localapi.MaxBodyBytes) + `"}`},
	}
}

// TestWriteOfflineFuzzSeeds rewrites FuzzOfflineLicenceBody's committed
// seeds with -update.
func TestWriteOfflineFuzzSeeds(t *testing.T) {
	if !*updateSeeds {
		t.Skip("run with -update to rewrite testdata/fuzz")
	}
	writeSeeds(t, "FuzzOfflineLicenceBody", offlineSeeds())
}
