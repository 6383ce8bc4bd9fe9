package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/internal/logbuf"
	"github.com/pbx-agent/pbx-agent/internal/portalsim"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// realNow is the simulator's real clock in these tests.
var realNow = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// startServe runs `serve` in process on a loopback listener and returns
// its URL and data folder. Cleanup stops it as SIGTERM would.
func startServe(t *testing.T) (url, dir string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dir = filepath.Join(t.TempDir(), "data")
	logs := &logbuf.Buffer{}
	e := &env{
		stdout: &bytes.Buffer{},
		stderr: logs,
		listen: func(string) (net.Listener, error) { return ln, nil },
		now:    func() time.Time { return realNow },
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- execute(ctx, []string{"serve", "--data", dir, "--listen", "unused"}, e) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("serve exited %d: %s", code, logs.String())
			}
		case <-time.After(15 * time.Second):
			t.Errorf("serve did not stop: %s", logs.String())
		}
		if !strings.Contains(logs.String(), "pbx-portal-sim serving") || !strings.Contains(logs.String(), "url=http://"+ln.Addr().String()) {
			t.Errorf("serve's log lacks the URL line: %s", logs.String())
		}
	})
	return "http://" + ln.Addr().String(), dir
}

// run executes the CLI and returns its exit code and output.
func run(t *testing.T, environ map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := execute(context.Background(), args, &env{stdout: &out, stderr: &errb, getenv: func(k string) string { return environ[k] }})
	return code, out.String(), errb.String()
}

func TestCLIDrivesARunningSimulator(t *testing.T) {
	url, dir := startServe(t)
	portal := []string{"--portal", url}
	ok := func(args ...string) string {
		t.Helper()
		code, out, errs := run(t, nil, append(portal, args...)...)
		if code != 0 || errs != "" {
			t.Fatalf("%v: exit %d, stderr %q", args, code, errs)
		}
		return out
	}

	out := ok("pbx", "create", "--name", "acme.example", "--model", "wpbx-hw", "--term", "yearly",
		"--users", "uc-premium=10,pbx-basic=3", "--users", "UC-Wizyconf=1")
	if strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "eyJ") {
		t.Fatalf("pbx create must print the key alone: %q", out)
	}
	kr, err := license.LoadKeyring(filepath.Join(dir, "keyring"))
	if err != nil {
		t.Fatal(err)
	}
	k, err := license.ParseKey(out, kr, license.KeyCheck{Now: realNow, Model: license.ModelHW})
	if err != nil {
		t.Fatalf("issued key does not verify: %v", err)
	}
	if k.PBX.Name != "acme.example" || k.Term != license.Yearly || k.Counts.String() != "pbx-basic=3 uc-premium=10 uc-wizyconf=1" {
		t.Errorf("issued key = %+v", k)
	}
	if fi, err := os.Stat(filepath.Join(dir, "signing-key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("signing key file: %v, %v; want mode 0600", fi, err)
	}

	if out := ok("pbx", "licenses", "acme.example", "uc-premium=20", "uc-business=2"); out != "acme.example: revision 2: pbx-basic=3 uc-business=2 uc-premium=20 uc-wizyconf=1\n" {
		t.Errorf("pbx licenses printed %q", out)
	}
	var shown portalsim.PBX
	if err := json.Unmarshal([]byte(ok("pbx", "show", k.PBX.ID, "--json")), &shown); err != nil {
		t.Fatal(err)
	}
	if shown.Revision != 2 || shown.Profiles[license.UCPremium] != 20 || shown.Profiles[license.PBXBasic] != 3 {
		t.Errorf("pbx show --json = %+v", shown)
	}
	if out := ok("pbx", "show", "acme.example"); !strings.Contains(out, "revision: 2") || !strings.Contains(out, "status:   unbound") {
		t.Errorf("pbx show printed:\n%s", out)
	}
	if out := ok("pbx", "list"); !strings.Contains(out, "acme.example") || !strings.Contains(out, k.PBX.ID) {
		t.Errorf("pbx list printed:\n%s", out)
	}

	if out := ok("clock", "advance", "6d"); out != "2026-12-03T12:00:00Z\n" {
		t.Errorf("clock advance 6d printed %q", out)
	}
	// The URL also comes from the environment.
	if code, out, errs := run(t, map[string]string{portalEnv: url}, "clock"); code != 0 || out != "2026-12-03T12:00:00Z\n" {
		t.Errorf("clock with %s: exit %d, %q, %q", portalEnv, code, out, errs)
	}
	if out := ok("clock", "set", "2026-11-30T10:00:00Z"); out != "2026-11-30T10:00:00Z\n" {
		t.Errorf("clock set printed %q", out)
	}

	if out := ok("fault", "set", "--error-rate", "0.5", "--latency", "2s"); out != "error_rate=0.5 latency=2s\n" {
		t.Errorf("fault set printed %q", out)
	}
	if out := ok("fault", "set", "--rate-limit", "0.2", "--retry-after", "10s"); out != "error_rate=0.5 latency=2s rate_limit_rate=0.2 retry_after=10s\n" {
		t.Errorf("second fault set printed %q", out)
	}
	if out := ok("fault", "clear"); out != "none\n" {
		t.Errorf("fault clear printed %q", out)
	}
	if out := ok("fault"); out != "none\n" {
		t.Errorf("fault printed %q", out)
	}

	if code, out, errs := run(t, nil, append(portal, "pbx", "rebind", "acme.example")...); code != 0 ||
		strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "eyJ") || !strings.Contains(errs, "not bound") {
		t.Errorf("pbx rebind: exit %d, stdout %q, stderr %q; want the new key alone on stdout, the news on stderr", code, out, errs)
	}
	if out := ok("pbx", "delete", "acme.example"); !strings.Contains(out, "deleted") {
		t.Errorf("pbx delete printed %q", out)
	}

	t.Run("refusals", func(t *testing.T) {
		for _, args := range [][]string{
			{"pbx", "licenses", "nobody.example", "uc-premium=1"},
			{"pbx", "licenses", "acme.example", "uc-premium=1"}, // deleted
			{"pbx", "create", "--name", "bad name"},
			{"fault", "set", "--error-rate", "2"},
			{"fault", "set"},
			{"clock", "advance", "soon"},
			{"clock", "set", "tomorrow"},
		} {
			code, out, errs := run(t, nil, append(portal, args...)...)
			if code != 2 || out != "" || strings.Count(errs, "\n") != 1 || !strings.HasPrefix(errs, "pbx-portal-sim: ") {
				t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 with one line", args, code, out, errs)
			}
		}
	})
}

