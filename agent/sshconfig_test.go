package agent

import (
	"strings"
	"testing"
)

// TestSSHConfig refuses an ssh.user that would widen sshd's AllowUsers, an
// ssh.listen that is not IP addresses and an ssh.tunnel_port that is not
// privileged, naming the key.
func TestSSHConfig(t *testing.T) {
	for _, c := range []struct {
		name    string
		edit    func(*SSHConfig)
		wantErr string // "" valid
	}{
		{"the defaults: the unit's", func(*SSHConfig) {}, ""},
		{"loopback for a test", func(s *SSHConfig) { s.User, s.Listen = "builder", []string{"127.0.0.1", "::1"} }, ""},
		{"a pattern", func(s *SSHConfig) { s.User = "*" }, "ssh.user"},
		{"two accounts", func(s *SSHConfig) { s.User = "pbx-support root" }, "ssh.user"},
		{"a user at a host", func(s *SSHConfig) { s.User = "pbx-support@192.0.2.1" }, "ssh.user"},
		{"no account", func(s *SSHConfig) { s.User = "" }, "ssh.user"},
		{"no address", func(s *SSHConfig) { s.Listen = nil }, "ssh.listen"},
		{"a host name", func(s *SSHConfig) { s.Listen = []string{"localhost"} }, "ssh.listen"},
		{"an address with a port", func(s *SSHConfig) { s.Listen = []string{"127.0.0.1:2222"} }, "ssh.listen"},
		// A port a local user may bind: that user would get support's
		// session if it bound the port before sshd.
		{"an unprivileged tunnel port", func(s *SSHConfig) { s.TunnelPort = 2222 }, "ssh.tunnel_port"},
		{"tunnel port 1024", func(s *SSHConfig) { s.TunnelPort = 1024 }, "ssh.tunnel_port"},
		{"no tunnel port", func(s *SSHConfig) { s.TunnelPort = 0 }, "ssh.tunnel_port"},
		{"another privileged tunnel port", func(s *SSHConfig) { s.TunnelPort = 1023 }, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			c.edit(&cfg.SSH)
			err := cfg.Validate()
			switch {
			case c.wantErr == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), "config "+c.wantErr)):
				t.Errorf("Validate: %v, want an error naming %s", err, c.wantErr)
			}
		})
	}
}
