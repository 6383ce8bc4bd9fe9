package admission

import (
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// Book holds the seats reserved by admissions: users admitted whom no
// count shows yet. A reservation ends when a count shows its users (the
// count of its profile rose by as many since the last count) or when its
// time to live runs out, whichever comes first. Time is the caller's
// (monotonic, in the daemon); the Book is not safe for concurrent use:
// its owner serialises it with its decisions, so that no two admissions
// can take the same seat.
type Book struct {
	ttl     time.Duration
	held    []reservation // oldest first
	total   license.Counts
	byOwner map[int64]int // seats held per owner, for the per-peer bound
}

type reservation struct {
	profile license.Profile
	seats   int
	expires time.Time
	owner   int64 // who reserved: a peer's uid, or NoOwner
}

// NoOwner is the owner of a reservation nobody in particular made.
const NoOwner int64 = -1

// NewBook returns an empty book whose reservations last ttl.
func NewBook(ttl time.Duration) *Book {
	return &Book{ttl: ttl, total: license.Counts{}, byOwner: map[int64]int{}}
}

// SetTTL sets the time to live of reservations made from now on; those
// held keep the expiry they were given.
func (b *Book) SetTTL(ttl time.Duration) { b.ttl = ttl }

// Reserve holds n seats of p from now for the book's time to live.
func (b *Book) Reserve(now time.Time, p license.Profile, n int) {
	b.ReserveFor(now, NoOwner, p, n)
}

// ReserveFor is Reserve on behalf of owner (a peer's uid), whose seats
// HeldBy counts until they are released.
func (b *Book) ReserveFor(now time.Time, owner int64, p license.Profile, n int) {
	if n <= 0 {
		return
	}
	b.held = append(b.held, reservation{profile: p, seats: n, expires: now.Add(b.ttl), owner: owner})
	b.total[p] += n
	b.byOwner[owner] += n
}

// HeldBy returns the seats owner holds at now, of every profile, after
// expiry.
func (b *Book) HeldBy(now time.Time, owner int64) int {
	b.expire(now)
	return b.byOwner[owner]
}

// release takes n seats off r's owner.
func (b *Book) release(r reservation, n int) {
	if b.byOwner[r.owner] -= n; b.byOwner[r.owner] <= 0 {
		delete(b.byOwner, r.owner)
	}
}

// Reserved returns the seats held per profile at now, after dropping the
// reservations that expired. The map is a copy.
func (b *Book) Reserved(now time.Time) license.Counts {
	b.expire(now)
	out := make(license.Counts, len(b.total))
	for p, n := range b.total {
		if n > 0 {
			out[p] = n
		}
	}
	return out
}

// ReservedOf returns the seats held for p at now, after expiry.
func (b *Book) ReservedOf(now time.Time, p license.Profile) int {
	b.expire(now)
	return b.total[p]
}

// Counted takes a new count of users: for each profile, the rise since the
// previous count (prev; nil for the first count, which releases nothing)
// shows that many reserved users added, and releases as many seats, oldest
// reservation first. It returns the seats released.
func (b *Book) Counted(now time.Time, prev, next license.Counts) int {
	b.expire(now)
	if prev == nil {
		return 0
	}
	released := 0
	rise := license.Counts{}
	for p, n := range next {
		if d := n - prev[p]; d > 0 {
			rise[p] = d
		}
	}
	kept := b.held[:0]
	for _, r := range b.held {
		if take := min(rise[r.profile], r.seats); take > 0 {
			rise[r.profile] -= take
			r.seats -= take
			b.total[r.profile] -= take
			b.release(r, take)
			released += take
		}
		if r.seats > 0 {
			kept = append(kept, r)
		}
	}
	clear(b.held[len(kept):])
	b.held = kept
	return released
}

// expire drops the reservations whose time has come.
func (b *Book) expire(now time.Time) {
	if len(b.held) == 0 || now.Before(b.held[0].expires) {
		// Oldest first and one time to live: the first is the next to go.
		return
	}
	kept := b.held[:0]
	for _, r := range b.held {
		if now.Before(r.expires) {
			kept = append(kept, r)
		} else {
			b.total[r.profile] -= r.seats
			b.release(r, r.seats)
		}
	}
	clear(b.held[len(kept):])
	b.held = kept
}
