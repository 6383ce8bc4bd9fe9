package agent

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/pbx-agent/pbx-agent/agent/localapi"
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

// checkWMS judges a wms.upgrade before it waits for its window: nil, or the
// refusal to report.
func (a *Agent) checkWMS(ctx context.Context, cmd *protocol.Command) *protocol.CommandResult {
	refuse := func(reason, format string, args ...any) *protocol.CommandResult {
		return &protocol.CommandResult{State: protocol.CommandRefused, Reason: reason, Message: fmt.Sprintf(format, args...)}
	}
	if a.wms == nil {
		return refuse(protocol.RefusedUnsupported, "WMS upgrades are not set up on this appliance")
	}
	p := cmd.WMS
	target, err := wms.ParseVersion(p.Version)
	if err != nil {
		return refuse(protocol.RefusedMalformed, "%v", err)
	}
	if _, err := wms.ParseRepository(p.Repository); err != nil {
		return refuse(protocol.RefusedMalformed, "%v", err)
	}
	if pos, _ := (wms.Window{Start: p.WindowStart, End: p.WindowEnd}).At(a.clock.Now()); pos == wms.After {
		return refuse(protocol.RefusedExpired, "its maintenance window ended at %s", p.WindowEnd.UTC().Format(time.RFC3339))
	}
	a.mu.Lock()
	doc := a.doc
	a.mu.Unlock()
	if doc == nil {
		return refuse(protocol.RefusedRejected, "this appliance holds no licence")
	}
	installedText, err := a.wms.Installed(ctx)
	if err != nil {
		return &protocol.CommandResult{State: protocol.CommandFailed, Message: "reading the installed WMS version: " + err.Error()}
	}
	a.cmds.mu.Lock()
	a.cmds.wmsVersion = installedText
	a.cmds.mu.Unlock()
	var installed wms.Version
	if installedText != "" {
		if installed, err = wms.ParseVersion(installedText); err != nil {
			a.log.Warn("the installed WMS version is outside the format; the lifetime rule cannot compare it", "version", installedText)
		}
	}
	if err := wms.CheckTerm(doc.Term, installed, target); err != nil {
		return refuse(protocol.RefusedRejected, "%v", err)
	}
	return nil
}

// stepWMS moves one journaled wms.upgrade on: waiting → running when its
// window opens, running → its result once the helper wrote it. It reports
// whether the entry changed. Callers do not hold a.cmds.mu.
func (a *Agent) stepWMS(ctx context.Context, e *journalEntry) bool {
	a.cmds.mu.Lock()
	state, cmd := e.State, e.Command
	a.cmds.mu.Unlock()
	if cmd == nil || cmd.WMS == nil {
		return false
	}
	p := cmd.WMS
	now := a.clock.Now()
	switch state {
	case protocol.CommandWaiting:
		switch pos, _ := (wms.Window{Start: p.WindowStart, End: p.WindowEnd}).At(now); pos {
		case wms.Before:
			return false
		case wms.After:
			a.finishWMS(e, protocol.CommandResult{State: protocol.CommandRefused, Reason: protocol.RefusedExpired,
				Message: fmt.Sprintf("its maintenance window ended at %s before it could start", p.WindowEnd.UTC().Format(time.RFC3339))})
			return true
		}
		// The window is open: durably running before the helper starts.
		a.cmds.mu.Lock()
		e.State = protocol.CommandRunning
		err := a.cmds.store.Save(a.cmds.j)
		a.cmds.mu.Unlock()
		if err != nil {
			a.log.Error("saving the command journal; the upgrade waits", "id", e.ID, "err", err)
			a.cmds.mu.Lock()
			e.State = protocol.CommandWaiting
			a.cmds.mu.Unlock()
			return false
		}
		if err := a.wms.Start(ctx, wmsRequest(e)); err != nil {
			a.finishWMS(e, protocol.CommandResult{State: protocol.CommandFailed, Message: err.Error()})
			return true
		}
		a.setWMSUpgrade(fmt.Sprintf("upgrading to %s", p.Version))
		a.log.Info("WMS upgrade started", "id", e.ID, "version", p.Version, "repository", p.Repository)
		return true
	case protocol.CommandRunning:
		res, found, err := a.wms.Result(ctx, p.Version)
		if err != nil {
			a.log.Warn("reading the WMS upgrade's result", "version", p.Version, "err", err)
			return false
		}
		if found && res.CommandID == e.ID && res.Done() {
			out := protocol.CommandResult{State: protocol.CommandDone, WMS: res, Message: res.Summary()}
			if !res.OK() {
				out.State = protocol.CommandFailed
			}
			a.finishWMS(e, out)
			a.refreshWMSVersion(ctx)
			return true
		}
		running, err := a.wms.Running(ctx, p.Version)
		if err != nil || running {
			return false
		}
		// Not running, no final result of ours: a result written just now
		// is read on the next look; after that, the helper died.
		if res2, found2, _ := a.wms.Result(ctx, p.Version); found2 && res2.CommandID == e.ID && res2.Done() {
			return false
		}
		if handled, changed := a.resumeWMS(ctx, e, res); handled {
			return changed
		}
		a.finishWMS(e, protocol.CommandResult{State: protocol.CommandFailed, WMS: res,
			Message: "the upgrade helper stopped without a result (killed, or the machine restarted); see journalctl -u " +
				"pbx-agent-wms-upgrade@" + p.Version + ".service"})
		a.refreshWMSVersion(ctx)
		return true
	}
	return false
}

