package main

import (
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// statusLine prints one labelled line of `pbx-agent status`.
type statusLine func(label, format string, args ...any)

// printCalendar prints the portal's calendar rules as they stand: the
// renewal day, the last moment for changes and, on the last day of a
// month, that decreases are refused.
func printCalendar(line statusLine, c *apitype.CalendarStatus, now time.Time) {
	if c == nil {
		return
	}
	if c.RenewsOn != nil {
		line("Renews", "%s (%s), renewed and invoiced that day", c.RenewsOn.UTC().Format(time.DateOnly), license.RelativeDay(*c.RenewsOn, now))
	}
	if c.ChangesUntil != nil {
		when := c.ChangesUntil.UTC().Format("2006-01-02 15:04 UTC") + " (" + license.Relative(*c.ChangesUntil, now) + ")"
		if c.ChangesUntil.After(now) {
			line("Changes until", "%s: make licence changes at least 2 days before the term ends", when)
		} else {
			line("Changes until", "%s: passed, a change now comes less than 2 days before the term ends", when)
		}
	}
	if c.NoDecreasesToday {
		from := ""
		if c.DecreasesFrom != nil {
			from = ", again from " + c.DecreasesFrom.UTC().Format("2006-01-02 15:04 UTC")
		}
		line("No decreases today", "the last day of the month (UTC): the portal refuses decreases, takes increases%s", from)
	}
}

// printDeleted prints when the PBX left this appliance, and whether
// another appliance took it.
func printDeleted(line statusLine, d *apitype.DeletedStatus, now time.Time) {
	if d == nil {
		return
	}
	when := "at a time not recorded"
	if d.At != nil {
		when = d.At.UTC().Format("2006-01-02 15:04 UTC") + " (" + license.Relative(*d.At, now) + ")"
	}
	if d.Rebound {
		line("Re-bound", "%s: another appliance holds the PBX's licence now", when)
		return
	}
	line("Deleted", "%s", when)
}
