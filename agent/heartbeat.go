package agent

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/pbx-agent/pbx-agent/agent/metrics"
	"github.com/pbx-agent/pbx-agent/pkg/admission"
	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// defaultInterval is the heartbeat interval until the portal sets one.
const defaultInterval = 60 * time.Second

// jitterFraction spreads each interval by ±10 %, so PBXs that booted
// together drift apart.
const jitterFraction = 0.1

// heartbeatLoop runs heartbeats on schedule, on Refresh and after an
// activation, until ctx ends. It is the only caller of heartbeat, so one
// runs at a time.
func (a *Agent) heartbeatLoop(ctx context.Context) {
	// The first heartbeat after boot waits a random part of a tenth of the
	// interval: a fleet coming back from a power cut does not arrive at once.
	first := time.Duration(rand.Float64() * float64(a.interval()) / 10)
	timer := time.NewTimer(first)
	defer timer.Stop()
	a.setNext(time.Now().Add(first), 0)
	failures := 0
	for {
		var reply chan error
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case reply = <-a.refreshCh:
		case <-a.hbWake:
		case ack := <-a.probe:
			ack <- struct{}{}
			continue
		case <-a.resched:
			failures = 0
			delay := protocol.Jitter(a.interval(), jitterFraction, rand.Float64())
			timer.Reset(delay)
			a.setNext(time.Now().Add(delay), failures)
			continue
		}
		err := a.heartbeat(ctx)
		var delay time.Duration
		switch {
		case err == nil, errors.Is(err, ErrNotActivated):
			failures = 0
			delay = protocol.Jitter(a.interval(), jitterFraction, rand.Float64())
		default:
			failures++
			var retryAfter time.Duration
			var re *refusedError
			if errors.As(err, &re) {
				retryAfter = re.retryAfter
			}
			delay = protocol.DefaultBackoff.Delay(failures, retryAfter, rand.Float64())
			// A heartbeat interval set short by configuration (development,
			// tests) caps the backoff too; the portal's Retry-After still
			// holds. In production the policy alone decides: capped at the
			// interval, a fleet would retry in lockstep once a minute.
			if a.cfg.Heartbeat.Interval > 0 {
				delay = min(delay, max(a.cfg.Heartbeat.Interval, retryAfter, time.Second))
			}
			a.log.Warn("heartbeat failed", "err", err, "failures", failures, "retry_in", delay.Round(time.Millisecond))
		}
		timer.Reset(delay)
		a.setNext(time.Now().Add(delay), failures)
		// Answered once the schedule is set, so a caller that reads the
		// status next sees the outcome's schedule.
		if reply != nil {
			reply <- err
		}
	}
}

