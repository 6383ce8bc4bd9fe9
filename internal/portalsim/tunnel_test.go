package portalsim

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
	"github.com/pbx-agent/pbx-agent/pkg/tunnel"
)

// tunnelRig is an activated appliance beside a portal, with an echo server
// standing in for its loopback support sshd.
type tunnelRig struct {
	f      *fixture
	a      *testAgent
	target string
}

func newTunnelRig(t *testing.T) *tunnelRig {
	f := newFixture(t)
	_, key := f.createPBX("acme.example", license.ModelVM, license.Monthly, acmeCounts)
	a := newTestAgent(f, license.ModelVM)
	a.activate(key)
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
	return &tunnelRig{f: f, a: a, target: ln.Addr().String()}
}

func (r *tunnelRig) queue(t *testing.T, ssh *protocol.SSHOpen) string {
	t.Helper()
	typ := protocol.CommandSSHOpen
	if ssh == nil {
		typ = protocol.CommandSSHClose
	}
	v, err := r.f.admin.QueueCommand(t.Context(), "acme.example", CommandRequest{Type: typ, SSH: ssh})
	if err != nil {
		t.Fatal(err)
	}
	return v.ID
}

// dial opens the appliance's end of the tunnel for command id.
func (r *tunnelRig) dial(ctx context.Context, id string) (*tunnel.Session, error) {
	return tunnel.Dial(ctx, tunnel.DialConfig{
		URL: r.f.srv.URL + protocol.PathTunnel, Signer: r.a.signer, Keyring: r.f.keyring,
		PBXID: r.a.pbxID, CommandID: id, Now: r.f.portal.Now,
	})
}

// serve dials for id and serves the echo target until the test ends.
func (r *tunnelRig) serve(t *testing.T, id string) <-chan error {
	t.Helper()
	s, err := r.dial(t.Context(), id)
	if err != nil {
		t.Fatalf("dialling the tunnel: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(t.Context(), r.target, tunnel.Events{}) }()
	return served
}

// relay connects as support does, polling until the portal holds the
// tunnel (it registers it just after the upgrade).
func (r *tunnelRig) relay(t *testing.T) net.Conn {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := r.f.admin.Tunnel(t.Context(), "acme.example")
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestTunnelRelaysSupportToTheAppliance(t *testing.T) {
	r := newTunnelRig(t)
	id := r.queue(t, &protocol.SSHOpen{TTL: 3600, Tunnel: true})
	r.serve(t, id)
	for range 2 { // each support connection is a stream of its own
		c := r.relay(t)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "SSH-2.0-support\r\n"); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 17)
		if _, err := io.ReadFull(c, got); err != nil || string(got) != "SSH-2.0-support\r\n" {
			t.Fatalf("read back %q, %v", got, err)
		}
		c.Close()
	}
}

func TestSSHCloseEndsTheTunnel(t *testing.T) {
	r := newTunnelRig(t)
	id := r.queue(t, &protocol.SSHOpen{TTL: 3600, Tunnel: true})
	served := r.serve(t, id)
	c := r.relay(t)
	r.queue(t, nil) // ssh.close
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("a support session survived ssh.close")
	}
	select {
	case err := <-served:
		if err == nil {
			t.Fatal("Serve ended without saying why")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the appliance's end of the tunnel outlived ssh.close")
	}
	_, err := r.f.admin.Tunnel(t.Context(), "acme.example")
	var ae *AdminError
	if !errors.As(err, &ae) || ae.Code != CodeNoTunnel || !strings.Contains(ae.Message, "ssh-open --tunnel") {
		t.Fatalf("relay after close: %v, want a no_tunnel refusal saying how to open one", err)
	}
	// And the closed command grants no new tunnel.
	if _, err := r.dial(t.Context(), id); err == nil || !strings.Contains(err.Error(), "superseded") {
		t.Fatalf("dialling for a closed command: %v, want a refusal", err)
	}
}

func TestTunnelRefusals(t *testing.T) {
	r := newTunnelRig(t)
	plain := r.queue(t, &protocol.SSHOpen{TTL: 3600})
	for name, tc := range map[string]struct{ id, want string }{
		"an ssh.open on the port": {plain, "not a tunnelled ssh.open"},
		"an unknown command":      {"cmd-nothing", `no command "cmd-nothing"`},
	} {
		t.Run(name, func(t *testing.T) {
			s, err := r.dial(t.Context(), tc.id)
			if err == nil {
				s.Close()
				t.Fatal("the portal accepted the tunnel")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "HTTP 403") {
				t.Fatalf("got %v, want a 403 naming %q", err, tc.want)
			}
		})
	}
	t.Run("a device key the portal does not know", func(t *testing.T) {
		id := r.queue(t, &protocol.SSHOpen{TTL: 3600, Tunnel: true})
		stranger := newTestAgent(r.f, license.ModelVM)
		_, err := tunnel.Dial(t.Context(), tunnel.DialConfig{
			URL: r.f.srv.URL + protocol.PathTunnel, Signer: stranger.signer, Keyring: r.f.keyring,
			PBXID: r.a.pbxID, CommandID: id, Now: r.f.portal.Now,
		})
		if err == nil || !strings.Contains(err.Error(), protocol.CodeUnknownDevice) {
			t.Fatalf("got %v, want an unknown_device refusal", err)
		}
	})
	t.Run("past the TTL", func(t *testing.T) {
		id := r.queue(t, &protocol.SSHOpen{TTL: 60, Tunnel: true})
		r.f.clock.Add(DefaultCommandTTL + 2*time.Minute)
		_, err := r.dial(t.Context(), id)
		if err == nil || !strings.Contains(err.Error(), "ended") {
			t.Fatalf("got %v, want a refusal saying the access ended", err)
		}
	})
	t.Run("no tunnel open", func(t *testing.T) {
		_, err := r.f.admin.Tunnel(t.Context(), "acme.example")
		var ae *AdminError
		if !errors.As(err, &ae) || ae.Code != CodeNoTunnel {
			t.Fatalf("got %v, want no_tunnel", err)
		}
	})
}
