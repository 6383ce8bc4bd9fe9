package agent

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
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
	first := a.schedule().First(rand.Float64())
	timer := a.clk.NewTimer(first)
	defer timer.Stop()
	a.setNext(first, 0)
	failures := 0
	for {
		var reply chan error
		select {
		case <-ctx.Done():
			return
		case <-timer.C():
		case reply = <-a.hb.refresh:
		case <-a.hb.wake:
		case ack := <-a.hb.probe:
			ack <- struct{}{}
			continue
		case <-a.hb.resched:
			failures = 0
			delay := a.schedule().Next(failures, 0, rand.Float64())
			timer.Reset(delay)
			a.setNext(delay, failures)
			continue
		}
		err := a.heartbeat(ctx)
		var delay time.Duration
		switch {
		case err == nil, errors.Is(err, ErrNotActivated):
			failures = 0
			delay = a.schedule().Next(failures, 0, rand.Float64())
		default:
			failures++
			var retryAfter time.Duration
			var re *refusedError
			if errors.As(err, &re) {
				retryAfter = re.retryAfter
			}
			// Capped only by an interval set in the configuration.
			delay = a.schedule().Next(failures, retryAfter, rand.Float64())
			a.log.Warn("heartbeat failed", "err", err, "failures", failures, "retry_in", delay.Round(time.Millisecond))
		}
		timer.Reset(delay)
		a.setNext(delay, failures)
		// Answered once the schedule is set, so a caller that reads the
		// status next sees the outcome's schedule.
		if reply != nil {
			reply <- err
		}
	}
}

