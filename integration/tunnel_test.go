package integration

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/internal/portalsim"
	"github.com/pbx-agent/pbx-agent/pkg/apitype"
)

// privilegedPort returns a port below 1024 that nothing listens on now.
func privilegedPort(t *testing.T) int {
	t.Helper()
	for port := 900; port < 1024; port++ {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			ln.Close()
			return port
		}
	}
	t.Fatal("no free port between 900 and 1023")
	return 0
}

// tcpListeners returns the local addresses that listen on port, from
// /proc/net/tcp and tcp6: every socket of the machine, whoever owns it.
func tcpListeners(t *testing.T, port int) []string {
	t.Helper()
	var out []string
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // the header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 || fields[3] != "0A" { // 0A: LISTEN
				continue
			}
			hexIP, hexPort, _ := strings.Cut(fields[1], ":")
			if p, err := strconv.ParseUint(hexPort, 16, 16); err != nil || int(p) != port {
				continue
			}
			raw, err := hex.DecodeString(hexIP)
			if err != nil {
				t.Fatalf("%s: %q: %v", file, fields[1], err)
			}
			// The kernel prints each 32-bit word in host order
			// (little-endian here).
			for i := 0; i+4 <= len(raw); i += 4 {
				raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
			}
			out = append(out, net.IP(raw).String())
		}
		f.Close()
	}
	return out
}

// sshThroughTunnel runs ssh to the appliance's support sshd through the
// portal's relay, as support does: pbx-portal-sim tunnel as ProxyCommand.
// opts go before the destination, the remote command after it.
func sshThroughTunnel(p *portal, keyFile, account string, opts []string, command ...string) *exec.Cmd {
	proxy := fmt.Sprintf("%s --portal %s tunnel acme.example", filepath.Join(binDir, "pbx-portal-sim"), p.url())
	base := []string{"-i", keyFile, "-o", "ProxyCommand=" + proxy, "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10",
		"-o", "LogLevel=ERROR"}
	args := append(append(base, opts...), account+"@acme.example")
	return exec.Command("ssh", append(args, command...)...)
}

func sessionEvents(log apitype.AuditLog, action string) []map[string]any {
	var out []map[string]any
	for _, e := range log.Events {
		if e.Kind == "ssh.session" && e.Fields["action"] == action {
			out = append(out, e.Fields)
		}
	}
	return out
}

