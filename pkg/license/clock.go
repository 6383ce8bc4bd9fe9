package license

import (
	"sync"
	"time"
)

// TimeSource is what the licence clock reads. The local wall clock can be
// set by anyone with root; the elapsed time cannot.
type TimeSource interface {
	Wall() time.Time        // the local clock
	Elapsed() time.Duration // monotonic time since an arbitrary origin; never jumps
}

// SystemTime reads the machine's clocks.
type SystemTime struct{ origin time.Time }

// NewSystemTime returns the machine's clocks.
func NewSystemTime() *SystemTime { return &SystemTime{origin: time.Now()} }

// Wall returns the local clock without its monotonic reading.
func (s *SystemTime) Wall() time.Time { return time.Now().Round(0).UTC() }

// Elapsed returns the monotonic time since s was made.
func (s *SystemTime) Elapsed() time.Duration { return time.Since(s.origin) }

// PortalTrust is how long after a portal answer its time alone rules the
// clock, as long as the portal's freshness window. Past it, a local clock
// ahead of the licence clock pushes it forward, so time the machine spent
// suspended, which the monotonic clock does not count, is not lost.
const PortalTrust = 5 * time.Minute

// Clock is the licence clock: the time every licence decision is made at.
//
// While the portal answers, now is the portal's signed time plus the
// monotonic time since it arrived. Between answers and across restarts, now
// advances with the monotonic clock from a high-water mark the caller
// persists; a local clock ahead of it moves it forward, a local clock behind
// it is ignored (and reported by LocalOffset). So a clock set back never
// extends a licence.
//
// The portal's time is adopted even when it is earlier than the licence
// clock: it is signed and bound to the request's nonce, so it cannot be
// forged or replayed, and a local clock that ran ahead would otherwise age
// the licence for good and leave every request "stale" to the portal.
type Clock struct {
	src TimeSource

	mu         sync.Mutex
	anchor     time.Time     // licence time at anchorAt
	anchorAt   time.Duration // src.Elapsed() when anchor was set
	portalAt   time.Duration // src.Elapsed() at the last portal answer
	fromPortal bool          // a portal answer arrived in this process
}

// NewClock starts the licence clock from a persisted high-water mark (zero
// on a first start).
func NewClock(src TimeSource, highWater time.Time) *Clock {
	c := &Clock{src: src, anchor: highWater.UTC(), anchorAt: src.Elapsed()}
	c.Now() // a local clock ahead of the mark moves it at once
	return c
}

// Now returns the licence time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nowLocked()
}

func (c *Clock) nowLocked() time.Time {
	at := c.src.Elapsed()
	t := c.anchor.Add(at - c.anchorAt)
	if c.fromPortal && at-c.portalAt < PortalTrust {
		return t
	}
	if wall := c.src.Wall(); wall.After(t) {
		c.anchor, c.anchorAt = wall, at
		return wall
	}
	return t
}

// AdoptPortal sets the licence time from a verified portal answer.
func (c *Clock) AdoptPortal(portal time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	at := c.src.Elapsed()
	c.anchor, c.anchorAt = portal.UTC(), at
	c.portalAt, c.fromPortal = at, true
}

// PortalBacked reports whether the licence time is the portal's own: a
// portal answer arrived within PortalTrust, so the local clock plays no
// part in it. Irreversible decisions wait for it.
func (c *Clock) PortalBacked() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fromPortal && c.src.Elapsed()-c.portalAt < PortalTrust
}

// LocalOffset returns the local clock minus the licence clock: negative
// when the local clock is behind, which is ignored and worth reporting.
func (c *Clock) LocalOffset() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.nowLocked()
	return c.src.Wall().Sub(now)
}
