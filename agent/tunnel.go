package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
	"github.com/pbx-agent/pbx-agent/pkg/tunnel"
)

// Audit event kinds of the tunnel.
const (
	// auditSSHSession is one support session through the tunnel: action
	// start|end|refused, command, stream, and at its end bytes_in,
	// bytes_out and error; a refusal carries its reason.
	auditSSHSession = "ssh.session"
)

// supportTunnel is the portal's tunnel of a tunnel-mode access: while the
// access lasts it keeps the connection to the portal (tunnel.Keep), which
// relays each of the portal's streams to the loopback sshd and nothing
// else, and it counts and audits the sessions. sshAccess owns when it runs.
type supportTunnel struct {
	env    commandEnv
	dial   func(commandID string) (tunnel.DialConfig, error) // the licence's device key, keyring, PBX and transport
	adopt  func(time.Time)                                   // a stale refusal's signed portal time
	limits tunnel.Limits

	mu  sync.Mutex // guards run and its counters
	run *tunnelRun // nil when no tunnel runs
}

// tunnelRun is one tunnel, from its access's open to its end.
type tunnelRun struct {
	command string
	since   time.Time // the licence clock
	cancel  context.CancelFunc
	done    chan struct{} // closed when Keep has returned and every stream ended

	// under supportTunnel.mu
	connected               bool
	lastError               string
	sessions, sessionsTotal int
	refused                 int
	bytesIn, bytesOut       int64
}

// start keeps a tunnel for command id to target, the loopback sshd, until
// ttl has elapsed or end is called. It fails only when the tunnel cannot
// be set up at all (no device key, no portal): a portal that refuses or
// cannot be reached is dialled again while the TTL lasts.
func (t *supportTunnel) start(id, target string, ttl time.Duration) error {
	cfg, err := t.dial(id)
	if err != nil {
		return err
	}
	cfg.Limits = t.limits
	ctx, cancel := context.WithCancel(context.Background())
	run := &tunnelRun{command: id, since: t.env.now(), cancel: cancel, done: make(chan struct{})}
	t.mu.Lock()
	if t.run != nil {
		t.mu.Unlock()
		cancel()
		return errors.New("a support tunnel already runs") // sshAccess ends one before starting another
	}
	t.run = run
	t.mu.Unlock()

	expiry := t.env.clock.NewTimer(ttl) // the TTL on elapsed time, as the sshd's own
	go func() {
		defer expiry.Stop()
		select {
		case <-expiry.C():
			cancel()
		case <-ctx.Done():
		}
	}()
	log := t.env.log.With("component", "tunnel", "command", id)
	go func() {
		defer close(run.done)
		tunnel.Keep(ctx, tunnel.KeepConfig{
			Dial: cfg, Target: target, Clock: t.env.clock, AdoptTime: t.adopt,
			Events: t.events(run, log),
			Connected: func() {
				t.update(run, func() { run.connected = true })
				log.Info("support tunnel connected to the portal")
			},
			Lost: func(err error) {
				if ctx.Err() != nil {
					return // ended by its owner, not lost
				}
				t.update(run, func() { run.connected, run.lastError = false, err.Error() })
				log.Warn("support tunnel down; dialling again while the access lasts", "err", err)
			},
		})
	}()
	return nil
}

// update changes run's counters under the lock.
func (t *supportTunnel) update(run *tunnelRun, f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f()
}

// events count and audit each stream of run: a stream is one support
// session.
func (t *supportTunnel) events(run *tunnelRun, log *slog.Logger) tunnel.Events {
	audit := func(fields map[string]any) {
		fields["command"] = run.command
		t.env.audit(t.env.now(), auditSSHSession, fields)
	}
	return tunnel.Events{
		Start: func(id uint32) {
			t.update(run, func() { run.sessions++; run.sessionsTotal++ })
			t.env.metrics.TunnelSession()
			audit(map[string]any{"action": "start", "stream": id})
			log.Info("support session started", "stream", id)
		},
		End: func(e tunnel.StreamEnd) {
			t.update(run, func() { run.sessions--; run.bytesIn += e.ToTarget; run.bytesOut += e.ToPortal })
			t.env.metrics.TunnelBytes(e.ToTarget, e.ToPortal)
			fields := map[string]any{"action": "end", "stream": e.ID, "bytes_in": e.ToTarget, "bytes_out": e.ToPortal}
			if e.Err != nil {
				fields["error"] = e.Err.Error()
			}
			audit(fields)
			log.Info("support session ended", "stream", e.ID, "bytes_in", e.ToTarget, "bytes_out", e.ToPortal, "err", e.Err)
		},
		Refused: func(id uint32, reason string) {
			t.update(run, func() { run.refused++ })
			t.env.metrics.TunnelRefused()
			audit(map[string]any{"action": "refused", "stream": id, "reason": reason})
			log.Warn("support session refused", "stream", id, "reason", reason)
		},
	}
}

// end stops the tunnel, ending every session in it, and waits until they
// have ended. It reports whether a tunnel ran.
func (t *supportTunnel) end() bool {
	t.mu.Lock()
	run := t.run
	t.run = nil
	t.mu.Unlock()
	if run == nil {
		return false
	}
	run.cancel()
	<-run.done
	return true
}

// running reports whether a tunnel runs.
func (t *supportTunnel) running() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.run != nil
}

// status is the tunnel for the status; nil when none runs.
func (t *supportTunnel) status() *apitype.SSHTunnelStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.run
	if r == nil {
		return nil
	}
	return &apitype.SSHTunnelStatus{Open: true, Connected: r.connected, Since: utc(r.since), Command: r.command,
		Sessions: r.sessions, SessionsTotal: r.sessionsTotal, Refused: r.refused,
		BytesIn: r.bytesIn, BytesOut: r.bytesOut, LastError: r.lastError}
}

// tunnelDialConfig is what tunnel.Dial needs from the licence for command
// id: the portal's tunnel endpoint on the portal URL's scheme and host, the
// transport of every portal request (proxy, CA), the device key, the
// portal keys trusted and the PBX, all as they stand now.
func (l *licence) tunnelDialConfig(portalURL, id string) (tunnel.DialConfig, error) {
	if l.portal == nil {
		return tunnel.DialConfig{}, fmt.Errorf("the agent cannot reach its portal: %w", l.setupErr)
	}
	l.mu.Lock()
	device, doc := l.device, l.doc
	l.mu.Unlock()
	if device == nil || doc == nil {
		return tunnel.DialConfig{}, errors.New("this appliance is not activated: a support tunnel needs the device key the portal knows")
	}
	u, err := url.Parse(portalURL)
	if err != nil {
		return tunnel.DialConfig{}, fmt.Errorf("config portal.url: %w", err)
	}
	endpoint := url.URL{Scheme: u.Scheme, Host: u.Host, Path: protocol.PathTunnel}
	return tunnel.DialConfig{
		URL:        endpoint.String(),
		HTTPClient: &http.Client{Transport: l.portal.http.GetClient().Transport},
		Signer:     device,
		Keyring:    l.trust.Keyring,
		PBXID:      doc.PBX.ID,
		CommandID:  id,
		Now:        l.clock.Now,
	}, nil
}
