package license

import (
	"testing"
	"time"
)

func TestRelativeDay(t *testing.T) {
	now := time.Date(2027, 3, 31, 10, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		day  time.Time
		want string
	}{
		{time.Date(2027, 3, 31, 0, 0, 0, 0, time.UTC), "today"},
		{time.Date(2027, 3, 31, 23, 59, 59, 0, time.UTC), "today"},
		{time.Date(2027, 4, 1, 0, 0, 0, 0, time.UTC), "tomorrow"},
		{time.Date(2027, 3, 30, 0, 0, 0, 0, time.UTC), "yesterday"},
		{time.Date(2027, 4, 21, 0, 0, 0, 0, time.UTC), "in 21 days"},
		{time.Date(2027, 3, 28, 0, 0, 0, 0, time.UTC), "3 days ago"},
		{time.Date(2027, 4, 1, 1, 0, 0, 0, time.FixedZone("CEST", 2*3600)), "today"}, // 2027-03-31 23:00 UTC
	} {
		if got := RelativeDay(tt.day, now); got != tt.want {
			t.Errorf("RelativeDay(%v, %v) = %q, want %q", tt.day, now, got, tt.want)
		}
	}
}
