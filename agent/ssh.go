package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/actions"
	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/clock"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// SSHAccess is the seam to temporary support SSH (pkg/actions).
type SSHAccess interface {
	Open(ctx context.Context, req actions.SSHRequest) (actions.SSHState, error)
	Close(ctx context.Context) error
	State(ctx context.Context) (actions.SSHState, error)
	// SetClock sets the clock SSHState.Until is told on.
	SetClock(now func() time.Time)
}

// errNoSSH: the agent was built without an SSH executor (tests).
var errNoSSH = errors.New("temporary SSH access is not set up on this appliance")

// sshCheckEvery is how often the access is read back from the machine, so
// the status follows a unit stopped by hand.
const sshCheckEvery = 30 * time.Second

// sshAccess is temporary support SSH as the agent knows it: the seam, and
// the access as last seen, which it alone writes. ssh.open and ssh.close
// are its two executors; its loop follows an access ending by itself.
//
// An access is in port mode (sshd on ssh.port, reached from outside) or in
// tunnel mode (sshd on 127.0.0.1:ssh.tunnel_port, reached through the
// tunnel the agent keeps to the portal). A tunnel lives in the agent: the
// access's end, a stopped licence and the agent's exit each end it, and
// every session in it.
type sshAccess struct {
	access     SSHAccess // nil: not set up
	port       int       // ssh.port
	tunnelPort int       // ssh.tunnel_port
	env        commandEnv
	tun        *supportTunnel
	stops      func() bool   // the licence stops the PBX (stopped, deleted): no tunnel then
	wake       chan struct{} // an open or close: re-arm the expiry timer

	// opMu serialises open, close and refresh, so that the loop never
	// sees a tunnel-mode sshd between its start and its tunnel's.
	opMu sync.Mutex

	mu  sync.Mutex // guards the fields below
	st  actions.SSHState
	err string
}

// newSSHAccess hands the seam the licence clock: the access's end, shown
// in the status and reported to the portal, is a time like every other the
// agent tells, though the TTL itself runs on elapsed time.
func newSSHAccess(access SSHAccess, cfg SSHConfig, env commandEnv, tun *supportTunnel, stops func() bool) *sshAccess {
	if access != nil {
		access.SetClock(env.now)
	}
	return &sshAccess{access: access, port: cfg.Port, tunnelPort: cfg.TunnelPort, env: env, tun: tun, stops: stops,
		wake: make(chan struct{}, 1)}
}

// loop reads the access back at start, every sshCheckEvery, just after it
// should have ended and when nudged, until ctx ends; then it ends a
// tunnel-mode access, whose relay ends with the agent.
func (s *sshAccess) loop(ctx context.Context) {
	if s.access == nil {
		return
	}
	tick := s.env.clock.NewTicker(sshCheckEvery)
	defer tick.Stop()
	for {
		s.refresh(ctx)
		expiry := s.expiryTimer()
		select {
		case <-ctx.Done():
		case <-tick.C():
		case <-expiry.C():
		case <-s.wake:
		}
		expiry.Stop()
		if ctx.Err() != nil {
			s.shutdown()
			return
		}
	}
}

// shutdown ends a tunnel-mode access as the agent exits: its sessions end
// with the relay in any case, and the loopback sshd would serve no one.
func (s *sshAccess) shutdown() {
	s.mu.Lock()
	tunnelled := s.st.Open && s.st.Loopback
	s.mu.Unlock()
	if !tunnelled && !s.tun.running() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.close(ctx, "the agent is stopping")
}

// expiryTimer fires just after the open access should have ended.
func (s *sshAccess) expiryTimer() clock.Timer {
	s.mu.Lock()
	until, open := s.st.Until, s.st.Open
	s.mu.Unlock()
	if !open || until.IsZero() {
		return s.env.clock.NewTimer(time.Hour)
	}
	// Until is told on the licence clock (newSSHAccess).
	return s.env.clock.NewTimer(max(until.Sub(s.env.now())+500*time.Millisecond, 0))
}

func (s *sshAccess) nudge() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *sshAccess) unsupported() *protocol.CommandResult {
	return &protocol.CommandResult{State: protocol.CommandRefused, Reason: protocol.RefusedUnsupported, Message: errNoSSH.Error()}
}

