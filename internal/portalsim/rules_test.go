package portalsim

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// setClock sets the portal's clock.
func (f *fixture) setClock(s string) time.Time {
	f.t.Helper()
	at := mustTime(f.t, s)
	if _, err := f.admin.SetClock(context.Background(), at); err != nil {
		f.t.Fatal(err)
	}
	return at
}

func (f *fixture) change(ref string, counts license.Counts) (*LicenseChangeResult, error) {
	return f.admin.ChangeLicenses(context.Background(), ref, LicenseChange{Profiles: counts})
}

func TestNoDecreaseOnTheLastDayOfAMonth(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		at      string
		change  license.Counts
		refused bool
	}{
		{"2027-01-31T10:00:00Z", license.Counts{license.UCPremium: 5}, true},
		{"2027-01-31T00:00:00Z", license.Counts{license.PBXBasic: 0}, true}, // to zero included
		{"2027-01-31T23:59:59Z", license.Counts{license.UCPremium: 0, license.PBXBasic: 0}, true},
		{"2027-01-31T10:00:00Z", license.Counts{license.UCPremium: 11}, false},
		{"2027-01-31T10:00:00Z", license.Counts{license.UCPremium: 11, license.PBXBasic: 2}, true}, // mixed: refused whole
		{"2027-01-31T10:00:00Z", license.Counts{license.UCBusiness: 0}, false},                     // no change at all
		{"2027-01-30T23:59:59Z", license.Counts{license.UCPremium: 5}, false},
		{"2027-02-01T00:00:00Z", license.Counts{license.UCPremium: 5}, false},
		{"2027-02-28T12:00:00Z", license.Counts{license.UCPremium: 5}, true},
		{"2028-02-28T12:00:00Z", license.Counts{license.UCPremium: 5}, false}, // a leap year
		{"2028-02-29T12:00:00Z", license.Counts{license.UCPremium: 5}, true},
		{"2026-12-31T12:00:00Z", license.Counts{license.UCPremium: 5}, true},
		{"2026-04-30T12:00:00Z", license.Counts{license.UCPremium: 5}, true},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprintf("%s %v", tt.at, tt.change), func(t *testing.T) {
			now := f.setClock(tt.at)
			name := fmt.Sprintf("pbx%d.example", i)
			f.createPBX(name, license.ModelVM, license.Monthly, acmeCounts)
			before := f.show(name)
			res, err := f.change(name, tt.change)
			after := f.show(name)
			if !tt.refused {
				if err != nil {
					t.Fatalf("change refused: %v", err)
				}
				for p, n := range tt.change {
					if after.Profiles[p] != n {
						t.Errorf("%s = %d after the change, want %d", p, after.Profiles[p], n)
					}
				}
				return
			}
			var ae *AdminError
			if !errors.As(err, &ae) || ae.Status != 409 || ae.Code != CodeRuleRefused {
				t.Fatalf("change = %+v, %v; want a 409 %s refusal", res, err, CodeRuleRefused)
			}
			for _, want := range []string{`"` + RuleNoDecreaseOnLastDay + `"`, now.Format(time.DateOnly) + " (UTC), is the last day of " + now.Month().String(), "00:00 UTC (nothing was changed)"} {
				if !strings.Contains(ae.Message, want) {
					t.Errorf("refusal %q does not say %q", ae.Message, want)
				}
			}
			if after.Revision != before.Revision || after.Profiles.String() != before.Profiles.String() {
				t.Errorf("a refused change changed the licence: %v rev %d → %v rev %d", before.Profiles, before.Revision, after.Profiles, after.Revision)
			}
		})
	}
}

