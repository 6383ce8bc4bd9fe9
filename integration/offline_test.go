package integration

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// airGappedAppliance is an appliance with no portal.url at all: it never
// reaches the portal, and every exchange is a file carried by hand.
func airGappedAppliance(t *testing.T, name string, p *portal) *appliance {
	t.Helper()
	a := newAppliance(t, name, p, "1s")
	b, err := os.ReadFile(a.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(b), "  url: "+p.url()+"\n", "", 1)
	if cfg == string(b) {
		t.Fatal("the appliance's configuration names no portal.url to take out")
	}
	if err := os.WriteFile(a.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return a
}

// carry runs a portal verb with a file the admin brought on its stdin and
// returns the file to bring back.
func (p *portal) carry(t *testing.T, file string, args ...string) result {
	t.Helper()
	return run(t, file, "pbx-portal-sim", append([]string{"--portal", p.url(), "pbx"}, args...)...)
}

// exchange has the appliance write a file (activate --offline, report
// --offline), carries it to the portal verb, and installs the answer.
// It returns the licence file installed.
func exchange(t *testing.T, a *appliance, p *portal, stdin string, write []string, verb, pbx string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "to-portal.txt")
	if r := a.cli(stdin, append(write, "--out", out)...); r.code != 0 {
		t.Fatalf("%v: exit %d: %s", write, r.code, r.stderr)
	}
	carried, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	r := p.carry(t, string(carried), verb, pbx)
	if r.code != 0 {
		t.Fatalf("pbx-portal-sim pbx %s: exit %d: %s", verb, r.code, r.stderr)
	}
	install(t, a, r.stdout, 0, "")
	return r.stdout
}

// install has the appliance install a licence file and checks the exit
// code and, for a refusal, the reason.
func install(t *testing.T, a *appliance, file string, code int, reason string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "licence.txt")
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	r := a.cli("", "activate", "--licence-file", path)
	if r.code != code || !strings.Contains(r.stderr, reason) {
		t.Fatalf("activate --licence-file: exit %d, stderr %q; want exit %d saying %q", r.code, r.stderr, code, reason)
	}
}

// safeDay is a time of the portal's clock mid-month, so that no portal
// rule about the last day of a month plays a part.
func safeDay() time.Time {
	now := time.Now().UTC()
	return time.Date(now.Year(), now.Month()+1, 10, 10, 0, 0, 0, time.UTC)
}

