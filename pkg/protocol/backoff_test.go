package protocol

import (
	"testing"
	"time"
)

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Base: 2 * time.Second, Cap: time.Minute}
	tests := []struct {
		name       string
		failures   int
		retryAfter time.Duration
		r          float64
		want       time.Duration
	}{
		{"first failure, top of range", 1, 0, 0.999999, 1999998 * time.Microsecond},
		{"first failure, bottom of range", 1, 0, 0, 0},
		{"third failure doubles twice", 3, 0, 0.5, 4 * time.Second},
		{"capped", 10, 0, 0.5, 30 * time.Second},
		{"huge failure count stays capped", 1000, 0, 0.5, 30 * time.Second},
		{"zero failures treated as one", 0, 0, 0.5, time.Second},
		{"retry-after is a floor", 1, 30 * time.Second, 0, 30 * time.Second},
		{"retry-after spread by up to 10 %", 1, 30 * time.Second, 0.5, 31500 * time.Millisecond},
		{"jitter above retry-after wins", 10, 10 * time.Second, 0.9, 54 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := b.Delay(tt.failures, tt.retryAfter, tt.r); got != tt.want {
				t.Errorf("Delay(%d, %v, %v) = %v, want %v", tt.failures, tt.retryAfter, tt.r, got, tt.want)
			}
		})
	}
}

func TestBackoffNeverExceedsCeiling(t *testing.T) {
	b := DefaultBackoff
	for failures := 1; failures < 100; failures++ {
		for _, r := range []float64{0, 0.25, 0.5, 0.999} {
			if d := b.Delay(failures, 0, r); d < 0 || d > b.Cap {
				t.Fatalf("Delay(%d, 0, %v) = %v, outside [0, %v]", failures, r, d, b.Cap)
			}
		}
	}
}

func TestJitter(t *testing.T) {
	for _, tt := range []struct {
		r    float64
		want time.Duration
	}{{0, 54 * time.Second}, {0.5, 60 * time.Second}, {1, 66 * time.Second}} {
		if got := Jitter(time.Minute, 0.1, tt.r); got != tt.want {
			t.Errorf("Jitter(1m, 0.1, %v) = %v, want %v", tt.r, got, tt.want)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                              0,
		"30":                            30 * time.Second,
		" 5 ":                           5 * time.Second,
		"-1":                            0,
		"soon":                          0,
		"Fri, 27 Nov 2026 12:01:00 GMT": time.Minute,
		"Fri, 27 Nov 2026 11:00:00 GMT": 0,
	} {
		if got := ParseRetryAfter(in, now); got != want {
			t.Errorf("ParseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}
