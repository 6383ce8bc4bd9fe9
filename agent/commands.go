package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/pbx-agent/pbx-agent/agent/metrics"
	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/clock"
	"github.com/pbx-agent/pbx-agent/pkg/license"
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
//
// A command moves through one state machine, whatever its type:
//
//	received ──check──▶ refused|failed        (judged when the loop takes it)
//	received ──due────▶ waiting ──due──▶ running   (a window not yet open)
//	received ──due────▶ running ──start/poll──▶ done|failed
//	running (found at start) ──reconcile──▶ its result, or followed by poll
//
// Each transition is saved before the step it leads to is taken. What a
// type does at each step is its executor's, in one table (executorTable):
// a new command type is one executor and one line there.

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
	auditSSH             = "ssh"              // action open|close|expired, port, until; tunnel, command, why when they apply
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

// An executor carries out one type of portal command. The machine owns
// the journal and saves each transition before it acts; an executor only
// judges and acts, and is given the command, never the journal entry.
type executor interface {
	// check judges a command when the loop takes it: nil, or the result
	// that ends it unstarted (a refusal, or a failure to look).
	check(ctx context.Context, cmd *protocol.Command) *protocol.CommandResult
	// due says whether it may start now: wait > 0 keeps it waiting at
	// most that long; a result ends it unstarted (its window passed).
	due(now time.Time, cmd *protocol.Command) (wait time.Duration, end *protocol.CommandResult)
	// start carries it out: its result, or nil when it runs on outside
	// the agent and poll follows it.
	start(ctx context.Context, id string, cmd *protocol.Command) *protocol.CommandResult
	// poll follows a command that runs on: its result once it ended,
	// else how soon to look again.
	poll(ctx context.Context, id string, cmd *protocol.Command) (*protocol.CommandResult, time.Duration)
	// reconcile resolves a command a restart found running, from what the
	// machine shows: its result, or nil when poll can still follow it.
	reconcile(ctx context.Context, id string, cmd *protocol.Command) *protocol.CommandResult
}

// executorTable is every command type the agent knows, in the order the
// metrics and docs list them. A type whose means are not set up on this
// appliance still has its executor, which refuses it as unsupported.
func executorTable(access *sshAccess, upgrades *wmsUpgrades) []typedExecutor {
	return []typedExecutor{
		{protocol.CommandSSHOpen, sshOpenExecutor{access}},
		{protocol.CommandSSHClose, sshCloseExecutor{access}},
		{protocol.CommandWMSUpgrade, upgrades},
	}
}

type typedExecutor struct {
	typ protocol.CommandType
	executor
}

// commandTypes lists the table's types, for the metrics.
func commandTypes() []string {
	var out []string
	for _, e := range executorTable(nil, nil) {
		out = append(out, string(e.typ))
	}
	return out
}

// commandEnv is what the command machine needs from the rest of the
// daemon, as values and functions, never the Agent.
type commandEnv struct {
	log     *slog.Logger
	clock   clock.Clock
	now     func() time.Time        // the licence clock
	keyring func() *license.Keyring // portal keys, revocations applied
	audit   func(now time.Time, kind string, fields map[string]any)
	metrics *metrics.Metrics
	report  func() // asks the heartbeat loop to report results now
}

// commands is the command machine: the journal, the executors and the
// loop that applies them. Its lock guards the journal and is never held
// while an executor acts.
type commands struct {
	env   commandEnv
	store *state.File[journal]
	exec  []typedExecutor
	wake  chan struct{} // asks loop to look at the journal

	mu      sync.Mutex // guards the fields below
	j       journal
	running string // id of the command being applied
	// pollAt is, per command just started that runs on, when poll may
	// first look (on the clock's elapsed reading): a look at once, on the
	// next wake-up, would take a runner that has not yet shown itself
	// for dead.
	pollAt map[string]time.Duration
}

