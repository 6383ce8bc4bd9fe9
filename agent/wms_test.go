package agent

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/internal/portalsim"
	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
	"github.com/pbx-agent/pbx-agent/pkg/wms"
)

// recordingWMS is a WMS seam whose helper "runs" until the test finishes
// it: the real helper is tested with real dpkg and apt in pkg/actions and
// the rig.
type recordingWMS struct {
	mu        sync.Mutex
	installed string
	started   []wms.Request
	running   bool
	result    *wms.Result
}

func (w *recordingWMS) Start(_ context.Context, req wms.Request) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.started = append(w.started, req)
	w.running = true
	w.result = &wms.Result{Version: req.Version, CommandID: req.CommandID, Outcome: wms.Running, Previous: w.installed, Started: time.Now()}
	return nil
}

func (w *recordingWMS) Running(context.Context, string) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.running, nil
}

func (w *recordingWMS) Result(_ context.Context, version string) (*wms.Result, bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.result == nil || w.result.Version != version {
		return nil, false, nil
	}
	r := *w.result
	return &r, true, nil
}

func (w *recordingWMS) Installed(context.Context) (string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.installed, nil
}

// finish ends the running upgrade as the helper would.
func (w *recordingWMS) finish(outcome wms.Outcome, installed string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.running = false
	w.installed = installed
	w.result.Outcome, w.result.Installed, w.result.Finished = outcome, installed, time.Now()
}

func (w *recordingWMS) starts() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.started)
}

func newWMSRig(t *testing.T, term string) (*commandRig, *recordingWMS) {
	t.Helper()
	r := newRig(t)
	resp, err := r.admin.CreatePBX(context.Background(), portalsim.CreatePBXRequest{Name: "acme.example", Model: "WPBX-VM", Term: term,
		Profiles: license.Counts{license.UCPremium: 5}})
	if err != nil {
		t.Fatal(err)
	}
	w := &recordingWMS{installed: "7.02.20250609.3"}
	cr := &commandRig{rig: r, ssh: &countingSSH{}, pbx: "acme.example"}
	cr.a, err = New(cr.cfg, slog.New(slog.DiscardHandler), Options{Time: cr.time, Root: cr.root, SSH: cr.ssh, WMS: w})
	if err != nil {
		t.Fatal(err)
	}
	if err := cr.a.Activate(context.Background(), resp.Key); err != nil {
		t.Fatal(err)
	}
	return cr, w
}

func upgrade(version string, start, end time.Time) portalsim.CommandRequest {
	return portalsim.CommandRequest{Type: protocol.CommandWMSUpgrade,
		WMS: &protocol.WMSUpgrade{Version: version, Repository: "rel70", WindowStart: start, WindowEnd: end}}
}

func TestWMSUpgradeWaitsForItsWindowThenReports(t *testing.T) {
	cr, w := newWMSRig(t, "monthly")
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	id := cr.queue(t, upgrade("7.03.20261120.1", now.Add(2*time.Hour), now.Add(4*time.Hour)))
	cr.cycle(t)
	cr.a.cmds.follow(ctx)
	if w.starts() != 0 {
		t.Fatal("the upgrade started before its window")
	}
	if st := cr.a.Status(); !strings.Contains(st.WMS.Upgrade, "waits for its window") || st.WMS.Version != "7.02.20250609.3" {
		t.Fatalf("status wms = %+v", st.WMS)
	}

	// Two hours on, on the portal's clock, which the agent follows.
	if _, err := cr.admin.AdvanceClock(ctx, 2*time.Hour+time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := cr.a.exchangeHeartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	cr.a.cmds.follow(ctx)
	if w.starts() != 1 || w.started[0].CommandID != id || w.started[0].Repository != "rel70" {
		t.Fatalf("started %+v, want the command's upgrade once", w.started)
	}
	// The helper judges the window on the licence clock: the request says
	// how far it is from the machine's (the portal's 2 hours on).
	if ahead := time.Duration(w.started[0].LicenceAheadMS) * time.Millisecond; ahead < 2*time.Hour || ahead > 2*time.Hour+5*time.Minute {
		t.Errorf("the request puts the licence clock %v ahead of the machine's; want the portal's 2 hours", ahead)
	}
	// A restart of the agent while the helper runs: no second start, and
	// the outcome is found afterwards.
	cr.a, _ = New(cr.cfg, slog.New(slog.DiscardHandler), Options{Time: cr.time, Root: cr.root, SSH: cr.ssh, WMS: w})
	cr.a.cmds.reconcile(ctx)
	cr.a.cmds.follow(ctx)
	w.finish(wms.Upgraded, "7.03.20261120.1")
	cr.a.cmds.follow(ctx)
	if err := cr.a.exchangeHeartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if w.starts() != 1 {
		t.Fatalf("the helper started %d times", w.starts())
	}
	v := cr.portalView(t, id)
	if v.Result == nil || v.Result.State != protocol.CommandDone || v.Result.Message != "upgraded to 7.03.20261120.1" {
		t.Fatalf("portal sees %+v", v.Result)
	}
	if st := cr.a.Status(); st.WMS.Version != "7.03.20261120.1" {
		t.Fatalf("status wms = %+v", st.WMS)
	}
}

func TestWMSUpgradeRefusals(t *testing.T) {
	cr, w := newWMSRig(t, "lifetime")
	now := time.Now().UTC().Truncate(time.Second)
	major := cr.queue(t, upgrade("8.00.20261120.1", now, now.Add(time.Hour)))
	// The portal refuses the next two before signing; unchecked, it signs
	// them so the agent's own refusals are tested.
	late := upgrade("7.03.20261120.1", now.Add(-2*time.Hour), now.Add(-time.Hour))
	late.Unchecked = true
	minor := cr.queue(t, late)
	bad := upgrade("7.3.x.1", now, now.Add(time.Hour))
	bad.Unchecked = true
	badVersion := cr.queue(t, bad)
	cr.cycle(t)
	if w.starts() != 0 {
		t.Fatalf("a refused upgrade started: %+v", w.started)
	}
	for id, want := range map[string]string{major: "lifetime licence", minor: "window ended", badVersion: ""} {
		v := cr.portalView(t, id)
		if v.Result == nil || v.Result.State != protocol.CommandRefused || !strings.Contains(v.Result.Message, want) {
			t.Errorf("%s: portal sees %+v, want refused (%q)", id, v.Result, want)
		}
	}
}
