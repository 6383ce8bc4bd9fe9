package localapi

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
)

// pageBackend is a Backend that only answers Status.
type pageBackend struct {
	Backend
	st apitype.Status
}

func (b pageBackend) Status() apitype.Status { return b.st }

func TestStatusPage(t *testing.T) {
	now := time.Date(2027, 3, 10, 10, 0, 0, 0, time.UTC)
	stop, del := now.AddDate(0, 0, 5), now.AddDate(0, 0, 14)
	retry := now.Add(12 * time.Second)
	st := apitype.Status{
		State:   "stopping",
		Next:    "no new users; telephony stops in 5 days, PBX deleted in 14 days <i>",
		Summary: `Every licence is at zero <script>alert("x")</script>`,
		PBX:     &apitype.PBXStatus{ID: "pbx-1", Name: `acme"><img src=x onerror=alert(1)>`, Model: "WPBX-VM"},
		License: &apitype.LicenseStatus{Term: "monthly", Revision: 4, Profiles: map[string]apitype.ProfileStatus{
			"uc-premium": {Licensed: 10, Used: 12, Reserved: 1},
			"pbx-basic":  {Licensed: 3, Used: 1},
		}, Overuse: map[string]int{"uc-premium": 2}},
		Deadlines: apitype.Deadlines{StopAt: &stop, DeleteAt: &del},
		Heartbeat: apitype.HeartbeatStatus{Next: &retry, Failures: 4, LastError: "portal refused: internal error"},
		Clock:     apitype.ClockStatus{Now: now},
		Commands: []apitype.CommandStatus{{ID: "cmd-1", Type: "ssh.open", State: "done", Result: "<b>opened</b>",
			ReceivedAt: now.Add(-2 * time.Hour), FinishedAt: ptrTime(now.Add(-time.Hour))}},
		Config: &apitype.ConfigStatus{RestartNeeded: []string{"listen.http", "state_dir"}, Error: "yaml: line 3"},
	}
	s, err := New(Config{Backend: pageBackend{st: st}})
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) (*http.Response, string) {
		req := httptest.NewRequest("GET", path, nil)
		req.Host = "127.0.0.1:9731"
		req = req.WithContext(context.WithValue(req.Context(), connKey{}, &connInfo{kind: TCP, access: accessRead}))
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		body, _ := io.ReadAll(rec.Result().Body)
		return rec.Result(), string(body)
	}

	resp, body := get("/")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'sha256-") {
		t.Errorf("CSP = %q", csp)
	}
	for _, want := range []string{
		`id="next">no new users; telephony stops in 5 days, PBX deleted in 14 days &lt;i&gt;</p>`,
		"stopping", "UC-Premium", "12 of 10", "2 over the licence", "PBX-BASIC", "2 free",
		"Telephony stops", "2027-03-15 10:00 UTC", "(in 5 days)", "PBX deleted", "(in 14 days)", "cmd-1",
		"<td>2027-03-10 08:00 UTC</td><td>2027-03-10 09:00 UTC</td>", // the command's received and finished times
		"Next retry (4 failed in a row)",
		"More users than licences", "UC-Premium: 2 users without a licence", "No new users of this profile",
		"The configuration was not reloaded: yaml: line 3", "applied at the next restart: <code>listen.http</code>, <code>state_dir</code>.",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	for _, bad := range []string{`<script>alert("x")`, `<img src=x`, "<b>opened</b>", "days <i>"} {
		if strings.Contains(body, bad) {
			t.Errorf("page shows %q unescaped", bad)
		}
	}
	if strings.Contains(body, "http://") || strings.Contains(body, "https://") {
		t.Error("page refers to an outside address: it must work offline")
	}
	if profiles := body[strings.Index(body, "Users per profile"):]; strings.Index(profiles, "PBX-BASIC") > strings.Index(profiles, "UC-Premium") {
		t.Error("profiles are not in catalogue order")
	}

	_, part := get("/?part=main")
	if !strings.HasPrefix(part, "<main>") || strings.Contains(part, "<html") || !strings.Contains(part, "12 of 10") {
		t.Errorf("?part=main is not the main part alone: %.80q", part)
	}
}

