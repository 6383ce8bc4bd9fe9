package portalsim

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

func ptr[T any](v T) *T { return &v }

// TestLicenceTermsReachTheAppliance: every licence term the agent honours
// can be set through the admin API, arrives signed in a new revision, and
// can be withdrawn again.
func TestLicenceTermsReachTheAppliance(t *testing.T) {
	f := newFixture(t)
	_, key := f.createPBX("acme.example", license.ModelVM, license.Monthly, acmeCounts)
	a := newTestAgent(f, license.ModelVM)
	a.activate(key)
	ctx := context.Background()
	now := f.portal.Now().Truncate(time.Second)

	set := LicenseChange{LicenceTerms: LicenceTerms{
		HigherCoversLower:  ptr(true),
		SoftOverage:        &SoftOverageChange{Factor: 1.1, For: ptr(Duration(72 * time.Hour))},
		OfflineGrace:       ptr(Duration(10 * 24 * time.Hour)),
		HeartbeatTolerance: ptr(Duration(5 * time.Minute)),
		LapseGrace:         ptr(Duration(7 * 24 * time.Hour)),
	}}
	res, err := f.admin.ChangeLicenses(ctx, "acme.example", set)
	if err != nil || !res.Changed || res.PBX.Revision != 2 {
		t.Fatalf("setting the terms: %+v, %v; want revision 2", res, err)
	}
	if v := res.PBX; !v.HigherCoversLower || v.SoftOverage == nil || v.OfflineGrace != 864000 || v.HeartbeatTolerance != 300 || v.LapseGrace != 604800 {
		t.Errorf("the admin view lacks the terms: %+v", v)
	}
	ans, _ := a.heartbeat(1)
	d := a.licence(ans)
	wantUntil := now.Add(72 * time.Hour)
	if d.Revision != 2 || !d.HigherCoversLower || d.SoftOverage == nil || d.SoftOverage.Factor != 1.1 ||
		!d.SoftOverage.Until.Equal(wantUntil) || d.OfflineGracePeriod() != 10*24*time.Hour ||
		d.HeartbeatTolerancePeriod() != 5*time.Minute || d.LapseGracePeriod() != 7*24*time.Hour ||
		d.Counts.String() != acmeCounts.String() {
		t.Fatalf("signed licence = %+v (soft overage %+v); want every term, until %v, counts kept", d, d.SoftOverage, wantUntil)
	}

	// The same terms again (until as a time this time): no new revision.
	again := set
	again.SoftOverage = &SoftOverageChange{Factor: 1.1, Until: &wantUntil}
	if res, err := f.admin.ChangeLicenses(ctx, "acme.example", again); err != nil || res.Changed {
		t.Errorf("the same terms again: %+v, %v; want unchanged", res, err)
	}

	// Withdrawn: the fields leave the licence and the agent's defaults hold.
	off := LicenseChange{LicenceTerms: LicenceTerms{
		HigherCoversLower: ptr(false), SoftOverage: &SoftOverageChange{},
		OfflineGrace: ptr(Duration(0)), HeartbeatTolerance: ptr(Duration(0)), LapseGrace: ptr(Duration(0)),
	}}
	if res, err := f.admin.ChangeLicenses(ctx, "acme.example", off); err != nil || !res.Changed {
		t.Fatalf("withdrawing the terms: %+v, %v", res, err)
	}
	ans, _ = a.heartbeat(2)
	d = a.licence(ans)
	if d.Revision != 3 || d.HigherCoversLower || d.SoftOverage != nil || d.OfflineGrace != 0 || d.HeartbeatTolerance != 0 || d.LapseGrace != 0 {
		t.Errorf("withdrawn licence = %+v", d)
	}
}