// wmsRequest is the helper's request for a journaled wms.upgrade.
func wmsRequest(e *journalEntry) wms.Request {
	p := e.Command.WMS
	return wms.Request{Version: p.Version, Repository: p.Repository, CommandID: e.ID,
		Window: &wms.Window{Start: p.WindowStart, End: p.WindowEnd}}
}

// resumeWMS starts the helper again for an upgrade whose helper stopped
// before its result was final (power lost, the helper or the machine
// killed): the helper resumes from the step its result records, rolling
// an interrupted install back, and always ends with a final result. The
// helper's own count of resumes (wms.MaxResumes, plus its last attempt
// that gives up) bounds this; a result without a step, or past the
// count, is not resumed and the command fails as before. handled says
// whether it dealt with the entry; changed whether the entry changed.
func (a *Agent) resumeWMS(ctx context.Context, e *journalEntry, res *wms.Result) (handled, changed bool) {
	if res == nil || res.CommandID != e.ID || !res.Resumable() || res.Resumes > wms.MaxResumes+1 {
		return false, false
	}
	version := e.Command.WMS.Version
	if err := a.wms.Start(ctx, wmsRequest(e)); err != nil {
		a.finishWMS(e, protocol.CommandResult{State: protocol.CommandFailed, WMS: res,
			Message: fmt.Sprintf("the upgrade helper stopped in step %s and could not be started again to finish it: %v; "+
				"start pbx-agent-wms-upgrade@%s.service to roll it back", res.Step, err, version)})
		return true, true
	}
	a.setWMSUpgrade(fmt.Sprintf("resuming the upgrade to %s, interrupted in step %s", version, res.Step))
	a.log.Warn("WMS upgrade helper stopped before its result was final; started again to resume it",
		"id", e.ID, "version", version, "step", res.Step, "resumes", res.Resumes)
	return true, false
}

func (a *Agent) finishWMS(e *journalEntry, res protocol.CommandResult) {
	a.cmds.mu.Lock()
	a.finishLocked(e, a.clock.Now(), res)
	a.cmds.mu.Unlock()
	msg := res.Message
	if !strings.Contains(msg, e.Command.WMS.Version) {
		msg = e.Command.WMS.Version + ": " + msg
	}
	a.setWMSUpgrade(msg)
	a.wakeHeartbeat()
}

// wmsEntries returns the journaled upgrades still in progress.
func (a *Agent) wmsEntries() []*journalEntry {
	a.cmds.mu.Lock()
	defer a.cmds.mu.Unlock()
	var out []*journalEntry
	for _, e := range a.cmds.j.Entries {
		if e.Type == protocol.CommandWMSUpgrade && (e.State == protocol.CommandWaiting || e.State == protocol.CommandRunning) {
			out = append(out, e)
		}
	}
	return out
}

// followWMS steps every upgrade in progress and returns how long until it
// should look again (0: nothing to follow).
func (a *Agent) followWMS(ctx context.Context) time.Duration {
	if a.wms == nil {
		return 0
	}
	var next time.Duration
	for _, e := range a.wmsEntries() {
		a.stepWMS(ctx, e)
		a.cmds.mu.Lock()
		state, w := e.State, e.Command.WMS
		a.cmds.mu.Unlock()
		d := time.Duration(0)
		switch state {
		case protocol.CommandRunning:
			d = wmsFollowEvery
		case protocol.CommandWaiting:
			_, d = (wms.Window{Start: w.WindowStart, End: w.WindowEnd}).At(a.clock.Now())
			d = max(d, 10*time.Millisecond)
			a.setWMSUpgrade(fmt.Sprintf("%s waits for its window at %s", w.Version, w.WindowStart.UTC().Format(time.RFC3339)))
		}
		if d > 0 && (next == 0 || d < next) {
			next = d
		}
	}
	return next
}

// refreshWMSVersion reads the installed version for the status.
func (a *Agent) refreshWMSVersion(ctx context.Context) {
	if a.wms == nil {
		return
	}
	v, err := a.wms.Installed(ctx)
	if err != nil {
		a.log.Warn("reading the installed WMS version", "err", err)
		return
	}
	a.cmds.mu.Lock()
	a.cmds.wmsVersion = v
	a.cmds.mu.Unlock()
}

func (a *Agent) setWMSUpgrade(s string) {
	a.cmds.mu.Lock()
	a.cmds.wmsUpgrade = s
	a.cmds.mu.Unlock()
}

func (a *Agent) wmsStatus() localapi.WMSStatus {
	a.cmds.mu.Lock()
	defer a.cmds.mu.Unlock()
	return localapi.WMSStatus{Version: a.cmds.wmsVersion, Upgrade: a.cmds.wmsUpgrade}
}
