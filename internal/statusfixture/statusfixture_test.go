package statusfixture

import (
	"testing"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// TestEveryState: the golden files cover every lifecycle state, under
// unique names; a state added later needs a case here.
func TestEveryState(t *testing.T) {
	seen, names := map[string]bool{}, map[string]bool{}
	for _, c := range Cases() {
		if names[c.Name] {
			t.Errorf("case %q twice", c.Name)
		}
		names[c.Name] = true
		seen[c.Status.State] = true
		if now := c.Status.Clock.Now; !now.Equal(Now) && !now.Equal(LastDay) {
			t.Errorf("%s: licence time %v, want a fixed one", c.Name, now)
		}
		if cal := c.Status.Calendar; c.Name == "active-last-day" && (cal == nil || !cal.NoDecreasesToday) {
			t.Errorf("%s: calendar %+v; want no decreases today", c.Name, cal)
		}
	}
	for _, s := range license.States() {
		if !seen[string(s)] {
			t.Errorf("no case in state %s", s)
		}
	}
	for name, want := range map[string]string{"active-overuse": "active", "suspended": "lapsed", "deleted-rebound": "deleted"} {
		for _, c := range Cases() {
			if c.Name == name && c.Status.State != want {
				t.Errorf("%s is in state %s, want %s", name, c.Status.State, want)
			}
		}
	}
}
