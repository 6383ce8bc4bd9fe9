package localapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
)

// Answers are encoded with buffers kept between requests. Each answer is
// exactly json.MarshalIndent's with a newline, whatever was encoded
// before it: a large answer (a status, an audit log) followed by a small
// one leaves nothing of itself in the next, and an answer that fails to
// encode writes nothing and spoils nothing.
func TestWriteJSONReusedBuffersLeakNothing(t *testing.T) {
	big := apitype.ErrorBody{Error: strings.Repeat("secret ", 20000), Code: "big"} // past maxKeptAnswer
	medium := apitype.ErrorBody{Error: strings.Repeat("x", 4000) + " <&> \u2028", Code: "medium"}
	small := apitype.AdmissionAnswer{Allowed: true, Remaining: new(int)}
	denied := apitype.AdmissionAnswer{Allowed: false, Reason: "uc-premium: 10 of 10 licensed users in use"}
	seq := []any{medium, small, big, small, denied, medium, math.NaN(), small, denied, small}
	for round := range 3 {
		for i, v := range seq {
			rec := httptest.NewRecorder()
			err := writeJSON(rec, http.StatusOK, v)
			want, merr := json.MarshalIndent(v, "", "  ")
			if merr != nil {
				if err == nil {
					t.Fatalf("round %d, answer %d: %v encoded without error", round, i, v)
				}
				if rec.Body.Len() != 0 || rec.Header().Get("Content-Type") != "" {
					t.Fatalf("round %d, answer %d: a failed encoding wrote %q", round, i, rec.Body)
				}
				continue
			}
			if err != nil {
				t.Fatalf("round %d, answer %d: %v", round, i, err)
			}
			if got := rec.Body.Bytes(); !bytes.Equal(got, append(want, '\n')) {
				t.Fatalf("round %d, answer %d:\n got %.200q\nwant %.200q", round, i, got, want)
			}
			h := rec.Header()
			if h.Get("Content-Type") != "application/json" || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Cache-Control") != "no-store" {
				t.Fatalf("round %d, answer %d: headers %v", round, i, h)
			}
		}
	}
}

// The headers every answer shares are set from values shared between
// requests: a handler that adds to one changes its own answer only.
func TestCommonHeadersNotShared(t *testing.T) {
	a, b := http.Header{}, http.Header{}
	setCommonHeaders(a, contentTypeJSON)
	a.Add("Cache-Control", "private")
	a.Set("X-Content-Type-Options", "changed")
	setCommonHeaders(b, contentTypeJSON)
	if got := b.Values("Cache-Control"); len(got) != 1 || got[0] != "no-store" {
		t.Errorf("Cache-Control of the next answer = %q, want [no-store]", got)
	}
	if got := b.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("X-Content-Type-Options of the next answer = %q, want nosniff", got)
	}
	if got := noStore; len(got) != 1 || got[0] != "no-store" {
		t.Errorf("the shared Cache-Control value became %q", got)
	}
}

// The exact Content-Type every client sends skips media type parsing;
// every other spelling is still parsed, and what is not JSON is refused.
func TestDecodeJSONContentType(t *testing.T) {
	body := `{"profile": "uc-premium"}`
	tests := []struct {
		ctype string
		ok    bool
	}{
		{"application/json", true},
		{"application/json; charset=utf-8", true},
		{"Application/JSON", true},
		{"application/json ", true},
		{"", false},
		{"text/plain", false},
		{"application/jsonp", false},
		{"application/json-seq", false},
		{"application/x-www-form-urlencoded", false},
		{"application/json; charset", false}, // a malformed parameter
		{"application/json\x00", false},
		{"text/plain, application/json", false},
	}
	for _, tt := range tests {
		t.Run(tt.ctype, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "http://local/v1/admission", strings.NewReader(body))
			if tt.ctype != "" {
				r.Header.Set("Content-Type", tt.ctype)
			}
			var req apitype.AdmissionRequest
			err := decodeJSON(r, &req)
			if tt.ok {
				if err != nil || req.Profile != "uc-premium" {
					t.Fatalf("refused (%v), decoded %+v", err, req)
				}
				return
			}
			var ae *apiError
			if !errors.As(err, &ae) || ae.status != http.StatusUnsupportedMediaType {
				t.Fatalf("err = %v, want 415", err)
			}
		})
	}
}

// The strict decoder stays: unknown fields and a second value are refused.
func TestDecodeJSONStrict(t *testing.T) {
	for _, body := range []string{
		`{"profile": "uc-premium", "cuont": 1}`,
		`{"profile": "uc-premium"} {"profile": "uc-premium"}`,
		`{"profile": "uc-premium"}}`,
		`{"profile": "uc-premium"}x`,
		`{"profile": "uc-premium"`,
	} {
		r := httptest.NewRequest(http.MethodPost, "http://local/v1/admission", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		var req apitype.AdmissionRequest
		var ae *apiError
		if err := decodeJSON(r, &req); !errors.As(err, &ae) || ae.status != http.StatusBadRequest {
			t.Errorf("%s: err = %v, want 400", body, err)
		}
	}
}

// The peer is described once per connection, as the audit log names it.
func TestConnDescribe(t *testing.T) {
	tests := []struct {
		ci   connInfo
		want string
	}{
		{connInfo{kind: Unix, creds: &peerCreds{uid: 1001, gid: 1001, pid: 4242}}, "uid 1001 pid 4242"},
		{connInfo{kind: Unix, creds: &peerCreds{uid: 0, pid: 1}}, "uid 0 pid 1"},
		{connInfo{kind: Unix}, "unix"},
		{connInfo{kind: TCP}, "tcp"},
	}
	for _, tt := range tests {
		if got := tt.ci.describe(); got != tt.want {
			t.Errorf("describe() = %q, want %q", got, tt.want)
		}
	}
}
