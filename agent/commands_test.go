package agent

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/internal/portalsim"
	"github.com/pbx-agent/pbx-agent/pkg/actions"
	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// countingSSH is an SSH seam that records what it is asked: the real
// executors (pkg/actions) are tested against real sshd and systemd.
type countingSSH struct {
	mu     sync.Mutex
	now    func() time.Time // the clock the agent hands it
	opens  int
	closes int
	state  actions.SSHState
	keys   []string
	// loopbackPort, when set, is where a tunnel-mode access "listens": a
	// test's stand-in for the loopback sshd.
	loopbackPort int
}

func (c *countingSSH) Open(_ context.Context, req actions.SSHRequest) (actions.SSHState, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.opens++
	c.keys = req.Keys
	now := time.Now
	if c.now != nil {
		now = c.now
	}
	c.state = actions.SSHState{Open: true, Port: req.Port, Until: now().Add(req.TTL), HostKeys: []string{"ssh-ed25519 SHA256:test"},
		Loopback: req.Loopback}
	if req.Loopback && c.loopbackPort != 0 {
		c.state.Port = c.loopbackPort
	}
	return c.state, nil
}

func (c *countingSSH) Close(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closes++
	c.state = actions.SSHState{}
	return nil
}

func (c *countingSSH) State(context.Context) (actions.SSHState, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state, nil
}

func (c *countingSSH) SetClock(now func() time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = now
}

func (c *countingSSH) current() actions.SSHState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

func (c *countingSSH) counts() (int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.opens, c.closes
}

// commandRig is an activated agent with an SSH seam, driven step by step:
// heartbeat, apply, heartbeat.
type commandRig struct {
	*rig
	ssh *countingSSH
	a   *Agent
	pbx string
}

