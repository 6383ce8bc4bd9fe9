package actions

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/pbx-agent/pbx-agent/pkg/wms"
)

// resume carries on an upgrade whose helper was stopped (power lost, a
// kill, a crash) before its result was final, from the step it recorded:
//
//   - before StepInstall nothing of the WMS changed: it starts over;
//   - in StepInstall or StepRollback the WMS may be half installed: the
//     kept .deb of the previous version is installed again;
//   - in StepHealth the target is checked again if dpkg has it installed,
//     and rolled back otherwise.
//
// Each resume is counted in the result before anything else; past
// wms.MaxResumes the upgrade fails for good (giveUp).
func (u *upgrade) resume(ctx context.Context, prev *wms.Result) error {
	if err := u.cfg.Validate(); err != nil {
		return fmt.Errorf("config %w", err)
	}
	res := *prev
	res.Format = 0
	u.res = &res
	u.tail.Write([]byte(strings.Join(prev.LogTail, "\n") + "\n"))
	u.res.Resumes++
	// The agent writes the request again when it starts the helper again;
	// an admin's start after a reboot may find none: the result has all.
	if req, err := wms.ReadRequest(u.cfg.RuntimeDir, u.version); err == nil && req.CommandID != "" {
		u.res.CommandID = req.CommandID
	}
	u.logf("resuming the upgrade of %s to %s, interrupted in step %s (resume %d of at most %d)",
		u.cfg.Package, u.version, prev.Step, u.res.Resumes, wms.MaxResumes)
	if err := u.save(); err != nil { // the count first: it is the loop breaker
		return fmt.Errorf("recording the resume: %w", err)
	}
	if u.res.Resumes > wms.MaxResumes {
		return u.giveUp(ctx, prev.Step)
	}
	interrupted := fmt.Errorf("the helper was interrupted in step %s (power lost, killed or crashed)", prev.Step)
	switch prev.Step {
	case wms.StepPrepare, wms.StepSource, wms.StepKeep, wms.StepBackup:
		u.res.Kept, u.res.Error = "", ""
		return u.run(ctx)
	case wms.StepHealth:
		if err := u.recover(ctx); err != nil {
			return u.rollBackFor(ctx, errors.Join(interrupted, err))
		}
		if now, err := u.installed(ctx); err != nil || now != u.version {
			return u.rollBackFor(ctx, fmt.Errorf("%w; %s is at %q, not %s (%v)", interrupted, u.cfg.Package, now, u.version, err))
		}
		u.res.Installed = u.version
		return u.checkTarget(ctx)
	case wms.StepInstall:
		return u.rollBackFor(ctx, fmt.Errorf("installing %s %s: %w", u.cfg.Package, u.version, interrupted))
	case wms.StepRollback:
		why := prev.Error
		if why == "" {
			why = "the upgrade failed"
		}
		return u.rollBackFor(ctx, fmt.Errorf("%s; %w", why, interrupted))
	}
	u.res.Outcome = wms.Failed
	return fmt.Errorf("the result records an unknown step %q: not resumed; check `dpkg --audit` and %s, then queue the upgrade again", prev.Step, u.cfg.Package)
}

// giveUp ends an upgrade interrupted more than wms.MaxResumes times: it
// fails for good. If the WMS may have changed, the kept version is
// installed once more, unless that attempt was itself interrupted.
func (u *upgrade) giveUp(ctx context.Context, step wms.Step) error {
	u.res.Outcome = wms.Failed
	msg := fmt.Sprintf("gave up after %d resumes: the upgrade helper was stopped each time (last in step %s) before it could finish: "+
		"find what kills it or the machine (journalctl -u %s, the kernel log), then queue the upgrade again",
		u.res.Resumes-1, step, WMSUpgradeUnit(u.version))
	changed := step == wms.StepInstall || step == wms.StepHealth || step == wms.StepRollback
	if changed && u.res.Resumes == wms.MaxResumes+1 {
		u.logf("%s; restoring %s %s", msg, u.cfg.Package, u.res.Previous)
		if err := u.rollback(ctx, u.res.Kept, u.res.Previous); err != nil {
			msg += fmt.Sprintf("; restoring %s failed too (%v): check `dpkg --audit` and reinstall %s", u.res.Previous, err, u.cfg.Package)
		} else {
			u.res.RolledBack = true
			msg += fmt.Sprintf("; %s %s restored", u.cfg.Package, u.res.Previous)
		}
	} else if changed {
		msg += "; restoring the previous version was interrupted too: check `dpkg --audit` and reinstall " + u.cfg.Package
	}
	if now, err := u.installed(ctx); err == nil {
		u.res.Installed = now
	} else {
		u.res.Installed = ""
		msg += fmt.Sprintf("; %v", err)
	}
	return errors.New(msg)
}

// keptDeb checks the recorded rollback package: a file in the keep folder
// that is the package's .deb at version. The result file is root's, but a
// rollback installs whatever it names, so it is checked all the same.
func (u *upgrade) keptDeb(ctx context.Context, kept, version string) error {
	if kept == "" {
		return fmt.Errorf("no .deb of %s %s was kept", u.cfg.Package, version)
	}
	if filepath.Dir(kept) != u.keepDir() {
		return fmt.Errorf("the kept package %s is outside %s: not installed", kept, u.keepDir())
	}
	if !u.debIs(ctx, kept, version) {
		return fmt.Errorf("%s is not %s %s: not installed", kept, u.cfg.Package, version)
	}
	return nil
}
