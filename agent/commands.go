package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/pbx-agent/pbx-agent/agent/localapi"
	"github.com/pbx-agent/pbx-agent/agent/metrics"
	"github.com/pbx-agent/pbx-agent/pkg/actions"
	"github.com/pbx-agent/pbx-agent/pkg/audit"
	"github.com/pbx-agent/pbx-agent/pkg/clock"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
	"github.com/pbx-agent/pbx-agent/pkg/state"
)

// Portal commands. A heartbeat answer carries signed commands; each is
// verified, then journaled durably before anything acts on it, so that it
// is applied at most once across crashes and restarts: an id already in the
// journal is never run again. Results are reported in every heartbeat until
// the portal acknowledges them. Every step goes to the audit log.
//
// The journal is its own state file, commands.json: the licence state stays
// small, and a damaged journal never costs the licence.

const (
	journalFile   = "commands.json"
	journalSchema = 1
	// statusCommands is how many recent commands the status lists.
	statusCommands = 20
	// journalKeep bounds the finished, acknowledged, expired entries kept
	// for display; unexpired ones are always kept, to refuse replays.
	journalKeep = 50
)

// Audit event kinds of commands.
const (
	auditCommandReceived = "command.received" // id, type
	auditCommandRefused  = "command.refused"  // id, type, reason, message
	auditCommandResult   = "command.result"   // id, type, state, message
	auditSSH             = "ssh"              // action open|close|expired, port, until
)

// journal is the persisted list of commands seen.
type journal struct {
	Entries []*journalEntry `json:"entries"`
}

// journalEntry is one command as the agent knows it.
type journalEntry struct {
	ID         string                  `json:"id"`
	Type       protocol.CommandType    `json:"type,omitempty"`
	Command    *protocol.Command       `json:"command,omitempty"` // nil when refused before decoding
	State      protocol.CommandState   `json:"state"`
	Result     *protocol.CommandResult `json:"result,omitempty"`
	Acked      bool                    `json:"acked,omitempty"`
	ReceivedAt time.Time               `json:"received_at"`
	ExpiresAt  time.Time               `json:"expires_at,omitzero"`
	// Unverified marks a refusal whose id no verified command for this
	// PBX vouches for (see refuseLocked): a valid command with that id is
	// still taken.
	Unverified bool `json:"unverified,omitempty"`
}

// SSHAccess is the seam to temporary support SSH (pkg/actions).
type SSHAccess interface {
	Open(ctx context.Context, req actions.SSHRequest) (actions.SSHState, error)
	Close(ctx context.Context) error
	State(ctx context.Context) (actions.SSHState, error)
	// SetClock sets the clock SSHState.Until is told on (ssh.go).
	SetClock(now func() time.Time)
}

// commandsState is the agent's command machinery.
type commandsState struct {
	store *state.File[journal]
	ssh   SSHAccess
	wake  chan struct{} // asks commandLoop to look at the journal

	mu      sync.Mutex // guards the fields below
	j       journal
	sshSt   actions.SSHState // the access as last seen
	sshErr  string
	running string // id of the command being applied

	wmsVersion string // installed, as last read (wms.go)
	wmsUpgrade string // the last upgrade's progress or outcome, in words
}

// initCommands opens the journal and sets the SSH seam.
func (a *Agent) initCommands(opts Options) error {
	store, err := state.Open[journal](state.Options{Dir: a.cfg.StateDir, Name: journalFile, Version: journalSchema, Logger: a.log})
	if err != nil {
		return err
	}
	j, info, err := store.Load()
	switch {
	case errors.Is(err, state.ErrNotExist):
	case err != nil:
		// The licence must not depend on the journal: start with an
		// empty one, keeping the damaged file (pkg/state keeps .corrupt).
		a.log.Error("the command journal is unusable; starting with an empty one", "err", err)
		j = journal{}
	case info.Recovered:
		a.log.Warn("command journal recovered from its previous good copy", "reason", info.RecoveredReason)
	}
	a.cmds = commandsState{store: store, ssh: opts.SSH, wake: make(chan struct{}, 1), j: j}
	a.wireSSH()
	a.wms = opts.WMS
	return nil
}