func TestPBXCreateRefusesBadInputWithoutAPortal(t *testing.T) {
	for _, args := range [][]string{
		{"--name", "a", "--users", "uc-gold=1"},
		{"--name", "a", "--users", "uc-premium"},
		{"--name", "a", "--users", "uc-premium=-1"},
		{"--name", "a", "--model", "WPBX-CLOUD"},
		{"--name", "a", "--term", "weekly"},
		{"--users", "uc-premium=1"},
		{"--name", "a"}, // no portal answers
	} {
		args = append([]string{"--portal", "http://127.0.0.1:1", "pbx", "create"}, args...)
		if code, out, errs := run(t, nil, args...); code != 2 || out != "" || strings.Count(errs, "\n") != 1 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 with a reason and no key", args, code, out, errs)
		}
	}
}

func TestServeRefusesUnusableState(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "state.json"), []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	listened := false
	e := &env{stdout: &out, stderr: &errb, listen: func(string) (net.Listener, error) { listened = true; return nil, nil }}
	code := execute(context.Background(), []string{"serve", "--data", dir}, e)
	if code != 2 || listened || !strings.Contains(errb.String(), "unusable") {
		t.Errorf("exit %d, listened %v, stderr %q; want exit 2 before listening, saying the state is unusable", code, listened, errb.String())
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"6d", 6 * 24 * time.Hour, true},
		{"1d12h", 36 * time.Hour, true},
		{"90m", 90 * time.Minute, true},
		{"0d", 0, true},
		{"-1d", -24 * time.Hour, true},
		{"1.5h", 90 * time.Minute, true},
		{"d", 0, false},
		{"", 0, false},
		{"6", 0, false},
		{"1d-2h", 0, false},
		{"xd", 0, false},
		{"1d2d", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseDuration(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Errorf("parseDuration(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
			}
		})
	}
}

