package agent

import (
	"encoding/json"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// TestStatusEncodesFarFutureTimes holds a licence issued in year 9999, as a
// signed document could say before times were bounded: the offline grace
// computed from it ends in year 10000, which time.MarshalJSON refuses, and
// GET /v1/status answered 500 for every caller. The status must still
// encode; a deadline beyond year 9999 reads as none.
func TestStatusEncodesFarFutureTimes(t *testing.T) {
	cfg := DefaultConfig()
	cfg.StateDir = filepath.Join(t.TempDir(), "state")
	cfg.Portal.Keyring = t.TempDir() // empty: the agent runs without a portal
	cfg.Identity.Model = "WPBX-VM"
	cfg.Listen.Socket, cfg.Listen.HTTP = filepath.Join(t.TempDir(), "unused.sock"), ""
	a, err := New(cfg, slog.New(slog.DiscardHandler), Options{Users: &fakeUsers{}})
	if err != nil {
		t.Fatal(err)
	}
	y9999 := time.Date(9999, 12, 31, 23, 0, 0, 0, time.UTC)
	a.lic.doc = &license.Document{Version: 1, PBX: license.PBX{ID: "pbx-far", Name: "far", Model: license.ModelVM}, Revision: 1,
		IssuedAt: y9999, Term: license.Monthly, TermEnd: y9999,
		SoftOverage: &license.SoftOverage{Factor: 1.1, Until: y9999}, Counts: license.Counts{license.UCPremium: 1}}

	s := a.Status()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatalf("the status does not encode: %v", err)
	}
	var back struct {
		License struct {
			TermEnd *time.Time `json:"term_end"`
		} `json:"license"`
		Deadlines map[string]*time.Time `json:"deadlines"`
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.License.TermEnd == nil || !back.License.TermEnd.Equal(y9999) {
		t.Errorf("term end %v, want %v: an encodable time is kept", back.License.TermEnd, y9999)
	}
	for name, d := range back.Deadlines {
		if d != nil && d.Year() > 9999 {
			t.Errorf("deadline %s = %v", name, d)
		}
	}
	if s.Deadlines.OfflineGraceEnd != nil {
		t.Errorf("offline grace end %v: year 10000 cannot be shown", s.Deadlines.OfflineGraceEnd)
	}
}
