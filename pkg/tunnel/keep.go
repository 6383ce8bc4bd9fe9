package tunnel

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/clock"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// KeepConfig drives Keep.
type KeepConfig struct {
	Dial    DialConfig
	Target  string // the support sshd's loopback host:port
	Events  Events
	Clock   clock.Clock      // waits between attempts
	Backoff protocol.Backoff // zero: protocol.DefaultBackoff
	Rand    func() float64   // jitter in [0, 1); nil: math/rand/v2
	// AdoptTime takes the portal's signed time from a stale refusal, so
	// the next request is fresh; nil ignores it.
	AdoptTime func(time.Time)
	// Connected and Lost report each connection, for status and logs.
	Connected func()
	Lost      func(err error)
}

// Keep holds the tunnel open until ctx ends, which is how its owner ends
// it (the TTL, ssh.close, a stopped licence, the agent's exit): it dials,
// serves, and after a refusal or a lost connection dials again after the
// heartbeat's capped, jittered backoff. A stale refusal retries at once
// with the portal's time, once in a row. Keep returns ctx's error.
func Keep(ctx context.Context, cfg KeepConfig) error {
	if cfg.Backoff == (protocol.Backoff{}) {
		cfg.Backoff = protocol.DefaultBackoff
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	failures, staleRetried := 0, false
	for ctx.Err() == nil {
		s, err := Dial(ctx, cfg.Dial)
		if err == nil {
			failures, staleRetried = 0, false
			if cfg.Connected != nil {
				cfg.Connected()
			}
			err = s.Serve(ctx, cfg.Target, cfg.Events)
			if ctx.Err() != nil {
				break
			}
		}
		if cfg.Lost != nil {
			cfg.Lost(err)
		}
		var stale *StaleError
		if errors.As(err, &stale) && cfg.AdoptTime != nil && !staleRetried {
			cfg.AdoptTime(stale.PortalTime)
			staleRetried = true
			continue
		}
		failures++
		t := cfg.Clock.NewTimer(cfg.Backoff.Delay(failures, 0, cfg.Rand()))
		select {
		case <-ctx.Done():
		case <-t.C():
		}
		t.Stop()
	}
	return ctx.Err()
}
