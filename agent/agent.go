package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/pbx-agent/pbx-agent/agent/metrics"
	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/buildinfo"
	"github.com/pbx-agent/pbx-agent/pkg/clock"
	"github.com/pbx-agent/pbx-agent/pkg/identity"
	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
	"github.com/pbx-agent/pbx-agent/pkg/state"
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
}

// Agent is the daemon's core: it owns the persisted state, the licence
// clock and every exchange with the portal.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	clk     clock.Clock // Options.Time: the licence clock's readings and every loop's timers
	trust   *trust      // the portal keys trusted, revocations applied (trust.go)
	clock   *license.Clock
	mark    *clockMark // the clock's mark record (clockmark.go)
	store   *state.File[persisted]
	portal  *portalClient
	root    string
	model   license.Model
	version string
	// setupErr is a configuration problem (no portal keyring, no
	// portal.url) that stops every exchange with the portal.
	setupErr error

	// exchangeMu serialises exchanges with the portal, so an activation
	// and a heartbeat never interleave their state changes.
	exchangeMu sync.Mutex

	lc lifecycle // audit log, telephony seam, evaluation (lifecycle.go)

	users *seats // user counts, reservations, over-use, admission (users.go, admission.go)

	metrics *metrics.Metrics // the registry; its gauges read Status at each scrape (metrics.go)

	cmds      *commands              // portal commands: the journal and its executors (commands.go)
	ssh       *sshAccess             // temporary support SSH (ssh.go)
	wms       *wmsUpgrades           // WMS upgrades (wms.go)
	hb        *hbSchedule            // the heartbeat loop's channels and schedule (heartbeat.go)
	reloadCfg func() (Config, error) // Options.Reload
	logLevel  *slog.LevelVar         // Options.LogLevel
	cfgStatus *apitype.ConfigStatus  // how the last reload went; nil before one; guarded by mu

	mu        sync.Mutex // guards the fields below
	st        persisted
	doc       *license.Document // the verified licence of st.License
	device    *license.Signer   // nil until the first activation
	lastError string
	lastOK    time.Time // the signed time of st.Answer: the last success
	refusedAt time.Time // the signed time of st.Refused, unless a success came after
	restored  bool      // the state is older than the clock record: lapsed until an answer counts
}

