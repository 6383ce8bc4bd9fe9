package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/audit"
)

func TestAuditVerb(t *testing.T) {
	fb, sock := daemon(t)
	t0 := time.Date(2027, 3, 10, 10, 0, 0, 0, time.UTC)
	t.Run("empty", func(t *testing.T) {
		r := run(t, "", "--socket", sock, "audit")
		if r.code != 0 || r.stdout != "The audit log is empty.\n" {
			t.Errorf("audit of an empty log = %+v", r)
		}
	})
	fb.SetAudit([]audit.Event{
		{Time: t0, Kind: "activated", Fields: map[string]any{"pbx": "pbx-42", "name": "acme.example", "revision": 1, "profiles": "pbx-basic=3 uc-premium=10"}},
		{Time: t0, Kind: "state.changed", Fields: map[string]any{"from": "active", "to": "stopping", "why": "every licence at zero"}},
		{Time: t0.Add(6 * 24 * time.Hour), Kind: "telephony", Fields: map[string]any{"action": "stop", "state": "stopped"}},
	}, nil)
	t.Run("human", func(t *testing.T) {
		r := run(t, "", "--socket", sock, "audit")
		want := "2027-03-10T10:00:00Z  activated      name=acme.example pbx=pbx-42 profiles=\"pbx-basic=3 uc-premium=10\" revision=1\n" +
			"2027-03-10T10:00:00Z  state.changed  active → stopping: every licence at zero\n" +
			"2027-03-16T10:00:00Z  telephony      action=stop state=stopped\n"
		if r.code != 0 || r.stdout != want {
			t.Errorf("audit = exit %d\n%s\nwant\n%s", r.code, r.stdout, want)
		}
	})
	t.Run("the last one, as JSON", func(t *testing.T) {
		r := run(t, "", "--socket", sock, "audit", "--json", "-n", "1")
		var got apitype.AuditLog
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 {
			t.Fatalf("audit --json: exit %d, %v\n%s", r.code, err, r.stdout)
		}
		if len(got.Events) != 1 || got.Events[0].Kind != "telephony" || !strings.HasPrefix(r.stdout, "{\n  \"events\": [") {
			t.Errorf("audit --json -n 1 = %s", r.stdout)
		}
	})
	t.Run("a negative limit", func(t *testing.T) {
		r := run(t, "", "--socket", sock, "audit", "--limit", "-1")
		if r.code != 2 || !strings.Contains(r.stderr, "--limit") {
			t.Errorf("audit --limit -1 = %+v", r)
		}
		oneLine(t, r)
	})
	t.Run("daemon not running", func(t *testing.T) {
		r := run(t, "", "--socket", "/nonexistent/agent.sock", "audit")
		if r.code != 2 || !strings.Contains(r.stderr, "is the daemon running?") {
			t.Errorf("audit without a daemon = %+v", r)
		}
	})
}
