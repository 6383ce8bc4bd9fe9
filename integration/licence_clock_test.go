package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/internal/portalsim"
	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// TestLicenceClockSixtyDaysAhead runs the portal 60 days ahead of the
// machine, as after `clock advance`, and checks that every time the agent
// shows or reports, and every window it judges, is on the licence clock
// (the portal's), not the machine's: the support SSH "until" in the status
// and in the result the portal receives (it once showed "63 days ago"), an
// upgrade with the simulator's default window (taken at once, neither
// refused as over nor held for 60 days), the renewal and changes
// deadline, and the zero-licence countdown to the deletion time.
func TestLicenceClockSixtyDaysAhead(t *testing.T) {
	if _, err := os.Stat(sshd); err != nil {
		t.Skipf("%s not installed (Debian: openssh-server): %v", sshd, err)
	}
	const ahead = 60 * 24 * time.Hour
	p := startPortal(t, t.TempDir(), freeAddr(t), "--interval", "1s")
	portalNow := func() time.Time {
		t.Helper()
		out := strings.TrimSpace(p.admin("clock"))
		now, err := time.Parse(time.RFC3339, out)
		if err != nil {
			t.Fatalf("pbx-portal-sim clock: %q: %v", out, err)
		}
		return now
	}
	p.admin("clock", "advance", "60d")
	if license.LastDayOfMonth(portalNow()) { // the zero-licence step below is a decrease
		p.admin("clock", "advance", "1d")
	}
	// onPortalClock fails unless t is within slack of the portal's now (the
	// machine's clock is 60 days behind it).
	onPortalClock := func(what string, got, want time.Time, slack time.Duration) {
		t.Helper()
		if d := got.Sub(want); d < -slack || d > slack {
			t.Errorf("%s %v is %v from %v on the portal's clock; want within %v", what, got, d, want, slack)
		}
		if d := time.Until(got); d < ahead-24*time.Hour {
			t.Errorf("%s %v is only %v from the machine's clock; want the portal's 60 days ahead", what, got, d)
		}
	}

	key := p.admin("pbx", "create", "--name", "acme.example", "--model", "WPBX-VM", "--term", "monthly", "--users", "uc-premium=5")
	a, port := sshAppliance(t, p, key)
	s := a.status()
	onPortalClock("the status's licence time", s.Clock.Now, portalNow(), time.Minute)

	// The renewal and the changes deadline: the current term on the
	// portal's clock, its last day, and 2 days before the term ends.
	if s.License == nil || s.License.TermEnd == nil || s.Calendar == nil || s.Calendar.RenewsOn == nil || s.Calendar.ChangesUntil == nil {
		t.Fatalf("status licence %+v, calendar %+v; want a term end, a renewal and a changes deadline", s.License, s.Calendar)
	}
	end := *s.License.TermEnd
	if renews := *s.Calendar.RenewsOn; !renews.Equal(license.StartOfDay(end)) || renews.Before(license.StartOfDay(s.Clock.Now)) ||
		renews.Sub(s.Clock.Now) > 31*24*time.Hour {
		t.Errorf("renews on %v (term end %v, now %v); want the term's last day, within the month ahead on the portal's clock", renews, end, s.Clock.Now)
	}
	if changes := *s.Calendar.ChangesUntil; !changes.Equal(end.Add(-2 * 24 * time.Hour)) {
		t.Errorf("changes until %v; want the term end %v less 2 days", changes, end)
	}
	onPortalClock("the renewal", *s.Calendar.RenewsOn, portalNow(), 31*24*time.Hour)

	// Support SSH, pushed with a key: its end is 10 minutes after the
	// portal's now, in the status and in the result the portal receives.
	keyFile := filepath.Join(t.TempDir(), "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "support@example", "-f", keyFile).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	p.admin("command", "acme.example", "ssh-open", "--ttl", "10m", "--pubkey", keyFile+".pub")
	waitPort(t, port, true, 20*time.Second)
	var until time.Time
	eventually(t, 20*time.Second, "the status shows the access open", func() (bool, string) {
		s := a.status()
		if s.SSH.Open && s.SSH.Until != nil {
			until = *s.SSH.Until
			return true, ""
		}
		return false, fmt.Sprintf("%+v", s.SSH)
	})
	onPortalClock("SSH until", until, portalNow().Add(10*time.Minute), time.Minute)
	commands := func() []portalsim.CommandView {
		t.Helper()
		var cmds []portalsim.CommandView
		out := p.admin("command", "list", "acme.example", "--json")
		if err := json.Unmarshal([]byte(out), &cmds); err != nil {
			t.Fatalf("command list --json: %v: %s", err, out)
		}
		return cmds
	}
	eventually(t, 20*time.Second, "the portal receives the SSH result on its own clock", func() (bool, string) {
		for _, c := range commands() {
			if c.Result != nil && c.Result.SSH != nil && c.Result.SSH.Open {
				return c.Result.SSH.Until.Equal(until), fmt.Sprintf("the portal received until %v, the status says %v", c.Result.SSH.Until, until)
			}
		}
		return false, "no SSH result yet"
	})

	// An upgrade in the simulator's default window (the portal's now to
	// 2 hours on): open on the licence clock, so it is neither refused as
	// over nor held waiting, and it ends (here without a repository set
	// up: failed by the helper, past the window).
	id := strings.TrimSpace(p.admin("command", "acme.example", "upgrade", "--version", "7.03.20261120.1"))
	var upgrade portalsim.CommandView
	eventually(t, 30*time.Second, "the upgrade's result", func() (bool, string) {
		for _, c := range commands() {
			if c.ID == id {
				upgrade = c
				return c.Result != nil, fmt.Sprintf("%s, status: %s", c.State, a.status().WMS.Upgrade)
			}
		}
		return false, "not listed"
	})
	// Taken in its window by the agent and by the root helper alike: the
	// helper's own answer is the missing repository.
	if r := upgrade.Result; r.State != protocol.CommandFailed || strings.Contains(r.Message, "window") || !strings.Contains(r.Message, "upgrade.repo_url") {
		t.Errorf("the upgrade in the default window ended %s (%s): %s; want it taken in its window, failed by the helper for want of upgrade.repo_url", r.State, r.Reason, r.Message)
	}

	// Every licence to zero: the countdown's days are the portal's.
	p.admin("pbx", "licenses", "acme.example", "uc-premium=0")
	s = a.waitState("stopping", 10*time.Second)
	day := license.StartOfDay(portalNow())
	if s.Deadlines.StopAt == nil || !s.Deadlines.StopAt.Equal(day.AddDate(0, 0, license.StopAfterDays)) ||
		s.Deadlines.DeleteAt == nil || !s.Deadlines.DeleteAt.Equal(day.AddDate(0, 0, license.DeleteAfterDays)) {
		t.Fatalf("stopping: deadlines %+v; want stop and deletion 5 and 14 days from %v on the portal's clock", s.Deadlines, day)
	}
	deleteAt := *s.Deadlines.DeleteAt
	r := a.cli("", "status")
	if words := strings.Join(strings.Fields(r.stdout), " "); r.code != stateExits["stopping"] || !strings.Contains(words, "in "+fmt.Sprint(license.DeleteAfterDays-1)+" days") &&
		!strings.Contains(words, "in "+fmt.Sprint(license.DeleteAfterDays)+" days") {
		t.Errorf("status while stopping says no deletion in 13 or 14 days (the licence clock's):\n%s", r.stdout)
	}

	p.admin("clock", "advance", "15d")
	s = a.waitState("deleted", 15*time.Second)
	if s.Deleted == nil || s.Deleted.At == nil {
		t.Fatalf("deleted without a time: %+v", s.Deleted)
	}
	// Deleted at the signed delete_at, on the portal's clock, though the
	// agent learns it a day and more later.
	onPortalClock("the deletion time", *s.Deleted.At, deleteAt, 0)
	if r := a.cli("", "status"); !strings.Contains(r.stdout, s.Deleted.At.UTC().Format("2006-01-02 15:04 UTC")) {
		t.Errorf("status does not say when the PBX was deleted (%v):\n%s", *s.Deleted.At, r.stdout)
	}
}
