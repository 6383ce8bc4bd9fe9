package localapi_test

import (
	"encoding/json"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

func TestAdmissionAPI(t *testing.T) {
	h := newHarness(t, nil)
	ask := func(body string) request { return request{method: "POST", path: "/v1/admission", body: body} }
	allowed := apitype.AdmissionAnswer{Allowed: true, Remaining: ptr(3)}
	denied := apitype.AdmissionAnswer{Allowed: false, Reason: "UC-Premium is full: 10 licensed, 10 used, 0 reserved"}
	tests := []struct {
		name       string
		req        request
		backend    apitype.AdmissionAnswer
		wantStatus int
		wantCode   string             // error code of a 4xx other than 409
		wantMsg    string             // part of the error message
		wantAsked  *apitype.Admission // what the backend was asked; nil: not asked
		wantBody   map[string]any     // the answer, for 200 and 409
	}{
		{name: "allowed", req: ask(`{"profile": "uc-premium", "count": 1, "dry_run": false}`), backend: allowed,
			wantStatus: 200, wantAsked: &apitype.Admission{Profile: license.UCPremium, Count: 1},
			wantBody: map[string]any{"allowed": true, "remaining": 3.0}},
		{name: "allowed, none left", req: ask(`{"profile": "uc-premium"}`), backend: apitype.AdmissionAnswer{Allowed: true, Remaining: ptr(0)},
			wantStatus: 200, wantAsked: &apitype.Admission{Profile: license.UCPremium, Count: 1},
			wantBody: map[string]any{"allowed": true, "remaining": 0.0}},
		{name: "denied", req: ask(`{"profile": "uc-premium", "count": 2}`), backend: denied,
			wantStatus: 409, wantAsked: &apitype.Admission{Profile: license.UCPremium, Count: 2},
			wantBody: map[string]any{"allowed": false, "reason": denied.Reason}},
		{name: "dry run, display name", req: ask(`{"profile": "UC-Premium", "dry_run": true}`), backend: allowed,
			wantStatus: 200, wantAsked: &apitype.Admission{Profile: license.UCPremium, Count: 1, DryRun: true},
			wantBody: map[string]any{"allowed": true, "remaining": 3.0}},
		{name: "unknown profile", req: ask(`{"profile": "uc-gold"}`), wantStatus: 400, wantCode: apitype.CodeUnknownProfile, wantMsg: `unknown profile "uc-gold"`},
		{name: "no profile", req: ask(`{"count": 1}`), wantStatus: 400, wantCode: apitype.CodeBadRequest, wantMsg: "no profile"},
		{name: "count zero", req: ask(`{"profile": "pbx-basic", "count": 0}`), wantStatus: 400, wantCode: apitype.CodeBadRequest, wantMsg: "count 0"},
		{name: "count negative", req: ask(`{"profile": "pbx-basic", "count": -2}`), wantStatus: 400, wantCode: apitype.CodeBadRequest},
		{name: "count too large", req: ask(`{"profile": "pbx-basic", "count": 100001}`), wantStatus: 400, wantCode: apitype.CodeBadRequest},
		{name: "count not a number", req: ask(`{"profile": "pbx-basic", "count": "1"}`), wantStatus: 400, wantCode: apitype.CodeBadRequest},
		{name: "unknown field", req: ask(`{"profile": "pbx-basic", "dryrun": true}`), wantStatus: 400, wantCode: apitype.CodeBadRequest, wantMsg: "dryrun"},
		{name: "over tcp", req: request{via: "tcp", method: "POST", path: "/v1/admission", body: `{"profile": "pbx-basic"}`},
			wantStatus: 403, wantCode: apitype.CodeForbidden, wantMsg: "admission is asked on the unix socket"},
		{name: "from a web page", req: request{method: "POST", path: "/v1/admission", body: `{"profile": "pbx-basic"}`, origin: "http://evil.example"},
			wantStatus: 403, wantCode: apitype.CodeForbidden, wantMsg: "Origin"},
		{name: "foreign host", req: request{method: "POST", path: "/v1/admission", body: `{"profile": "pbx-basic"}`, host: "evil.example"},
			wantStatus: 403, wantCode: apitype.CodeForbidden, wantMsg: `"evil.example"`},
		{name: "get", req: request{method: "GET", path: "/v1/admission"}, wantStatus: 405, wantCode: apitype.CodeMethod, wantMsg: "use POST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.backend.SetAdmission(tt.backend)
			h.backend.ClearCalls()
			a := h.do(t, tt.req)
			if a.status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", a.status, tt.wantStatus, a.body)
			}
			asked := h.backend.Admissions()
			switch {
			case tt.wantAsked == nil && len(asked) != 0:
				t.Errorf("the backend was asked %+v", asked)
			case tt.wantAsked != nil:
				if len(asked) != 1 {
					t.Fatalf("the backend was asked %d times", len(asked))
				}
				want := *tt.wantAsked
				want.Peer = "uid " + strconv.Itoa(os.Getuid()) + " pid " + strconv.Itoa(os.Getpid())
				want.PeerUID = ptr(uint32(os.Getuid())) // the peer's, from SO_PEERCRED
				if !reflect.DeepEqual(asked[0], want) {
					t.Errorf("asked %+v, want %+v", asked[0], want)
				}
			}
			if tt.wantBody != nil {
				var got map[string]any
				if err := json.Unmarshal(a.body, &got); err != nil || !reflect.DeepEqual(got, tt.wantBody) {
					t.Errorf("body %s (%v), want %v", a.body, err, tt.wantBody)
				}
				return
			}
			eb := a.errorBody(t)
			if eb.Code != tt.wantCode || !strings.Contains(eb.Error, tt.wantMsg) {
				t.Errorf("error %+v, want code %q and a message with %q", eb, tt.wantCode, tt.wantMsg)
			}
		})
	}
}
