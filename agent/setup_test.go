package agent

import (
	"strings"
	"testing"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// A fresh install lacks portal.url, the portal's keys and (on a machine
// that hides it) the model: the daemon starts, and its status names all
// three at once, not the next one only after the first is fixed.
func TestFreshInstallReportsEverythingMissing(t *testing.T) {
	if license.ReleaseBuild() {
		t.Skip("a release build trusts its embedded roots without a keyring")
	}
	r := newRig(t)
	r.cfg.Portal.URL = ""
	r.cfg.Portal.Keyring = t.TempDir() // empty
	r.cfg.Identity.Model = ""          // and r.root shows no DMI, no cpuinfo
	a := r.newAgent(t)
	last := a.Status().Heartbeat.LastError
	for _, key := range []string{"config portal.url is empty", "config portal.keyring: ", "config identity.model: "} {
		if !strings.Contains(last, key) {
			t.Errorf("status heartbeat.last_error lacks %q: %q", key, last)
		}
	}
	if strings.Contains(last, "\n") {
		t.Errorf("status heartbeat.last_error is more than one line: %q", last)
	}
	got := SetupProblems(r.cfg, r.root, r.time.Wall())
	if len(got) != 3 {
		t.Errorf("SetupProblems = %v, want the three problems", got)
	}
	for _, err := range got {
		if !strings.Contains(last, err.Error()) {
			t.Errorf("the status does not say what SetupProblems says: %q", err)
		}
	}
}

func TestSetupProblemsNoneWhenConfigured(t *testing.T) {
	r := newRig(t)
	if got := SetupProblems(r.cfg, r.root, r.time.Wall()); len(got) != 0 {
		t.Errorf("SetupProblems of a configured agent = %v", got)
	}
}
