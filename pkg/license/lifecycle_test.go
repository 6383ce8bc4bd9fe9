package license

import (
	"strings"
	"testing"
	"time"
)

const day = 24 * time.Hour

// at parses an RFC 3339 time for the tables.
func at(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// zeroed returns doc with the countdown the portal signs for counts zeroed at since.
func zeroed(doc Document, since time.Time) *Document {
	stop, del := Countdown(since)
	doc.Counts = Counts{}
	doc.ZeroSince, doc.StopAt, doc.DeleteAt = &since, &stop, &del
	return &doc
}

func TestCountdownIsCalendarDaysInUTC(t *testing.T) {
	tests := []struct {
		name, zero, stop, del string
	}{
		{"midnight", "2026-11-27T00:00:00Z", "2026-12-02T00:00:00Z", "2026-12-11T00:00:00Z"},
		{"afternoon counts as the whole day", "2026-11-27T15:04:05Z", "2026-12-02T00:00:00Z", "2026-12-11T00:00:00Z"},
		{"last second of the day", "2026-11-27T23:59:59Z", "2026-12-02T00:00:00Z", "2026-12-11T00:00:00Z"},
		{"last day of a month", "2027-01-31T10:00:00Z", "2027-02-05T00:00:00Z", "2027-02-14T00:00:00Z"},
		{"28 February, common year", "2027-02-28T10:00:00Z", "2027-03-05T00:00:00Z", "2027-03-14T00:00:00Z"},
		{"28 February, leap year", "2028-02-28T10:00:00Z", "2028-03-04T00:00:00Z", "2028-03-13T00:00:00Z"},
		{"29 February", "2028-02-29T10:00:00Z", "2028-03-05T00:00:00Z", "2028-03-14T00:00:00Z"},
		{"across the turn of a year", "2026-12-29T08:00:00Z", "2027-01-03T00:00:00Z", "2027-01-12T00:00:00Z"},
		{"on 31 December", "2026-12-31T23:59:59Z", "2027-01-05T00:00:00Z", "2027-01-14T00:00:00Z"},
		{"a local time is taken in UTC", "2026-11-30T23:30:00-02:00", "2026-12-06T00:00:00Z", "2026-12-15T00:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stop, del := Countdown(at(t, tt.zero))
			if got := stop.Format(time.RFC3339); got != tt.stop {
				t.Errorf("stop_at = %s, want %s", got, tt.stop)
			}
			if got := del.Format(time.RFC3339); got != tt.del {
				t.Errorf("delete_at = %s, want %s", got, tt.del)
			}
		})
	}
}

func TestLastDayOfMonth(t *testing.T) {
	for s, want := range map[string]bool{
		"2027-01-31T10:00:00Z":      true,
		"2027-01-30T23:59:59Z":      false,
		"2027-02-28T00:00:00Z":      true,  // common year
		"2028-02-28T12:00:00Z":      false, // leap year
		"2028-02-29T12:00:00Z":      true,
		"2026-04-30T12:00:00Z":      true,
		"2026-12-31T23:59:59Z":      true,
		"2027-01-01T00:00:00Z":      false,
		"2026-11-30T23:30:00-02:00": false, // 1 December in UTC
		"2026-12-01T01:00:00+02:00": true,  // 30 November in UTC
	} {
		if got := LastDayOfMonth(at(t, s)); got != want {
			t.Errorf("LastDayOfMonth(%s) = %v, want %v", s, got, want)
		}
	}
}

