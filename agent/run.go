package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/pbx-agent/pbx-agent/agent/localapi"
)

// clockPersistInterval is how often the licence clock's mark is saved: a
// power cut loses at most this much of it.
const clockPersistInterval = time.Minute

// Run serves the local API and runs the heartbeat loop until ctx ends. The
// start is all or nothing: if a listener cannot be bound, what was started
// is stopped and the error returned.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var ready atomic.Bool
	api, err := localapi.New(localapi.Config{
		Backend: a, Logger: a.log.With("component", "localapi"),
		WriteGroups: a.cfg.API.WriteGroups, Ready: ready.Load,
		Metrics: a.metrics.Handler(),
	})
	if err != nil {
		return err
	}
	unixLn, err := api.ListenUnix(ctx, a.cfg.Listen.Socket, localapi.DefaultReadGroup, 0o660)
	if err != nil {
		return err
	}
	var tcpLn net.Listener
	if a.cfg.Listen.HTTP != "" {
		if tcpLn, err = net.Listen("tcp", a.cfg.Listen.HTTP); err != nil {
			unixLn.Close()
			return fmt.Errorf("config listen.http: %w", err)
		}
	}
	metricsLn, err := a.listenMetrics() // metrics.listen: metrics.go
	if err != nil {
		unixLn.Close()
		if tcpLn != nil {
			tcpLn.Close()
		}
		return err
	}

	var wg sync.WaitGroup
	errc := make(chan error, 3)
	serve := func(ln net.Listener, kind localapi.Kind) {
		defer wg.Done()
		if err := api.Serve(ctx, ln, kind); err != nil && !errors.Is(err, context.Canceled) {
			errc <- fmt.Errorf("local API (%s): %w", kind, err)
			cancel()
		}
	}
	wg.Add(1)
	go serve(unixLn, localapi.Unix)
	if tcpLn != nil {
		wg.Add(1)
		go serve(tcpLn, localapi.TCP)
	}
	if metricsLn != nil {
		wg.Go(func() {
			if err := a.metrics.Serve(ctx, metricsLn, a.cfg.Metrics.WebConfigFile); err != nil {
				errc <- err
				cancel()
			}
		})
	}
	n := notifier{log: a.log}
	// A reload restarts these two with new settings (reload.go).
	lp := &loops{heartbeat: newLoop(ctx, a.heartbeatLoop), users: newLoop(ctx, a.usersLoop)}
	wg.Go(func() { a.lifecycleLoop(ctx) }) // the licence lifecycle: lifecycle.go
	wg.Go(func() { a.commandLoop(ctx) })   // portal commands: commands.go
	wg.Go(func() { a.waitLoop(ctx) })      // the portal's long-poll: wait.go
	wg.Go(func() { a.clockLoop(ctx) })
	wg.Go(func() { a.clockMarkLoop(ctx) }) // the clock's mark record: clockmark.go
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	// Ready once the state is loaded (New) and the listeners are bound:
	// mainLoop says so first.
	ready.Store(true)
	attrs := []any{"socket", a.cfg.Listen.Socket, "state", a.State()}
	if tcpLn != nil {
		attrs = append(attrs, "http", tcpLn.Addr().String())
	}
	if metricsLn != nil {
		attrs = append(attrs, "metrics", metricsLn.Addr().String())
	}
	a.log.Info("pbx-agent running", attrs...)

	a.mainLoop(ctx, n, hup, lp) // notify.go: until ctx ends
	n.send(daemon.SdNotifyStopping)
	ready.Store(false)
	lp.stop()
	wg.Wait()
	if err := a.persistClock(); err != nil {
		a.log.Error("saving the licence clock at shutdown", "err", err)
	}
	a.log.Info("pbx-agent stopped")
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// clockLoop saves the licence clock's mark now and then, so a restart with
// the local clock set back starts from it.
func (a *Agent) clockLoop(ctx context.Context) {
	t := time.NewTicker(clockPersistInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := a.persistClock(); err != nil {
				a.log.Error("saving the licence clock", "err", err)
			}
		}
	}
}
