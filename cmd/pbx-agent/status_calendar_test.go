package main

import (
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
)

// TestStatusCalendarLines: `pbx-agent status` shows the renewal, the last
// moment for changes, no decreases on the last day of a month, and when
// and how a deleted PBX left, counted from the licence clock.
func TestStatusCalendarLines(t *testing.T) {
	ts := func(s string) *time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return &v
	}
	now := *ts("2027-03-31T10:00:00Z")
	licence := &apitype.LicenseStatus{Term: "monthly", TermEnd: ts("2027-04-30T23:59:59Z"), Profiles: map[string]apitype.ProfileStatus{}}
	for _, tt := range []struct {
		name  string
		st    apitype.Status
		want  []string
		never []string
	}{
		{"the last day of a month", apitype.Status{State: "active", License: licence, Clock: apitype.ClockStatus{Now: now},
			Calendar: &apitype.CalendarStatus{RenewsOn: ts("2027-04-30T00:00:00Z"), ChangesUntil: ts("2027-04-28T23:59:59Z"),
				NoDecreasesToday: true, DecreasesFrom: ts("2027-04-01T00:00:00Z")}},
			[]string{
				"Renews              2027-04-30 (in 30 days), renewed and invoiced that day\n",
				"Changes until       2027-04-28 23:59 UTC (in 29 days): make licence changes at least 2 days before the term ends\n",
				"No decreases today  the last day of the month (UTC): the portal refuses decreases, takes increases, again from 2027-04-01 00:00 UTC\n",
			}, []string{"Deleted", "Re-bound"}},
		{"within the 2 days", apitype.Status{State: "active", License: licence, Clock: apitype.ClockStatus{Now: *ts("2027-04-29T10:00:00Z")},
			Calendar: &apitype.CalendarStatus{RenewsOn: ts("2027-04-30T00:00:00Z"), ChangesUntil: ts("2027-04-28T23:59:59Z")}},
			[]string{"Changes until       2027-04-28 23:59 UTC (10 hours ago): passed, a change now comes less than 2 days before the term ends\n"},
			[]string{"No decreases today"}},
		{"re-bound", apitype.Status{State: "deleted", Clock: apitype.ClockStatus{Now: now},
			Deleted: &apitype.DeletedStatus{At: ts("2027-03-28T10:00:00Z"), Rebound: true}},
			[]string{"Re-bound            2027-03-28 10:00 UTC (3 days ago): another appliance holds the PBX's licence now\n"},
			[]string{"Renews", "Deleted  "}},
		{"deleted", apitype.Status{State: "deleted", Clock: apitype.ClockStatus{Now: now},
			Deleted: &apitype.DeletedStatus{At: ts("2027-03-24T00:00:00Z")}},
			[]string{"Deleted             2027-03-24 00:00 UTC (7 days ago)\n"},
			[]string{"Re-bound"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			printStatus(&b, tt.st, false)
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("status lacks %q:\n%s", w, b.String())
				}
			}
			for _, n := range tt.never {
				if strings.Contains(b.String(), n) {
					t.Errorf("status shows %q:\n%s", n, b.String())
				}
			}
		})
	}
}