// openCommands loads the journal. A damaged one is set aside (pkg/state
// keeps it as .corrupt) and the agent starts with an empty one: the
// licence must not depend on the journal.
func openCommands(stateDir string, env commandEnv, exec []typedExecutor) (*commands, error) {
	store, err := state.Open[journal](state.Options{Dir: stateDir, Name: journalFile, Version: journalSchema, Logger: env.log})
	if err != nil {
		return nil, err
	}
	j, info, err := store.Load()
	switch {
	case errors.Is(err, state.ErrNotExist):
	case err != nil:
		env.log.Error("the command journal is unusable; starting with an empty one", "err", err)
		j = journal{}
	case info.Recovered:
		env.log.Warn("command journal recovered from its previous good copy", "reason", info.RecoveredReason)
	}
	return &commands{env: env, store: store, exec: exec, wake: make(chan struct{}, 1), j: j,
		pollAt: map[string]time.Duration{}}, nil
}

func (c *commands) executorOf(typ protocol.CommandType) executor {
	for _, e := range c.exec {
		if e.typ == typ {
			return e.executor
		}
	}
	return nil
}

// nudge has the loop look at the journal now, without blocking.
func (c *commands) nudge() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// take handles what a heartbeat answer carried: acknowledgements first,
// then each command, verified and journaled before this returns.
func (c *commands) take(signed, acked []string, pbxID string) {
	now := c.env.now()
	var fresh, refused []*journalEntry
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
		cmd, err := protocol.VerifyCommand(s, c.env.keyring(), pbxID, now)
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
				c.env.log.Warn("command refused: its id was used before for another command", "id", cmd.ID)
				c.auditCommand(now, auditCommandRefused, cmd.ID, cmd.Type, map[string]any{"reason": protocol.RefusedReplayed})
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
		c.env.log.Error("saving the command journal; commands not taken", "err", err)
		for _, e := range fresh {
			c.removeLocked(e.ID)
		}
		return
	}
	for _, e := range refused {
		c.env.log.Warn("command refused", "id", e.ID, "reason", e.Result.Reason, "detail", e.Result.Message)
		c.auditCommand(now, auditCommandRefused, e.ID, e.Type, map[string]any{"reason": e.Result.Reason, "message": e.Result.Message})
		c.count(e.Type, metrics.CommandRefused)
	}
	for _, e := range fresh {
		c.env.log.Info("command received", "id", e.ID, "type", e.Type)
		c.auditCommand(now, auditCommandReceived, e.ID, e.Type, nil)
	}
	if len(fresh) > 0 {
		c.nudge()
	}
	if len(refused) > 0 {
		c.env.report() // report the refusals now
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
func (c *commands) refuseLocked(ce *protocol.CommandError, now time.Time) *journalEntry {
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

func (c *commands) findLocked(id string) *journalEntry {
	for _, e := range c.j.Entries {
		if e.ID == id {
			return e
		}
	}
	return nil
}

func (c *commands) removeLocked(id string) {
	c.j.Entries = slices.DeleteFunc(c.j.Entries, func(e *journalEntry) bool { return e.ID == id })
}

// pruneLocked forgets acknowledged entries past their expiry beyond the
// newest journalKeep: a replay of one is refused as expired anyway.
func (c *commands) pruneLocked(now time.Time) {
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
func (c *commands) results() []protocol.CommandResult {
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

// loop applies journaled commands one at a time, in order, and follows
// those that wait or run on, until ctx ends. It reconciles first.
func (c *commands) loop(ctx context.Context) {
	c.reconcile(ctx)
	for {
		for c.step(ctx) {
		}
		timer := c.env.clock.NewTimer(time.Hour)
		if d := c.follow(ctx); d > 0 {
			timer.Reset(d)
		}
		select {
		case <-ctx.Done():
		case <-c.wake:
		case <-timer.C():
		}
		timer.Stop()
		if ctx.Err() != nil {
			return
		}
	}
}

// step takes the oldest received command through its check to waiting,
// running or its result, reporting whether there was one.
func (c *commands) step(ctx context.Context) bool {
	c.mu.Lock()
	i := slices.IndexFunc(c.j.Entries, func(x *journalEntry) bool { return x.State == protocol.CommandReceived })
	if i < 0 {
		c.mu.Unlock()
		return false
	}
	e := c.j.Entries[i]
	cmd := *e.Command
	c.mu.Unlock()

	now := c.env.now()
	if !now.Before(e.ExpiresAt) {
		c.finish(e, protocol.CommandResult{State: protocol.CommandRefused, Reason: protocol.RefusedExpired,
			Message: "it expired before it could run"})
		return true
	}
	x := c.executorOf(cmd.Type)
	if x == nil { // VerifyCommand refuses unknown types; a journal from a newer agent may hold one
		c.finish(e, protocol.CommandResult{State: protocol.CommandRefused, Reason: protocol.RefusedUnsupported,
			Message: fmt.Sprintf("%s is not known to this agent", cmd.Type)})
		return true
	}
	if res := x.check(ctx, &cmd); res != nil {
		c.finish(e, *res)
		return true
	}
	c.advance(ctx, e, x, &cmd)
	return true
}

// advance moves a checked command on from received or waiting: to its
// result when its time passed, to waiting while it is not due, else to
// running (saved first) and started. It returns how soon to look again.
func (c *commands) advance(ctx context.Context, e *journalEntry, x executor, cmd *protocol.Command) time.Duration {
	wait, end := x.due(c.env.now(), cmd)
	switch {
	case end != nil:
		c.finish(e, *end)
		return 0
	case wait > 0:
		if c.transition(e, protocol.CommandWaiting) != nil {
			return time.Second // the journal could not be saved: tried again soon
		}
		return wait
	}
	// Durably "running" before acting: after a crash from here on, the
	// command is reconciled, never run again.
	if err := c.transition(e, protocol.CommandRunning); err != nil {
		return time.Second
	}
	c.mu.Lock()
	c.running = e.ID
	c.mu.Unlock()
	res := x.start(ctx, e.ID, cmd)
	c.mu.Lock()
	c.running = ""
	if res == nil {
		c.pollAt[e.ID] = c.env.clock.Elapsed() + firstPoll
	}
	c.mu.Unlock()
	if res != nil {
		c.finish(e, *res)
		return 0
	}
	return firstPoll // runs on: poll follows it
}

// firstPoll is how long after its start a command that runs on is first
// looked at: what runs it (a systemd unit starting) needs a moment to show
// itself, and a look before that would take it for dead.
const firstPoll = 2 * time.Second

// transition saves e in state to; on a failed save e keeps its state.
func (c *commands) transition(e *journalEntry, to protocol.CommandState) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.State == to {
		return nil
	}
	from := e.State
	e.State = to
	if err := c.store.Save(c.j); err != nil {
		e.State = from
		c.env.log.Error("saving the command journal; the command stays "+string(from), "id", e.ID, "err", err)
		return err
	}
	return nil
}

// follow moves on every command that waits or runs on and returns how
// long until one should be looked at again (0: none).
func (c *commands) follow(ctx context.Context) time.Duration {
	c.mu.Lock()
	var open []*journalEntry
	for _, e := range c.j.Entries {
		if e.Command != nil && (e.State == protocol.CommandWaiting || e.State == protocol.CommandRunning) {
			open = append(open, e)
		}
	}
	c.mu.Unlock()
	var next time.Duration
	for _, e := range open {
		c.mu.Lock()
		state, cmd := e.State, *e.Command
		c.mu.Unlock()
		x := c.executorOf(cmd.Type)
		if x == nil {
			continue
		}
		var d time.Duration
		switch state {
		case protocol.CommandWaiting:
			d = c.advance(ctx, e, x, &cmd)
		case protocol.CommandRunning:
			c.mu.Lock()
			wait := c.pollAt[e.ID] - c.env.clock.Elapsed()
			c.mu.Unlock()
			if wait > 0 {
				d = wait
				break
			}
			var res *protocol.CommandResult
			if res, d = x.poll(ctx, e.ID, &cmd); res != nil {
				c.finish(e, *res)
				d = 0
			}
			c.mu.Lock()
			delete(c.pollAt, e.ID)
			c.mu.Unlock()
		}
		if d > 0 && (next == 0 || d < next) {
			next = d
		}
	}
	return next
}

// reconcile resolves commands a crash left running, from what the machine
// shows. It never runs them again.
func (c *commands) reconcile(ctx context.Context) {
	c.mu.Lock()
	var stuck []*journalEntry
	for _, e := range c.j.Entries {
		if e.State == protocol.CommandRunning && e.Command != nil {
			stuck = append(stuck, e)
		}
	}
	c.mu.Unlock()
	for _, e := range stuck {
		x := c.executorOf(e.Type)
		res := interrupted()
		if x != nil {
			res = x.reconcile(ctx, e.ID, e.Command)
		}
		if res == nil {
			continue // followed from where it runs (a helper's result file)
		}
		c.finish(e, *res)
		c.env.log.Warn("command interrupted by a restart resolved", "id", e.ID, "type", e.Type, "state", res.State)
	}
}

// interrupted is the result of a command a restart cut short, which is
// never run again.
func interrupted() *protocol.CommandResult {
	return &protocol.CommandResult{State: protocol.CommandFailed, Message: "interrupted by a restart of the agent; not run again"}
}

// finish records a command's result in the journal and the audit log, and
// has it reported now.
func (c *commands) finish(e *journalEntry, res protocol.CommandResult) {
	now := c.env.now()
	c.mu.Lock()
	res.ID, res.Type, res.At = e.ID, e.Type, now
	e.State, e.Result = res.State, &res
	if err := c.store.Save(c.j); err != nil {
		// The result stays in memory and is reported; a restart before a
		// save resolves the command again from the machine.
		c.env.log.Error("saving the command journal", "id", e.ID, "err", err)
	}
	c.mu.Unlock()
	fields := map[string]any{"state": string(res.State)}
	if res.Reason != "" {
		fields["reason"] = res.Reason
	}
	if res.Message != "" {
		fields["message"] = res.Message
	}
	c.auditCommand(now, auditCommandResult, e.ID, e.Type, fields)
	result := metrics.CommandSuccess
	switch res.State {
	case protocol.CommandFailed:
		result = metrics.CommandFailed
	case protocol.CommandRefused:
		result = metrics.CommandRefused
	}
	c.count(e.Type, result)
	c.env.log.Info("command finished", "id", e.ID, "type", e.Type, "state", res.State, "reason", res.Reason, "message", res.Message)
	c.env.report()
}

func (c *commands) auditCommand(now time.Time, kind, id string, typ protocol.CommandType, fields map[string]any) {
	if fields == nil {
		fields = map[string]any{}
	}
	if id != "" {
		fields["id"] = id
	}
	if typ != "" {
		fields["type"] = string(typ)
	}
	c.env.audit(now, kind, fields)
}

// count counts a command of a type in the table; a refused document of no
// known type is not a series of its own.
func (c *commands) count(typ protocol.CommandType, result string) {
	if c.executorOf(typ) != nil {
		c.env.metrics.Command(string(typ), result)
	}
}

// status lists the pending and recent commands of the current PBX,
// newest first, with their times on the licence clock.
//
// The journal outlives a PBX: after a deletion and the activation of
// another one it still holds the old PBX's commands (kept to refuse their
// replays), which are not this PBX's to show. A verified command names its
// PBX. A refusal read from a document that did not decode names none; it
// is shown when it arrived since the current PBX was activated (since),
// since only this PBX's heartbeats can have brought it then. With no PBX
// (never activated) nothing is shown.
func (c *commands) status(pbxID string, since time.Time) []apitype.CommandStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := []apitype.CommandStatus{}
	if pbxID == "" {
		return out
	}
	for i := len(c.j.Entries) - 1; i >= 0 && len(out) < statusCommands; i-- {
		e := c.j.Entries[i]
		if !e.ofPBX(pbxID, since) {
			continue
		}
		cs := apitype.CommandStatus{ID: e.ID, Type: string(e.Type), State: string(e.State), ReceivedAt: clampTime(e.ReceivedAt)}
		if e.Type == "" {
			cs.Type = "unknown"
		}
		if r := e.Result; r != nil {
			cs.Result = r.Message
			if r.Reason != "" {
				cs.Result = r.Reason + ": " + r.Message
			}
			if e.State.Final() && !r.At.IsZero() {
				cs.FinishedAt = utc(r.At)
			}
		}
		out = append(out, cs)
	}
	return out
}

// ofPBX reports whether e belongs to PBX pbxID activated at since (see
// status).
func (e *journalEntry) ofPBX(pbxID string, since time.Time) bool {
	if e.Command != nil {
		return e.Command.PBXID == pbxID
	}
	return !since.IsZero() && !e.ReceivedAt.Before(since)
}
