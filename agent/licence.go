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
	"github.com/pbx-agent/pbx-agent/pkg/admission"
	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/clock"
	"github.com/pbx-agent/pbx-agent/pkg/identity"
	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/offline"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
	"github.com/pbx-agent/pbx-agent/pkg/slotfile"
	"github.com/pbx-agent/pbx-agent/pkg/state"
)

// licence is the licence component: the persisted state, the licence
// clock and its mark record, the portal keys trusted, and every signed
// exchange with the portal. Its state is written only by its own methods:
// the rest of the daemon asks it for a verdict, a status part or a
// document, and the lifecycle has it record a state change or a deletion.
type licence struct {
	env   licenceEnv
	peers licencePeers // what an exchange reports of the other components

	store    *state.File[persisted]
	beats    *slotfile.File // the heartbeat record (beat.go); nil: every save goes to store
	clock    *license.Clock
	mark     *clockMark    // the clock's mark record (clockmark.go)
	trust    *trust        // the portal keys trusted, revocations applied (trust.go)
	portal   *portalClient // nil when setupErr says why
	setupErr error         // a configuration problem (no portal keyring, no portal.url) that stops every exchange
	noPortal bool          // no portal.url at all: an air-gapped PBX has no portal to reach
	// fileSetupErr is what stops the file exchange of an air-gapped PBX
	// (offline.go): setupErr without portal.url, which such a PBX lacks.
	fileSetupErr error

	// exchangeMu serialises exchanges with the portal, so an activation
	// and a heartbeat never interleave their state changes. It guards wire.
	exchangeMu sync.Mutex
	wire       wireState

	mu     sync.Mutex // guards the fields below
	st     persisted
	doc    *license.Document // the verified licence of st.License
	device *license.Signer   // nil until the first activation
	ans    answers
}

// answers is what the portal's answers say, derived from the signed
// answers kept in the state.
type answers struct {
	lastOK    time.Time        // the signed time of st.Answer: the last success
	refusedAt time.Time        // the signed time of st.Refused, unless a success came after
	restored  bool             // the state is older than the clock record: lapsed until an answer counts
	lastError string           // the last exchange's error, or a setup problem
	offline   *offline.Licence // the licence file installed, verified (offline.go)
}

// licenceEnv is what the licence component is built with: read-only.
type licenceEnv struct {
	log      *slog.Logger
	stateDir string
	root     string // prefix of the machine files read for identity
	model    license.Model
	version  string
	identity IdentityConfig
	audit    func(now time.Time, kind string, fields map[string]any)
}

// licencePeers are the other components' parts in a heartbeat: set once
// by New, before any loop runs.
type licencePeers struct {
	results   func() []protocol.CommandResult          // the commands' results to report
	take      func(signed, acked []string, pbx string) // journals the commands an answer carries
	usage     func() license.Counts                    // the users counted; nil before a count
	heartbeat func(result string, took time.Duration)  // the heartbeat metric
}

// loadLicence opens the state and the licence clock, loads the portal
// keyring and the trust, and verifies the saved licence and answers. A
// state file that cannot be read is an error that names it; a licence
// that no longer verifies is reported and the agent starts unactivated,
// keeping the file. markRemoved says the clock's mark record is gone
// though the state says one was written (see finish).
func loadLicence(cfg Config, env licenceEnv, src clock.Clock) (l *licence, markRemoved bool, err error) {
	log := env.log
	store, err := state.Open[persisted](state.Options{
		Dir: cfg.StateDir, Name: stateFileName, Version: stateSchema, Logger: log,
	})
	if err != nil {
		return nil, false, err
	}
	st, info, err := store.Load()
	switch {
	case errors.Is(err, state.ErrNotExist):
		log.Info("no saved state: first start", "dir", cfg.StateDir)
	case err != nil:
		return nil, false, fmt.Errorf("loading state: %w", err)
	case info.Recovered:
		log.Warn("state recovered from the previous good copy", "reason", info.RecoveredReason)
	}
	beats := openBeats(cfg.StateDir, &st, log)
	markRemoved = st.ClockMark && !fileExists(filepath.Join(cfg.StateDir, clockMarkFile))
	mark, clk, err := openClockMark(cfg.StateDir, env.root, src, st.HighWater, log)
	if err != nil {
		return nil, false, err
	}
	// A missing keyring, portal URL or model keeps the agent from its
	// portal but not from running: a fresh install starts, and says all
	// it must configure at once. Key announcements are judged on the
	// licence clock, which a local clock set back cannot move back, so it
	// cannot revive an expired one.
	setup := checkSetup(cfg, env.root, clk.Now())            // setup.go
	logPortalKeyring(setup.keyring, cfg.Portal.Keyring, log) // trust.go
	if setup.model != "" && setup.modelSource == "identity.model" {
		log.Info("appliance model set by configuration", "model", setup.model)
	}
	env.model = setup.model
	setupErr := setup.err()
	if setupErr != nil {
		log.Error("the agent cannot reach its portal until this is fixed", "err", setupErr)
	}
	var tr *trust // loaded below, before any exchange
	var portal *portalClient
	if !setup.has("portal.url") {
		if portal, err = newPortalClient(cfg.Portal, func() *license.Keyring { return tr.Keyring() }, "pbx-agent/"+env.version); err != nil {
			return nil, false, err
		}
	}
	kr := setup.keyring
	if tr, err = loadTrust(kr, cfg.StateDir); err != nil {
		return nil, false, err
	}
	l = &licence{env: env, store: store, beats: beats, clock: clk, mark: mark, trust: tr, portal: portal, setupErr: setupErr,
		noPortal: cfg.Portal.URL == "", fileSetupErr: setup.fileSetupErr(), st: st}
	if setupErr != nil {
		l.ans.lastError = setupErr.Error()
	}
	if st.License != "" && kr != nil {
		doc, err := l.verifyLicense(st.License)
		if err != nil {
			l.ans.lastError = "the saved licence no longer verifies: " + err.Error()
			log.Error("saved licence refused; starting unactivated", "err", err)
		}
		l.doc = doc
		l.loadAnswers()
	}
	return l, markRemoved, nil
}