// TestSSHThroughTheTunnel is support SSH to an appliance nothing can reach:
// the portal queues a tunnelled ssh-open, the agent starts sshd on
// 127.0.0.1 alone and dials the portal, and support logs in with the
// pushed key through `pbx-portal-sim tunnel` as ssh's ProxyCommand. Port
// mode's port stays closed and the tunnel-mode sshd listens on loopback
// alone. Through the session support cannot reach past sshd: a stream
// carries bytes to sshd and nowhere else, sshd refuses forwarding, and a
// stream over the agent's cap is refused and audited. ssh-close ends the
// open session within seconds.
func TestSSHThroughTheTunnel(t *testing.T) {
	if _, err := os.Stat(sshd); err != nil {
		t.Skipf("%s not installed (Debian: openssh-server): %v", sshd, err)
	}
	if os.Geteuid() != 0 {
		t.Skip("the tunnel-mode sshd listens on a privileged port: run as root")
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	p := startPortal(t, t.TempDir(), freeAddr(t))
	key := p.admin("pbx", "create", "--name", "acme.example", "--model", "WPBX-VM", "--term", "monthly", "--users", "uc-premium=5")
	a := newAppliance(t, "pbx", p, "0s")
	port, tunnelPort := freePort(t), privilegedPort(t)
	a.appendConfig(fmt.Sprintf("ssh:\n  port: %d\n  tunnel_port: %d\n  sshd: %s\n  user: %s\n  listen: [\"0.0.0.0\"]\n",
		port, tunnelPort, sshd, me.Username))
	a.start()
	if r := a.cli(key, "activate"); r.code != 0 {
		t.Fatalf("activate: exit %d: %s", r.code, r.stderr)
	}
	a.waitState("active", 10*time.Second)

	// Before: no tunnel, and the relay says so.
	if r := p.try("tunnel", "acme.example"); r.code == 0 || !strings.Contains(r.stderr, "no tunnel is open") {
		t.Fatalf("tunnel before ssh-open: exit %d: %s", r.code, r.stderr)
	}

	keyFile := filepath.Join(t.TempDir(), "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "support@example", "-f", keyFile).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	began := time.Now()
	p.admin("command", "acme.example", "ssh-open", "--tunnel", "--ttl", "10m", "--pubkey", keyFile+".pub")
	eventually(t, 20*time.Second, "the tunnel connects", func() (bool, string) {
		s := a.status()
		return s.SSH.Tunnel != nil && s.SSH.Tunnel.Connected, fmt.Sprintf("%+v %+v", s.SSH, s.SSH.Tunnel)
	})
	t.Logf("ssh-open to tunnel connected: %v", time.Since(began))

	// Nothing listens for support beyond loopback: the tunnel-mode sshd
	// binds 127.0.0.1 alone, though ssh.listen says 0.0.0.0 for port
	// mode, and port mode's port is closed.
	if got := tcpListeners(t, tunnelPort); len(got) != 1 || got[0] != "127.0.0.1" {
		t.Fatalf("listeners on the tunnel-mode port %d: %v, want 127.0.0.1 alone", tunnelPort, got)
	}
	if got := tcpListeners(t, port); len(got) != 0 {
		t.Fatalf("listeners on the port-mode port %d in tunnel mode: %v, want none", port, got)
	}

	out, err := sshThroughTunnel(p, keyFile, me.Username, nil, "echo", "logged-in-through-the-portal").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "logged-in-through-the-portal") {
		t.Fatalf("ssh through the tunnel: %v: %s", err, out)
	}

	// Past sshd: ssh -W to the agent's own HTTP listener is refused by
	// sshd (DisableForwarding), and bytes written to a raw stream reach
	// sshd, which answers with its banner, not the HTTP listener.
	out, err = sshThroughTunnel(p, keyFile, me.Username, []string{"-W", a.http}).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "forwarding failed") || strings.Contains(string(out), "HTTP/") {
		t.Errorf("ssh -W %s through the tunnel: %v: %s, want sshd's refusal", a.http, err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := portalsim.NewClient(p.url())
	raw, err := admin.Tunnel(ctx, "acme.example")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(raw, "GET /v1/status HTTP/1.1\r\nHost: %s\r\n\r\n", a.http)
	raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	banner, _ := bufio.NewReader(raw).ReadString('\n')
	raw.Close()
	if !strings.HasPrefix(banner, "SSH-2.0-") {
		t.Errorf("a raw stream answered %q, want sshd's banner", banner)
	}

	// A session left open; ssh-close must end it.
	session := sshThroughTunnel(p, keyFile, me.Username, nil, "echo", "session-up;", "sleep", "300")
	stdout, err := session.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := session.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() {
		io.Copy(io.Discard, stdout)
		exited <- session.Wait()
	}()
	t.Cleanup(func() { session.Process.Kill() })
	eventually(t, 20*time.Second, "the session shows in the status", func() (bool, string) {
		s := a.status()
		return s.SSH.Tunnel != nil && s.SSH.Tunnel.Sessions == 1, fmt.Sprintf("%+v", s.SSH.Tunnel)
	})

	// Streams over the cap (8 at once) are refused, and audited.
	var streams []net.Conn
	for range 8 {
		c, err := admin.Tunnel(ctx, "acme.example")
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, c)
	}
	eventually(t, 20*time.Second, "the stream over the cap is audited as refused", func() (bool, string) {
		refused := sessionEvents(a.auditLog(), "refused")
		return len(refused) >= 1, fmt.Sprint(refused)
	})
	for _, c := range streams {
		c.Close()
	}
	if refused := sessionEvents(a.auditLog(), "refused"); !strings.Contains(fmt.Sprint(refused[0]["reason"]), "the most allowed") {
		t.Errorf("refusal audited as %v", refused[0])
	}

	began = time.Now()
	p.admin("command", "acme.example", "ssh-close")
	select {
	case <-exited:
		t.Logf("ssh-close to the session's end: %v", time.Since(began))
	case <-time.After(20 * time.Second):
		t.Fatal("the session still runs 20 s after ssh-close")
	}
	eventually(t, 10*time.Second, "the status shows access closed", func() (bool, string) {
		s := a.status()
		return !s.SSH.Open && s.SSH.Tunnel == nil, fmt.Sprintf("%+v", s.SSH)
	})
	if got := tcpListeners(t, tunnelPort); len(got) != 0 {
		t.Errorf("the tunnel-mode sshd still listens after ssh-close: %v", got)
	}
	if r := p.try("tunnel", "acme.example"); r.code == 0 {
		t.Errorf("the relay still reaches the appliance after ssh-close: %s", r.stdout)
	}

	log := a.auditLog()
	ends := sessionEvents(log, "end")
	if starts := sessionEvents(log, "start"); len(starts) < 4 || len(ends) != len(starts) {
		t.Errorf("audit: %d session starts, %d ends; want one each per session (4 or more)", len(starts), len(ends))
	}
	var carried bool
	for _, e := range ends {
		if in, _ := e["bytes_in"].(float64); in > 0 {
			if out, _ := e["bytes_out"].(float64); out > 0 {
				carried = true
			}
		}
	}
	if !carried {
		t.Errorf("no session end records bytes both ways: %v", ends)
	}

	// The TTL ends a tunnel by itself.
	p.admin("command", "acme.example", "ssh-open", "--tunnel", "--ttl", "2s", "--pubkey", keyFile+".pub")
	eventually(t, 20*time.Second, "a 2 s tunnel opens", func() (bool, string) {
		s := a.status()
		return s.SSH.Tunnel != nil && s.SSH.Tunnel.Connected, fmt.Sprintf("%+v", s.SSH)
	})
	eventually(t, 20*time.Second, "the TTL closes it", func() (bool, string) {
		s := a.status()
		return !s.SSH.Open && len(tcpListeners(t, tunnelPort)) == 0, fmt.Sprintf("%+v", s.SSH)
	})
}
