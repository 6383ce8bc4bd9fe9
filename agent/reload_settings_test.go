package agent

import (
	"context"
	"reflect"
	"testing"
	"time"
)

// TestReloadHandsComponentsTheirPart: a reload leaves the Config New was
// given as it was (other goroutines read it without a lock), hands the
// heartbeat schedule and the seats their new values, and the next reload
// of the same file finds nothing changed, while a key that needs a
// restart stays reported as such.
func TestReloadHandsComponentsTheirPart(t *testing.T) {
	r := newRig(t)
	a := r.newAgent(t)
	ctx := context.Background()
	before := a.cfg

	next := a.cfg
	next.Heartbeat.Interval = 7 * time.Second
	next.Admission.ReservationTTL = 42 * time.Second
	next.SSH.Port = a.cfg.SSH.Port + 1 // applies after a restart only
	a.rl.read = func() (Config, error) { return next, nil }
	lp := &loops{heartbeat: newLoop(ctx, a.heartbeatLoop), users: newLoop(ctx, func(context.Context) {})}
	defer lp.stop()

	a.reload(ctx, lp)
	if !reflect.DeepEqual(a.cfg, before) {
		t.Errorf("the reload wrote the Config New was given: keys %v differ", changedKeys(before, a.cfg))
	}
	if got := a.hb.intervalOverride(); got != 7*time.Second {
		t.Errorf("heartbeat schedule's interval after the reload: %v, want 7s", got)
	}
	if got := a.schedule().Interval; got != 7*time.Second {
		t.Errorf("schedule in force after the reload: interval %v, want 7s", got)
	}
	st := a.Status().Config
	if st == nil || !reflect.DeepEqual(st.RestartNeeded, []string{"ssh.port"}) {
		t.Fatalf("status after the reload: %+v, want ssh.port needing a restart", st)
	}

	a.reload(ctx, lp) // the same file again
	st = a.Status().Config
	if st == nil || st.Error != "" || !reflect.DeepEqual(st.RestartNeeded, []string{"ssh.port"}) {
		t.Errorf("status after reloading the same file: %+v, want ssh.port still needing a restart", st)
	}
	if got := changedKeys(a.rl.running, next); len(got) != 1 || got[0] != "ssh.port" {
		t.Errorf("live values after two reloads differ from the file in %v, want only ssh.port (not live)", got)
	}
}
