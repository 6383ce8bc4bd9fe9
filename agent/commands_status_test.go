package agent

import (
	"log/slog"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/clock/clocktest"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// TestCommandStatusCurrentPBXOnly fills a journal the way a deletion and a
// new activation leave it: commands of the deleted PBX, refusals with no
// PBX before and after the activation, and the new PBX's commands. The
// status shows only the new PBX's, with the journal's licence-clock times.
func TestCommandStatusCurrentPBXOnly(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	clk := clocktest.NewFake(t0, time.Hour)
	env := commandEnv{log: slog.New(slog.DiscardHandler), clock: clk, now: clk.Wall,
		audit: func(time.Time, string, map[string]any) {}, report: func() {}}
	c, err := openCommands(dir, env, nil)
	if err != nil {
		t.Fatal(err)
	}
	activated := t0.Add(48 * time.Hour)
	cmdOf := func(id, pbx string, at time.Time, state protocol.CommandState) *journalEntry {
		e := &journalEntry{ID: id, Type: protocol.CommandSSHOpen, State: state, ReceivedAt: at,
			Command: &protocol.Command{ID: id, PBXID: pbx, Type: protocol.CommandSSHOpen}}
		if state.Final() {
			e.Result = &protocol.CommandResult{ID: id, State: state, At: at.Add(90 * time.Second)}
		}
		return e
	}
	refusal := func(id string, at time.Time) *journalEntry {
		return &journalEntry{ID: id, State: protocol.CommandRefused, ReceivedAt: at, Unverified: true,
			Result: &protocol.CommandResult{ID: id, State: protocol.CommandRefused, Reason: protocol.RefusedMalformed, Message: "bad", At: at}}
	}
	c.j.Entries = []*journalEntry{
		cmdOf("old-1", "pbx-old", t0, protocol.CommandDone),
		refusal("noise-before", t0.Add(time.Hour)),
		cmdOf("old-2", "pbx-old", t0.Add(2*time.Hour), protocol.CommandFailed),
		cmdOf("new-1", "pbx-new", activated.Add(time.Hour), protocol.CommandDone),
		refusal("noise-after", activated.Add(2*time.Hour)),
		cmdOf("new-2", "pbx-new", activated.Add(3*time.Hour), protocol.CommandWaiting),
	}

	got := c.status("pbx-new", activated)
	var ids []string
	for _, s := range got {
		ids = append(ids, s.ID)
	}
	if want := []string{"new-2", "noise-after", "new-1"}; !slices.Equal(ids, want) {
		t.Fatalf("status lists %v, want %v (newest first, the current PBX's only)", ids, want)
	}
	if w := got[0]; !w.ReceivedAt.Equal(activated.Add(3*time.Hour)) || w.FinishedAt != nil {
		t.Errorf("waiting command: received %v finished %v, want received at its journal time and no finish", w.ReceivedAt, w.FinishedAt)
	}
	if d := got[2]; d.FinishedAt == nil || !d.FinishedAt.Equal(activated.Add(time.Hour+90*time.Second)) {
		t.Errorf("done command finished %v, want its result's time", d.FinishedAt)
	}

	// A state written before activation times were kept: only verified
	// commands of the PBX, never a refusal that names none.
	if got := c.status("pbx-new", time.Time{}); len(got) != 2 {
		t.Errorf("without an activation time: %d commands, want the 2 verified ones", len(got))
	}
	// Not activated: nothing, not even the previous PBX's.
	if got := c.status("", time.Time{}); len(got) != 0 {
		t.Errorf("with no PBX: %+v, want none", got)
	}
	// Many commands: the status stays bounded to the most recent ones.
	for i := range statusCommands + 5 {
		c.j.Entries = append(c.j.Entries, cmdOf("bulk-"+strconv.Itoa(i), "pbx-new", activated.Add(time.Duration(10+i)*time.Hour), protocol.CommandDone))
	}
	got = c.status("pbx-new", activated)
	if len(got) != statusCommands || got[0].ID != "bulk-"+strconv.Itoa(statusCommands+4) {
		t.Errorf("with many: %d listed, first %q; want %d, newest first", len(got), got[0].ID, statusCommands)
	}
}
