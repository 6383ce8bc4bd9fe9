package portalsim

import (
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// TestChangeWarningInWords: the late-change warning says how long is left
// in words, never as a Go duration ("in 47h0m0s").
func TestChangeWarningInWords(t *testing.T) {
	end := time.Date(2027, 1, 31, 23, 59, 59, 0, time.UTC)
	d := license.Document{Term: license.Monthly, TermEnd: end}
	for left, want := range map[time.Duration]string{
		47 * time.Hour:   "(2027-01-31 23:59:59 UTC, in 47 hours)",
		30 * time.Minute: "(2027-01-31 23:59:59 UTC, in 30 minutes)",
	} {
		w := changeWarning(d, end.Add(-left))
		if !strings.Contains(w, want) || strings.Contains(w, "0s") {
			t.Errorf("%v before the term ends: %q, want %q", left, w, want)
		}
	}
	if w := changeWarning(d, end.Add(-license.ChangeNotice)); w != "" {
		t.Errorf("exactly 2 days before the term ends: %q, want no warning", w)
	}
}
