package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
)

// humanStatus returns `pbx-agent status` as an admin reads it, and logs it.
func (a *appliance) humanStatus(what string) string {
	a.t.Helper()
	r := a.cli("", "status")
	if !answered(r) {
		a.t.Fatalf("%s status: exit %d: %s", a.name, r.code, r.stderr)
	}
	// "State               stopping: ...": the code must be that state's.
	state, _, _ := strings.Cut(strings.TrimPrefix(r.stdout, "State"), ":")
	a.wantStateExit(r, strings.TrimSpace(state))
	a.t.Logf("pbx-agent status, %s:\n%s", what, r.stdout)
	return r.stdout
}

// auditLog reads the agent's audit log through `pbx-agent audit --json`.
func (a *appliance) auditLog() apitype.AuditLog {
	a.t.Helper()
	r := a.cli("", "audit", "--json")
	var log apitype.AuditLog
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &log) != nil {
		a.t.Fatalf("%s audit --json: exit %d: %s%s", a.name, r.code, r.stdout, r.stderr)
	}
	return log
}

// states lists the states the audit log records the agent entering.
func states(log apitype.AuditLog) []string {
	var out []string
	for _, e := range log.Events {
		if e.Kind == "state.changed" {
			to, _ := e.Fields["to"].(string)
			out = append(out, to)
		}
	}
	return out
}

// hasInOrder reports whether want appears in got in order, other states
// possibly between.
func hasInOrder(got, want []string) bool {
	i := 0
	for _, s := range got {
		if i < len(want) && s == want[i] {
			i++
		}
	}
	return i == len(want)
}

func timeIs(t *time.Time, want string) bool {
	return t != nil && t.UTC().Format(time.RFC3339) == want
}

