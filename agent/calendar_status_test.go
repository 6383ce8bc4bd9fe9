package agent

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// TestStatusCalendar: the status shows the renewal day, the last moment
// for changes and, on the last day of a month, that decreases are
// refused, all on the licence clock (the portal's, months from this
// machine's); the renewal the portal makes on the last day shows at once.
func TestStatusCalendar(t *testing.T) {
	r := newRig(t)
	r.setPortalClock(t, "2027-03-10T10:00:00Z")
	a := r.activated(t, &fakeTelephony{})
	ctx := context.Background()

	c := a.Status().Calendar
	if c == nil || !timeIs(c.RenewsOn, "2027-03-31T00:00:00Z") || !timeIs(c.ChangesUntil, "2027-03-29T23:59:59Z") ||
		c.NoDecreasesToday || c.DecreasesFrom != nil {
		t.Fatalf("10 March, a term ending 31 March: %+v", c)
	}

	r.advancePortal(t, 21*day) // 31 March 10:00: the last day of the month and of the term
	if err := a.heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	s := a.Status()
	c = s.Calendar
	if c == nil || !c.NoDecreasesToday || !timeIs(c.DecreasesFrom, "2027-04-01T00:00:00Z") {
		t.Fatalf("31 March: %+v, want no decreases until 1 April", c)
	}
	// The portal renewed the term today (the licence carries 30 April);
	// the day still belongs to the term ending tonight.
	if s.License == nil || !timeIs(s.License.TermEnd, "2027-04-30T23:59:59Z") {
		t.Fatalf("31 March: the term not renewed by the portal: %+v", s.License)
	}
	if !timeIs(c.RenewsOn, "2027-03-31T00:00:00Z") || !timeIs(c.ChangesUntil, "2027-03-29T23:59:59Z") {
		t.Errorf("31 March, the renewal day: renews %v, changes until %v; want today and 29 March", c.RenewsOn, c.ChangesUntil)
	}

	r.advancePortal(t, day) // 1 April: decreases are taken again
	if err := a.heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	c = a.Status().Calendar
	if c == nil || c.NoDecreasesToday || c.DecreasesFrom != nil {
		t.Fatalf("1 April: %+v, want decreases taken", c)
	}
	if !timeIs(c.RenewsOn, "2027-04-30T00:00:00Z") || !timeIs(c.ChangesUntil, "2027-04-28T23:59:59Z") {
		t.Errorf("1 April, the new term: renews %v, changes until %v; want 30 and 28 April", c.RenewsOn, c.ChangesUntil)
	}
}

func timeIs(t *time.Time, want string) bool {
	return t != nil && t.UTC().Format(time.RFC3339) == want
}

// TestStatusOveruseInHeadline: users beyond the licence are in the phrase
// after the state's name, never "licensed by the portal".
func TestStatusOveruseInHeadline(t *testing.T) {
	r := newRig(t)
	src := &fakeUsers{counts: license.Counts{license.UCPremium: 2}}
	a := r.admitting(t, license.Counts{license.UCPremium: 2}, src)
	ctx := context.Background()
	if err := a.countUsers(ctx); err != nil {
		t.Fatal(err)
	}
	if s := a.Status(); s.State != "active" || s.Next != "licensed by the portal" {
		t.Fatalf("within the licence: %s %q", s.State, s.Next)
	}
	src.set(license.Counts{license.UCPremium: 5}, nil)
	if err := a.countUsers(ctx); err != nil {
		t.Fatal(err)
	}
	s := a.Status()
	if s.State != "active" || !strings.HasPrefix(s.Next, "3 users over the licence: no new users") || strings.Contains(s.Next, "licensed by the portal") {
		t.Errorf("3 users over: %s %q", s.State, s.Next)
	}
	if !strings.Contains(s.Summary, "3 users have no licence") {
		t.Errorf("summary %q does not name the over-use", s.Summary)
	}
	if line := a.statusLine(); !strings.Contains(line, "over-use: UC-Premium 3") {
		t.Errorf("STATUS=%s does not name the over-use", line)
	}
}

// TestStatusDeletedByRebind: after an RMA the old appliance's status says
// when, on the licence clock, the PBX left it and that another appliance
// took it, and says so again after a restart.
func TestStatusDeletedByRebind(t *testing.T) {
	r := newRig(t)
	r.setPortalClock(t, "2027-03-10T10:00:00Z")
	key := r.createPBX(t, "acme.example", license.Counts{license.UCPremium: 1})
	a := r.newAgent(t)
	ctx := context.Background()
	if err := a.Activate(ctx, key); err != nil {
		t.Fatal(err)
	}
	r.advancePortal(t, 3*day)
	if _, err := r.admin.Rebind(ctx, "acme.example"); err != nil {
		t.Fatal(err)
	}
	if err := a.heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	for _, a := range []*Agent{a, r.newAgent(t)} {
		s := a.Status()
		if s.State != "deleted" || s.Deleted == nil || !s.Deleted.Rebound || !timeIs(s.Deleted.At, "2027-03-13T10:00:00Z") {
			t.Fatalf("after the re-bind: %s %+v, want deleted, re-bound at 2027-03-13T10:00:00Z", s.State, s.Deleted)
		}
		if !strings.Contains(s.Next, "re-bound to another appliance") || strings.Contains(s.Next, "add a licence back") {
			t.Errorf("next %q", s.Next)
		}
		if s.Calendar != nil {
			t.Errorf("a deleted PBX shows a calendar: %+v", s.Calendar)
		}
	}
}

// TestStatusLocalBehindInWords: how far the local clock lags is said in
// words, not as a Go duration.
func TestStatusLocalBehindInWords(t *testing.T) {
	r := newRig(t)
	a := r.activated(t, nil)
	r.time.wall = r.time.wall.Add(-6 * day)
	if got := a.Status().Clock.LocalBehind; got != "6 days" {
		t.Errorf("local clock 6 days back: local_behind %q, want \"6 days\"", got)
	}
}