// TestAirGappedByFiles: an appliance with no portal at all is activated,
// renewed, decreased to zero and counted down by files alone; a replayed
// older file, a file for another appliance and a report with a link the
// portal never issued are refused, each with a precise error.
func TestAirGappedByFiles(t *testing.T) {
	data, addr := t.TempDir(), freeAddr(t)
	p := startPortal(t, data, addr)
	p.admin("clock", "set", safeDay().Format(time.RFC3339))
	key := p.admin("pbx", "create", "--name", "air.example", "--model", "WPBX-VM", "--term", "monthly", "--users", "uc-premium=10")
	a := airGappedAppliance(t, "air", p)
	a.start()

	first := exchange(t, a, p, key, []string{"activate", "--offline"}, "offline-activate", "air.example")
	s := a.status()
	if s.State != "active" || s.Mode != "air-gapped" || s.Offline == nil || s.Offline.Horizon == nil {
		t.Fatalf("after activation by file: state %s, mode %q, offline %+v", s.State, s.Mode, s.Offline)
	}
	firstHorizon := *s.Offline.Horizon
	if r := a.cli("", "status"); !strings.Contains(r.stdout, "Air-gapped") || !strings.Contains(r.stdout, "Carry to the portal") {
		t.Errorf("pbx-agent status does not say the PBX is air-gapped:\n%s", r.stdout)
	}

	// A renewal by file ten days on moves the horizon.
	p.admin("clock", "advance", "10d")
	renewed := exchange(t, a, p, "", []string{"report", "--offline"}, "offline-renew", "air.example")
	if s := a.status(); !s.Offline.Horizon.After(firstHorizon) {
		t.Fatalf("the renewal kept the horizon at %v", s.Offline.Horizon)
	}

	// A replayed older licence file is refused.
	install(t, a, first, 2, "this file is older than the one installed")
	install(t, a, renewed, 2, "this licence file is already installed")

	// A file for another appliance is refused.
	otherKey := p.admin("pbx", "create", "--name", "other.example", "--model", "WPBX-VM", "--term", "monthly", "--users", "uc-premium=1")
	b := airGappedAppliance(t, "other", p)
	b.start()
	foreign := exchange(t, b, p, otherKey, []string{"activate", "--offline"}, "offline-activate", "other.example")
	install(t, a, foreign, 2, "this licence file is for appliance dev-")

	// Every licence to zero on the portal: the next file starts the
	// countdown on the appliance.
	p.admin("pbx", "licenses", "air.example", "uc-premium=0")
	exchange(t, a, p, "", []string{"report", "--offline"}, "offline-renew", "air.example")
	s = a.status()
	if s.State != "stopping" || s.Deadlines.StopAt == nil || s.Deadlines.DeleteAt == nil {
		t.Fatalf("after a file with every licence at zero: state %s, deadlines %+v", s.State, s.Deadlines)
	}

	// The portal loses its last file (its data restored from a backup):
	// the appliance's next report links to a file it never issued.
	p.proc.stop(t)
	backup := filepath.Join(t.TempDir(), "portal-backup")
	if out, err := exec.Command("cp", "-a", data, backup).CombinedOutput(); err != nil {
		t.Fatalf("backing up the portal: %v: %s", err, out)
	}
	p = startPortal(t, data, addr)
	p.admin("pbx", "licenses", "air.example", "uc-premium=5")
	exchange(t, a, p, "", []string{"report", "--offline"}, "offline-renew", "air.example")
	if s := a.status(); s.State != "active" {
		t.Fatalf("a licence added back by file: state %s", s.State)
	}
	p.proc.stop(t)
	if err := os.RemoveAll(data); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", backup, data).CombinedOutput(); err != nil {
		t.Fatalf("restoring the portal: %v: %s", err, out)
	}
	p = startPortal(t, data, addr)
	out := filepath.Join(t.TempDir(), "report.txt")
	if r := a.cli("", "report", "--offline", "--out", out); r.code != 0 {
		t.Fatalf("report --offline: exit %d: %s", r.code, r.stderr)
	}
	rep, _ := os.ReadFile(out)
	if r := p.carry(t, string(rep), "offline-renew", "air.example"); r.code != 2 || !strings.Contains(r.stderr, "which the portal never issued") {
		t.Fatalf("a report with a missing link: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestAirGappedSurvivesSIGKILL: a report written just before a SIGKILL is
// written again, the same, after the restart, so the portal answers it
// with the same file and the chain never forks; a licence file installed
// just before a SIGKILL is held after it.
func TestAirGappedSurvivesSIGKILL(t *testing.T) {
	p := startPortal(t, t.TempDir(), freeAddr(t))
	key := p.admin("pbx", "create", "--name", "kill.example", "--model", "WPBX-VM", "--term", "monthly", "--users", "uc-premium=10")
	a := airGappedAppliance(t, "kill", p)
	a.start()
	exchange(t, a, p, key, []string{"activate", "--offline"}, "offline-activate", "kill.example")

	r := a.cli("", "report", "--offline")
	a.kill()
	a.start()
	again := a.cli("", "report", "--offline")
	if r.code != 0 || again.code != 0 || again.stdout != r.stdout || !strings.Contains(again.stderr, "the same report as before") {
		t.Fatalf("the report after a SIGKILL differs: exit %d/%d, same %v, stderr %q", r.code, again.code, again.stdout == r.stdout, again.stderr)
	}
	file := p.carry(t, again.stdout, "offline-renew", "kill.example")
	if file.code != 0 {
		t.Fatalf("offline-renew: %s", file.stderr)
	}
	install(t, a, file.stdout, 0, "")
	horizon := *a.status().Offline.Horizon
	a.kill()
	a.start()
	if s := a.status(); s.Mode != "air-gapped" || !s.Offline.Horizon.Equal(horizon) || s.Offline.Outstanding != "" {
		t.Fatalf("after a SIGKILL: mode %q, offline %+v; want the file installed before it", s.Mode, s.Offline)
	}
	var shown struct {
		ChainForks int `json:"chain_forks"`
		Revision   int `json:"revision"`
	}
	if err := json.Unmarshal([]byte(p.admin("pbx", "show", "kill.example", "--json")), &shown); err != nil || shown.Revision == 0 {
		t.Fatalf("pbx show --json: %+v, %v", shown, err)
	}
	if shown.ChainForks != 0 {
		t.Errorf("the chain forked %d times", shown.ChainForks)
	}
}

// cliAsync starts a pbx-agent verb of the appliance without waiting for it.
func (a *appliance) cliAsync(stdin string, args ...string) (wait func() result) {
	a.t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "pbx-agent"), append([]string{"--config", a.config}, args...)...)
	var out, errb strings.Builder
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &out, &errb
	if err := cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
	return func() result {
		err := cmd.Wait()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return result{code, out.String(), errb.String()}
	}
}