// wakeCommands nudges commandLoop without blocking.
func (a *Agent) wakeCommands() {
	select {
	case a.cmds.wake <- struct{}{}:
	default:
	}
}

// wakeHeartbeat asks the heartbeat loop to run now: to fetch what the
// portal has, or to report a result.
func (a *Agent) wakeHeartbeat() {
	select {
	case a.hbWake <- struct{}{}:
	default:
	}
}

// takeCommands handles what a heartbeat answer carried: acknowledgements
// first, then each command, verified and journaled before this returns.
func (a *Agent) takeCommands(signed, acked []string, pbxID string) {
	now := a.clock.Now()
	var fresh, refused []*journalEntry
	c := &a.cmds
	c.mu.Lock()
	defer c.mu.Unlock()
	changed := false
	for _, id := range acked {
		if e := c.findLocked(id); e != nil && !e.Acked && e.State.Final() {
			e.Acked = true
			changed = true
		}
	}
	for _, s := range signed {
		cmd, err := protocol.VerifyCommand(s, a.trust.Keyring(), pbxID, now)
		if err != nil {
			var ce *protocol.CommandError
			if !errors.As(err, &ce) {
				ce = &protocol.CommandError{ID: protocol.ClaimedCommandID(s), Code: protocol.RefusedMalformed, Detail: err.Error()}
			}
			if e := c.refuseLocked(ce, now); e != nil {
				refused = append(refused, e)
				changed = true
			}
			continue
		}
		if e := c.findLocked(cmd.ID); e != nil && e.holdsID() {
			if e.Command != nil && !sameCommand(e.Command, cmd) {
				a.log.Warn("command refused: its id was used before for another command", "id", cmd.ID)
				a.auditCommand(now, auditCommandRefused, cmd.ID, cmd.Type, map[string]any{"reason": protocol.RefusedReplayed})
			}
			continue // delivered again before our result was acknowledged, or replayed: never run twice
		}
		c.removeLocked(cmd.ID)
		e := &journalEntry{ID: cmd.ID, Type: cmd.Type, Command: cmd, State: protocol.CommandReceived, ReceivedAt: now, ExpiresAt: cmd.ExpiresAt}
		c.j.Entries = append(c.j.Entries, e)
		fresh = append(fresh, e)
		changed = true
	}
	if !changed {
		return
	}
	c.pruneLocked(now)
	if err := c.store.Save(c.j); err != nil {
		// Not journaled: nothing runs, and the portal delivers it again.
		a.log.Error("saving the command journal; commands not taken", "err", err)
		for _, e := range fresh {
			c.removeLocked(e.ID)
		}
		return
	}
	for _, e := range refused {
		a.log.Warn("command refused", "id", e.ID, "reason", e.Result.Reason, "detail", e.Result.Message)
		a.auditCommand(now, auditCommandRefused, e.ID, e.Type, map[string]any{"reason": e.Result.Reason, "message": e.Result.Message})
		a.countCommand(e.Type, metrics.CommandRefused)
	}
	for _, e := range fresh {
		a.log.Info("command received", "id", e.ID, "type", e.Type)
		a.auditCommand(now, auditCommandReceived, e.ID, e.Type, nil)
	}
	if len(fresh) > 0 {
		a.wakeCommands()
	}
	if len(refused) > 0 {
		a.wakeHeartbeat() // report the refusals now
	}
}

