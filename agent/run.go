package agent

import (
	"context"
	"errors"
	"fmt"
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
// unix socket (handed over by systemd, or bound here) and the remote
// metrics listener must be available, or Run stops what it started and
// returns the error. The TCP listener (listen.http) need not be: while its
// port is held by another process the daemon runs, enforces and answers on
// the socket, reports the failure and keeps trying to bind it.
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
	lns, err := a.openListeners(ctx, api) // listen.go
	if err != nil {
		return err
	}

	var wg sync.WaitGroup
	errc := make(chan error, 3)
	serve := func(kind localapi.Kind, run func() error) {
		defer wg.Done()
		if err := run(); err != nil && !errors.Is(err, context.Canceled) {
			errc <- fmt.Errorf("local API (%s): %w", kind, err)
			cancel()
		}
	}
	wg.Add(1)
	if lns.unixSystemd {
		go serve(localapi.Unix, func() error { return api.ServeSystemd(ctx, lns.unix, localapi.Unix) })
	} else {
		go serve(localapi.Unix, func() error { return api.Serve(ctx, lns.unix, localapi.Unix) })
	}
	httpAddr := a.cfg.Listen.HTTP
	switch {
	case lns.http != nil:
		httpAddr = lns.http.Addr().String()
		wg.Add(1)
		go serve(localapi.TCP, func() error { return api.ServeSystemd(ctx, lns.http, localapi.TCP) })
	case httpAddr != "":
		wg.Add(1)
		go serve(localapi.TCP, func() error { return api.ServeTCPAddr(ctx, httpAddr) })
	}
	if metricsLn := lns.metrics; metricsLn != nil {
		wg.Go(func() {
			if err := a.metrics.Serve(ctx, metricsLn, a.cfg.Metrics.WebConfigFile); err != nil {
				errc <- err
				cancel()
			}
		})
	}
	n := notifier{log: a.log}
	// A reload restarts these two with new settings (reload.go).
	lp := &loops{heartbeat: newLoop(ctx, a.heartbeatLoop), users: newLoop(ctx, a.users.loop)}
	wg.Go(func() { a.lifecycleLoop(ctx) }) // the licence lifecycle: lifecycle.go
	wg.Go(func() { a.cmds.loop(ctx) })     // portal commands: commands.go
	wg.Go(func() { a.ssh.loop(ctx) })      // support SSH ending by itself: ssh.go
	wg.Go(func() { a.waitLoop(ctx) })      // the portal's long-poll: wait.go
	wg.Go(func() { a.clockLoop(ctx) })
	wg.Go(func() { a.clockMarkLoop(ctx) }) // the clock's mark record: clockmark.go
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	// Ready once the state is loaded (New) and the socket is bound, whatever
	// became of listen.http: mainLoop says so first.
	ready.Store(true)
	attrs := []any{"socket", lns.unix.Addr().String(), "state", a.State()}
	if httpAddr != "" {
		attrs = append(attrs, "http", httpAddr)
	}
	if lns.unixSystemd || lns.http != nil {
		attrs = append(attrs, "from_systemd", systemdNames(lns))
	}
	if lns.metrics != nil {
		attrs = append(attrs, "metrics", lns.metrics.Addr().String())
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
	t := a.clk.NewTicker(clockPersistInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			if err := a.persistClock(); err != nil {
				a.log.Error("saving the licence clock", "err", err)
			}
		}
	}
}
