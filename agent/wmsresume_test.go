package agent

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/protocol"
	"github.com/pbx-agent/pbx-agent/pkg/wms"
)

// helperStopped is the helper killed (or the machine powered off) after
// it recorded step, with resumes resumes behind it: its unit is no longer
// active and its result is not final.
func (w *recordingWMS) helperStopped(step wms.Step, resumes int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.running = false
	w.result.Step, w.result.Resumes = step, resumes
}

func TestWMSUpgradeResumedAfterAPowerLoss(t *testing.T) {
	cr, w := newWMSRig(t, "monthly")
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	id := cr.queue(t, upgrade("7.03.20261120.1", now.Add(-time.Minute), now.Add(4*time.Hour)))
	cr.cycle(t)
	cr.a.cmds.follow(ctx)
	if w.starts() != 1 {
		t.Fatalf("started %d times", w.starts())
	}
	w.helperStopped(wms.StepInstall, 0)

	// The agent starts again after the power loss: it starts the helper
	// again, for the same command, and the command stays running.
	cr.a, _ = New(cr.cfg, slog.New(slog.DiscardHandler), Options{Time: cr.time, Root: cr.root, SSH: cr.ssh, WMS: w})
	cr.a.cmds.reconcile(ctx)
	cr.a.cmds.follow(ctx)
	if w.starts() != 2 || w.started[1].CommandID != id || w.started[1].Version != "7.03.20261120.1" {
		t.Fatalf("started %+v, want the same upgrade again", w.started)
	}
	if st := cr.a.Status(); !strings.Contains(st.WMS.Upgrade, "resuming the upgrade to 7.03.20261120.1, interrupted in step install") {
		t.Errorf("status wms = %+v", st.WMS)
	}
	if err := cr.a.exchangeHeartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if v := cr.portalView(t, id); v.Result != nil {
		t.Fatalf("the portal has a result already: %+v", v.Result)
	}

	// The resumed helper rolls the interrupted install back.
	w.finish(wms.RolledBack, "7.02.20250609.3")
	cr.a.cmds.follow(ctx)
	if err := cr.a.exchangeHeartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	v := cr.portalView(t, id)
	if v.Result == nil || v.Result.State != protocol.CommandFailed || !strings.Contains(v.Result.Message, "rolled back") {
		t.Fatalf("portal sees %+v", v.Result)
	}
	if w.starts() != 2 {
		t.Errorf("started %d times", w.starts())
	}
}

func TestWMSUpgradeNotResumed(t *testing.T) {
	for _, tc := range []struct {
		name    string
		step    wms.Step
		resumes int
	}{
		{"no step recorded", "", 0},
		{"past the helper's loop breaker", wms.StepInstall, wms.MaxResumes + 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cr, w := newWMSRig(t, "monthly")
			ctx := context.Background()
			now := time.Now().UTC().Truncate(time.Second)
			id := cr.queue(t, upgrade("7.03.20261120.1", now.Add(-time.Minute), now.Add(4*time.Hour)))
			cr.cycle(t)
			cr.a.cmds.follow(ctx)
			w.helperStopped(tc.step, tc.resumes)
			cr.time.run(firstPoll) // the helper is first looked at after that
			cr.a.cmds.follow(ctx)
			if err := cr.a.exchangeHeartbeat(ctx); err != nil {
				t.Fatal(err)
			}
			if w.starts() != 1 {
				t.Errorf("started %d times", w.starts())
			}
			v := cr.portalView(t, id)
			if v.Result == nil || v.Result.State != protocol.CommandFailed || !strings.Contains(v.Result.Message, "stopped without a result") {
				t.Fatalf("portal sees %+v", v.Result)
			}
		})
	}
}
