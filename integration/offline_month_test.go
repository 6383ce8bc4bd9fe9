package integration

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
)

// TestAirGappedMonthByFiles: a month of an air-gapped PBX, every step
// driven by a file carried by hand. The portal's clock and the
// appliance's (a pbxtestclock build: its boot time moved, as time that
// passed while it ran) move together: activation on day 0, renewals on
// days 10 and 20 (the second carrying a decrease), every licence at zero
// on day 22 (the countdown starts with the file, and the PBX stops five
// days later with no file at all), and a licence added back on day 30
// that restores it. The portal's chain never forks.
func TestAirGappedMonthByFiles(t *testing.T) {
	bin := testClockAgent(t)
	p := startPortal(t, t.TempDir(), freeAddr(t))
	day0 := safeDay() // the 10th, so no step falls on the last day of a month
	p.admin("clock", "set", day0.Format(time.RFC3339))
	key := p.admin("pbx", "create", "--name", "month.example", "--model", "WPBX-VM", "--term", "monthly", "--users", "uc-premium=10")
	a := airGappedAppliance(t, "month", p)
	clockFile := filepath.Join(t.TempDir(), "clock")
	setClock(t, clockFile, 0, 0)
	a.startTestClock(bin, clockFile)

	var elapsed time.Duration
	advance := func(days int) { // the same days pass at the portal and on the appliance
		t.Helper()
		p.admin("clock", "advance", fmt.Sprintf("%dd", days))
		elapsed += time.Duration(days) * 24 * time.Hour
		setClock(t, clockFile, elapsed, elapsed)
	}
	renew := func() { exchange(t, a, p, "", []string{"report", "--offline"}, "offline-renew", "month.example") }
	want := func(state string, licensed int, horizon time.Time) apitype.Status {
		t.Helper()
		s := a.waitState(state, 10*time.Second)
		if got := s.License.Profiles["uc-premium"].Licensed; got != licensed {
			t.Fatalf("day %d: %d uc-premium licensed, want %d", int(elapsed.Hours()/24), got, licensed)
		}
		if s.Mode != apitype.ModeAirGapped || s.Offline == nil || s.Offline.Horizon == nil || !near(*s.Offline.Horizon, horizon) {
			t.Fatalf("day %d: mode %q, offline %+v; want air-gapped until %s", int(elapsed.Hours()/24), s.Mode, s.Offline, horizon)
		}
		return s
	}
	const grace = 30 * 24 * time.Hour // the portal's default horizon

	exchange(t, a, p, key, []string{"activate", "--offline"}, "offline-activate", "month.example")
	want("active", 10, day0.Add(grace))

	advance(10)
	s := want("active", 10, day0.Add(grace))
	if s.Offline.NextDue == nil || !near(*s.Offline.NextDue, day0.Add(grace-7*24*time.Hour)) {
		t.Errorf("day 10: next file due %v, want a week before the horizon", s.Offline.NextDue)
	}
	renew()
	want("active", 10, day0.AddDate(0, 0, 10).Add(grace))

	advance(2)
	p.admin("pbx", "licenses", "month.example", "uc-premium=4")
	want("active", 10, day0.AddDate(0, 0, 10).Add(grace)) // until a file brings it
	advance(8)
	renew()
	want("active", 4, day0.AddDate(0, 0, 20).Add(grace))

	advance(2)
	p.admin("pbx", "licenses", "month.example", "uc-premium=0")
	renew()
	zero := day0.AddDate(0, 0, 22)
	s = want("stopping", 0, zero.Add(grace))
	if s.Deadlines.StopAt == nil || s.Deadlines.DeleteAt == nil ||
		!s.Deadlines.StopAt.After(zero) || s.Deadlines.DeleteAt.Sub(*s.Deadlines.StopAt) != 9*24*time.Hour {
		t.Fatalf("day 22: deadlines %+v; want stop 5 days after zero, delete 9 days after that", s.Deadlines)
	}
	stopAt := *s.Deadlines.StopAt

	advance(int(stopAt.Sub(zero).Hours()/24) + 1) // past stop_at, and no file
	want("stopped", 0, zero.Add(grace))

	for elapsed < 30*24*time.Hour {
		advance(1)
	}
	p.admin("pbx", "licenses", "month.example", "uc-premium=3")
	renew()
	want("active", 3, day0.AddDate(0, 0, 30).Add(grace))

	var shown struct {
		ChainForks int `json:"chain_forks"`
	}
	if err := json.Unmarshal([]byte(p.admin("pbx", "show", "month.example", "--json")), &shown); err != nil {
		t.Fatal(err)
	}
	if shown.ChainForks != 0 {
		t.Fatalf("the chain forked %d times in a month of files", shown.ChainForks)
	}
}

// near reports whether got is want, or the few seconds later the
// portal's clock, which runs on from where it was set, has moved on.
func near(got, want time.Time) bool {
	return !got.Before(want) && got.Sub(want) < time.Minute
}
