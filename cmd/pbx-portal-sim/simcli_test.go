package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/pbx-agent/pbx-agent/internal/portalsim"
	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// cliOn returns a runner of the CLI against the simulator at url.
func cliOn(t *testing.T, url string) func(args ...string) (int, string, string) {
	return func(args ...string) (int, string, string) {
		t.Helper()
		return run(t, nil, append([]string{"--portal", url}, args...)...)
	}
}

func TestCLILicenceTerms(t *testing.T) {
	url, _ := startServe(t)
	cli := cliOn(t, url)
	if code, _, errs := cli("pbx", "create", "--name", "acme.example", "--users", "uc-premium=10"); code != 0 {
		t.Fatalf("create: %s", errs)
	}
	code, out, errs := cli("pbx", "licenses", "acme.example", "--higher-covers-lower", "--soft-overage", "1.1:3d",
		"--offline-grace", "10d", "--heartbeat-tolerance", "5m", "--lapse-grace", "7d")
	want := "acme.example: revision 2: uc-premium=10; higher covers lower, soft overage ×1.1 until 2026-11-30T12:00:00Z, " +
		"offline grace 10d, heartbeat tolerance 5m0s, lapse grace 7d\n"
	if code != 0 || errs != "" || out != want {
		t.Fatalf("setting every term: exit %d, stdout %q, stderr %q; want %q", code, out, errs, want)
	}
	var p portalsim.PBX
	_, out, _ = cli("pbx", "show", "acme.example", "--json")
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatal(err)
	}
	if !p.HigherCoversLower || p.SoftOverage == nil || p.SoftOverage.Factor != 1.1 || p.OfflineGrace != 864000 ||
		p.HeartbeatTolerance != 300 || p.LapseGrace != 604800 {
		t.Errorf("pbx show --json = %+v", p)
	}
	if _, out, _ := cli("pbx", "show", "acme.example"); !strings.Contains(out, "terms:") || !strings.Contains(out, "soft overage ×1.1") {
		t.Errorf("pbx show lacks the terms:\n%s", out)
	}

	// Counts and a term together, the name last; then withdrawals.
	if code, out, errs := cli("pbx", "licenses", "uc-premium=12", "--soft-overage", "1.2:2027-01-01T00:00:00Z", "acme.example"); code == 0 {
		t.Errorf("counts before the name were taken: %q %q", out, errs)
	}
	code, out, errs = cli("pbx", "licenses", "acme.example", "--higher-covers-lower=false", "--soft-overage", "none",
		"--offline-grace", "default", "--heartbeat-tolerance", "default", "--lapse-grace", "default", "uc-premium=12")
	if code != 0 || out != "acme.example: revision 3: uc-premium=12\n" {
		t.Errorf("withdrawing every term: exit %d, stdout %q, stderr %q", code, out, errs)
	}

	for _, args := range [][]string{
		{"acme.example"}, // no change named
		{"acme.example", "--soft-overage", "1.1"},
		{"acme.example", "--soft-overage", "3:1d"},
		{"acme.example", "--soft-overage", "1.1:soon"},
		{"acme.example", "--soft-overage", "1.1:2020-01-01T00:00:00Z"}, // past: the portal refuses
		{"acme.example", "--offline-grace", "0"},
		{"acme.example", "--offline-grace", "-2d"},
		{"acme.example", "--heartbeat-tolerance", "1.5s"},
		{"acme.example", "--lapse-grace", "forever"},
	} {
		code, out, errs := cli(append([]string{"pbx", "licenses"}, args...)...)
		if code != 2 || out != "" || strings.Count(errs, "\n") != 1 || !strings.HasPrefix(errs, "pbx-portal-sim: ") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 with one line", args, code, out, errs)
		}
	}
	if _, out, _ := cli("pbx", "show", "acme.example"); !strings.Contains(out, "revision: 3") {
		t.Errorf("a refused change made a revision:\n%s", out)
	}
}

func TestCLIPBXListJSON(t *testing.T) {
	url, _ := startServe(t)
	cli := cliOn(t, url)
	if code, out, _ := cli("pbx", "list", "--json"); code != 0 || out != "{\n  \"pbxs\": []\n}\n" {
		t.Errorf("empty list: exit %d, %q", code, out)
	}
	for _, n := range []string{"a.example", "b.example"} {
		if code, _, errs := cli("pbx", "create", "--name", n, "--users", "uc-premium=1"); code != 0 {
			t.Fatal(errs)
		}
	}
	cli("pbx", "delete", "b.example")
	code, out, errs := cli("pbx", "list", "--json")
	var l portalsim.PBXList
	if err := json.Unmarshal([]byte(out), &l); code != 0 || err != nil {
		t.Fatalf("exit %d, %v: %q %q", code, err, out, errs)
	}
	if len(l.PBXs) != 2 || l.PBXs[0].Name != "a.example" || l.PBXs[0].Deleted || !l.PBXs[1].Deleted || l.PBXs[0].Profiles[license.UCPremium] != 1 {
		t.Errorf("pbx list --json = %+v", l)
	}
}

