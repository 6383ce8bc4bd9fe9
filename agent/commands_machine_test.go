package agent

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/clock/clocktest"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
	"github.com/pbx-agent/pbx-agent/pkg/state"
)

// probeExecutor is a command type for the machine's own tests: it records
// the journal as saved on disk at each step it is asked to take.
type probeExecutor struct {
	t      *testing.T
	dir    string
	wait   time.Duration // how long due holds it
	onDisk []protocol.CommandState
	polls  int
}

func (p *probeExecutor) saved(id string) protocol.CommandState {
	store, err := state.Open[journal](state.Options{Dir: p.dir, Name: journalFile, Version: journalSchema})
	if err != nil {
		p.t.Fatal(err)
	}
	j, _, err := store.Load()
	if err != nil {
		p.t.Fatal(err)
	}
	for _, e := range j.Entries {
		if e.ID == id {
			return e.State
		}
	}
	return ""
}

func (p *probeExecutor) check(context.Context, *protocol.Command) *protocol.CommandResult { return nil }

func (p *probeExecutor) due(time.Time, *protocol.Command) (time.Duration, *protocol.CommandResult) {
	w := p.wait
	p.wait = 0
	return w, nil
}

func (p *probeExecutor) start(_ context.Context, id string, _ *protocol.Command) *protocol.CommandResult {
	p.onDisk = append(p.onDisk, p.saved(id))
	return nil // runs on
}

func (p *probeExecutor) poll(_ context.Context, id string, _ *protocol.Command) (*protocol.CommandResult, time.Duration) {
	p.polls++
	return &protocol.CommandResult{State: protocol.CommandDone, Message: "probed"}, 0
}

func (p *probeExecutor) reconcile(context.Context, string, *protocol.Command) *protocol.CommandResult {
	return nil
}

// TestCommandMachineSavesEachTransitionBeforeActing drives one command of a
// test type through waiting, running and done: the executor, asked to
// start, finds the journal on disk already "running", so a crash inside
// start leaves a command that is reconciled, never run twice.
func TestCommandMachineSavesEachTransitionBeforeActing(t *testing.T) {
	dir := t.TempDir()
	clk := clocktest.NewFake(time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC), time.Hour)
	reported := 0
	env := commandEnv{log: slog.New(slog.DiscardHandler), clock: clk, now: clk.Wall,
		audit: func(time.Time, string, map[string]any) {}, report: func() { reported++ }}
	probe := &probeExecutor{t: t, dir: dir, wait: time.Minute}
	c, err := openCommands(dir, env, []typedExecutor{{"test.probe", probe}})
	if err != nil {
		t.Fatal(err)
	}
	now := clk.Wall()
	cmd := &protocol.Command{ID: "cmd-1", Type: "test.probe", IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
	c.mu.Lock()
	c.j.Entries = append(c.j.Entries, &journalEntry{ID: cmd.ID, Type: cmd.Type, Command: cmd, State: protocol.CommandReceived, ExpiresAt: cmd.ExpiresAt})
	c.mu.Unlock()

	if !c.step(context.Background()) {
		t.Fatal("the received command was not taken")
	}
	if got := probe.saved("cmd-1"); got != protocol.CommandWaiting {
		t.Fatalf("on disk after a due that holds it: %q, want waiting", got)
	}
	if c.step(context.Background()) {
		t.Fatal("a waiting command was taken again as received")
	}
	clk.Advance(time.Minute)
	if d := c.follow(context.Background()); d <= 0 {
		t.Fatalf("follow after the start: look again in %v, want > 0 while it runs on", d)
	}
	if len(probe.onDisk) != 1 || probe.onDisk[0] != protocol.CommandRunning {
		t.Fatalf("start saw %v on disk, want [running]", probe.onDisk)
	}
	if res := c.results(); len(res) != 0 {
		t.Fatalf("results before the end: %+v", res)
	}
	c.follow(context.Background()) // a wake-up at once: too soon to look
	if probe.polls != 0 {
		t.Fatalf("polled %d times right after the start, before what runs it could show itself", probe.polls)
	}
	clk.Advance(firstPoll) // what runs it is first looked at after that
	c.follow(context.Background())
	res := c.results()
	if len(res) != 1 || res[0].State != protocol.CommandDone || res[0].Type != "test.probe" {
		t.Fatalf("results %+v, want cmd-1 done", res)
	}
	if got := probe.saved("cmd-1"); got != protocol.CommandDone {
		t.Fatalf("on disk at the end: %q, want done", got)
	}
	if reported != 1 {
		t.Fatalf("the result was reported %d times, want once", reported)
	}
}

// TestEveryCommandTypeHasAnExecutor: a type the protocol verifies but no
// executor runs would be journaled and never answered; the metrics label
// set comes from the same table.
func TestEveryCommandTypeHasAnExecutor(t *testing.T) {
	table := executorTable(nil, nil)
	for _, typ := range []protocol.CommandType{protocol.CommandSSHOpen, protocol.CommandSSHClose, protocol.CommandWMSUpgrade} {
		found := false
		for _, x := range table {
			found = found || x.typ == typ
		}
		if !found {
			t.Errorf("no executor for %s", typ)
		}
	}
	if got := commandTypes(); len(got) != len(table) {
		t.Errorf("metrics types %v, table of %d", got, len(table))
	}
}
