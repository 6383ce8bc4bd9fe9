// Package clock is the daemon's one source of time: the two readings the
// licence clock is made of (the local wall clock and the time elapsed
// since boot) and the timers every loop waits on. The daemon is given one
// Clock; tests give it a Fake (package clocktest) and move it, so a loop's
// whole schedule runs in milliseconds.
package clock

import (
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// Clock reads time and makes timers. Timers count elapsed time: a local
// clock set forward or back neither fires nor holds them.
type Clock interface {
	license.TimeSource
	NewTimer(d time.Duration) Timer
	NewTicker(d time.Duration) Ticker
}

// Timer is a one-shot timer, as time.Timer: C receives once per arming.
type Timer interface {
	C() <-chan time.Time
	// Stop disarms the timer; it reports whether it was armed.
	Stop() bool
	// Reset arms the timer to fire d from now; it reports whether it was
	// armed. A value the timer fired before Reset is dropped (Go 1.23
	// timer semantics), so a receive after Reset waits for the new time.
	Reset(d time.Duration) bool
}

// Ticker fires every period, as time.Ticker, dropping ticks a slow
// receiver misses.
type Ticker interface {
	C() <-chan time.Time
	Stop()
	Reset(d time.Duration)
}

// System is the machine's clock: license.SystemTime's readings and the
// runtime's timers.
func System() Clock { return WithTimers(license.NewSystemTime()) }

// WithTimers gives src the runtime's timers. It is for a TimeSource that
// only offsets the machine's readings (a test build's shifted clock), and
// for tests that move a source's readings by hand but let timers run in
// real time.
func WithTimers(src license.TimeSource) Clock { return systemTimers{src} }

type systemTimers struct{ license.TimeSource }

func (systemTimers) NewTimer(d time.Duration) Timer   { return runtimeTimer{time.NewTimer(d)} }
func (systemTimers) NewTicker(d time.Duration) Ticker { return runtimeTicker{time.NewTicker(d)} }

type runtimeTimer struct{ t *time.Timer }

func (r runtimeTimer) C() <-chan time.Time        { return r.t.C }
func (r runtimeTimer) Stop() bool                 { return r.t.Stop() }
func (r runtimeTimer) Reset(d time.Duration) bool { return r.t.Reset(d) }

type runtimeTicker struct{ t *time.Ticker }

func (r runtimeTicker) C() <-chan time.Time   { return r.t.C }
func (r runtimeTicker) Stop()                 { r.t.Stop() }
func (r runtimeTicker) Reset(d time.Duration) { r.t.Reset(d) }

// Of returns src as a Clock: itself when it has timers, else src with the
// runtime's timers.
func Of(src license.TimeSource) Clock {
	if c, ok := src.(Clock); ok {
		return c
	}
	return WithTimers(src)
}
