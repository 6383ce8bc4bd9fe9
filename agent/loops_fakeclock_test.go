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
	for _, c := range []chan struct{}{a.resched, a.waitWake} {
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
			want := a.clock.Now().Add(delay)
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