// interval is the configured override, else the portal's, else the default.
func (a *Agent) interval() time.Duration {
	if o := a.hb.intervalOverride(); o > 0 {
		return o
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.st.Interval > 0 {
		return a.st.Interval.Duration()
	}
	return defaultInterval
}

// setNext records the schedule for the status: the next heartbeat, in
// from now, and the failures in a row that chose it, together so a reader
// sees one decision. It is kept on the elapsed clock the timer runs on, so
// the licence clock adopting the portal's time does not move it.
func (a *Agent) setNext(in time.Duration, failures int) {
	a.hb.set(a.clk.Elapsed()+in, failures)
}

// Refresh runs a heartbeat now, through the loop, and returns its outcome.
func (a *Agent) Refresh(ctx context.Context) error {
	// Count the users first, so the heartbeat reports them as they are
	// now; a failed count is logged and shown in the status, and the
	// heartbeat goes on with the last good one.
	a.countUsers(ctx) // users.go
	reply := make(chan error, 1)
	select {
	case a.hb.refresh <- reply:
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

// exchangeHeartbeat reports to the portal and applies its answer. A bad
// answer changes nothing but the error shown. heartbeat (lifecycle.go)
// wraps it with an evaluation of the lifecycle.
//
// An answer counts as a success only when it states, signed, that the
// licence this appliance holds is the PBX's current one. When it states
// another, the agent asks again for the current licence (Fetch) once; an
// answer that still disagrees is a failure, so whatever stands between the
// appliance and its portal (a proxy that holds the device key included)
// can delay a licence change only as long as the offline grace allows.
func (a *Agent) exchangeHeartbeat(ctx context.Context) error {
	a.exchangeMu.Lock()
	defer a.exchangeMu.Unlock()

	a.mu.Lock()
	doc, gone, device := a.doc, a.st.Gone, a.device
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
	matched, err := a.heartbeatOnce(ctx, false)
	if err == nil && !matched {
		a.log.Info("the portal states another licence than the one held; fetching it")
		matched, err = a.heartbeatOnce(ctx, true)
		if err == nil && !matched {
			err = errors.New("the portal's signed answer states another licence than the one this appliance holds, even after fetching it; not counted as a heartbeat")
		}
	}
	if err != nil {
		a.recordError(err)
	}
	return err
}

// heartbeatOnce sends one heartbeat and applies its answer. It reports
// whether the answer stated the licence held (after any licence it carried
// was taken) as the current one: only then is it a success.
func (a *Agent) heartbeatOnce(ctx context.Context, fetch bool) (matched bool, err error) {
	now := a.clock.Now()
	a.mu.Lock()
	doc, link, held := a.doc, a.st.Chain, protocol.HeldLicence(a.doc.Revision, a.st.License)
	state := a.verdictLocked(now).State
	a.mu.Unlock()

	req := protocol.HeartbeatRequest{PBXID: doc.PBX.ID, Revision: held.Revision, Digest: held.Digest, Fetch: fetch,
		Link: link.Digest, Seq: link.Seq, State: string(state), AgentVersion: a.version, Results: a.cmds.results()}
	if used, _, _ := a.usersSnapshot(); used != nil { // usage only once counted
		req.Usage, req.Overuse = used, admission.Overuse(doc, used)
	}
	began := time.Now() // an exchange's duration, for the metric: the machine's monotonic clock
	ans, err := a.signedExchange(ctx, protocol.PathHeartbeat, protocol.TypeHeartbeat, doc.PBX.ID, func(r protocol.Request) any {
		req.Request = r
		return req
	})
	if err == nil {
		err = ans.CheckEcho(link)
	}
	if err != nil {
		a.metrics.Heartbeat(heartbeatResult(err), time.Since(began))
		return false, err
	}
	a.metrics.Heartbeat(answerResult(ans.Status), time.Since(began))

	// Verify a new licence before taking the lock: verification is the
	// slow part, and the status endpoint must not wait on it.
	var next *license.Document
	var nextErr error
	if ans.Status == protocol.StatusOK && ans.License != "" && protocol.Digest(ans.License) != held.Digest {
		next, nextErr = a.acceptLicense(ans.License, doc.PBX.ID, false)
	}
	if ans.Status == protocol.StatusOK {
		// Journaled before this returns: a crash from here on neither
		// loses nor repeats them (commands.go).
		a.cmds.take(ans.Commands, ans.Acked, doc.PBX.ID)
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	if a.doc == nil || a.st.Gone != "" {
		// The lifecycle wiped the licence meanwhile (past its delete_at).
		return false, nil
	}
	now = a.clock.Now()
	st := a.st // changes are made on a copy, applied only once saved
	st.Chain = link.Next(ans.Compact)
	switch ans.Status {
	case protocol.StatusGone:
		st.Gone, st.GoneAt = goneReason(ans.Reason), now
		st.License, st.Answer = "", ""
		if err := a.commitLocked(st, nil); err != nil {
			return false, err
		}
		a.lastError = ""
		a.auditLocked(now, auditDeleted, map[string]any{"pbx": doc.PBX.ID, "name": doc.PBX.Name, "reason": st.Gone})
		a.log.Warn("the portal says this appliance no longer holds the PBX; licence wiped", "pbx", doc.PBX.ID, "reason", ans.Reason)
		return true, nil
	case protocol.StatusRefused:
		first := st.Refused == ""
		if first {
			st.Refused = ans.Compact
		}
		if err := a.commitLocked(st, a.doc); err != nil {
			return false, err
		}
		if first {
			a.refusedAt = ans.Time
			a.auditLocked(now, auditChainRefused, map[string]any{"pbx": doc.PBX.ID, "reason": ans.Reason, "seq": link.Seq})
		}
		return false, fmt.Errorf("the portal refuses this appliance: two copies of its state were heartbeating (%s); "+
			"the partner must re-bind the PBX, or resync it on the portal once only one copy is left", ans.Reason)
	case protocol.StatusOK:
	default:
		return false, fmt.Errorf("unexpected answer status %q", ans.Status)
	}

	st.Interval = ans.Interval
	newDoc := a.doc
	accepted := false
	switch {
	case nextErr != nil:
		a.log.Error("licence from the portal refused", "err", nextErr)
		a.auditLocked(now, auditLicenceRefused, map[string]any{"held": a.doc.Revision, "error": nextErr.Error()})
	case next != nil && next.Revision > a.doc.Revision || next != nil && next.Revision == a.doc.Revision && ans.Matches(protocol.HeldLicence(next.Revision, ans.License)):
		// A newer revision, or the same revision signed anew (a new portal
		// key) that the portal states as current.
		newDoc, st.License, accepted = next, ans.License, true
	}
	matched = ans.Matches(protocol.HeldLicence(newDoc.Revision, st.License))
	if matched {
		st.Answer, st.Refused = ans.Compact, ""
	}
	if err := a.commitLocked(st, newDoc); err != nil {
		if accepted {
			err = fmt.Errorf("licence revision %d from the portal not applied: %w", next.Revision, err)
			a.auditLocked(now, auditLicenceRefused, map[string]any{"held": doc.Revision, "offered": next.Revision, "error": err.Error()})
		}
		a.log.Error("the answer of the portal cannot be kept; nothing of it applies", "err", err)
		return false, err
	}
	a.mark.noteSeq(st.Chain.Seq)
	if matched {
		a.lastOK, a.refusedAt, a.restored = ans.Time, time.Time{}, false
		a.lastError = ""
	}
	if nextErr != nil {
		a.lastError = "licence from the portal refused: " + nextErr.Error()
	}
	if ans.Chain == protocol.ChainReanchored {
		a.auditLocked(now, auditChainReanchored, map[string]any{"pbx": doc.PBX.ID, "seq": link.Seq})
		a.log.Warn("the portal found this appliance's state from the past (rolled back, restored or reverted) and re-anchored its heartbeat chain; the partner is told",
			"seq", link.Seq)
	}
	if accepted {
		fields := licenceFields(next)
		fields["previous"] = doc.Revision
		a.log.Info("licence updated", "revision", next.Revision, "users", next.Counts.String())
		a.auditLocked(now, auditLicenceAccepted, fields)
	}
	if !matched {
		a.log.Warn("the portal's signed answer states another licence than the one held",
			"held_revision", newDoc.Revision, "current_revision", ans.Revision, "standing", ans.Standing)
	}
	return matched, nil
}

// commitLocked saves st (with the licence clock's mark) and only then
// makes it, and doc, the agent's: a state the folder does not hold is
// never acted on, so nothing is granted that a restart would forget.
// Callers hold a.mu.
func (a *Agent) commitLocked(st persisted, doc *license.Document) error {
	st.HighWater, st.ClockMark = a.clock.Now(), true // New made the mark record before any save
	if err := a.store.Save(st); err != nil {
		return fmt.Errorf("saving state: %w", err)
	}
	a.st, a.doc = st, doc
	return nil
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

// wakeHeartbeat asks the heartbeat loop to run now: to fetch what the
// portal has, or to report a result.
func (a *Agent) wakeHeartbeat() { a.hb.wakeNow() }

// hbSchedule is the heartbeat loop's side of the daemon: the channels
// that wake it or ask it to answer, and the schedule it last chose, which
// the status shows. It has a lock of its own, held only to read or write
// next, failures and override; never while taking another.
type hbSchedule struct {
	refresh  chan chan error    // Refresh asks the heartbeat loop to run now
	resched  chan struct{}      // an activation restarts the heartbeat schedule
	probe    chan chan struct{} // the watchdog (and a reload) asks the heartbeat loop to answer
	wake     chan struct{}      // asks the heartbeat loop to run now, without waiting for it
	waitWake chan struct{}      // an activation starts the long-poll at once (wait.go)

	mu       sync.Mutex
	next     time.Duration // the next heartbeat, on the clock's elapsed reading, for status
	failures int           // heartbeats failed in a row, for status
	override time.Duration // heartbeat.interval of the configuration; 0 is the portal's
}

func newHBSchedule(override time.Duration) *hbSchedule {
	return &hbSchedule{
		refresh:  make(chan chan error),
		resched:  make(chan struct{}, 1),
		probe:    make(chan chan struct{}),
		wake:     make(chan struct{}, 1),
		waitWake: make(chan struct{}, 1),
		override: override,
	}
}

// set records the schedule for the status: the next heartbeat, at
// elapsed reading at, and the failures in a row that chose it, together
// so a reader sees one decision.
func (s *hbSchedule) set(at time.Duration, failures int) {
	s.mu.Lock()
	s.next, s.failures = at, failures
	s.mu.Unlock()
}

// snapshot is the schedule last set, for the status.
func (s *hbSchedule) snapshot() (next time.Duration, failures int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.next, s.failures
}

// intervalOverride is heartbeat.interval as last configured.
func (s *hbSchedule) intervalOverride() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.override
}

// setOverride applies heartbeat.interval from a reload.
func (s *hbSchedule) setOverride(d time.Duration) {
	s.mu.Lock()
	s.override = d
	s.mu.Unlock()
}

// restart asks the heartbeat loop and the long-poll to start their
// schedules afresh (after an activation).
func (s *hbSchedule) restart() {
	select {
	case s.resched <- struct{}{}:
	default:
	}
	select {
	case s.waitWake <- struct{}{}:
	default:
	}
}

// wakeNow asks the heartbeat loop to run now.
func (s *hbSchedule) wakeNow() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}
