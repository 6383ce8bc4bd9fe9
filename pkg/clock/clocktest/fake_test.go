package clocktest

import (
	"context"
	"testing"
	"time"
)

var epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func received(c <-chan time.Time) (time.Time, bool) {
	select {
	case t := <-c:
		return t, true
	default:
		return time.Time{}, false
	}
}

func TestTimerFiresOnElapsedTimeOnly(t *testing.T) {
	f := NewFake(epoch, time.Hour)
	tm := f.NewTimer(10 * time.Second)
	f.SetWall(epoch.Add(24 * time.Hour)) // the local clock set forward fires nothing
	if _, ok := received(tm.C()); ok {
		t.Fatal("a timer fired when only the wall clock moved")
	}
	f.Advance(9 * time.Second)
	if _, ok := received(tm.C()); ok {
		t.Fatal("a timer fired before its time")
	}
	f.Advance(time.Second)
	got, ok := received(tm.C())
	if !ok || !got.Equal(epoch.Add(24*time.Hour+10*time.Second)) {
		t.Fatalf("fired %v, %v; want the wall time it fell due", got, ok)
	}
	if f.Armed() != 0 {
		t.Fatalf("%d timers armed after a one-shot fired", f.Armed())
	}
}

func TestResetDropsAFiredValueAndRearms(t *testing.T) {
	f := NewFake(epoch, time.Hour)
	tm := f.NewTimer(time.Second)
	f.Advance(time.Second) // fired, not received
	if was := tm.Reset(5 * time.Second); was {
		t.Error("Reset reported a fired timer as armed")
	}
	if _, ok := received(tm.C()); ok {
		t.Fatal("the value fired before Reset was kept")
	}
	f.Advance(4 * time.Second)
	if _, ok := received(tm.C()); ok {
		t.Fatal("fired before the new time")
	}
	f.Advance(time.Second)
	if _, ok := received(tm.C()); !ok {
		t.Fatal("did not fire at the new time")
	}
	if tm.Stop() {
		t.Error("Stop reported a fired timer as armed")
	}
}

func TestAdvanceFiresInOrderAndTickerDropsMissedTicks(t *testing.T) {
	f := NewFake(epoch, time.Hour)
	tick := f.NewTicker(time.Millisecond)
	late := f.NewTimer(20 * 24 * time.Hour)
	early := f.NewTimer(time.Minute)
	f.Advance(30 * 24 * time.Hour) // returns at once: missed ticks are dropped, not walked
	e, _ := received(early.C())
	l, _ := received(late.C())
	if !e.Equal(epoch.Add(time.Minute)) || !l.Equal(epoch.Add(20*24*time.Hour)) {
		t.Fatalf("early fired at %v, late at %v", e, l)
	}
	if _, ok := received(tick.C()); !ok {
		t.Fatal("the ticker did not tick")
	}
	if _, ok := received(tick.C()); ok {
		t.Fatal("a ticker kept more than one tick")
	}
	f.Advance(time.Millisecond)
	if _, ok := received(tick.C()); !ok {
		t.Fatal("the ticker stopped ticking")
	}
	tick.Stop()
	if f.Armed() != 0 {
		t.Fatalf("%d armed after all stopped or fired", f.Armed())
	}
}

func TestWaitArmed(t *testing.T) {
	f := NewFake(epoch, time.Hour)
	done := make(chan error, 1)
	go func() { done <- f.WaitArmedFor(context.Background(), time.Minute) }()
	f.NewTimer(time.Hour) // too late: still waiting
	select {
	case err := <-done:
		t.Fatalf("WaitArmedFor returned %v for a timer an hour away", err)
	default:
	}
	f.NewTimer(30 * time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.WaitArmed(ctx, 5); err == nil {
		t.Fatal("WaitArmed ignored its context")
	}
}