func TestChangeWarning(t *testing.T) {
	t.Run("the admin API", func(t *testing.T) {
		f := newFixture(t)
		f.setClock("2027-01-10T10:00:00Z")
		f.createPBX("acme.example", license.ModelVM, license.Monthly, acmeCounts)
		if res, err := f.change("acme.example", license.Counts{license.UCPremium: 11}); err != nil || len(res.Warnings) != 0 {
			t.Errorf("change three weeks before the term end: %+v, %v; want no warning", res, err)
		}
		f.setClock("2027-01-31T10:00:00Z")
		res, err := f.change("acme.example", license.Counts{license.UCPremium: 12})
		if err != nil || !res.Changed || len(res.Warnings) != 1 ||
			!strings.Contains(res.Warnings[0], "less than 2 days before the term ends (2027-01-31 23:59:59 UTC, in 14 hours)") {
			t.Errorf("change on the last day: %+v, %v; want a warning naming the term end in words", res, err)
		}
		if res, err := f.change("acme.example", license.Counts{license.UCPremium: 12}); err != nil || res.Changed || len(res.Warnings) != 0 {
			t.Errorf("no change: %+v, %v; want no warning", res, err)
		}
	})
	tests := []struct {
		term    license.Term
		end     string // the licence's term end
		now     string
		warning string // "" for none; else the term end it names
	}{
		{license.Monthly, "2027-01-31T23:59:59Z", "2027-01-29T23:59:59Z", ""},
		{license.Monthly, "2027-01-31T23:59:59Z", "2027-01-30T00:00:00Z", "2027-01-31 23:59:59"},
		// Renewed on the last day: the day still belongs to the old term.
		{license.Monthly, "2027-02-28T23:59:59Z", "2027-01-31T10:00:00Z", "2027-01-31 23:59:59"},
		{license.Monthly, "2027-02-28T23:59:59Z", "2027-02-01T00:00:00Z", ""},
		{license.Monthly, "2028-02-29T23:59:59Z", "2028-02-28T12:00:00Z", "2028-02-29 23:59:59"},
		{license.Monthly, "2027-01-31T23:59:59Z", "2026-12-31T12:00:00Z", "2026-12-31 23:59:59"},
		{license.Yearly, "2027-11-30T23:59:59Z", "2027-11-29T12:00:00Z", "2027-11-30 23:59:59"},
		{license.Yearly, "2028-11-30T23:59:59Z", "2027-11-30T12:00:00Z", "2027-11-30 23:59:59"},
		{license.Yearly, "2028-11-30T23:59:59Z", "2027-12-01T12:00:00Z", ""},
		{license.Lifetime, "", "2027-01-31T12:00:00Z", ""},
	}
	for _, tt := range tests {
		t.Run(string(tt.term)+" "+tt.now, func(t *testing.T) {
			d := license.Document{Term: tt.term}
			if tt.end != "" {
				d.TermEnd = mustTime(t, tt.end)
			}
			w := changeWarning(d, mustTime(t, tt.now))
			if tt.warning == "" && w != "" || tt.warning != "" && !strings.Contains(w, tt.warning) {
				t.Errorf("warning %q; want one naming %q", w, tt.warning)
			}
		})
	}
}

func TestRenewedTermEnd(t *testing.T) {
	tests := []struct {
		term license.Term
		end  string
		now  string
		want string // "" when nothing is due
	}{
		{license.Monthly, "2027-04-30T23:59:59Z", "2027-04-29T23:59:59Z", ""},
		{license.Monthly, "2027-04-30T23:59:59Z", "2027-04-30T00:00:00Z", "2027-05-31T23:59:59Z"},
		{license.Monthly, "2027-01-31T23:59:59Z", "2027-01-31T10:00:00Z", "2027-02-28T23:59:59Z"},
		{license.Monthly, "2028-01-31T23:59:59Z", "2028-01-31T10:00:00Z", "2028-02-29T23:59:59Z"},
		{license.Monthly, "2028-02-29T23:59:59Z", "2028-02-29T00:00:01Z", "2028-03-31T23:59:59Z"},
		{license.Monthly, "2026-12-31T23:59:59Z", "2026-12-31T12:00:00Z", "2027-01-31T23:59:59Z"},
		{license.Monthly, "2027-04-30T23:59:59Z", "2027-07-30T12:00:00Z", "2027-07-31T23:59:59Z"}, // three terms at once
		{license.Monthly, "2027-04-30T23:59:59Z", "2027-08-02T12:00:00Z", "2027-08-31T23:59:59Z"},
		{license.Yearly, "2027-11-30T23:59:59Z", "2027-11-30T08:00:00Z", "2028-11-30T23:59:59Z"},
		{license.Yearly, "2029-02-28T23:59:59Z", "2029-02-28T08:00:00Z", "2030-02-28T23:59:59Z"},
		{license.Lifetime, "", "2027-11-30T08:00:00Z", ""},
	}
	for _, tt := range tests {
		t.Run(string(tt.term)+" "+tt.now, func(t *testing.T) {
			d := license.Document{Term: tt.term}
			if tt.end != "" {
				d.TermEnd = mustTime(t, tt.end)
			}
			got, due := renewedTermEnd(d, mustTime(t, tt.now))
			if tt.want == "" {
				if due {
					t.Errorf("renewal due: %v", got)
				}
				return
			}
			if !due || got.Format(time.RFC3339) != tt.want {
				t.Errorf("renewed to %v (due %v); want %s", got, due, tt.want)
			}
		})
	}
}

