package agent

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// TestDenialSaysWhenReservationsExpire: a profile full because of seats
// reserved says when those seats free up at the latest, in licence-clock
// words, soonest first; when they are gone, the note is too.
func TestDenialSaysWhenReservationsExpire(t *testing.T) {
	r := newRig(t)
	r.cfg.Admission.ReservationTTL = 10 * time.Minute
	src := &fakeUsers{counts: license.Counts{license.UCPremium: 7}}
	a := r.admitting(t, license.Counts{license.UCPremium: 10}, src)
	ctx := context.Background()
	if err := a.countUsers(ctx); err != nil {
		t.Fatal(err)
	}
	ttl := r.cfg.Admission.ReservationTTL
	first := a.lic.now().Add(ttl).Truncate(time.Second)
	mustAdmit(t, a.Admit(ctx, ask(license.UCPremium, 2)), 1)
	r.time.run(3 * time.Minute)
	mustAdmit(t, a.Admit(ctx, ask(license.UCPremium, 1)), 0)
	now := a.lic.now()
	second := now.Add(ttl).Truncate(time.Second)

	hm := func(at time.Time) string {
		if at.UTC().YearDay() != now.UTC().YearDay() {
			return at.UTC().Format("2006-01-02 15:04 UTC")
		}
		return at.UTC().Format("15:04 UTC")
	}
	want := fmt.Sprintf("the reserved seats free up as a count shows their users, at the latest: 2 held until %s (%s), 1 until %s (%s)",
		hm(first), license.Relative(first, now), hm(second), license.Relative(second, now))
	mustDeny(t, a.Admit(ctx, dry(license.UCPremium, 1)), "UC-Premium is full", want)

	// The first reservation gone: only the second is named.
	r.time.run(ttl - 3*time.Minute)
	ans := a.Admit(ctx, dry(license.UCPremium, 3))
	mustDeny(t, ans, "at the latest: 1 held until "+hm(second))
	if strings.Contains(ans.Reason, "2 held") {
		t.Errorf("an expired reservation still named: %q", ans.Reason)
	}
	// None left: no note.
	r.time.run(3 * time.Minute)
	mustAdmit(t, a.Admit(ctx, dry(license.UCPremium, 3)), 0)
	if ans := a.Admit(ctx, dry(license.UCPremium, 4)); strings.Contains(ans.Reason, "held until") {
		t.Errorf("no reservation held, yet the denial names one: %q", ans.Reason)
	}
}
