package agent

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
	"github.com/pbx-agent/pbx-agent/pkg/wms"
)

// WMS upgrades. A wms.upgrade is checked when it arrives (version format,
// repository, the lifetime licence's major-version rule), waits in the
// journal ("waiting") until its window opens, and then starts the root
// helper (pkg/actions: its own unit under systemd). The helper writes its
// result to a file, so the agent follows it without holding the command
// loop, and an agent restarted meanwhile finds the outcome there.

// WMSUpgrader is the seam to the upgrade helper (pkg/actions.WMSUpgrades).
type WMSUpgrader interface {
	Start(ctx context.Context, req wms.Request) error
	Running(ctx context.Context, version string) (bool, error)
	Result(ctx context.Context, version string) (res *wms.Result, found bool, err error)
	Installed(ctx context.Context) (string, error)
}

// wmsFollowEvery is how often a running upgrade's result is read.
const wmsFollowEvery = 2 * time.Second

// wmsUpgrades runs wms.upgrade: it judges the command, waits for its
// window, starts the helper and follows its result file. It owns what the
// status shows of the WMS.
type wmsUpgrades struct {
	up      WMSUpgrader // nil: not set up
	env     commandEnv
	licence func() *license.Document // the licence held, nil when none

	mu      sync.Mutex // guards the fields below
	version string     // installed, as last read
	upgrade string     // the last upgrade's progress or outcome, in words
}

