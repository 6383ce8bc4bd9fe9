package agent

import (
	"fmt"
	"strings"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/admission"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// holdsNote says when the reserved seats that stand in a denial's way
// free up at the latest, on the licence clock: "; the reserved seats
// free up as a count shows their users, at the latest: 2 held until
// 10:42 UTC (in 4 minutes), 1 until 10:45 UTC (in 7 minutes)". The book
// runs on the monotonic clock (mono); now is the same instant on the
// licence clock. It is empty when no reservation is in the way.
func holdsNote(holds []admission.Hold, now, mono time.Time) string {
	if len(holds) == 0 {
		return ""
	}
	parts := make([]string, 0, len(holds))
	for i, h := range holds {
		at := now.Add(h.Expires.Sub(mono)).Truncate(time.Second)
		layout := "15:04 UTC"
		if y, m, d := at.UTC().Date(); y != now.UTC().Year() || m != now.UTC().Month() || d != now.UTC().Day() {
			layout = "2006-01-02 15:04 UTC"
		}
		held := " until "
		if i == 0 {
			held = " held until "
		}
		parts = append(parts, fmt.Sprintf("%d%s%s (%s)", h.Seats, held, at.UTC().Format(layout), license.Relative(at, now)))
	}
	return "; the reserved seats free up as a count shows their users, at the latest: " + strings.Join(parts, ", ")
}

// denialHolds are the reservations in the way of a denial d of profile p
// asked by owner: the profile's when it is full, the peer's own when it
// reached its bound. Callers hold u.mu.
func (u *seats) denialHolds(d admission.Decision, p license.Profile, owner int64, mono time.Time) []admission.Hold {
	switch {
	case d.Kind == admission.KindFull && d.Reserved > 0:
		return u.book.Holds(mono, func(q license.Profile, _ int64) bool { return q == p })
	case d.Kind == admission.KindBound:
		return u.book.Holds(mono, func(_ license.Profile, o int64) bool { return o == owner })
	}
	return nil
}