// interval is the configured override, else the portal's, else the default.
func (a *Agent) interval() time.Duration {
	if a.cfg.Heartbeat.Interval > 0 {
		return a.cfg.Heartbeat.Interval
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.st.Interval > 0 {
		return a.st.Interval.Duration()
	}
	return defaultInterval
}

// setNext records the schedule for the status: the next heartbeat and the
// failures in a row that chose it, together so a reader sees one decision.
func (a *Agent) setNext(t time.Time, failures int) {
	a.mu.Lock()
	a.next = t
	a.failures = failures
	a.mu.Unlock()
}

// Refresh runs a heartbeat now, through the loop, and returns its outcome.
func (a *Agent) Refresh(ctx context.Context) error {
	// Count the users first, so the heartbeat reports them as they are
	// now; a failed count is logged and shown in the status, and the
	// heartbeat goes on with the last good one.
	a.countUsers(ctx) // users.go
	reply := make(chan error, 1)
	select {
	case a.refreshCh <- reply:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// exchangeHeartbeat reports to the portal once and applies its answer. A
// bad answer changes nothing but the error shown. heartbeat (lifecycle.go)
// wraps it with an evaluation of the lifecycle.
func (a *Agent) exchangeHeartbeat(ctx context.Context) error {
	a.exchangeMu.Lock()
	defer a.exchangeMu.Unlock()

	now := a.clock.Now()
	a.mu.Lock()
	doc, gone, device := a.doc, a.st.Gone, a.device
	state := a.verdictLocked(now).State
	a.mu.Unlock()
	if doc == nil || gone != "" || device == nil {
		return ErrNotActivated
	}
	if a.setupErr != nil {
		a.metrics.Heartbeat(metrics.HeartbeatUnreachable, 0) // no exchange: not timed
		return a.setupErr
	}

	ctx, cancel := context.WithTimeout(ctx, portalTimeout)
	defer cancel()
	req := protocol.HeartbeatRequest{PBXID: doc.PBX.ID, Revision: doc.Revision, State: string(state), AgentVersion: a.version,
		Results: a.results()}
	if used, _, _ := a.usersSnapshot(); used != nil { // usage only once counted
		req.Usage, req.Overuse = used, admission.Overuse(doc, used)
	}
	began := time.Now()
	ans, err := a.signedExchange(ctx, protocol.PathHeartbeat, protocol.TypeHeartbeat, doc.PBX.ID, func(r protocol.Request) any {
		req.Request = r
		return req
	})
	if err != nil {
		a.metrics.Heartbeat(heartbeatResult(err), time.Since(began))
		a.recordError(err)
		return err
	}
	a.metrics.Heartbeat(answerResult(ans.Status), time.Since(began))

	// Verify a new licence before taking the lock: verification is the
	// slow part, and the status endpoint must not wait on it.
	var next *license.Document
	var nextErr error
	if ans.Status == protocol.StatusOK && ans.License != "" {
		next, nextErr = a.acceptLicense(ans.License, doc.PBX.ID, false)
	}
	if ans.Status == protocol.StatusOK {
		// Journaled before this returns: a crash from here on neither
		// loses nor repeats them (commands.go).
		a.takeCommands(ans.Commands, ans.Acked, doc.PBX.ID)
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	if a.doc == nil || a.st.Gone != "" {
		// The lifecycle wiped the licence meanwhile (past its delete_at).
		return nil
	}
	switch ans.Status {
	case protocol.StatusGone:
		a.st.Gone = goneReason(ans.Reason)
		a.st.GoneAt = a.clock.Now()
		a.st.License, a.doc = "", nil
		a.lastError = ""
		a.auditLocked(a.clock.Now(), auditDeleted, map[string]any{"pbx": doc.PBX.ID, "name": doc.PBX.Name, "reason": a.st.Gone})
		a.log.Warn("the portal says this appliance no longer holds the PBX; licence wiped", "pbx", doc.PBX.ID, "reason", ans.Reason)
		return a.saveLocked()
	case protocol.StatusOK:
		a.st.LastSuccess = a.clock.Now()
		a.st.Interval = ans.Interval
		a.lastError = ""
		switch {
		case nextErr != nil:
			a.lastError = "licence from the portal refused: " + nextErr.Error()
			a.log.Error("licence from the portal refused", "err", nextErr)
			a.auditLocked(a.clock.Now(), auditLicenceRefused, map[string]any{"held": a.doc.Revision, "error": nextErr.Error()})
		case next != nil && next.Revision > a.doc.Revision:
			fields := licenceFields(next)
			fields["previous"] = a.doc.Revision
			a.doc, a.st.License = next, ans.License
			// Saved before it is audited: the log never records a
			// revision that a crash then loses.
			if err := a.saveLocked(); err != nil {
				return err
			}
			a.log.Info("licence updated", "revision", next.Revision, "users", next.Counts.String())
			a.auditLocked(a.clock.Now(), auditLicenceAccepted, fields)
			return nil
		}
		return a.saveLocked()
	}
	return fmt.Errorf("unexpected answer status %q", ans.Status)
}

func goneReason(reason string) string {
	if reason == protocol.GoneRebound {
		return "re-bound to another appliance"
	}
	return "deleted on the portal"
}

func (a *Agent) recordError(err error) {
	a.mu.Lock()
	a.lastError = err.Error()
	a.mu.Unlock()
}

// persistClock saves the licence clock's mark, so a restart cannot go back
// further than this.
func (a *Agent) persistClock() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.saveLocked()
}
