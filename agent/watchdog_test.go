package agent

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// TestWatchdogWaitsOnTheLifecycleLoop runs the main loop and the heartbeat
// loop without the lifecycle loop: no WATCHDOG=1 comes, as when the
// lifecycle loop is stuck, until the lifecycle loop runs and answers.
func TestWatchdogWaitsOnTheLifecycleLoop(t *testing.T) {
	const watchdog = 600 * time.Millisecond
	ch := systemdSocket(t, watchdog)
	r := newRig(t)
	a, err := New(notifyConfig(t, r), slog.New(slog.DiscardHandler), Options{Root: r.root})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Go(func() { a.heartbeatLoop(ctx) })
	wg.Go(func() { a.mainLoop(ctx, notifier{log: a.log}, nil, nil) })
	await(t, ch, "READY=1")
	awaitSilence(t, ch, "WATCHDOG=1", 3*watchdog)
	wg.Go(func() { a.lifecycleLoop(ctx) })
	await(t, ch, "WATCHDOG=1")
}
