package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
)

// liveKeys are the configuration keys a reload applies to the running
// daemon; a key is live when it is listed or lies under a listed prefix
// ending in ".". Everything else (listeners, folders, the portal and its
// keyring, identity, the telephony commands, ...) is read once at start
// and applies after a restart.
var liveKeys = []string{
	"admission.",               // reservations made from now on; the per-uid bound at the next request
	"enforcement.overuse_hook", // the next run of the hook
	"heartbeat.interval",       // the heartbeat loop restarts with it
	"log.level",
	"users.", // the users loop restarts with the new source and interval
}

func isLive(key string) bool {
	for _, k := range liveKeys {
		if key == k || strings.HasSuffix(k, ".") && strings.HasPrefix(key, k) {
			return true
		}
	}
	return false
}

// reloadState is what a reload keeps: how to read the configuration
// again, the live values applied so far (what the next reload compares
// with; the Config New was given stays as it was), and how the last
// reload went, for the status.
type reloadState struct {
	read    func() (Config, error) // Options.Reload
	level   *slog.LevelVar         // Options.LogLevel
	running Config                 // read and written only by reload, which runs one at a time

	mu   sync.Mutex            // guards last
	last *apitype.ConfigStatus // nil before a reload
}

// failed records a reload that changed nothing: the keys that needed a
// restart before still do.
func (r *reloadState) failed(now time.Time, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := &apitype.ConfigStatus{ReloadedAt: now, Error: err.Error()}
	if prev := r.last; prev != nil {
		st.RestartNeeded = prev.RestartNeeded // still true of the running daemon
	}
	r.last = st
}

// done records a reload that applied what it could.
func (r *reloadState) done(running Config, st *apitype.ConfigStatus) {
	r.running = running
	r.mu.Lock()
	r.last = st
	r.mu.Unlock()
}

// status is a copy of how the last reload went; nil before one.
func (r *reloadState) status() *apitype.ConfigStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		return nil
	}
	c := *r.last
	return &c
}

// loop is a loop of the daemon that a reload stops and starts again: what
// it reads without a lock may change only while it is not running.
type loop struct {
	run    func(context.Context)
	cancel context.CancelFunc
	done   chan struct{}
}

func newLoop(ctx context.Context, run func(context.Context)) *loop {
	l := &loop{run: run}
	l.start(ctx)
	return l
}

func (l *loop) start(ctx context.Context) {
	ctx, l.cancel = context.WithCancel(ctx)
	l.done = make(chan struct{})
	go func() {
		defer close(l.done)
		l.run(ctx)
	}()
}

// stop ends the loop and waits for it.
func (l *loop) stop() {
	l.cancel()
	<-l.done
}

// loops are the loops a reload may restart.
type loops struct {
	heartbeat, users *loop
}

func (lp *loops) stop() {
	lp.heartbeat.stop()
	lp.users.stop()
}

// idleWait bounds how long a reload waits for the heartbeat loop to finish
// an exchange before restarting it anyway.
const idleWait = 5 * time.Second

