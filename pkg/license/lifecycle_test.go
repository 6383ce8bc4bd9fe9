package license

import (
	"strings"
	"testing"
	"time"
)

func TestEvaluate(t *testing.T) {
	doc := testDocument()
	last := testNow
	day := 24 * time.Hour
	tests := []struct {
		name        string
		facts       Facts
		want        State
		wantSummary string
	}{
		{"no licence", Facts{Now: testNow}, Unactivated, "pbx-agent activate"},
		{"just heartbeated", Facts{Now: testNow, Doc: &doc, LastSuccess: last}, Active, "last reached 2026-11-27 12:00 UTC"},
		{"at the tolerance", Facts{Now: last.Add(DefaultHeartbeatTolerance), Doc: &doc, LastSuccess: last}, Active, "Licensed by the portal"},
		{"past the tolerance", Facts{Now: last.Add(DefaultHeartbeatTolerance + time.Second), Doc: &doc, LastSuccess: last}, Offline, "until 2026-12-27 12:00 UTC"},
		{"offline 29 days", Facts{Now: last.Add(29 * day), Doc: &doc, LastSuccess: last}, Offline, "(in 24 hours)"},
		{"offline 30 days", Facts{Now: last.Add(30 * day), Doc: &doc, LastSuccess: last}, Lapsed, "no new users"},
		{"offline 31 days", Facts{Now: last.Add(31 * day), Doc: &doc, LastSuccess: last}, Lapsed, "offline grace is over"},
		{"gone", Facts{Now: testNow, Doc: &doc, LastSuccess: last, Gone: "re-bound to another appliance"}, Deleted, "re-bound"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Evaluate(tt.facts)
			if v.State != tt.want || !strings.Contains(v.Summary, tt.wantSummary) {
				t.Errorf("Evaluate = %s %q, want %s containing %q", v.State, v.Summary, tt.want, tt.wantSummary)
			}
		})
	}
}

func TestRelative(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                        "now",
		500 * time.Millisecond:   "now",
		time.Second:              "in 1 second",
		-15 * time.Second:        "15 seconds ago",
		2 * time.Minute:          "in 2 minutes",
		-time.Minute - time.Hour: "61 minutes ago",
		3 * time.Hour:            "in 3 hours",
		49 * time.Hour:           "in 2 days",
		-30 * 24 * time.Hour:     "30 days ago",
	} {
		if got := Relative(testNow.Add(d), testNow); got != want {
			t.Errorf("Relative(now%+v) = %q, want %q", d, got, want)
		}
	}
}
