package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/pbx-agent/pbx-agent/agent/localapi"
	"github.com/pbx-agent/pbx-agent/pkg/admission"
	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/proc"
	"github.com/pbx-agent/pbx-agent/pkg/users"
)

// usersState is what the agent knows of the PBX's users: the last good
// count, the seats reserved by admissions, and the over-use last
// reported. Its lock is taken after a.mu, never before.
type usersState struct {
	source   users.Source
	interval time.Duration
	elapsed  func() time.Duration // the machine's monotonic clock: reservations and the count's age

	// countMu makes counts one at a time: two counts finishing out of
	// order would show a fall and a rise that never happened, and release
	// reservations twice.
	countMu sync.Mutex

	mu        sync.Mutex // guards the fields below
	book      *admission.Book
	used      license.Counts // the last good count; nil until one succeeds
	countedAt time.Time      // when it finished, on the monotonic clock (mono)
	countedLT time.Time      // the same, in licence time, for status
	err       string         // the last count's error; "" after a good one
	overuse   license.Counts // as last reported (audit log, hook)
	denials   map[license.Profile]*denialLog

	hookMu      sync.Mutex
	hookRunning bool
	hookPending []byte // the latest input for the hook, while it runs
}

// monoEpoch anchors the monotonic clock's durations as times, for the
// reservation book.
var monoEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func (u *usersState) mono() time.Time { return monoEpoch.Add(u.elapsed()) }

