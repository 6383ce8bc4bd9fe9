package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/internal/portalsim"
	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
	"github.com/pbx-agent/pbx-agent/pkg/tunnel"
)

const supportKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl support@example"

// activateAppliance binds PBX name to a new device key, as an agent's
// activation does, and returns the key and the PBX id.
func activateAppliance(t *testing.T, url, name, key string) (*license.Signer, string) {
	t.Helper()
	dev, err := protocol.NewDeviceKey()
	if err != nil {
		t.Fatal(err)
	}
	req := protocol.ActivateRequest{
		Request: protocol.Request{Time: realNow, Nonce: "activate-" + name},
		Key:     key, DeviceKey: dev.Public(), Fingerprint: "fp-test", Model: license.ModelVM, AgentVersion: "test",
	}
	signed, err := dev.Sign(protocol.TypeActivate, req)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(url+protocol.PathActivate, protocol.ContentType, strings.NewReader(signed))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("activation: %s", resp.Status)
	}
	p, err := portalsim.NewClient(url).PBX(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	return dev, p.ID
}

func TestCLITunnel(t *testing.T) {
	url, dir := startServe(t)
	cli := cliOn(t, url)
	code, key, errs := cli("pbx", "create", "--name", "acme.example", "--model", "wpbx-vm", "--users", "uc-premium=1")
	if code != 0 {
		t.Fatal(errs)
	}
	pub := filepath.Join(t.TempDir(), "support.pub")
	if err := os.WriteFile(pub, []byte(supportKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"tunnel", "acme.example"}, "no tunnel is open for PBX \"acme.example\": queue `pbx-portal-sim command acme.example ssh-open --tunnel"},
		{[]string{"tunnel", "acme.example", "--listen", "127.0.0.1:0"}, "no tunnel is open"},
		{[]string{"tunnel", "acme.example", "--listen", "0.0.0.0:2222"}, "listen on a loopback address"},
		{[]string{"command", "acme.example", "ssh-open", "--tunnel", "--port", "2222"}, "a tunnel names no port"},
	} {
		if code, out, errs := cli(tt.args...); code != 2 || out != "" || !strings.Contains(errs, tt.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 naming %q", tt.args, code, out, errs, tt.want)
		}
	}

	dev, pbxID := activateAppliance(t, url, "acme.example", strings.TrimSpace(key))
	code, out, errs := cli("command", "acme.example", "ssh-open", "--tunnel", "--ttl", "30m", "--pubkey", pub)
	if code != 0 {
		t.Fatalf("ssh-open --tunnel: %s", errs)
	}
	id := strings.TrimSpace(out)
	var list []portalsim.CommandView
	_, out, _ = cli("command", "list", "acme.example", "--json")
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 || !list[0].Tunnel {
		t.Fatalf("command list after ssh-open --tunnel: %v %s", err, out)
	}

	// The appliance's end, serving an echo server as its sshd.
	kr, err := license.LoadKeyring(filepath.Join(dir, "keyring"))
	if err != nil {
		t.Fatal(err)
	}
	sess, err := tunnel.Dial(t.Context(), tunnel.DialConfig{URL: url + protocol.PathTunnel, Signer: dev, Keyring: func() *license.Keyring { return kr },
		PBXID: pbxID, CommandID: id, Now: func() time.Time { return realNow }})
	if err != nil {
		t.Fatalf("dialling the tunnel: %v", err)
	}
	go sess.Serve(t.Context(), echoServer(t), tunnel.Events{})
	// The portal registers the tunnel just after the upgrade it answered.
	for deadline := time.Now().Add(10 * time.Second); portalsim.NewClient(url).TunnelOpen(t.Context(), "acme.example") != nil; {
		if time.Now().After(deadline) {
			t.Fatal("the portal never held the tunnel")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// stdio, as ssh's ProxyCommand runs it.
	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- execute(context.Background(), []string{"--portal", url, "tunnel", "acme.example"},
			&env{stdin: stdinR, stdout: stdoutW, stderr: &stderr})
		stdoutW.Close()
	}()
	go io.WriteString(stdinW, "SSH-2.0-support\r\n")
	line, err := bufio.NewReader(stdoutR).ReadString('\n')
	if err != nil || line != "SSH-2.0-support\r\n" {
		t.Fatalf("through the tunnel: %q, %v (stderr %q)", line, err, stderr.String())
	}
	stdinW.Close() // ssh exits
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("tunnel exited %d: %s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("tunnel outlived its stdin")
	}
}

// echoServer stands in for the appliance's support sshd.
func echoServer(t *testing.T) string {
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
	return ln.Addr().String()
}