// TestCLIPortalRules: the rules' refusals and warnings reach the person at
// the command line.
func TestCLIPortalRules(t *testing.T) {
	url, _ := startServe(t)
	portal := []string{"--portal", url}
	cli := func(args ...string) (int, string, string) {
		t.Helper()
		return run(t, nil, append(portal, args...)...)
	}
	if code, _, errs := cli("clock", "set", "2027-01-31T10:00:00Z"); code != 0 {
		t.Fatalf("clock set: %s", errs)
	}
	if code, _, errs := cli("pbx", "create", "--name", "acme.example", "--users", "uc-premium=10,pbx-basic=3"); code != 0 {
		t.Fatalf("create: %s", errs)
	}

	code, out, errs := cli("pbx", "licenses", "acme.example", "uc-premium=5")
	if code != 2 || out != "" || strings.Count(errs, "\n") != 1 ||
		!strings.Contains(errs, `refused by the portal rule "no decrease on the last day of a month"`) ||
		!strings.Contains(errs, "uc-premium 10 → 5") {
		t.Errorf("decrease on 31 January: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, errs = cli("pbx", "licenses", "acme.example", "uc-premium=12")
	if code != 0 || !strings.HasPrefix(out, "acme.example: revision ") || !strings.Contains(out, "uc-premium=12") ||
		!strings.HasPrefix(errs, "pbx-portal-sim: warning: this change was made less than 2 days before the term ends (2027-01-31 23:59:59 UTC") {
		t.Errorf("increase on 31 January: exit %d, stdout %q, stderr %q", code, out, errs)
	}

	cli("clock", "set", "2027-02-01T10:00:00Z")
	code, out, errs = cli("pbx", "licenses", "acme.example", "uc-premium=0", "pbx-basic=0")
	if code != 0 || errs != "" || !strings.Contains(out, "every licence is at zero: stops at 2027-02-06T00:00:00Z, deleted at 2027-02-15T00:00:00Z") {
		t.Errorf("all to zero on 1 February: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if _, out, _ := cli("pbx", "show", "acme.example"); !strings.Contains(out, "countdown:") || !strings.Contains(out, "stops 2027-02-06T00:00:00Z, deleted 2027-02-15T00:00:00Z") {
		t.Errorf("pbx show during the countdown:\n%s", out)
	}
	if code, out, errs := cli("pbx", "suspend", "acme.example"); code != 0 || !strings.HasSuffix(out, ": suspended\n") {
		t.Errorf("suspend: exit %d, %q, %q", code, out, errs)
	}
	if code, out, errs := cli("pbx", "resume", "acme.example"); code != 0 || !strings.HasSuffix(out, ": active\n") {
		t.Errorf("resume: exit %d, %q, %q", code, out, errs)
	}
	cli("clock", "advance", "15d")
	if _, out, _ := cli("pbx", "list"); !strings.Contains(out, "deleted") {
		t.Errorf("pbx list after the countdown:\n%s", out)
	}
}

// A half-given or unusable TLS pair is refused before the simulator
// serves anything, naming the flags.
func TestServeRefusesBadTLSFlags(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not PEM\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][]string{
		"cert alone": {"--tls-cert", junk},
		"key alone":  {"--tls-key", junk},
		"not PEM":    {"--tls-cert", junk, "--tls-key", junk},
	} {
		t.Run(name, func(t *testing.T) {
			var out, errb bytes.Buffer
			e := &env{stdout: &out, stderr: &errb, listen: func(string) (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }}
			code := execute(context.Background(), append([]string{"serve", "--data", t.TempDir()}, args...), e)
			if code != 2 || !strings.Contains(errb.String(), "--tls-") {
				t.Errorf("exit %d, stderr %q; want exit 2 naming the TLS flags", code, errb.String())
			}
		})
	}
}