// refuseLocked journals a refused command so its refusal is reported. A
// refusal with no readable id is only logged and audited.
//
// Only a verified command of type pbx-command+jws for this PBX may hold
// its id against a later command, and of the refusals only an expired one
// is that. Every other refusal read its id from a document that does not
// vouch for it: badly signed, of another type (a licence or answer claiming
// an id), for another PBX, malformed or of an unknown type. Holding such an
// id would let anyone who can deliver a document keep the genuine command
// with that id from ever running.
func (c *commandsState) refuseLocked(ce *protocol.CommandError, now time.Time) *journalEntry {
	unverified := ce.Code != protocol.RefusedExpired
	if ce.ID == "" {
		return nil
	}
	if e := c.findLocked(ce.ID); e != nil {
		return nil // known: already refused, or a valid command under attack; never replaced
	}
	e := &journalEntry{ID: ce.ID, State: protocol.CommandRefused, ReceivedAt: now, Unverified: unverified,
		ExpiresAt: now.Add(protocol.MaxCommandLifetime),
		Result:    &protocol.CommandResult{ID: ce.ID, State: protocol.CommandRefused, Reason: ce.Code, Message: ce.Detail, At: now}}
	c.j.Entries = append(c.j.Entries, e)
	return e
}

// holdsID reports whether e keeps a later command with its id from
// running. A journal written before every refusal but an expiry was
// marked Unverified holds such refusals unmarked: they hold nothing either.
func (e *journalEntry) holdsID() bool {
	if e.Unverified {
		return false
	}
	refusedUnread := e.Command == nil && e.State == protocol.CommandRefused &&
		e.Result != nil && e.Result.Reason != protocol.RefusedExpired
	return !refusedUnread
}

func sameCommand(a, b *protocol.Command) bool {
	return a.ID == b.ID && a.PBXID == b.PBXID && a.Type == b.Type && a.IssuedAt.Equal(b.IssuedAt) && a.ExpiresAt.Equal(b.ExpiresAt)
}

func (c *commandsState) findLocked(id string) *journalEntry {
	for _, e := range c.j.Entries {
		if e.ID == id {
			return e
		}
	}
	return nil
}

func (c *commandsState) removeLocked(id string) {
	c.j.Entries = slices.DeleteFunc(c.j.Entries, func(e *journalEntry) bool { return e.ID == id })
}

// pruneLocked forgets acknowledged entries past their expiry beyond the
// newest journalKeep: a replay of one is refused as expired anyway.
func (c *commandsState) pruneLocked(now time.Time) {
	var old int
	for i := len(c.j.Entries) - 1; i >= 0; i-- {
		e := c.j.Entries[i]
		if e.Acked && now.After(e.ExpiresAt) {
			old++
			if old > journalKeep {
				c.j.Entries = slices.Delete(c.j.Entries, i, i+1)
			}
		}
	}
}

// results returns the results the portal has not acknowledged, oldest
// first, for the next heartbeat.
func (a *Agent) results() []protocol.CommandResult {
	c := &a.cmds
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []protocol.CommandResult
	for _, e := range c.j.Entries {
		if e.State.Final() && !e.Acked && e.Result != nil && len(out) < protocol.MaxResults {
			out = append(out, *e.Result)
		}
	}
	return out
}

// commandLoop applies journaled commands one at a time, in order, until
// ctx ends. It reconciles first: a command found "running" was interrupted
// by a crash or restart, and is resolved from what the machine shows,
// never run again.
func (a *Agent) commandLoop(ctx context.Context) {
	a.reconcileCommands(ctx)
	a.refreshSSH(ctx)
	tick := a.clk.NewTicker(sshCheckEvery)
	defer tick.Stop()
	a.refreshWMSVersion(ctx)
	for {
		for a.applyNext(ctx) {
		}
		timer := a.sshExpiryTimer()
		wmsTimer := a.clk.NewTimer(time.Hour)
		if d := a.followWMS(ctx); d > 0 { // upgrades waiting or running: wms.go
			wmsTimer.Reset(d)
		}
		select {
		case <-ctx.Done():
		case <-a.cmds.wake:
		case <-tick.C():
			a.refreshSSH(ctx)
		case <-timer.C():
			a.refreshSSH(ctx)
		case <-wmsTimer.C():
		}
		timer.Stop()
		wmsTimer.Stop()
		if ctx.Err() != nil {
			return
		}
	}
}

