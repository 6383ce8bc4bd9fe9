package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/pbx-agent/pbx-agent/agent/metrics"
	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/buildinfo"
	"github.com/pbx-agent/pbx-agent/pkg/clock"
	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
	"github.com/pbx-agent/pbx-agent/pkg/tunnel"
	"github.com/pbx-agent/pbx-agent/pkg/users"
)

// ErrNotActivated is returned by Refresh before a key is activated.
var ErrNotActivated = apitype.ErrNotActivated

// Options are the parts of the agent tests replace.
type Options struct {
	// Time is the one clock every decision reads and every loop waits on;
	// nil is the machine's (clock.System).
	Time clock.Clock
	Root string // prefix of the machine files read for identity; "" is "/"
	// Telephony is called on entering and leaving the states that stop
	// telephony; nil logs only (see lifecycle.go).
	Telephony Telephony
	// Users counts the PBX's users; nil is the source of users.source.
	Users users.Source
	// SSH opens temporary support access; nil refuses ssh.open and
	// ssh.close as not set up (see commands.go).
	SSH SSHAccess
	// WMS runs WMS upgrades; nil refuses wms.upgrade as not set up (wms.go).
	WMS WMSUpgrader
	// Reload reads the configuration again on SIGHUP (reload.go); nil
	// keeps the configuration New was given.
	Reload func() (Config, error)
	// LogLevel is the level of the logger New is given, which a reload
	// sets from log.level; nil leaves the level alone.
	LogLevel *slog.LevelVar
	// Started is when the process started, on the machine's clock, for
	// pbx_agent_start_time_seconds; zero leaves that series out.
	Started time.Time
}

// Agent is the daemon's core. It owns no state of its own: it builds the
// components, hands each what it needs of the others through funcs and
// small interfaces, and forwards the local API's calls to them.
//
// Locks, and the order they may be taken in (a lock may be held while
// taking one to its right, never the other way):
//
//	licence.exchangeMu → licence.mu → clockMark.mu, the audit log's own
//	licence.exchangeMu → commands' locks, seats' locks, trust's (an exchange
//	                     reads results and counts, journals commands and
//	                     keeps revocations, each without licence.mu held)
//	lifecycle.mu (held across a telephony call) → licence.mu (its audit event)
//	commands' mu → trust's (verifying a command it takes)
//	seats' countMu → seats' mu; neither is held while licence.mu is taken
//	hbSchedule.mu, reloadState.mu, clockMark.mu: leaves, held only to read
//	or write their own fields
//
// licence.mu is never held while calling another component: the status
// snapshot reads every other component first, then the licence's part.
type Agent struct {
	cfg Config // read-only after New; a reload hands each component its part
	log *slog.Logger
	clk clock.Clock // Options.Time: the licence clock's readings and every loop's timers

	lic     *licence         // the state, the licence clock, the exchanges with the portal (licence.go)
	lc      lifecycle        // audit log, telephony seam, evaluation (lifecycle.go)
	users   *seats           // user counts, reservations, over-use, admission (users.go, admission.go)
	metrics *metrics.Metrics // the registry; its gauges read Status at each scrape (metrics.go)
	cmds    *commands        // portal commands: the journal and its executors (commands.go)
	ssh     *sshAccess       // temporary support SSH (ssh.go)
	wms     *wmsUpgrades     // WMS upgrades (wms.go)
	info    *applianceInfo   // serial and WMS versions for the status (appliance.go)
	hb      *hbSchedule      // the heartbeat loop's channels and schedule (heartbeat.go)
	rl      *reloadState     // what a reload compares with and how the last one went (reload.go)
}

