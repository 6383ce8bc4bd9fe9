package agent

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/audit"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// Telephony is the seam to the PBX's telephony: the agent calls Stop on
// entering a state that stops it (stopped, deleted) and Start on leaving
// one, and again after a failed call, at every evaluation, until one
// succeeds. At start-up it calls the one its state asks for, so a stop
// survives a restart. Calls may block; ctx ends with the daemon.
//
// pkg/actions has the real ones: pbx-licence-stopped.target and
// pbx-licence-active.target over D-Bus under systemd, or configured
// commands; cmd/pbx-agent chooses. The default only logs.
type Telephony interface {
	Stop(ctx context.Context, why string) error
	Start(ctx context.Context, why string) error
}

// telephonyChecker is a Telephony that can tell whether telephony is still
// held down: someone may start a telephony unit by hand while the licence
// stops it (which, under systemd, stops pbx-licence-stopped.target).
type telephonyChecker interface {
	Stopped(ctx context.Context) (bool, error)
}

// logTelephony is the default Telephony: it logs what it would do.
type logTelephony struct {
	log *slog.Logger

	mu      sync.Mutex
	stopped bool
}

func (l *logTelephony) Stop(_ context.Context, why string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
	l.log.Warn("the licence stops telephony, but no way to stop it is set up (not run by systemd, no enforcement.stop_command): nothing was stopped", "why", why)
	return nil
}

func (l *logTelephony) Start(_ context.Context, why string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	level := slog.LevelDebug
	if l.stopped {
		level = slog.LevelInfo
	}
	l.stopped = false
	l.log.Log(context.Background(), level, "the licence lets telephony run", "why", why)
	return nil
}

// Audit event kinds.
const (
	auditActivated       = "activated"        // a PBX key activated: pbx, name, revision, profiles
	auditLicenceAccepted = "licence.accepted" // a licence revision taken from the portal
	auditLicenceRefused  = "licence.refused"  // a licence from the portal refused: error
	auditStateChanged    = "state.changed"    // from, to, why
	auditDeleted         = "deleted"          // the licence wiped: pbx, reason
	auditChainReanchored = "chain.reanchored" // the portal found a state from the past: pbx, seq
	auditChainRefused    = "chain.refused"    // the portal refuses this appliance as a copy: pbx, reason, seq
	auditKeysRevoked     = "keys.revoked"     // portal keys revoked by a licence: kids, revision
	auditStateRestored   = "state.restored"   // the state file is older than the clock record: revision, held_revision, seq, held_seq
	auditTelephony       = "telephony"        // action stop|start, state, error
)

// Evaluation timing: the lifecycle is evaluated at least every
// evaluateEvery, and at the next deadline when it comes sooner.
const (
	evaluateEvery  = time.Minute
	deadlineMargin = 10 * time.Millisecond // past the deadline, so the evaluation sees it passed
)

// lifecycle is what the agent keeps for its lifecycle besides the
// persisted state: the audit log, the telephony seam and what it last did.
type lifecycle struct {
	log       *slog.Logger
	audit     *audit.Log
	telephony Telephony
	wake      chan struct{}      // asks lifecycleLoop to evaluate and re-arm its timer
	probe     chan chan struct{} // the watchdog asks lifecycleLoop to answer

	mu      sync.Mutex // held across a telephony call: never two at once
	stopped *bool      // the telephony state last applied; nil before the first
}

// initLifecycle opens the audit log in the state folder and sets the
// telephony seam.
func (a *Agent) initLifecycle(opts Options) error {
	return a.lc.init(a.cfg.StateDir, opts.Telephony, a.log)
}

// init opens the audit log in stateDir and sets the telephony seam; nil
// telephony only logs.
func (lc *lifecycle) init(stateDir string, telephony Telephony, log *slog.Logger) error {
	al, err := audit.Open(stateDir, audit.Options{})
	if err != nil {
		return err
	}
	lc.log, lc.audit, lc.telephony = log, al, telephony
	if lc.telephony == nil {
		lc.telephony = &logTelephony{log: log.With("component", "telephony")}
	}
	lc.wake = make(chan struct{}, 1)
	lc.probe = make(chan chan struct{})
	return nil
}

// lifecycleLoop evaluates the lifecycle at start, at least every minute,
// at the next deadline, and when woken, until ctx ends. It alone calls the
// telephony seam, and off its select: a telephony unit that takes minutes
// to stop leaves the loop answering wake-ups, deadlines and the watchdog.
// A verdict reached while a call runs is applied when it ends, so calls
// never overlap and the last verdict wins.
func (a *Agent) lifecycleLoop(ctx context.Context) {
	timer := a.clk.NewTimer(0)
	defer timer.Stop()
	var (
		running chan struct{} // closed when the telephony call in flight ends, else nil
		pending bool          // an evaluation came while a call ran
	)
	defer func() {
		if running != nil {
			<-running // the call's ctx has ended too
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C():
		case <-a.lc.wake:
		case ack := <-a.lc.probe:
			ack <- struct{}{}
			continue
		case <-running:
			running = nil
			if !pending {
				continue
			}
		}
		v := a.record()
		timer.Reset(a.untilNextEvaluation(v))
		if v.State.StopsTelephony() {
			a.ssh.nudge() // a stopped licence ends a support tunnel (ssh.go)
		}
		if running != nil {
			pending = true
			continue
		}
		pending = false
		done := make(chan struct{})
		running = done
		go func() {
			defer close(done)
			a.applyTelephony(ctx, v)
		}()
	}
}

