package agent

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/internal/portalsim"
	"github.com/pbx-agent/pbx-agent/pkg/audit"
	"github.com/pbx-agent/pbx-agent/pkg/clock"
	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

const day = 24 * time.Hour

// fakeTelephony records the agent's calls to the telephony seam.
type fakeTelephony struct {
	mu    sync.Mutex
	calls []string
}

func (f *fakeTelephony) Stop(context.Context, string) error  { return f.record("stop") }
func (f *fakeTelephony) Start(context.Context, string) error { return f.record("start") }

func (f *fakeTelephony) record(call string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
	return nil
}

// took returns the calls since the last took.
func (f *fakeTelephony) took() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

// agentWith starts an agent on the rig's state folder with a telephony seam.
func (r *rig) agentWith(t *testing.T, tel Telephony) *Agent {
	t.Helper()
	a, err := New(r.cfg, slog.New(slog.DiscardHandler), Options{Time: r.time, Root: r.root, Telephony: tel})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// activated creates a PBX and activates it on a new agent.
func (r *rig) activated(t *testing.T, tel Telephony) *Agent {
	t.Helper()
	key := r.createPBX(t, "acme.example", license.Counts{license.UCPremium: 10, license.PBXBasic: 2})
	a := r.agentWith(t, tel)
	if err := a.Activate(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	a.evaluate(context.Background()) // lifecycleLoop's turn: these agents run no loops
	return a
}

func (r *rig) faults(t *testing.T, errorRate float64) {
	t.Helper()
	if _, err := r.admin.PatchFaults(context.Background(), map[string]any{"error_rate": errorRate}); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) licences(t *testing.T, counts license.Counts) {
	t.Helper()
	if _, err := r.admin.ChangeLicenses(context.Background(), "acme.example", portalsim.LicenseChange{Profiles: counts}); err != nil {
		t.Fatal(err)
	}
}

// setPortalClock moves the portal's clock to a fixed date, so the calendar
// rules (no decrease on the last day of a month) do not depend on the day
// the test runs. Create PBXs after it: their keys expire in portal time.
func (r *rig) setPortalClock(t *testing.T, s string) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.admin.SetClock(context.Background(), at); err != nil {
		t.Fatal(err)
	}
	return at
}

func (r *rig) advancePortal(t *testing.T, d time.Duration) {
	t.Helper()
	if _, err := r.admin.AdvanceClock(context.Background(), d); err != nil {
		t.Fatal(err)
	}
}

// transitions lists the audit log's state changes as "from→to".
func transitions(t *testing.T, dir string) []string {
	t.Helper()
	evs, err := audit.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		if e.Kind == auditStateChanged {
			out = append(out, e.Fields["from"].(string)+"→"+e.Fields["to"].(string))
		}
	}
	return out
}

func kinds(t *testing.T, dir string) []string {
	t.Helper()
	evs, err := audit.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		out = append(out, e.Kind)
	}
	return out
}

