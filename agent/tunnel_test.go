package agent

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/internal/portalsim"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
	"github.com/pbx-agent/pbx-agent/pkg/tunnel"
)

// echoSSHD stands in for the loopback sshd: it echoes what it reads.
func echoSSHD(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// openTunnel has the portal queue a tunnelled ssh.open and the agent apply
// it, and waits for the tunnel to connect.
func (cr *commandRig) openTunnel(t *testing.T) string {
	t.Helper()
	cr.ssh.loopbackPort = echoSSHD(t)
	id := cr.queue(t, portalsim.CommandRequest{Type: protocol.CommandSSHOpen, SSH: &protocol.SSHOpen{TTL: 600, Tunnel: true}})
	cr.cycle(t)
	if v := cr.portalView(t, id); v.Result == nil || v.Result.State != protocol.CommandDone {
		t.Fatalf("portal sees %+v, want done", v.Result)
	}
	eventually(t, 10*time.Second, "the tunnel connects", func() bool {
		tun := cr.a.Status().SSH.Tunnel
		return tun != nil && tun.Connected
	})
	return id
}

// session starts a support session through the portal's relay and checks
// that it reaches the stand-in sshd.
func (cr *commandRig) session(t *testing.T) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := cr.admin.Tunnel(ctx, cr.pbx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("echo through the tunnel: %q %v", buf, err)
	}
	return c
}

// ended asserts that the session ends: a read returns an error soon.
func ended(t *testing.T, c net.Conn, why string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := c.Read(make([]byte, 1))
	if err == nil || errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("%s: the session still runs (%v)", why, err)
	}
}

// TestTunnelRelaysSessionsUntilClosed opens access in tunnel mode: the
// loopback sshd is asked for, the agent dials the portal, a session
// through the portal's relay reaches sshd and is counted in the status,
// and ssh.close from the portal ends it and the tunnel. Each session's
// start and end, with its bytes, is in the audit log.
func TestTunnelRelaysSessionsUntilClosed(t *testing.T) {
	cr := newCommandRig(t)
	id := cr.openTunnel(t)
	st := cr.a.Status().SSH
	if !st.Open || st.Port != cr.ssh.loopbackPort || st.Tunnel.Command != id || st.Tunnel.Since == nil {
		t.Fatalf("status ssh = %+v, tunnel %+v", st, st.Tunnel)
	}
	if cr.ssh.current().Port == cr.cfg.SSH.Port || !cr.ssh.current().Loopback {
		t.Fatalf("sshd asked for %+v, want tunnel mode", cr.ssh.current())
	}

	c := cr.session(t)
	eventually(t, 5*time.Second, "the status counts the session", func() bool {
		tun := cr.a.Status().SSH.Tunnel
		return tun != nil && tun.Sessions == 1 && tun.SessionsTotal == 1
	})

	cr.queue(t, portalsim.CommandRequest{Type: protocol.CommandSSHClose})
	cr.cycle(t)
	ended(t, c, "ssh.close")
	if st := cr.a.Status().SSH; st.Open || st.Tunnel != nil {
		t.Fatalf("status after ssh.close: %+v", st)
	}
	var starts, ends int
	for _, e := range auditOf(t, cr.cfg.StateDir, auditSSHSession) {
		if e.Fields["command"] != id {
			t.Errorf("session event of command %v, want %s", e.Fields["command"], id)
		}
		switch e.Fields["action"] {
		case "start":
			starts++
		case "end":
			ends++
			if e.Fields["bytes_in"] != float64(5) || e.Fields["bytes_out"] != float64(5) {
				t.Errorf("session end %+v, want 5 bytes each way", e.Fields)
			}
		}
	}
	if starts != 1 || ends != 1 {
		t.Errorf("audit: %d session starts, %d ends, want 1 each", starts, ends)
	}
	closes := auditOf(t, cr.cfg.StateDir, auditSSH)
	if last := closes[len(closes)-1]; last.Fields["action"] != "close" || last.Fields["tunnel"] != true {
		t.Errorf("last ssh event %+v, want the tunnel's close", last.Fields)
	}
}

