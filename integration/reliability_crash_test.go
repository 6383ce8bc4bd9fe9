package integration

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// TestCrashWhileTakingLicences kills the agent with SIGKILL at random
// moments while the portal issues a new licence revision every few tens of
// milliseconds and the agent takes and saves each one. After every kill the
// agent must start on its state (never "cannot load"), hold a licence that
// verifies, and hold a revision no older than the newest its status showed
// before the kill. PBX_CRASH_KILLS sets the count (20; 300 under soak).
func TestCrashWhileTakingLicences(t *testing.T) {
	kills := sized(t, "PBX_CRASH_KILLS", 20, 300)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 11))
	t.Logf("seed %d, %d kills", seed, kills)

	p := startPortal(t, t.TempDir(), freeAddr(t))
	key := p.admin("pbx", "create", "--name", "crash.example", "--users", "uc-business=1")
	a := newAppliance(t, "crashing", p, "100ms")
	a.startQuick()
	if r := a.cli(key, "activate"); r.code != 0 {
		t.Fatalf("activate: exit %d: %s", r.code, r.stderr)
	}

	// The portal raises the count, one revision at a time, all along.
	ctx, cancel := context.WithCancel(context.Background())
	raiser := p.raiseLicences(ctx, "crash.example", 25*time.Millisecond)
	defer func() { cancel(); raiser.Wait() }()

	var ahead, equal, recovered int
	var lastHeld int64
	for i := range kills {
		acked := watchRevision(t, a, rng)
		a.kill()
		a.startQuick()
		recovered += strings.Count(a.proc.logs(), "state recovered from the previous good copy")
		s, err := a.httpStatus()
		if err != nil {
			t.Fatalf("kill %d: status after the restart: %v", i, err)
		}
		if s.License == nil || strings.Contains(s.Heartbeat.LastError, "no longer verifies") {
			t.Fatalf("kill %d: after the restart the agent holds no valid licence: state %s, error %q", i, s.State, s.Heartbeat.LastError)
		}
		held := s.License.Revision
		switch {
		case held < acked:
			t.Fatalf("kill %d: revision %d held after the restart, but the status showed %d before the kill", i, held, acked)
		case held < lastHeld:
			t.Fatalf("kill %d: revision went back from %d to %d across a restart", i, lastHeld, held)
		case held == acked:
			equal++
		default:
			ahead++
		}
		if want := int(held); s.License.Profiles["uc-business"].Licensed != want {
			t.Fatalf("kill %d: revision %d with %d uc-business licences; the portal issued revision n with n", i, held, s.License.Profiles["uc-business"].Licensed)
		}
		lastHeld = held
	}
	cancel()
	issued := raiser.Wait()
	t.Logf("%d kills: every restart loaded its state; %d held the last revision shown before the kill, %d a newer one saved in flight; "+
		"%d restarts used the previous good copy; the portal issued %d revisions, the agent held %d at the end",
		kills, equal, ahead, recovered, issued, lastHeld)

	// The audit log never records a revision going backwards. It may record
	// one twice: it is written before the state is saved, so a kill in
	// between leaves an acceptance the restarted agent takes again.
	var prev, again int64
	for _, e := range a.auditLog().Events {
		if e.Kind != "licence.accepted" {
			continue
		}
		rev := int64(e.Fields["revision"].(float64))
		switch {
		case rev < prev:
			t.Errorf("the audit log accepts revision %d after %d", rev, prev)
		case rev == prev:
			again++
		}
		prev = rev
	}
	t.Logf("audit log: %d revisions recorded as accepted twice (a kill between the audit entry and the save)", again)
}

// watchRevision polls the agent's status until a random moment, then
// returns the newest licence revision it showed. The caller kills the agent
// right after: anything the status showed was the agent's word that it
// held that revision.
func watchRevision(t *testing.T, a *appliance, rng *rand.Rand) int64 {
	t.Helper()
	deadline := time.Now().Add(time.Duration(20+rng.IntN(400)) * time.Millisecond)
	var acked int64
	for time.Now().Before(deadline) {
		s, err := a.httpStatus()
		if err != nil {
			t.Fatalf("status before the kill: %v", err)
		}
		if s.License != nil {
			acked = max(acked, s.License.Revision)
		}
	}
	return acked
}
