package license

import "time"

// The zero-licence countdown, in calendar days: when every count of a PBX
// goes to zero (day 0), its telephony stops after StopAfterDays and the PBX
// is deleted after DeleteAfterDays.
const (
	StopAfterDays   = 5
	DeleteAfterDays = 14 // 5 + 9
)

// StartOfDay returns the first instant of t's calendar day in UTC. All
// licence time is UTC, so calendar days are UTC days.
func StartOfDay(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// LastDayOfMonth reports whether t falls on the last day of its month, in UTC.
func LastDayOfMonth(t time.Time) bool {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, time.UTC).Day() == 1
}

// Countdown returns the deadlines of the zero-licence countdown that starts
// at zeroSince. They are day boundaries, not exact instants: day 0 is the
// UTC day of zeroSince, stop_at the start of the UTC day StopAfterDays
// later and delete_at the start of the UTC day DeleteAfterDays later. Counts
// zeroed on 27 November at 15:00 stop on 2 December at 00:00 UTC and are
// deleted on 11 December at 00:00 UTC, whatever the hour they went to zero.
//
// The portal computes these and signs them into the licence; the agent
// never computes them itself (the signed dates are authoritative).
func Countdown(zeroSince time.Time) (stopAt, deleteAt time.Time) {
	day := StartOfDay(zeroSince)
	return day.AddDate(0, 0, StopAfterDays), day.AddDate(0, 0, DeleteAfterDays)
}

// RelativeDay says how far day's UTC calendar day is from now's, for a
// date shown without its hour (the renewal day): "today", "tomorrow",
// "in 21 days", "yesterday", "3 days ago". A day counts whole, so the
// renewal day reads "today" until its end, not "10 hours ago".
func RelativeDay(day, now time.Time) string {
	n := int(StartOfDay(day).Sub(StartOfDay(now)) / (24 * time.Hour))
	switch {
	case n == 0:
		return "today"
	case n == 1:
		return "tomorrow"
	case n == -1:
		return "yesterday"
	case n > 1:
		return "in " + plural(n, "day")
	}
	return plural(-n, "day") + " ago"
}