// loadDeviceKey starts loading the device key and returns the wait for
// it. Most of a load is Ed25519's one-time set-up of its precomputed
// tables (about a millisecond), which needs nothing else of the start:
// it runs beside the state's load and verification, on another core
// where there is one, and New waits for it in finish.
func loadDeviceKey(stateDir string) func() (*license.Signer, error) {
	type loaded struct {
		s   *license.Signer
		err error
	}
	done := make(chan loaded, 1)
	go func() {
		s, err := license.LoadSigner(filepath.Join(stateDir, deviceKeyFile))
		done <- loaded{s, err}
	}()
	return func() (*license.Signer, error) {
		r := <-done
		return r.s, r.err
	}
}

// finish takes the device key (loadDeviceKey) and checks the state
// against this machine and the clock's mark record (checkMachine,
// checkRestoredState): the last step of New, once the audit log is open.
func (l *licence) finish(markRemoved bool, deviceKey func() (*license.Signer, error)) error {
	device, err := deviceKey()
	switch {
	case err == nil:
		l.device = device
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("loading the device key: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.checkMachine()
	l.loadOffline()                   // offline.go
	l.checkRestoredState(markRemoved) // clockmark.go
	return nil
}

// now is the licence clock's reading.
func (l *licence) now() time.Time { return l.clock.Now() }

// localOffset is how far the local clock is from the licence clock.
func (l *licence) localOffset() time.Duration { return l.clock.LocalOffset() }

// markError is the clock's mark record's last write error, for status.
func (l *licence) markError() string { return l.mark.lastError() }

// keyring is the portal keyring trusted now.
func (l *licence) keyring() *license.Keyring { return l.trust.Keyring() }

// verdict evaluates the lifecycle at now.
func (l *licence) verdict(now time.Time) license.Verdict {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.verdictLocked(now)
}

// docVerdict is the licence held and the verdict at now, read together.
func (l *licence) docVerdict(now time.Time) (*license.Document, license.Verdict) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.doc, l.verdictLocked(now)
}

// portalInterval is the heartbeat interval the portal set; 0 before one.
func (l *licence) portalInterval() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.st.Interval.Duration()
}

// audit appends an event stamped with the licence time now, under mu, so
// it is ordered with the state changes the component records.
func (l *licence) audit(kind string, fields map[string]any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.env.audit(l.clock.Now(), kind, fields)
}

// record computes the lifecycle state now and keeps it: a change is
// recorded in the audit log and persisted; a licence past its delete_at is
// wiped, once the licence clock is the portal's own (see Agent.record).
func (l *licence) record() license.Verdict {
	now := l.clock.Now()
	portalTime := l.clock.PortalBacked()
	l.mu.Lock()
	defer l.mu.Unlock()
	v := l.verdictLocked(now)
	dirty := false
	if v.State == license.Deleted && l.doc != nil && portalTime {
		pbx := l.doc.PBX
		l.st.Gone = fmt.Sprintf("deleted on the portal at %s, at the end of its zero-licence countdown", v.DeleteAt.Format(time.RFC3339))
		l.st.GoneAt = deletedAt(l.doc, false, now)
		l.st.License, l.st.Answer, l.doc = "", "", nil
		l.ans.lastError = ""
		l.env.audit(now, auditDeleted, map[string]any{"pbx": pbx.ID, "name": pbx.Name, "reason": l.st.Gone})
		l.env.log.Warn("the PBX's zero-licence countdown is over; licence wiped", "pbx", pbx.ID, "delete_at", v.DeleteAt)
		v, dirty = l.verdictLocked(now), true
	}
	if from := license.State(l.st.State); from != v.State {
		if from == "" {
			from = "none"
		}
		l.st.State, dirty = string(v.State), true
		l.env.audit(now, auditStateChanged, map[string]any{"from": string(from), "to": string(v.State), "why": v.Reason})
		l.env.log.Info("licence state changed", "from", from, "to", v.State, "why", v.Reason)
	}
	if dirty {
		if err := l.saveLocked(); err != nil {
			l.env.log.Error("saving the licence state", "err", err)
		}
	}
	return v
}