func TestEvaluate(t *testing.T) {
	doc := testDocument()
	last := testNow // 2026-11-27 12:00 UTC
	graceEnd := last.Add(30 * day)
	sevenDayLapse := doc
	sevenDayLapse.LapseGrace = Seconds(7 * day / time.Second)
	suspended := func(since *time.Time) *Document {
		d := doc
		d.Suspended, d.SuspendedSince = true, since
		return &d
	}
	suspendedAt := testNow.Add(-2 * day)

	// A year that turns while active: the term end is the portal's to renew.
	yearEnd := doc
	yearEnd.TermEnd = at(t, "2026-12-31T23:59:59Z")
	newYear := at(t, "2027-01-01T00:00:30Z")

	// Countdowns started on calendar edges.
	zeroJan31 := zeroed(doc, at(t, "2027-01-31T10:00:00Z")) // stop 02-05, delete 02-14
	zeroFeb28 := zeroed(doc, at(t, "2027-02-28T18:00:00Z")) // stop 03-05, delete 03-14
	zeroLeap := zeroed(doc, at(t, "2028-02-28T18:00:00Z"))  // stop 03-04, delete 03-13
	zeroYear := zeroed(doc, at(t, "2026-12-30T09:00:00Z"))  // stop 01-04, delete 01-13
	zeroNow := zeroed(doc, testNow)                         // stop 12-02, delete 12-11

	tests := []struct {
		name  string
		facts Facts
		want  State
		// wantSummary is a part of the summary; wantReason of the reason.
		wantSummary, wantReason string
		// Deadlines expected in the verdict, RFC 3339; "" means absent.
		stopAt, deleteAt, lapseEnd string
	}{
		{name: "no licence", facts: Facts{Now: testNow}, want: Unactivated, wantSummary: "pbx-agent activate"},
		{name: "gone", facts: Facts{Now: testNow, Doc: &doc, LastSuccess: last, Gone: "re-bound to another appliance"},
			want: Deleted, wantSummary: "re-bound", wantReason: "gone"},

		{name: "just heartbeated", facts: Facts{Now: testNow, Doc: &doc, LastSuccess: last}, want: Active, wantSummary: "last reached 2026-11-27 12:00 UTC"},
		{name: "at the tolerance", facts: Facts{Now: last.Add(DefaultHeartbeatTolerance), Doc: &doc, LastSuccess: last}, want: Active},
		{name: "past the tolerance", facts: Facts{Now: last.Add(DefaultHeartbeatTolerance + time.Second), Doc: &doc, LastSuccess: last},
			want: Offline, wantSummary: "runs normally until 2026-12-27 12:00 UTC", lapseEnd: "2027-01-10T12:00:00Z"},
		{name: "no heartbeat yet counts from the issue time", facts: Facts{Now: testNow.Add(time.Hour), Doc: &doc}, want: Offline, wantSummary: "since 2026-11-27 12:00 UTC"},
		{name: "a term ending at the turn of the year", facts: Facts{Now: newYear, Doc: &yearEnd, LastSuccess: newYear.Add(-30 * time.Second)}, want: Active},

		// Offline, then lapsed, then stopped, on the licence clock alone.
		{name: "offline 29 days", facts: Facts{Now: last.Add(29 * day), Doc: &doc, LastSuccess: last},
			want: Offline, wantSummary: "(in 24 hours), then admits no new users, and telephony stops at 2027-01-10 12:00 UTC (in 15 days)", lapseEnd: "2027-01-10T12:00:00Z"},
		{name: "offline 30 days: the grace ends", facts: Facts{Now: graceEnd, Doc: &doc, LastSuccess: last}, want: Lapsed, wantReason: "offline grace exhausted"},
		{name: "offline 31 days", facts: Facts{Now: last.Add(31 * day), Doc: &doc, LastSuccess: last},
			want: Lapsed, wantSummary: "no new users are admitted, and telephony stops at 2027-01-10 12:00 UTC (in 13 days)", lapseEnd: "2027-01-10T12:00:00Z"},
		{name: "lapsed 13 more days", facts: Facts{Now: graceEnd.Add(13 * day), Doc: &doc, LastSuccess: last},
			want: Lapsed, wantSummary: "(in 24 hours) unless the portal is reached first", lapseEnd: "2027-01-10T12:00:00Z"},
		{name: "lapse grace exhausted at 14 days", facts: Facts{Now: graceEnd.Add(14 * day), Doc: &doc, LastSuccess: last},
			want: Stopped, wantReason: "lapse grace exhausted", lapseEnd: "2027-01-10T12:00:00Z"},
		{name: "lapsed 15 more days", facts: Facts{Now: graceEnd.Add(15 * day), Doc: &doc, LastSuccess: last},
			want: Stopped, wantSummary: "starts again as soon as the portal is reached", lapseEnd: "2027-01-10T12:00:00Z"},
		{name: "a lapse grace set by the portal", facts: Facts{Now: graceEnd.Add(8 * day), Doc: &sevenDayLapse, LastSuccess: last},
			want: Stopped, lapseEnd: "2027-01-03T12:00:00Z"},

		// Suspended by the portal: lapsed at once, stopped after the lapse grace.
		{name: "suspended", facts: Facts{Now: testNow, Doc: suspended(&suspendedAt), LastSuccess: last},
			want: Lapsed, wantSummary: "suspended this licence on 2026-11-25 12:00 UTC", wantReason: "suspended", lapseEnd: "2026-12-09T12:00:00Z"},
		{name: "suspended, with no date: from the issue time", facts: Facts{Now: testNow.Add(time.Minute), Doc: suspended(nil), LastSuccess: testNow.Add(time.Minute)},
			want: Lapsed, lapseEnd: "2026-12-11T12:00:00Z"},
		{name: "suspended past the lapse grace", facts: Facts{Now: suspendedAt.Add(14 * day), Doc: suspended(&suspendedAt), LastSuccess: suspendedAt.Add(14 * day)},
			want: Stopped, wantSummary: "lifts the suspension", lapseEnd: "2026-12-09T12:00:00Z"},

		// The zero-licence countdown: the 5- and 14-day deadlines, to the second.
		{name: "counts zeroed", facts: Facts{Now: testNow, Doc: zeroNow, LastSuccess: last},
			want: Stopping, wantSummary: "telephony stops at 2026-12-02 00:00 UTC (in 5 days) and the PBX is deleted for good at 2026-12-11 00:00 UTC (in 14 days)",
			stopAt: "2026-12-02T00:00:00Z", deleteAt: "2026-12-11T00:00:00Z"},
		{name: "a second before stop_at", facts: Facts{Now: at(t, "2026-12-01T23:59:59Z"), Doc: zeroNow, LastSuccess: at(t, "2026-12-01T23:59:00Z")},
			want: Stopping, stopAt: "2026-12-02T00:00:00Z", deleteAt: "2026-12-11T00:00:00Z"},
		{name: "at stop_at", facts: Facts{Now: at(t, "2026-12-02T00:00:00Z"), Doc: zeroNow, LastSuccess: at(t, "2026-12-01T23:59:00Z")},
			want: Stopped, wantSummary: "deleted for good at 2026-12-11 00:00 UTC (in 9 days)", wantReason: "stop_at",
			stopAt: "2026-12-02T00:00:00Z", deleteAt: "2026-12-11T00:00:00Z"},
		{name: "a second before delete_at", facts: Facts{Now: at(t, "2026-12-10T23:59:59Z"), Doc: zeroNow, LastSuccess: at(t, "2026-12-10T23:59:00Z")},
			want: Stopped, stopAt: "2026-12-02T00:00:00Z", deleteAt: "2026-12-11T00:00:00Z"},
		{name: "at delete_at", facts: Facts{Now: at(t, "2026-12-11T00:00:00Z"), Doc: zeroNow, LastSuccess: at(t, "2026-12-10T23:59:00Z")},
			want: Deleted, wantSummary: "contacts their Area Manager at once; otherwise this appliance needs a new PBX key", wantReason: "delete_at",
			stopAt: "2026-12-02T00:00:00Z", deleteAt: "2026-12-11T00:00:00Z"},
		{name: "zeroed on 31 January, 4 February", facts: Facts{Now: at(t, "2027-02-04T23:00:00Z"), Doc: zeroJan31, LastSuccess: at(t, "2027-02-04T23:00:00Z")},
			want: Stopping, stopAt: "2027-02-05T00:00:00Z", deleteAt: "2027-02-14T00:00:00Z"},
		{name: "zeroed on 31 January, 5 February", facts: Facts{Now: at(t, "2027-02-05T00:00:00Z"), Doc: zeroJan31, LastSuccess: at(t, "2027-02-05T00:00:00Z")},
			want: Stopped},
		{name: "zeroed on 28 February, 4 March of a common year", facts: Facts{Now: at(t, "2027-03-04T12:00:00Z"), Doc: zeroFeb28, LastSuccess: at(t, "2027-03-04T12:00:00Z")},
			want: Stopping, stopAt: "2027-03-05T00:00:00Z"},
		{name: "zeroed on 28 February, 4 March of a leap year", facts: Facts{Now: at(t, "2028-03-04T12:00:00Z"), Doc: zeroLeap, LastSuccess: at(t, "2028-03-04T12:00:00Z")},
			want: Stopped, stopAt: "2028-03-04T00:00:00Z", deleteAt: "2028-03-13T00:00:00Z"},
		{name: "zeroed on 30 December, 3 January", facts: Facts{Now: at(t, "2027-01-03T23:59:59Z"), Doc: zeroYear, LastSuccess: at(t, "2027-01-03T23:59:00Z")},
			want: Stopping, stopAt: "2027-01-04T00:00:00Z", deleteAt: "2027-01-13T00:00:00Z"},
		{name: "zeroed on 30 December, 13 January", facts: Facts{Now: at(t, "2027-01-13T00:00:00Z"), Doc: zeroYear, LastSuccess: at(t, "2027-01-12T23:59:00Z")},
			want: Deleted},

		// Causes together: the most severe wins.
		{name: "countdown while offline past the grace", facts: Facts{Now: last.Add(31 * day), Doc: zeroed(doc, last.Add(27*day)), LastSuccess: last},
			want: Stopping, lapseEnd: "2027-01-10T12:00:00Z"},
		{name: "lapse exhausted before stop_at", facts: Facts{Now: last.Add(45 * day), Doc: zeroed(doc, last.Add(43*day)), LastSuccess: last},
			want: Stopped, wantReason: "lapse grace exhausted"},
		{name: "countdown runs offline to deletion", facts: Facts{Now: last.Add(15 * day), Doc: zeroNow, LastSuccess: last},
			want: Deleted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Evaluate(tt.facts)
			if v.State != tt.want || !strings.Contains(v.Summary, tt.wantSummary) || !strings.Contains(v.Reason, tt.wantReason) {
				t.Errorf("Evaluate = %s %q (reason %q)\nwant %s containing %q (reason containing %q)",
					v.State, v.Summary, v.Reason, tt.want, tt.wantSummary, tt.wantReason)
			}
			if v.Summary == "" || v.Reason == "" || strings.Count(v.Summary, ". ") > 0 {
				t.Errorf("want one sentence of summary and a reason: %q, %q", v.Summary, v.Reason)
			}
			for _, d := range []struct {
				name string
				got  time.Time
				want string
			}{{"stop_at", v.StopAt, tt.stopAt}, {"delete_at", v.DeleteAt, tt.deleteAt}, {"lapse grace end", v.LapseGraceEnd, tt.lapseEnd}} {
				if d.want == "" {
					continue
				}
				if got := d.got.Format(time.RFC3339); got != d.want {
					t.Errorf("%s = %s, want %s", d.name, got, d.want)
				}
			}
			if tt.facts.Doc != nil && tt.facts.Doc.ZeroSince == nil && (!v.StopAt.IsZero() || !v.DeleteAt.IsZero()) {
				t.Errorf("countdown deadlines without a countdown: %v %v", v.StopAt, v.DeleteAt)
			}
			if !v.Next.IsZero() && !v.Next.After(tt.facts.Now) {
				t.Errorf("Next = %v, not after now %v", v.Next, tt.facts.Now)
			}
		})
	}
}

