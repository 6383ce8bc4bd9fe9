package agent

import (
	"context"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// blockingTelephony is a fakeTelephony whose Stop blocks until the test
// releases it, and which counts calls running at once.
type blockingTelephony struct {
	fakeTelephony
	stopping chan struct{} // receives once per Stop that has begun
	release  chan struct{} // closed by the test to let Stop return

	mu      sync.Mutex
	running int
	overlap bool // two calls ran at once
}

func (b *blockingTelephony) enter() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.running++
	if b.running > 1 {
		b.overlap = true
	}
}

func (b *blockingTelephony) leave() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.running--
}

func (b *blockingTelephony) Stop(ctx context.Context, why string) error {
	b.enter()
	defer b.leave()
	b.stopping <- struct{}{}
	select {
	case <-b.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return b.fakeTelephony.Stop(ctx, why)
}

func (b *blockingTelephony) Start(ctx context.Context, why string) error {
	b.enter()
	defer b.leave()
	return b.fakeTelephony.Start(ctx, why)
}

// TestSlowTelephonyStopBlocksNothing: while a telephony stop hangs, the
// lifecycle loop answers the watchdog's probes, heartbeats and Status
// return, a new verdict asking for a start waits for the stop to end (no
// two calls at once), and is applied then.
func TestSlowTelephonyStopBlocksNothing(t *testing.T) {
	r := newRig(t)
	r.setPortalClock(t, "2027-03-10T10:00:00Z")
	tel := &blockingTelephony{stopping: make(chan struct{}, 4), release: make(chan struct{})}
	a := r.activated(t, tel)
	tel.took()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.lifecycleLoop(ctx); close(done) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("the lifecycle loop did not return when its context ended")
		}
	}()

	r.licences(t, license.Counts{license.UCPremium: 0, license.PBXBasic: 0})
	r.advancePortal(t, 6*day)
	if err := a.heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-tel.stopping:
	case <-time.After(10 * time.Second):
		t.Fatal("the licence stopped telephony but the lifecycle loop did not call Stop")
	}

	// The stop hangs. Everything else answers.
	for i := range 3 {
		ack := make(chan struct{}, 1)
		select {
		case a.lc.probe <- ack:
		case <-time.After(5 * time.Second):
			t.Fatalf("probe %d: the lifecycle loop does not take the watchdog's probe while telephony stops", i)
		}
		select {
		case <-ack:
		case <-time.After(5 * time.Second):
			t.Fatalf("probe %d: the lifecycle loop does not answer", i)
		}
		a.wakeLifecycle() // evaluations asked while the stop runs start no second call
	}
	if s := a.Status(); s.State != "stopped" {
		t.Fatalf("while telephony stops: state %s, want stopped", s.State)
	}
	r.licences(t, license.Counts{license.UCPremium: 1})
	hb := make(chan error, 1)
	go func() { hb <- a.heartbeat(ctx) }()
	select {
	case err := <-hb:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a heartbeat waits on the telephony stop")
	}
	if s := a.Status(); s.State != "active" {
		t.Fatalf("a licence added back while telephony stops: state %s, want active at once", s.State)
	}
	if got := tel.took(); got != nil {
		t.Fatalf("telephony %v while the stop hangs, want no call finished", got)
	}

	close(tel.release)
	deadline := time.Now().Add(10 * time.Second)
	var got []string
	for {
		got = append(got, tel.took()...)
		if reflect.DeepEqual(got, []string{"stop", "start"}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the stop returned: telephony %v, want [stop start]", got)
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-done:
			t.Fatal("the lifecycle loop ended")
		}
	}
	tel.mu.Lock()
	defer tel.mu.Unlock()
	if tel.overlap {
		t.Error("two telephony calls ran at once")
	}
}
