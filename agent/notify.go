package agent

import (
	"context"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// notifier tells systemd how the daemon is doing. Outside systemd every
// call is a no-op: SdNotify reports (false, nil) when NOTIFY_SOCKET is unset.
type notifier struct {
	log interface{ Warn(string, ...any) }
}

func (n notifier) send(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		n.log.Warn("sd_notify failed", "state", state, "err", err)
	}
}

// watchdogLoop pings systemd's watchdog while the heartbeat loop answers
// its probes: a loop stuck past WatchdogSec lets systemd restart the
// daemon. It returns at once when the unit has no watchdog.
func (a *Agent) watchdogLoop(ctx context.Context, n notifier) {
	every, err := daemon.SdWatchdogEnabled(false)
	if err != nil || every <= 0 {
		return
	}
	// Probing at a third of the period gives a stuck loop two chances to
	// recover before systemd acts.
	period := every / 3
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if a.probeLoop(ctx, period) {
			n.send(daemon.SdNotifyWatchdog)
		} else {
			a.log.Warn("heartbeat loop did not answer the watchdog probe", "within", period)
		}
	}
}

// probeLoop asks the heartbeat loop to answer, and waits at most within.
func (a *Agent) probeLoop(ctx context.Context, within time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	ack := make(chan struct{}, 1)
	select {
	case a.probe <- ack:
	case <-ctx.Done():
		return false
	}
	select {
	case <-ack:
		return true
	case <-ctx.Done():
		return false
	}
}