// TestCLICommandsRefusedBeforeSigning: the simulator refuses what the agent
// would refuse, and nothing is queued.
func TestCLICommandsRefusedBeforeSigning(t *testing.T) {
	url, _ := startServe(t)
	cli := cliOn(t, url)
	if code, _, errs := cli("pbx", "create", "--name", "acme.example", "--users", "uc-premium=1"); code != 0 {
		t.Fatal(errs)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"upgrade", "acme.example", "--version", "7.3.x.1"}, "not a WMS version"},
		{[]string{"upgrade", "acme.example", "--version", "7.03.20261120.1", "--repo", "main"}, "not a WMS repository name"},
		{[]string{"upgrade", "acme.example", "--version", "7.03.20261120.1", "--window-start", "2026-11-01T00:00:00Z", "--window-end", "2026-11-01T02:00:00Z"}, "maintenance window ended"},
		{[]string{"ssh-open", "acme.example", "--ttl", "25h"}, "outside 1 to 86400"},
		{[]string{"ssh-open", "acme.example", "--port", "22"}, "outside 1024-65535"},
	} {
		code, out, errs := cli(append([]string{"command"}, tt.args...)...)
		if code != 2 || out != "" || !strings.Contains(errs, "refused before signing") || !strings.Contains(errs, tt.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 refused before signing, naming %q", tt.args, code, out, errs, tt.want)
		}
	}
	if _, out, _ := cli("command", "list", "acme.example", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("queued after the refusals: %s", out)
	}
}

// TestCLICommandArgumentOrder: the PBX and the verb in any order, flags
// anywhere, and a clear refusal with no verb.
func TestCLICommandArgumentOrder(t *testing.T) {
	url, _ := startServe(t)
	if code, _, errs := run(t, nil, "--portal", url, "pbx", "create", "--name", "acme.example", "--users", "uc-premium=1"); code != 0 {
		t.Fatal(errs)
	}
	queued := 0
	for _, args := range [][]string{
		{"command", "--portal", url, "acme.example", "ssh-close"},
		{"command", "acme.example", "ssh-close", "--portal", url},
		{"command", "ssh-close", "--portal", url, "acme.example"},
		{"--portal", url, "command", "acme.example", "--expires-in", "1h", "ssh-close"},
		{"command", "--expires-in=1h", "acme.example", "--portal=" + url, "ssh-close"},
		{"command", "--portal", url, "acme.example", "ssh-open", "--ttl", "10m", "--expires-in", "1h"},
	} {
		code, out, errs := run(t, nil, args...)
		if code != 0 || !strings.HasPrefix(out, "cmd-") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want a command queued", args, code, out, errs)
			continue
		}
		queued++
	}
	code, out, _ := run(t, nil, "command", "list", "--portal", url, "--json", "acme.example")
	var cmds []portalsim.CommandView
	if err := json.Unmarshal([]byte(out), &cmds); code != 0 || err != nil || len(cmds) != queued || queued != 6 {
		t.Errorf("command list: exit %d, %v, %d commands; want 6", code, err, len(cmds))
	}
	for _, args := range [][]string{
		{"command", "--portal", url, "acme.example"},
		{"command", "--portal", url, "acme.example", "frobnicate"},
	} {
		code, out, errs := run(t, nil, args...)
		if code != 2 || out != "" || !strings.Contains(errs, "no verb") || !strings.Contains(errs, "ssh-close") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 naming the verbs", args, code, out, errs)
		}
	}
}