// TestZeroLicencesLifecycle lives through the zero-licence countdown with
// both binaries: every licence to zero → stopping, with stop_at and
// delete_at 5 and 14 calendar days out → the portal's clock 6 days on →
// stopped → a licence added back → active → zero again → 15 days on →
// deleted, the licence wiped and the audit log kept.
func TestZeroLicencesLifecycle(t *testing.T) {
	p := startPortal(t, t.TempDir(), freeAddr(t), "--interval", "1s")
	// A fixed date: decreases are refused on the last day of a month.
	p.admin("clock", "set", "2027-03-10T10:00:00Z")
	key := p.admin("pbx", "create", "--name", "zero.example", "--users", "uc-premium=10", "--users", "pbx-basic=3")
	a := newAppliance(t, "zero", p, "200ms")
	a.start()
	if r := a.cli(key, "activate"); r.code != 0 {
		t.Fatalf("activate: exit %d: %s", r.code, r.stderr)
	}
	a.waitState("active", 5*time.Second)

	p.admin("pbx", "licenses", "zero.example", "uc-premium=0", "pbx-basic=0")
	s := a.waitState("stopping", 5*time.Second)
	if !timeIs(s.Deadlines.StopAt, "2027-03-15T00:00:00Z") || !timeIs(s.Deadlines.DeleteAt, "2027-03-24T00:00:00Z") {
		t.Errorf("countdown from 2027-03-10: stop_at %v, delete_at %v; want the starts of 15 and 24 March (5 and 14 calendar days)",
			s.Deadlines.StopAt, s.Deadlines.DeleteAt)
	}
	if out := a.humanStatus("every licence at zero"); !strings.Contains(out, "stopping: no new users; telephony stops in 5 days, PBX deleted in 14 days; to keep the PBX, add a licence back on the portal and contact your Area Manager") {
		t.Errorf("human status during the countdown:\n%s", out)
	}

	p.admin("clock", "advance", "6d")
	a.waitState("stopped", 5*time.Second)
	if out := a.humanStatus("six days later"); !strings.Contains(out, "telephony stopped; PBX deleted in 8 days") {
		t.Errorf("human status when stopped:\n%s", out)
	}

	p.admin("pbx", "licenses", "zero.example", "uc-premium=1")
	s = a.waitState("active", 5*time.Second)
	if s.Deadlines.StopAt != nil || s.Deadlines.DeleteAt != nil || s.License.Profiles["uc-premium"].Licensed != 1 {
		t.Errorf("a licence added back: deadlines %+v, licence %+v", s.Deadlines, s.License)
	}

	p.admin("pbx", "licenses", "zero.example", "uc-premium=0")
	s = a.waitState("stopping", 5*time.Second)
	if !timeIs(s.Deadlines.StopAt, "2027-03-21T00:00:00Z") || !timeIs(s.Deadlines.DeleteAt, "2027-03-30T00:00:00Z") {
		t.Errorf("countdown from 2027-03-16: stop_at %v, delete_at %v", s.Deadlines.StopAt, s.Deadlines.DeleteAt)
	}
	p.admin("clock", "advance", "15d")
	// The state is deleted as soon as the licence clock passes delete_at;
	// the licence is wiped when the portal confirms (its gone answer, or
	// its own time past delete_at): a moment later.
	eventually(t, 5*time.Second, "deleted, the licence wiped", func() (bool, string) {
		s = a.status()
		return s.State == "deleted" && s.License == nil, s.State + ": " + s.Summary
	})
	if s.PBX == nil || s.PBX.Name != "zero.example" {
		t.Errorf("deleted: licence %+v, PBX %+v; want the licence wiped and the PBX still named", s.License, s.PBX)
	}
	if out := a.humanStatus("fifteen days later"); !strings.Contains(out, "deleted: PBX deleted") || !strings.Contains(out, "add a licence back on the portal and contact your Area Manager") {
		t.Errorf("human status when deleted:\n%s", out)
	}
	if out := p.admin("pbx", "show", "zero.example"); !strings.Contains(out, "status:         deleted") {
		t.Errorf("the portal after the countdown:\n%s", out)
	}

	log := a.auditLog()
	if got, want := states(log), []string{"active", "stopping", "stopped", "active", "stopping", "deleted"}; !hasInOrder(got, want) {
		t.Errorf("audit log states %v; want %v in order", got, want)
	}
	var deleted, accepted int
	for _, e := range log.Events {
		switch e.Kind {
		case "deleted":
			deleted++
		case "licence.accepted":
			accepted++
		}
	}
	if deleted != 1 || accepted < 3 || log.Events[0].Kind != "state.changed" {
		t.Errorf("audit log: %d deletions, %d licences accepted:\n%+v", deleted, accepted, log.Events)
	}
	fi, err := os.Stat(filepath.Join(filepath.Dir(a.config), "state", "audit.log"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("audit.log after deletion: %v, %v; want it kept, 0600", fi, err)
	}
}

// TestNoDecreaseOnTheLastDayOfAMonth: on 31 January a decrease is refused
// with a message naming the rule, an increase the same day is taken (with
// the 2-day warning) and reaches the agent; on 1 February the decrease is
// taken.
func TestNoDecreaseOnTheLastDayOfAMonth(t *testing.T) {
	p := startPortal(t, t.TempDir(), freeAddr(t), "--interval", "1s")
	p.admin("clock", "set", "2027-01-31T10:00:00Z")
	// Created after the clock moved: the key is valid in the portal's time.
	key := p.admin("pbx", "create", "--name", "rules.example", "--users", "uc-premium=10", "--users", "pbx-basic=3")
	a := newAppliance(t, "rules", p, "200ms")
	a.start()
	if r := a.cli(key, "activate"); r.code != 0 {
		t.Fatalf("activate: exit %d: %s", r.code, r.stderr)
	}
	a.waitState("active", 5*time.Second)

	for _, change := range [][]string{{"uc-premium=5"}, {"pbx-basic=0"}, {"uc-premium=12", "pbx-basic=2"}} {
		r := p.try(append([]string{"pbx", "licenses", "rules.example"}, change...)...)
		if r.code != 2 || r.stdout != "" || !strings.Contains(r.stderr, `refused by the portal rule "no decrease on the last day of a month"`) ||
			!strings.Contains(r.stderr, "2027-01-31") {
			t.Errorf("%v on 31 January: exit %d, stdout %q, stderr %q; want a refusal naming the rule", change, r.code, r.stdout, r.stderr)
		}
	}
	r := p.try("pbx", "licenses", "rules.example", "uc-premium=12")
	if r.code != 0 || !strings.Contains(r.stdout, "uc-premium=12") ||
		!strings.Contains(r.stderr, "warning: this change was made less than 2 days before the term ends (2027-01-31 23:59:59 UTC") {
		t.Errorf("increase on 31 January: exit %d, stdout %q, stderr %q; want it taken, with the 2-day warning", r.code, r.stdout, r.stderr)
	}
	eventually(t, 5*time.Second, "the increase on the agent", func() (bool, string) {
		s := a.status()
		l := s.License
		return l.Profiles["uc-premium"].Licensed == 12 && l.Profiles["pbx-basic"].Licensed == 3, s.Heartbeat.LastError
	})

	p.admin("clock", "set", "2027-02-01T10:00:00Z")
	if out := p.admin("pbx", "licenses", "rules.example", "uc-premium=5"); !strings.Contains(out, "uc-premium=5") {
		t.Errorf("decrease on 1 February printed %q", out)
	}
	eventually(t, 5*time.Second, "the decrease on the agent", func() (bool, string) {
		s := a.status()
		return s.License.Profiles["uc-premium"].Licensed == 5, s.Heartbeat.LastError
	})
}

// TestRenewalSeenByTheAgent: a monthly term renews on its last day, and
// the agent receives the new term end in a new revision.
func TestRenewalSeenByTheAgent(t *testing.T) {
	p := startPortal(t, t.TempDir(), freeAddr(t), "--interval", "1s")
	p.admin("clock", "set", "2027-04-29T12:00:00Z")
	key := p.admin("pbx", "create", "--name", "renew.example", "--users", "uc-business=4")
	a := newAppliance(t, "renew", p, "200ms")
	a.start()
	if r := a.cli(key, "activate"); r.code != 0 {
		t.Fatalf("activate: exit %d: %s", r.code, r.stderr)
	}
	s := a.waitState("active", 5*time.Second)
	if !timeIs(s.License.TermEnd, "2027-04-30T23:59:59Z") {
		t.Fatalf("first term ends %v, want 2027-04-30T23:59:59Z", s.License.TermEnd)
	}
	first := s.License.Revision

	p.admin("clock", "advance", "1d") // 30 April: the last day of the term
	eventually(t, 5*time.Second, "the renewed term on the agent", func() (bool, string) {
		s = a.status()
		return timeIs(s.License.TermEnd, "2027-05-31T23:59:59Z"), s.License.TermEnd.String() + " " + s.Heartbeat.LastError
	})
	if s.License.Revision != first+1 || s.State != "active" || s.License.Profiles["uc-business"].Licensed != 4 {
		t.Errorf("after renewal: %s, revision %d (was %d), %+v", s.State, s.License.Revision, first, s.License.Profiles)
	}
	if out := a.humanStatus("after renewal"); !strings.Contains(out, "Term                monthly, ends 2027-05-31T23:59:59Z") {
		t.Errorf("human status after renewal:\n%s", out)
	}
	var renewed bool
	for _, e := range a.auditLog().Events {
		renewed = renewed || e.Kind == "licence.accepted" && e.Fields["term_end"] == "2027-05-31T23:59:59Z"
	}
	if !renewed {
		t.Error("the audit log does not record the renewed licence")
	}
}