// licenceStatus is the licence's part of the status, read at once.
type licenceStatus struct {
	verdict   license.Verdict
	pbx       *license.PBX // kept after deletion
	doc       *license.Document
	lastOK    time.Time
	lastError string
	// activatedAt is when the PBX held was activated (licence clock);
	// zero in a state written before it was recorded.
	activatedAt time.Time
}

// status is the licence's part of the status at now.
func (l *licence) status(now time.Time) licenceStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	return licenceStatus{verdict: l.verdictLocked(now), pbx: l.st.PBX, doc: l.doc,
		lastOK: l.ans.lastOK, lastError: l.ans.lastError, activatedAt: l.st.ActivatedAt}
}

// deletedAt is when the PBX left this appliance, learnt at now: the
// signed delete_at when its zero-licence countdown ended it (the verdict
// showed that time before the wipe, so the status keeps it after), else
// now, as a re-bind's answer carries no time of its own.
func deletedAt(doc *license.Document, rebound bool, now time.Time) time.Time {
	if !rebound && doc != nil && doc.DeleteAt != nil && !doc.DeleteAt.After(now) {
		return doc.DeleteAt.UTC()
	}
	return now
}

// decreases is the last decrease of each profile not undone since, for
// the over-use reason.
func (l *licence) decreases() license.Decreases {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.st.Decreases
}

// waitable is the licence a long-poll waits for; ok is false while there
// is none to wait for (not activated, gone, not set up).
func (l *licence) waitable() (doc *license.Document, ok bool) {
	l.mu.Lock()
	doc, gone, device := l.doc, l.st.Gone, l.device
	l.mu.Unlock()
	return doc, doc != nil && gone == "" && device != nil && l.setupErr == nil
}

// owes reports whether an answer states another current licence than
// the one held: one the next heartbeat must fetch.
func (l *licence) owes(ans *protocol.Answer) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.doc != nil && ans.Digest != "" && !ans.Matches(protocol.HeldLicence(l.doc.Revision, l.st.License))
}

// checkMachine refuses a state folder that was not activated on this
// machine for the PBX its licence names: a copy of /var/lib/pbx-agent,
// device key included, would otherwise run as the original, and a licence
// of another PBX pasted into the state would be used. The licence and
// device key are set aside (the files stay, never deleted or adopted);
// this appliance must be activated with its own key, which the portal
// binds only after a re-bind. A state without a fingerprint is foreign
// too: every activation records one.
func (l *licence) checkMachine() {
	if l.doc == nil {
		return
	}
	fp, err := identity.Fingerprint(l.env.root, l.doc.PBX.ID, l.env.identity.Serial)
	if err != nil {
		l.env.log.Warn("cannot fingerprint this machine; the state folder is not checked", "err", err)
		return
	}
	why := ""
	switch {
	case l.st.PBX == nil || l.st.PBX.ID != l.doc.PBX.ID:
		why = "its licence is for another PBX than the one activated"
	case l.st.Fingerprint == "":
		why = "it records no fingerprint of the machine it was activated on"
	case l.st.Fingerprint != fp:
		why = "it was activated on another machine (its fingerprint differs)"
	default:
		return
	}
	l.doc, l.device = nil, nil
	l.ans.lastError = "this state folder is foreign: " + why + "; it is set aside, not used. " +
		"Activate this appliance with its PBX key (pbx-agent activate); if the PBX is bound to another appliance, the partner re-binds it on the portal first"
	l.env.log.Error("foreign state folder: licence and device key set aside", "why", why, "dir", l.env.stateDir)
}

