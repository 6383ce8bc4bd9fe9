package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pbx-agent/pbx-agent/agent/localapi"
	"github.com/pbx-agent/pbx-agent/pkg/actions"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// errNoSSH: the agent was built without an SSH executor (tests).
var errNoSSH = errors.New("temporary SSH access is not set up on this appliance")

// wireSSH hands the executor the licence clock: the access's end, shown
// in the status and reported to the portal, is a time like every other the
// agent tells, though the TTL itself runs on elapsed time.
func (a *Agent) wireSSH() {
	if a.cmds.ssh != nil {
		a.cmds.ssh.SetClock(a.clock.Now)
	}
}

// openSSH applies ssh.open: the portal's keys, on the appliance's port,
// for the TTL asked.
func (a *Agent) openSSH(ctx context.Context, cmd *protocol.Command) protocol.CommandResult {
	p := cmd.SSH
	port := a.cfg.SSH.Port
	if p.Port != 0 && p.Port != port {
		return protocol.CommandResult{State: protocol.CommandRefused, Reason: protocol.RefusedRejected,
			Message: fmt.Sprintf("this appliance opens support SSH on port %d only (ssh.port), not %d", port, p.Port)}
	}
	if a.cmds.ssh == nil {
		return protocol.CommandResult{State: protocol.CommandRefused, Reason: protocol.RefusedUnsupported, Message: errNoSSH.Error()}
	}
	keys := make([]string, 0, len(p.PublicKeys))
	for _, k := range p.PublicKeys {
		line, err := protocol.ParseSSHKey(k) // validated with the command; re-encoded here
		if err != nil {
			return protocol.CommandResult{State: protocol.CommandRefused, Reason: protocol.RefusedMalformed, Message: err.Error()}
		}
		keys = append(keys, line)
	}
	st, err := a.cmds.ssh.Open(ctx, actions.SSHRequest{Port: port, TTL: p.TTL.Duration(), Keys: keys})
	a.setSSH(st, err)
	if err != nil {
		return protocol.CommandResult{State: protocol.CommandFailed, Message: err.Error()}
	}
	a.auditSSH("open", st)
	a.log.Info("support SSH access open", "port", st.Port, "until", st.Until.UTC(), "keys", len(keys))
	return protocol.CommandResult{State: protocol.CommandDone,
		Message: fmt.Sprintf("SSH open on port %d until %s", st.Port, st.Until.UTC().Format(time.RFC3339)), SSH: sshResult(st)}
}

// closeSSH ends the access and every session in it.
func (a *Agent) closeSSH(ctx context.Context, why string) protocol.CommandResult {
	if a.cmds.ssh == nil {
		return protocol.CommandResult{State: protocol.CommandRefused, Reason: protocol.RefusedUnsupported, Message: errNoSSH.Error()}
	}
	if err := a.cmds.ssh.Close(ctx); err != nil {
		a.refreshSSH(ctx)
		return protocol.CommandResult{State: protocol.CommandFailed, Message: err.Error()}
	}
	a.cmds.mu.Lock()
	was := a.cmds.sshSt
	a.cmds.mu.Unlock()
	a.setSSH(actions.SSHState{}, nil)
	if was.Open {
		a.auditSSH("close", was)
		a.log.Info("support SSH access closed", "why", why)
	}
	return protocol.CommandResult{State: protocol.CommandDone, Message: "SSH closed", SSH: &protocol.SSHResult{Open: false}}
}

// CloseSSH closes the access for the local admin (ssh close, POST
// /v1/ssh/close).
func (a *Agent) CloseSSH(ctx context.Context) error {
	res := a.closeSSH(ctx, "closed by the local admin")
	if res.State != protocol.CommandDone {
		return fmt.Errorf("closing SSH access: %s", res.Message)
	}
	return nil
}

func (a *Agent) sshState(ctx context.Context) (actions.SSHState, error) {
	if a.cmds.ssh == nil {
		return actions.SSHState{}, errNoSSH
	}
	return a.cmds.ssh.State(ctx)
}

// refreshSSH reads the access back from the machine, recording an access
// that ended by itself (its TTL, or a unit stopped by hand).
func (a *Agent) refreshSSH(ctx context.Context) {
	if a.cmds.ssh == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := a.cmds.ssh.State(ctx)
	a.cmds.mu.Lock()
	was := a.cmds.sshSt
	a.cmds.mu.Unlock()
	a.setSSH(st, err)
	if err == nil && was.Open && !st.Open {
		a.auditSSH("expired", was)
		a.log.Info("support SSH access ended", "port", was.Port, "until", was.Until.UTC())
	}
}

func (a *Agent) setSSH(st actions.SSHState, err error) {
	a.cmds.mu.Lock()
	defer a.cmds.mu.Unlock()
	if err != nil {
		a.cmds.sshErr = err.Error()
		return
	}
	a.cmds.sshSt, a.cmds.sshErr = st, ""
}

func (a *Agent) auditSSH(action string, st actions.SSHState) {
	fields := map[string]any{"action": action, "port": st.Port}
	if !st.Until.IsZero() {
		fields["until"] = st.Until.UTC().Format(time.RFC3339)
	}
	a.auditCommand(a.clock.Now(), auditSSH, "", "", fields)
}

func sshResult(st actions.SSHState) *protocol.SSHResult {
	r := &protocol.SSHResult{Open: st.Open, Port: st.Port, HostKeys: st.HostKeys}
	if st.Open {
		r.Until = st.Until.UTC()
	}
	return r
}

// sshStatus is the access for the status: open, port, until (on the
// licence clock, see wireSSH).
func (a *Agent) sshStatus() localapi.SSHStatus {
	a.cmds.mu.Lock()
	defer a.cmds.mu.Unlock()
	st := a.cmds.sshSt
	s := localapi.SSHStatus{Open: st.Open, Port: a.cfg.SSH.Port, HostKeys: st.HostKeys, Error: a.cmds.sshErr}
	if st.Open {
		s.Port = st.Port
		if !st.Until.IsZero() {
			s.Until = utc(st.Until)
		}
	}
	return s
}