// New loads the keyring and the persisted state. A state file that cannot
// be read is an error that names it; a licence that no longer verifies is
// reported and the agent starts unactivated, keeping the file.
func New(cfg Config, log *slog.Logger, opts Options) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// A missing keyring or portal URL keeps the agent from its portal but
	// not from running: a fresh install starts, and says what to configure.
	var setupErr error
	bi := buildinfo.Read()
	var tr *trust // loaded below, before any exchange
	portal, err := newPortalClient(cfg.Portal, func() *license.Keyring { return tr.Keyring() }, "pbx-agent/"+bi.Version)
	if err != nil {
		setupErr = err
	}
	root := opts.Root
	if root == "" {
		root = "/"
	}
	// Only activation needs the model: a machine that hides it still runs.
	model, source, err := identity.ResolveModel(cfg.Identity.Model, root)
	switch {
	case err != nil:
		if setupErr == nil {
			setupErr = err
		}
		log.Error("the appliance model is unknown; activation needs it", "err", err)
	case source == "identity.model":
		log.Info("appliance model set by configuration", "model", model)
	}
	store, err := state.Open[persisted](state.Options{
		Dir: cfg.StateDir, Name: stateFileName, Version: stateSchema, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	st, info, err := store.Load()
	switch {
	case errors.Is(err, state.ErrNotExist):
		log.Info("no saved state: first start", "dir", cfg.StateDir)
	case err != nil:
		return nil, fmt.Errorf("loading state: %w", err)
	case info.Recovered:
		log.Warn("state recovered from the previous good copy", "reason", info.RecoveredReason)
	}
	src := opts.Time
	if src == nil {
		src = clock.System()
	}
	markRemoved := st.ClockMark && !fileExists(filepath.Join(cfg.StateDir, clockMarkFile))
	mark, clk, err := openClockMark(cfg.StateDir, root, src, st.HighWater, log)
	if err != nil {
		return nil, err
	}
	// Key announcements are judged on the licence clock, which a local
	// clock set back cannot move back, so it cannot revive an expired one.
	kr, err := loadPortalKeyring(cfg.Portal.Keyring, clk.Now(), log) // trust.go
	if err != nil {
		setupErr = err // what to configure first on a fresh install
	}
	if setupErr != nil {
		log.Error("the agent cannot reach its portal until this is fixed", "err", setupErr)
	}
	if tr, err = loadTrust(kr, cfg.StateDir); err != nil {
		return nil, err
	}
	a := &Agent{
		cfg: cfg, log: log, trust: tr, portal: portal, store: store, setupErr: setupErr,
		root: root, model: model, version: bi.Version, st: st,
		clock:     clk,
		clk:       src,
		mark:      mark,
		hb:        newHBSchedule(cfg.Heartbeat.Interval),
		reloadCfg: opts.Reload,
		logLevel:  opts.LogLevel,
	}
	a.metrics = metrics.New(metrics.Config{Status: a.Status, Build: bi, Logger: log.With("component", "metrics"),
		CommandTypes: commandTypes()})
	if setupErr != nil {
		a.lastError = setupErr.Error()
	}
	if st.License != "" && kr != nil {
		doc, err := a.verifyLicense(st.License)
		if err != nil {
			a.lastError = "the saved licence no longer verifies: " + err.Error()
			log.Error("saved licence refused; starting unactivated", "err", err)
		}
		a.doc = doc
		a.loadAnswers()
	}
	if err := a.initLifecycle(opts); err != nil {
		return nil, err
	}
	if err := a.initUsers(opts, src); err != nil {
		return nil, err
	}
	if err := a.initCommands(opts, src); err != nil {
		return nil, err
	}
	device, err := license.LoadSigner(filepath.Join(cfg.StateDir, deviceKeyFile))
	switch {
	case err == nil:
		a.device = device
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("loading the device key: %w", err)
	}
	a.checkMachine()
	a.mu.Lock()
	a.checkRestoredState(markRemoved) // clockmark.go
	a.mu.Unlock()
	return a, nil
}

// checkMachine refuses a state folder that was not activated on this
// machine for the PBX its licence names: a copy of /var/lib/pbx-agent,
// device key included, would otherwise run as the original, and a licence
// of another PBX pasted into the state would be used. The licence and
// device key are set aside (the files stay, never deleted or adopted);
// this appliance must be activated with its own key, which the portal
// binds only after a re-bind. A state without a fingerprint is foreign
// too: every activation records one.
func (a *Agent) checkMachine() {
	if a.doc == nil {
		return
	}
	fp, err := identity.Fingerprint(a.root, a.doc.PBX.ID, a.cfg.Identity.Serial)
	if err != nil {
		a.log.Warn("cannot fingerprint this machine; the state folder is not checked", "err", err)
		return
	}
	why := ""
	switch {
	case a.st.PBX == nil || a.st.PBX.ID != a.doc.PBX.ID:
		why = "its licence is for another PBX than the one activated"
	case a.st.Fingerprint == "":
		why = "it records no fingerprint of the machine it was activated on"
	case a.st.Fingerprint != fp:
		why = "it was activated on another machine (its fingerprint differs)"
	default:
		return
	}
	a.doc, a.device = nil, nil
	a.lastError = "this state folder is foreign: " + why + "; it is set aside, not used. " +
		"Activate this appliance with its PBX key (pbx-agent activate); if the PBX is bound to another appliance, the partner re-binds it on the portal first"
	a.log.Error("foreign state folder: licence and device key set aside", "why", why, "dir", a.cfg.StateDir)
}

// loadAnswers derives the last success and any refusal from the signed
// answers kept in the state, never from an unsigned field: a kept answer
// counts only when it verifies, names this PBX and states the licence held
// as current. Without one, the licence's issue time stands in.
func (a *Agent) loadAnswers() {
	kr, doc := a.trust.Keyring(), a.doc
	if doc == nil || kr == nil {
		return
	}
	if a.st.Answer != "" {
		ans, err := protocol.VerifyKeptAnswer(a.st.Answer, kr, doc.PBX.ID)
		switch {
		case err != nil:
			a.log.Warn("the kept portal answer does not verify; the last success counts from the licence's issue time", "err", err)
		case !ans.Matches(protocol.HeldLicence(doc.Revision, a.st.License)):
			a.log.Warn("the kept portal answer is about another licence than the one held; the last success counts from the licence's issue time",
				"answer_revision", ans.Revision, "held_revision", doc.Revision)
		default:
			a.lastOK = ans.Time
		}
	}
	// The licence clock was at least where the portal signed: a mark moved
	// back cannot take it before the licence or the last answer.
	a.clock.Floor(doc.IssuedAt)
	a.clock.Floor(a.lastOK)
	if a.st.Refused != "" {
		ans, err := protocol.VerifyKeptAnswer(a.st.Refused, kr, doc.PBX.ID)
		if err == nil && ans.Status == protocol.StatusRefused && ans.Time.After(a.lastOK) {
			a.refusedAt = ans.Time
		}
	}
}

func (a *Agent) verifyLicense(compact string) (*license.Document, error) {
	doc, err := license.ParseDocument(compact, a.trust.Keyring(), license.DocumentCheck{})
	if err != nil {
		return nil, err
	}
	// Revocations the licence announces apply from now on, to itself too.
	if slices.Contains(doc.RevokedKeyIDs, doc.SignerKeyID) {
		return nil, &license.Error{Doc: "licence", Kind: license.ErrUnknownSigner,
			Detail: fmt.Sprintf("it is signed by portal key %q, which it revokes itself", doc.SignerKeyID)}
	}
	return doc, nil
}

// verdict evaluates the lifecycle now. Callers hold a.mu.
func (a *Agent) verdictLocked(now time.Time) license.Verdict {
	return license.Evaluate(license.Facts{Now: now, Doc: a.doc, LastSuccess: a.lastOK, Gone: a.st.Gone,
		RefusedSince: a.refusedAt, Restored: a.restored})
}

// State returns the current lifecycle state.
func (a *Agent) State() license.State {
	now := a.clock.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.verdictLocked(now).State
}

// Activate validates a pasted key and activates it with the portal.
func (a *Agent) Activate(ctx context.Context, raw string) error {
	a.exchangeMu.Lock()
	defer a.exchangeMu.Unlock()

	if a.setupErr != nil {
		return fmt.Errorf("%w: %v", apitype.ErrUnreachable, a.setupErr)
	}
	key, err := license.ParseKey(raw, a.trust.Keyring(), license.KeyCheck{Now: a.clock.Now(), Model: a.model})
	if err != nil {
		return err
	}
	now := a.clock.Now()
	a.mu.Lock()
	held := a.doc
	deleted := a.verdictLocked(now).State == license.Deleted
	a.mu.Unlock()
	if held != nil && !deleted && held.PBX.ID != key.PBX.ID {
		return fmt.Errorf("%w: this appliance already holds PBX %s (%s); it can hold one PBX", apitype.ErrRefused, held.PBX.ID, held.PBX.Name)
	}
	device, err := a.ensureDevice()
	if err != nil {
		return err
	}
	fingerprint, err := identity.Fingerprint(a.root, key.PBX.ID, a.cfg.Identity.Serial)
	if err != nil {
		return err
	}
	var overrides []string
	if a.cfg.Identity.Model != "" {
		overrides = append(overrides, "identity.model")
	}
	if a.cfg.Identity.Serial != "" {
		overrides = append(overrides, "identity.serial")
	}
	req := protocol.ActivateRequest{
		Key:         license.NormalizeKey(raw),
		DeviceKey:   device.Public(),
		Fingerprint: fingerprint, Model: a.model, Serial: a.cfg.Identity.Serial,
		Overrides: overrides, AgentVersion: a.version,
	}
	xctx, cancel := context.WithTimeout(ctx, portalTimeout)
	defer cancel()
	ans, err := a.signedExchange(xctx, protocol.PathActivate, protocol.TypeActivate, key.PBX.ID, func(r protocol.Request) any {
		req.Request = r
		return req
	})
	if err != nil {
		return classifyActivation(err)
	}
	if ans.Status == protocol.StatusGone {
		return fmt.Errorf("%w: the portal says PBX %s is gone (%s)", apitype.ErrRefused, key.PBX.ID, ans.Reason)
	}
	doc, err := a.acceptLicense(ans.License, key.PBX.ID, true)
	if err != nil {
		return fmt.Errorf("%w: activation answer: %v", apitype.ErrUnreachable, err)
	}
	if !ans.Matches(protocol.HeldLicence(doc.Revision, ans.License)) {
		return fmt.Errorf("%w: the activation answer states another licence (revision %d) than the one it carries (revision %d)",
			apitype.ErrUnreachable, ans.Revision, doc.Revision)
	}
	a.mu.Lock()
	err = a.commitLocked(persisted{
		License: ans.License, PBX: &doc.PBX, ActivatedAt: a.clock.Now(),
		Answer: ans.Compact, Chain: protocol.Link{}.Next(ans.Compact),
		Interval: ans.Interval, State: a.st.State, Fingerprint: fingerprint,
	}, doc)
	if err == nil {
		a.lastOK, a.refusedAt, a.restored, a.lastError = ans.Time, time.Time{}, false, ""
		if merr := a.mark.restart(a.clock.Mark(), doc.Revision, a.st.Chain.Seq); merr != nil {
			a.log.Error("writing the licence clock's mark", "err", merr)
		}
		fields := licenceFields(doc)
		fields["pbx"], fields["name"], fields["model"] = doc.PBX.ID, doc.PBX.Name, string(doc.PBX.Model)
		a.auditLocked(a.clock.Now(), auditActivated, fields)
	}
	a.mu.Unlock()
	if err != nil {
		return err
	}
	a.log.Info("activated", "pbx", doc.PBX.ID, "name", doc.PBX.Name, "revision", doc.Revision, "users", doc.Counts.String())
	a.record() // telephony is lifecycleLoop's: Activate does not wait on it
	a.wakeLifecycle()
	a.hb.restart()
	return nil
}

// classifyActivation maps a failed exchange to the errors the local API
// turns into exit codes: refused (3) or unreachable (4).
func classifyActivation(err error) error {
	var re *refusedError
	if errors.As(err, &re) && !re.transient() {
		return fmt.Errorf("%w: %s", apitype.ErrRefused, re.body.Message)
	}
	return fmt.Errorf("%w: %v", apitype.ErrUnreachable, err)
}

// ensureDevice returns the device key, making and saving one (0600) on
// first use. It identifies this appliance to the portal from then on.
func (a *Agent) ensureDevice() (*license.Signer, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.device != nil {
		return a.device, nil
	}
	s, err := protocol.NewDeviceKey()
	if err != nil {
		return nil, err
	}
	if err := license.SaveSigner(filepath.Join(a.cfg.StateDir, deviceKeyFile), s); err != nil {
		return nil, fmt.Errorf("saving the device key: %w", err)
	}
	a.device = s
	return s, nil
}

// signedExchange signs a request with the device key and the licence clock,
// posts it, and verifies the answer. A "stale" answer means the clocks
// disagree: the portal's signed time is adopted and the request signed
// again and retried once, at once.
func (a *Agent) signedExchange(ctx context.Context, path, typ, pbxID string, build func(protocol.Request) any) (*protocol.Answer, error) {
	a.mu.Lock()
	device := a.device
	a.mu.Unlock()
	for attempt := 0; ; attempt++ {
		meta := protocol.Request{Time: a.clock.Now(), Nonce: newNonce()}
		body, err := device.Sign(typ, build(meta))
		if err != nil {
			return nil, err
		}
		ans, err := a.portal.exchange(ctx, path, body, meta.Nonce, pbxID)
		if err != nil {
			return nil, err
		}
		a.clock.AdoptPortal(ans.Time)
		if ans.Status != protocol.StatusStale {
			return ans, nil
		}
		if attempt > 0 {
			return nil, fmt.Errorf("the portal found the request stale twice (portal time %s)", ans.Time.Format(time.RFC3339))
		}
		a.log.Warn("portal found the request stale; adopted its time and signed again",
			"portal_time", ans.Time, "request_time", meta.Time)
	}
}

// acceptLicense verifies a licence from the portal for pbxID and checks its
// revision against the one held: revisions only go forward. With first set
// (activation), any revision is taken.
func (a *Agent) acceptLicense(compact, pbxID string, first bool) (*license.Document, error) {
	if compact == "" {
		return nil, errors.New("the answer carries no licence")
	}
	doc, err := a.verifyLicense(compact)
	if err != nil {
		return nil, err
	}
	if doc.PBX.ID != pbxID {
		return nil, fmt.Errorf("licence for PBX %q, not %q", doc.PBX.ID, pbxID)
	}
	a.mu.Lock()
	held := a.doc
	a.mu.Unlock()
	if !first && held != nil && doc.Revision < held.Revision {
		return nil, fmt.Errorf("licence revision %d is older than the %d held: refused", doc.Revision, held.Revision)
	}
	// The revocations it announces are kept before the licence is taken,
	// apart from the state: no state rolled back or wiped un-revokes them.
	added, err := a.trust.Revoke(doc.RevokedKeyIDs)
	if err != nil {
		return nil, err
	}
	if len(added) > 0 {
		a.log.Warn("portal keys revoked: documents they sign are refused from now on", "kids", added)
		a.mu.Lock()
		a.auditLocked(a.clock.Now(), auditKeysRevoked, map[string]any{"kids": added, "revision": doc.Revision})
		a.mu.Unlock()
	}
	return doc, nil
}

// saveLocked persists the state with the licence clock's mark. Callers hold a.mu.
func (a *Agent) saveLocked() error { return a.commitLocked(a.st, a.doc) }

// initCommands opens the command journal and sets up its executors.
func (a *Agent) initCommands(opts Options, clk clock.Clock) error {
	env := commandEnv{
		log: a.log, clock: clk, now: a.clock.Now,
		keyring: a.trust.Keyring,
		audit:   a.auditEvent,
		metrics: a.metrics,
		report:  a.wakeHeartbeat,
	}
	a.ssh = newSSHAccess(opts.SSH, a.cfg.SSH.Port, env)
	a.wms = &wmsUpgrades{up: opts.WMS, env: env, licence: a.licence}
	cmds, err := openCommands(a.cfg.StateDir, env, executorTable(a.ssh, a.wms))
	if err != nil {
		return err
	}
	a.cmds = cmds
	return nil
}

// licence returns the licence held, nil when none.
func (a *Agent) licence() *license.Document {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.doc
}