// loadAnswers derives the last success and any refusal from the signed
// answers kept in the state, never from an unsigned field: a kept answer
// counts only when it verifies, names this PBX and states the licence held
// as current. Without one, the licence's issue time stands in.
func (l *licence) loadAnswers() {
	kr, doc := l.trust.Keyring(), l.doc
	if doc == nil || kr == nil {
		return
	}
	if l.st.Answer != "" {
		var ans *protocol.Answer
		var err error
		if l.st.AnswerTo != "" { // a "same" answer, checked with the request it echoes
			ans, err = protocol.VerifySame(l.st.Answer, kr, l.st.AnswerTo, doc.PBX.ID)
		} else {
			ans, err = protocol.VerifyKeptAnswer(l.st.Answer, kr, doc.PBX.ID)
		}
		switch {
		case err != nil:
			l.env.log.Warn("the kept portal answer does not verify; the last success counts from the licence's issue time", "err", err)
		case !ans.Matches(protocol.HeldLicence(doc.Revision, l.st.License)):
			l.env.log.Warn("the kept portal answer is about another licence than the one held; the last success counts from the licence's issue time",
				"answer_revision", ans.Revision, "held_revision", doc.Revision)
		default:
			l.ans.lastOK = ans.Time
			// What the portal reads, as it last said, signed; what it
			// acknowledged is not known after a start.
			l.wire = wireState{compact: ans.Same || slices.Contains(ans.Formats, protocol.TypeCompactHeartbeat)}
		}
	}
	// The licence clock was at least where the portal signed: a mark moved
	// back cannot take it before the licence or the last answer.
	l.clock.Floor(doc.IssuedAt)
	l.clock.Floor(l.ans.lastOK)
	if l.st.Refused != "" {
		ans, err := protocol.VerifyKeptAnswer(l.st.Refused, kr, doc.PBX.ID)
		if err == nil && ans.Status == protocol.StatusRefused && ans.Time.After(l.ans.lastOK) {
			l.ans.refusedAt = ans.Time
		}
	}
}

