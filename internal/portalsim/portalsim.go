// Package portalsim is the reference portal as a library: the agent API
// (activation and heartbeats, signed with the portal's key), an admin API
// beside it, a movable clock and fault injection. cmd/pbx-portal-sim serves
// it over HTTP; tests and load tests run it in process.
//
// Its data folder holds:
//
//	signing-key.pem      the portal's Ed25519 signing key (0600), made on first start
//	keyring/<kid>.pem    its public key: what an agent's portal.keyring points at
//	keyring/announce.jws a key announcement signed with its key as a root (keys announce)
//	state.json           PBXs, bindings, clock offset, nonces, faults (pkg/state)
//	lock                 held while a Portal has the folder open
package portalsim

import (
	"crypto/ed25519"
	crand "crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
	"github.com/pbx-agent/pbx-agent/pkg/state"
)

// Defaults for Config fields left zero.
const (
	DefaultInterval = 60 * time.Second
	DefaultKeyTTL   = 30 * 24 * time.Hour
)

// Config configures New.
type Config struct {
	// DataDir holds the signing key, the exported keyring and the state.
	DataDir string
	// Logger receives the portal's log; nil discards it.
	Logger *slog.Logger
	// Interval is the heartbeat interval the portal tells agents, in whole
	// seconds (default 60 s).
	Interval time.Duration
	// Now is the real clock (default time.Now); the portal's clock is Now
	// plus a persisted offset that the admin API moves.
	Now func() time.Time
	// Rand draws the fault decisions; nil seeds one from crypto/rand. Tests
	// pass a seeded source.
	Rand *rand.Rand
	// KeyTTL is how long a new PBX key may be used to activate (default 30 days).
	KeyTTL time.Duration
	// HeartbeatTolerance, when set, goes into the licences of PBXs created
	// from then on (heartbeat_tolerance_seconds; whole seconds): how long
	// after a heartbeat the agent still counts as reaching the portal.
	// Zero leaves it to the agent's default (10 minutes). Tests shorten it
	// to see an outage in seconds.
	HeartbeatTolerance time.Duration
	// FullHeartbeatsOnly makes the portal answer as one from before the
	// compact heartbeat: its answers list no formats, and it refuses a
	// compact heartbeat (400) as a request of an unknown type. Tests of
	// the agent against such a portal set it.
	FullHeartbeatsOnly bool
}

// Portal is the simulated portal: an http.Handler over a persisted store.
// Its methods are safe for concurrent use.
type Portal struct {
	dataDir  string
	log      *slog.Logger
	interval time.Duration
	realNow  func() time.Time
	keyTTL   time.Duration
	// tolerance is Config.HeartbeatTolerance for new licences.
	tolerance license.Seconds
	fullOnly  bool // Config.FullHeartbeatsOnly

	signer  *license.Signer
	keyring *license.Keyring // the portal's own key, to verify PBX keys
	file    *state.File[stored]
	unlock  func() error
	done    chan struct{} // closed by Close: ends latency waits

	mu        sync.Mutex
	closed    bool
	dirty     bool // the store changed since the last save
	st        stored
	byID      map[string]*pbxRecord
	devices   map[string]ed25519.PublicKey // device key id → key, current and former bindings
	rng       *rand.Rand
	lastPrune time.Time
	waiters   map[string]chan struct{} // PBX id → closed when it has something (commands.go)
	results   chan struct{}            // closed when a command result arrives
	tunnels   tunnels                  // open support tunnels, by PBX id (tunnel.go)
}

