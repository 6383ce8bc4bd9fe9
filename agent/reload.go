package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
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
	now := a.clock.Now()
	if a.reloadCfg == nil {
		a.log.Warn("SIGHUP: this daemon has no configuration file to read again; nothing changed")
		return
	}
	next, err := a.reloadCfg()
	if err == nil {
		err = next.Validate()
	}
	if err != nil {
		a.log.Error("configuration not reloaded: the running configuration stays", "err", err)
		a.mu.Lock()
		st := &apitype.ConfigStatus{ReloadedAt: now, Error: err.Error()}
		if prev := a.cfgStatus; prev != nil {
			st.RestartNeeded = prev.RestartNeeded // still true of the running daemon
		}
		a.cfgStatus = st
		a.mu.Unlock()
		return
	}
	changed := changedKeys(a.cfg, next)
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
		if lvl, err := next.LogLevel(); err == nil && a.logLevel != nil {
			a.logLevel.Set(lvl)
		}
	}
	if slices.Contains(live, "heartbeat.interval") {
		// The heartbeat loop reads the interval without a lock: it is
		// set while the loop is stopped. Stopping it between exchanges
		// keeps an exchange from being cut short.
		a.waitHeartbeatIdle(ctx)
		lp.heartbeat.stop()
		a.hb.setOverride(next.Heartbeat.Interval)
		a.cfg.Heartbeat.Interval = next.Heartbeat.Interval // for the next reload's comparison
		lp.heartbeat.start(ctx)
	}
	if slices.ContainsFunc(live, func(k string) bool { return strings.HasPrefix(k, "users.") }) {
		if err := a.reloadUsers(ctx, lp.users, next.Users); err != nil {
			problems = append(problems, err)
		}
	}
	if slices.ContainsFunc(live, func(k string) bool { return strings.HasPrefix(k, "admission.") }) {
		a.users.setAdmission(next.Admission)
		a.cfg.Admission = next.Admission // for the next reload's comparison
	}
	if slices.Contains(live, "enforcement.overuse_hook") {
		a.users.hook.setArgv(next.Enforcement.OveruseHook)
		a.cfg.Enforcement.OveruseHook = next.Enforcement.OveruseHook // for the next reload's comparison
	}

	st := &apitype.ConfigStatus{ReloadedAt: now, RestartNeeded: restart}
	if err := errors.Join(problems...); err != nil {
		st.Error = err.Error()
		a.log.Error("configuration partly reloaded", "err", err)
	}
	a.mu.Lock()
	a.cfgStatus = st
	a.mu.Unlock()
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
	a.cfg.Users = uc // for the next reload's comparison
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
