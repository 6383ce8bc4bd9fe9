package tunnel

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/clock/clocktest"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// keep runs Keep on a fake clock with a fixed 1 s backoff; it returns the
// clock and the channel Keep's result arrives on.
func (r *rig) keep(ctx context.Context, target string, adopt func(time.Time)) (*clocktest.Fake, <-chan error) {
	clk := clocktest.NewFake(portalNow, 0)
	done := make(chan error, 1)
	go func() {
		done <- Keep(ctx, KeepConfig{Dial: r.cfg, Target: target, Clock: clk,
			Backoff: protocol.Backoff{Base: time.Second, Cap: time.Second}, Rand: func() float64 { return 0.999 },
			AdoptTime: adopt})
	}()
	return clk, done
}

func (r *rig) nextSession(t *testing.T) *PortalSession {
	t.Helper()
	select {
	case p := <-r.sessions:
		t.Cleanup(func() { p.Close() })
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("the portal saw no tunnel")
	}
	return nil
}

func TestKeepRedialsAfterTheConnectionDrops(t *testing.T) {
	r := newRig(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	clk, done := r.keep(ctx, echoServer(t), nil)
	first := r.nextSession(t)
	first.Close() // the portal restarts, or the network drops
	if err := clk.WaitArmed(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if n := r.attempts.Load(); n != 1 {
		t.Fatalf("%d dials before the backoff ran out, want 1", n)
	}
	clk.Advance(time.Second)
	second := r.nextSession(t)
	c, err := second.Open(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, "after a redial")

	cancel() // ssh.close, the TTL or the agent's exit
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Keep returned %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Keep outlived its context")
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("a session survived the end of Keep")
	}
}

func TestKeepBacksOffAfterARefusal(t *testing.T) {
	r := newRig(t)
	intruder, err := protocol.NewDeviceKey()
	if err != nil {
		t.Fatal(err)
	}
	r.cfg.Signer = intruder // the portal refuses every attempt
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	clk, _ := r.keep(ctx, echoServer(t), nil)
	for want := int32(1); want <= 3; want++ {
		if err := clk.WaitArmed(ctx, 1); err != nil {
			t.Fatal(err)
		}
		if n := r.attempts.Load(); n != want {
			t.Fatalf("%d dials, want %d: a refusal must wait out its backoff", n, want)
		}
		clk.Advance(time.Second)
	}
}

func TestKeepAdoptsThePortalTimeOfAStaleRefusal(t *testing.T) {
	r := newRig(t)
	later := portalNow.Add(10 * time.Minute)
	r.answer = func(req *protocol.TunnelRequest) protocol.Answer {
		if req.Time.Before(later) {
			return protocol.Answer{Status: protocol.StatusStale, Time: later, Nonce: req.Nonce, PBXID: req.PBXID}
		}
		return protocol.Answer{Status: protocol.StatusOK, Time: later, Nonce: req.Nonce, PBXID: req.PBXID}
	}
	var adopted atomic.Value
	r.cfg.Now = func() time.Time {
		if t, ok := adopted.Load().(time.Time); ok {
			return t
		}
		return portalNow
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	r.keep(ctx, echoServer(t), func(t time.Time) { adopted.Store(t) })
	// The retry comes at once, without the clock moving.
	r.nextSession(t) // the stale one, accepted by the portal and dropped by the agent
	p := r.nextSession(t)
	c, err := p.Open(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, "fresh")
	if n := r.attempts.Load(); n != 2 {
		t.Errorf("%d dials, want 2", n)
	}
}