// open applies ssh.open id: the portal's keys, on the appliance's port
// or through the portal's tunnel, for the TTL asked.
func (s *sshAccess) open(ctx context.Context, id string, p *protocol.SSHOpen) *protocol.CommandResult {
	if s.access == nil {
		return s.unsupported()
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	keys := make([]string, 0, len(p.PublicKeys))
	for _, k := range p.PublicKeys {
		line, err := protocol.ParseSSHKey(k) // validated with the command; re-encoded here
		if err != nil {
			return &protocol.CommandResult{State: protocol.CommandRefused, Reason: protocol.RefusedMalformed, Message: err.Error()}
		}
		keys = append(keys, line)
	}
	req := actions.SSHRequest{Port: s.port, TTL: p.TTL.Duration(), Keys: keys}
	if p.Tunnel {
		req.Port, req.Loopback = s.tunnelPort, true
	}
	s.tun.end() // a new access replaces the open one, tunnel and all
	st, err := s.access.Open(ctx, req)
	if err == nil && p.Tunnel {
		target := net.JoinHostPort(actions.LoopbackListen, strconv.Itoa(st.Port))
		if terr := s.tun.start(id, target, req.TTL); terr != nil {
			err = fmt.Errorf("support tunnel: %w", terr)
			if cerr := s.access.Close(ctx); cerr != nil {
				err = errors.Join(err, fmt.Errorf("closing the loopback sshd: %w", cerr))
			}
			st = actions.SSHState{}
		}
	}
	s.set(st, err)
	s.nudge() // the loop re-arms its expiry timer
	if err != nil {
		return &protocol.CommandResult{State: protocol.CommandFailed, Message: err.Error()}
	}
	s.audit("open", st, id)
	until := st.Until.UTC().Format(time.RFC3339)
	if p.Tunnel {
		s.env.log.Info("support SSH access open through the portal's tunnel", "sshd", "127.0.0.1:"+strconv.Itoa(st.Port),
			"until", st.Until.UTC(), "keys", len(keys))
		return &protocol.CommandResult{State: protocol.CommandDone,
			Message: fmt.Sprintf("SSH open through the portal's tunnel (sshd on 127.0.0.1:%d) until %s", st.Port, until), SSH: sshResult(st)}
	}
	s.env.log.Info("support SSH access open", "port", st.Port, "until", st.Until.UTC(), "keys", len(keys))
	return &protocol.CommandResult{State: protocol.CommandDone,
		Message: fmt.Sprintf("SSH open on port %d until %s", st.Port, until), SSH: sshResult(st)}
}

// close ends the access and every session in it.
func (s *sshAccess) close(ctx context.Context, why string) *protocol.CommandResult {
	if s.access == nil {
		return s.unsupported()
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	return s.closeLocked(ctx, why)
}

// closeLocked closes with opMu held: the tunnel and its sessions first,
// then sshd.
func (s *sshAccess) closeLocked(ctx context.Context, why string) *protocol.CommandResult {
	tunnelled := s.tun.end()
	if err := s.access.Close(ctx); err != nil {
		s.readLocked(ctx)
		return &protocol.CommandResult{State: protocol.CommandFailed, Message: err.Error()}
	}
	s.mu.Lock()
	was := s.st
	s.mu.Unlock()
	s.set(actions.SSHState{}, nil)
	s.nudge()
	if was.Open || tunnelled {
		s.audit("close", was, "", "why", why)
		s.env.log.Info("support SSH access closed", "why", why)
	}
	return &protocol.CommandResult{State: protocol.CommandDone, Message: "SSH closed", SSH: &protocol.SSHResult{Open: false}}
}

// refresh reads the access back from the machine, recording an access
// that ended by itself (its TTL, or a unit stopped by hand). It ends a
// tunnel whose sshd has gone, and closes a tunnel-mode access that has no
// tunnel (one left by an agent that exited) or that a stopped licence
// ends.
func (s *sshAccess) refresh(ctx context.Context) {
	if s.access == nil {
		return
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	s.refreshLocked(ctx)
}

func (s *sshAccess) refreshLocked(ctx context.Context) {
	was, st, err := s.readLocked(ctx)
	if err != nil {
		return
	}
	switch {
	case !st.Open:
		tunnelled := s.tun.end()
		if was.Open || tunnelled {
			s.audit("expired", was, "")
			s.env.log.Info("support SSH access ended", "port", was.Port, "until", was.Until.UTC())
		}
	case st.Loopback && !s.tun.running():
		s.closeLocked(ctx, "its tunnel ended with the agent that opened it")
	case st.Loopback && s.stops != nil && s.stops():
		s.closeLocked(ctx, "the licence stops the PBX")
	}
}

// readLocked reads the access back and keeps it: what it was, what it
// is.
func (s *sshAccess) readLocked(ctx context.Context) (was, st actions.SSHState, err error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err = s.access.State(ctx)
	s.mu.Lock()
	was = s.st
	s.mu.Unlock()
	s.set(st, err)
	return was, st, err
}

func (s *sshAccess) set(st actions.SSHState, err error) {
	s.mu.Lock()
	if err != nil {
		s.err = err.Error()
	} else {
		s.st, s.err = st, ""
	}
	s.mu.Unlock()
}

// audit records an access event; command is the ssh.open's id when
// known, more are further key and value pairs.
func (s *sshAccess) audit(action string, st actions.SSHState, command string, more ...string) {
	fields := map[string]any{"action": action, "port": st.Port}
	if !st.Until.IsZero() {
		fields["until"] = st.Until.UTC().Format(time.RFC3339)
	}
	if st.Loopback {
		fields["tunnel"] = true
	}
	if command != "" {
		fields["command"] = command
	}
	for i := 0; i+1 < len(more); i += 2 {
		fields[more[i]] = more[i+1]
	}
	s.env.audit(s.env.now(), auditSSH, fields)
}

// reconcile resolves an ssh.open or ssh.close a restart cut short: done
// when the machine shows it took effect, else failed, never run again.
func (s *sshAccess) reconcile(ctx context.Context, opened bool) *protocol.CommandResult {
	if s.access != nil {
		if st, err := s.access.State(ctx); err == nil && st.Open == opened {
			return &protocol.CommandResult{State: protocol.CommandDone,
				Message: "completed before a restart of the agent", SSH: sshResult(st)}
		}
	}
	return interrupted()
}

func sshResult(st actions.SSHState) *protocol.SSHResult {
	r := &protocol.SSHResult{Open: st.Open, Port: st.Port, HostKeys: st.HostKeys}
	if st.Open {
		r.Until = st.Until.UTC()
	}
	return r
}

// status is the access for the status: open, port, until (on the licence
// clock).
func (s *sshAccess) status() apitype.SSHStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	out := apitype.SSHStatus{Open: st.Open, Port: s.port, HostKeys: st.HostKeys, Error: s.err}
	if st.Open {
		out.Port = st.Port
		if !st.Until.IsZero() {
			out.Until = utc(st.Until)
		}
		if st.Loopback {
			out.Tunnel = s.tun.status()
			if out.Tunnel == nil { // until refresh closes it
				out.Tunnel = &apitype.SSHTunnelStatus{}
			}
		}
	}
	return out
}

// sshOpenExecutor runs ssh.open.
type sshOpenExecutor struct{ s *sshAccess }

func (x sshOpenExecutor) check(_ context.Context, cmd *protocol.Command) *protocol.CommandResult {
	if cmd.SSH.Tunnel && x.s.stops != nil && x.s.stops() {
		// Refused rather than opened on the port: a tunnel was asked
		// because nothing outside may reach the appliance.
		return &protocol.CommandResult{State: protocol.CommandRefused, Reason: protocol.RefusedRejected,
			Message: "the licence stops this PBX, which ends support tunnels: restore a licence first, or open access on the port (ssh.open without tunnel)"}
	}
	if p := cmd.SSH; p.Port != 0 && p.Port != x.s.port {
		return &protocol.CommandResult{State: protocol.CommandRefused, Reason: protocol.RefusedRejected,
			Message: fmt.Sprintf("this appliance opens support SSH on port %d only (ssh.port), not %d", x.s.port, p.Port)}
	}
	return nil
}

func (sshOpenExecutor) due(time.Time, *protocol.Command) (time.Duration, *protocol.CommandResult) {
	return 0, nil
}

func (x sshOpenExecutor) start(ctx context.Context, id string, cmd *protocol.Command) *protocol.CommandResult {
	return x.s.open(ctx, id, cmd.SSH)
}

func (sshOpenExecutor) poll(context.Context, string, *protocol.Command) (*protocol.CommandResult, time.Duration) {
	return interrupted(), 0 // never runs on
}

func (x sshOpenExecutor) reconcile(ctx context.Context, _ string, cmd *protocol.Command) *protocol.CommandResult {
	if cmd.SSH != nil && cmd.SSH.Tunnel {
		return interrupted() // its tunnel ended with the agent
	}
	return x.s.reconcile(ctx, true)
}

// sshCloseExecutor runs ssh.close.
type sshCloseExecutor struct{ s *sshAccess }

func (sshCloseExecutor) check(context.Context, *protocol.Command) *protocol.CommandResult { return nil }

func (sshCloseExecutor) due(time.Time, *protocol.Command) (time.Duration, *protocol.CommandResult) {
	return 0, nil
}

func (x sshCloseExecutor) start(ctx context.Context, _ string, _ *protocol.Command) *protocol.CommandResult {
	return x.s.close(ctx, "the portal closed it")
}

func (sshCloseExecutor) poll(context.Context, string, *protocol.Command) (*protocol.CommandResult, time.Duration) {
	return interrupted(), 0 // never runs on
}

func (x sshCloseExecutor) reconcile(ctx context.Context, _ string, _ *protocol.Command) *protocol.CommandResult {
	return x.s.reconcile(ctx, false)
}

// CloseSSH closes the access for the local admin (ssh close, POST
// /v1/ssh/close).
func (a *Agent) CloseSSH(ctx context.Context) error {
	if res := a.ssh.close(ctx, "closed by the local admin"); res.State != protocol.CommandDone {
		return fmt.Errorf("closing SSH access: %s", res.Message)
	}
	return nil
}