// TestOfflineLapsedStoppedAndBack lives through a long outage on the
// licence clock alone: offline for 31 days → lapsed; 14 more days →
// stopped, telephony stopped; the portal back → active, telephony started.
func TestOfflineLapsedStoppedAndBack(t *testing.T) {
	r := newRig(t)
	tel := &fakeTelephony{}
	a := r.activated(t, tel)
	if got := tel.took(); !reflect.DeepEqual(got, []string{"start"}) {
		t.Errorf("telephony at activation: %v, want the initial start", got)
	}
	r.faults(t, 1) // every heartbeat answered 500: the portal is down
	lastSuccess := a.Status().Heartbeat.LastSuccess

	for _, step := range []struct {
		offline time.Duration
		want    license.State
		tel     []string
	}{
		{time.Hour, license.Offline, nil},
		{29 * day, license.Offline, nil},
		{31 * day, license.Lapsed, nil},
		{30*day + 13*day, license.Lapsed, nil}, // lapsed for 13 days
		{31*day + 14*day, license.Stopped, []string{"stop"}},
		{31*day + 15*day, license.Stopped, nil},
	} {
		r.time.run(lastSuccess.Add(step.offline).Sub(a.lic.clock.Now()))
		if err := a.heartbeat(context.Background()); err == nil {
			t.Fatal("a heartbeat succeeded with the portal down")
		}
		a.evaluate(context.Background()) // lifecycleLoop's turn
		s := a.Status()
		if s.State != string(step.want) {
			t.Fatalf("offline %v: %s (%s), want %s", step.offline, s.State, s.Summary, step.want)
		}
		if got := tel.took(); !reflect.DeepEqual(got, step.tel) {
			t.Errorf("offline %v: telephony calls %v, want %v", step.offline, got, step.tel)
		}
		wantLapseEnd := lastSuccess.Add(44 * day)
		if s.Deadlines.LapseGraceEnd == nil || !s.Deadlines.LapseGraceEnd.Equal(wantLapseEnd) ||
			s.Deadlines.OfflineGraceEnd == nil || !s.Deadlines.OfflineGraceEnd.Equal(lastSuccess.Add(30*day)) {
			t.Errorf("offline %v: deadlines %+v, want the lapse grace to end %v", step.offline, s.Deadlines, wantLapseEnd)
		}
		if s.Deadlines.StopAt != nil || s.Deadlines.DeleteAt != nil {
			t.Errorf("offline %v: countdown deadlines without a countdown: %+v", step.offline, s.Deadlines)
		}
	}

	r.faults(t, 0) // the portal is back
	if err := a.heartbeat(context.Background()); err != nil {
		t.Fatalf("heartbeat with the portal back: %v", err)
	}
	a.evaluate(context.Background()) // lifecycleLoop's turn
	s := a.Status()
	if s.State != "active" || s.Deadlines.LapseGraceEnd != nil {
		t.Errorf("portal back: %s, deadlines %+v; want active with no lapse", s.State, s.Deadlines)
	}
	if got := tel.took(); !reflect.DeepEqual(got, []string{"start"}) {
		t.Errorf("portal back: telephony calls %v, want start", got)
	}
	want := []string{"none→active", "active→offline", "offline→lapsed", "lapsed→stopped", "stopped→active"}
	if got := transitions(t, r.cfg.StateDir); !reflect.DeepEqual(got, want) {
		t.Errorf("audit log state changes:\n got %v\nwant %v", got, want)
	}
}

// TestZeroLicencesInProcess: the portal's countdown reaches the agent, stops
// it at stop_at and deletes it at delete_at; a licence added back in
// between restores it.
func TestZeroLicencesInProcess(t *testing.T) {
	r := newRig(t)
	r.setPortalClock(t, "2027-03-10T10:00:00Z")
	tel := &fakeTelephony{}
	a := r.activated(t, tel)
	tel.took()
	ctx := context.Background()

	r.licences(t, license.Counts{license.UCPremium: 0, license.PBXBasic: 0})
	if err := a.heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	a.evaluate(ctx) // lifecycleLoop's turn
	s := a.Status()
	wantStop, wantDelete := time.Date(2027, 3, 15, 0, 0, 0, 0, time.UTC), time.Date(2027, 3, 24, 0, 0, 0, 0, time.UTC)
	if s.State != "stopping" || s.Deadlines.StopAt == nil || !s.Deadlines.StopAt.Equal(wantStop) || !s.Deadlines.DeleteAt.Equal(wantDelete) {
		t.Fatalf("all licences zero: %s %+v; want stopping until %v, deleted %v", s.State, s.Deadlines, wantStop, wantDelete)
	}
	r.advancePortal(t, 6*day)
	if err := a.heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	a.evaluate(ctx) // lifecycleLoop's turn
	if s := a.Status(); s.State != "stopped" || !strings.Contains(s.Summary, "deleted for good") {
		t.Fatalf("six days later: %s %q", s.State, s.Summary)
	}
	if got := tel.took(); !reflect.DeepEqual(got, []string{"stop"}) {
		t.Errorf("stopped: telephony %v", got)
	}

	// A restart re-applies the stop, and records no change.
	before := len(transitions(t, r.cfg.StateDir))
	restarted := r.agentWith(t, tel)
	restarted.evaluate(ctx)
	if got := tel.took(); !reflect.DeepEqual(got, []string{"stop"}) {
		t.Errorf("restart while stopped: telephony %v, want the stop applied again", got)
	}
	if after := len(transitions(t, r.cfg.StateDir)); after != before {
		t.Errorf("a restart recorded %d state changes", after-before)
	}
	a = restarted

	r.licences(t, license.Counts{license.UCPremium: 1})
	if err := a.heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	a.evaluate(ctx) // lifecycleLoop's turn
	if s := a.Status(); s.State != "active" || s.Deadlines.StopAt != nil || s.Deadlines.DeleteAt != nil {
		t.Fatalf("a licence added back: %s %+v", s.State, s.Deadlines)
	}
	if got := tel.took(); !reflect.DeepEqual(got, []string{"start"}) {
		t.Errorf("restored: telephony %v", got)
	}

	r.licences(t, license.Counts{license.UCPremium: 0})
	if err := a.heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	a.evaluate(ctx) // lifecycleLoop's turn
	r.advancePortal(t, 15*day)
	if err := a.heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	a.evaluate(ctx) // lifecycleLoop's turn
	s = a.Status()
	if s.State != "deleted" || s.License != nil || s.PBX == nil {
		t.Fatalf("fifteen days at zero: %s, licence %+v, PBX %+v; want deleted, licence wiped, PBX named", s.State, s.License, s.PBX)
	}
	if err := a.heartbeat(ctx); !errors.Is(err, ErrNotActivated) {
		t.Errorf("heartbeat of a deleted PBX: %v, want ErrNotActivated", err)
	}
	want := []string{"none→active", "active→stopping", "stopping→stopped", "stopped→active", "active→stopping", "stopping→deleted"}
	if got := transitions(t, r.cfg.StateDir); !reflect.DeepEqual(got, want) {
		t.Errorf("audit state changes:\n got %v\nwant %v", got, want)
	}
	k := strings.Join(kinds(t, r.cfg.StateDir), " ")
	for _, want := range []string{"activated", "licence.accepted", "deleted", "telephony"} {
		if !strings.Contains(k, want) {
			t.Errorf("audit log lacks a %s event: %s", want, k)
		}
	}
}

