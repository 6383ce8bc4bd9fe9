package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/pbx-agent/pbx-agent/agent/metrics"
	"github.com/pbx-agent/pbx-agent/pkg/admission"
	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/clock"
	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/proc"
	"github.com/pbx-agent/pbx-agent/pkg/users"
)

// licenceView is what the users component reads of the licence: licence
// time, the document held and the lifecycle's verdict.
type licenceView interface {
	Now() time.Time
	// Mark is Now with the reading of the machine's clock (seatsEnv's
	// elapsed) it was taken at: an admission takes both from one reading.
	Mark() license.Mark
	Document() *license.Document
	Verdict(now time.Time) (*license.Document, license.Verdict)
	Decreases() license.Decreases // the decreases seen, for the over-use reason
}

// auditSink records an event in the audit log; it has a lock of its own.
type auditSink interface {
	Record(now time.Time, kind string, fields map[string]any)
}

// seatsMetrics counts admission answers and user counts (agent/metrics).
type seatsMetrics interface {
	AdmissionDecision(profile, decision string)
	UsersCount(result string)
}

// seatsEnv is what the users component is built with and never changes.
type seatsEnv struct {
	clk     clock.Clock          // the loop's ticker
	elapsed func() time.Duration // the machine's monotonic clock: reservations and the count's age
	licence licenceView
	audit   auditSink
	metrics seatsMetrics
	log     *slog.Logger
}

// seats is the users and admission component: what the agent knows of the
// PBX's users (the last good count, the seats reserved by admissions, the
// over-use last reported) and the admission decisions taken on it. Its
// fields are written only by its own methods.
//
// Lock order: countMu, then mu. Neither is held while the licence view,
// the audit sink, the metrics or the over-use hook (hookMu, its own) are
// called, so the licence's mu and the component's locks are never nested.
type seats struct {
	env  seatsEnv
	hook *overuseHook

	// countMu makes counts one at a time: two counts finishing out of
	// order would show a fall and a rise that never happened, and release
	// reservations twice.
	countMu sync.Mutex

	mu       sync.Mutex // guards the fields below; source and interval are set holding countMu too
	source   users.Source
	interval time.Duration
	adm      AdmissionConfig
	book     *admission.Book
	last     lastCount
	overuse  license.Counts // as last reported (audit log, hook)
	denials  map[license.Profile]*denialLog
}

// lastCount is the last count's outcome.
type lastCount struct {
	used      license.Counts // the last good count; nil until one succeeds
	countedAt time.Time      // when it finished, on the monotonic clock (mono)
	countedLT time.Time      // the same, in licence time, for status
	err       string         // the last count's error; "" after a good one
	failures  int            // counts failed in a row; 0 after a good one
	failingLT time.Time      // the first of those failures, in licence time
}

// monoEpoch anchors the monotonic clock's durations as times, for the
// reservation book.
var monoEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func (u *seats) mono() time.Time { return monoEpoch.Add(u.env.elapsed()) }

// newSeats builds the users component counting with src (nil: the source
// uc names) under the admission settings ac; hook is the over-use hook's
// argv, run with hookTimeout.
func newSeats(env seatsEnv, src users.Source, uc UsersConfig, ac AdmissionConfig, hook []string, hookTimeout time.Duration) (*seats, error) {
	if src == nil {
		s, err := NewUsersSource(uc)
		if err != nil {
			return nil, err
		}
		src = s
	}
	return &seats{
		env:      env,
		hook:     &overuseHook{log: env.log, argv: hook, timeout: hookTimeout},
		source:   src,
		interval: uc.Interval,
		adm:      ac,
		book:     admission.NewBook(ac.ReservationTTL),
		denials:  map[license.Profile]*denialLog{},
	}, nil
}

// NewUsersSource returns the source users.source names.
func NewUsersSource(c UsersConfig) (users.Source, error) {
	switch c.Source {
	case "sqlite":
		return users.NewSQLite(c.SQLite.Path, c.SQLite.Query)
	case "command":
		return users.NewCommand(c.Command.Argv, c.Command.Timeout)
	case "http":
		return users.NewHTTP(c.HTTP.URL, c.HTTP.Timeout)
	}
	return nil, fmt.Errorf("config users.source: %q: use sqlite, command or http", c.Source)
}

// loop counts users at start and every users.interval until ctx ends.
// The agent restarts it to change the source or interval (setSource).
func (u *seats) loop(ctx context.Context) {
	u.mu.Lock()
	iv := u.interval
	u.mu.Unlock()
	t := u.env.clk.NewTicker(iv)
	defer t.Stop()
	for {
		u.count(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
	}
}

// setSource makes src, counted every interval, the source; it returns the
// previous one for the caller to close. The loop is stopped meanwhile.
func (u *seats) setSource(src users.Source, interval time.Duration) users.Source {
	u.countMu.Lock()
	defer u.countMu.Unlock()
	u.mu.Lock()
	defer u.mu.Unlock()
	old := u.source
	u.source, u.interval = src, interval
	return old
}

// setAdmission applies a reloaded admission section: the bounds of the
// next decisions and the reservation book's TTL.
func (u *seats) setAdmission(ac AdmissionConfig) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.adm = ac
	u.book.SetTTL(ac.ReservationTTL)
}

