package integration

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/internal/portalsim"
)

// TestRMAAfterTheKeyExpired walks a hardware replacement long after the
// PBX's key expired (30 days): the expired key is refused (exit 2), a key
// issued again is refused while the old appliance holds the PBX (exit 3),
// the re-bind prints a new key, the new appliance activates with it, and
// the old one is told the PBX left it, and when.
func TestRMAAfterTheKeyExpired(t *testing.T) {
	p := startPortal(t, t.TempDir(), freeAddr(t), "--interval", "1s")
	oldKey := p.admin("pbx", "create", "--name", "acme.example", "--model", "WPBX-VM", "--term", "monthly",
		"--users", "uc-premium=10", "--users", "pbx-basic=3")

	a := newAppliance(t, "a", p, "200ms")
	a.start()
	if r := a.cli(oldKey, "activate"); r.code != 0 {
		t.Fatalf("activating A: exit %d: %s", r.code, r.stderr)
	}
	before := a.waitState("active", 5*time.Second).Clock.Now

	p.admin("clock", "advance", "40d")
	// A heartbeats on: the portal's time reaches it, and it stays active.
	eventually(t, 5*time.Second, "A on the portal's clock, 40 days on", func() (bool, string) {
		s := a.status()
		return s.State == "active" && s.Clock.Now.Sub(before) >= 40*24*time.Hour, s.State + " " + s.Clock.Now.String()
	})

	b := newAppliance(t, "b", p, "200ms")
	b.start()
	// The creation key is 40 days old: the portal (B's own clock is 40
	// days behind it, so B cannot tell) refuses it as an invalid key, exit
	// 2 as docs/protocol.md says, and says how to get a new one.
	if r := b.cli(oldKey, "activate"); r.code != 2 || !strings.Contains(r.stderr, "expired") ||
		!strings.Contains(r.stderr, "refused by the portal") ||
		!strings.Contains(r.stderr, "issue a new key on the portal (pbx-portal-sim pbx key acme.example)") {
		t.Fatalf("B with the expired key: exit %d, stderr %q; want exit 2 and the portal's refusal naming pbx key", r.code, r.stderr)
	}
	// A key issued again is fresh, but the PBX is still bound to A: the
	// portal refuses B until the re-bind (exit 3).
	again := p.admin("pbx", "key", "acme.example")
	if r := b.cli(again, "activate"); r.code != 3 || !strings.Contains(r.stderr, "bound") {
		t.Fatalf("B with a new key before the re-bind: exit %d, stderr %q; want exit 3, bound to another appliance", r.code, r.stderr)
	}

	rebind := p.try("pbx", "rebind", "acme.example")
	newKey := rebind.stdout
	if rebind.code != 0 || !strings.HasPrefix(newKey, "eyJ") || strings.Count(newKey, "\n") != 1 ||
		!strings.Contains(rebind.stderr, "acme.example: released from appliance ") {
		t.Fatalf("pbx rebind: exit %d, stdout %q, stderr %q; want the new key alone on stdout", rebind.code, newKey, rebind.stderr)
	}
	if r := b.cli(newKey, "activate"); r.code != 0 {
		t.Fatalf("activating B with the re-bind's key: exit %d: %s", r.code, r.stderr)
	}
	if s := b.waitState("active", 5*time.Second); s.PBX == nil || s.PBX.Name != "acme.example" ||
		s.License == nil || s.License.Profiles["uc-premium"].Licensed != 10 {
		t.Errorf("B after activation: %+v", s)
	}

	s := a.waitState("deleted", 5*time.Second)
	if s.License != nil || !strings.Contains(s.Summary, "re-bound to another appliance") {
		t.Errorf("A after the re-bind: licence %+v, summary %q; want no licence and the re-binding said", s.License, s.Summary)
	}
	// When it left is on the licence clock: 40 days after the activation,
	// not the machine's today.
	if d := s.Deleted; d == nil || !d.Rebound || d.At == nil || d.At.Sub(before) < 40*24*time.Hour || d.At.After(s.Clock.Now) {
		t.Errorf("A's deleted part %+v (activated %v, now %v); want re-bound, at 40 days on", d, before, s.Clock.Now)
	}
	// The CLI wraps its sentences: compare the words.
	r := a.cli("", "status")
	words := strings.Join(strings.Fields(r.stdout), " ")
	if r.code != stateExits["deleted"] || !strings.Contains(words, "re-bound to another appliance") ||
		s.Deleted != nil && s.Deleted.At != nil && !strings.Contains(words, s.Deleted.At.Format("2006-01-02 15:04 UTC")) {
		t.Errorf("A's status: exit %d, does not say it was re-bound, and when:\n%s", r.code, r.stdout)
	}

	// A's owner keeps A and the old key: neither takes the PBX back.
	if r := a.cli(oldKey, "activate"); r.code == 0 {
		t.Errorf("A activated again with the old key: %s", r.stdout)
	}
	if s := a.status(); s.State != "deleted" {
		t.Errorf("A after trying the old key: %s", s.State)
	}
	var shown portalsim.PBX
	if err := json.Unmarshal([]byte(p.admin("pbx", "show", "acme.example", "--json")), &shown); err != nil {
		t.Fatal(err)
	}
	if shown.Device == nil || len(shown.FormerDevices) != 1 || shown.FormerDevices[0].ID == shown.Device.ID ||
		!strings.Contains(rebind.stderr, shown.FormerDevices[0].ID) {
		t.Errorf("portal after the RMA: device %+v, former %+v; want B bound and A (%q) former", shown.Device, shown.FormerDevices, rebind.stderr)
	}
	if st := b.status(); st.State != "active" {
		t.Errorf("B after A tried again: %s", st.State)
	}
}