// New opens the portal in cfg.DataDir, making its signing key and keyring
// on first start. It refuses a folder whose state cannot be used (corrupt,
// written by a newer build, or missing the key that signed its PBX keys),
// and a folder another Portal has open.
func New(cfg Config) (*Portal, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("portalsim: Config.DataDir is empty")
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Interval < time.Second || cfg.Interval%time.Second != 0 {
		return nil, fmt.Errorf("portalsim: heartbeat interval %v: want whole seconds, at least 1s", cfg.Interval)
	}
	if cfg.KeyTTL == 0 {
		cfg.KeyTTL = DefaultKeyTTL
	}
	if cfg.KeyTTL < 0 {
		return nil, fmt.Errorf("portalsim: negative key lifetime %v", cfg.KeyTTL)
	}
	if cfg.HeartbeatTolerance < 0 || cfg.HeartbeatTolerance%time.Second != 0 {
		return nil, fmt.Errorf("portalsim: heartbeat tolerance %v: want whole seconds", cfg.HeartbeatTolerance)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Rand == nil {
		var seed [32]byte
		crand.Read(seed[:]) // never fails: see crypto/rand.Read
		cfg.Rand = rand.New(rand.NewChaCha8(seed))
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating data folder: %w", err)
	}
	unlock, err := lockDir(filepath.Join(cfg.DataDir, lockFile))
	if err != nil {
		return nil, err
	}
	p, err := open(cfg, unlock)
	if err != nil {
		unlock()
		return nil, err
	}
	return p, nil
}

func open(cfg Config, unlock func() error) (*Portal, error) {
	p := &Portal{
		dataDir:   cfg.DataDir,
		log:       cfg.Logger,
		interval:  cfg.Interval,
		realNow:   cfg.Now,
		keyTTL:    cfg.KeyTTL,
		tolerance: license.Seconds(cfg.HeartbeatTolerance / time.Second),
		fullOnly:  cfg.FullHeartbeatsOnly,
		unlock:    unlock,
		done:      make(chan struct{}),
		rng:       cfg.Rand,
	}
	file, err := state.Open[stored](state.Options{Dir: cfg.DataDir, Name: stateFile, Version: stateSchema, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	p.file = file
	st, info, err := file.Load()
	fresh := errors.Is(err, state.ErrNotExist)
	if err != nil && !fresh {
		return nil, fmt.Errorf("portal state in %s is unusable: %w", cfg.DataDir, err)
	}
	if fresh {
		p.signer, err = openSigner(cfg.DataDir)
	} else {
		p.signer, err = loadSigner(cfg.DataDir, st.SignerKeyID)
	}
	if err != nil {
		return nil, err
	}
	// The exported keyring is rewritten on every start, so a deleted or
	// edited copy cannot leave agents trusting the wrong key.
	if err := license.WriteKeyringFile(p.KeyringDir(), p.signer.KeyID(), p.signer.Public()); err != nil {
		return nil, err
	}
	// Every key the portal signed with stays good for the PBX keys it
	// issued; the licences revoke the retired ones for the agents.
	p.keyring, err = license.LoadKeyring(p.KeyringDir())
	if err != nil {
		return nil, err
	}
	if fresh {
		st = stored{SignerKeyID: p.signer.KeyID()}
	}
	if err := st.validate(); err != nil {
		return nil, fmt.Errorf("portal state %s is unusable: %w", file.Path(), err)
	}
	p.st = st
	p.reindex()
	if fresh {
		if err := p.file.Save(p.st); err != nil {
			return nil, err
		}
	} else if info.Recovered {
		p.log.Warn("portal state recovered from its previous copy", "reason", info.RecoveredReason)
	}
	return p, nil
}

// KeyringDir is the folder of the portal's public keys, which agents must
// trust (their portal.keyring).
func (p *Portal) KeyringDir() string { return filepath.Join(p.dataDir, keyringDir) }

// KeyID is the id of the portal's signing key.
func (p *Portal) KeyID() string { return p.signer.KeyID() }

// Now returns the portal's clock: the real clock plus the offset.
func (p *Portal) Now() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.nowLocked()
}

func (p *Portal) nowLocked() time.Time {
	return p.realNow().Add(time.Duration(p.st.ClockOffset)).UTC()
}

// Close stops the portal: later requests get 503, latency waits end, and
// the data folder is released for another Portal. Every change was saved
// when it was made.
func (p *Portal) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	close(p.done)
	p.tunnels.endAll()
	return p.unlock()
}

// Handler returns the agent API (protocol.PathActivate and
// protocol.PathHeartbeat, with fault injection) and the admin API under
// /admin/v1/ (no faults, no authentication: serve it on loopback only).
func (p *Portal) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, r := range p.routes() {
		mux.Handle(r.pattern, r.handler)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errNotFound("no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return mux
}

type route struct {
	pattern string
	handler http.Handler
}

// routes is the one route table, kept sorted by path.
func (p *Portal) routes() []route {
	return []route{
		{"GET /admin/v1/clock", p.admin(p.getClock)},
		{"PUT /admin/v1/clock", p.admin(p.setClock)},
		{"POST /admin/v1/clock/advance", p.admin(p.advanceClock)},
		{"DELETE /admin/v1/fault", p.admin(p.clearFaults)},
		{"GET /admin/v1/fault", p.admin(p.getFaults)},
		{"PATCH /admin/v1/fault", p.admin(p.patchFaults)},
		{"PUT /admin/v1/fault", p.admin(p.putFaults)},
		{"GET /admin/v1/pbxs", p.admin(p.listPBXs)},
		{"POST /admin/v1/pbxs", p.admin(p.createPBX)},
		{"DELETE /admin/v1/pbxs/{ref}", p.admin(p.deletePBX)},
		{"GET /admin/v1/pbxs/{ref}", p.admin(p.getPBX)},
		{"GET /admin/v1/pbxs/{ref}/commands", p.admin(p.listCommands)},
		{"POST /admin/v1/pbxs/{ref}/commands", p.admin(p.queueCommand)},
		{"GET /admin/v1/pbxs/{ref}/commands/{id}", p.admin(p.getCommand)},
		{"POST /admin/v1/pbxs/{ref}/licenses", p.admin(p.changeLicenses)},
		{"POST /admin/v1/pbxs/{ref}/offline/activate", p.admin(p.offlineActivate)},
		{"POST /admin/v1/pbxs/{ref}/offline/renew", p.admin(p.offlineRenew)},
		{"POST /admin/v1/pbxs/{ref}/key", p.admin(p.issuePBXKey)},
		{"POST /admin/v1/pbxs/{ref}/rebind", p.admin(p.rebindPBX)},
		{"POST /admin/v1/pbxs/{ref}/resume", p.admin(p.resumePBX)},
		{"POST /admin/v1/pbxs/{ref}/suspend", p.admin(p.suspendPBX)},
		{"POST /admin/v1/pbxs/{ref}/resync", p.admin(p.resyncPBX)},
		{"GET /admin/v1/pbxs/{ref}/tunnel", http.HandlerFunc(p.relayTunnel)},
		{"POST /admin/v1/keys/rotate", p.admin(p.rotateKey)},
		{"POST " + protocol.PathActivate, p.agent("activate", p.activate)},
		{"POST " + protocol.PathHeartbeat, p.agent("heartbeat", p.heartbeat)},
		{"POST " + protocol.PathWait, p.agent("wait", p.wait)},
		{"GET " + protocol.PathTunnel, http.HandlerFunc(p.acceptTunnel)},
	}
}

// update runs fn under the store's lock and saves the store if fn changed
// it (markDirty). A failed save turns a success into an internal error;
// the change stays in memory.
func (p *Portal) update(fn func(now time.Time) error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errClosed()
	}
	p.dirty = false
	err := fn(p.nowLocked())
	if p.dirty {
		p.dirty = false
		if serr := p.file.Save(p.st); serr != nil {
			p.log.Error("saving portal state", "err", serr)
			if err == nil {
				err = &apiError{status: http.StatusInternalServerError, code: protocol.CodeUnavailable,
					msg: "the portal could not save its state: " + serr.Error()}
			}
		}
	}
	return err
}

func (p *Portal) markDirty() { p.dirty = true }