// initUsers sets the user-count source: opts.Users, or the one the
// configuration names.
func (a *Agent) initUsers(opts Options, src license.TimeSource) error {
	u := &a.users
	u.source = opts.Users
	if u.source == nil {
		s, err := NewUsersSource(a.cfg.Users)
		if err != nil {
			return err
		}
		u.source = s
	}
	u.interval = a.cfg.Users.Interval
	u.elapsed = src.Elapsed
	u.book = admission.NewBook(a.cfg.Admission.ReservationTTL)
	u.denials = map[license.Profile]*denialLog{}
	return nil
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

// usersLoop counts users at start and every users.interval until ctx
// ends. Refresh also counts, on demand.
func (a *Agent) usersLoop(ctx context.Context) {
	t := a.clk.NewTicker(a.users.interval)
	defer t.Stop()
	for {
		a.countUsers(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
	}
}

// countUsers counts once. A good count replaces the last, releases the
// reservations whose users it shows, and updates the over-use; a failed
// one is logged (when its error changes) and leaves the last good count
// in force.
func (a *Agent) countUsers(ctx context.Context) error {
	u := &a.users
	u.countMu.Lock()
	defer u.countMu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, max(u.interval, 10*time.Second))
	defer cancel()
	c, err := u.source.Count(cctx)
	if err != nil && ctx.Err() != nil {
		return err // shutting down: not the source's fault
	}
	now, lt := u.mono(), a.clock.Now()
	u.mu.Lock()
	if err != nil {
		changed := u.err != err.Error()
		u.err = err.Error()
		held := u.used != nil
		u.mu.Unlock()
		if changed {
			if held {
				a.log.Error("counting users failed; the last good count stays in force", "source", u.source.String(), "err", err)
			} else {
				a.log.Error("counting users failed; no new users are admitted until a count succeeds", "source", u.source.String(), "err", err)
			}
		}
		return err
	}
	prev, hadErr := u.used, u.err != ""
	u.used, u.countedAt, u.countedLT, u.err = c, now, lt, ""
	released := u.book.Counted(now, prev, c)
	u.mu.Unlock()
	switch {
	case prev == nil || hadErr:
		a.log.Info("users counted", "source", u.source.String(), "users", c.String())
	case !maps.Equal(prev, c):
		a.log.Debug("users counted", "users", c.String(), "reservations_released", released)
	}
	a.checkOveruse()
	return nil
}

// usersSnapshot is the users part of the status: used (nil before a good
// count) and reserved per profile, and how counting goes.
func (a *Agent) usersSnapshot() (used, reserved license.Counts, st localapi.UsersStatus) {
	u := &a.users
	u.mu.Lock()
	defer u.mu.Unlock()
	st = localapi.UsersStatus{Source: u.source.String(), Error: u.err}
	if u.used != nil {
		st.CountedAt = utc(u.countedLT.Truncate(time.Second))
	}
	return maps.Clone(u.used), u.book.Reserved(u.mono()), st
}

// checkOveruse compares the over-use of the licence held and the last
// count with the one last reported; a change is logged, recorded in the
// audit log, and handed to the over-use hook.
func (a *Agent) checkOveruse() {
	now := a.clock.Now()
	a.mu.Lock()
	doc := a.doc
	a.mu.Unlock()
	u := &a.users
	u.mu.Lock()
	if u.used == nil { // nothing counted yet: nothing to say
		u.mu.Unlock()
		return
	}
	ov := admission.Overuse(doc, u.used)
	if maps.Equal(ov, u.overuse) {
		u.mu.Unlock()
		return
	}
	u.overuse = ov
	used, reserved := maps.Clone(u.used), u.book.Reserved(u.mono())
	u.mu.Unlock()

	fields := map[string]any{"overuse": ov.String(), "users": used.String()}
	if doc != nil {
		fields["licensed"] = doc.Counts.String()
	}
	if ov == nil {
		fields["overuse"] = "none"
		a.log.Info("no over-use any more", "users", used.String())
	} else {
		a.log.Warn("more users than licences: no new users of these profiles until it is resolved",
			"overuse", ov.String(), "users", used.String())
	}
	a.mu.Lock()
	a.auditLocked(now, auditOveruse, fields)
	a.mu.Unlock()
	a.runOveruseHook(doc, ov, used, reserved)
}

// OveruseHookInput is the JSON the over-use hook (enforcement.overuse_hook)
// reads on stdin.
type OveruseHookInput struct {
	// Overuse is, per profile, the users without a licence; empty when the
	// over-use is over.
	Overuse  map[string]int                    `json:"overuse"`
	Profiles map[string]localapi.ProfileStatus `json:"profiles"`
}

// runOveruseHook runs the configured hook with the over-use, in the
// background, one run at a time; a change during a run runs it again with
// the latest.
func (a *Agent) runOveruseHook(doc *license.Document, ov, used, reserved license.Counts) {
	u := &a.users
	u.hookMu.Lock() // a reload may set the hook (reload.go)
	argv := a.cfg.Enforcement.OveruseHook
	u.hookMu.Unlock()
	if len(argv) == 0 {
		return
	}
	in := OveruseHookInput{Overuse: map[string]int{}, Profiles: map[string]localapi.ProfileStatus{}}
	for p, n := range ov {
		in.Overuse[string(p)] = n
	}
	for _, p := range license.Profiles() {
		ps := localapi.ProfileStatus{Used: used[p.ID], Reserved: reserved[p.ID]}
		if doc != nil {
			ps.Licensed = doc.Counts[p.ID]
		}
		in.Profiles[string(p.ID)] = ps
	}
	payload, err := json.Marshal(in)
	if err != nil {
		a.log.Error("over-use hook input", "err", err)
		return
	}
	u.hookMu.Lock()
	defer u.hookMu.Unlock()
	if u.hookRunning {
		u.hookPending = payload
		return
	}
	u.hookRunning = true
	go func() {
		for {
			_, err := proc.Run(context.Background(), argv, proc.Options{Stdin: payload, Timeout: a.cfg.Enforcement.CommandTimeout})
			if err != nil {
				a.log.Error("the over-use hook failed", "hook", argv[0], "err", err)
			} else {
				a.log.Info("the over-use hook ran", "hook", argv[0])
			}
			u.hookMu.Lock()
			payload, u.hookPending = u.hookPending, nil
			if payload == nil {
				u.hookRunning = false
				u.hookMu.Unlock()
				return
			}
			u.hookMu.Unlock()
		}
	}()
}
