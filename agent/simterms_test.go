package agent

import (
	"context"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/internal/portalsim"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// TestSimulatorLicenceTermsReachTheAgent: the licence terms set on the
// simulator change what the agent admits and when its graces end.
func TestSimulatorLicenceTermsReachTheAgent(t *testing.T) {
	r := newRig(t)
	r.setPortalClock(t, "2027-03-10T10:00:00Z")
	src := &fakeUsers{counts: license.Counts{license.UCPremium: 8}}
	a := r.admitting(t, license.Counts{license.UCPremium: 10}, src)
	ctx := context.Background()
	a.countUsers(ctx)
	mustDeny(t, a.Admit(ctx, dry(license.PBXBasic, 1)))
	mustDeny(t, a.Admit(ctx, dry(license.UCPremium, 3)))
	s := a.Status()
	if end := s.Deadlines.OfflineGraceEnd; end == nil || end.Before(s.Clock.Now.Add(29*24*time.Hour)) {
		t.Fatalf("offline grace end %v before the change; want the default 30 days", end)
	}

	on, week := true, portalsim.Duration(7*24*time.Hour)
	two := portalsim.Duration(2 * 24 * time.Hour)
	res, err := r.admin.ChangeLicenses(ctx, "acme.example", portalsim.LicenseChange{LicenceTerms: portalsim.LicenceTerms{
		HigherCoversLower: &on,
		SoftOverage:       &portalsim.SoftOverageChange{Factor: 1.2, For: &week},
		OfflineGrace:      &two,
		LapseGrace:        &week,
	}})
	if err != nil || !res.Changed {
		t.Fatalf("setting the terms: %+v, %v", res, err)
	}
	if err := a.heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	s = a.Status()
	if !s.License.HigherCoversLower || s.License.SoftOverage == nil || s.License.SoftOverage.Factor != 1.2 {
		t.Fatalf("status licence = %+v", s.License)
	}
	// 1.2 × 10 = 12 UC-Premium seats meanwhile, 8 taken; a free one
	// holds a PBX-BASIC user, leaving 3.
	mustAdmit(t, a.Admit(ctx, dry(license.PBXBasic, 1)), 3)
	if ans := a.Admit(ctx, dry(license.UCPremium, 4)); !ans.Allowed {
		t.Errorf("4 more UC-Premium users under a 1.2 soft overage: %+v", ans)
	}
	mustDeny(t, a.Admit(ctx, dry(license.UCPremium, 5)))
	if end := s.Deadlines.OfflineGraceEnd; end == nil || end.After(s.Clock.Now.Add(2*24*time.Hour)) || end.Before(s.Clock.Now.Add(47*time.Hour)) {
		t.Errorf("offline grace end %v at %v; want 2 days on", end, s.Clock.Now)
	}

	if _, err := r.admin.Suspend(ctx, "acme.example"); err != nil {
		t.Fatal(err)
	}
	if err := a.heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	s = a.Status()
	if end := s.Deadlines.LapseGraceEnd; end == nil || end.Sub(s.Clock.Now).Round(time.Hour) != 7*24*time.Hour {
		t.Errorf("lapse grace end %v at %v (state %s); want 7 days on", end, s.Clock.Now, s.State)
	}
}
