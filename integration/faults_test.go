package integration

import (
	"strings"
	"testing"
)

// TestBadPortalAnswersChangeNothing: an answer that is badly signed,
// truncated or carries an older licence revision is refused, and the
// agent's licence and heartbeat record stay as they were.
func TestBadPortalAnswersChangeNothing(t *testing.T) {
	p := startPortal(t, t.TempDir(), freeAddr(t))
	key := p.admin("pbx", "create", "--name", "faults.example", "--users", "uc-business=5")
	// A one-hour interval: the only heartbeats are the test's refreshes.
	a := newAppliance(t, "faulty", p, "1h")
	a.start()
	if r := a.cli(key, "activate"); r.code != 0 {
		t.Fatalf("activate: exit %d: %s", r.code, r.stderr)
	}
	p.admin("pbx", "licenses", "faults.example", "uc-business=6")
	if r := a.cli("", "refresh"); r.code != 0 {
		t.Fatalf("refresh: exit %d: %s", r.code, r.stderr)
	}
	if s := a.status(); s.License.Revision != 2 {
		t.Fatalf("revision after the change: %d, want 2", s.License.Revision)
	}

	tests := []struct {
		name           string
		fault          []string
		wantError      string
		stillHeardBack bool // the answer itself was sound: it counts as contact
	}{
		{name: "bad signature", fault: []string{"--bad-signature", "1"}, wantError: "bad signature"},
		{name: "truncated", fault: []string{"--truncate", "1"}, wantError: "truncated"},
		{name: "older revision replayed", fault: []string{"--replay-old", "1"}, wantError: "older than", stillHeardBack: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p.admin(append([]string{"fault", "set"}, tt.fault...)...)
			defer p.admin("fault", "clear")
			before := a.status()
			r := a.cli("", "refresh")
			after := a.status()
			if !strings.Contains(after.Heartbeat.LastError+r.stderr, tt.wantError) {
				t.Errorf("refresh: exit %d, stderr %q, last_error %q; want it to say %q", r.code, r.stderr, after.Heartbeat.LastError, tt.wantError)
			}
			if after.License.Revision != before.License.Revision ||
				after.License.Profiles["uc-business"] != before.License.Profiles["uc-business"] {
				t.Errorf("licence changed: revision %d → %d, %+v → %+v", before.License.Revision, after.License.Revision,
					before.License.Profiles["uc-business"], after.License.Profiles["uc-business"])
			}
			if !tt.stillHeardBack && !after.Heartbeat.LastSuccess.Equal(*before.Heartbeat.LastSuccess) {
				t.Errorf("a refused answer counted as a heartbeat: last success %v → %v", before.Heartbeat.LastSuccess, after.Heartbeat.LastSuccess)
			}
		})
	}
	p.admin("pbx", "licenses", "faults.example", "uc-business=7")
	if r := a.cli("", "refresh"); r.code != 0 {
		t.Fatalf("refresh after the faults: exit %d: %s", r.code, r.stderr)
	}
	if s := a.status(); s.License.Revision != 3 || s.License.Profiles["uc-business"].Licensed != 7 || s.Heartbeat.LastError != "" {
		t.Errorf("after the faults the agent should take revision 3 and clear its error: %+v %q", s.License, s.Heartbeat.LastError)
	}
}
