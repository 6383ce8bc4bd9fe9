package integration

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
)

// sshd is the OpenSSH server the child-process mode runs.
const sshd = "/usr/sbin/sshd"

// sshAppliance starts an appliance of portal p whose support SSH runs as a
// child sshd on a free loopback port, letting in the test's own account
// alone, and activates it with key. It returns the appliance and the port.
func sshAppliance(t *testing.T, p *portal, key string) (*appliance, int) {
	t.Helper()
	a := newAppliance(t, "pbx", p, "0s") // 0s: follow the portal's interval
	port := freePort(t)
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	// The test's own account, on loopback alone (127.0.0.2 must not answer).
	a.appendConfig(fmt.Sprintf("ssh:\n  port: %d\n  sshd: %s\n  user: %s\n  listen: [\"127.0.0.1\"]\n", port, sshd, me.Username))
	a.start()
	if r := a.cli(key, "activate"); r.code != 0 {
		t.Fatalf("activate: exit %d: %s", r.code, r.stderr)
	}
	a.waitState("active", 10*time.Second)
	return a, port
}

// TestSSHCommandsWithinSeconds drives support SSH from the portal with the
// heartbeat at its production interval (60 s): ssh-open makes sshd listen
// and a pushed key log in, ssh-close and the TTL close it. Each must take a
// few seconds at most: the long-poll, not the heartbeat, carries them. The
// times are logged; the bound asserted is a third of the heartbeat
// interval, so the test fails if commands wait for a heartbeat.
func TestSSHCommandsWithinSeconds(t *testing.T) {
	if _, err := os.Stat(sshd); err != nil {
		t.Skipf("%s not installed (Debian: openssh-server): %v", sshd, err)
	}
	data := t.TempDir()
	p := startPortal(t, data, freeAddr(t)) // heartbeat interval: the default, 60 s
	key := p.admin("pbx", "create", "--name", "acme.example", "--model", "WPBX-VM", "--term", "monthly", "--users", "uc-premium=5")
	a, port := sshAppliance(t, p, key) // following the portal's 60 s
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	keyFile := filepath.Join(dir, "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "support@example", "-f", keyFile).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	const bound = 20 * time.Second // a third of the heartbeat interval
	var opens, closes, expiries []time.Duration

	for i := range 3 {
		began := time.Now()
		p.admin("command", "acme.example", "ssh-open", "--ttl", "10m", "--pubkey", keyFile+".pub")
		waitPort(t, port, true, bound)
		opens = append(opens, time.Since(began))

		if i == 0 {
			if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.2", strconv.Itoa(port)), time.Second); err == nil {
				c.Close()
				t.Errorf("support sshd answers on 127.0.0.2, configured to listen on 127.0.0.1 alone")
			}
			out, err := exec.Command("ssh", "-i", keyFile, "-p", strconv.Itoa(port), "-o", "BatchMode=yes",
				"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10",
				me.Username+"@127.0.0.1", "echo", "logged-in").CombinedOutput()
			if err != nil || !strings.Contains(string(out), "logged-in") {
				t.Fatalf("logging in with the pushed key: %v: %s", err, out)
			}
			s := a.status()
			if !s.SSH.Open || s.SSH.Port != port || s.SSH.Until == nil || len(s.SSH.HostKeys) == 0 {
				t.Fatalf("status ssh = %+v", s.SSH)
			}
			if !slices.ContainsFunc(s.Commands, func(c apitype.CommandStatus) bool { return c.Type == "ssh.open" && c.State == "done" }) {
				t.Errorf("status commands = %+v", s.Commands)
			}
		}

		began = time.Now()
		p.admin("command", "acme.example", "ssh-close")
		waitPort(t, port, false, bound)
		closes = append(closes, time.Since(began))
	}

	// Expiry: a 2 s TTL closes by itself.
	began := time.Now()
	p.admin("command", "acme.example", "ssh-open", "--ttl", "2s")
	waitPort(t, port, true, bound)
	waitPort(t, port, false, bound)
	expiries = append(expiries, time.Since(began))
	eventually(t, 40*time.Second, "status shows the access closed", func() (bool, string) {
		s := a.status()
		return !s.SSH.Open, fmt.Sprintf("%+v", s.SSH)
	})

	// Every result reached the portal.
	out := p.admin("command", "list", "acme.example")
	if strings.Contains(out, "queued") || strings.Contains(out, "delivered") {
		eventually(t, bound, "every result reported", func() (bool, string) {
			out = p.admin("command", "list", "acme.example")
			return !strings.Contains(out, "queued") && !strings.Contains(out, "delivered"), out
		})
	}
	t.Logf("ssh-open to listening: %v; ssh-close to closed: %v; open with 2s TTL to closed: %v (heartbeat 60 s)", opens, closes, expiries)
}