// zeroCountdown is an activated agent whose every licence went to zero on
// 2027-03-10 and whose heartbeat has taken it: the countdown runs, and
// deleteAt is its signed end.
func zeroCountdown(t *testing.T) (r *rig, a *Agent, deleteAt time.Time) {
	t.Helper()
	r = newRig(t)
	r.setPortalClock(t, "2027-03-10T10:00:00Z")
	a = r.activated(t, nil)
	r.licences(t, license.Counts{license.UCPremium: 0, license.PBXBasic: 0})
	if err := a.heartbeat(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r, a, *a.Status().Deadlines.DeleteAt
}

// TestDeletionWaitsForThePortalsTime: past delete_at on a clock the portal
// did not set, the agent is deleted in state but keeps the signed licence;
// the portal's own time wipes it.
func TestDeletionWaitsForThePortalsTime(t *testing.T) {
	r, a, deleteAt := zeroCountdown(t)
	ctx := context.Background()
	r.faults(t, 1)
	// The local clock runs past delete_at with the portal unreachable.
	r.time.run(deleteAt.Sub(a.lic.clock.Now()) + day)
	a.heartbeat(ctx)
	s := a.Status()
	if s.State != "deleted" || s.License == nil {
		t.Fatalf("past delete_at on the local clock: %s, licence %v; want deleted, licence kept", s.State, s.License)
	}
	// The portal's time past delete_at (the simulator would also say gone).
	a.lic.clock.AdoptPortal(deleteAt.Add(time.Minute))
	a.evaluate(ctx)
	if s := a.Status(); s.State != "deleted" || s.License != nil || !strings.Contains(s.Summary, "zero-licence countdown") {
		t.Errorf("past delete_at on the portal's time: %s, licence %v, %q; want the licence wiped", s.State, s.License, s.Summary)
	}
}

// TestDeletionTimeIsTheSignedDeleteAt: a PBX its countdown deleted was
// deleted at the signed delete_at, whenever the agent learns it and by
// whichever way: the status says that time before the licence is wiped,
// after the lifecycle wipes it, after the portal's "gone" answer, and
// after a restart.
func TestDeletionTimeIsTheSignedDeleteAt(t *testing.T) {
	for _, way := range []string{"the lifecycle", "the portal's answer"} {
		t.Run(way, func(t *testing.T) {
			r := newRig(t)
			r.setPortalClock(t, "2027-03-10T10:00:00Z")
			a := r.activated(t, nil)
			ctx := context.Background()
			r.licences(t, license.Counts{license.UCPremium: 0, license.PBXBasic: 0})
			if err := a.heartbeat(ctx); err != nil {
				t.Fatal(err)
			}
			deleteAt := a.Status().Deadlines.DeleteAt.Format(time.RFC3339)
			r.advancePortal(t, 15*day) // learnt a day and more after delete_at
			switch way {
			case "the lifecycle":
				a.lic.clock.AdoptPortal(r.portal.Now())
				if s := a.Status(); s.State != "deleted" || !timeIs(s.Deleted.At, deleteAt) {
					t.Fatalf("past delete_at, before the wipe: %s %+v; want deleted at %s", s.State, s.Deleted, deleteAt)
				}
				a.evaluate(ctx)
			default:
				if err := a.exchangeHeartbeat(ctx); err != nil {
					t.Fatal(err)
				}
			}
			for i, a := range []*Agent{a, r.newAgent(t)} {
				if s := a.Status(); s.State != "deleted" || s.License != nil || !timeIs(s.Deleted.At, deleteAt) {
					t.Errorf("wiped (restarted: %v): %s, licence %v, %+v; want deleted at %s", i == 1, s.State, s.License, s.Deleted, deleteAt)
				}
			}
		})
	}
}

// TestWipedDuringAHeartbeat: the lifecycle wipes the licence (delete_at
// passed on the portal's time) while a heartbeat is on the wire. The
// exchange's end finds nothing held: it neither panics nor fetches again
// for a licence it no longer holds, and the heartbeat reports the PBX
// not activated.
func TestWipedDuringAHeartbeat(t *testing.T) {
	r, a, deleteAt := zeroCountdown(t)
	ctx := context.Background()

	portal := r.server.Config.Handler
	var heartbeats atomic.Int32
	r.server.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == protocol.PathHeartbeat && heartbeats.Add(1) == 1 {
			// The lifecycle loop's turn, between request and answer.
			a.lic.clock.AdoptPortal(deleteAt.Add(time.Minute))
			if v := a.record(); v.State != license.Deleted {
				t.Errorf("past delete_at on the portal's time: %s", v.State)
			}
		}
		portal.ServeHTTP(w, req)
	})
	if err := a.exchangeHeartbeat(ctx); !errors.Is(err, ErrNotActivated) {
		t.Errorf("a heartbeat whose licence was wiped on the way: %v, want ErrNotActivated", err)
	}
	if n := heartbeats.Load(); n != 1 {
		t.Errorf("%d heartbeats sent; want 1 (nothing held to fetch again)", n)
	}
	if s := a.Status(); s.State != "deleted" || s.License != nil || s.Heartbeat.LastError != "" {
		t.Errorf("after: %s, licence %v, error %q; want deleted, wiped, no heartbeat error", s.State, s.License, s.Heartbeat.LastError)
	}
}