// sshCheckEvery is how often the access is read back from the machine, so
// the status follows a unit stopped by hand.
const sshCheckEvery = 30 * time.Second

// sshExpiryTimer fires just after the open access should have ended.
func (a *Agent) sshExpiryTimer() clock.Timer {
	a.cmds.mu.Lock()
	until := a.cmds.sshSt.Until
	open := a.cmds.sshSt.Open
	a.cmds.mu.Unlock()
	if !open || until.IsZero() {
		return a.clk.NewTimer(time.Hour)
	}
	// Until is told on the licence clock (ssh.go).
	return a.clk.NewTimer(max(until.Sub(a.clock.Now())+500*time.Millisecond, 0))
}

// applyNext runs the oldest received command, reporting whether it did.
func (a *Agent) applyNext(ctx context.Context) bool {
	c := &a.cmds
	c.mu.Lock()
	var e *journalEntry
	for _, x := range c.j.Entries {
		if x.State == protocol.CommandReceived {
			e = x
			break
		}
	}
	if e == nil {
		c.mu.Unlock()
		return false
	}
	now := a.clock.Now()
	if !now.Before(e.ExpiresAt) {
		a.finishLocked(e, now, protocol.CommandResult{State: protocol.CommandRefused, Reason: protocol.RefusedExpired,
			Message: "it expired before it could run"})
		c.mu.Unlock()
		a.wakeHeartbeat()
		return true
	}
	if e.Type == protocol.CommandWMSUpgrade {
		// Checked now, started when its window opens (wms.go).
		cmd := *e.Command
		c.mu.Unlock()
		if res := a.checkWMS(ctx, &cmd); res != nil {
			c.mu.Lock()
			a.finishLocked(e, a.clock.Now(), *res)
			c.mu.Unlock()
			a.wakeHeartbeat()
			return true
		}
		c.mu.Lock()
		e.State = protocol.CommandWaiting
		if err := c.store.Save(c.j); err != nil {
			a.log.Error("saving the command journal", "id", e.ID, "err", err)
		}
		c.mu.Unlock()
		return true
	}
	// Durably "running" before acting: after a crash from here on, the
	// command is resolved, never run again.
	e.State = protocol.CommandRunning
	c.running = e.ID
	if err := c.store.Save(c.j); err != nil {
		e.State = protocol.CommandReceived
		c.running = ""
		c.mu.Unlock()
		a.log.Error("saving the command journal; the command waits", "id", e.ID, "err", err)
		return false
	}
	cmd := *e.Command
	c.mu.Unlock()

	res := a.apply(ctx, &cmd)

	c.mu.Lock()
	c.running = ""
	a.finishLocked(e, a.clock.Now(), res)
	c.mu.Unlock()
	a.wakeHeartbeat() // report it now
	return true
}

// finishLocked records a command's result in the journal and the audit log.
func (a *Agent) finishLocked(e *journalEntry, now time.Time, res protocol.CommandResult) {
	res.ID, res.Type, res.At = e.ID, e.Type, now
	e.State, e.Result = res.State, &res
	if err := a.cmds.store.Save(a.cmds.j); err != nil {
		// The result stays in memory and is reported; a restart before a
		// save resolves the command again from the machine.
		a.log.Error("saving the command journal", "id", e.ID, "err", err)
	}
	fields := map[string]any{"state": string(res.State)}
	if res.Reason != "" {
		fields["reason"] = res.Reason
	}
	if res.Message != "" {
		fields["message"] = res.Message
	}
	a.auditCommand(now, auditCommandResult, e.ID, e.Type, fields)
	result := metrics.CommandSuccess
	switch res.State {
	case protocol.CommandFailed:
		result = metrics.CommandFailed
	case protocol.CommandRefused:
		result = metrics.CommandRefused
	}
	a.countCommand(e.Type, result)
	a.log.Info("command finished", "id", e.ID, "type", e.Type, "state", res.State, "reason", res.Reason, "message", res.Message)
}

