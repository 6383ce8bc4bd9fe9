package agent

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// TestStatusCarriesWhatNext: the status document and systemd's STATUS=
// both show the verdict's own phrase, counted down on the portal's time
// (set here months from this machine's), not a wording of their own.
func TestStatusCarriesWhatNext(t *testing.T) {
	r := newRig(t)
	r.setPortalClock(t, "2027-03-10T10:00:00Z")
	a := r.activated(t, &fakeTelephony{})
	ctx := context.Background()

	if s := a.Status(); s.Next != "licensed by the portal" {
		t.Errorf("active: next %q", s.Next)
	}
	r.licences(t, license.Counts{license.UCPremium: 0, license.PBXBasic: 0})
	if err := a.heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	const want = "no new users; telephony stops in 5 days, PBX deleted in 14 days; to keep the PBX, add a licence back on the portal and contact your Area Manager"
	s := a.Status()
	if s.State != "stopping" || s.Next != want {
		t.Fatalf("every licence at zero: %s %q, want stopping %q", s.State, s.Next, want)
	}
	raw, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"next":"`+want+`"`) {
		t.Errorf("GET /v1/status carries no next phrase: %s", raw)
	}
	if line := a.statusLine(); !strings.HasPrefix(line, "stopping; ") || !strings.Contains(line, "; "+want+";") {
		t.Errorf("STATUS=%s\nwant the phrase %q", line, want)
	}

	r.advancePortal(t, 6*day)
	if err := a.heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if s := a.Status(); s.State != "stopped" || s.Next != "telephony stopped; PBX deleted in 8 days; to keep the PBX, add a licence back on the portal and contact your Area Manager" {
		t.Errorf("six days later: %s %q", s.State, s.Next)
	}
}
