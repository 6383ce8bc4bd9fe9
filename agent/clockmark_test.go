package agent

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/clockmark"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// TestClockMarkKillLoop is the attack on the agent itself: activated, the
// portal unreachable, the local clock 30 days back, the agent killed (no
// stop, no state save) and restarted many times. Each restart resumes from
// the record, so the licence clock keeps pace with the machine.
func TestClockMarkKillLoop(t *testing.T) {
	r := newRig(t)
	a := r.activated(t, nil)
	if err := a.writeClockMark(); err != nil { // the loop's first tick
		t.Fatal(err)
	}
	start := a.lic.clock.Now()
	r.time.wall = r.time.wall.Add(-30 * day)
	const restarts = 30
	for range restarts {
		r.time.elapsed += 40 * time.Second // up, then killed before the next mark
		r.time.elapsed += 5 * time.Second  // down
		a = r.newAgent(t)                  // New writes a mark at once: nothing else ran
	}
	want := start.Add(restarts * 45 * time.Second)
	if got := a.lic.clock.Now(); !got.Equal(want) {
		t.Errorf("after %d kills the licence clock is %v, want %v (advanced %v of %v)",
			restarts, got, want, got.Sub(start), want.Sub(start))
	}
	if s := a.Status(); s.Clock.LocalBehind == "" {
		t.Errorf("the local clock 30 days back is not reported: %+v", s.Clock)
	}
}

