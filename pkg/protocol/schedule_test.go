package protocol

import (
	"testing"
	"time"
)

func TestScheduleNext(t *testing.T) {
	const minute = time.Minute
	portal := Schedule{Interval: minute, Jitter: 0.1}
	override := Schedule{Interval: minute, Override: 5 * time.Second, Jitter: 0.1}
	tests := []struct {
		name       string
		s          Schedule
		failures   int
		retryAfter time.Duration
		r          float64
		want       time.Duration
	}{
		{"success: the interval, at the low end of its jitter", portal, 0, 0, 0, 54 * time.Second},
		{"success: the interval, at the middle", portal, 0, 0, 0.5, minute},
		{"success: a Retry-After does not apply", portal, 0, time.Hour, 0.5, minute},
		{"success with an override: the override, jittered", override, 0, 0, 0.5, 5 * time.Second},
		{"first failure: within the 2 s ceiling", portal, 1, 0, 0.5, time.Second},
		{"tenth failure: the 10 min cap, not the interval", portal, 10, 0, 0.99, 594 * time.Second},
		{"Retry-After is a floor", portal, 1, 30 * time.Second, 0, 30 * time.Second},
		{"Retry-After beyond the interval holds without an override", portal, 1, 5 * minute, 0, 5 * minute},
		{"an override caps the backoff", override, 10, 0, 0.99, 5 * time.Second},
		{"an override keeps a shorter backoff", override, 1, 0, 0.5, time.Second},
		{"an override does not cut the portal's Retry-After", override, 10, 30 * time.Second, 0.99, 30 * time.Second},
		{"an override under a second caps at a second", Schedule{Interval: minute, Override: 100 * time.Millisecond, Jitter: 0.1}, 10, 0, 0.99, time.Second},
		{"no interval from the portal: the override alone", Schedule{Override: 5 * time.Second, Jitter: 0.1}, 0, 0, 0.5, 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.s.Next(tt.failures, tt.retryAfter, tt.r); got != tt.want {
				t.Errorf("Next(%d, %v, %v) = %v, want %v", tt.failures, tt.retryAfter, tt.r, got, tt.want)
			}
		})
	}
}

// TestScheduleNextBounds sweeps the random draw: a success stays within
// the jitter, a failure within its ceiling and above any Retry-After.
func TestScheduleNextBounds(t *testing.T) {
	s := Schedule{Interval: time.Minute, Jitter: 0.1}
	for i := range 100 {
		r := float64(i) / 100
		if d := s.Next(0, 0, r); d < 54*time.Second || d > 66*time.Second {
			t.Fatalf("success, r=%v: %v outside 60 s ± 10 %%", r, d)
		}
		if d := s.Next(3, 0, r); d < 0 || d > 8*time.Second {
			t.Fatalf("third failure, r=%v: %v outside [0, 8 s]", r, d)
		}
		if d := s.Next(3, 20*time.Second, r); d < 20*time.Second || d > 22*time.Second {
			t.Fatalf("Retry-After 20 s, r=%v: %v outside [20 s, 22 s]", r, d)
		}
	}
}

func TestScheduleFirst(t *testing.T) {
	tests := []struct {
		s    Schedule
		r    float64
		want time.Duration
	}{
		{Schedule{Interval: time.Minute}, 0, 0},
		{Schedule{Interval: time.Minute}, 0.5, 3 * time.Second},
		{Schedule{Interval: time.Minute}, 0.999, 5994 * time.Millisecond},
		{Schedule{Interval: time.Minute, Override: 10 * time.Second}, 0.5, 500 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := tt.s.First(tt.r); got != tt.want {
			t.Errorf("%+v.First(%v) = %v, want %v", tt.s, tt.r, got, tt.want)
		}
	}
}