// count counts once. A good count replaces the last, releases the
// reservations whose users it shows, and updates the over-use; a failed
// one is logged (when its error changes) and leaves the last good count
// in force.
func (u *seats) count(ctx context.Context) error {
	u.countMu.Lock()
	defer u.countMu.Unlock()
	// source and interval change only under countMu too: held here.
	src, iv := u.source, u.interval
	cctx, cancel := context.WithTimeout(ctx, max(iv, 10*time.Second))
	defer cancel()
	c, err := src.Count(cctx)
	if err != nil && ctx.Err() != nil {
		return err // shutting down: not the source's fault
	}
	now, lt := u.mono(), u.env.licence.Now()
	u.mu.Lock()
	if err != nil {
		changed := u.last.err != err.Error()
		u.last.err = err.Error()
		if u.last.failures == 0 {
			u.last.failingLT = lt
		}
		u.last.failures++
		held := u.last.used != nil
		u.mu.Unlock()
		u.env.metrics.UsersCount(metrics.CountFailed)
		if changed {
			if held {
				u.env.log.Error("counting users failed; the last good count stays in force", "source", src.String(), "err", err)
			} else {
				u.env.log.Error("counting users failed; no new users are admitted until a count succeeds", "source", src.String(), "err", err)
			}
		}
		return err
	}
	prev, hadErr := u.last.used, u.last.err != ""
	u.last = lastCount{used: c, countedAt: now, countedLT: lt}
	released := u.book.Counted(now, prev, c)
	u.mu.Unlock()
	u.env.metrics.UsersCount(metrics.CountSuccess)
	switch {
	case prev == nil || hadErr:
		u.env.log.Info("users counted", "source", src.String(), "users", c.String())
	case !maps.Equal(prev, c):
		u.env.log.Debug("users counted", "users", c.String(), "reservations_released", released)
	}
	u.checkOveruse()
	return nil
}

// snapshot is the users part of the status: used (nil before a good
// count) and reserved per profile, and how counting goes.
func (u *seats) snapshot() (used, reserved license.Counts, st apitype.UsersStatus) {
	u.mu.Lock()
	defer u.mu.Unlock()
	mono := u.mono()
	st = apitype.UsersStatus{Source: u.source.String(), Error: u.last.err, Failures: u.last.failures}
	if u.last.used != nil {
		st.CountedAt = utc(u.last.countedLT.Truncate(time.Second))
	}
	if u.last.failures > 0 {
		st.FailingSince = utc(u.last.failingLT.Truncate(time.Second))
		// The same test as admissions: no count, or one too old to trust.
		st.Unknown = u.last.used == nil || mono.Sub(u.last.countedAt) > u.countMaxAgeLocked()
	}
	return maps.Clone(u.last.used), u.book.Reserved(mono), st
}

// checkOveruse compares the over-use of the licence held and the last
// count with the one last reported; a change is logged, recorded in the
// audit log, and handed to the over-use hook.
func (u *seats) checkOveruse() {
	now := u.env.licence.Now()
	doc := u.env.licence.Document()
	u.mu.Lock()
	if u.last.used == nil { // nothing counted yet: nothing to say
		u.mu.Unlock()
		return
	}
	ov := admission.Overuse(doc, u.last.used)
	if maps.Equal(ov, u.overuse) {
		u.mu.Unlock()
		return
	}
	u.overuse = ov
	used, reserved := maps.Clone(u.last.used), u.book.Reserved(u.mono())
	u.mu.Unlock()

	fields := map[string]any{"overuse": ov.String(), "users": used.String()}
	if doc != nil {
		fields["licensed"] = doc.Counts.String()
	}
	if ov == nil {
		fields["overuse"] = "none"
		u.env.log.Info("no over-use any more", "users", used.String())
	} else {
		u.env.log.Warn("more users than licences: no new users of these profiles until it is resolved",
			"overuse", ov.String(), "users", used.String())
	}
	u.env.audit.Record(now, auditOveruse, fields)
	u.hook.run(doc, ov, used, reserved)
}

// OveruseHookInput is the JSON the over-use hook (enforcement.overuse_hook)
// reads on stdin.
type OveruseHookInput struct {
	// Overuse is, per profile, the users without a licence; empty when the
	// over-use is over.
	Overuse  map[string]int                   `json:"overuse"`
	Profiles map[string]apitype.ProfileStatus `json:"profiles"`
}

// overuseHook runs enforcement.overuse_hook in the background, one run at
// a time; a change during a run runs it again with the latest input.
type overuseHook struct {
	log     *slog.Logger
	timeout time.Duration

	mu      sync.Mutex // guards the fields below
	argv    []string
	running bool
	pending []byte // the latest input for the hook, while it runs
}

// setArgv applies a reloaded enforcement.overuse_hook to the next runs.
func (h *overuseHook) setArgv(argv []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.argv = argv
}

// run hands the hook an over-use.
func (h *overuseHook) run(doc *license.Document, ov, used, reserved license.Counts) {
	h.mu.Lock()
	argv := h.argv
	h.mu.Unlock()
	if len(argv) == 0 {
		return
	}
	in := OveruseHookInput{Overuse: map[string]int{}, Profiles: map[string]apitype.ProfileStatus{}}
	for p, n := range ov {
		in.Overuse[string(p)] = n
	}
	for _, p := range license.Profiles() {
		ps := apitype.ProfileStatus{Used: used[p.ID], Reserved: reserved[p.ID]}
		if doc != nil {
			ps.Licensed = doc.Counts[p.ID]
		}
		in.Profiles[string(p.ID)] = ps
	}
	payload, err := json.Marshal(in)
	if err != nil {
		h.log.Error("over-use hook input", "err", err)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.running {
		h.pending = payload
		return
	}
	h.running = true
	go func() {
		for {
			_, err := proc.Run(context.Background(), argv, proc.Options{Stdin: payload, Timeout: h.timeout})
			if err != nil {
				h.log.Error("the over-use hook failed", "hook", argv[0], "err", err)
			} else {
				h.log.Info("the over-use hook ran", "hook", argv[0])
			}
			h.mu.Lock()
			payload, h.pending = h.pending, nil
			if payload == nil {
				h.running = false
				h.mu.Unlock()
				return
			}
			h.mu.Unlock()
		}
	}()
}
