package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/internal/portalsim"
)

// TestSSHUntilOnThePortalsClock runs the portal 60 days ahead of the
// machine, as after `clock advance`: the support access's end in the
// status and in the result the portal receives is the licence clock's
// (the portal's), not the machine's, which showed "63 days ago".
func TestSSHUntilOnThePortalsClock(t *testing.T) {
	if _, err := os.Stat(sshd); err != nil {
		t.Skipf("%s not installed (Debian: openssh-server): %v", sshd, err)
	}
	p := startPortal(t, t.TempDir(), freeAddr(t))
	p.admin("clock", "advance", "60d")
	key := p.admin("pbx", "create", "--name", "acme.example", "--model", "WPBX-VM", "--term", "monthly", "--users", "uc-premium=5")
	a, port := sshAppliance(t, p, key)

	p.admin("command", "acme.example", "ssh-open", "--ttl", "10m")
	waitPort(t, port, true, 20*time.Second)
	var until time.Time
	eventually(t, 20*time.Second, "the status shows the access open", func() (bool, string) {
		s := a.status()
		if s.SSH.Open && s.SSH.Until != nil {
			until = *s.SSH.Until
			if left := until.Sub(s.Clock.Now); left < 9*time.Minute || left > 10*time.Minute {
				t.Fatalf("until %v is %v after the status's licence time %v, want about the 10 min TTL", until, left, s.Clock.Now)
			}
			return true, ""
		}
		return false, fmt.Sprintf("%+v", s.SSH)
	})
	if ahead := time.Until(until); ahead < 59*24*time.Hour {
		t.Fatalf("until %v is %v from the machine's clock, want the portal's 60 days ahead", until, ahead)
	}
	eventually(t, 20*time.Second, "the portal receives the result on its own clock", func() (bool, string) {
		var cmds []portalsim.CommandView
		out := p.admin("command", "list", "acme.example", "--json")
		if err := json.Unmarshal([]byte(out), &cmds); err != nil {
			t.Fatalf("command list --json: %v: %s", err, out)
		}
		for _, c := range cmds {
			if c.Result != nil && c.Result.SSH != nil && c.Result.SSH.Open {
				return c.Result.SSH.Until.Equal(until), fmt.Sprintf("the portal received until %v, the status says %v", c.Result.SSH.Until, until)
			}
		}
		return false, out
	})
}
