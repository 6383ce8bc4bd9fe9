package license

import (
	"fmt"
	"time"
)

// The range of times a signed document may carry: from the start of 2020
// (before any portal issued a document) to the start of 2200, exclusive.
// A time outside is a mistake or an attack, never a meaning: year 9999
// overflows the deadlines computed from it, and whatever is read as "for
// ever" or "since always" must be said explicitly by the format instead.
var (
	earliestTime = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	latestTime   = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// CheckTime refuses a signed time t outside 2020-01-01 to 2199-12-31 UTC;
// name is the member it came from, for the error ("exp", "term_end").
// Callers wrap the error in their own refusal.
func CheckTime(name string, t time.Time) error {
	if t.Before(earliestTime) || !t.Before(latestTime) {
		return fmt.Errorf("%s %s is outside the years 2020 to 2199", name, t.UTC().Format(time.RFC3339))
	}
	return nil
}

// checkTimes is CheckTime for several named times, skipping nil ones.
func checkTimes(times ...namedTime) error {
	for _, nt := range times {
		if nt.t == nil {
			continue
		}
		if err := CheckTime(nt.name, *nt.t); err != nil {
			return err
		}
	}
	return nil
}

type namedTime struct {
	name string
	t    *time.Time
}