func ptrTime(t time.Time) *time.Time { return &t }

// TestStoppedPageNeverSaysUsersKeepWorking: over-use on a PBX whose
// telephony the licence stops must not read as if calls went on.
func TestStoppedPageNeverSaysUsersKeepWorking(t *testing.T) {
	for state, keep := range map[string]bool{"active": true, "lapsed": true, "stopped": false, "deleted": false} {
		st := apitype.Status{State: state, License: &apitype.LicenseStatus{Term: "monthly", Revision: 2,
			Profiles: map[string]apitype.ProfileStatus{"uc-premium": {Licensed: 1, Used: 3}}, Overuse: map[string]int{"uc-premium": 2}},
			Clock: apitype.ClockStatus{Now: time.Date(2027, 3, 10, 10, 0, 0, 0, time.UTC)}}
		var b strings.Builder
		if err := pageTemplate.Execute(&b, newPageView(st)); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(b.String(), "keep working"); got != keep {
			t.Errorf("%s with over-use: the page says users keep working: %v, want %v", state, got, keep)
		}
	}
}

// TestPageWhileCountingFails: a failing count is shown with its error and
// the last good count, and no row claims free seats it cannot know.
func TestPageWhileCountingFails(t *testing.T) {
	now := time.Date(2027, 3, 10, 10, 0, 0, 0, time.UTC)
	counted, since := now.Add(-20*time.Minute), now.Add(-19*time.Minute)
	lic := &apitype.LicenseStatus{Term: "monthly", Revision: 2,
		Profiles: map[string]apitype.ProfileStatus{"uc-premium": {Licensed: 3, Used: 2}}}
	render := func(u apitype.UsersStatus) string {
		st := apitype.Status{State: "active", License: lic, Users: u, Clock: apitype.ClockStatus{Now: now}}
		var b strings.Builder
		if err := pageTemplate.Execute(&b, newPageView(st)); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}

	healthy := render(apitype.UsersStatus{Source: "sqlite /x.db", CountedAt: &counted})
	if !strings.Contains(healthy, "2 of 3") || !strings.Contains(healthy, "1 free") || strings.Contains(healthy, `id="counting"`) {
		t.Errorf("a healthy count does not read 2 of 3, 1 free, without a counting notice")
	}

	for name, tc := range map[string]struct {
		users apitype.UsersStatus
		want  []string
	}{
		"failing, the last count still trusted": {
			apitype.UsersStatus{Source: "sqlite /x.db", CountedAt: &counted, Error: "unable to open database file", Failures: 3, FailingSince: &since},
			[]string{`id="counting"`, "Counting users fails", "since 2027-03-10 09:41 UTC (19 minutes ago)", "3 times in a row",
				"unable to open database file", "Last good count: 2027-03-10 09:40 UTC", "2 of 3 at the last good count",
				"free seats unknown", "for a few minutes more"},
		},
		"failing for long": {
			apitype.UsersStatus{Source: "sqlite /x.db", CountedAt: &counted, Error: "unable to open database file", Failures: 30, FailingSince: &since, Unknown: true},
			[]string{"free seats unknown", "not known: no new users are admitted until a count succeeds"},
		},
		"never counted": {
			apitype.UsersStatus{Source: "sqlite /x.db", Error: "no such table: users", Failures: 1, FailingSince: &since},
			[]string{"No count has succeeded yet", "not counted, 3 licensed", "free seats unknown", "no new users are admitted"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			body := render(tc.users)
			for _, want := range tc.want {
				if !strings.Contains(body, want) {
					t.Errorf("page lacks %q", want)
				}
			}
			if strings.Contains(body, " free<") || strings.Contains(body, "1 free") {
				t.Error("the page shows free seats while counting fails")
			}
		})
	}
}