// TestRenewalOnTheLastDayOfTheTerm: the portal renews a subscription when
// it looks at the PBX on the last day of its term, in a new revision that
// the appliance receives.
func TestRenewalOnTheLastDayOfTheTerm(t *testing.T) {
	f := newFixture(t)
	f.setClock("2027-04-10T10:00:00Z")
	_, key := f.createPBX("acme.example", license.ModelVM, license.Monthly, acmeCounts)
	a := newTestAgent(f, license.ModelVM)
	if d := a.licence(a.activate(key)); d.Revision != 1 || d.TermEnd.Format(time.RFC3339) != "2027-04-30T23:59:59Z" {
		t.Fatalf("first licence: revision %d, term end %v", d.Revision, d.TermEnd)
	}
	f.setClock("2027-04-29T23:59:59Z")
	if got := f.show("acme.example"); got.Revision != 1 {
		t.Errorf("renewed the day before the last: revision %d, term end %v", got.Revision, got.TermEnd)
	}
	f.setClock("2027-04-30T00:00:00Z")
	ans, _ := a.heartbeat(1)
	d := a.licence(ans)
	if d.Revision != 2 || d.TermEnd.Format(time.RFC3339) != "2027-05-31T23:59:59Z" || d.Counts.String() != acmeCounts.String() {
		t.Errorf("renewed licence: revision %d, term end %v, %v; want revision 2 to 2027-05-31T23:59:59Z", d.Revision, d.TermEnd, d.Counts)
	}
	// A clock moved over several terms renews them in one revision.
	f.setClock("2027-07-30T12:00:00Z")
	if got := f.show("acme.example"); got.Revision != 3 || got.TermEnd.Format(time.RFC3339) != "2027-07-31T23:59:59Z" {
		t.Errorf("after three months: revision %d, term end %v", got.Revision, got.TermEnd)
	}
	// A lifetime PBX never renews.
	f.createPBX("forever.example", license.ModelHW, license.Lifetime, acmeCounts)
	f.setClock("2030-01-31T12:00:00Z")
	if got := f.show("forever.example"); got.Revision != 1 || got.TermEnd != nil {
		t.Errorf("lifetime PBX: revision %d, term end %v", got.Revision, got.TermEnd)
	}
}