// TestClockMarkOlderStateFile: a state file from a backup, with an older
// high-water mark, cannot move the clock back before the record's mark.
func TestClockMarkOlderStateFile(t *testing.T) {
	r := newRig(t)
	a := r.activated(t, nil)
	saved, err := os.ReadFile(filepath.Join(r.cfg.StateDir, stateFileName))
	if err != nil {
		t.Fatal(err)
	}
	r.time.elapsed += 20 * day // offline twenty days, the local clock stopped
	if err := a.writeClockMark(); err != nil {
		t.Fatal(err)
	}
	want := a.lic.clock.Now()
	if err := os.WriteFile(filepath.Join(r.cfg.StateDir, stateFileName), saved, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := r.newAgent(t).lic.clock.Now(); got.Before(want) {
		t.Errorf("restarted with the old state file: licence clock %v, before the mark %v", got, want)
	}
}

// TestClockMarkStop: the loop writes a mark when its context ends, so the
// time a clean stop lasts is counted at the next start.
func TestClockMarkStop(t *testing.T) {
	r := newRig(t)
	a, lt := r.onLockedTime(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.clockMarkLoop(ctx); close(done) }()
	lt.run(5 * time.Second)
	cancel()
	<-done
	rec, err := clockmark.Open(filepath.Join(r.cfg.StateDir, clockMarkFile))
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	m, err := rec.Read()
	if err != nil {
		t.Fatal(err)
	}
	if m.Boot != lt.Elapsed() {
		t.Errorf("the mark at stop has boot time %v, want %v (the stop's)", m.Boot, lt.Elapsed())
	}
	stopped := a.lic.clock.Now()
	lt.fakeTime.elapsed += 90 * time.Second // a clean 90 s stop, the local clock held back
	again, err := New(r.cfg, slog.New(slog.DiscardHandler), Options{Time: lt, Root: r.root})
	if err != nil {
		t.Fatal(err)
	}
	if got := again.lic.clock.Now().Sub(stopped); got != 90*time.Second {
		t.Errorf("a 90 s stop moved the licence clock %v", got)
	}
}

// TestClockMarkRefusals: the agent does not start when its clock cannot be
// trusted to run: a time namespace moving the boot clock, a damaged
// record, a record that cannot be written.
func TestClockMarkRefusals(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, r *rig)
		wantErr []string
	}{
		{
			name: "a time namespace with the boot clock offset",
			setup: func(t *testing.T, r *rig) {
				p := filepath.Join(r.root, license.TimensOffsetsPath)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte("monotonic 0 0\nboottime 2592000 0\n"), 0o444); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: []string{license.TimensOffsetsPath, "boottime", "unshare --time"},
		},
		{
			name: "a damaged record",
			setup: func(t *testing.T, r *rig) {
				r.newAgent(t) // creates and writes the record
				garbage := []byte(strings.Repeat("x", clockmark.RecordSize))
				if err := os.WriteFile(filepath.Join(r.cfg.StateDir, clockMarkFile), garbage, 0o600); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: []string{clockMarkFile, "damaged", "remove the file"},
		},
		{
			name: "a record that is not a file",
			setup: func(t *testing.T, r *rig) {
				if err := os.MkdirAll(filepath.Join(r.cfg.StateDir, clockMarkFile), 0o700); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: []string{clockMarkFile, "is a directory"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			tt.setup(t, r)
			_, err := New(r.cfg, slog.New(slog.DiscardHandler), Options{Time: r.time, Root: r.root})
			if err == nil {
				t.Fatal("the agent started")
			}
			for _, want := range append(tt.wantErr, "licence clock cannot run") {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}

// TestClockMarkRemovedWhileRunning: the record removed under a running
// agent is reported at error in the status, and made again.
func TestClockMarkRemovedWhileRunning(t *testing.T) {
	r := newRig(t)
	a := r.newAgent(t)
	path := filepath.Join(r.cfg.StateDir, clockMarkFile)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := a.writeClockMark(); err == nil {
		t.Fatal("a write to a removed record succeeded")
	}
	if s := a.Status(); !strings.Contains(s.Clock.MarkError, "removed or replaced") {
		t.Errorf("status clock.mark_error = %q", s.Clock.MarkError)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the record was not made again: %v", err)
	}
	if err := a.writeClockMark(); err != nil {
		t.Fatal(err)
	}
	if s := a.Status(); s.Clock.MarkError != "" {
		t.Errorf("after a good write, clock.mark_error = %q", s.Clock.MarkError)
	}
}

// TestClockMarkRecognisesRestoredState: a state file restored alone from a
// backup holds an older licence, or an older end of the heartbeat chain,
// than the record has seen. The appliance lapses (nothing new admitted)
// until the portal's next answer sets it right.
func TestClockMarkRecognisesRestoredState(t *testing.T) {
	for _, tt := range []struct {
		name   string
		change bool // a new revision after the backup, or only heartbeats
	}{{"older revision", true}, {"same revision, older chain", false}} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			a := r.activated(t, nil)
			// The owner's backup of the state folder: the state file and
			// the heartbeat record.
			statePath, beatPath := filepath.Join(r.cfg.StateDir, stateFileName), filepath.Join(r.cfg.StateDir, beatFileName)
			backup, err := os.ReadFile(statePath)
			if err != nil {
				t.Fatal(err)
			}
			beatBackup, err := os.ReadFile(beatPath)
			if err != nil {
				t.Fatal(err)
			}
			if tt.change {
				r.licences(t, license.Counts{license.UCPremium: 20, license.PBXBasic: 2})
			}
			for range 2 {
				if err := a.heartbeat(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			if err := a.writeClockMark(); err != nil {
				t.Fatal(err)
			}
			if got := r.newAgent(t).State(); got != license.Active {
				t.Errorf("the current state file: %s; want active", got)
			}
			if err := os.WriteFile(statePath, backup, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(beatPath, beatBackup, 0o600); err != nil {
				t.Fatal(err)
			}
			restored := r.newAgent(t)
			if got := restored.State(); got != license.Lapsed {
				t.Errorf("the state file from the backup: %s; want lapsed", got)
			}
			if d := restored.Admit(context.Background(), apitype.Admission{Profile: license.UCPremium, Count: 1}); d.Allowed {
				t.Error("the restored state admits a user")
			}
			if !slices.Contains(kinds(t, r.cfg.StateDir), auditStateRestored) {
				t.Errorf("no %s in the audit log", auditStateRestored)
			}
			if err := restored.heartbeat(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := restored.State(); got != license.Active {
				t.Errorf("after the portal's answer: %s; want active", got)
			}
		})
	}
}

// TestClockMarkRemovedWhileStopped: the owner removes the mark record
// while the agent is stopped, so the next start would resume from the
// state file's older mark. The state says a record existed: the PBX
// lapses until the portal answers.
func TestClockMarkRemovedWhileStopped(t *testing.T) {
	r := newRig(t)
	r.activated(t, nil)
	if err := os.Remove(filepath.Join(r.cfg.StateDir, clockMarkFile)); err != nil {
		t.Fatal(err)
	}
	a := r.newAgent(t)
	if got := a.State(); got != license.Lapsed {
		t.Errorf("started with its mark record removed: %s; want lapsed", got)
	}
	if err := a.heartbeat(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := a.State(); got != license.Active {
		t.Errorf("after the portal's answer: %s; want active", got)
	}
	if got := r.newAgent(t).State(); got != license.Active {
		t.Errorf("restarted with the record made again: %s; want active", got)
	}
}
