package license

import (
	"testing"
	"time"
)

// fakeTime is a TimeSource whose wall clock can be set like a machine's and
// whose elapsed time only moves forward.
type fakeTime struct {
	wall    time.Time
	elapsed time.Duration
}

func (f *fakeTime) Wall() time.Time        { return f.wall }
func (f *fakeTime) Elapsed() time.Duration { return f.elapsed }

// run advances real time by d: both clocks move.
func (f *fakeTime) run(d time.Duration) { f.wall = f.wall.Add(d); f.elapsed += d }

func TestClock(t *testing.T) {
	start := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	tests := []struct {
		name      string
		highWater time.Time
		steps     func(f *fakeTime, c *Clock)
		want      time.Time
	}{
		{
			name:  "first start follows the local clock",
			steps: func(f *fakeTime, c *Clock) { f.run(time.Hour) },
			want:  start.Add(time.Hour),
		},
		{
			name:      "restart with the local clock set back a week keeps the high-water mark",
			highWater: start.Add(7 * day),
			steps:     func(f *fakeTime, c *Clock) { f.run(time.Hour) },
			want:      start.Add(7*day + time.Hour),
		},
		{
			name: "local clock set back while running is ignored",
			steps: func(f *fakeTime, c *Clock) {
				f.run(time.Hour)
				f.wall = f.wall.Add(-7 * day)
				f.run(time.Hour)
			},
			want: start.Add(2 * time.Hour),
		},
		{
			name: "local clock jumping ahead moves the licence clock forward",
			steps: func(f *fakeTime, c *Clock) {
				f.wall = f.wall.Add(365 * day)
				f.run(time.Hour)
			},
			want: start.Add(365*day + time.Hour),
		},
		{
			name: "and it does not come back when the local clock does",
			steps: func(f *fakeTime, c *Clock) {
				f.wall = f.wall.Add(365 * day)
				c.Now()
				f.wall = f.wall.Add(-365 * day)
				f.run(time.Hour)
			},
			want: start.Add(365*day + time.Hour),
		},
		{
			name: "portal time is adopted, then advances monotonically",
			steps: func(f *fakeTime, c *Clock) {
				c.AdoptPortal(start.Add(6 * day))
				f.run(time.Minute)
			},
			want: start.Add(6*day + time.Minute),
		},
		{
			name: "portal time corrects a local clock that ran a year ahead",
			steps: func(f *fakeTime, c *Clock) {
				f.wall = f.wall.Add(365 * day)
				c.Now()
				c.AdoptPortal(start)
				f.run(time.Minute)
			},
			want: start.Add(time.Minute),
		},
		{
			name: "past the portal's trust, a local clock ahead counts again (suspend)",
			steps: func(f *fakeTime, c *Clock) {
				c.AdoptPortal(start)
				f.wall = f.wall.Add(3 * day) // suspended: the monotonic clock stood still
				f.elapsed += PortalTrust
			},
			want: start.Add(3 * day),
		},
		{
			name: "offline for 31 days runs on the monotonic clock",
			steps: func(f *fakeTime, c *Clock) {
				c.AdoptPortal(start)
				f.wall = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC) // RTC lost
				f.elapsed += 31 * day
			},
			want: start.Add(31 * day),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeTime{wall: start, elapsed: 42 * time.Second}
			c := NewClock(f, Mark{Time: tt.highWater})
			tt.steps(f, c)
			if got := c.Now(); !got.Equal(tt.want) {
				t.Errorf("Now() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestClockReportsLocalClockBehind(t *testing.T) {
	start := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	f := &fakeTime{wall: start}
	c := NewClock(f, Mark{Time: start.Add(48 * time.Hour)})
	if got := c.LocalOffset(); got != -48*time.Hour {
		t.Errorf("LocalOffset = %v, want -48h", got)
	}
	f.wall = start.Add(49 * time.Hour)
	if got := c.LocalOffset(); got != 0 {
		t.Errorf("LocalOffset after the local clock caught up = %v, want 0", got)
	}
}

// TestClockWithEvaluate runs the lifecycle on the licence clock while the
// machine's clock is set back or runs ahead: a clock set back never extends
// a licence, and a clock ahead moves the lifecycle forward only until the
// portal's signed time corrects it.
func TestClockWithEvaluate(t *testing.T) {
	start := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	doc := testDocument()
	countdown := *zeroed(doc, start) // stop_at 2026-12-02, delete_at 2026-12-11
	tests := []struct {
		name      string
		doc       Document
		highWater time.Time
		// steps moves the machine; it returns the last portal answer's time
		// (zero: the portal was not reached).
		steps func(f *fakeTime, c *Clock) time.Time
		want  State
	}{
		{
			name: "offline, the local clock set back a week while running: still lapsed",
			doc:  doc,
			steps: func(f *fakeTime, c *Clock) time.Time {
				c.AdoptPortal(start)
				f.run(31 * day)
				f.wall = f.wall.Add(-7 * day)
				f.run(time.Hour)
				return start
			},
			want: Lapsed,
		},
		{
			name:      "offline, restarted with the local clock set back a week: the high-water mark keeps it lapsed",
			doc:       doc,
			highWater: start.Add(31 * day),
			steps: func(f *fakeTime, c *Clock) time.Time {
				f.wall = start.Add(24 * day) // a week behind the mark
				return start
			},
			want: Lapsed,
		},
		{
			name:      "stopped, restarted with the local clock set back a week: still stopped",
			doc:       countdown,
			highWater: start.Add(6 * day),
			steps: func(f *fakeTime, c *Clock) time.Time {
				f.wall = start.Add(-day)
				return start
			},
			want: Stopped,
		},
		{
			name: "stopping, the local clock set back a week: stop_at comes on time",
			doc:  countdown,
			steps: func(f *fakeTime, c *Clock) time.Time {
				c.AdoptPortal(start)
				f.wall = f.wall.Add(-7 * day)
				f.run(5 * day)
				return start
			},
			want: Stopped,
		},
		{
			name: "a local clock a year ahead, offline: the lapse grace is over",
			doc:  doc,
			steps: func(f *fakeTime, c *Clock) time.Time {
				c.AdoptPortal(start)
				f.run(PortalTrust)
				f.wall = f.wall.Add(365 * day)
				return start
			},
			want: Stopped,
		},
		{
			name: "a local clock a year ahead during a countdown: deleted, until the portal says otherwise",
			doc:  countdown,
			steps: func(f *fakeTime, c *Clock) time.Time {
				c.AdoptPortal(start)
				f.run(PortalTrust)
				f.wall = f.wall.Add(365 * day)
				return start
			},
			want: Deleted,
		},
		{
			name: "a local clock a year ahead, then the portal answers: active again",
			doc:  doc,
			steps: func(f *fakeTime, c *Clock) time.Time {
				f.wall = f.wall.Add(365 * day)
				c.Now()
				f.run(time.Minute)
				c.AdoptPortal(start.Add(time.Minute)) // the answer is also the last success
				return start.Add(time.Minute)
			},
			want: Active,
		},
		{
			name: "a local clock a year ahead during a countdown, then the portal answers: stopping again",
			doc:  countdown,
			steps: func(f *fakeTime, c *Clock) time.Time {
				f.wall = f.wall.Add(365 * day)
				c.Now()
				c.AdoptPortal(start.Add(time.Hour))
				return start.Add(time.Hour)
			},
			want: Stopping,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeTime{wall: start, elapsed: 42 * time.Second}
			c := NewClock(f, Mark{Time: tt.highWater})
			last := tt.steps(f, c)
			v := Evaluate(Facts{Now: c.Now(), Doc: &tt.doc, LastSuccess: last})
			if v.State != tt.want {
				t.Errorf("at licence time %v: %s (%s), want %s", c.Now(), v.State, v.Summary, tt.want)
			}
		})
	}
}

func TestClockPortalBacked(t *testing.T) {
	start := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	f := &fakeTime{wall: start}
	c := NewClock(f)
	if c.PortalBacked() {
		t.Error("portal-backed before any answer")
	}
	c.AdoptPortal(start)
	f.run(PortalTrust - time.Second)
	if !c.PortalBacked() {
		t.Error("not portal-backed within PortalTrust of an answer")
	}
	f.run(time.Second)
	if c.PortalBacked() {
		t.Error("portal-backed past PortalTrust")
	}
}
