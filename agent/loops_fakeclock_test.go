package agent

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/clock/clocktest"
	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// These tests drive the daemon's loops on a clocktest.Fake: each step waits
// until the loop has armed its timer, reads the delay it chose, and moves
// the clock by exactly that much. No test sleeps; the contexts with a
// timeout only guard against a loop that never arms.

// portalMode is what the switchable front of the portal answers.
type portalMode int32

const (
	portalUp          portalMode = iota // pass to the portal simulator
	portalUnavailable                   // 503 without Retry-After
	portalRetryAfter                    // 503 with Retry-After: 300
	portalNoWait                        // 404 on the long-poll, the rest passes
)

const frontRetryAfter = 300 * time.Second

// frontedRig is a rig whose agent reaches the portal through a front the
// test switches, on a fake clock.
type frontedRig struct {
	*rig
	mode atomic.Int32
	fake *clocktest.Fake
	hits atomic.Int64 // requests that reached the front
}

func newFrontedRig(t *testing.T) *frontedRig {
	t.Helper()
	r := newRig(t)
	f := &frontedRig{rig: r, fake: clocktest.NewFake(r.time.wall, time.Hour)}
	target, err := url.Parse(r.server.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		f.hits.Add(1)
		switch portalMode(f.mode.Load()) {
		case portalUnavailable:
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
			return
		case portalRetryAfter:
			w.Header().Set("Retry-After", "300")
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
			return
		case portalNoWait:
			if req.URL.Path == protocol.PathWait {
				http.NotFound(w, req)
				return
			}
		}
		proxy.ServeHTTP(w, req)
	}))
	t.Cleanup(front.Close)
	r.cfg.Portal.URL = front.URL
	return f
}

func (f *frontedRig) set(m portalMode) { f.mode.Store(int32(m)) }

// activatedOnFake activates a PBX on an agent whose clock is the fake.
func (f *frontedRig) activatedOnFake(t *testing.T, counts license.Counts, tel Telephony) *Agent {
	t.Helper()
	key := f.createPBX(t, "acme.example", counts)
	a, err := New(f.cfg, slog.New(slog.DiscardHandler), Options{Time: f.fake, Root: f.root, Telephony: tel})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Activate(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	// The activation asked the (not yet started) loops to start their
	// schedule afresh; taken here, as a loop started now would, so a test
	// does not race a reset of the timer it has just read.
	for _, c := range []chan struct{}{a.hb.resched, a.hb.waitWake} {
		select {
		case <-c:
		default:
		}
	}
	return a
}

// step waits for the one loop under test to arm its timer and returns the
// delay it chose.
func (f *frontedRig) step(t *testing.T, ctx context.Context) time.Duration {
	t.Helper()
	if err := f.fake.WaitArmed(ctx, 1); err != nil {
		t.Fatalf("the loop armed no timer: %v", err)
	}
	d, ok := f.fake.NextDue()
	if !ok {
		t.Fatal("no timer armed")
	}
	return d
}

// fire moves the clock by d, to the armed timer, and waits until the loop
// has taken the tick and armed its next wait (the timer disarms when it
// fires, so WaitArmed cannot return before the loop re-arms it).
func (f *frontedRig) fire(t *testing.T, ctx context.Context, d time.Duration) time.Duration {
	t.Helper()
	f.fake.Advance(d)
	return f.step(t, ctx)
}

// pollUntil polls cond until it holds or the guard ends.
func pollUntil(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not reached before the guard", what)
		case <-tick.C:
		}
	}
}

// backoffBounds is the range the policy allows after n failures in a row.
func backoffBounds(n int, retryAfter time.Duration) (lo, hi time.Duration) {
	return protocol.DefaultBackoff.Delay(n, retryAfter, 0), protocol.DefaultBackoff.Delay(n, retryAfter, 0.999999)
}

func within(d, lo, hi time.Duration) bool { return d >= lo && d <= hi }

