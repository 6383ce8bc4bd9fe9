package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
)

func TestSSHStatusAndClose(t *testing.T) {
	fb, sock := daemon(t)
	until := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	st := fb.Status()
	st.SSH = apitype.SSHStatus{Open: true, Port: 2222, Until: &until, HostKeys: []string{"ssh-ed25519 SHA256:abc"}}
	fb.SetStatus(st)

	r := run(t, "", "--socket", sock, "ssh", "status")
	if r.code != 0 || !strings.Contains(r.stdout, "SSH: open on port 2222, until "+until.Format(time.RFC3339)) ||
		!strings.Contains(r.stdout, "host key ssh-ed25519 SHA256:abc") {
		t.Fatalf("ssh status: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, "", "--socket", sock, "ssh", "status", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"open": true`) || !strings.Contains(r.stdout, `"port": 2222`) {
		t.Fatalf("ssh status --json: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	r = run(t, "", "--socket", sock, "ssh", "close")
	if r.code != 0 || !strings.Contains(r.stdout, "SSH: closed") {
		t.Fatalf("ssh close: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if closes := fb.SSHCloses(); closes != 1 {
		t.Fatalf("the daemon saw %d closes, want 1", closes)
	}
	oneLine(t, r)
}

// TestSSHStatusOnTheLicenceClock: with the licence clock 60 days ahead of
// the machine's, the time left is counted from the licence clock the
// status states, not from the machine's.
func TestSSHStatusOnTheLicenceClock(t *testing.T) {
	fb, sock := daemon(t)
	licence := time.Now().Add(60 * 24 * time.Hour).UTC().Truncate(time.Second)
	until := licence.Add(3 * time.Hour)
	st := fb.Status()
	st.Clock.Now = licence
	st.SSH = apitype.SSHStatus{Open: true, Port: 2222, Until: &until}
	fb.SetStatus(st)
	r := run(t, "", "--socket", sock, "ssh", "status")
	if want := "until " + until.Format(time.RFC3339) + " (in 3 hours)"; r.code != 0 || !strings.Contains(r.stdout, want) {
		t.Fatalf("ssh status: exit %d, want %q\n%s%s", r.code, want, r.stdout, r.stderr)
	}
}

// TestSSHStatusInTunnelMode: the admin sees that support comes through
// the portal, not on a port of the appliance, and how the tunnel stands.
func TestSSHStatusInTunnelMode(t *testing.T) {
	fb, sock := daemon(t)
	until := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	since := until.Add(-2 * time.Hour)
	st := fb.Status()
	st.SSH = apitype.SSHStatus{Open: true, Port: 222, Until: &until,
		Tunnel: &apitype.SSHTunnelStatus{Open: true, Connected: true, Since: &since, Sessions: 1, SessionsTotal: 2, BytesIn: 2048, BytesOut: 10}}
	fb.SetStatus(st)
	r := run(t, "", "--socket", sock, "ssh", "status")
	for _, want := range []string{
		"SSH: open through the portal's tunnel (sshd on 127.0.0.1:222), until " + until.Format(time.RFC3339),
		"tunnel connected · 1 session open, 2 in all · 2.0 KiB in, 10 B out, since " + since.Format(time.RFC3339),
	} {
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("ssh status: exit %d, want %q in\n%s%s", r.code, want, r.stdout, r.stderr)
		}
	}
	r = run(t, "", "--socket", sock, "ssh", "status", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"sessions_total": 2`) || !strings.Contains(r.stdout, `"bytes_in": 2048`) {
		t.Fatalf("ssh status --json: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestClientWithABrokenConfig: a configuration file that no longer loads
// (a reload the daemon refused) still lets the admin reach the daemon.
func TestClientWithABrokenConfig(t *testing.T) {
	_, sock := daemon(t)
	broken := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(broken, []byte("heartbeat: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := run(t, "", "--config", broken, "--socket", sock, "status")
	if r.code != 0 || !strings.Contains(r.stdout, "active") {
		t.Fatalf("status with a broken config: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "warning: reading config "+broken) || !strings.Contains(r.stderr, "trying the socket "+sock) {
		t.Fatalf("stderr %q does not warn about the config", r.stderr)
	}
}