// apply carries out one verified command.
func (a *Agent) apply(ctx context.Context, cmd *protocol.Command) protocol.CommandResult {
	switch cmd.Type {
	case protocol.CommandSSHOpen:
		return a.openSSH(ctx, cmd)
	case protocol.CommandSSHClose:
		return a.closeSSH(ctx, "the portal closed it")
	}
	return protocol.CommandResult{State: protocol.CommandRefused, Reason: protocol.RefusedUnsupported,
		Message: fmt.Sprintf("%s is not set up on this appliance", cmd.Type)}
}

// reconcileCommands resolves commands a crash left "running", from what
// the machine shows. It never runs them again.
func (a *Agent) reconcileCommands(ctx context.Context) {
	c := &a.cmds
	c.mu.Lock()
	var stuck []*journalEntry
	for _, e := range c.j.Entries {
		// A running upgrade is followed from its helper's result file
		// (wms.go), which outlives the agent.
		if e.State == protocol.CommandRunning && e.Type != protocol.CommandWMSUpgrade {
			stuck = append(stuck, e)
		}
	}
	c.mu.Unlock()
	for _, e := range stuck {
		res := protocol.CommandResult{State: protocol.CommandFailed,
			Message: "interrupted by a restart of the agent; not run again"}
		if e.Type == protocol.CommandSSHOpen || e.Type == protocol.CommandSSHClose {
			if st, err := a.sshState(ctx); err == nil {
				opened := e.Type == protocol.CommandSSHOpen
				if st.Open == opened {
					res = protocol.CommandResult{State: protocol.CommandDone,
						Message: "completed before a restart of the agent", SSH: sshResult(st)}
				}
			}
		}
		c.mu.Lock()
		a.finishLocked(e, a.clock.Now(), res)
		c.mu.Unlock()
		a.log.Warn("command interrupted by a restart resolved", "id", e.ID, "type", e.Type, "state", res.State)
	}
	if len(stuck) > 0 {
		a.wakeHeartbeat()
	}
}

func (a *Agent) auditCommand(now time.Time, kind, id string, typ protocol.CommandType, fields map[string]any) {
	if fields == nil {
		fields = map[string]any{}
	}
	if id != "" {
		fields["id"] = id
	}
	if typ != "" {
		fields["type"] = string(typ)
	}
	if a.lc.audit == nil {
		return
	}
	if err := a.lc.audit.Append(audit.Event{Time: now, Kind: kind, Fields: fields}); err != nil {
		a.log.Error("writing the audit log", "kind", kind, "err", err)
	}
}

func (a *Agent) countCommand(typ protocol.CommandType, result string) {
	switch typ {
	case protocol.CommandSSHOpen, protocol.CommandSSHClose, protocol.CommandWMSUpgrade:
		a.metrics.Command(string(typ), result)
	}
}

// commandsStatus lists pending and recent commands, newest first.
func (a *Agent) commandsStatus() []localapi.CommandStatus {
	c := &a.cmds
	c.mu.Lock()
	defer c.mu.Unlock()
	out := []localapi.CommandStatus{}
	for i := len(c.j.Entries) - 1; i >= 0 && len(out) < statusCommands; i-- {
		e := c.j.Entries[i]
		cs := localapi.CommandStatus{ID: e.ID, Type: string(e.Type), State: string(e.State)}
		if e.Type == "" {
			cs.Type = "unknown"
		}
		if r := e.Result; r != nil {
			cs.Result = r.Message
			if r.Reason != "" {
				cs.Result = r.Reason + ": " + r.Message
			}
		}
		out = append(out, cs)
	}
	return out
}
