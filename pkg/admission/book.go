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
	ttl  time.Duration
	held []reservation // oldest first; in expiry order unless unordered
	// soonest is the earliest expiry held; unordered is set when a lowered
	// TTL (SetTTL) made a reservation expire before an older one.
	soonest   time.Time
	unordered bool
	total     license.Counts
	byOwner   map[int64]int // seats held per owner, for the per-peer bound
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
// held keep the expiry they were given. After a lower TTL, a new
// reservation expires before older ones: expire does not rely on the
// order in which they were made.
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
	expires := now.Add(b.ttl)
	if n := len(b.held); n == 0 || expires.Before(b.soonest) {
		b.soonest = expires
	}
	if n := len(b.held); n > 0 && expires.Before(b.held[n-1].expires) {
		b.unordered = true
	}
	b.held = append(b.held, reservation{profile: p, seats: n, expires: expires, owner: owner})
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

// expire drops the reservations whose time has come. Reservations are
// kept in the order they were made (Counted releases the oldest first),
// which is their expiry order until a lowered TTL breaks it; soonest lets
// the common case, nothing due, skip the scan whatever the order.
func (b *Book) expire(now time.Time) {
	if len(b.held) == 0 || now.Before(b.soonest) {
		return
	}
	kept := b.held[:0]
	ordered := true
	for _, r := range b.held {
		if !now.Before(r.expires) {
			b.total[r.profile] -= r.seats
			b.release(r, r.seats)
			continue
		}
		if b.unordered && len(kept) > 0 {
			// Out of order: find the soonest, and whether the order is back.
			last := kept[len(kept)-1].expires
			if r.expires.Before(b.soonest) {
				b.soonest = r.expires
			}
			ordered = ordered && !r.expires.Before(last)
		} else if len(kept) == 0 {
			b.soonest = r.expires
		}
		kept = append(kept, r)
	}
	clear(b.held[len(kept):])
	b.held = kept
	b.unordered = b.unordered && !ordered
}
