package actions

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"syscall"

	"github.com/pbx-agent/pbx-agent/pkg/wms"
)

// WMSUpgradeUnit is the unit that upgrades the WMS to version: it runs
// `pbx-agent helper wms-upgrade <version>` as root, and polkit lets the
// agent start exactly these instances.
func WMSUpgradeUnit(version string) string {
	return "pbx-agent-wms-upgrade@" + version + ".service"
}

// WMSUpgrades is the agent's side of WMS upgrades. Start hands a request to
// the root helper, which runs apart from the agent: as its own unit under
// systemd, or as a child process in a process group of its own elsewhere.
// Either way the helper writes its result to a file, so an agent restarted
// during an upgrade loses nothing: Running says whether the helper is still
// at work, and Result reads its outcome.
//
// A result file is per version and is replaced when the helper starts
// again for that version: compare its CommandID (or Started) with the
// command's to tell a new outcome from an earlier attempt's.
type WMSUpgrades struct {
	cfg    WMSUpgradeConfig // RuntimeDir, ResultDir, Package and Root are used
	runner wmsRunner
	log    *slog.Logger
}

// wmsRunner starts the helper for a version and tells whether it runs.
type wmsRunner interface {
	start(ctx context.Context, version string) error
	running(ctx context.Context, version string) (bool, error)
}

// NewSystemdWMSUpgrades starts pbx-agent-wms-upgrade@<version>.service over
// D-Bus (dial is DialSystemBus but in tests). A restart of the agent never
// stops the unit.
func NewSystemdWMSUpgrades(cfg WMSUpgradeConfig, dial func(context.Context) (Units, error), log *slog.Logger) *WMSUpgrades {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &WMSUpgrades{cfg: cfg, runner: &unitRunner{bus: newBus(dial)}, log: log}
}

// NewProcessWMSUpgrades runs helper (the command line of `pbx-agent helper
// wms-upgrade`, to which the version is appended) as a child process, in a
// process group of its own so that a signal to the agent's group does not
// reach it, with its output to output (nil discards). For development and
// tests: the helper needs root to install anything.
func NewProcessWMSUpgrades(cfg WMSUpgradeConfig, helper []string, output io.Writer, log *slog.Logger) (*WMSUpgrades, error) {
	if len(helper) == 0 || helper[0] == "" {
		return nil, errors.New("WMS upgrades: no helper command")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &WMSUpgrades{cfg: cfg, runner: &childRunner{argv: helper, output: orDiscard(output), done: map[string]chan struct{}{}}, log: log}, nil
}

// Start writes the request where the helper reads it and starts the helper.
// It returns once the helper has started (the upgrade itself takes minutes):
// follow it with Running and Result. Starting a version whose helper is
// still running does not start another.
func (w *WMSUpgrades) Start(ctx context.Context, req wms.Request) error {
	if req.Format == 0 {
		req.Format = wms.RequestFormat
	}
	if err := req.Validate(""); err != nil {
		return err
	}
	if running, err := w.runner.running(ctx, req.Version); err != nil {
		return err
	} else if running {
		w.log.Info("WMS upgrade already running", "version", req.Version)
		return nil
	}
	if err := wms.WriteRequest(w.cfg.RuntimeDir, req); err != nil {
		return fmt.Errorf("WMS upgrade to %s: %w", req.Version, err)
	}
	if err := w.runner.start(ctx, req.Version); err != nil {
		return fmt.Errorf("WMS upgrade to %s: %w", req.Version, err)
	}
	w.log.Info("WMS upgrade started", "version", req.Version, "repository", req.Repository, "command", req.CommandID)
	return nil
}

// String says how upgrades run, for the start-up log.
func (w *WMSUpgrades) String() string {
	if c, ok := w.runner.(*childRunner); ok {
		return "child process: " + strings.Join(c.argv, " ") + " VERSION"
	}
	return "systemd: " + WMSUpgradeUnit("VERSION")
}

// Running reports whether the helper for version is at work.
func (w *WMSUpgrades) Running(ctx context.Context, version string) (bool, error) {
	if _, err := wms.ParseVersion(version); err != nil {
		return false, err
	}
	return w.runner.running(ctx, version)
}

// Result reads the helper's result for version; found is false when there
// is none. A result whose outcome is wms.Running while Running is false
// is a helper that died (killed, or the machine lost power): if it is
// Resumable, Start again resumes it from its step.
func (w *WMSUpgrades) Result(_ context.Context, version string) (res *wms.Result, found bool, err error) {
	return wms.ReadResult(w.cfg.ResultDir, version)
}

// Installed is the WMS version installed, from dpkg's database; "" when
// the package is not installed.
func (w *WMSUpgrades) Installed(ctx context.Context) (string, error) {
	v, status, err := dpkgQuery(ctx, w.cfg.root(), w.cfg.Package)
	if err != nil {
		return "", err
	}
	switch status {
	case "", "not-installed", "config-files":
		return "", nil
	}
	return v, nil
}

// unitRunner starts the upgrade unit over D-Bus.
type unitRunner struct {
	mu  sync.Mutex // one call at a time; guards bus
	bus bus[Units]
}

func (r *unitRunner) start(ctx context.Context, version string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	conn, err := r.bus.get(ctx)
	if err != nil {
		return err
	}
	// The job lasts as long as the upgrade (a oneshot): do not wait for it.
	// A refusal (polkit, a bad instance) is an error of the call itself.
	unit := WMSUpgradeUnit(version)
	if _, err := conn.StartUnitContext(ctx, unit, "replace", nil); err != nil {
		r.bus.drop()
		return fmt.Errorf("starting %s: %w", unit, err)
	}
	return nil
}

func (r *unitRunner) running(ctx context.Context, version string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	conn, err := r.bus.get(ctx)
	if err != nil {
		return false, err
	}
	unit := WMSUpgradeUnit(version)
	p, err := conn.GetUnitPropertyContext(ctx, unit, "ActiveState")
	if err != nil {
		r.bus.drop()
		return false, fmt.Errorf("reading the state of %s: %w", unit, err)
	}
	state, _ := p.Value.Value().(string)
	switch state {
	case "activating", "active", "deactivating", "reloading", "refreshing":
		return true, nil
	}
	return false, nil
}

// childRunner runs the helper as a child process.
type childRunner struct {
	argv   []string
	output io.Writer
	mu     sync.Mutex
	done   map[string]chan struct{} // version → closed when its helper exits
}

func (r *childRunner) start(_ context.Context, version string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ch, ok := r.done[version]; ok && !closed(ch) {
		return nil
	}
	// Not bound to a context: the upgrade outlives the command that asked.
	cmd := exec.Command(r.argv[0], append(r.argv[1:], version)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout, cmd.Stderr = r.output, r.output
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	r.done[version] = done
	go func() {
		cmd.Wait() // the outcome is in the result file
		close(done)
	}()
	return nil
}

func (r *childRunner) running(_ context.Context, version string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ch, ok := r.done[version]
	return ok && !closed(ch), nil
}

// wait blocks until the helper for version exits, for tests.
func (r *childRunner) wait(version string) {
	r.mu.Lock()
	ch := r.done[version]
	r.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

func closed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