// TestHeartbeatBackoffOnFakeClock: on a portal that fails, the heartbeat
// loop's delays grow by the backoff policy, honour Retry-After, the status
// shows the failures and the next try, and a recovered portal puts the
// interval back.
func TestHeartbeatBackoffOnFakeClock(t *testing.T) {
	began := time.Now()
	f := newFrontedRig(t)
	a := f.activatedOnFake(t, license.Counts{license.UCPremium: 10}, &fakeTelephony{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	loopCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { a.heartbeatLoop(loopCtx); close(done) }()
	defer func() { stop(); <-done }()

	interval := a.interval()
	lo, hi := interval-interval/10, interval+interval/10
	first := f.step(t, ctx)
	if first < 0 || first > interval/10 {
		t.Fatalf("first heartbeat in %v, want within a tenth of the interval %v", first, interval)
	}
	d := f.fire(t, ctx, first)
	if !within(d, lo, hi) {
		t.Fatalf("after a success: next in %v, want %v..%v", d, lo, hi)
	}

	checkStatus := func(failures int, delay time.Duration) {
		t.Helper()
		pollUntil(t, ctx, "status after a heartbeat", func() bool {
			s := a.Status()
			if s.Heartbeat.Failures != failures || s.Heartbeat.Next == nil {
				return false
			}
			want := a.lic.clock.Now().Add(delay)
			off := s.Heartbeat.Next.Sub(want)
			return off > -2*time.Second && off < 2*time.Second
		})
	}
	checkStatus(0, d)

	f.set(portalUnavailable)
	var ceilings []time.Duration
	for n := 1; n <= 8; n++ {
		hitsBefore := f.hits.Load()
		d = f.fire(t, ctx, d)
		if f.hits.Load() == hitsBefore {
			t.Fatalf("failure %d: the timer fired but no heartbeat reached the portal", n)
		}
		blo, bhi := backoffBounds(n, 0)
		if !within(d, blo, bhi) {
			t.Fatalf("failure %d: retry in %v, want %v..%v", n, d, blo, bhi)
		}
		ceilings = append(ceilings, bhi)
		checkStatus(n, d)
		if st := a.Status(); st.Heartbeat.LastError == "" {
			t.Errorf("failure %d: the status shows no error", n)
		}
	}
	// The policy's ceiling grows with the failures and stops at its cap.
	if ceilings[0] >= ceilings[4] || ceilings[7] > protocol.DefaultBackoff.Cap {
		t.Errorf("backoff ceilings %v do not grow to the cap %v", ceilings, protocol.DefaultBackoff.Cap)
	}

	f.set(portalRetryAfter)
	for n := 9; n <= 10; n++ {
		d = f.fire(t, ctx, d)
		if d < frontRetryAfter {
			t.Fatalf("failure %d with Retry-After %v: retry in %v, sooner than the portal asked", n, frontRetryAfter, d)
		}
		if blo, bhi := backoffBounds(n, frontRetryAfter); !within(d, blo, bhi) {
			t.Fatalf("failure %d with Retry-After: retry in %v, want %v..%v", n, d, blo, bhi)
		}
		checkStatus(n, d)
	}

	f.set(portalUp)
	d = f.fire(t, ctx, d)
	if !within(d, lo, hi) {
		t.Fatalf("after the portal recovered: next in %v, want the interval %v..%v", d, lo, hi)
	}
	checkStatus(0, d)
	if s := a.Status(); s.Heartbeat.LastSuccess == nil {
		t.Error("after the portal recovered: no last success in the status")
	}
	t.Logf("11 failures and recoveries over %v of fake time took %v of real time", f.fake.Elapsed()-time.Hour, time.Since(began))
}

// TestHeartbeatBackoffCappedByConfiguredInterval: with heartbeat.interval
// set, the backoff stops at the interval, but a Retry-After above it still
// holds.
func TestHeartbeatBackoffCappedByConfiguredInterval(t *testing.T) {
	f := newFrontedRig(t)
	const interval = 20 * time.Second
	f.cfg.Heartbeat.Interval = interval
	a := f.activatedOnFake(t, license.Counts{license.UCPremium: 10}, &fakeTelephony{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	loopCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { a.heartbeatLoop(loopCtx); close(done) }()
	defer func() { stop(); <-done }()

	d := f.fire(t, ctx, f.step(t, ctx))
	if !within(d, interval-interval/10, interval+interval/10) {
		t.Fatalf("after a success: next in %v, want %v ±10 %%", d, interval)
	}
	f.set(portalUnavailable)
	for n := 1; n <= 10; n++ {
		d = f.fire(t, ctx, d)
		blo, bhi := backoffBounds(n, 0)
		if d > interval || !within(d, min(blo, interval), min(bhi, interval)) {
			t.Fatalf("failure %d: retry in %v, want %v..%v capped at %v", n, d, blo, bhi, interval)
		}
	}
	f.set(portalRetryAfter)
	d = f.fire(t, ctx, d)
	if d != frontRetryAfter {
		t.Fatalf("Retry-After %v above the interval %v: retry in %v, want exactly the Retry-After (the cap)", frontRetryAfter, interval, d)
	}
}

// startLifecycle runs the lifecycle loop on the fake clock until the test
// ends, and waits for its first evaluation (its timer starts at zero).
func (f *frontedRig) startLifecycle(t *testing.T, ctx context.Context, a *Agent, tel *fakeTelephony) {
	t.Helper()
	// A heartbeat before the loop started asked it to evaluate; a loop
	// started now evaluates at once anyway.
	select {
	case <-a.lc.wake:
	default:
	}
	loopCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { a.lifecycleLoop(loopCtx); close(done) }()
	t.Cleanup(func() { stop(); <-done })
	// The loop alone calls telephony: its first evaluation lets it run.
	var first []string
	pollUntil(t, ctx, "the lifecycle loop's first telephony call", func() bool {
		first = append(first, tel.took()...)
		return len(first) > 0
	})
	if len(first) != 1 || first[0] != "start" {
		t.Fatalf("the lifecycle loop's first telephony calls: %v, want [start]", first)
	}
}

// deadlineOnFake advances the fake clock, with the lifecycle loop running
// and no heartbeat, to just before deadline (the state stays before) and
// just after it (the loop's own timer moves the state to after).
func (f *frontedRig) deadlineOnFake(t *testing.T, ctx context.Context, a *Agent, tel *fakeTelephony, deadline time.Time, before, after license.State, telAfter []string) {
	t.Helper()
	hits := f.hits.Load()
	for {
		d := f.step(t, ctx)
		left := deadline.Sub(a.lic.clock.Now())
		if left <= 0 {
			t.Fatalf("the clock is past the deadline %v", deadline)
		}
		if d >= left {
			// The loop's timer is set for the deadline itself, not for its
			// next routine evaluation a minute on.
			if d-left > time.Second {
				t.Fatalf("the lifecycle loop wakes %v after the deadline", d-left)
			}
			break
		}
		f.fire(t, ctx, d) // a routine evaluation before the deadline
		pollUntil(t, ctx, "routine evaluation", func() bool { return a.Status().State == string(before) })
	}
	f.fake.Advance(deadline.Sub(a.lic.clock.Now()) - time.Millisecond)
	if s := a.Status(); s.State != string(before) {
		t.Fatalf("a millisecond before the deadline: %s, want %s", s.State, before)
	}
	if got := tel.took(); len(got) != 0 {
		t.Fatalf("a millisecond before the deadline: telephony %v", got)
	}
	d, ok := f.fake.NextDue()
	if !ok || d > time.Second {
		t.Fatalf("a millisecond before the deadline the lifecycle loop waits %v (armed %v)", d, ok)
	}
	f.fake.Advance(d)
	pollUntil(t, ctx, "state after the deadline", func() bool { return a.Status().State == string(after) })
	pollUntil(t, ctx, "telephony after the deadline", func() bool {
		got := tel.took()
		if len(got) == 0 && len(telAfter) == 0 {
			return true
		}
		if len(got) > 0 && len(telAfter) > 0 && got[0] == telAfter[0] {
			return true
		}
		if len(got) > 0 {
			t.Fatalf("after the deadline: telephony %v, want %v", got, telAfter)
		}
		return false
	})
	if f.hits.Load() != hits {
		t.Errorf("the portal was reached %d times while only the lifecycle loop ran", f.hits.Load()-hits)
	}
}

// TestStopAtOnFakeClock: a licence driven to zero is stopping until its
// stop_at and stopped from it, by the lifecycle loop's own timer, with no
// heartbeat.
func TestStopAtOnFakeClock(t *testing.T) {
	f := newFrontedRig(t)
	f.setPortalClock(t, "2027-03-10T10:00:00Z")
	tel := &fakeTelephony{}
	a := f.activatedOnFake(t, license.Counts{license.UCPremium: 10, license.PBXBasic: 2}, tel)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	f.licences(t, license.Counts{license.UCPremium: 0, license.PBXBasic: 0})
	stopAt := time.Date(2027, 3, 15, 0, 0, 0, 0, time.UTC)
	// The last heartbeat is three minutes before stop_at in the portal's
	// time, which the licence clock adopts.
	f.advancePortal(t, stopAt.Add(-3*time.Minute).Sub(time.Date(2027, 3, 10, 10, 0, 0, 0, time.UTC)))
	if err := a.heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	s := a.Status()
	if s.State != "stopping" || s.Deadlines.StopAt == nil || !s.Deadlines.StopAt.Equal(stopAt) {
		t.Fatalf("all licences zero: %s %+v; want stopping until %v", s.State, s.Deadlines, stopAt)
	}
	tel.took()
	f.startLifecycle(t, ctx, a, tel)
	f.deadlineOnFake(t, ctx, a, tel, stopAt, license.Stopping, license.Stopped, []string{"stop"})
}

// TestLapseOnFakeClock: with the portal unreachable, the agent is offline
// until the offline grace ends and lapsed from it, by the lifecycle loop's
// own timer.
func TestLapseOnFakeClock(t *testing.T) {
	f := newFrontedRig(t)
	tel := &fakeTelephony{}
	a := f.activatedOnFake(t, license.Counts{license.UCPremium: 10}, tel)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f.set(portalUnavailable)
	graceEnd := a.lic.clock.Now().Add(license.DefaultOfflineGrace) // activated just now
	f.fake.Advance(license.DefaultOfflineGrace - 150*time.Second)
	tel.took()
	f.startLifecycle(t, ctx, a, tel)
	pollUntil(t, ctx, "offline", func() bool { return a.Status().State == string(license.Offline) })
	if s := a.Status(); s.Deadlines.OfflineGraceEnd == nil || s.Deadlines.OfflineGraceEnd.Sub(graceEnd).Abs() > time.Second {
		t.Fatalf("offline grace ends %v, want %v", s.Deadlines.OfflineGraceEnd, graceEnd)
	}
	graceEnd = *a.Status().Deadlines.OfflineGraceEnd
	f.deadlineOnFake(t, ctx, a, tel, graceEnd, license.Offline, license.Lapsed, nil)
}

// TestWaitLoopOnFakeClock: the long-poll backs off by the policy while the
// portal fails, honours Retry-After, pauses ten minutes on a portal without
// a long-poll (404), and an answer with something pending wakes a
// heartbeat.
func TestWaitLoopOnFakeClock(t *testing.T) {
	f := newFrontedRig(t)
	a := f.activatedOnFake(t, license.Counts{license.UCPremium: 10}, &fakeTelephony{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f.set(portalUnavailable)
	loopCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { a.waitLoop(loopCtx); close(done) }()
	defer func() { stop(); <-done }()

	d := f.step(t, ctx)
	for n := 1; ; n++ {
		if lo, hi := backoffBounds(n, 0); !within(d, lo, hi) {
			t.Fatalf("wait failure %d: retry in %v, want %v..%v", n, d, lo, hi)
		}
		if n == 6 {
			break
		}
		d = f.fire(t, ctx, d)
	}
	f.set(portalRetryAfter)
	d = f.fire(t, ctx, d)
	if lo, hi := backoffBounds(7, frontRetryAfter); d < frontRetryAfter || !within(d, lo, hi) {
		t.Fatalf("wait failure with Retry-After %v: retry in %v, want %v..%v", frontRetryAfter, d, lo, hi)
	}
	f.set(portalNoWait)
	d = f.fire(t, ctx, d)
	if d != waitUnsupported {
		t.Fatalf("a portal without a long-poll: next wait in %v, want %v", d, waitUnsupported)
	}
	if len(a.hb.wake) != 0 {
		t.Fatal("a failed wait woke a heartbeat")
	}

	// The portal is back with a new licence for the PBX: its answer says so
	// at once, and a heartbeat is woken to fetch it.
	f.set(portalUp)
	f.licences(t, license.Counts{license.UCPremium: 12})
	hits := f.hits.Load()
	f.fake.Advance(d - time.Millisecond)
	if f.hits.Load() != hits {
		t.Fatal("the long-poll came back before its ten-minute pause")
	}
	f.fake.Advance(time.Millisecond)
	select {
	case <-a.hb.wake:
	case <-ctx.Done():
		t.Fatal("a wait answered with a new licence woke no heartbeat")
	}

	// No heartbeat runs here, so the licence stays owed: the long-poll
	// must not sign wait after wait with no pause, but back off.
	for n := 1; n <= 3; n++ {
		d := f.step(t, ctx)
		hits := f.hits.Load()
		if hi := protocol.DefaultBackoff.Delay(n, 0, 0.999999); d > hi {
			t.Fatalf("owed answer %d: next wait in %v, above the backoff's %v", n, d, hi)
		}
		if f.hits.Load() != hits {
			t.Fatalf("owed answer %d: another wait went out with no time passing", n)
		}
		f.fake.Advance(d)
		select {
		case <-a.hb.wake:
		case <-ctx.Done():
			t.Fatalf("owed answer %d woke no heartbeat", n+1)
		}
	}
}

// TestReservationExpiryOnFakeClock: seats an admission reserved stay held
// until admission.reservation_ttl has passed on the machine's elapsed clock
// and are free from then, with the users loop counting meanwhile and no
// count showing the users.
func TestReservationExpiryOnFakeClock(t *testing.T) {
	f := newFrontedRig(t)
	src := &fakeUsers{counts: license.Counts{license.UCPremium: 8}}
	key := f.createPBX(t, "acme.example", license.Counts{license.UCPremium: 10})
	a, err := New(f.cfg, slog.New(slog.DiscardHandler), Options{Time: f.fake, Root: f.root, Users: src})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Activate(ctx, key); err != nil {
		t.Fatal(err)
	}
	loopCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { a.users.loop(loopCtx); close(done) }()
	defer func() { stop(); <-done }()
	f.step(t, ctx) // the loop has counted once and armed its ticker
	pollUntil(t, ctx, "first count", func() bool { return profileStatus(a, license.UCPremium).Used == 8 })

	mustAdmit(t, a.Admit(ctx, ask(license.UCPremium, 2)), 0)
	mustDeny(t, a.Admit(ctx, dry(license.UCPremium, 1)), "10 licensed, 8 used, 2 reserved")
	ttl := f.cfg.Admission.ReservationTTL
	f.fake.Advance(ttl - time.Millisecond)
	if ps := profileStatus(a, license.UCPremium); ps.Reserved != 2 {
		t.Fatalf("a millisecond before the reservation's TTL %v: %+v; want 2 reserved", ttl, ps)
	}
	mustDeny(t, a.Admit(ctx, dry(license.UCPremium, 1)), "2 reserved")
	f.fake.Advance(time.Millisecond)
	if ps := profileStatus(a, license.UCPremium); ps.Reserved != 0 || ps.Used != 8 {
		t.Fatalf("at the reservation's TTL %v: %+v; want 8 used, none reserved", ttl, ps)
	}
	mustAdmit(t, a.Admit(ctx, dry(license.UCPremium, 2)), 0)
	// The users loop counted again on the fake clock's ticks, and a count
	// that shows no new user released nothing early.
	pollUntil(t, ctx, "a count on the users loop's tick", func() bool {
		src.mu.Lock()
		defer src.mu.Unlock()
		return src.calls >= 2
	})
}
