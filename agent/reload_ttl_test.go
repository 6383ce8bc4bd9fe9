package agent

import (
	"context"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// TestReloadLowersReservationTTL: an operator lowers
// admission.reservation_ttl and reloads (SIGHUP). Reservations made after
// the reload expire on the new TTL, while one made before keeps its own,
// longer expiry; the seats freed are admitted again. The licence has 10
// seats and none is used, so a reservation held too long shows as a
// denial.
func TestReloadLowersReservationTTL(t *testing.T) {
	const p = license.UCPremium
	r := newRig(t)
	r.cfg.Admission.ReservationTTL = 10 * time.Minute
	src := &fakeUsers{counts: license.Counts{p: 0}}
	a := r.admitting(t, license.Counts{p: 10}, src)
	ctx := context.Background()
	if err := a.countUsers(ctx); err != nil {
		t.Fatal(err)
	}
	mustAdmit(t, a.Admit(ctx, ask(p, 4)), 6) // held for 10 minutes

	next := a.cfg
	next.Admission.ReservationTTL = 30 * time.Second
	a.rl.read = func() (Config, error) { return next, nil }
	lp := &loops{heartbeat: newLoop(ctx, func(context.Context) {}), users: newLoop(ctx, func(context.Context) {})}
	defer lp.stop()
	a.reload(ctx, lp)

	r.time.run(time.Second)
	mustAdmit(t, a.Admit(ctx, ask(p, 6)), 0) // held for 30 seconds
	mustDeny(t, a.Admit(ctx, dry(p, 1)), "10 reserved")

	r.time.run(30 * time.Second) // the second reservation's time to live
	if ps := profileStatus(a, p); ps.Reserved != 4 {
		t.Fatalf("30 s after the reload's reservation: %d seats reserved, want the older 4 alone", ps.Reserved)
	}
	mustAdmit(t, a.Admit(ctx, ask(p, 6)), 0)

	// The older reservation still runs on the TTL it was made with.
	r.time.run(9 * time.Minute) // 9 min 31 s after the first
	if ps := profileStatus(a, p); ps.Reserved != 4 {
		t.Errorf("before its 10 minutes: %d seats reserved, want the older 4", ps.Reserved)
	}
	r.time.run(29 * time.Second) // 10 minutes after the first
	if ps := profileStatus(a, p); ps.Reserved != 0 {
		t.Errorf("after every time to live: %d seats reserved, want 0", ps.Reserved)
	}
}