// reload reads the configuration again and applies the keys that can
// change live; the keys that cannot are logged and shown in the status
// until a restart. A configuration that does not load or validate changes
// nothing: the running one stays, and the status says why.
func (a *Agent) reload(ctx context.Context, lp *loops) {
	now := a.lic.now()
	if a.rl.read == nil {
		a.log.Warn("SIGHUP: this daemon has no configuration file to read again; nothing changed")
		return
	}
	next, err := a.rl.read()
	if err == nil {
		err = next.Validate()
	}
	if err != nil {
		a.log.Error("configuration not reloaded: the running configuration stays", "err", err)
		a.rl.failed(now, err)
		return
	}
	running := a.rl.running // only reload, one at a time, reads or writes it
	changed := changedKeys(running, next)
	var live, restart []string
	for _, k := range changed {
		if isLive(k) {
			live = append(live, k)
		} else {
			restart = append(restart, k)
		}
	}
	var problems []error
	if slices.Contains(live, "log.level") {
		if lvl, err := next.LogLevel(); err == nil && a.rl.level != nil {
			a.rl.level.Set(lvl)
		}
	}
	if slices.Contains(live, "heartbeat.interval") {
		// The heartbeat loop reads the interval without a lock: it is
		// set while the loop is stopped. Stopping it between exchanges
		// keeps an exchange from being cut short.
		a.waitHeartbeatIdle(ctx)
		lp.heartbeat.stop()
		a.hb.setOverride(next.Heartbeat.Interval)
		running.Heartbeat.Interval = next.Heartbeat.Interval
		lp.heartbeat.start(ctx)
	}
	if slices.ContainsFunc(live, func(k string) bool { return strings.HasPrefix(k, "users.") }) {
		if err := a.reloadUsers(ctx, lp.users, next.Users); err != nil {
			problems = append(problems, err)
		} else {
			running.Users = next.Users
		}
	}
	if slices.ContainsFunc(live, func(k string) bool { return strings.HasPrefix(k, "admission.") }) {
		a.users.setAdmission(next.Admission)
		running.Admission = next.Admission
	}
	if slices.Contains(live, "enforcement.overuse_hook") {
		a.users.hook.setArgv(next.Enforcement.OveruseHook)
		running.Enforcement.OveruseHook = next.Enforcement.OveruseHook
	}

	st := &apitype.ConfigStatus{ReloadedAt: now, RestartNeeded: restart}
	if err := errors.Join(problems...); err != nil {
		st.Error = err.Error()
		a.log.Error("configuration partly reloaded", "err", err)
	}
	a.rl.done(running, st)
	switch {
	case len(changed) == 0:
		a.log.Info("configuration reloaded: nothing changed")
	case len(live) > 0:
		a.log.Info("configuration reloaded", "applied", strings.Join(live, ","))
	}
	if len(restart) > 0 {
		attrs := []any{"keys", strings.Join(restart, ","), "fix", "systemctl restart pbx-agent"}
		if slices.Contains(restart, "enforcement.stop_units") {
			attrs = append(attrs, "stop_units", "also run `pbx-agent helper telephony-units` as root to attach them")
		}
		a.log.Warn("configuration keys changed that apply only after a restart; they keep their running values", attrs...)
	}
}

// waitHeartbeatIdle waits, at most idleWait, until the heartbeat loop is
// between exchanges (it answers a probe only then).
func (a *Agent) waitHeartbeatIdle(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, idleWait)
	defer cancel()
	ack := make(chan struct{}, 1)
	select {
	case a.hb.probe <- ack:
	case <-ctx.Done():
		return
	}
	select {
	case <-ack:
	case <-ctx.Done():
	}
}

// reloadUsers makes the source of uc and restarts the users loop with it.
func (a *Agent) reloadUsers(ctx context.Context, l *loop, uc UsersConfig) error {
	src, err := NewUsersSource(uc)
	if err != nil {
		return fmt.Errorf("users: %w (the previous source stays)", err)
	}
	l.stop()
	old := a.users.setSource(src, uc.Interval)
	if c, ok := old.(io.Closer); ok {
		c.Close()
	}
	l.start(ctx) // counts at once, with the new source
	return nil
}

// changedKeys lists the keys, in order, whose values differ between two
// configurations. An empty list and no list are the same.
func changedKeys(a, b Config) []string {
	var keys []string
	var walk func(prefix string, x, y reflect.Value)
	walk = func(prefix string, x, y reflect.Value) {
		t := x.Type()
		for i := range t.NumField() {
			key := prefix + t.Field(i).Tag.Get("mapstructure")
			fx, fy := x.Field(i), y.Field(i)
			switch {
			case fx.Kind() == reflect.Struct:
				walk(key+".", fx, fy)
			case fx.Kind() == reflect.Slice && fx.Len() == 0 && fy.Len() == 0:
			case !reflect.DeepEqual(fx.Interface(), fy.Interface()):
				keys = append(keys, key)
			}
		}
	}
	walk("", reflect.ValueOf(a), reflect.ValueOf(b))
	slices.Sort(keys)
	return keys
}