// New loads the keyring and the persisted state. A state file that cannot
// be read is an error that names it; a licence that no longer verifies is
// reported and the agent starts unactivated, keeping the file.
func New(cfg Config, log *slog.Logger, opts Options) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	bi := buildinfo.Read()
	root := opts.Root
	if root == "" {
		root = "/"
	}
	src := opts.Time
	if src == nil {
		src = clock.System()
	}
	deviceKey := loadDeviceKey(cfg.StateDir) // licence.go: beside what follows
	a := &Agent{
		cfg: cfg, log: log, clk: src,
		hb: newHBSchedule(cfg.Heartbeat.Interval),
		rl: &reloadState{read: opts.Reload, level: opts.LogLevel, running: cfg},
	}
	lic, markRemoved, err := loadLicence(cfg, licenceEnv{
		log: log, stateDir: cfg.StateDir, root: root, version: bi.Version, identity: cfg.Identity,
		audit: a.auditEvent, // the audit log is opened below, before any event
	}, src)
	if err != nil {
		return nil, err
	}
	a.lic = lic
	a.metrics = metrics.New(metrics.Config{Status: a.Status, Build: bi, Logger: log.With("component", "metrics"),
		CommandTypes: commandTypes(), Started: opts.Started})
	if err := a.initLifecycle(opts); err != nil {
		return nil, err
	}
	if err := a.initUsers(opts, src); err != nil {
		return nil, err
	}
	if err := a.initCommands(opts, src); err != nil {
		return nil, err
	}
	lic.peers = licencePeers{
		results: a.cmds.results,
		take:    a.cmds.take,
		usage: func() license.Counts {
			used, _, _ := a.users.snapshot()
			return used
		},
		heartbeat: a.metrics.Heartbeat,
	}
	if err := lic.finish(markRemoved, deviceKey); err != nil {
		return nil, err
	}
	return a, nil
}

// State returns the current lifecycle state.
func (a *Agent) State() license.State {
	return a.lic.verdict(a.lic.now()).State
}

// Activate validates a pasted key and activates it with the portal.
func (a *Agent) Activate(ctx context.Context, raw string) error {
	return a.lic.activate(ctx, raw, func() {
		a.record() // telephony is lifecycleLoop's: Activate does not wait on it
		a.wakeLifecycle()
		a.hb.restart()
	})
}

// classifyActivation maps a failed exchange to the errors the local API
// turns into exit codes: the key refused (2, as for a key found invalid
// here: the fix is a new key), otherwise refused (3), or unreachable (4).
func classifyActivation(err error) error {
	var re *refusedError
	if errors.As(err, &re) && !re.transient() {
		if re.body.Code == protocol.CodeInvalidKey {
			return fmt.Errorf("%w (%w): %s", apitype.ErrRefused, apitype.ErrInvalidKey, re.body.Message)
		}
		return fmt.Errorf("%w: %s", apitype.ErrRefused, re.body.Message)
	}
	return fmt.Errorf("%w: %v", apitype.ErrUnreachable, err)
}

// initCommands opens the command journal and sets up its executors.
func (a *Agent) initCommands(opts Options, clk clock.Clock) error {
	env := commandEnv{
		log: a.log, clock: clk, now: a.lic.now,
		keyring: a.lic.keyring,
		audit:   a.auditEvent,
		metrics: a.metrics,
		report:  a.wakeHeartbeat,
	}
	tun := &supportTunnel{env: env, adopt: a.lic.clock.AdoptPortal,
		dial: func(id string) (tunnel.DialConfig, error) { return a.lic.tunnelDialConfig(a.cfg.Portal.URL, id) }}
	a.ssh = newSSHAccess(opts.SSH, a.cfg.SSH, env, tun, func() bool { return a.State().StopsTelephony() })
	a.wms = &wmsUpgrades{up: opts.WMS, env: env, licence: a.lic.document}
	a.info = newApplianceInfo(&a.cfg, a.lic.env.root, opts.WMS, clk.Wall)
	cmds, err := openCommands(a.cfg.StateDir, env, executorTable(a.ssh, a.wms))
	if err != nil {
		return err
	}
	a.cmds = cmds
	return nil
}

// exchangeHeartbeat reports to the portal and applies its answer (licence.go).
func (a *Agent) exchangeHeartbeat(ctx context.Context) error { return a.lic.exchangeHeartbeat(ctx) }

// persistClock saves the licence clock's mark with the state.
func (a *Agent) persistClock() error { return a.lic.persistClock() }

// writeClockMark writes the licence clock's mark record now.
func (a *Agent) writeClockMark() error {
	a.lic.notePeak() // offline.go: the peak of users a usage report carries
	return a.lic.writeClockMark()
}