// untilNextEvaluation is how long lifecycleLoop waits after verdict v. The
// timer runs on the clock's elapsed time, as the licence clock does
// between portal answers.
func (a *Agent) untilNextEvaluation(v license.Verdict) time.Duration {
	d := evaluateEvery
	if !v.Next.IsZero() {
		d = min(d, v.Next.Sub(a.lic.now())+deadlineMargin)
	}
	return max(d, deadlineMargin)
}

// wakeLifecycle has lifecycleLoop evaluate again and re-arm its timer for
// deadlines a new licence may have brought.
func (a *Agent) wakeLifecycle() {
	select {
	case a.lc.wake <- struct{}{}:
	default:
	}
}

// heartbeat reports to the portal once, records the verdict it leads to
// and has lifecycleLoop act on it.
func (a *Agent) heartbeat(ctx context.Context) error {
	err := a.exchangeHeartbeat(ctx)
	a.record()
	a.wakeLifecycle()
	a.checkOveruse() // a new licence may change it (users.go)
	return err
}

// record computes the lifecycle state now and keeps it: a change is
// recorded in the audit log and persisted; a licence past its delete_at is
// wiped, once the licence clock is the portal's own. It is quick (no
// telephony), so a heartbeat or an activation calls it in line and leaves
// telephony to lifecycleLoop.
//
// A licence past delete_at on a clock the local machine set (the portal not
// reached) is deleted in state, telephony stays stopped, but the signed
// licence stays on disk until the portal confirms: a local clock that ran
// ahead must not destroy a licence for good.
func (a *Agent) record() license.Verdict { return a.lic.record() }

// applyTelephony has the lifecycle apply verdict v, its events ordered
// with the licence's state changes.
func (a *Agent) applyTelephony(ctx context.Context, v license.Verdict) {
	a.lc.apply(ctx, v, a.lic.audit)
}

// apply calls the telephony seam when verdict v asks for other than what
// was last applied, or when telephony was started by hand while v stops
// it. A failed call is retried at the next evaluation. It holds lc.mu
// across the call, so calls never overlap; record takes its audit event.
func (lc *lifecycle) apply(ctx context.Context, v license.Verdict, record func(kind string, fields map[string]any)) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	stop := v.State.StopsTelephony()
	if lc.stopped != nil && *lc.stopped == stop {
		chk, ok := lc.telephony.(telephonyChecker)
		if !stop || !ok {
			return
		}
		if held, err := chk.Stopped(ctx); err != nil || held {
			return
		}
		lc.log.Warn("telephony was started again while the licence stops it: stopping it again", "state", v.State)
	}
	first := lc.stopped == nil
	action, call := "start", lc.telephony.Start
	if stop {
		action, call = "stop", lc.telephony.Stop
	}
	err := call(ctx, v.Summary)
	fields := map[string]any{"action": action, "state": string(v.State)}
	if err != nil {
		fields["error"] = err.Error()
		lc.log.Error("telephony "+action+" failed; retried at the next evaluation", "state", v.State, "err", err)
	} else {
		lc.stopped = &stop
	}
	// Letting telephony run at start-up is the normal case, not an event.
	if !first || stop || err != nil {
		record(auditTelephony, fields)
	}
}

// auditEvent appends an event to the audit log (lifecycle.auditEvent).
func (a *Agent) auditEvent(now time.Time, kind string, fields map[string]any) {
	a.lc.auditEvent(now, kind, fields)
}

// auditEvent appends an event to the audit log; a failed write is logged:
// the audit log never stops the agent. The log has a lock of its own.
func (lc *lifecycle) auditEvent(now time.Time, kind string, fields map[string]any) {
	if lc.audit == nil {
		return
	}
	if err := lc.audit.Append(audit.Event{Time: now, Kind: kind, Fields: fields}); err != nil {
		lc.log.Error("writing the audit log", "kind", kind, "err", err)
	}
}

// licenceFields describes a licence revision for the audit log.
func licenceFields(d *license.Document) map[string]any {
	f := map[string]any{"revision": d.Revision, "profiles": d.Counts.String(), "term": string(d.Term)}
	if !d.TermEnd.IsZero() {
		f["term_end"] = d.TermEnd.UTC().Format(time.RFC3339)
	}
	if d.ZeroSince != nil {
		f["zero_since"] = d.ZeroSince.UTC().Format(time.RFC3339)
		f["stop_at"] = d.StopAt.UTC().Format(time.RFC3339)
		f["delete_at"] = d.DeleteAt.UTC().Format(time.RFC3339)
	}
	if d.Suspended {
		f["suspended_since"] = d.SuspendedAt().Format(time.RFC3339)
	}
	return f
}

// Audit returns the audit log, oldest first; with limit > 0, only the
// last limit events.
// It reads the files as they are, so it never waits on an evaluation.
func (a *Agent) Audit(_ context.Context, limit int) ([]audit.Event, error) {
	evs, err := audit.Read(a.cfg.StateDir)
	if err != nil {
		return nil, err
	}
	if limit > 0 && len(evs) > limit {
		evs = evs[len(evs)-limit:]
	}
	return evs, nil
}
