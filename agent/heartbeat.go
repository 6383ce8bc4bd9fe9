package agent

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// defaultInterval is the heartbeat interval until the portal sets one.
const defaultInterval = 60 * time.Second

// jitterFraction spreads each interval by ±10 %, so PBXs that booted
// together drift apart.
const jitterFraction = 0.1

// heartbeatLoop runs heartbeats on schedule, on Refresh and after an
// activation, until ctx ends. It is the only caller of heartbeat, so one
// runs at a time.
func (a *Agent) heartbeatLoop(ctx context.Context) {
	// The first heartbeat after boot waits a random part of a tenth of the
	// interval: a fleet coming back from a power cut does not arrive at once.
	first := a.schedule().First(rand.Float64())
	timer := a.clk.NewTimer(first)
	defer timer.Stop()
	a.setNext(first, 0)
	failures := 0
	for {
		var reply chan error
		select {
		case <-ctx.Done():
			return
		case <-timer.C():
		case reply = <-a.hb.refresh:
		case <-a.hb.wake:
		case ack := <-a.hb.probe:
			ack <- struct{}{}
			continue
		case <-a.hb.resched:
			failures = 0
			delay := a.schedule().Next(failures, 0, rand.Float64())
			timer.Reset(delay)
			a.setNext(delay, failures)
			continue
		}
		err := a.heartbeat(ctx)
		var delay time.Duration
		switch {
		case err == nil, errors.Is(err, ErrNotActivated), errors.Is(err, errNoPortal):
			failures = 0
			delay = a.schedule().Next(failures, 0, rand.Float64())
		default:
			failures++
			var retryAfter time.Duration
			var re *refusedError
			if errors.As(err, &re) {
				retryAfter = re.retryAfter
			}
			// Capped only by an interval set in the configuration.
			delay = a.schedule().Next(failures, retryAfter, rand.Float64())
			a.log.Warn("heartbeat failed", "err", err, "failures", failures, "retry_in", delay.Round(time.Millisecond))
		}
		timer.Reset(delay)
		a.setNext(delay, failures)
		// Answered once the schedule is set, so a caller that reads the
		// status next sees the outcome's schedule.
		if reply != nil {
			reply <- err
		}
	}
}

// interval is the configured override, else the portal's, else the default.
func (a *Agent) interval() time.Duration {
	if o := a.hb.intervalOverride(); o > 0 {
		return o
	}
	if d := a.lic.portalInterval(); d > 0 {
		return d
	}
	return defaultInterval
}

// setNext records the schedule for the status: the next heartbeat, in
// from now, and the failures in a row that chose it, together so a reader
// sees one decision. It is kept on the elapsed clock the timer runs on, so
// the licence clock adopting the portal's time does not move it.
func (a *Agent) setNext(in time.Duration, failures int) {
	a.hb.set(a.clk.Elapsed()+in, failures)
}

// Refresh runs a heartbeat now, through the loop, and returns its outcome.
func (a *Agent) Refresh(ctx context.Context) error {
	// Count the users first, so the heartbeat reports them as they are
	// now; a failed count is logged and shown in the status, and the
	// heartbeat goes on with the last good one.
	a.countUsers(ctx) // users.go
	reply := make(chan error, 1)
	select {
	case a.hb.refresh <- reply:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		if errors.Is(err, ErrNotActivated) && a.State() == license.Deleted {
			// The PBX was deleted, by the portal's answer or by its
			// countdown ending on the licence clock, whichever came first:
			// either way, deleted is where the refresh leaves it.
			return nil
		}
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func goneReason(reason string) string {
	if reason == protocol.GoneRebound {
		return "re-bound to another appliance"
	}
	return "deleted on the portal"
}

// wakeHeartbeat asks the heartbeat loop to run now: to fetch what the
// portal has, or to report a result.
func (a *Agent) wakeHeartbeat() { a.hb.wakeNow() }

// hbSchedule is the heartbeat loop's side of the daemon: the channels
// that wake it or ask it to answer, and the schedule it last chose, which
// the status shows. It has a lock of its own, held only to read or write
// next, failures and override; never while taking another.
type hbSchedule struct {
	refresh  chan chan error    // Refresh asks the heartbeat loop to run now
	resched  chan struct{}      // an activation restarts the heartbeat schedule
	probe    chan chan struct{} // the watchdog (and a reload) asks the heartbeat loop to answer
	wake     chan struct{}      // asks the heartbeat loop to run now, without waiting for it
	waitWake chan struct{}      // an activation starts the long-poll at once (wait.go)

	mu       sync.Mutex
	next     time.Duration // the next heartbeat, on the clock's elapsed reading, for status
	failures int           // heartbeats failed in a row, for status
	override time.Duration // heartbeat.interval of the configuration; 0 is the portal's
}

func newHBSchedule(override time.Duration) *hbSchedule {
	return &hbSchedule{
		refresh:  make(chan chan error),
		resched:  make(chan struct{}, 1),
		probe:    make(chan chan struct{}),
		wake:     make(chan struct{}, 1),
		waitWake: make(chan struct{}, 1),
		override: override,
	}
}

// set records the schedule for the status: the next heartbeat, at
// elapsed reading at, and the failures in a row that chose it, together
// so a reader sees one decision.
func (s *hbSchedule) set(at time.Duration, failures int) {
	s.mu.Lock()
	s.next, s.failures = at, failures
	s.mu.Unlock()
}

// snapshot is the schedule last set, for the status.
func (s *hbSchedule) snapshot() (next time.Duration, failures int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.next, s.failures
}

// intervalOverride is heartbeat.interval as last configured.
func (s *hbSchedule) intervalOverride() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.override
}

// setOverride applies heartbeat.interval from a reload.
func (s *hbSchedule) setOverride(d time.Duration) {
	s.mu.Lock()
	s.override = d
	s.mu.Unlock()
}

// restart asks the heartbeat loop and the long-poll to start their
// schedules afresh (after an activation).
func (s *hbSchedule) restart() {
	select {
	case s.resched <- struct{}{}:
	default:
	}
	select {
	case s.waitWake <- struct{}{}:
	default:
	}
}

// wakeNow asks the heartbeat loop to run now.
func (s *hbSchedule) wakeNow() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}
