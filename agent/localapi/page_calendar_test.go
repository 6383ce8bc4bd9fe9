package localapi

import (
	"context"
	"io"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
)

// TestStatusPageCalendar: the page shows the renewal and the last moment
// for changes among the deadlines, says when decreases are refused, and
// when and how a deleted PBX left.
func TestStatusPageCalendar(t *testing.T) {
	now := time.Date(2027, 3, 31, 10, 0, 0, 0, time.UTC)
	renews, changes := time.Date(2027, 4, 30, 0, 0, 0, 0, time.UTC), time.Date(2027, 4, 28, 23, 59, 59, 0, time.UTC)
	from, gone := time.Date(2027, 4, 1, 0, 0, 0, 0, time.UTC), now.AddDate(0, 0, -3)
	page := func(st apitype.Status) string {
		s, err := New(Config{Backend: pageBackend{st: st}})
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest("GET", "/", nil)
		req.Host = "127.0.0.1:9731"
		req = req.WithContext(context.WithValue(req.Context(), connKey{}, &connInfo{kind: TCP, access: accessRead}))
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		body, _ := io.ReadAll(rec.Result().Body)
		return string(body)
	}
	for _, tt := range []struct {
		name        string
		st          apitype.Status
		want, never []string
	}{
		{"active on the last day of a month", apitype.Status{State: "active", Clock: apitype.ClockStatus{Now: now, LocalBehind: "6 days"},
			License:  &apitype.LicenseStatus{Term: "monthly", Profiles: map[string]apitype.ProfileStatus{}},
			Calendar: &apitype.CalendarStatus{RenewsOn: &renews, ChangesUntil: &changes, NoDecreasesToday: true, DecreasesFrom: &from}},
			[]string{"Renews (and is invoiced)</dt><dd><span class=\"when\">2027-04-30</span> <span class=\"rel\">(in 30 days)</span>", "Licence changes until", "2027-04-28 23:59 UTC",
				`id="no-decreases">Today is the last day of the month (UTC): the portal refuses licence decreases until 2027-04-01 00:00 UTC; increases are taken.`,
				"(local clock 6 days behind: ignored)"},
			[]string{`id="deleted"`}},
		{"another day", apitype.Status{State: "active", Clock: apitype.ClockStatus{Now: now},
			Calendar: &apitype.CalendarStatus{RenewsOn: &renews, ChangesUntil: &changes}},
			[]string{"Renews (and is invoiced)"}, []string{`id="no-decreases"`}},
		{"re-bound", apitype.Status{State: "deleted", Clock: apitype.ClockStatus{Now: now},
			Deleted: &apitype.DeletedStatus{At: &gone, Rebound: true}},
			[]string{`id="deleted">Re-bound to another appliance, which holds the licence now: 2027-03-28 10:00 UTC.`},
			[]string{"Renews", `id="no-decreases"`}},
		{"deleted", apitype.Status{State: "deleted", Clock: apitype.ClockStatus{Now: now},
			Deleted: &apitype.DeletedStatus{At: &gone}},
			[]string{`id="deleted">Deleted: 2027-03-28 10:00 UTC.`}, []string{"Re-bound"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			body := page(tt.st)
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("page lacks %q", w)
				}
			}
			for _, n := range tt.never {
				if strings.Contains(body, n) {
					t.Errorf("page shows %q", n)
				}
			}
		})
	}
}

// TestPastDeadlinesInThePastTense: a deadline passed keeps its row, named
// for what happened ("Telephony stopped"), never a "stops" struck out that
// reads as if it had not happened.
func TestPastDeadlinesInThePastTense(t *testing.T) {
	now := time.Date(2027, 3, 10, 10, 0, 0, 0, time.UTC)
	stop, del := now.Add(-34*time.Hour), now.Add(8*24*time.Hour)
	v := newPageView(apitype.Status{State: "stopped", Clock: apitype.ClockStatus{Now: now},
		Deadlines: apitype.Deadlines{StopAt: &stop, DeleteAt: &del}})
	want := []timeRow{
		{Label: "Telephony stopped", When: "2027-03-09 00:00 UTC", Relative: "34 hours ago", Past: true},
		{Label: "PBX deleted", When: "2027-03-18 10:00 UTC", Relative: "in 8 days"},
	}
	if !reflect.DeepEqual(v.Deadlines, want) {
		t.Errorf("deadlines %+v\nwant %+v", v.Deadlines, want)
	}
	if strings.Contains(pageSource, "line-through") {
		t.Error("the page strikes out past deadlines")
	}
}