func newCommandRig(t *testing.T) *commandRig {
	t.Helper()
	r := newRig(t)
	key := r.createPBX(t, "acme.example", license.Counts{license.UCPremium: 5})
	cr := &commandRig{rig: r, ssh: &countingSSH{}, pbx: "acme.example"}
	cr.a = cr.start(t)
	if err := cr.a.Activate(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	return cr
}

// start makes an agent on the rig's state folder (again: a restart).
func (cr *commandRig) start(t *testing.T) *Agent {
	t.Helper()
	a, err := New(cr.cfg, slog.New(slog.DiscardHandler), Options{Time: cr.time, Root: cr.root, SSH: cr.ssh})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// cycle runs a heartbeat, applies what it brought, and reports it.
func (cr *commandRig) cycle(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	if err := cr.a.exchangeHeartbeat(ctx); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	for cr.a.cmds.step(ctx) {
	}
	if err := cr.a.exchangeHeartbeat(ctx); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
}

func (cr *commandRig) queue(t *testing.T, in portalsim.CommandRequest) string {
	t.Helper()
	c, err := cr.admin.QueueCommand(context.Background(), cr.pbx, in)
	if err != nil {
		t.Fatal(err)
	}
	return c.ID
}

func (cr *commandRig) portalView(t *testing.T, id string) *portalsim.CommandView {
	t.Helper()
	c, err := cr.admin.Command(context.Background(), cr.pbx, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func sshOpen(ttl time.Duration, keys ...string) portalsim.CommandRequest {
	return portalsim.CommandRequest{Type: protocol.CommandSSHOpen,
		SSH: &protocol.SSHOpen{TTL: license.Seconds(ttl / time.Second), PublicKeys: keys}}
}

const testPubKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl support@example"

func TestCommandAppliedOnceAndReportedUntilAcked(t *testing.T) {
	cr := newCommandRig(t)
	id := cr.queue(t, sshOpen(time.Hour, testPubKey))
	cr.cycle(t)

	if opens, _ := cr.ssh.counts(); opens != 1 {
		t.Fatalf("sshd opened %d times, want 1", opens)
	}
	if len(cr.ssh.keys) != 1 || !strings.HasPrefix(cr.ssh.keys[0], "ssh-ed25519 AAAAC3") {
		t.Errorf("keys handed to sshd: %q", cr.ssh.keys)
	}
	v := cr.portalView(t, id)
	if v.State != "done" || v.Result == nil || v.Result.SSH == nil || !v.Result.SSH.Open || len(v.Result.SSH.HostKeys) == 0 {
		t.Fatalf("portal sees %+v, want done with the host keys", v)
	}
	// The result was acknowledged: no further heartbeat carries it.
	if res := cr.a.cmds.results(); len(res) != 0 {
		t.Errorf("results still to report after the ack: %+v", res)
	}
	st := cr.a.Status()
	if !st.SSH.Open || st.SSH.Port != 2222 || st.SSH.Until == nil {
		t.Errorf("status ssh = %+v", st.SSH)
	}
	if len(st.Commands) != 1 || st.Commands[0].ID != id || st.Commands[0].State != "done" {
		t.Errorf("status commands = %+v", st.Commands)
	} else if c := st.Commands[0]; c.ReceivedAt.IsZero() || c.FinishedAt == nil || c.FinishedAt.Before(c.ReceivedAt) || c.FinishedAt.After(st.Clock.Now) {
		t.Errorf("status command times: received %v finished %v (licence now %v)", c.ReceivedAt, c.FinishedAt, st.Clock.Now)
	}

	// Delivered again (a lost ack, a replay): never applied twice.
	signed := cr.signedOf(t, id)
	if _, err := cr.portal.QueueSigned(cr.pbx, signed); err != nil {
		t.Fatal(err)
	}
	cr.cycle(t)
	if opens, _ := cr.ssh.counts(); opens != 1 {
		t.Fatalf("after a replay of %s sshd opened %d times, want 1", id, opens)
	}
	// And after a restart, from the journal alone.
	cr.a = cr.start(t)
	if _, err := cr.portal.QueueSigned(cr.pbx, signed); err != nil {
		t.Fatal(err)
	}
	cr.cycle(t)
	if opens, _ := cr.ssh.counts(); opens != 1 {
		t.Fatalf("after a restart and a replay sshd opened %d times, want 1", opens)
	}
}

// signedOf fetches a command as the portal signed it, to replay it.
func (cr *commandRig) signedOf(t *testing.T, id string) string {
	t.Helper()
	signed, err := cr.portal.SignedCommand(cr.pbx, id)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

func TestCommandsRefused(t *testing.T) {
	cr := newCommandRig(t)
	past := time.Now().Add(-time.Minute)
	expired := cr.queue(t, portalsim.CommandRequest{Type: protocol.CommandSSHOpen, SSH: &protocol.SSHOpen{TTL: 60}, ExpiresAt: &past})
	foreign := cr.queue(t, portalsim.CommandRequest{Type: protocol.CommandSSHOpen, SSH: &protocol.SSHOpen{TTL: 60}, PBXID: "pbx-someone-else"})
	wrongPort := cr.queue(t, portalsim.CommandRequest{Type: protocol.CommandSSHOpen, SSH: &protocol.SSHOpen{TTL: 60, Port: 2200}})

	// A command signed by a key the agent does not trust, and one whose
	// signature was altered, delivered in a valid answer.
	stranger, err := license.GenerateSigner("stranger")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	forged, err := stranger.Sign(protocol.TypeCommand, protocol.Command{ID: "cmd-forged", PBXID: cr.a.Status().PBX.ID,
		Type: protocol.CommandSSHClose, IssuedAt: now, ExpiresAt: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cr.portal.QueueSigned(cr.pbx, forged); err != nil {
		t.Fatal(err)
	}
	good, err := cr.portal.Signer().Sign(protocol.TypeCommand, protocol.Command{ID: "cmd-altered", PBXID: cr.a.Status().PBX.ID,
		Type: protocol.CommandSSHOpen, IssuedAt: now, ExpiresAt: now.Add(time.Hour), SSH: &protocol.SSHOpen{TTL: 60}})
	if err != nil {
		t.Fatal(err)
	}
	// One character in the middle of the signature changed: it still
	// decodes, and no longer matches.
	i := strings.LastIndexByte(good, '.') + 20
	altered := good[:i] + string("AB"[min(1, strings.IndexByte("A", good[i])+1)]) + good[i+1:]
	if _, err := cr.portal.QueueSigned(cr.pbx, altered); err != nil {
		t.Fatal(err)
	}
	cr.cycle(t)

	if opens, closes := cr.ssh.counts(); opens != 0 || closes != 0 {
		t.Fatalf("a refused command ran: %d opens, %d closes", opens, closes)
	}
	for id, reason := range map[string]string{
		expired:       protocol.RefusedExpired,
		foreign:       protocol.RefusedForeign,
		wrongPort:     protocol.RefusedRejected,
		"cmd-forged":  protocol.RefusedBadSignature,
		"cmd-altered": protocol.RefusedBadSignature,
	} {
		v := cr.portalView(t, id)
		if v.Result == nil || v.Result.State != protocol.CommandRefused || v.Result.Reason != reason {
			t.Errorf("%s: portal sees %+v, want refused %s", id, v.Result, reason)
		}
	}
	events, err := cr.a.Audit(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	refusals := 0
	for _, e := range events {
		if e.Kind == auditCommandRefused || e.Kind == auditCommandResult && e.Fields["state"] == "refused" {
			refusals++
		}
	}
	if refusals < 4 {
		t.Errorf("audit log has %d refusals, want at least 4:\n%+v", refusals, events)
	}
}

func TestCommandInterruptedByCrashIsNotRunAgain(t *testing.T) {
	cr := newCommandRig(t)
	id := cr.queue(t, sshOpen(time.Hour))
	if err := cr.a.exchangeHeartbeat(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The crash: journaled as running, then the process died before the
	// result was saved. Simulated by marking it so on disk.
	c := cr.a.cmds
	c.mu.Lock()
	e := c.findLocked(id)
	if e == nil || e.State != protocol.CommandReceived {
		c.mu.Unlock()
		t.Fatalf("journal entry %+v, want received", e)
	}
	e.State = protocol.CommandRunning
	if err := c.store.Save(c.j); err != nil {
		t.Fatal(err)
	}
	c.mu.Unlock()

	cr.a = cr.start(t)
	cr.a.cmds.reconcile(context.Background())
	cr.cycle(t)
	if opens, _ := cr.ssh.counts(); opens != 0 {
		t.Fatalf("an interrupted command ran again: %d opens", opens)
	}
	v := cr.portalView(t, id)
	if v.Result == nil || v.Result.State != protocol.CommandFailed || !strings.Contains(v.Result.Message, "not run again") {
		t.Fatalf("portal sees %+v, want failed: interrupted", v.Result)
	}
}

func TestCommandReceivedBeforeCrashRunsAfterRestart(t *testing.T) {
	cr := newCommandRig(t)
	id := cr.queue(t, sshOpen(time.Hour))
	if err := cr.a.exchangeHeartbeat(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Journaled, never started: a restart runs it, once.
	cr.a = cr.start(t)
	cr.a.cmds.reconcile(context.Background())
	cr.cycle(t)
	if opens, _ := cr.ssh.counts(); opens != 1 {
		t.Fatalf("opens = %d, want 1", opens)
	}
	if v := cr.portalView(t, id); v.State != "done" {
		t.Fatalf("portal sees %s", v.State)
	}
}

// TestRefusedDocumentNeverHoldsACommandID delivers, before a genuine
// command cmd-x, a document claiming its id that is not a valid command of
// this PBX: one the portal signed as another type, one for another PBX, a
// malformed one, one signed by a stranger. Each is refused; the genuine
// cmd-x must still run, also after a restart that reloads the journal.
func TestRefusedDocumentNeverHoldsACommandID(t *testing.T) {
	stranger, err := license.GenerateSigner("stranger")
	if err != nil {
		t.Fatal(err)
	}
	type attack struct {
		signer func(*commandRig) *license.Signer
		typ    string
		edit   func(*protocol.Command)
		code   string
	}
	portal := func(cr *commandRig) *license.Signer { return cr.portal.Signer() }
	for name, at := range map[string]attack{
		"licence type":       {signer: portal, typ: license.TypeLicense, code: protocol.RefusedMalformed},
		"answer type":        {signer: portal, typ: protocol.TypeAnswer, code: protocol.RefusedMalformed},
		"key type":           {signer: portal, typ: license.TypeKey, code: protocol.RefusedMalformed},
		"another PBX":        {signer: portal, typ: protocol.TypeCommand, edit: func(c *protocol.Command) { c.PBXID = "pbx-someone-else" }, code: protocol.RefusedForeign},
		"malformed":          {signer: portal, typ: protocol.TypeCommand, edit: func(c *protocol.Command) { c.SSH.TTL = 18446744074 }, code: protocol.RefusedMalformed},
		"unknown type":       {signer: portal, typ: protocol.TypeCommand, edit: func(c *protocol.Command) { c.Type, c.SSH = "rm.rf", nil }, code: protocol.RefusedUnsupported},
		"bad signature":      {signer: func(*commandRig) *license.Signer { return stranger }, typ: protocol.TypeCommand, code: protocol.RefusedBadSignature},
		"wrong typ, restart": {signer: portal, typ: protocol.TypeAnswer, code: protocol.RefusedMalformed},
	} {
		t.Run(name, func(t *testing.T) {
			cr := newCommandRig(t)
			pbxID := cr.a.Status().PBX.ID
			now := cr.a.lic.clock.Now()
			genuine := protocol.Command{ID: "cmd-x", PBXID: pbxID, Type: protocol.CommandSSHOpen,
				IssuedAt: now, ExpiresAt: now.Add(time.Hour), SSH: &protocol.SSHOpen{TTL: 60}}
			bad := genuine
			bad.SSH = &protocol.SSHOpen{TTL: 60}
			if at.edit != nil {
				at.edit(&bad)
			}
			decoy, err := at.signer(cr).Sign(at.typ, bad)
			if err != nil {
				t.Fatal(err)
			}
			cr.a.cmds.take([]string{decoy}, nil, pbxID)
			res := cr.a.cmds.results()
			if len(res) != 1 || res[0].ID != "cmd-x" || res[0].Reason != at.code {
				t.Fatalf("the decoy's refusal: %+v, want cmd-x refused %s", res, at.code)
			}
			if strings.HasSuffix(name, "restart") {
				cr.a = cr.start(t) // the refusal is in the journal on disk
			}
			signed := cr.runGenuineOnce(t, genuine, pbxID)
			if res := cr.a.cmds.results(); len(res) != 1 || res[0].ID != "cmd-x" || res[0].State != protocol.CommandDone {
				t.Fatalf("results after the genuine cmd-x: %+v, want it done", res)
			}
			// Delivered again, it is never run twice.
			cr.a.cmds.take([]string{signed, decoy}, nil, pbxID)
			for cr.a.cmds.step(context.Background()) {
			}
			if opens, _ := cr.ssh.counts(); opens != 1 {
				t.Fatalf("cmd-x delivered again with its decoy opened SSH %d times, want 1", opens)
			}
		})
	}
}

// TestJournalFromBeforeReleasesBlockedIDs loads a journal an older agent
// wrote, where a wrong-typ document's refusal of cmd-x was not marked
// unverified: the genuine cmd-x must still run after the upgrade.
func TestJournalFromBeforeReleasesBlockedIDs(t *testing.T) {
	cr := newCommandRig(t)
	pbxID := cr.a.Status().PBX.ID
	now := cr.a.lic.clock.Now()
	genuine := protocol.Command{ID: "cmd-x", PBXID: pbxID, Type: protocol.CommandSSHOpen,
		IssuedAt: now, ExpiresAt: now.Add(time.Hour), SSH: &protocol.SSHOpen{TTL: 60}}
	decoy, err := cr.portal.Signer().Sign(protocol.TypeAnswer, genuine)
	if err != nil {
		t.Fatal(err)
	}
	cr.a.cmds.take([]string{decoy}, nil, pbxID)
	c := cr.a.cmds
	c.mu.Lock()
	e := c.findLocked("cmd-x")
	if e == nil || e.State != protocol.CommandRefused {
		c.mu.Unlock()
		t.Fatalf("the decoy was not journaled as refused: %+v", e)
	}
	e.Unverified = false // as the older agent saved it
	err = c.store.Save(c.j)
	c.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	cr.a = cr.start(t)
	cr.runGenuineOnce(t, genuine, pbxID)
}

// runGenuineOnce delivers the portal's signed cmd, applies what is due and
// checks it opened SSH exactly once; it returns the signed command.
func (cr *commandRig) runGenuineOnce(t *testing.T, cmd protocol.Command, pbxID string) string {
	t.Helper()
	signed, err := cr.portal.Signer().Sign(protocol.TypeCommand, cmd)
	if err != nil {
		t.Fatal(err)
	}
	cr.a.cmds.take([]string{signed}, nil, pbxID)
	for cr.a.cmds.step(context.Background()) {
	}
	if opens, _ := cr.ssh.counts(); opens != 1 {
		t.Fatalf("the genuine %s opened SSH %d times, want 1", cmd.ID, opens)
	}
	return signed
}

// TestSSHUntilOnTheLicenceClock puts the portal's clock 60 days ahead of
// the machine's: the access's end in the status and in the result the
// portal receives is the licence clock's, not the machine's (which showed
// it "63 days ago" to the portal).
func TestSSHUntilOnTheLicenceClock(t *testing.T) {
	ctx := context.Background()
	r := newRig(t)
	if _, err := r.admin.AdvanceClock(ctx, 60*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	key := r.createPBX(t, "acme.example", license.Counts{license.UCPremium: 5})
	cr := &commandRig{rig: r, ssh: &countingSSH{}, pbx: "acme.example"}
	cr.a = cr.start(t)
	if err := cr.a.Activate(ctx, key); err != nil {
		t.Fatal(err)
	}
	before := r.portal.Now()
	id := cr.queue(t, sshOpen(time.Hour, testPubKey))
	cr.cycle(t)
	after := r.portal.Now()

	st := cr.a.Status()
	if !st.SSH.Open || st.SSH.Until == nil {
		t.Fatalf("status ssh = %+v", st.SSH)
	}
	until := *st.SSH.Until
	if until.Before(before.Add(time.Hour).Truncate(time.Second)) || until.After(after.Add(time.Hour)) {
		t.Errorf("status until %v, want the portal's time plus the hour, between %v and %v (the machine says %v)",
			until, before.Add(time.Hour), after.Add(time.Hour), r.time.Wall())
	}
	v := cr.portalView(t, id)
	if v.Result == nil || v.Result.SSH == nil || !v.Result.SSH.Until.Equal(until) {
		t.Fatalf("the portal received %+v, want until %v", v.Result, until)
	}
	if want := until.UTC().Format(time.RFC3339); !strings.Contains(v.Result.Message, want) {
		t.Errorf("the portal's message %q does not say until %s", v.Result.Message, want)
	}
}