// TestRefreshOfADeletedPBX: a refresh finds the PBX deleted, whether its
// countdown ended on the licence clock before the refresh or the portal's
// answer said so. Either way the refresh leaves it deleted, and says so
// rather than "not activated".
func TestRefreshOfADeletedPBX(t *testing.T) {
	_, a, deleteAt := zeroCountdown(t)
	ctx := context.Background()
	a.lic.clock.AdoptPortal(deleteAt.Add(time.Minute)) // as a long-poll's answer would
	if v := a.record(); v.State != license.Deleted {
		t.Fatalf("past delete_at: %s", v.State)
	}
	runAgent(t, a)
	if err := a.Refresh(ctx); err != nil {
		t.Errorf("Refresh of a PBX deleted by its countdown: %v, want nil", err)
	}
	if s := a.Status(); s.State != "deleted" {
		t.Errorf("after the refresh: %s", s.State)
	}
}

// TestSuspendedLapsesThenStops: the portal suspends the licence: lapsed at
// once, stopped after the lapse grace, active again when lifted.
func TestSuspendedLapsesThenStops(t *testing.T) {
	r := newRig(t)
	a := r.activated(t, nil)
	ctx := context.Background()
	if _, err := r.admin.Suspend(ctx, "acme.example"); err != nil {
		t.Fatal(err)
	}
	a.heartbeat(ctx)
	s := a.Status()
	if s.State != "lapsed" || !strings.Contains(s.Summary, "suspended") || s.Deadlines.LapseGraceEnd == nil {
		t.Fatalf("suspended: %s %q %+v", s.State, s.Summary, s.Deadlines)
	}
	r.advancePortal(t, 14*day)
	a.heartbeat(ctx)
	if s := a.Status(); s.State != "stopped" || !strings.Contains(s.Summary, "lifts the suspension") {
		t.Fatalf("suspended 14 days: %s %q", s.State, s.Summary)
	}
	if _, err := r.admin.Resume(ctx, "acme.example"); err != nil {
		t.Fatal(err)
	}
	a.heartbeat(ctx)
	if s := a.Status(); s.State != "active" {
		t.Fatalf("resumed: %s %q", s.State, s.Summary)
	}
}

