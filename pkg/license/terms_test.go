package license

import (
	"strings"
	"testing"
	"time"
)

// TestCalendarAt holds the portal guide's calendar rules as the status
// shows them: a term renews (and is invoiced) on its last day, changes
// are best made 2 days before the term ends, and no count may decrease on
// the last day of a month, leap years included. Everything is judged on
// the now passed in (the licence clock), in UTC.
func TestCalendarAt(t *testing.T) {
	monthly := testDocument() // term ends 2026-11-30 23:59:59
	yearly := testDocument()
	yearly.Term, yearly.TermEnd = Yearly, at(t, "2027-02-28T23:59:59Z")
	leap := testDocument()
	leap.TermEnd = at(t, "2028-02-29T23:59:59Z")
	renewed := testDocument() // renewed on 30 November: the next term's end
	renewed.TermEnd = at(t, "2026-12-31T23:59:59Z")
	renewedYear := testDocument()
	renewedYear.Term, renewedYear.TermEnd = Yearly, at(t, "2028-02-29T23:59:59Z")
	lifetime := testDocument()
	lifetime.Term, lifetime.TermEnd = Lifetime, time.Time{}

	tests := []struct {
		name                   string
		doc                    *Document
		now                    string
		renews, changes, decFr string // RFC 3339, "" for none
	}{
		{"monthly, mid-month", &monthly, "2026-11-27T12:00:00Z", "2026-11-30T00:00:00Z", "2026-11-28T23:59:59Z", ""},
		{"monthly, on its last day, the last of the month", &monthly, "2026-11-30T08:00:00Z", "2026-11-30T00:00:00Z", "2026-11-28T23:59:59Z", "2026-12-01T00:00:00Z"},
		{"renewed on its last day: the day still belongs to the old term", &renewed, "2026-11-30T23:59:59Z", "2026-11-30T00:00:00Z", "2026-11-28T23:59:59Z", "2026-12-01T00:00:00Z"},
		{"renewed, the next day", &renewed, "2026-12-01T00:00:00Z", "2026-12-31T00:00:00Z", "2026-12-29T23:59:59Z", ""},
		{"yearly renewed on 28 February, to a leap year's 29th", &renewedYear, "2027-02-28T12:00:00Z", "2027-02-28T00:00:00Z", "2027-02-26T23:59:59Z", "2027-03-01T00:00:00Z"},
		{"yearly ending in February of a common year", &yearly, "2027-02-28T23:59:59Z", "2027-02-28T00:00:00Z", "2027-02-26T23:59:59Z", "2027-03-01T00:00:00Z"},
		{"28 February of a leap year is not the last day", &leap, "2028-02-28T12:00:00Z", "2028-02-29T00:00:00Z", "2028-02-27T23:59:59Z", ""},
		{"29 February of a leap year is", &leap, "2028-02-29T00:00:00Z", "2028-02-29T00:00:00Z", "2028-02-27T23:59:59Z", "2028-03-01T00:00:00Z"},
		{"31 December, across the year", &lifetime, "2026-12-31T23:00:00Z", "", "", "2027-01-01T00:00:00Z"},
		{"lifetime: no renewal, no change deadline", &lifetime, "2026-11-27T12:00:00Z", "", "", ""},
		{"no licence", nil, "2026-11-27T12:00:00Z", "", "", ""},
		{"the last day in UTC, not in the offset given", nil, "2026-12-01T00:30:00+01:00", "", "", "2026-12-01T00:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now, err := time.Parse(time.RFC3339, tt.now)
			if err != nil {
				t.Fatal(err)
			}
			c := CalendarAt(tt.doc, now)
			check := func(what string, got time.Time, want string) {
				t.Helper()
				switch {
				case want == "" && !got.IsZero():
					t.Errorf("%s = %s, want none", what, got)
				case want != "" && !got.Equal(at(t, want)):
					t.Errorf("%s = %s, want %s", what, got, want)
				}
			}
			check("RenewsOn", c.RenewsOn, tt.renews)
			check("ChangesUntil", c.ChangesUntil, tt.changes)
			check("DecreasesFrom", c.DecreasesFrom, tt.decFr)
			if c.NoDecreasesToday != (tt.decFr != "") {
				t.Errorf("NoDecreasesToday = %v, want %v", c.NoDecreasesToday, tt.decFr != "")
			}
		})
	}
}

// TestCalendarAtAgreesWithTheLastDayRule: the status's "no decreases
// today" is the rule the portal applies (LastDayOfMonth), at every hour
// of a leap year.
func TestCalendarAtAgreesWithTheLastDayRule(t *testing.T) {
	days := 0
	for now := at(t, "2028-01-01T00:00:00Z"); now.Year() == 2028; now = now.Add(time.Hour) {
		c := CalendarAt(nil, now)
		if c.NoDecreasesToday != LastDayOfMonth(now) {
			t.Fatalf("%s: NoDecreasesToday = %v, the rule says %v", now, c.NoDecreasesToday, LastDayOfMonth(now))
		}
		if c.NoDecreasesToday && now.Hour() == 0 {
			days++
		}
	}
	if days != 12 {
		t.Errorf("%d last days of a month in 2028, want 12", days)
	}
}

func TestDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                    "less than a second",
		time.Second:          "1 second",
		-15 * time.Second:    "15 seconds",
		90 * time.Second:     "2 minutes",
		2 * time.Hour:        "2 hours",
		47 * time.Hour:       "47 hours",
		48 * time.Hour:       "2 days",
		144 * time.Hour:      "6 days",
		-144 * time.Hour:     "6 days",
		365 * 24 * time.Hour: "365 days",
	} {
		if got := Duration(d); got != want {
			t.Errorf("Duration(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestWithOveruse: an active PBX with users over its licence does not read
// as all good; the states that already admit no new users keep their
// phrase.
func TestWithOveruse(t *testing.T) {
	doc := testDocument()
	last := testNow
	active := Evaluate(Facts{Now: testNow.Add(time.Minute), Doc: &doc, LastSuccess: last})
	offline := Evaluate(Facts{Now: last.Add(DefaultHeartbeatTolerance + time.Hour), Doc: &doc, LastSuccess: last})
	stopping := Evaluate(Facts{Now: testNow, Doc: zeroed(doc, testNow), LastSuccess: last})

	tests := []struct {
		name    string
		v       Verdict
		users   int
		want    string
		summary string // a part of the summary; "" when it is unchanged
	}{
		{"active, none over", active, 0, "licensed by the portal", ""},
		{"active, one over", active, 1, "1 user over the licence: no new users of an over-used profile until licences are added on the portal", "1 user has no licence"},
		{"active, three over", active, 3, "3 users over the licence: no new users of an over-used profile until licences are added on the portal", "3 users have no licence"},
		{"offline, over", offline, 2, "2 users over the licence; new users refused in 30 days, telephony stops in 44 days", "2 users have no licence"},
		{"stopping keeps its phrase", stopping, 2, stopping.WhatNext, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.v.WithOveruse(tt.users)
			if got.WhatNext != tt.want {
				t.Errorf("WhatNext = %q\nwant        %q", got.WhatNext, tt.want)
			}
			if strings.Contains(got.WhatNext, "licensed by the portal") && tt.users > 0 {
				t.Errorf("over-use reads as all good: %q", got.WhatNext)
			}
			switch {
			case tt.summary == "" && got.Summary != tt.v.Summary:
				t.Errorf("Summary changed to %q", got.Summary)
			case tt.summary != "" && !strings.Contains(got.Summary, tt.summary):
				t.Errorf("Summary %q does not say %q", got.Summary, tt.summary)
			}
			if got.State != tt.v.State {
				t.Errorf("State = %s, want %s", got.State, tt.v.State)
			}
		})
	}
}

// TestGoneSaysWhenAndWhy: a deleted PBX says when it left, on the licence
// clock, and whether another appliance took it; a deletion asks for the
// Area Manager, a re-bind does not ask for a licence back.
func TestGoneSaysWhenAndWhy(t *testing.T) {
	goneAt := testNow.Add(-6 * day)
	deleted := Evaluate(Facts{Now: testNow, Gone: "deleted on the portal", GoneAt: goneAt})
	rebound := Evaluate(Facts{Now: testNow, Gone: "re-bound to another appliance", GoneAt: goneAt, Rebound: true})
	countdown := Evaluate(Facts{Now: at(t, "2026-12-11T06:00:00Z"), Doc: zeroed(testDocument(), testNow), LastSuccess: testNow})

	for _, tt := range []struct {
		name      string
		v         Verdict
		deletedAt time.Time
		rebound   bool
		says      []string
		never     string
	}{
		{"deleted on the portal", deleted, goneAt, false,
			[]string{"6 days ago", "2026-11-21 12:00 UTC", "add a licence back", "Area Manager"}, "another appliance"},
		{"re-bound", rebound, goneAt, true,
			[]string{"6 days ago", "2026-11-21 12:00 UTC", "re-bound to another appliance", "new PBX key"}, "add a licence back"},
		{"the countdown over", countdown, at(t, "2026-12-11T00:00:00Z"), false,
			[]string{"6 hours ago", "2026-12-11 00:00 UTC", "add a licence back", "Area Manager"}, "another appliance"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.v.State != Deleted || !tt.v.DeletedAt.Equal(tt.deletedAt) || tt.v.Rebound != tt.rebound {
				t.Errorf("state %s, deleted at %s, rebound %v; want deleted at %s, rebound %v",
					tt.v.State, tt.v.DeletedAt, tt.v.Rebound, tt.deletedAt, tt.rebound)
			}
			both := tt.v.WhatNext + " | " + tt.v.Summary
			for _, s := range tt.says {
				if !strings.Contains(both, s) {
					t.Errorf("%q does not say %q", both, s)
				}
			}
			if strings.Contains(both, tt.never) {
				t.Errorf("%q says %q", both, tt.never)
			}
		})
	}
}
