package actions

import (
	"context"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// machineAddrs are the addresses of this machine's interfaces other than
// 127.0.0.1, link-local ones aside: where an outside host or a local user
// could reach a listener.
func machineAddrs() []string {
	out := []string{"::1", "127.0.0.2"}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && !n.IP.IsLinkLocalUnicast() && !n.IP.Equal(net.IPv4(127, 0, 0, 1)) &&
				!slices.Contains(out, n.IP.String()) {
				out = append(out, n.IP.String())
			}
		}
	}
	return out
}

// TestProcessSSHLoopbackListensOnLoopbackAlone opens tunnel mode with the
// policy of a port-mode access on every address: sshd must listen on
// 127.0.0.1 alone, the pushed key still logs in there, and no other
// address of the machine answers.
func TestProcessSSHLoopbackListensOnLoopbackAlone(t *testing.T) {
	signer, line := supportKey(t)
	policy := loopbackPolicy(t)
	policy.Listen = []string{"0.0.0.0", "::"}
	p := NewProcessSSH(sshdOrSkip(t), filepath.Join(t.TempDir(), "ssh"), policy, nil)
	port := freeTCPPort(t)
	st, err := p.Open(context.Background(), SSHRequest{Port: port, TTL: time.Hour, Keys: []string{line}, Loopback: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	if !st.Loopback || st.Port != port {
		t.Fatalf("state %+v, want tunnel mode on port %d", st, port)
	}
	ps := strconv.Itoa(port)
	c, err := login(net.JoinHostPort("127.0.0.1", ps), policy.User, signer)
	if err != nil {
		t.Fatalf("the pushed key on 127.0.0.1: %v", err)
	}
	c.Close()
	for _, ip := range machineAddrs() {
		if c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, ps), 2*time.Second); err == nil {
			c.Close()
			t.Errorf("the tunnel-mode sshd answers on %s", ip)
		}
	}
	if st, _ := p.State(context.Background()); !st.Open || !st.Loopback {
		t.Fatalf("state read back: %+v", st)
	}
}

// TestProcessSSHRefusesAPortSomeoneHolds: a process listening on the
// support sshd's address first (a local user on an unprivileged port)
// would receive support's session; the executor refuses to start rather
// than take that listener for sshd.
func TestProcessSSHRefusesAPortSomeoneHolds(t *testing.T) {
	squatter, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer squatter.Close()
	port := squatter.Addr().(*net.TCPAddr).Port
	p := NewProcessSSH(sshdOrSkip(t), filepath.Join(t.TempDir(), "ssh"), loopbackPolicy(t), nil)
	_, err = p.Open(context.Background(), SSHRequest{Port: port, TTL: time.Hour, Loopback: true})
	if err == nil || !strings.Contains(err.Error(), "already listens on 127.0.0.1:"+strconv.Itoa(port)) {
		t.Fatalf("open on a held port: %v, want a refusal naming the address", err)
	}
	if st, _ := p.State(context.Background()); st.Open {
		t.Fatalf("state after the refusal: %+v", st)
	}
}

// TestSystemdSSHTunnelMode starts the tunnel-mode unit: its own template,
// its own port, read back as tunnel mode; the port-mode port, a policy
// naming another account and an out-of-range TTL are refused before any
// unit starts. The listen addresses are the unit's (127.0.0.1), whatever
// ssh.listen says for port mode.
func TestSystemdSSHTunnelMode(t *testing.T) {
	ctx := context.Background()
	newExec := func(policy SSHPolicy) (*SystemdSSH, *sshUnits) {
		units := &sshUnits{mono: time.Hour}
		s := NewSystemdSSH(func(context.Context) (SSHUnits, error) { return units, nil },
			filepath.Join(t.TempDir(), "ssh"), filepath.Join(t.TempDir(), "none*"), policy, nil)
		s.mono = func() time.Duration { return units.mono }
		return s, units
	}
	custom := UnitSSHPolicy()
	custom.Listen = []string{"192.0.2.10"}
	s, units := newExec(custom)
	st, err := s.Open(ctx, SSHRequest{Port: SSHTunnelUnitPort, TTL: 10 * time.Minute, Loopback: true})
	if err != nil {
		t.Fatal(err)
	}
	if units.running != "pbx-agent-sshd-tunnel@600.service" || !st.Open || !st.Loopback || st.Port != SSHTunnelUnitPort {
		t.Fatalf("unit %q, state %+v", units.running, st)
	}
	if err := s.Close(ctx); err != nil || units.running != "" {
		t.Fatalf("close: %v, unit %q still running", err, units.running)
	}

	for name, c := range map[string]struct {
		policy SSHPolicy
		req    SSHRequest
		want   string
	}{
		"port mode's port": {UnitSSHPolicy(), SSHRequest{Port: SSHUnitPort, TTL: time.Minute, Loopback: true}, "listens on port 222 only"},
		"another account":  {SSHPolicy{User: "root", Listen: UnitSSHPolicy().Listen}, SSHRequest{Port: SSHTunnelUnitPort, TTL: time.Minute, Loopback: true}, "set ssh.user"},
		"ttl":              {UnitSSHPolicy(), SSHRequest{Port: SSHTunnelUnitPort, TTL: MaxSSHTTL + time.Second, Loopback: true}, "outside 1s to"},
	} {
		s, units := newExec(c.policy)
		if _, err := s.Open(ctx, c.req); err == nil || !strings.Contains(err.Error(), c.want) || units.running != "" {
			t.Errorf("%s: %v (unit %q), want a refusal with %q", name, err, units.running, c.want)
		}
	}
}
