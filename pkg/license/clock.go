package license

import (
	"sync"
	"time"
)

// TimeSource is what the licence clock reads. The local wall clock can be
// set by anyone with root; the elapsed time cannot.
type TimeSource interface {
	Wall() time.Time // the local clock
	// Elapsed is the time since the machine booted, suspend included
	// (CLOCK_BOOTTIME): it never jumps, and two processes of one boot read
	// the same clock, so a restart can count the time it was down.
	Elapsed() time.Duration
}

// SystemTime reads the machine's clocks.
type SystemTime struct{}

// NewSystemTime returns the machine's clocks.
func NewSystemTime() *SystemTime { return &SystemTime{} }

// Wall returns the local clock without its monotonic reading.
func (s *SystemTime) Wall() time.Time { return time.Now().Round(0).UTC() }

// Elapsed returns the time since boot (boottime_linux.go).
func (s *SystemTime) Elapsed() time.Duration { return bootTime() }

// Mark is a persisted point of the licence clock: the licence time and the
// TimeSource's Elapsed reading at that moment. A restart in the same boot
// (a reading not smaller than Boot) resumes from it with the downtime
// counted; after a reboot (a smaller reading) Time is a floor.
type Mark struct {
	Time time.Time
	// Boot is the Elapsed reading when Time was taken; zero when unknown
	// (a mark from before boot readings were kept): Time is then only a
	// floor. A real reading is never zero: the kernel has been up a while
	// before any process runs.
	Boot time.Duration
}

// resume returns the licence time a mark stands for at the reading now.
func (m Mark) resume(now time.Duration) time.Time {
	t := m.Time.UTC()
	if m.Boot > 0 && now >= m.Boot {
		return t.Add(now - m.Boot) // same boot: the time down counts
	}
	return t // another boot (or no reading): the mark is a floor
}

// PortalTrust is how long after a portal answer its time alone rules the
// clock, as long as the portal's freshness window. Past it, a local clock
// ahead of the licence clock pushes it forward, as it does offline.
const PortalTrust = 5 * time.Minute

// Clock is the licence clock: the time every licence decision is made at.
//
// While the portal answers, now is the portal's signed time plus the boot
// time since it arrived. Between answers and across restarts, now advances
// with the boot time from a Mark the caller persists: within one boot the
// time the process was down counts too, so killing and restarting the agent
// does not hold the clock still. A local clock ahead of it moves it
// forward, a local clock behind it is ignored (and reported by
// LocalOffset). So a clock set back never extends a licence.
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

// NewClock starts the licence clock from the latest of the persisted marks
// (none on a first start): an older copy of one cannot move it back.
func NewClock(src TimeSource, marks ...Mark) *Clock {
	at := src.Elapsed()
	c := &Clock{src: src, anchorAt: at}
	for _, m := range marks {
		if t := m.resume(at); t.After(c.anchor) {
			c.anchor = t
		}
	}
	c.Now() // a local clock ahead of the marks moves it at once
	return c
}

// Mark returns the licence time with the reading it was taken at, to
// persist: NewClock resumes from it.
func (c *Clock) Mark() Mark {
	c.mu.Lock()
	defer c.mu.Unlock()
	at := c.src.Elapsed()
	return Mark{Time: c.nowAt(at), Boot: at}
}

// Now returns the licence time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nowLocked()
}

func (c *Clock) nowLocked() time.Time { return c.nowAt(c.src.Elapsed()) }

func (c *Clock) nowAt(at time.Duration) time.Time {
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

// Floor raises the licence time to t if it is behind: t is a time the
// portal signed (the last answer that counted, a licence's issue time), so
// the licence clock was there at least, whatever the marks say.
func (c *Clock) Floor(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	at := c.src.Elapsed()
	if t.After(c.nowAt(at)) {
		c.anchor, c.anchorAt = t.UTC(), at
	}
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
