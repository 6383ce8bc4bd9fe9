package actions

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func sshdOrSkip(t *testing.T) string {
	t.Helper()
	const sshd = "/usr/sbin/sshd"
	if _, err := os.Stat(sshd); err != nil {
		t.Skipf("%s not installed (Debian: openssh-server)", sshd)
	}
	return sshd
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func listening(port int) bool {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
	if err == nil {
		c.Close()
	}
	return err == nil
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestProcessSSHOpenCloseExpire(t *testing.T) {
	sshd := sshdOrSkip(t)
	dir := filepath.Join(t.TempDir(), "ssh")
	p := NewProcessSSH(sshd, dir, loopbackPolicy(t), nil)
	ctx := context.Background()
	port := freeTCPPort(t)
	key := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl support@example"

	st, err := p.Open(ctx, SSHRequest{Port: port, TTL: time.Hour, Keys: []string{key}})
	if err != nil {
		t.Fatal(err)
	}
	if !st.Open || st.Port != port || time.Until(st.Until) < 59*time.Minute || len(st.HostKeys) != 1 ||
		!strings.HasPrefix(st.HostKeys[0], "ssh-ed25519 SHA256:") {
		t.Fatalf("state after open: %+v", st)
	}
	if !listening(port) {
		t.Fatal("sshd does not listen after Open returned")
	}
	b, err := os.ReadFile(filepath.Join(dir, AuthorizedKeysName))
	if err != nil || !strings.Contains(string(b), key) {
		t.Fatalf("authorized keys: %v %q", err, b)
	}
	fi, _ := os.Stat(filepath.Join(dir, "ssh_host_ed25519_key"))
	if fi == nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("host key mode: %v", fi)
	}

	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if listening(port) {
		t.Fatal("sshd still listens after Close")
	}
	if st, _ := p.State(ctx); st.Open {
		t.Fatalf("state after close: %+v", st)
	}

	// A one-second TTL ends by itself.
	if _, err := p.Open(ctx, SSHRequest{Port: port, TTL: time.Second}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the TTL closes sshd", func() bool { return !listening(port) })
	waitFor(t, 5*time.Second, "the state shows it closed", func() bool { st, _ := p.State(ctx); return !st.Open })
}

func TestProcessSSHReportsAFailedStart(t *testing.T) {
	dir := t.TempDir()
	broken := filepath.Join(dir, "sshd")
	if err := os.WriteFile(broken, []byte("#!/bin/sh\necho 'Bind to port failed: Address already in use' >&2\nexit 255\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := NewProcessSSH(broken, filepath.Join(dir, "ssh"), loopbackPolicy(t), nil)
	_, err := p.Open(context.Background(), SSHRequest{Port: freeTCPPort(t), TTL: time.Minute})
	if err == nil || !strings.Contains(err.Error(), "support sshd did not start") || !strings.Contains(err.Error(), "Address already in use") {
		t.Fatalf("error %v: want one saying sshd did not start, with its last words", err)
	}
	if st, _ := p.State(context.Background()); st.Open {
		t.Fatalf("state after a failed start: %+v", st)
	}
}

func TestUnitTTL(t *testing.T) {
	for unit, want := range map[string]time.Duration{
		"pbx-agent-sshd@3600.service":        time.Hour,
		"pbx-agent-sshd@1.service":           time.Second,
		"pbx-agent-sshd@x.service":           0,
		"pbx-agent-sshd@99999.service":       99999 * time.Second,
		"pbx-agent-sshd@100000.service":      0,
		"pbx-agent-sshd@18446744074.service": 0, // would wrap to 0.29 s
		"pbx-agent-sshd@9223372037.service":  0, // would wrap negative
		"pbx-agent-sshd-tunnel@600.service":  10 * time.Minute,
		"pbx-agent-sshd-tunnel@0.service":    0,
		"pbx-agent-sshd-tunnelx@5.service":   0,
		"other@5.service":                    0,
	} {
		if got, _ := unitTTL(unit); got != want {
			t.Errorf("unitTTL(%q) = %v, want %v", unit, got, want)
		}
	}
}

// TestSSHOpenRefusesTTLOutOfRange gives both executors the TTLs a signed
// ttl_seconds became when multiplied into a Duration unchecked: 18446744074 s
// wrapped to 0.29 s and 9223372037 s to a negative TTL. Nothing may be
// touched: no keys written, no unit or process started.
func TestSSHOpenRefusesTTLOutOfRange(t *testing.T) {
	wrap := func(seconds int64) time.Duration { return time.Duration(seconds) * time.Second }
	for _, ttl := range []time.Duration{
		wrap(18446744074), // 290.448384ms
		wrap(9223372037),  // negative
		0, time.Second - 1, MaxSSHTTL + time.Second,
	} {
		dir := filepath.Join(t.TempDir(), "ssh")
		dialed := false
		sd := NewSystemdSSH(func(context.Context) (SSHUnits, error) {
			dialed = true
			return nil, os.ErrPermission
		}, dir, filepath.Join(dir, "none*"), UnitSSHPolicy(), nil)
		if _, err := sd.Open(context.Background(), SSHRequest{Port: SSHUnitPort, TTL: ttl}); err == nil || !strings.Contains(err.Error(), "outside 1s to 24h0m0s") {
			t.Errorf("systemd: ttl %v: %v", ttl, err)
		}
		// The process executor refuses before looking for sshd at all.
		p := NewProcessSSH("/nonexistent/sshd", dir, loopbackPolicy(t), nil)
		if _, err := p.Open(context.Background(), SSHRequest{Port: freeTCPPort(t), TTL: ttl}); err == nil || !strings.Contains(err.Error(), "outside 1s to 24h0m0s") {
			t.Errorf("process: ttl %v: %v", ttl, err)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) || dialed {
			t.Errorf("ttl %v: the keys folder was made (%v) or the bus dialed (%v)", ttl, err, dialed)
		}
	}
}
