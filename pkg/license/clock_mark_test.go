package license

import (
	"testing"
	"time"
)

// TestClockResumesFromMark restarts the clock from a persisted mark the
// ways a machine can: the same boot after some downtime, a reboot, with the
// local clock behind or ahead.
func TestClockResumesFromMark(t *testing.T) {
	start := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	licence := start.Add(10 * day) // the licence clock when the mark was taken
	mark := Mark{Time: licence, Boot: 3 * time.Hour}
	tests := []struct {
		name  string
		marks []Mark
		wall  time.Time     // the local clock at the restart
		boot  time.Duration // the boot time at the restart
		want  time.Time
	}{
		{
			name:  "same boot, 90 s down: the downtime counts",
			marks: []Mark{mark}, wall: start, boot: mark.Boot + 90*time.Second,
			want: licence.Add(90 * time.Second),
		},
		{
			name:  "same boot, at once: nothing added",
			marks: []Mark{mark}, wall: start, boot: mark.Boot,
			want: licence,
		},
		{
			name:  "same boot, down 31 days with the local clock 30 days back",
			marks: []Mark{mark}, wall: start.Add(-30 * day), boot: mark.Boot + 31*day,
			want: licence.Add(31 * day),
		},
		{
			name:  "new boot: the mark is a floor",
			marks: []Mark{mark}, wall: start, boot: 20 * time.Second,
			want: licence,
		},
		{
			name:  "new boot, the local clock ahead of the mark moves it forward",
			marks: []Mark{mark}, wall: licence.Add(2 * day), boot: 20 * time.Second,
			want: licence.Add(2 * day),
		},
		{
			name:  "same boot, the local clock ahead of the resumed time moves it forward",
			marks: []Mark{mark}, wall: licence.Add(day), boot: mark.Boot + time.Hour,
			want: licence.Add(day),
		},
		{
			name:  "same boot, the local clock behind is ignored",
			marks: []Mark{mark}, wall: start.Add(-365 * day), boot: mark.Boot + time.Hour,
			want: licence.Add(time.Hour),
		},
		{
			name:  "a mark without a boot reading is only a floor",
			marks: []Mark{{Time: licence}}, wall: start, boot: mark.Boot + day,
			want: licence,
		},
		{
			name:  "the latest of two marks wins: an old state file cannot move it back",
			marks: []Mark{{Time: start}, mark}, wall: start, boot: mark.Boot + time.Minute,
			want: licence.Add(time.Minute),
		},
		{
			name:  "a floor later than the resumed mark wins",
			marks: []Mark{mark, {Time: licence.Add(day)}}, wall: start, boot: mark.Boot + time.Minute,
			want: licence.Add(day),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeTime{wall: tt.wall, elapsed: tt.boot}
			c := NewClock(f, tt.marks...)
			if got := c.Now(); !got.Equal(tt.want) {
				t.Errorf("Now() = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestClockMarkRoundTrip: a mark taken and resumed later in the same boot
// gives the clock that would have run on without the restart.
func TestClockMarkRoundTrip(t *testing.T) {
	start := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	f := &fakeTime{wall: start, elapsed: time.Hour}
	c := NewClock(f)
	c.AdoptPortal(start.Add(day))
	f.run(time.Minute)
	m := c.Mark()
	if want := (Mark{Time: start.Add(day + time.Minute), Boot: time.Hour + time.Minute}); m != want {
		t.Fatalf("Mark() = %+v, want %+v", m, want)
	}
	f.run(time.Hour)
	if got, want := NewClock(f, m).Now(), c.Now(); !got.Equal(want) {
		t.Errorf("resumed clock = %v, the running one = %v", got, want)
	}
}

// TestClockSurvivesKillLoop is the attack on a persisted mark: the local
// clock 30 days back, the portal blocked, the agent killed every 50 s and
// restarted from the last mark it wrote (every 10 s), never stopping
// cleanly. The licence clock must keep pace with the boot time, so the
// offline grace runs out on schedule.
func TestClockSurvivesKillLoop(t *testing.T) {
	start := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	f := &fakeTime{wall: start, elapsed: time.Hour}
	c := NewClock(f)
	c.AdoptPortal(start)
	f.wall = start.Add(-30 * day) // the owner sets the clock back
	last := c.Mark()
	const (
		restarts   = 2000
		upFor      = 50 * time.Second
		markEvery  = 10 * time.Second
		downFor    = 3 * time.Second // systemd's restart delay
		firstBoots = time.Hour
	)
	for range restarts {
		c = NewClock(f, last)
		for up := time.Duration(0); up < upFor; {
			step := min(markEvery, upFor-up)
			f.run(step)
			up += step
			if up%markEvery == 0 && up < upFor { // killed before the mark at upFor
				last = c.Mark()
			}
		}
		f.run(downFor) // SIGKILL: no mark at stop
	}
	c = NewClock(f, last)
	elapsed := f.elapsed - firstBoots
	if got := c.Now().Sub(start); got != elapsed {
		t.Errorf("after %d kills the licence clock advanced %v; the machine ran %v", restarts, got, elapsed)
	}
	facts := Facts{Now: c.Now(), Doc: new(testDocument()), LastSuccess: start}
	if v := Evaluate(facts); v.State == Active {
		t.Errorf("after %v offline the licence is still %s", elapsed, v.State)
	}
}