func TestCommandArgs(t *testing.T) {
	root := newRootForTest()
	for _, tt := range []struct{ in, want string }{
		{"command acme ssh-close", "command ssh-close acme"},
		{"command ssh-close acme", "command ssh-close acme"},
		{"command --portal URL acme ssh-close", "command ssh-close --portal URL acme"},
		{"--portal URL command acme show ID --wait 1s", "--portal URL command show acme ID --wait 1s"},
		// A flag's value is never taken for the verb or the PBX.
		{"command --repo list acme upgrade", "command upgrade --repo list acme"},
		{"command acme --json list", "command list acme --json"},
		{"pbx list", "pbx list"},
		{"--portal command pbx list", "--portal command pbx list"},
	} {
		if got := strings.Join(commandArgs(root, strings.Fields(tt.in)), " "); got != tt.want {
			t.Errorf("commandArgs(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

// TestCommandOutcome: --wait ends with exit 1 for a command that was not
// done, saying why.
func TestCommandOutcome(t *testing.T) {
	view := func(state string, res *protocol.CommandResult) *portalsim.CommandView {
		return &portalsim.CommandView{ID: "cmd-1", State: state, Result: res, ExpiresAt: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	}
	for _, tt := range []struct {
		v    *portalsim.CommandView
		code int
		want string
	}{
		{view("done", &protocol.CommandResult{ID: "cmd-1", State: protocol.CommandDone}), 0, ""},
		{view("refused", &protocol.CommandResult{ID: "cmd-1", State: protocol.CommandRefused, Reason: protocol.RefusedRejected,
			Message: "this appliance opens support SSH on port 2222 only"}), 1, "refused by the appliance (rejected): this appliance opens"},
		{view("failed", &protocol.CommandResult{ID: "cmd-1", State: protocol.CommandFailed, Message: "sshd: no such file"}), 1, "failed on the appliance: sshd"},
		{view(portalsim.CommandExpired, nil), 1, "expired at 2026-12-01T00:00:00Z before its appliance fetched it"},
	} {
		err := commandOutcome(tt.v)
		var ee *exitError
		switch {
		case tt.code == 0 && err != nil:
			t.Errorf("%s: %v; want nil", tt.v.State, err)
		case tt.code != 0 && (!errors.As(err, &ee) || ee.code != tt.code || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: %v; want exit %d saying %q", tt.v.State, err, tt.code, tt.want)
		}
	}
}

// TestCLIWaitExitsNonZeroWhenNotDone: end to end, a command that expired
// unfetched makes --wait exit 1 with its result printed.
func TestCLIWaitExitsNonZeroWhenNotDone(t *testing.T) {
	url, _ := startServe(t)
	cli := cliOn(t, url)
	if code, _, errs := cli("pbx", "create", "--name", "acme.example", "--users", "uc-premium=1"); code != 0 {
		t.Fatal(errs)
	}
	code, out, errs := cli("command", "acme.example", "ssh-close", "--expires-in", "1m")
	if code != 0 {
		t.Fatal(errs)
	}
	id := strings.TrimSpace(out)
	cli("clock", "advance", "2m")
	code, out, errs = cli("command", "show", "acme.example", id, "--wait", "5s")
	if code != 1 || !strings.Contains(out, `"state": "expired"`) || !strings.Contains(errs, "expired") || strings.Count(errs, "\n") != 1 {
		t.Errorf("show --wait of an expired command: exit %d, stdout %q, stderr %q; want exit 1", code, out, errs)
	}
	if code, _, errs := cli("command", "show", "acme.example", id); code != 0 {
		t.Errorf("show without --wait reports, whatever the state: exit %d, %q", code, errs)
	}
	// ssh-open with no key says nobody can log in.
	if code, _, errs := cli("command", "acme.example", "ssh-open"); code != 0 || !strings.Contains(errs, "nobody can log in") {
		t.Errorf("ssh-open without --pubkey: exit %d, stderr %q", code, errs)
	}
}

func newRootForTest() *cobra.Command {
	return newRoot(&env{getenv: func(string) string { return "" }})
}

// TestCLIUpgradeWindowOnThePortalClock: "now" in a window is the portal's
// clock, moved months ahead, so the upgrade is queued, not refused as over.
func TestCLIUpgradeWindowOnThePortalClock(t *testing.T) {
	url, _ := startServe(t)
	cli := cliOn(t, url)
	if code, _, errs := cli("pbx", "create", "--name", "acme.example", "--users", "uc-premium=1"); code != 0 {
		t.Fatal(errs)
	}
	cli("clock", "set", "2027-06-01T00:00:00Z")
	if code, out, errs := cli("command", "acme.example", "upgrade", "--version", "7.03.20261120.1",
		"--window-start", "now+30h", "--window-end", "now+31h"); code != 0 || !strings.HasPrefix(out, "cmd-") {
		t.Fatalf("upgrade in a window from now+30h: exit %d, %q, %q", code, out, errs)
	}
	_, out, _ := cli("command", "list", "acme.example", "--json")
	var cmds []portalsim.CommandView
	if err := json.Unmarshal([]byte(out), &cmds); err != nil || len(cmds) != 1 {
		t.Fatalf("%v: %s", err, out)
	}
	// Held until the window's end: 31 h after the portal's now.
	if want := time.Date(2027, 6, 2, 7, 0, 0, 0, time.UTC); !cmds[0].ExpiresAt.Equal(want) {
		t.Errorf("expires %v; want the window's end %v on the portal's clock", cmds[0].ExpiresAt, want)
	}
	if code, _, errs := cli("command", "acme.example", "upgrade", "--version", "7.03.20261120.1"); code != 0 {
		t.Errorf("upgrade with the default window, now to now+2h: exit %d, %q", code, errs)
	}
}