func refuseWMS(reason, format string, args ...any) *protocol.CommandResult {
	return &protocol.CommandResult{State: protocol.CommandRefused, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// check judges a wms.upgrade before it waits for its window: version
// format, repository, window, and the lifetime licence's major-version rule.
func (w *wmsUpgrades) check(ctx context.Context, cmd *protocol.Command) *protocol.CommandResult {
	if w.up == nil {
		return refuseWMS(protocol.RefusedUnsupported, "WMS upgrades are not set up on this appliance")
	}
	p := cmd.WMS
	target, err := wms.ParseVersion(p.Version)
	if err != nil {
		return refuseWMS(protocol.RefusedMalformed, "%v", err)
	}
	if _, err := wms.ParseRepository(p.Repository); err != nil {
		return refuseWMS(protocol.RefusedMalformed, "%v", err)
	}
	if pos, _ := (wms.Window{Start: p.WindowStart, End: p.WindowEnd}).At(w.env.now()); pos == wms.After {
		return refuseWMS(protocol.RefusedExpired, "its maintenance window ended at %s", p.WindowEnd.UTC().Format(time.RFC3339))
	}
	doc := w.licence()
	if doc == nil {
		return refuseWMS(protocol.RefusedRejected, "this appliance holds no licence")
	}
	installedText, err := w.up.Installed(ctx)
	if err != nil {
		return &protocol.CommandResult{State: protocol.CommandFailed, Message: "reading the installed WMS version: " + err.Error()}
	}
	w.mu.Lock()
	w.version = installedText
	w.mu.Unlock()
	var installed wms.Version
	if installedText != "" {
		if installed, err = wms.ParseVersion(installedText); err != nil {
			w.env.log.Warn("the installed WMS version is outside the format; the lifetime rule cannot compare it", "version", installedText)
		}
	}
	if err := wms.CheckTerm(doc.Term, installed, target); err != nil {
		return refuseWMS(protocol.RefusedRejected, "%v", err)
	}
	return nil
}

// due holds an upgrade until its window opens, and ends it once the
// window closed unstarted.
func (w *wmsUpgrades) due(now time.Time, cmd *protocol.Command) (time.Duration, *protocol.CommandResult) {
	p := cmd.WMS
	switch pos, d := (wms.Window{Start: p.WindowStart, End: p.WindowEnd}).At(now); pos {
	case wms.Before:
		w.setUpgrade(fmt.Sprintf("%s waits for its window at %s", p.Version, p.WindowStart.UTC().Format(time.RFC3339)))
		return max(d, 10*time.Millisecond), nil
	case wms.After:
		return 0, w.outcome(cmd, protocol.CommandResult{State: protocol.CommandRefused, Reason: protocol.RefusedExpired,
			Message: fmt.Sprintf("its maintenance window ended at %s before it could start", p.WindowEnd.UTC().Format(time.RFC3339))})
	}
	return 0, nil
}

// start starts the root helper; its result file tells the rest (poll).
func (w *wmsUpgrades) start(ctx context.Context, id string, cmd *protocol.Command) *protocol.CommandResult {
	p := cmd.WMS
	if err := w.up.Start(ctx, w.wmsRequest(id, cmd)); err != nil {
		return w.outcome(cmd, protocol.CommandResult{State: protocol.CommandFailed, Message: err.Error()})
	}
	w.setUpgrade(fmt.Sprintf("upgrading to %s", p.Version))
	w.env.log.Info("WMS upgrade started", "id", id, "version", p.Version, "repository", p.Repository)
	return nil
}

// poll reads the helper's result: its outcome once final; a helper that
// stopped without one is started again to resume (resume), else failed.
func (w *wmsUpgrades) poll(ctx context.Context, id string, cmd *protocol.Command) (*protocol.CommandResult, time.Duration) {
	p := cmd.WMS
	res, found, err := w.up.Result(ctx, p.Version)
	if err != nil {
		w.env.log.Warn("reading the WMS upgrade's result", "version", p.Version, "err", err)
		return nil, wmsFollowEvery
	}
	if found && res.CommandID == id && res.Done() {
		out := protocol.CommandResult{State: protocol.CommandDone, WMS: res, Message: res.Summary()}
		if !res.OK() {
			out.State = protocol.CommandFailed
		}
		w.refreshVersion(ctx)
		return w.outcome(cmd, out), 0
	}
	running, err := w.up.Running(ctx, p.Version)
	if err != nil || running {
		return nil, wmsFollowEvery
	}
	// Not running, no final result of ours: a result written just now
	// is read on the next look; after that, the helper died.
	if res2, found2, _ := w.up.Result(ctx, p.Version); found2 && res2.CommandID == id && res2.Done() {
		return nil, wmsFollowEvery
	}
	if out, resumed := w.resume(ctx, id, cmd, res); resumed {
		return out, wmsFollowEvery
	}
	w.refreshVersion(ctx)
	return w.outcome(cmd, protocol.CommandResult{State: protocol.CommandFailed, WMS: res,
		Message: "the upgrade helper stopped without a result (killed, or the machine restarted); see journalctl -u " +
			"pbx-agent-wms-upgrade@" + p.Version + ".service"}), 0
}

// reconcile leaves a running upgrade to poll: the helper's result file
// outlives the agent.
func (w *wmsUpgrades) reconcile(context.Context, string, *protocol.Command) *protocol.CommandResult {
	return nil
}

// wmsRequest is the helper's request for a journaled wms.upgrade, with
// how far the licence clock is from the machine's, so that the helper
// judges the window on the licence clock too.
func (w *wmsUpgrades) wmsRequest(id string, cmd *protocol.Command) wms.Request {
	p := cmd.WMS
	return wms.Request{Version: p.Version, Repository: p.Repository, CommandID: id,
		Window:         &wms.Window{Start: p.WindowStart, End: p.WindowEnd},
		LicenceAheadMS: w.env.now().Sub(w.env.clock.Wall()).Milliseconds()}
}

// resume starts the helper again for an upgrade whose helper stopped
// before its result was final (power lost, the helper or the machine
// killed): the helper resumes from the step its result records, rolling
// an interrupted install back, and always ends with a final result. The
// helper's own count of resumes (wms.MaxResumes, plus its last attempt
// that gives up) bounds this; a result without a step, or past the
// count, is not resumed. resumed says whether it dealt with the command:
// then out is its result when the helper could not be started again, or
// nil while it resumes.
func (w *wmsUpgrades) resume(ctx context.Context, id string, cmd *protocol.Command, res *wms.Result) (out *protocol.CommandResult, resumed bool) {
	if res == nil || res.CommandID != id || !res.Resumable() || res.Resumes > wms.MaxResumes+1 {
		return nil, false
	}
	version := cmd.WMS.Version
	if err := w.up.Start(ctx, w.wmsRequest(id, cmd)); err != nil {
		return w.outcome(cmd, protocol.CommandResult{State: protocol.CommandFailed, WMS: res,
			Message: fmt.Sprintf("the upgrade helper stopped in step %s and could not be started again to finish it: %v; "+
				"start pbx-agent-wms-upgrade@%s.service to roll it back", res.Step, err, version)}), true
	}
	w.setUpgrade(fmt.Sprintf("resuming the upgrade to %s, interrupted in step %s", version, res.Step))
	w.env.log.Warn("WMS upgrade helper stopped before its result was final; started again to resume it",
		"id", id, "version", version, "step", res.Step, "resumes", res.Resumes)
	return nil, true
}

// outcome notes a final result for the status and returns it.
func (w *wmsUpgrades) outcome(cmd *protocol.Command, res protocol.CommandResult) *protocol.CommandResult {
	msg := res.Message
	if !strings.Contains(msg, cmd.WMS.Version) {
		msg = cmd.WMS.Version + ": " + msg
	}
	w.setUpgrade(msg)
	return &res
}

// refreshVersion reads the installed version for the status.
func (w *wmsUpgrades) refreshVersion(ctx context.Context) {
	if w.up == nil {
		return
	}
	v, err := w.up.Installed(ctx)
	if err != nil {
		w.env.log.Warn("reading the installed WMS version", "err", err)
		return
	}
	w.mu.Lock()
	w.version = v
	w.mu.Unlock()
}

func (w *wmsUpgrades) setUpgrade(s string) {
	w.mu.Lock()
	w.upgrade = s
	w.mu.Unlock()
}

func (w *wmsUpgrades) status() apitype.WMSStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	return apitype.WMSStatus{Version: w.version, Upgrade: w.upgrade}
}