// TestAuditLogSurvivesDeletion: wiping the licence never touches the audit
// log, which stays 0600.
func TestAuditLogSurvivesDeletion(t *testing.T) {
	r := newRig(t)
	a := r.activated(t, nil)
	ctx := context.Background()
	if _, err := r.admin.Delete(ctx, "acme.example"); err != nil {
		t.Fatal(err)
	}
	a.heartbeat(ctx)
	if s := a.Status(); s.State != "deleted" {
		t.Fatalf("after the portal deleted the PBX: %s", s.State)
	}
	evs, err := a.Audit(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) < 3 || evs[0].Kind != auditActivated || evs[0].Fields["name"] != "acme.example" {
		t.Fatalf("audit log after deletion: %+v", evs)
	}
	var deleted bool
	for _, e := range evs {
		deleted = deleted || e.Kind == auditDeleted && strings.Contains(e.Fields["reason"].(string), "deleted on the portal")
		if e.Time.IsZero() {
			t.Errorf("event without a time: %+v", e)
		}
	}
	if !deleted {
		t.Errorf("no deletion event: %+v", evs)
	}
	if last, _ := a.Audit(ctx, 1); len(last) != 1 || last[0].Kind != evs[len(evs)-1].Kind {
		t.Errorf("Audit(1) = %+v", last)
	}
	fi, err := os.Stat(filepath.Join(r.cfg.StateDir, audit.FileName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("audit.log: %v, %v; want 0600", fi, err)
	}
	// Activation of a new PBX after deletion keeps the log growing.
	key := r.createPBX(t, "next.example", license.Counts{license.UCBusiness: 1})
	if err := a.Activate(ctx, key); err != nil {
		t.Fatal(err)
	}
	if got := transitions(t, r.cfg.StateDir); got[len(got)-1] != "deleted→active" {
		t.Errorf("state changes after a new activation: %v", got)
	}
}

// TestRefusedLicenceIsAudited: an older revision replayed by the portal is
// refused and recorded.
func TestRefusedLicenceIsAudited(t *testing.T) {
	r := newRig(t)
	a := r.activated(t, nil)
	ctx := context.Background()
	r.licences(t, license.Counts{license.UCPremium: 11})
	a.heartbeat(ctx)
	r.licences(t, license.Counts{license.UCPremium: 12})
	a.heartbeat(ctx) // holds revision 3; the previous is 2
	if _, err := r.admin.PatchFaults(ctx, map[string]any{"replay_old_rate": 1}); err != nil {
		t.Fatal(err)
	}
	a.heartbeat(ctx)
	evs, _ := a.Audit(ctx, 0)
	var accepted, refused int
	for _, e := range evs {
		switch e.Kind {
		case auditLicenceAccepted:
			accepted++
		case auditLicenceRefused:
			refused++
			if !strings.Contains(e.Fields["error"].(string), "older than") {
				t.Errorf("refusal event: %+v", e)
			}
		}
	}
	if accepted != 2 || refused != 1 {
		t.Errorf("%d accepted and %d refused licence events, want 2 and 1: %+v", accepted, refused, evs)
	}
}

// lockedTime is a fakeTime safe to read from the lifecycle loop while the
// test moves it.
type lockedTime struct {
	mu sync.Mutex
	fakeTime
}

func (l *lockedTime) Wall() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fakeTime.Wall()
}

