package license

import (
	"fmt"
	"strings"
	"time"
)

// ChangeNoticeDays: the portal renews a term on its last day, so licence
// changes are best made at least this many days before the term ends.
const ChangeNoticeDays = 2

// ChangeNotice is ChangeNoticeDays as a duration: a change made less long
// before the current term ends is late.
const ChangeNotice = ChangeNoticeDays * 24 * time.Hour

// CurrentTermEnd is the end of the billing term that holds now, for a
// licence whose latest term ends at end. The portal renews a term on its
// last day, so on that day the licence already carries the next term's end
// while the day still belongs to the term that ends at midnight. Zero for
// a lifetime term.
func CurrentTermEnd(term Term, end, now time.Time) time.Time {
	if end.IsZero() {
		return time.Time{}
	}
	e := end.UTC()
	var prev time.Time
	switch term {
	case Monthly:
		prev = time.Date(e.Year(), e.Month(), 1, 0, 0, 0, 0, time.UTC).Add(-time.Second)
	case Yearly:
		prev = time.Date(e.Year()-1, e.Month()+1, 1, 0, 0, 0, 0, time.UTC).Add(-time.Second)
	default:
		return time.Time{}
	}
	if !now.After(prev) {
		return prev
	}
	return e
}

// Calendar is what the portal's calendar rules mean for a licence at one
// moment of the licence clock: when the term renews, until when changes
// are best made, and whether decreases are refused today.
type Calendar struct {
	// RenewsOn is the day the current term (CurrentTermEnd) renews and is
	// invoiced, at 00:00 UTC: its last day. Zero for a lifetime term.
	RenewsOn time.Time
	// ChangesUntil is the last moment for licence changes made ahead of
	// the renewal: the term end less ChangeNoticeDays. Zero for a
	// lifetime term.
	ChangesUntil time.Time
	// NoDecreasesToday: now is the last day of a month (UTC), when the
	// portal refuses any decrease of a count; increases are taken.
	NoDecreasesToday bool
	// DecreasesFrom is when decreases are taken again (the next day, 00:00
	// UTC) while NoDecreasesToday; zero otherwise.
	DecreasesFrom time.Time
}

// CalendarAt is the calendar of the licence d at now; d may be nil (no
// licence), leaving only the last-day-of-month rule.
func CalendarAt(d *Document, now time.Time) Calendar {
	var c Calendar
	if d != nil {
		if end := CurrentTermEnd(d.Term, d.TermEnd, now); !end.IsZero() {
			c.RenewsOn = StartOfDay(end)
			c.ChangesUntil = end.Add(-ChangeNotice)
		}
	}
	if LastDayOfMonth(now) {
		c.NoDecreasesToday = true
		c.DecreasesFrom = StartOfDay(now).AddDate(0, 0, 1)
	}
	return c
}

// Duration says how long d is for people: "6 days", "3 hours",
// "less than a second". Negative durations read as their size.
func Duration(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	switch {
	case d >= 48*time.Hour:
		return plural(int(d.Round(24*time.Hour)/(24*time.Hour)), "day")
	case d >= 2*time.Hour:
		return plural(int(d.Round(time.Hour)/time.Hour), "hour")
	case d >= 90*time.Second:
		return plural(int(d.Round(time.Minute)/time.Minute), "minute")
	case d >= time.Second:
		return plural(int(d.Round(time.Second)/time.Second), "second")
	}
	return "less than a second"
}

// WithOveruse is v with over-use in its headline: users (more than zero)
// counted beyond the licence. An active or offline PBX with over-use is
// not all good: no new users of an over-used profile are admitted until
// licences are added on the portal or users removed. The other states
// already admit no new users, and keep their phrase.
func (v Verdict) WithOveruse(users int) Verdict {
	if users <= 0 {
		return v
	}
	over := plural(users, "user") + " over the licence"
	switch v.State {
	case Active:
		v.WhatNext = over + ": no new users of an over-used profile until licences are added on the portal"
	case Offline:
		v.WhatNext = over + "; " + v.WhatNext
	default:
		return v
	}
	v.Summary = strings.TrimSuffix(v.Summary, ".") + fmt.Sprintf("; %s %s no licence, so no new users of an over-used profile are admitted until licences are added on the portal or users are removed.",
		plural(users, "user"), map[bool]string{true: "has", false: "have"}[users == 1])
	return v
}
