package protocol

import "time"

// Schedule chooses when the agent next talks to its portal: the heartbeat
// loop and the long-poll's retries both take their waits from it, and the
// herd simulation runs it, so the fleet's load it measures is the agent's.
type Schedule struct {
	// Interval is the heartbeat interval: the portal's, else the default.
	Interval time.Duration
	// Override is heartbeat.interval from the configuration, 0 when unset.
	// It replaces Interval and also caps the backoff.
	Override time.Duration
	// Jitter spreads every interval by ±Jitter of itself (0.1 is ±10 %).
	Jitter float64
}

// Every is the interval in force: the override, else Interval.
func (s Schedule) Every() time.Duration {
	if s.Override > 0 {
		return s.Override
	}
	return s.Interval
}

// First is the wait before the first heartbeat after boot: a random part
// (r uniform in [0, 1)) of a tenth of the interval, so a fleet coming back
// from a power cut does not arrive at once.
func (s Schedule) First(r float64) time.Duration {
	return time.Duration(r * float64(s.Every()) / 10)
}

// Next is the wait after an attempt; failures counts the failures in a
// row (0 after a success), retryAfter is the portal's Retry-After (0 if
// none) and r is uniform in [0, 1).
//
// After a success it is the jittered interval; after a failure the
// DefaultBackoff delay, at least the Retry-After. Only an interval set by
// configuration (development, tests) caps the backoff, at
// max(Override, retryAfter, 1 s): capped at the production interval, a
// fleet whose portal is down would retry in lockstep once a minute.
func (s Schedule) Next(failures int, retryAfter time.Duration, r float64) time.Duration {
	if failures <= 0 {
		return Jitter(s.Every(), s.Jitter, r)
	}
	d := DefaultBackoff.Delay(failures, retryAfter, r)
	if s.Override > 0 {
		d = min(d, max(s.Override, retryAfter, time.Second))
	}
	return d
}