func (l *lockedTime) Elapsed() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fakeTime.Elapsed()
}

func (l *lockedTime) NewTimer(d time.Duration) clock.Timer   { return clock.WithTimers(l).NewTimer(d) }
func (l *lockedTime) NewTicker(d time.Duration) clock.Ticker { return clock.WithTimers(l).NewTicker(d) }

func (l *lockedTime) run(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fakeTime.run(d)
}

// onLockedTime starts an agent on a copy of the rig's clocks that its
// loops may read while the test moves it.
func (r *rig) onLockedTime(t *testing.T) (*Agent, *lockedTime) {
	t.Helper()
	lt := &lockedTime{fakeTime: *r.time}
	a, err := New(r.cfg, slog.New(slog.DiscardHandler), Options{Time: lt, Root: r.root})
	if err != nil {
		t.Fatal(err)
	}
	return a, lt
}

// TestLifecycleLoop: the loop evaluates at start, and again when woken,
// and returns when its context ends.
func TestLifecycleLoop(t *testing.T) {
	r := newRig(t)
	a, lt := r.onLockedTime(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.lifecycleLoop(ctx); close(done) }()

	waitTransitions := func(want ...string) {
		t.Helper()
		deadline := time.NewTimer(10 * time.Second)
		defer deadline.Stop()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			got := transitions(t, r.cfg.StateDir)
			if reflect.DeepEqual(got, want) {
				return
			}
			select {
			case <-deadline.C:
				t.Fatalf("state changes %v, want %v", got, want)
			case <-tick.C:
			}
		}
	}
	waitTransitions("none→unactivated")
	key := r.createPBX(t, "acme.example", license.Counts{license.UCPremium: 1})
	if err := a.Activate(ctx, key); err != nil {
		t.Fatal(err)
	}
	waitTransitions("none→unactivated", "unactivated→active")
	lt.run(time.Hour) // past the heartbeat tolerance, with no heartbeat
	a.wakeLifecycle()
	waitTransitions("none→unactivated", "unactivated→active", "active→offline")
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the lifecycle loop did not return when its context ended")
	}
}

func TestUntilNextEvaluation(t *testing.T) {
	r := newRig(t)
	a := r.newAgent(t)
	now := a.lic.clock.Now()
	for _, tt := range []struct {
		next time.Time
		want time.Duration
	}{
		{time.Time{}, evaluateEvery},
		{now.Add(time.Hour), evaluateEvery},
		{now.Add(30 * time.Second), 30*time.Second + deadlineMargin},
		{now.Add(-time.Second), deadlineMargin},
	} {
		if got := a.untilNextEvaluation(license.Verdict{Next: tt.next}); got != tt.want {
			t.Errorf("next deadline %v from now: wait %v, want %v", tt.next.Sub(now), got, tt.want)
		}
	}
}

// TestStateFileWithoutState: a schema 1 state file written before the
// lifecycle was recorded loads, and its first evaluation is recorded as a
// change from "none", then persisted.
func TestStateFileWithoutState(t *testing.T) {
	r := newRig(t)
	a := r.activated(t, nil)
	a.lic.mu.Lock()
	a.lic.st.State = "" // as an older build wrote it
	err := a.lic.saveLocked()
	a.lic.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(r.cfg.StateDir, stateFileName))
	if strings.Contains(string(b), `"state"`) {
		t.Fatalf("the state file still has a state: %s", b)
	}
	restarted := r.newAgent(t)
	restarted.evaluate(context.Background())
	got := transitions(t, r.cfg.StateDir)
	if got[len(got)-1] != "none→active" {
		t.Errorf("state changes %v; want the last to be none→active", got)
	}
	if b, _ := os.ReadFile(filepath.Join(r.cfg.StateDir, stateFileName)); !strings.Contains(string(b), `"state":"active"`) && !strings.Contains(string(b), `"state": "active"`) {
		t.Errorf("the state was not persisted: %s", b)
	}
}
