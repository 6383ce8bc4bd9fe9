package agent

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// The long-poll. Heartbeats stay at their interval (60 s); a command must
// arrive within seconds. So, while activated, the agent keeps one signed
// wait open at the portal, which answers as soon as it has something for
// the PBX (a command, a newer licence); the agent then runs a heartbeat,
// which fetches it. Every wait is signed afresh, like every request.

const (
	// waitFor is how long the portal is asked to hold a wait: long, since
	// every wait costs a signed exchange (idle CPU), and under the minute
	// that proxies commonly allow an idle request.
	waitFor = 50 * time.Second
	// waitIdle is how often an unactivated agent looks again.
	waitIdle = 5 * time.Second
	// waitUnsupported is the pause after a portal that has no long-poll
	// (404): heartbeats still carry commands, at their interval.
	waitUnsupported = 10 * time.Minute
)

// waitLoop keeps a wait open at the portal until ctx ends.
func (a *Agent) waitLoop(ctx context.Context) {
	var run waitRun
	for {
		delay, ok := a.waitOnce(ctx, &run)
		if !ok {
			return
		}
		if delay <= 0 {
			continue
		}
		t := a.clk.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		case <-a.hb.waitWake: // an activation: start waiting at once
			t.Stop()
		}
	}
}

// waitRun is what the long-poll counts between waits.
type waitRun struct {
	failures int // waits failed in a row
	// nudges counts the answers that asked for a heartbeat since the
	// last successful one. While they keep coming with no success between
	// them (heartbeats failing while waits pass, a licence refused) the
	// next wait backs off as after failures, rather than sign wait after
	// wait with no pause; a success starts the count again, so a busy
	// PBX receiving command after command never backs off.
	nudges int
	seen   time.Time // the last success when nudges was last counted
}

// waitOnce holds one wait and returns the pause before the next; ok is
// false when ctx ended.
func (a *Agent) waitOnce(ctx context.Context, run *waitRun) (time.Duration, bool) {
	failures := &run.failures
	if ctx.Err() != nil {
		return 0, false
	}
	doc, ok := a.lic.waitable()
	if !ok {
		return waitIdle, true
	}
	req := protocol.WaitRequest{PBXID: doc.PBX.ID, Revision: doc.Revision, Wait: license.Seconds(waitFor / time.Second)}
	wctx, cancel := context.WithTimeout(ctx, waitFor+portalTimeout)
	defer cancel()
	ans, err := a.lic.signedExchange(wctx, protocol.PathWait, protocol.TypeWait, doc.PBX.ID, func(r protocol.Request) any {
		req.Request = r
		return req
	})
	if ctx.Err() != nil {
		return 0, false
	}
	if err != nil {
		*failures++
		var re *refusedError
		var retryAfter time.Duration
		if errors.As(err, &re) {
			if re.status == http.StatusNotFound {
				a.log.Info("the portal offers no long-poll; commands arrive with heartbeats", "retry_in", waitUnsupported)
				return waitUnsupported, true
			}
			retryAfter = re.retryAfter
		}
		// The heartbeat's schedule: the same backoff, the same cap.
		delay := a.schedule().Next(*failures, retryAfter, rand.Float64())
		a.log.Debug("portal wait failed", "err", err, "failures", *failures, "retry_in", delay.Round(time.Millisecond))
		return delay, true
	}
	*failures = 0
	// The answer's signed time may have moved the licence clock on (the
	// portal's clock ahead): the lifecycle records and enforces what that
	// time means now, not at its next routine evaluation.
	a.wakeLifecycle()
	// The answer states the current licence: one that differs from the
	// licence held is owed, whatever the request claimed.
	if !ans.Pending && !a.lic.owes(ans) {
		run.nudges = 0
		return 0, true
	}
	a.wakeHeartbeat()
	if last := a.lic.lastSuccess(); !last.Equal(run.seen) {
		run.seen, run.nudges = last, 0
	}
	run.nudges++
	return a.schedule().Next(run.nudges, 0, rand.Float64()), true
}
