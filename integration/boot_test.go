package integration

import (
	"testing"
	"time"
)

// TestStartsWithoutThePortal starts an activated agent while its portal
// cannot be reached, as at a boot where the network comes up late (the
// unit does not wait for network-online.target): the local API answers at
// once, admission works from the saved licence, and the heartbeat loop,
// failing meanwhile, reaches the portal when it is back, with no restart.
func TestStartsWithoutThePortal(t *testing.T) {
	data, addr := t.TempDir(), freeAddr(t)
	p := startPortal(t, data, addr, "--interval", "1s")
	key := p.admin("pbx", "create", "--name", "boot.example", "--model", "WPBX-VM", "--term", "monthly", "--users", "uc-premium=10")
	a := newAppliance(t, "boot", p, "1s")
	a.appendConfig(`users:
  source: command
  interval: 200ms
  command:
    argv:
      - /bin/echo
      - '{"profiles": {"uc-premium": 2}}'
`)
	a.start()
	if r := a.cli(key, "activate"); r.code != 0 {
		t.Fatalf("activate: exit %d: %s", r.code, r.stderr)
	}
	before := a.waitState("active", 10*time.Second).Heartbeat.LastSuccess
	a.proc.stop(t)
	p.proc.stop(t)

	a.start()
	eventually(t, 5*time.Second, "admission with the portal unreachable at start", func() (bool, string) {
		r := a.cli("", "check", "uc-premium")
		return r.code == 0, r.stderr
	})
	eventually(t, 10*time.Second, "a failed heartbeat", func() (bool, string) {
		hb := a.status().Heartbeat
		return hb.Failures > 0 && hb.LastError != "", hb.LastError
	})

	startPortal(t, data, addr, "--interval", "1s")
	eventually(t, 30*time.Second, "a heartbeat once the portal is back", func() (bool, string) {
		hb := a.status().Heartbeat
		return hb.Failures == 0 && hb.LastSuccess != nil && hb.LastSuccess.After(*before), hb.LastError
	})
	if s := a.status(); s.State != "active" {
		t.Errorf("state %s once the portal is back: %s", s.State, s.Summary)
	}
}
