package admission

import (
	"slices"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// Hold is seats reserved until an expiry, for saying when they free up.
type Hold struct {
	Seats   int
	Expires time.Time // on the book's (the caller's) clock
}

// Holds returns the seats held at now that match keep, grouped by expiry,
// soonest first. A count that shows their users frees them earlier.
func (b *Book) Holds(now time.Time, keep func(p license.Profile, owner int64) bool) []Hold {
	b.expire(now)
	var out []Hold
	for _, r := range b.held {
		if !keep(r.profile, r.owner) {
			continue
		}
		if i := slices.IndexFunc(out, func(h Hold) bool { return h.Expires.Equal(r.expires) }); i >= 0 {
			out[i].Seats += r.seats
			continue
		}
		out = append(out, Hold{Seats: r.seats, Expires: r.expires})
	}
	slices.SortFunc(out, func(a, b Hold) int { return a.Expires.Compare(b.Expires) })
	return out
}