// TestLicenceTermsRefused: a term the agent would refuse or misread is
// refused with its name, and nothing changes.
func TestLicenceTermsRefused(t *testing.T) {
	f := newFixture(t)
	f.createPBX("acme.example", license.ModelVM, license.Monthly, acmeCounts)
	past := base.Add(-time.Hour)
	hour := ptr(Duration(time.Hour))
	tests := []struct {
		name string
		in   LicenseChange
		want string
	}{
		{"nothing", LicenseChange{}, "name at least one profile or licence term"},
		{"factor below 1", LicenseChange{LicenceTerms: LicenceTerms{SoftOverage: &SoftOverageChange{Factor: 0.9, For: hour}}}, "soft_overage factor 0.9"},
		{"factor above 2", LicenseChange{LicenceTerms: LicenceTerms{SoftOverage: &SoftOverageChange{Factor: 2.5, For: hour}}}, "soft_overage factor 2.5"},
		{"no end", LicenseChange{LicenceTerms: LicenceTerms{SoftOverage: &SoftOverageChange{Factor: 1.1}}}, "one of them"},
		{"two ends", LicenseChange{LicenceTerms: LicenceTerms{SoftOverage: &SoftOverageChange{Factor: 1.1, For: hour, Until: ptr(base.Add(time.Hour))}}}, "one of them"},
		{"end in the past", LicenseChange{LicenceTerms: LicenceTerms{SoftOverage: &SoftOverageChange{Factor: 1.1, Until: &past}}}, "not after the portal's now"},
		{"end beyond the format", LicenseChange{LicenceTerms: LicenceTerms{SoftOverage: &SoftOverageChange{Factor: 1.1, For: ptr(Duration(250 * 365 * 24 * time.Hour))}}}, "outside the years"},
		{"withdrawal with an end", LicenseChange{LicenceTerms: LicenceTerms{SoftOverage: &SoftOverageChange{For: hour}}}, "withdraws"},
		{"negative grace", LicenseChange{LicenceTerms: LicenceTerms{OfflineGrace: ptr(Duration(-time.Second))}}, "offline_grace"},
		{"fractional tolerance", LicenseChange{LicenceTerms: LicenceTerms{HeartbeatTolerance: ptr(Duration(1500 * time.Millisecond))}}, "heartbeat_tolerance 1.5s: give whole seconds"},
		{"fractional lapse grace", LicenseChange{LicenceTerms: LicenceTerms{LapseGrace: ptr(Duration(time.Millisecond))}}, "lapse_grace"},
		{"bad counts beside good terms", LicenseChange{Profiles: license.Counts{license.UCPremium: -1}, LicenceTerms: LicenceTerms{HigherCoversLower: ptr(true)}}, "uc-premium"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.admin.ChangeLicenses(context.Background(), "acme.example", tt.in)
			var ae *AdminError
			if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || !strings.Contains(ae.Message, tt.want) {
				t.Errorf("got %v; want a 400 naming %q", err, tt.want)
			}
		})
	}
	if v := f.show("acme.example"); v.Revision != 1 || v.HigherCoversLower || v.SoftOverage != nil {
		t.Errorf("a refused change left a trace: %+v", v)
	}
}

// TestLicenceTermsUnderThePortalRules: a change of terms goes through the
// same rules as one of counts: on the last day of a month a change that
// also lowers a count is refused whole; terms alone are taken.
func TestLicenceTermsUnderThePortalRules(t *testing.T) {
	f := newFixture(t)
	f.createPBX("acme.example", license.ModelVM, license.Monthly, acmeCounts)
	f.setClock("2027-01-31T10:00:00Z")
	ctx := context.Background()
	mixed := LicenseChange{Profiles: license.Counts{license.UCPremium: 5}, LicenceTerms: LicenceTerms{HigherCoversLower: ptr(true)}}
	if _, err := f.admin.ChangeLicenses(ctx, "acme.example", mixed); err == nil || !strings.Contains(err.Error(), RuleNoDecreaseOnLastDay) {
		t.Fatalf("a decrease with a term on the last day: %v; want the rule's refusal", err)
	}
	if v := f.show("acme.example"); v.HigherCoversLower || v.Profiles[license.UCPremium] != 10 {
		t.Fatalf("the refused change was taken in part: %+v", v)
	}
	res, err := f.admin.ChangeLicenses(ctx, "acme.example", LicenseChange{LicenceTerms: LicenceTerms{HigherCoversLower: ptr(true)}})
	if err != nil || !res.Changed || !res.PBX.HigherCoversLower {
		t.Fatalf("a term alone on the last day: %+v, %v", res, err)
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "less than 2 days before the term ends") {
		t.Errorf("warnings = %q; want the late-change warning", res.Warnings)
	}
}
