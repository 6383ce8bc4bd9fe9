package agent

import (
	"context"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/internal/portalsim"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// TestPortalGoneThirtyDays: the portal fails in turn every way the
// simulator can for a month of licence time, one heartbeat an hour.
// The agent never takes a bad licence, keeps its revision, answers
// admission throughout the offline grace, lapses after it, and is active
// again with the revision issued meanwhile when the portal answers again.
func TestPortalGoneThirtyDays(t *testing.T) {
	r := newRig(t)
	src := &fakeUsers{counts: license.Counts{license.UCPremium: 3}}
	a := r.admitting(t, license.Counts{license.UCPremium: 10}, src)
	held := a.Status().License.Revision
	lastSuccess := *a.Status().Heartbeat.LastSuccess
	r.licences(t, license.Counts{license.UCPremium: 12}) // issued during the outage: no answer carrying it arrives intact

	// Each day the portal fails another way: 500, 429 with Retry-After,
	// a truncated answer, a badly signed one.
	faults := []portalsim.Faults{
		{ErrorRate: 1},
		{RateLimitRate: 1, RetryAfter: portalsim.Duration(2 * time.Second)},
		{TruncateRate: 1},
		{BadSignatureRate: 1},
	}
	for h := 1; h <= 30*24+1; h++ {
		if h%24 == 1 {
			if _, err := r.admin.SetFaults(context.Background(), faults[h/24%len(faults)]); err != nil {
				t.Fatal(err)
			}
		}
		r.time.run(time.Hour)
		if err := a.heartbeat(context.Background()); err == nil {
			t.Fatalf("hour %d: a heartbeat succeeded through %v", h, faults[h/24%len(faults)])
		}
		s := a.Status()
		if s.License == nil || s.License.Revision < held {
			t.Fatalf("hour %d: licence %+v, was revision %d", h, s.License, held)
		}
		held = s.License.Revision
		if lic := s.License.Profiles["uc-premium"].Licensed; lic != 10 && lic != 12 {
			t.Fatalf("hour %d: %d uc-premium licences: neither revision's", h, lic)
		}
		if err := a.countUsers(context.Background()); err != nil { // as the daemon's count loop does
			t.Fatal(err)
		}
		offline := a.lic.clock.Now().Sub(lastSuccess)
		ans := a.Admit(context.Background(), dry(license.UCPremium, 1))
		switch {
		case offline < 30*day && !ans.Allowed:
			t.Fatalf("hour %d, %v since the last success: admission denied within the offline grace: %s", h, offline, ans.Reason)
		case offline > 30*day && ans.Allowed:
			t.Fatalf("hour %d, %v since the last success: admission allowed past the offline grace (state %s)", h, offline, s.State)
		}
	}

	if err := r.admin.ClearFaults(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := a.heartbeat(context.Background()); err != nil {
		t.Fatalf("heartbeat with the portal back: %v", err)
	}
	s := a.Status()
	if s.State != "active" || s.License.Revision != 2 || s.License.Profiles["uc-premium"].Licensed != 12 || s.Heartbeat.LastError != "" {
		t.Errorf("portal back: state %s, revision %d, %+v, error %q; want active with revision 2 (12 licences)",
			s.State, s.License.Revision, s.License.Profiles["uc-premium"], s.Heartbeat.LastError)
	}
	mustAdmit(t, a.Admit(context.Background(), dry(license.UCPremium, 1)), 8)
}

// TestClockSetBackThirtyDays: root sets the machine's clock back 30 days,
// before and across a restart. The licence clock stays at its persisted
// high-water mark, reports the local clock as behind, and no deadline
// moves: a clock set back never extends a licence.
func TestClockSetBackThirtyDays(t *testing.T) {
	r := newRig(t)
	key := r.createPBX(t, "acme.example", license.Counts{license.UCPremium: 10})
	a := r.newAgent(t)
	if err := a.Activate(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	before := a.Status()
	licenceNow := a.lic.clock.Now()

	r.time.wall = r.time.wall.Add(-30 * day)
	r.time.run(time.Minute)
	for _, step := range []struct {
		name string
		a    *Agent
	}{{"running", a}, {"restarted", r.newAgent(t)}} {
		s := step.a.Status()
		now := step.a.lic.clock.Now()
		if now.Before(licenceNow) {
			t.Errorf("%s: licence clock %v, behind the %v it had reached", step.name, now, licenceNow)
		}
		if s.Clock.LocalBehind == "" {
			t.Errorf("%s: the local clock 30 days behind is not reported: %+v", step.name, s.Clock)
		}
		if !s.Deadlines.OfflineGraceEnd.Equal(*before.Deadlines.OfflineGraceEnd) || s.State != before.State {
			t.Errorf("%s: offline grace ends %v (was %v), state %s (was %s)", step.name,
				s.Deadlines.OfflineGraceEnd, before.Deadlines.OfflineGraceEnd, s.State, before.State)
		}
		// The portal still takes the agent's requests: they carry the
		// licence clock, not the local one.
		if err := step.a.heartbeat(context.Background()); err != nil {
			t.Errorf("%s: heartbeat with the local clock set back: %v", step.name, err)
		}
	}
}
