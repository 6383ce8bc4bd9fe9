package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/audit"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

func TestCheck(t *testing.T) {
	fb, sock := daemon(t)
	full := "UC-Premium is full: 10 licensed, 9 used, 1 reserved; buy more UC-Premium licences on the portal, or remove a UC-Premium user"
	tests := []struct {
		name       string
		args       []string
		answer     apitype.AdmissionAnswer
		wantCode   int
		wantStdout string
		wantStderr string
		wantAsked  *apitype.Admission
	}{
		{name: "allowed, a dry run", args: []string{"uc-premium"}, answer: apitype.AdmissionAnswer{Allowed: true, Remaining: ptr(3)},
			wantStdout: "allowed (a dry run: nothing reserved): 1 UC-Premium user; 3 more could be added after it\n",
			wantAsked:  &apitype.Admission{Profile: license.UCPremium, Count: 1, DryRun: true}},
		{name: "reserve several", args: []string{"UC-Premium", "--count", "2", "--reserve"}, answer: apitype.AdmissionAnswer{Allowed: true, Remaining: ptr(0)},
			wantStdout: "allowed and reserved: 2 UC-Premium users; 0 more could be added after them\n",
			wantAsked:  &apitype.Admission{Profile: license.UCPremium, Count: 2}},
		{name: "denied", args: []string{"uc-premium"}, answer: apitype.AdmissionAnswer{Reason: full},
			wantCode: 1, wantStderr: "pbx-agent: denied: " + full + "\n", wantAsked: &apitype.Admission{Profile: license.UCPremium, Count: 1, DryRun: true}},
		{name: "denied, json", args: []string{"uc-premium", "--json"}, answer: apitype.AdmissionAnswer{Reason: full},
			wantCode: 1, wantStdout: `"allowed": false`, wantStderr: "denied: UC-Premium is full", wantAsked: &apitype.Admission{Profile: license.UCPremium, Count: 1, DryRun: true}},
		{name: "allowed, json", args: []string{"pbx-basic", "--json", "-n", "3"}, answer: apitype.AdmissionAnswer{Allowed: true, Remaining: ptr(0)},
			wantStdout: "{\n  \"allowed\": true,\n  \"remaining\": 0\n}\n", wantAsked: &apitype.Admission{Profile: license.PBXBasic, Count: 3, DryRun: true}},
		{name: "unknown profile", args: []string{"uc-gold"}, wantCode: 2, wantStderr: `pbx-agent: unknown profile "uc-gold"`},
		{name: "bad count", args: []string{"uc-premium", "--count", "0"}, wantCode: 2, wantStderr: "--count 0: ask for 1 to"},
		{name: "no profile", args: nil, wantCode: 2, wantStderr: "accepts 1 arg"},
		{name: "daemon not running", args: []string{"uc-premium", "--socket", "/nonexistent/agent.sock"}, wantCode: 2, wantStderr: "is the daemon running?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fb.SetAdmission(tt.answer)
			fb.ClearCalls()
			args := append([]string{"--socket", sock, "check"}, tt.args...)
			r := run(t, "", args...)
			wantResult(t, r, tt.wantCode, tt.wantStdout, tt.wantStderr)
			asked := fb.Admissions()
			switch {
			case tt.wantAsked == nil && len(asked) > 0:
				t.Errorf("the daemon was asked %+v", asked)
			case tt.wantAsked != nil:
				if len(asked) != 1 {
					t.Fatalf("the daemon was asked %d times", len(asked))
				}
				if asked[0].PeerUID == nil {
					t.Error("the daemon did not learn the peer's uid")
				}
				asked[0].Peer, asked[0].PeerUID = "", nil
				if asked[0] != *tt.wantAsked {
					t.Errorf("asked %+v, want %+v", asked[0], *tt.wantAsked)
				}
			}
		})
	}
}

func TestDescribeAdmissionDenied(t *testing.T) {
	e := audit.Event{Kind: "admission.denied", Fields: map[string]any{
		"profile": "uc-premium", "count": 2.0, "reason": "UC-Premium is full: 10 licensed, 10 used, 0 reserved",
		"kind": "full", "repeats": 3.0, "peer": "uid 1001 pid 42", "licensed": 10.0, "used": 10.0, "reserved": 0.0,
	}}
	want := "uc-premium ×2: UC-Premium is full: 10 licensed, 10 used, 0 reserved (3 more denied since the last record) [uid 1001 pid 42]"
	if got := describe(e); got != want {
		t.Errorf("describe =\n%s\nwant\n%s", got, want)
	}
}

func TestStatusUsersAndAllowances(t *testing.T) {
	st := activeStatus()
	st.License.SoftOverage = &apitype.SoftOverageStatus{Factor: 1.1, Until: st.Clock.Now.Add(72 * time.Hour)}
	st.License.HigherCoversLower = true
	st.Users = apitype.UsersStatus{Source: "sqlite /var/lib/wms/users.db", CountedAt: ptr(st.Clock.Now.Add(-5 * time.Second)), Error: "no such table: users",
		Failures: 2, FailingSince: ptr(st.Clock.Now.Add(-4 * time.Second))}
	var b bytes.Buffer
	printStatus(&b, st, false)
	for _, want := range []string{
		"Soft overage        up to 1.1× the counts until 2026-05-23T10:00:00Z (in 3 days)\n",
		"Cover               free licences of a higher profile hold users of lower ones\n",
		"Users counted       2026-05-20T09:59:55Z (5 seconds ago), from sqlite /var/lib/wms/users.db\n",
		"Counting fails      no such table: users\n",
		"                    since 2026-05-20T09:59:56Z (4 seconds ago), 2 time(s) in a row\n",
		"                    admissions go by the last good count for a few minutes more\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
	st.Users = apitype.UsersStatus{Source: "command /usr/lib/wms/count"}
	b.Reset()
	printStatus(&b, st, false)
	if !strings.Contains(b.String(), "Users counted       never, from command /usr/lib/wms/count\n") {
		t.Errorf("never counted:\n%s", b.String())
	}
	st.Users = apitype.UsersStatus{Source: "command /usr/lib/wms/count", Error: "exit status 1", Failures: 1, FailingSince: ptr(st.Clock.Now)}
	b.Reset()
	printStatus(&b, st, false)
	if !strings.Contains(b.String(), "the users are not known: no new users are admitted until a count succeeds\n") {
		t.Errorf("never counted, failing:\n%s", b.String())
	}
}
