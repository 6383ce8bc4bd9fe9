package license

import (
	"strings"
	"testing"
	"time"
)

// TestWhatNext holds the one phrase every renderer shows after the state's
// name (the status page, `pbx-agent status`, systemd's STATUS=) to what
// happens next and when, for every state and every cause of one.
func TestWhatNext(t *testing.T) {
	doc := testDocument()
	last := testNow                    // 2026-11-27 12:00 UTC
	graceEnd := last.Add(30 * day)     // the offline grace ends 2026-12-27 12:00
	lapseEnd := graceEnd.Add(14 * day) // telephony stops 2027-01-10 12:00
	suspendedAt := testNow.Add(-2 * day)
	suspended := doc
	suspended.Suspended, suspended.SuspendedSince = true, &suspendedAt
	zeroNow := zeroed(doc, testNow) // stop 2026-12-02, delete 2026-12-11

	tests := []struct {
		name  string
		facts Facts
		state State
		want  string
	}{
		{"no key yet", Facts{Now: testNow}, Unactivated, "no PBX key activated yet (pbx-agent activate)"},
		{"active", Facts{Now: testNow.Add(time.Minute), Doc: &doc, LastSuccess: last}, Active, "licensed by the portal"},
		{"offline an hour", Facts{Now: last.Add(DefaultHeartbeatTolerance + time.Hour), Doc: &doc, LastSuccess: last},
			Offline, "new users refused in 30 days, telephony stops in 44 days"},
		{"offline, the grace ending in a day", Facts{Now: graceEnd.Add(-day), Doc: &doc, LastSuccess: last},
			Offline, "new users refused in 24 hours, telephony stops in 15 days"},
		{"lapsed: the offline grace over", Facts{Now: graceEnd.Add(day), Doc: &doc, LastSuccess: last},
			Lapsed, "no new users; telephony stops in 13 days"},
		{"lapsed, minutes left", Facts{Now: lapseEnd.Add(-10 * time.Minute), Doc: &doc, LastSuccess: last},
			Lapsed, "no new users; telephony stops in 10 minutes"},
		{"lapsed: suspended", Facts{Now: testNow, Doc: &suspended, LastSuccess: last},
			Lapsed, "no new users; telephony stops in 12 days"},
		{"lapsed: refused as a copy", Facts{Now: testNow, Doc: &doc, LastSuccess: last, RefusedSince: testNow.Add(-day)},
			Lapsed, "no new users; telephony stops in 13 days"},
		{"lapsed: restored from a backup, the portal reached", Facts{Now: testNow.Add(time.Minute), Doc: &doc, LastSuccess: last, Restored: true},
			Lapsed, "no new users until the portal confirms the licence"},
		{"lapsed: restored from a backup, offline", Facts{Now: graceEnd.Add(day), Doc: &doc, LastSuccess: last, Restored: true},
			Lapsed, "no new users; telephony stops in 13 days"},
		{"stopping", Facts{Now: testNow, Doc: zeroNow, LastSuccess: last},
			Stopping, "no new users; telephony stops in 5 days, PBX deleted in 14 days; to keep the PBX, add a licence back on the portal and contact your Area Manager"},
		{"stopping, hours left", Facts{Now: at(t, "2026-12-01T21:00:00Z"), Doc: zeroNow, LastSuccess: at(t, "2026-12-01T21:00:00Z")},
			Stopping, "no new users; telephony stops in 3 hours, PBX deleted in 9 days; to keep the PBX, add a licence back on the portal and contact your Area Manager"},
		{"stopped: every licence at zero", Facts{Now: at(t, "2026-12-03T00:00:00Z"), Doc: zeroNow, LastSuccess: at(t, "2026-12-03T00:00:00Z")},
			Stopped, "telephony stopped; PBX deleted in 8 days; to keep the PBX, add a licence back on the portal and contact your Area Manager"},
		{"stopped: the portal not reached", Facts{Now: lapseEnd.Add(day), Doc: &doc, LastSuccess: last},
			Stopped, "telephony stopped until the portal is reached"},
		{"stopped: suspended", Facts{Now: suspendedAt.Add(15 * day), Doc: &suspended, LastSuccess: suspendedAt.Add(15 * day)},
			Stopped, "telephony stopped until the portal lifts the suspension"},
		{"stopped: refused as a copy", Facts{Now: testNow.Add(15 * day), Doc: &doc, LastSuccess: testNow.Add(15 * day), RefusedSince: testNow},
			Stopped, "telephony stopped until the PBX is re-bound or resynced on the portal"},
		{"deleted: the countdown over", Facts{Now: at(t, "2026-12-12T00:00:00Z"), Doc: zeroNow, LastSuccess: last},
			Deleted, "PBX deleted 24 hours ago; to recover it, add a licence back on the portal and contact your Area Manager; otherwise a new PBX key is needed (pbx-agent activate)"},
		{"deleted: the portal deleted it", Facts{Now: testNow, Doc: &doc, LastSuccess: last, Gone: "deleted on the portal", GoneAt: testNow.Add(-3 * day)},
			Deleted, "PBX deleted 3 days ago; to recover it, add a licence back on the portal and contact your Area Manager; otherwise a new PBX key is needed (pbx-agent activate)"},
		{"deleted: re-bound to another appliance", Facts{Now: testNow, Doc: &doc, LastSuccess: last, Gone: "re-bound to another appliance", GoneAt: testNow.Add(-2 * time.Hour), Rebound: true},
			Deleted, "the PBX was re-bound to another appliance 2 hours ago; telephony stays stopped here; a new PBX key is needed to run one (pbx-agent activate)"},
	}
	seen := map[State]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Evaluate(tt.facts)
			if v.State != tt.state || v.WhatNext != tt.want {
				t.Errorf("Evaluate = %s: %q\nwant       %s: %q", v.State, v.WhatNext, tt.state, tt.want)
			}
			if strings.ContainsAny(v.WhatNext, "\n.") {
				t.Errorf("the phrase %q is not one phrase on one line", v.WhatNext)
			}
			// The same facts give the same phrase, whenever the call is
			// made: the countdowns run on the licence clock passed in.
			if again := Evaluate(tt.facts); again.WhatNext != v.WhatNext {
				t.Errorf("the same facts gave %q, then %q", v.WhatNext, again.WhatNext)
			}
		})
		seen[tt.state] = true
	}
	for _, s := range States() {
		if !seen[s] {
			t.Errorf("no case for state %s", s)
		}
	}
}

// TestWhatNextCountsDownOnTheLicenceClock moves the licence clock alone:
// the phrase counts down with it, whatever the machine's time.
func TestWhatNextCountsDownOnTheLicenceClock(t *testing.T) {
	doc := zeroed(testDocument(), testNow) // stop 2026-12-02, delete 2026-12-11
	var got []string
	for _, now := range []time.Time{testNow, testNow.Add(2 * day), testNow.Add(4*day + 11*time.Hour + 58*time.Minute)} {
		got = append(got, Evaluate(Facts{Now: now, Doc: doc, LastSuccess: now}).WhatNext)
	}
	want := []string{
		"no new users; telephony stops in 5 days, PBX deleted in 14 days; to keep the PBX, add a licence back on the portal and contact your Area Manager",
		"no new users; telephony stops in 3 days, PBX deleted in 12 days; to keep the PBX, add a licence back on the portal and contact your Area Manager",
		"no new users; telephony stops in 2 minutes, PBX deleted in 9 days; to keep the PBX, add a licence back on the portal and contact your Area Manager",
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("step %d: %q, want %q", i, got[i], want[i])
		}
	}
}