// killSoon kills the appliance's daemon after a random moment of up to
// 30 ms, while a verb may be in flight, and returns once it is gone.
func (a *appliance) killSoon(rng *rand.Rand) {
	a.t.Helper()
	done := make(chan struct{})
	time.AfterFunc(time.Duration(rng.IntN(30_000))*time.Microsecond, func() {
		a.proc.cmd.Process.Kill()
		close(done)
	})
	<-done
	<-a.proc.done
}

// TestAirGappedCrashDuringExchanges kills the daemon at random moments
// while it writes a usage report and while it installs a licence file.
// A report shown is never lost (the next one is the same), a file whose
// install was acknowledged is held after the restart, one whose install
// was cut short installs again, and the portal's chain never forks.
// PBX_OFFLINE_KILLS sets the rounds (8; 100 under soak).
func TestAirGappedCrashDuringExchanges(t *testing.T) {
	rounds := sized(t, "PBX_OFFLINE_KILLS", 8, 100)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 22))
	t.Logf("seed %d, %d rounds", seed, rounds)

	p := startPortal(t, t.TempDir(), freeAddr(t))
	key := p.admin("pbx", "create", "--name", "crash.example", "--model", "WPBX-VM", "--term", "monthly", "--users", "uc-premium=10")
	a := airGappedAppliance(t, "crash", p)
	a.startQuick()
	exchange(t, a, p, key, []string{"activate", "--offline"}, "offline-activate", "crash.example")

	var reportsLost, installsLost int
	for i := range rounds {
		p.admin("clock", "advance", "1h") // each file's horizon differs

		wait := a.cliAsync("", "report", "--offline")
		a.killSoon(rng)
		first := wait()
		a.startQuick()
		rep := a.cli("", "report", "--offline")
		if rep.code != 0 {
			t.Fatalf("round %d: report --offline after the restart: exit %d: %s", i, rep.code, rep.stderr)
		}
		switch {
		case first.code == 0 && rep.stdout != first.stdout:
			t.Fatalf("round %d: the report shown before the kill was lost: another was written after it", i)
		case first.code != 0:
			reportsLost++
		}

		file := p.carry(t, rep.stdout, "offline-renew", "crash.example")
		if file.code != 0 {
			t.Fatalf("round %d: offline-renew: %s", i, file.stderr)
		}
		path := filepath.Join(t.TempDir(), "licence.txt")
		if err := os.WriteFile(path, []byte(file.stdout), 0o600); err != nil {
			t.Fatal(err)
		}
		wait = a.cliAsync("", "activate", "--licence-file", path)
		a.killSoon(rng)
		installed := wait()
		a.startQuick()
		s, err := a.httpStatus()
		if err != nil {
			t.Fatalf("round %d: status after the restart: %v", i, err)
		}
		switch {
		case s.Offline == nil || s.Mode != "air-gapped":
			t.Fatalf("round %d: after the restart the PBX is not air-gapped: %+v", i, s.Offline)
		case s.Offline.Outstanding == "report" && installed.code == 0:
			t.Fatalf("round %d: the install was acknowledged, but the restarted daemon still waits for a file", i)
		case s.Offline.Outstanding == "report":
			installsLost++
			install(t, a, file.stdout, 0, "")
		case s.Offline.Outstanding != "":
			t.Fatalf("round %d: outstanding %q after the restart", i, s.Offline.Outstanding)
		}
	}
	var shown struct {
		ChainForks int `json:"chain_forks"`
	}
	if err := json.Unmarshal([]byte(p.admin("pbx", "show", "crash.example", "--json")), &shown); err != nil {
		t.Fatal(err)
	}
	if shown.ChainForks != 0 {
		t.Fatalf("the chain forked %d times", shown.ChainForks)
	}
	t.Logf("%d rounds: %d reports and %d installs cut short by the kill, none lost once shown, no fork", rounds, reportsLost, installsLost)
}