// waitPort polls until something listens on port (or nothing does).
func waitPort(t *testing.T, port int, listening bool, within time.Duration) {
	t.Helper()
	eventually(t, within, fmt.Sprintf("port %d listening=%v", port, listening), func() (bool, string) {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
		if err == nil {
			c.Close()
		}
		return (err == nil) == listening, fmt.Sprint(err)
	})
}

func freePort(t *testing.T) int {
	t.Helper()
	_, p, err := net.SplitHostPort(freeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// appendConfig adds YAML to the appliance's configuration before start.
func (a *appliance) appendConfig(yaml string) {
	a.t.Helper()
	f, err := os.OpenFile(a.config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		a.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(yaml); err != nil {
		a.t.Fatal(err)
	}
}

// TestCommandsSurviveSIGKILL kills the agent with SIGKILL at random moments
// after an ssh.open is queued (before, during and after it is journaled,
// applied and reported), restarts it, and checks that the command ran at
// most once and that its result reached the portal. sshd is wrapped in a
// script that records each start.
func TestCommandsSurviveSIGKILL(t *testing.T) {
	if _, err := os.Stat(sshd); err != nil {
		t.Skipf("%s not installed (Debian: openssh-server): %v", sshd, err)
	}
	rounds := sized(t, "PBX_COMMAND_KILLS", 8, 100)
	data := t.TempDir()
	p := startPortal(t, data, freeAddr(t))
	key := p.admin("pbx", "create", "--name", "acme.example", "--model", "WPBX-VM", "--term", "monthly", "--users", "uc-premium=5")
	a := newAppliance(t, "pbx", p, "0s")
	dir := t.TempDir()
	runs := filepath.Join(dir, "runs")
	wrapper := filepath.Join(dir, "sshd")
	script := fmt.Sprintf("#!/bin/sh\necho run >> %s\nexec %s \"$@\"\n", runs, sshd)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	a.appendConfig(fmt.Sprintf("ssh:\n  port: %d\n  sshd: %s\n  user: %s\n  listen: [\"127.0.0.1\"]\n", freePort(t), wrapper, me.Username))
	a.start()
	if r := a.cli(key, "activate"); r.code != 0 {
		t.Fatalf("activate: exit %d: %s", r.code, r.stderr)
	}
	a.waitState("active", 10*time.Second)

	countRuns := func() int {
		b, _ := os.ReadFile(runs)
		return strings.Count(string(b), "run\n")
	}
	outcomes := map[string]int{}
	for i := range rounds {
		before := countRuns()
		id := strings.TrimSpace(p.admin("command", "acme.example", "ssh-open", "--ttl", "10m"))
		// A kill anywhere in the first 600 ms: the command is delivered,
		// journaled, applied and reported within that span.
		<-time.After(time.Duration(i*600/rounds) * time.Millisecond)
		a.proc.cmd.Process.Kill()
		<-a.proc.done
		a.start()
		// Exit 1 is a result other than done, which a kill may cause.
		r := p.try("command", "show", "acme.example", id, "--wait", "30s")
		if r.code > 1 {
			t.Fatalf("round %d: command show: exit %d: %s", i, r.code, r.stderr)
		}
		out := r.stdout
		var v struct {
			Result *struct {
				State   string `json:"state"`
				Message string `json:"message"`
			} `json:"result"`
		}
		if err := json.Unmarshal([]byte(out), &v); err != nil || v.Result == nil {
			t.Fatalf("round %d: no result for %s: %v\n%s", i, id, err, out)
		}
		n := countRuns() - before
		if n > 1 {
			t.Fatalf("round %d: the command ran %d times", i, n)
		}
		outcomes[fmt.Sprintf("%s, ran %d", v.Result.State, n)]++
		if r := p.try("command", "acme.example", "ssh-close", "--wait", "30s"); r.code > 1 {
			t.Fatalf("round %d: ssh-close: exit %d: %s", i, r.code, r.stderr)
		}
	}
	t.Logf("%d SIGKILLs: %v (a command never ran twice)", rounds, outcomes)
}