// TestZeroLicenceCountdown: every count at zero starts the countdown signed
// into the licence; a licence added back clears it; past delete_at the PBX
// is deleted when the portal next looks at it.
func TestZeroLicenceCountdown(t *testing.T) {
	f := newFixture(t) // 2026-11-27 12:00 UTC
	_, key := f.createPBX("acme.example", license.ModelVM, license.Monthly, acmeCounts)
	a := newTestAgent(f, license.ModelVM)
	a.activate(key)
	ctx := context.Background()

	if res, err := f.change("acme.example", license.Counts{license.UCPremium: 0}); err != nil || res.PBX.ZeroSince != nil {
		t.Fatalf("one profile left: %+v, %v; want no countdown", res, err)
	}
	res, err := f.change("acme.example", license.Counts{license.PBXBasic: 0})
	if err != nil || res.PBX.ZeroSince == nil {
		t.Fatalf("all zero: %+v, %v; want a countdown", res, err)
	}
	ans, _ := a.heartbeat(1)
	d := a.licence(ans)
	if d.ZeroSince == nil || d.ZeroSince.Format(time.RFC3339) != "2026-11-27T12:00:00Z" ||
		d.StopAt.Format(time.RFC3339) != "2026-12-02T00:00:00Z" || d.DeleteAt.Format(time.RFC3339) != "2026-12-11T00:00:00Z" {
		t.Fatalf("signed countdown: zero_since %v, stop_at %v, delete_at %v", d.ZeroSince, d.StopAt, d.DeleteAt)
	}
	// Zero again is no change: the countdown does not restart.
	if res, err := f.change("acme.example", license.Counts{license.UCBusiness: 0}); err != nil || res.Changed {
		t.Errorf("zero again: %+v, %v; want unchanged", res, err)
	}

	f.clock.Add(4 * 24 * time.Hour) // 1 December: no longer the last day of November
	res, err = f.change("acme.example", license.Counts{license.UCPremium: 1})
	if err != nil || res.PBX.ZeroSince != nil || res.PBX.StopAt != nil || res.PBX.DeleteAt != nil {
		t.Fatalf("a licence added back: %+v, %v; want the countdown cleared", res.PBX, err)
	}
	res, err = f.change("acme.example", license.Counts{license.UCPremium: 0})
	if err != nil || res.PBX.ZeroSince == nil || res.PBX.DeleteAt.Format(time.RFC3339) != "2026-12-15T00:00:00Z" {
		t.Fatalf("zero again: %+v, %v; want a new countdown to 2026-12-15", res.PBX, err)
	}

	f.setClock("2026-12-14T23:59:59Z")
	if ans, _ := a.heartbeat(res.PBX.Revision); ans.Status != protocol.StatusOK {
		t.Errorf("a second before delete_at: %+v; want ok", ans)
	}
	f.setClock("2026-12-15T00:00:00Z")
	if ans, _ := a.heartbeat(res.PBX.Revision); ans.Status != protocol.StatusGone || ans.Reason != protocol.GoneDeleted {
		t.Errorf("at delete_at: %+v; want gone/deleted", ans)
	}
	got := f.show("acme.example")
	if !got.Deleted || got.DeletedAt == nil || got.DeletedAt.Format(time.RFC3339) != "2026-12-15T00:00:00Z" {
		t.Errorf("after delete_at: deleted %v at %v", got.Deleted, got.DeletedAt)
	}
	_, err = f.change("acme.example", license.Counts{license.UCPremium: 1})
	var ae *AdminError
	if !errors.As(err, &ae) || ae.Status != 409 || !strings.Contains(ae.Message, "end of its zero-licence countdown") {
		t.Errorf("a licence added after deletion: %v; want a conflict saying why", err)
	}
	if _, err := f.admin.CreatePBX(ctx, CreatePBXRequest{Name: "acme.example", Model: "WPBX-VM", Term: "monthly"}); err != nil {
		t.Errorf("the name of a deleted PBX is free: %v", err)
	}
}

// TestDeletionWhenTheClockMoves: a PBX past delete_at is deleted as soon as
// the portal's clock moves, and shows so in every listing.
func TestDeletionWhenTheClockMoves(t *testing.T) {
	f := newFixture(t)
	f.createPBX("acme.example", license.ModelVM, license.Monthly, acmeCounts)
	if _, err := f.change("acme.example", license.Counts{license.UCPremium: 0, license.PBXBasic: 0}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.admin.AdvanceClock(context.Background(), 15*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	list, err := f.admin.ListPBXs(context.Background())
	if err != nil || len(list) != 1 || !list[0].Deleted {
		t.Errorf("list after 15 days at zero: %+v, %v", list, err)
	}
	f.restart()
	if got := f.show("acme.example"); !got.Deleted {
		t.Error("the deletion did not persist")
	}
}

func TestSuspendAndResume(t *testing.T) {
	f := newFixture(t)
	_, key := f.createPBX("acme.example", license.ModelVM, license.Monthly, acmeCounts)
	a := newTestAgent(f, license.ModelVM)
	a.activate(key)
	ctx := context.Background()
	res, err := f.admin.Suspend(ctx, "acme.example")
	if err != nil || !res.Changed || !res.PBX.Suspended {
		t.Fatalf("suspend: %+v, %v", res, err)
	}
	if res, err := f.admin.Suspend(ctx, "acme.example"); err != nil || res.Changed {
		t.Errorf("suspend again: %+v, %v; want unchanged", res, err)
	}
	ans, _ := a.heartbeat(1)
	if d := a.licence(ans); !d.Suspended || d.SuspendedSince == nil || !d.SuspendedSince.Equal(base) {
		t.Errorf("suspended licence: %+v", d)
	}
	if res, err := f.admin.Resume(ctx, "acme.example"); err != nil || !res.Changed || res.PBX.Suspended {
		t.Errorf("resume: %+v, %v", res, err)
	}
	ans, _ = a.heartbeat(2)
	if d := a.licence(ans); d.Suspended || d.SuspendedSince != nil || d.Revision != 3 {
		t.Errorf("resumed licence: %+v", d)
	}
}
