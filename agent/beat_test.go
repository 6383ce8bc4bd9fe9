package agent

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
	"github.com/pbx-agent/pbx-agent/pkg/state"
)

func TestOnlyBeat(t *testing.T) {
	base := persisted{License: "lic", Chain: protocol.Link{Digest: "a", Seq: 1}, Answer: "ans", Interval: 60,
		HighWater: time.Unix(100, 0), ClockMark: true, State: "active", Gen: 4}
	for _, tt := range []struct {
		name string
		edit func(*persisted)
		want bool
	}{
		{"a new link, answer and mark", func(st *persisted) {
			st.Chain, st.Answer, st.AnswerTo, st.HighWater, st.Gen = protocol.Link{Digest: "b", Seq: 2}, "ans2", "req", time.Unix(160, 0), 5
		}, true},
		{"the mark alone", func(st *persisted) { st.HighWater = time.Unix(160, 0) }, true},
		{"a new licence", func(st *persisted) { st.License = "lic2" }, false},
		{"a new interval", func(st *persisted) { st.Interval = 30 }, false},
		{"a refusal", func(st *persisted) { st.Refused = "refused" }, false},
		{"a state change", func(st *persisted) { st.State = "lapsed" }, false},
		{"gone", func(st *persisted) { st.Gone = "deleted" }, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			next := base
			tt.edit(&next)
			if got := onlyBeat(base, next); got != tt.want {
				t.Errorf("onlyBeat: %v, want %v", got, tt.want)
			}
		})
	}
	if onlyBeat(persisted{}, persisted{Chain: protocol.Link{Seq: 1}}) {
		t.Error("a state without a licence saved in the heartbeat record")
	}
}

// TestUnchangedHeartbeatsSaveInPlace: heartbeats that change nothing but
// the chain and the answer rewrite the heartbeat record, not the state
// file, and a restart resumes from the record.
func TestUnchangedHeartbeatsSaveInPlace(t *testing.T) {
	r := newRig(t)
	a := r.activated(t, nil)
	ctx := context.Background()
	if err := a.heartbeat(ctx); err != nil { // the first state change is saved in the state file
		t.Fatal(err)
	}
	statePath, beatPath := filepath.Join(r.cfg.StateDir, stateFileName), filepath.Join(r.cfg.StateDir, beatFileName)
	stateBefore, beatBefore := readFile(t, statePath), readFile(t, beatPath)
	for range 3 {
		if err := a.heartbeat(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(readFile(t, statePath), stateBefore) {
		t.Error("unchanged heartbeats rewrote the state file")
	}
	if bytes.Equal(readFile(t, beatPath), beatBefore) {
		t.Error("unchanged heartbeats left the heartbeat record as it was")
	}
	a.lic.mu.Lock()
	chain := a.lic.st.Chain
	a.lic.mu.Unlock()
	want := a.Status().Heartbeat.LastSuccess

	b := r.newAgent(t)
	b.lic.mu.Lock()
	got := b.lic.st.Chain
	b.lic.mu.Unlock()
	if got != chain {
		t.Errorf("after a restart the chain is at %+v, want %+v", got, chain)
	}
	if s := b.Status(); s.State != "active" || s.Heartbeat.LastSuccess == nil || !s.Heartbeat.LastSuccess.Equal(*want) {
		t.Errorf("after a restart: %s, last success %v; want active, %v", s.State, s.Heartbeat.LastSuccess, want)
	}
	if err := b.heartbeat(ctx); err != nil {
		t.Fatalf("a heartbeat after the restart: %v", err)
	}
	pbx, err := r.admin.PBX(ctx, "acme.example")
	if err != nil {
		t.Fatal(err)
	}
	if pbx.ChainForks != 0 {
		t.Errorf("the restart forked the heartbeat chain %d times", pbx.ChainForks)
	}

	// A licence change goes to the state file, which then passes the record.
	r.licences(t, license.Counts{license.UCPremium: 20, license.PBXBasic: 2})
	if err := b.heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(readFile(t, statePath), stateBefore) {
		t.Error("a new licence left the state file as it was")
	}
	if c := r.newAgent(t); c.Status().License.Revision != 2 {
		t.Errorf("after a restart the licence is revision %d, want 2", c.Status().License.Revision)
	}
}

// TestHeartbeatRecordRefusals: a record for another licence, or one
// damaged in both slots, is not applied: the state file stands, and the
// portal's next answer puts the appliance right.
func TestHeartbeatRecordRefusals(t *testing.T) {
	for _, tt := range []struct {
		name string
		harm func(t *testing.T, dir string)
	}{
		{"a record for another licence", func(t *testing.T, dir string) {
			editBeat(t, dir, func(b *beat) { b.Licence, b.Gen = protocol.Digest("another licence"), b.Gen+100 })
		}},
		{"a record damaged in both slots", func(t *testing.T, dir string) {
			garbage := []byte(strings.Repeat("\xde\xad\xbe\xef", 2*beatSlotSize/4))
			if err := os.WriteFile(filepath.Join(dir, beatFileName), garbage, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			a := r.activated(t, nil)
			ctx := context.Background()
			for range 3 {
				if err := a.heartbeat(ctx); err != nil {
					t.Fatal(err)
				}
			}
			stored := readState(t, r.cfg.StateDir)
			tt.harm(t, r.cfg.StateDir)
			b := r.newAgent(t)
			b.lic.mu.Lock()
			chain := b.lic.st.Chain
			b.lic.mu.Unlock()
			if chain != stored.Chain {
				t.Errorf("the chain after a restart is %+v, want the state file's %+v", chain, stored.Chain)
			}
			if err := b.heartbeat(ctx); err != nil {
				t.Fatalf("a heartbeat after the restart: %v", err)
			}
			if s := b.Status(); s.State != "active" {
				t.Errorf("after the portal's answer: %s, want active", s.State)
			}
		})
	}
}

// readState reads the state file alone, as a restart without the
// heartbeat record would.
func readState(t *testing.T, dir string) persisted {
	t.Helper()
	f, err := state.Open[persisted](state.Options{Dir: dir, Name: stateFileName, Version: stateSchema})
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := f.Load()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// BenchmarkHeartbeatSave compares the two ways an unchanged heartbeat's
// outcome (a new chain link and answer) can reach the disk: the state
// file replaced (a new file, two syncs, a rename) and the heartbeat
// record rewritten in place (one pwrite, one fdatasync).
func BenchmarkHeartbeatSave(b *testing.B) {
	r := newRig(b)
	key := r.createPBX(b, "bench.example", license.Counts{license.UCPremium: 5})
	a, err := New(r.cfg, slog.New(slog.DiscardHandler), Options{Time: r.time, Root: r.root})
	if err != nil {
		b.Fatal(err)
	}
	if err := a.Activate(context.Background(), key); err != nil {
		b.Fatal(err)
	}
	l := a.lic
	for _, bb := range []struct {
		name string
		save func(persisted, *license.Document) error
	}{
		{"state file", l.saveStateLocked},
		{"heartbeat record", l.commitLocked},
	} {
		b.Run(bb.name, func(b *testing.B) {
			l.mu.Lock()
			defer l.mu.Unlock()
			for b.Loop() {
				st := l.st
				st.Chain.Seq++
				if err := bb.save(st, l.doc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
