package main

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/agent"
	"github.com/pbx-agent/pbx-agent/internal/portalsim"
	"github.com/pbx-agent/pbx-agent/pkg/clock"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// machineClock is the appliance's clocks, moved by the test; the daemon's
// loops read it concurrently.
type machineClock struct {
	mu      sync.Mutex
	wall    time.Time
	elapsed time.Duration
}

func (m *machineClock) Wall() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.wall
}

func (m *machineClock) Elapsed() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.elapsed
}

func (m *machineClock) NewTimer(d time.Duration) clock.Timer { return clock.WithTimers(m).NewTimer(d) }
func (m *machineClock) NewTicker(d time.Duration) clock.Ticker {
	return clock.WithTimers(m).NewTicker(d)
}

func (m *machineClock) run(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.wall, m.elapsed = m.wall.Add(d), m.elapsed+d
}

// TestStatusInEveryState runs the real daemon in process, with a machine
// clock the test moves, against the reference portal, and reads
// `pbx-agent status` in every state: each must say what happens next and
// when. With -v it prints each, as an admin sees it.
func TestStatusInEveryState(t *testing.T) {
	ctx := context.Background()
	p, err := portalsim.New(portalsim.Config{DataDir: filepath.Join(t.TempDir(), "portal")})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(func() { srv.Close(); p.Close() })
	admin := portalsim.NewClient(srv.URL)
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(admin.SetClock(ctx, time.Date(2027, 3, 10, 10, 0, 0, 0, time.UTC)))
	created, err := admin.CreatePBX(ctx, portalsim.CreatePBXRequest{Name: "acme.example", Model: "WPBX-VM", Term: "monthly",
		Profiles: license.Counts{license.UCPremium: 10, license.PBXBasic: 3}})
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "root/etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "root/etc/machine-id"), []byte("4c4c4544003510578051b4c04f4e4d32\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := agent.DefaultConfig()
	cfg.Portal.URL, cfg.Portal.Keyring = srv.URL, p.KeyringDir()
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.Listen.Socket, cfg.Listen.HTTP = filepath.Join(dir, "run/agent.sock"), ""
	cfg.Identity.Model = "WPBX-VM"
	cfg.Heartbeat.Interval = time.Hour // the test's refreshes are the only heartbeats
	t.Setenv("PBX_AGENT_PORTAL_KEYRING", p.KeyringDir())
	t.Setenv("PBX_AGENT_IDENTITY_MODEL", "WPBX-VM")
	machine := &machineClock{wall: time.Now().UTC(), elapsed: time.Hour}
	a, err := agent.New(cfg, slog.New(slog.DiscardHandler), agent.Options{Time: machine, Root: filepath.Join(dir, "root")})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	sock := cfg.Listen.Socket
	deadline := time.Now().Add(10 * time.Second)
	for run(t, "", "--socket", sock, "status").code == exitError { // any other code is a state's
		if time.Now().After(deadline) {
			t.Fatal("the daemon did not answer within 10s")
		}
		tick := time.NewTimer(20 * time.Millisecond)
		<-tick.C
	}

	cli := func(stdin string, args ...string) result {
		t.Helper()
		return run(t, stdin, append([]string{"--socket", sock}, args...)...)
	}
	// The exit codes of the manual's table, state by state.
	exits := map[string]int{"active": 0, "offline": 0, "unactivated": 10, "lapsed": 11, "stopping": 12, "stopped": 13, "deleted": 14}
	status := func(name, state string, want ...string) {
		t.Helper()
		r := cli("", "status")
		if r.code != exits[state] || r.stderr != "" {
			t.Fatalf("%s: status exit %d, want %d for %s: %s", name, r.code, exits[state], state, r.stderr)
		}
		if j := cli("", "status", "--json"); j.code != exits[state] {
			t.Errorf("%s: status --json exit %d, want %d for %s", name, j.code, exits[state], state)
		}
		t.Logf("pbx-agent status, %s:\n%s", name, r.stdout)
		if !strings.HasPrefix(r.stdout, "State               "+state+": ") {
			t.Errorf("%s: status does not open with the state %s:\n%s", name, state, r.stdout)
		}
		for _, w := range want {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("%s: status lacks %q:\n%s", name, w, r.stdout)
			}
		}
	}
	refresh := func(wantCode int) {
		t.Helper()
		if r := cli("", "refresh"); r.code != wantCode {
			t.Fatalf("refresh: exit %d, want %d: %s%s", r.code, wantCode, r.stdout, r.stderr)
		}
	}

	status("unactivated", "unactivated", "no PBX key activated yet", "pbx-agent activate", "Licence             none")
	if r := cli(created.Key, "activate"); r.code != 0 {
		t.Fatalf("activate: exit %d: %s", r.code, r.stderr)
	}
	status("active", "active", "licensed by the portal", "Offline grace ends  2027-04-09T10:00:",
		"Renews              2027-03-31 (in 21 days), renewed and invoiced that day", "Changes until       2027-03-29 23:59 UTC (in 20 days)")

	must(admin.PatchFaults(ctx, map[string]any{"error_rate": 1}))
	machine.run(time.Hour)
	refresh(exitUnreachable)
	// No users database here: the headline says no one new gets in.
	status("offline for an hour", "offline", "new users refused in 30 days, telephony stops in 44 days; users not counted, so no new users are admitted\n",
		"Lapse grace ends    2027-04-23T10:00:")
	machine.run(31 * 24 * time.Hour)
	refresh(exitUnreachable)
	status("offline for 31 days", "lapsed", "no new users; telephony stops in 13 days\n", "Offline grace ended ")
	machine.run(14 * 24 * time.Hour)
	refresh(exitUnreachable)
	status("offline for 45 days", "stopped", "telephony stopped", "as soon as the portal is reached", "Lapse grace ended   2027-04-23T10:00:")
	must(admin.PatchFaults(ctx, map[string]any{"error_rate": 0}))
	refresh(0)
	status("the portal back", "active")

	must(admin.Suspend(ctx, "acme.example"))
	refresh(0)
	status("suspended", "lapsed", "no new users; telephony stops in 14 days\n", "suspended this licence")
	must(admin.Resume(ctx, "acme.example"))
	refresh(0)

	must(admin.ChangeLicenses(ctx, "acme.example", portalsim.LicenseChange{Profiles: license.Counts{license.UCPremium: 0, license.PBXBasic: 0}}))
	refresh(0)
	status("every licence at zero", "stopping", "no new users; telephony stops in 5 days, PBX deleted in 14 days; to keep the PBX, add a licence back on the portal and contact your Area Manager\n",
		"Telephony stops     2027-03-15T00:00:00Z", "PBX deleted         2027-03-24T00:00:00Z")
	must(admin.AdvanceClock(ctx, 6*24*time.Hour))
	refresh(0)
	status("six days later", "stopped", "telephony stopped; PBX deleted in 8 days; to keep the PBX, add a licence back on the portal and contact your Area Manager\n", "Telephony stopped   2027-03-15T00:00:00Z")
	must(admin.AdvanceClock(ctx, 9*24*time.Hour))
	refresh(0)
	// Deleted at the signed delete_at, though the agent learns it later.
	status("fifteen days later", "deleted", "PBX deleted 34 hours ago; to recover it, add a licence back on the portal and contact your Area Manager",
		"a new PBX key is needed", "PBX                 acme.example", "Deleted             2027-03-24 00:00 UTC (34 hours ago)")

	r := cli("", "audit")
	t.Logf("pbx-agent audit:\n%s", r.stdout)
	for _, want := range []string{"activated", "active → offline", "lapsed → stopped", "stopped → active", "active → lapsed: the portal suspended the licence",
		"active → stopping: every licence at zero", "stopping → stopped", "stopped → deleted", "telephony", "action=stop"} {
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("audit lacks %q (exit %d):\n%s%s", want, r.code, r.stdout, r.stderr)
		}
	}
}
