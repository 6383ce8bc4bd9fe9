// Package clocktest is a clock.Clock that tests move by hand.
package clocktest

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/clock"
)

// Fake is a machine whose clocks only move when the test says. Advance
// moves the wall and elapsed readings together and fires every timer due
// on the way, in order; SetWall moves the local clock alone, as an owner
// with root would, and fires nothing. It is safe for concurrent use.
type Fake struct {
	mu      sync.Mutex
	wall    time.Time
	elapsed time.Duration
	timers  []*fakeTimer  // armed ones
	armed   chan struct{} // closed and replaced whenever a timer is armed
}

// NewFake returns a Fake at wall time wall, booted elapsed ago (a real
// machine's elapsed reading is never zero).
func NewFake(wall time.Time, elapsed time.Duration) *Fake {
	return &Fake{wall: wall, elapsed: elapsed, armed: make(chan struct{})}
}

// Wall is the local clock.
func (f *Fake) Wall() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.wall
}

// Elapsed is the time since boot.
func (f *Fake) Elapsed() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.elapsed
}

// SetWall sets the local clock; elapsed time and timers stay.
func (f *Fake) SetWall(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.wall = t
}

// Advance moves both readings by d, firing the timers due on the way in
// the order they are due, each with the wall time it fell due.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	end := f.elapsed + d
	for {
		t := f.nextDueLocked(end)
		if t == nil {
			break
		}
		f.wall = f.wall.Add(t.due - f.elapsed)
		f.elapsed = t.due
		t.fireLocked(f)
		if t.period > 0 && t.due <= end {
			// No receiver runs while the lock is held: the ticks a ticker
			// would give before end are dropped, as a slow receiver's are.
			t.due += (end-t.due)/t.period*t.period + t.period
		}
	}
	f.wall = f.wall.Add(end - f.elapsed)
	f.elapsed = end
}

func (f *Fake) nextDueLocked(end time.Duration) *fakeTimer {
	var next *fakeTimer
	for _, t := range f.timers {
		if t.due <= end && (next == nil || t.due < next.due) {
			next = t
		}
	}
	return next
}

// Armed is how many timers and tickers are armed now.
func (f *Fake) Armed() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.timers)
}

// NextDue is how long until the soonest armed timer fires, and whether
// one is armed.
func (f *Fake) NextDue() (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.nextDueLocked(1<<63 - 1)
	if t == nil {
		return 0, false
	}
	return t.due - f.elapsed, true
}

// WaitArmed blocks until at least n timers are armed, or ctx ends: a loop
// under test has reached its wait once its timer is armed, so the test
// can advance the clock without racing it.
func (f *Fake) WaitArmed(ctx context.Context, n int) error {
	for {
		f.mu.Lock()
		have, armed := len(f.timers), f.armed
		f.mu.Unlock()
		if have >= n {
			return nil
		}
		select {
		case <-armed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// WaitArmedFor blocks until a timer is armed to fire within d from now,
// or ctx ends: a loop has scheduled its next step no later than d.
func (f *Fake) WaitArmedFor(ctx context.Context, d time.Duration) error {
	for {
		f.mu.Lock()
		t, armed := f.nextDueLocked(f.elapsed+d), f.armed
		f.mu.Unlock()
		if t != nil {
			return nil
		}
		select {
		case <-armed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// NewTimer arms a timer d from now.
func (f *Fake) NewTimer(d time.Duration) clock.Timer {
	t := &fakeTimer{f: f, c: make(chan time.Time, 1)}
	f.mu.Lock()
	defer f.mu.Unlock()
	t.armLocked(d)
	return t
}

// NewTicker arms a ticker every d.
func (f *Fake) NewTicker(d time.Duration) clock.Ticker {
	if d <= 0 {
		panic("clocktest: non-positive interval for NewTicker")
	}
	t := &fakeTimer{f: f, c: make(chan time.Time, 1), period: d}
	f.mu.Lock()
	defer f.mu.Unlock()
	t.armLocked(d)
	return fakeTicker{t}
}

type fakeTimer struct {
	f      *Fake
	c      chan time.Time
	period time.Duration // tickers only
	due    time.Duration // on the elapsed clock, while armed
	on     bool
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) armLocked(d time.Duration) {
	t.due = t.f.elapsed + max(d, 0)
	if !t.on {
		t.on = true
		t.f.timers = append(t.f.timers, t)
	}
	close(t.f.armed)
	t.f.armed = make(chan struct{})
	if d <= 0 {
		t.fireLocked(t.f)
	}
}

func (t *fakeTimer) disarmLocked() bool {
	was := t.on
	if was {
		t.on = false
		t.f.timers = slices.DeleteFunc(t.f.timers, func(o *fakeTimer) bool { return o == t })
	}
	return was
}

// fireLocked delivers the current wall time without blocking, as the
// runtime's timers do, and re-arms a ticker.
func (t *fakeTimer) fireLocked(f *Fake) {
	select {
	case t.c <- f.wall:
	default:
	}
	if t.period > 0 {
		t.due += t.period
		return
	}
	t.disarmLocked()
}

func (t *fakeTimer) drain() {
	select {
	case <-t.c:
	default:
	}
}

func (t *fakeTimer) Stop() bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	t.drain()
	return t.disarmLocked()
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	t.drain()
	was := t.on
	t.armLocked(d)
	return was
}

type fakeTicker struct{ t *fakeTimer }

func (k fakeTicker) C() <-chan time.Time { return k.t.c }
func (k fakeTicker) Stop()               { k.t.Stop() }
func (k fakeTicker) Reset(d time.Duration) {
	if d <= 0 {
		panic("clocktest: non-positive interval for Ticker.Reset")
	}
	k.t.f.mu.Lock()
	defer k.t.f.mu.Unlock()
	k.t.drain()
	k.t.period = d
	k.t.armLocked(d)
}