// TestTunnelRefusesStreamsOverTheCap: the portal opens more streams than
// the agent allows at once; the one over is closed and audited as refused.
func TestTunnelRefusesStreamsOverTheCap(t *testing.T) {
	cr := newCommandRig(t)
	cr.a.ssh.tun.limits = tunnel.Limits{MaxStreams: 1}
	cr.openTunnel(t)
	cr.session(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	over, err := cr.admin.Tunnel(ctx, cr.pbx)
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	ended(t, over, "a stream over the cap")
	eventually(t, 5*time.Second, "the refusal is audited", func() bool {
		for _, e := range auditOf(t, cr.cfg.StateDir, auditSSHSession) {
			if e.Fields["action"] == "refused" && strings.Contains(e.Fields["reason"].(string), "the most allowed") {
				return true
			}
		}
		return false
	})
	if tun := cr.a.Status().SSH.Tunnel; tun == nil || tun.Refused != 1 || tun.Sessions != 1 {
		t.Fatalf("status tunnel %+v, want one session and one refusal", tun)
	}
}

// TestTunnelEnds covers the other ends of a tunnel: a licence that stops
// the PBX, the agent's exit, and a restart that finds a tunnel-mode sshd
// whose tunnel died with the agent before it. Each ends the session and
// closes the loopback sshd.
func TestTunnelEnds(t *testing.T) {
	t.Run("licence stopped", func(t *testing.T) {
		cr := newCommandRig(t)
		cr.openTunnel(t)
		c := cr.session(t)
		cr.a.ssh.stops = func() bool { return true }
		cr.a.ssh.refresh(context.Background())
		ended(t, c, "a stopped licence")
		if st := cr.a.Status().SSH; st.Open || cr.ssh.current().Open {
			t.Fatalf("status %+v, sshd %+v: want closed", st, cr.ssh.current())
		}
		// And a new tunnel is refused while the licence stops the PBX.
		id := cr.queue(t, portalsim.CommandRequest{Type: protocol.CommandSSHOpen, SSH: &protocol.SSHOpen{TTL: 600, Tunnel: true}})
		cr.cycle(t)
		if v := cr.portalView(t, id); v.Result == nil || v.Result.State != protocol.CommandRefused ||
			!strings.Contains(v.Result.Message, "licence stops this PBX") {
			t.Fatalf("tunnel asked while stopped: %+v, want refused", v.Result)
		}
	})
	t.Run("agent exit", func(t *testing.T) {
		cr := newCommandRig(t)
		cr.openTunnel(t)
		c := cr.session(t)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { cr.a.ssh.loop(ctx); close(done) }()
		cancel()
		<-done
		ended(t, c, "the agent's exit")
		if cr.ssh.current().Open {
			t.Fatal("the loopback sshd outlives the agent's exit")
		}
	})
	t.Run("restart", func(t *testing.T) {
		cr := newCommandRig(t)
		cr.openTunnel(t)
		c := cr.session(t)
		cr.a.ssh.tun.end() // the agent died: its relay with it
		ended(t, c, "the agent's death")
		cr.a = cr.start(t)
		if tun := cr.a.Status().SSH.Tunnel; tun != nil && tun.Open {
			t.Fatalf("a new agent shows a tunnel it does not run: %+v", tun)
		}
		cr.a.ssh.refresh(context.Background())
		if cr.ssh.current().Open {
			t.Fatal("a restarted agent left the dead tunnel's sshd open")
		}
		last := auditOf(t, cr.cfg.StateDir, auditSSH)
		if e := last[len(last)-1]; e.Fields["action"] != "close" || !strings.Contains(e.Fields["why"].(string), "ended with the agent") {
			t.Errorf("last ssh event %+v, want a close naming the restart", e.Fields)
		}
	})
}

// TestTunnelDownShowsWhy: the portal ends the tunnel on its side (an
// ssh.close the agent has not applied yet) and refuses it from then on;
// the status says the tunnel is down, and why, while the access lasts.
func TestTunnelDownShowsWhy(t *testing.T) {
	cr := newCommandRig(t)
	cr.openTunnel(t)
	c := cr.session(t)
	cr.queue(t, portalsim.CommandRequest{Type: protocol.CommandSSHClose}) // queued, not yet delivered
	ended(t, c, "the portal ending the tunnel")
	eventually(t, 10*time.Second, "the status shows the tunnel down", func() bool {
		tun := cr.a.Status().SSH.Tunnel
		return tun != nil && !tun.Connected && strings.Contains(tun.LastError, "superseded")
	})
	if st := cr.a.Status().SSH; !st.Open {
		t.Fatalf("the access closed before the agent applied ssh.close: %+v", st)
	}
}
