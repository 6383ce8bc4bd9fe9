package localapi_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	. "github.com/pbx-agent/pbx-agent/agent/localapi"
	"github.com/pbx-agent/pbx-agent/agent/localapi/localapitest"
	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

var updateSeeds = flag.Bool("update", false, "rewrite the committed fuzz seeds under testdata/fuzz and the status page's golden files")

// fuzzServe sends one request straight to the API's handler, as a writer
// over the socket would (no listener: the fuzzer runs thousands a second),
// and returns the answer and what the backend was asked.
func fuzzServe(t *testing.T, path, contentType string, body []byte) (*httptest.ResponseRecorder, *localapitest.Backend) {
	b := new(localapitest.Backend)
	b.SetAdmission(apitype.AdmissionAnswer{Allowed: true, Remaining: ptr(3)})
	s, err := New(Config{Backend: b, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "http://local"+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	req = AsUnixWriter(req)
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	return rec, b
}

// checkAnswer fails unless the answer has one of the statuses allowed and,
// when it is an error, the documented JSON error body.
func checkAnswer(t *testing.T, rec *httptest.ResponseRecorder, allowed ...int) {
	t.Helper()
	if !slices.Contains(allowed, rec.Code) {
		t.Fatalf("status %d, want one of %v; body %s", rec.Code, allowed, rec.Body)
	}
	if rec.Code < 300 {
		return
	}
	var e struct{ Error, Code string }
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" || e.Code == "" {
		t.Fatalf("error %d without a JSON {error, code} body (%v): %s", rec.Code, err, rec.Body)
	}
}

// FuzzAdmissionBody: whatever a peer posts to /v1/admission, the answer is
// 200, 400, 409, 413 or 415, and the backend only ever sees a known profile
// and a count within bounds.
func FuzzAdmissionBody(f *testing.F) {
	f.Add("application/json", []byte(`{"profile": "uc-premium", "count": 2, "dry_run": true}`))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		rec, b := fuzzServe(t, "/v1/admission", contentType, body)
		checkAnswer(t, rec, http.StatusOK, http.StatusBadRequest, http.StatusConflict,
			http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType)
		admissions := b.Admissions()
		for _, a := range admissions {
			if _, err := license.ParseProfile(string(a.Profile)); err != nil || a.Count < 1 || a.Count > apitype.MaxAdmissionCount {
				t.Fatalf("the backend was asked %+v from body %q", a, body)
			}
		}
		if rec.Code == http.StatusOK && len(admissions) != 1 {
			t.Fatalf("200 after %d backend calls", len(admissions))
		}
	})
}

// FuzzActivateBody: whatever a writer posts to /v1/activate, the backend
// only ever sees a key that is not blank, from a JSON body that decoded.
func FuzzActivateBody(f *testing.F) {
	f.Add("application/json", []byte(`{"key": "eyJhbGciOiJFZERTQSJ9.e30.c2ln"}`))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		rec, b := fuzzServe(t, "/v1/activate", contentType, body)
		checkAnswer(t, rec, http.StatusOK, http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType)
		keys := b.Activations()
		for _, k := range keys {
			if strings.TrimSpace(k) == "" {
				t.Fatalf("the backend was asked to activate a blank key from body %q", body)
			}
		}
		if (rec.Code == http.StatusOK) != (len(keys) == 1) {
			t.Fatalf("status %d after %d activations", rec.Code, len(keys))
		}
	})
}

// TestWriteFuzzSeeds regenerates the committed seeds with -update.
func TestWriteFuzzSeeds(t *testing.T) {
	if !*updateSeeds {
		t.Skip("run with -update to rewrite testdata/fuzz")
	}
	const js = "application/json"
	huge := `{"profile": "uc-premium", "pad": "` + strings.Repeat("x", MaxBodyBytes) + `"}`
	writeSeeds(t, "FuzzAdmissionBody", map[string][2]string{
		"valid":           {js, `{"profile": "uc-premium", "count": 2, "dry_run": true}`},
		"display-name":    {js + "; charset=utf-8", `{"profile": "UC-Premium"}`},
		"unknown-profile": {js, `{"profile": "uc-platinum", "count": 1}`},
		"zero-count":      {js, `{"profile": "pbx-basic", "count": 0}`},
		"huge-count":      {js, `{"profile": "pbx-basic", "count": 1e9}`},
		"negative-count":  {js, `{"profile": "pbx-basic", "count": -5}`},
		"unknown-field":   {js, `{"profile": "pbx-basic", "users": 5}`},
		"two-values":      {js, `{"profile": "pbx-basic"} {"profile": "pbx-basic"}`},
		"not-json-type":   {"text/plain", `{"profile": "pbx-basic"}`},
		"oversized":       {js, huge},
		"empty":           {js, ``},
		"null":            {js, `null`},
	})
	writeSeeds(t, "FuzzActivateBody", map[string][2]string{
		"valid":     {js, `{"key": "eyJhbGciOiJFZERTQSJ9.e30.c2ln"}`},
		"blank-key": {js, `{"key": "  \n"}`},
		"no-key":    {js, `{}`},
		"array":     {js, `["key"]`},
		"oversized": {js, `{"key": "` + strings.Repeat("A", MaxBodyBytes) + `"}`},
		"form":      {"application/x-www-form-urlencoded", `key=abc`},
	})
}

func writeSeeds(t *testing.T, target string, seeds map[string][2]string) {
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, s := range seeds {
		body := fmt.Sprintf("go test fuzz v1\nstring(%q)\n[]byte(%q)\n", s[0], s[1])
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