// TestEvaluateDeadlinesApplyOnlyWhenTheyDo: an active PBX shows no lapse,
// and adding a licence back clears the countdown.
func TestEvaluateDeadlinesApplyOnlyWhenTheyDo(t *testing.T) {
	doc := testDocument()
	v := Evaluate(Facts{Now: testNow, Doc: &doc, LastSuccess: testNow})
	if !v.LapseGraceEnd.IsZero() || !v.StopAt.IsZero() || !v.DeleteAt.IsZero() {
		t.Errorf("active verdict with deadlines: %+v", v)
	}
	if want := testNow.Add(30 * day); !v.OfflineGraceEnd.Equal(want) {
		t.Errorf("offline grace end = %v, want %v", v.OfflineGraceEnd, want)
	}
	if want := testNow.Add(DefaultHeartbeatTolerance); !v.Next.Equal(want) {
		t.Errorf("Next = %v, want the end of the heartbeat tolerance %v", v.Next, want)
	}
	z := zeroed(doc, testNow)
	if v := Evaluate(Facts{Now: testNow.Add(time.Hour), Doc: z, LastSuccess: testNow.Add(time.Hour)}); !v.Next.Equal(testNow.Add(time.Hour + DefaultHeartbeatTolerance)) {
		t.Errorf("stopping: Next = %v", v.Next)
	}
	if v := Evaluate(Facts{Now: at(t, "2026-12-01T23:55:00Z"), Doc: z, LastSuccess: at(t, "2026-12-01T23:55:00Z")}); !v.Next.Equal(*z.StopAt) {
		t.Errorf("stopping five minutes before stop_at: Next = %v, want %v", v.Next, *z.StopAt)
	}
}