func (l *licence) verifyLicense(compact string) (*license.Document, error) {
	doc, err := license.ParseDocument(compact, l.trust.Keyring(), license.DocumentCheck{})
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

// verdictLocked evaluates the lifecycle at now. Callers hold l.mu.
func (l *licence) verdictLocked(now time.Time) license.Verdict {
	doc, last := l.doc, l.ans.lastOK
	f := l.airGappedLocked() // offline.go
	if f != nil {
		doc, last = airGappedFacts(doc, f)
	}
	return license.Evaluate(license.Facts{Now: now, Doc: doc, LastSuccess: last, Gone: l.st.Gone,
		GoneAt: l.st.GoneAt, Rebound: l.st.Gone == goneReason(protocol.GoneRebound),
		RefusedSince: l.ans.refusedAt, Restored: l.ans.restored, ByFile: f != nil})
}

// ensureDevice returns the device key, making and saving one (0600) on
// first use. It identifies this appliance to the portal from then on.
func (l *licence) ensureDevice() (*license.Signer, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.device != nil {
		return l.device, nil
	}
	s, err := protocol.NewDeviceKey()
	if err != nil {
		return nil, err
	}
	if err := license.SaveSigner(filepath.Join(l.env.stateDir, deviceKeyFile), s); err != nil {
		return nil, fmt.Errorf("saving the device key: %w", err)
	}
	l.device = s
	return s, nil
}

// signedExchange signs a request with the device key and the licence clock,
// posts it, and verifies the answer. A "stale" answer means the clocks
// disagree: the portal's signed time is adopted and the request signed
// again and retried once, at once.
func (l *licence) signedExchange(ctx context.Context, path, typ, pbxID string, build func(protocol.Request) any) (*protocol.Answer, error) {
	ans, _, err := l.signedExchangeWith(ctx, path, pbxID, false, func(device *license.Signer, r protocol.Request) (string, error) {
		return device.Sign(typ, build(r))
	})
	return ans, err
}

// signedExchangeWith is signedExchange for a request that sign signs
// itself; compact is a compact heartbeat, whose time is in whole seconds.
// It returns the request the answer answers, as sent.
func (l *licence) signedExchangeWith(ctx context.Context, path, pbxID string, compact bool,
	sign func(*license.Signer, protocol.Request) (string, error)) (*protocol.Answer, string, error) {
	l.mu.Lock()
	device := l.device
	l.mu.Unlock()
	for attempt := 0; ; attempt++ {
		meta := protocol.Request{Time: l.clock.Now(), Nonce: newNonce()}
		if compact {
			meta.Time = meta.Time.Truncate(time.Second)
		}
		body, err := sign(device, meta)
		if err != nil {
			return nil, "", err
		}
		ans, err := l.portal.exchange(ctx, path, outgoing{body: body, nonce: meta.Nonce, pbxID: pbxID, compact: compact})
		if err != nil {
			return nil, "", err
		}
		l.clock.AdoptPortal(ans.Time)
		if ans.Status != protocol.StatusStale {
			return ans, body, nil
		}
		if attempt > 0 {
			return nil, "", fmt.Errorf("the portal found the request stale twice (portal time %s)", ans.Time.Format(time.RFC3339))
		}
		l.env.log.Warn("portal found the request stale; adopted its time and signed again",
			"portal_time", ans.Time, "request_time", meta.Time)
	}
}

// acceptLicense verifies a licence from the portal for pbxID and checks its
// revision against the one held: revisions only go forward. With first set
// (activation), any revision is taken.
func (l *licence) acceptLicense(compact, pbxID string, first bool) (*license.Document, error) {
	if compact == "" {
		return nil, errors.New("the answer carries no licence")
	}
	doc, err := l.verifyLicense(compact)
	if err != nil {
		return nil, err
	}
	if doc.PBX.ID != pbxID {
		return nil, fmt.Errorf("licence for PBX %q, not %q", doc.PBX.ID, pbxID)
	}
	l.mu.Lock()
	held := l.doc
	l.mu.Unlock()
	if !first && held != nil && doc.Revision < held.Revision {
		return nil, fmt.Errorf("licence revision %d is older than the %d held: refused", doc.Revision, held.Revision)
	}
	// The revocations it announces are kept before the licence is taken,
	// apart from the state: no state rolled back or wiped un-revokes them.
	added, err := l.trust.Revoke(doc.RevokedKeyIDs)
	if err != nil {
		return nil, err
	}
	if len(added) > 0 {
		l.env.log.Warn("portal keys revoked: documents they sign are refused from now on", "kids", added)
		l.mu.Lock()
		l.env.audit(l.clock.Now(), auditKeysRevoked, map[string]any{"kids": added, "revision": doc.Revision})
		l.mu.Unlock()
	}
	return doc, nil
}

// saveLocked persists the state with the licence clock's mark. Callers hold l.mu.
func (l *licence) saveLocked() error { return l.saveStateLocked(l.st, l.doc) }

// document returns the licence held, nil when none.
func (l *licence) document() *license.Document {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.doc
}

// activate validates a pasted key, activates it with the portal and
// commits the licence; then runs, still under exchangeMu, so that no
// heartbeat comes between the commit and what the agent does with it.
func (l *licence) activate(ctx context.Context, raw string, then func()) error {
	l.exchangeMu.Lock()
	defer l.exchangeMu.Unlock()

	if l.setupErr != nil {
		return fmt.Errorf("%w: %v", apitype.ErrUnreachable, l.setupErr)
	}
	key, err := license.ParseKey(raw, l.trust.Keyring(), license.KeyCheck{Now: l.clock.Now(), Model: l.env.model})
	if err != nil {
		return err
	}
	now := l.clock.Now()
	l.mu.Lock()
	held := l.doc
	deleted := l.verdictLocked(now).State == license.Deleted
	l.mu.Unlock()
	if held != nil && !deleted && held.PBX.ID != key.PBX.ID {
		return fmt.Errorf("%w: this appliance already holds PBX %s (%s); it can hold one PBX", apitype.ErrRefusedLocally, held.PBX.ID, held.PBX.Name)
	}
	device, err := l.ensureDevice()
	if err != nil {
		return err
	}
	fingerprint, err := identity.Fingerprint(l.env.root, key.PBX.ID, l.env.identity.Serial)
	if err != nil {
		return err
	}
	var overrides []string
	if l.env.identity.Model != "" {
		overrides = append(overrides, "identity.model")
	}
	if l.env.identity.Serial != "" {
		overrides = append(overrides, "identity.serial")
	}
	req := protocol.ActivateRequest{
		Key:         license.NormalizeKey(raw),
		DeviceKey:   device.Public(),
		Fingerprint: fingerprint, Model: l.env.model, Serial: l.env.identity.Serial,
		Overrides: overrides, AgentVersion: l.env.version,
	}
	xctx, cancel := context.WithTimeout(ctx, portalTimeout)
	defer cancel()
	ans, err := l.signedExchange(xctx, protocol.PathActivate, protocol.TypeActivate, key.PBX.ID, func(r protocol.Request) any {
		req.Request = r
		return req
	})
	if err != nil {
		return classifyActivation(err)
	}
	if ans.Status == protocol.StatusGone {
		return fmt.Errorf("%w: the portal says PBX %s is gone (%s)", apitype.ErrRefused, key.PBX.ID, ans.Reason)
	}
	doc, err := l.acceptLicense(ans.License, key.PBX.ID, true)
	if err != nil {
		return fmt.Errorf("%w: activation answer: %v", apitype.ErrUnreachable, err)
	}
	if !ans.Matches(protocol.HeldLicence(doc.Revision, ans.License)) {
		return fmt.Errorf("%w: the activation answer states another licence (revision %d) than the one it carries (revision %d)",
			apitype.ErrUnreachable, ans.Revision, doc.Revision)
	}
	l.mu.Lock()
	err = l.commitLocked(persisted{
		License: ans.License, PBX: &doc.PBX, ActivatedAt: l.clock.Now(),
		Answer: ans.Compact, Chain: protocol.Link{}.Next(ans.Compact),
		Interval: ans.Interval, State: l.st.State, Fingerprint: fingerprint,
	}, doc)
	if err == nil {
		l.wire = wireState{compact: slices.Contains(ans.Formats, protocol.TypeCompactHeartbeat)}
		l.ans.lastOK, l.ans.refusedAt, l.ans.restored, l.ans.lastError = ans.Time, time.Time{}, false, ""
		if merr := l.mark.restart(l.clock.Mark(), doc.Revision, l.st.Chain.Seq); merr != nil {
			l.env.log.Error("writing the licence clock's mark", "err", merr)
		}
		fields := licenceFields(doc)
		fields["pbx"], fields["name"], fields["model"] = doc.PBX.ID, doc.PBX.Name, string(doc.PBX.Model)
		l.env.audit(l.clock.Now(), auditActivated, fields)
	}
	l.mu.Unlock()
	if err != nil {
		return err
	}
	l.env.log.Info("activated", "pbx", doc.PBX.ID, "name", doc.PBX.Name, "revision", doc.Revision, "users", doc.Counts.String())
	then()
	return nil
}

// exchangeHeartbeat reports to the portal and applies its answer. A bad
// answer changes nothing but the error shown. heartbeat (lifecycle.go)
// wraps it with an evaluation of the lifecycle.
//
// An answer counts as a success only when it states, signed, that the
// licence this appliance holds is the PBX's current one. When it states
// another, the agent asks again for the current licence (Fetch) once; an
// answer that still disagrees is a failure, so whatever stands between the
// appliance and its portal (a proxy that holds the device key included)
// can delay a licence change only as long as the offline grace allows.
func (l *licence) exchangeHeartbeat(ctx context.Context) error {
	l.exchangeMu.Lock()
	defer l.exchangeMu.Unlock()

	l.mu.Lock()
	doc, gone, device := l.doc, l.st.Gone, l.device
	l.mu.Unlock()
	if doc == nil || gone != "" || device == nil {
		return ErrNotActivated
	}
	if l.setupErr != nil {
		if l.noPortal && l.airGapped() {
			return errNoPortal // by design: nothing failed, nothing to count
		}
		l.peers.heartbeat(metrics.HeartbeatUnreachable, 0) // no exchange: not timed
		return l.setupErr
	}

	ctx, cancel := context.WithTimeout(ctx, portalTimeout)
	defer cancel()
	matched, err := l.heartbeatOnce(ctx, false)
	if err == nil && !matched {
		l.env.log.Info("the portal states another licence than the one held; fetching it")
		matched, err = l.heartbeatOnce(ctx, true)
		if err == nil && !matched {
			err = errors.New("the portal's signed answer states another licence than the one this appliance holds, even after fetching it; not counted as a heartbeat")
		}
	}
	if err != nil && !errors.Is(err, ErrNotActivated) {
		l.recordError(err)
	}
	return err
}

// heartbeatOnce sends one heartbeat and applies its answer. It reports
// whether the answer stated the licence held (after any licence it carried
// was taken) as the current one: only then is it a success.
func (l *licence) heartbeatOnce(ctx context.Context, fetch bool) (matched bool, err error) {
	now := l.clock.Now()
	l.mu.Lock()
	doc, link := l.doc, l.st.Chain
	if doc == nil || l.st.Gone != "" {
		// The lifecycle wiped the licence since the exchange began (its
		// delete_at passed): nothing is held to report on.
		l.mu.Unlock()
		return false, ErrNotActivated
	}
	held := protocol.HeldLicence(doc.Revision, l.st.License)
	state := l.verdictLocked(now).State
	l.mu.Unlock()

	report := heartbeatReport{state: string(state), version: l.env.version, results: l.peers.results()}
	if used := l.peers.usage(); used != nil { // usage only once counted
		report.counted, report.usage, report.overuse = true, used, admission.Overuse(doc, used)
	}
	began := time.Now() // an exchange's duration, for the metric: the machine's monotonic clock
	compact := l.wire.compact
	ans, sent, err := l.sendHeartbeat(ctx, doc.PBX.ID, compact, held, link, report, fetch)
	if compact && formatRefused(err) {
		l.env.log.Warn("the portal refused a compact heartbeat; sending full ones until it says it reads them", "err", err)
		l.wire.compact = false
		ans, sent, err = l.sendHeartbeat(ctx, doc.PBX.ID, false, held, link, report, fetch)
	}
	if err == nil {
		err = ans.CheckEcho(link)
	}
	if err != nil {
		l.peers.heartbeat(heartbeatResult(err), time.Since(began))
		return false, err
	}
	l.peers.heartbeat(answerResult(ans.Status), time.Since(began))
	l.wire.learn(ans, report)

	// Verify a new licence before taking the lock: verification is the
	// slow part, and the status endpoint must not wait on it.
	var next *license.Document
	var nextErr error
	if ans.Status == protocol.StatusOK && ans.License != "" && protocol.Digest(ans.License) != held.Digest {
		next, nextErr = l.acceptLicense(ans.License, doc.PBX.ID, false)
	}
	if ans.Status == protocol.StatusOK {
		// Journaled before this returns: a crash from here on neither
		// loses nor repeats them (commands.go).
		l.peers.take(ans.Commands, ans.Acked, doc.PBX.ID)
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.doc == nil || l.st.Gone != "" {
		// The lifecycle wiped the licence meanwhile (past its delete_at):
		// not a mismatch to fetch again for.
		return false, ErrNotActivated
	}
	now = l.clock.Now()
	st := l.st // changes are made on a copy, applied only once saved
	st.Chain = link.Next(ans.Compact)
	switch ans.Status {
	case protocol.StatusGone:
		st.Gone, st.GoneAt = goneReason(ans.Reason), deletedAt(doc, ans.Reason == protocol.GoneRebound, now)
		st.License, st.Answer = "", ""
		if err := l.commitLocked(st, nil); err != nil {
			return false, err
		}
		l.ans.lastError = ""
		l.env.audit(now, auditDeleted, map[string]any{"pbx": doc.PBX.ID, "name": doc.PBX.Name, "reason": st.Gone})
		l.env.log.Warn("the portal says this appliance no longer holds the PBX; licence wiped", "pbx", doc.PBX.ID, "reason", ans.Reason)
		return true, nil
	case protocol.StatusRefused:
		first := st.Refused == ""
		if first {
			st.Refused = ans.Compact
		}
		if err := l.commitLocked(st, l.doc); err != nil {
			return false, err
		}
		if first {
			l.ans.refusedAt = ans.Time
			l.env.audit(now, auditChainRefused, map[string]any{"pbx": doc.PBX.ID, "reason": ans.Reason, "seq": link.Seq})
		}
		return false, fmt.Errorf("the portal refuses this appliance: two copies of its state were heartbeating (%s); "+
			"the partner must re-bind the PBX, or resync it on the portal once only one copy is left", ans.Reason)
	case protocol.StatusOK:
	default:
		return false, fmt.Errorf("unexpected answer status %q", ans.Status)
	}

	if !ans.Same { // a "same" answer keeps the interval last stated
		st.Interval = ans.Interval
	}
	newDoc := l.doc
	accepted := false
	switch {
	case nextErr != nil:
		l.env.log.Error("licence from the portal refused", "err", nextErr)
		l.env.audit(now, auditLicenceRefused, map[string]any{"held": l.doc.Revision, "error": nextErr.Error()})
	case next != nil && next.Revision > l.doc.Revision || next != nil && next.Revision == l.doc.Revision && ans.Matches(protocol.HeldLicence(next.Revision, ans.License)):
		// A newer revision, or the same revision signed anew (a new portal
		// key) that the portal states as current.
		newDoc, st.License, accepted = next, ans.License, true
		st.Decreases = st.Decreases.NoteRevision(l.doc, next, now)
	}
	matched = ans.Matches(protocol.HeldLicence(newDoc.Revision, st.License))
	if matched {
		st.Answer, st.AnswerTo, st.Refused = ans.Compact, "", ""
		if ans.Same {
			st.AnswerTo = sent // the "same" answer says what it says by echoing it
		}
	}
	if err := l.commitLocked(st, newDoc); err != nil {
		if accepted {
			err = fmt.Errorf("licence revision %d from the portal not applied: %w", next.Revision, err)
			l.env.audit(now, auditLicenceRefused, map[string]any{"held": doc.Revision, "offered": next.Revision, "error": err.Error()})
		}
		l.env.log.Error("the answer of the portal cannot be kept; nothing of it applies", "err", err)
		return false, err
	}
	l.mark.noteSeq(st.Chain.Seq)
	if matched {
		l.ans.lastOK, l.ans.refusedAt, l.ans.restored = ans.Time, time.Time{}, false
		l.ans.lastError = ""
	}
	if nextErr != nil {
		l.ans.lastError = "licence from the portal refused: " + nextErr.Error()
	}
	if ans.Chain == protocol.ChainReanchored {
		l.env.audit(now, auditChainReanchored, map[string]any{"pbx": doc.PBX.ID, "seq": link.Seq})
		l.env.log.Warn("the portal found this appliance's state from the past (rolled back, restored or reverted) and re-anchored its heartbeat chain; the partner is told",
			"seq", link.Seq)
	}
	if accepted {
		fields := licenceFields(next)
		fields["previous"] = doc.Revision
		l.env.log.Info("licence updated", "revision", next.Revision, "users", next.Counts.String())
		l.env.audit(now, auditLicenceAccepted, fields)
	}
	if !matched {
		l.env.log.Warn("the portal's signed answer states another licence than the one held",
			"held_revision", newDoc.Revision, "current_revision", ans.Revision, "standing", ans.Standing)
	}
	return matched, nil
}

// sendHeartbeat signs and sends one heartbeat, compact or full, and
// returns the verified answer and the request it answers.
func (l *licence) sendHeartbeat(ctx context.Context, pbxID string, compact bool, held protocol.Held, link protocol.Link,
	report heartbeatReport, fetch bool) (*protocol.Answer, string, error) {
	return l.signedExchangeWith(ctx, protocol.PathHeartbeat, pbxID, compact, func(device *license.Signer, r protocol.Request) (string, error) {
		if compact {
			h := protocol.CompactHeartbeat{Request: r, Held: held, Link: link, Report: l.wire.changes(report, fetch)}
			payload, err := h.MarshalBinary()
			if err != nil {
				return "", err
			}
			return device.SignRaw(protocol.TypeCompactHeartbeat, payload)
		}
		return device.Sign(protocol.TypeHeartbeat, protocol.HeartbeatRequest{Request: r, PBXID: pbxID,
			Revision: held.Revision, Digest: held.Digest, Fetch: fetch, Link: link.Digest, Seq: link.Seq,
			State: report.state, Usage: report.usage, Overuse: report.overuse, AgentVersion: report.version,
			Results: report.results})
	})
}

// commitLocked saves st (with the licence clock's mark) and only then
// makes it, and doc, the agent's: a state the folder does not hold is
// never acted on, so nothing is granted that a restart would forget. What
// an unchanged heartbeat changes goes to the heartbeat record, in place
// (beat.go); anything else to the state file. Callers hold l.mu.
func (l *licence) commitLocked(st persisted, doc *license.Document) error {
	st.HighWater, st.ClockMark = l.clock.Now(), true // loadLicence made the mark record before any save
	if l.beats != nil && doc == l.doc && onlyBeat(l.st, st) {
		st.Gen = l.st.Gen + 1
		err := l.saveBeat(st)
		if err == nil {
			l.st = st
			return nil
		}
		if !errors.Is(err, slotfile.ErrTooLarge) {
			l.env.log.Warn("writing the heartbeat record; saving the state file instead", "err", err)
		}
	}
	return l.saveStateLocked(st, doc)
}

// saveStateLocked saves st to the state file, whatever changed: a caller
// that changed l.st itself saves it so. Callers hold l.mu.
func (l *licence) saveStateLocked(st persisted, doc *license.Document) error {
	st.HighWater, st.ClockMark = l.clock.Now(), true
	st.Gen = l.st.Gen + 1
	if err := l.store.Save(st); err != nil {
		return fmt.Errorf("saving state: %w", err)
	}
	l.st, l.doc = st, doc
	return nil
}

func (l *licence) recordError(err error) {
	l.mu.Lock()
	l.ans.lastError = err.Error()
	l.mu.Unlock()
}

// persistClock saves the licence clock's mark, so a restart cannot go back
// further than this.
func (l *licence) persistClock() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.commitLocked(l.st, l.doc) // in place when only the mark changed
}

// writeClockMark writes the licence clock's mark now.
func (l *licence) writeClockMark() error {
	l.mu.Lock()
	var rev int64
	if l.doc != nil {
		rev = l.doc.Revision
	}
	l.mu.Unlock()
	return l.mark.write(l.clock.Mark(), rev)
}

// checkRestoredState compares the state with the record: a state file
// restored alone from a backup holds an older licence revision, or an
// older end of the heartbeat chain, than the record has seen; a record
// removed (the state says one existed) has lost the time since the state
// was saved. Either way the PBX lapses (nothing new admitted) until the
// portal's next answer that counts; the chain shows the portal the same.
// Called from finish.
func (l *licence) checkRestoredState(markRemoved bool) {
	if l.doc == nil {
		return
	}
	if markRemoved {
		l.ans.restored = true
		l.env.log.Error("the licence clock's mark record was removed: no new users are admitted until the portal answers",
			"record", l.mark.rec.Path())
		l.env.audit(l.clock.Now(), auditStateRestored, map[string]any{"record": "removed"})
		return
	}
	held := l.mark.heldMark()
	if l.doc.Revision >= held.Revision && l.st.Chain.Seq >= held.Seq {
		return
	}
	l.ans.restored = true
	l.env.log.Error("the state file is older than what this appliance held: restored from a backup? No new users are admitted until the portal answers",
		"revision", l.doc.Revision, "held_revision", held.Revision, "seq", l.st.Chain.Seq, "held_seq", held.Seq, "record", l.mark.rec.Path())
	l.env.audit(l.clock.Now(), auditStateRestored, map[string]any{
		"revision": l.doc.Revision, "held_revision": held.Revision, "seq": l.st.Chain.Seq, "held_seq": held.Seq})
}

// lastSuccess is the signed time of the last answer that counted as a
// success.
func (l *licence) lastSuccess() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ans.lastOK
}
