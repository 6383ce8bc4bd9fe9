package integration

import (
	"strings"
	"testing"
	"time"
)

// TestActivationAndHeartbeat walks one PBX through its first life: it is
// activated, sees a licence change within a heartbeat, rides out a portal
// outage, follows the portal's clock, and loses the PBX to a replacement
// appliance by a signed answer.
func TestActivationAndHeartbeat(t *testing.T) {
	top := t // processes started in a subtest live as long as the whole test
	data := t.TempDir()
	addr := freeAddr(t)
	// A 2 s heartbeat tolerance in the licences lets the outage show in seconds.
	serveFlags := []string{"--interval", "1s", "--heartbeat-tolerance", "2s"}
	p := startPortal(t, data, addr, serveFlags...)
	key := p.admin("pbx", "create", "--name", "acme.example", "--model", "WPBX-VM", "--term", "monthly",
		"--users", "uc-premium=10", "--users", "pbx-basic=3")

	first := newAppliance(t, "first", p, "200ms")
	first.start()
	if s := first.status(); s.State != "unactivated" {
		t.Fatalf("before activation: state %q", s.State)
	}

	t.Run("activation", func(t *testing.T) {
		r := first.cli(key, "activate")
		if r.code != 0 {
			t.Fatalf("activate: exit %d: %s", r.code, r.stderr)
		}
		s := first.waitState("active", 5*time.Second)
		if s.PBX == nil || s.PBX.Name != "acme.example" || s.License == nil ||
			s.License.Profiles["uc-premium"].Licensed != 10 || s.License.Profiles["pbx-basic"].Licensed != 3 {
			t.Fatalf("status after activation: %+v", s)
		}
	})

	t.Run("licence increase within one heartbeat", func(t *testing.T) {
		before := first.status().License.Revision
		p.admin("pbx", "licenses", "acme.example", "uc-premium=20")
		eventually(t, 3*time.Second, "uc-premium=20 on the agent", func() (bool, string) {
			s := first.status()
			return s.License.Profiles["uc-premium"].Licensed == 20 && s.License.Revision == before+1, s.Heartbeat.LastError
		})
	})

	t.Run("portal down, then back", func(t *testing.T) {
		p.proc.stop(t)
		s := first.waitState("offline", 10*time.Second)
		if s.Heartbeat.LastError == "" || s.License.Profiles["uc-premium"].Licensed != 20 {
			t.Errorf("offline status: %+v", s)
		}
		p = startPortal(top, data, addr, serveFlags...)
		first.waitState("active", 10*time.Second)
	})

	second := newAppliance(t, "second", p, "200ms")
	second.start()

	t.Run("a second appliance is refused", func(t *testing.T) {
		r := second.cli(key, "activate")
		if r.code != 3 || !strings.Contains(r.stderr, "another appliance") {
			t.Fatalf("second activation: exit %d, stderr %q; want 3 naming the other appliance", r.code, r.stderr)
		}
		if s := second.status(); s.State != "unactivated" {
			t.Errorf("refused appliance is %q", s.State)
		}
	})

	t.Run("rebind moves the PBX and deletes it from the first appliance", func(t *testing.T) {
		newKey := p.admin("pbx", "rebind", "acme.example")
		if r := second.cli(newKey, "activate"); r.code != 0 {
			t.Fatalf("activation after rebind: exit %d: %s", r.code, r.stderr)
		}
		second.waitState("active", 5*time.Second)
		s := first.waitState("deleted", 5*time.Second)
		if s.License != nil || !strings.Contains(s.Summary, "re-bound") {
			t.Errorf("first appliance after rebind: %+v", s)
		}
	})

	t.Run("the portal's clock drives the licence clock", func(t *testing.T) {
		before := second.status().Clock.Now
		p.admin("clock", "advance", "6d")
		eventually(t, 3*time.Second, "licence clock 6 days ahead", func() (bool, string) {
			now := second.status().Clock.Now
			return now.Sub(before) >= 6*24*time.Hour, now.String()
		})
	})

	t.Run("a local clock behind the licence clock does not move it back", func(t *testing.T) {
		// After the portal's clock moved 6 days ahead, the machine's clock
		// is 6 days behind the licence clock: as if it had been set back.
		// Across a restart with no portal, the licence clock keeps its
		// high-water mark and reports the local clock as behind.
		ahead := second.status().Clock.Now
		p.proc.stop(t)
		second.proc.stop(t)
		second.start()
		s := second.status()
		if s.Clock.Now.Before(ahead) {
			t.Errorf("licence clock went back across a restart: %v, was %v", s.Clock.Now, ahead)
		}
		if s.Clock.LocalBehind == "" {
			t.Errorf("a local clock 6 days behind is not reported: %+v", s.Clock)
		}
	})
}