func TestStopsTelephony(t *testing.T) {
	for _, s := range States() {
		want := s == Stopped || s == Deleted
		if got := s.StopsTelephony(); got != want {
			t.Errorf("%s.StopsTelephony() = %v", s, got)
		}
	}
}

func TestRelative(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                        "now",
		500 * time.Millisecond:   "now",
		time.Second:              "in 1 second",
		-15 * time.Second:        "15 seconds ago",
		2 * time.Minute:          "in 2 minutes",
		-time.Minute - time.Hour: "61 minutes ago",
		3 * time.Hour:            "in 3 hours",
		49 * time.Hour:           "in 2 days",
		-30 * 24 * time.Hour:     "30 days ago",
	} {
		if got := Relative(testNow.Add(d), testNow); got != want {
			t.Errorf("Relative(now%+v) = %q, want %q", d, got, want)
		}
	}
}

// TestEvaluateByFile: an air-gapped PBX's verdict says its licence came by
// file and what renews it, not that the portal was reached: the same
// deadlines, in its own words.
func TestEvaluateByFile(t *testing.T) {
	doc := testDocument()
	span := Seconds(30 * day / time.Second)
	doc.HeartbeatTolerance, doc.OfflineGrace = span, span
	signed := testNow
	horizon := signed.Add(30 * day)

	v := Evaluate(Facts{Now: signed.Add(10 * day), Doc: &doc, LastSuccess: signed, ByFile: true})
	if v.State != Active || !v.OfflineGraceEnd.Equal(horizon) {
		t.Fatalf("within the horizon: %s, grace end %v; want active until %v", v.State, v.OfflineGraceEnd, horizon)
	}
	for _, want := range []string{"a file the portal signed", "install the next licence file"} {
		if !strings.Contains(v.Summary, want) {
			t.Errorf("summary %q does not say %q", v.Summary, want)
		}
	}
	if strings.Contains(v.Summary+v.WhatNext+v.Reason, "reached") {
		t.Errorf("an air-gapped PBX's verdict speaks of the portal reached: %+v", v)
	}

	v = Evaluate(Facts{Now: horizon.Add(time.Hour), Doc: &doc, LastSuccess: signed, ByFile: true})
	if v.State != Lapsed || !strings.Contains(v.Summary, "unless a new licence file is installed") || strings.Contains(v.Summary, "reached") {
		t.Errorf("past the horizon: %s %q", v.State, v.Summary)
	}
	// The same facts online are the portal's words: nothing else changes.
	if on := Evaluate(Facts{Now: horizon.Add(time.Hour), Doc: &doc, LastSuccess: signed}); on.State != v.State || !on.LapseGraceEnd.Equal(v.LapseGraceEnd) {
		t.Errorf("online %s until %v, by file %s until %v: the deadlines differ", on.State, on.LapseGraceEnd, v.State, v.LapseGraceEnd)
	}
}
