package portalsim

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// TestCommandsRefusedBeforeSigning: what the agent would refuse is refused
// by the portal before it signs anything, with the agent's reason; a test
// may still have it signed, unchecked, to exercise the agent.
func TestCommandsRefusedBeforeSigning(t *testing.T) {
	f := newFixture(t)
	f.createPBX("acme.example", license.ModelVM, license.Monthly, acmeCounts)
	ctx := context.Background()
	now := f.portal.Now()
	upgrade := func(version, repo string, start, end time.Time) CommandRequest {
		return CommandRequest{Type: protocol.CommandWMSUpgrade,
			WMS: &protocol.WMSUpgrade{Version: version, Repository: repo, WindowStart: start, WindowEnd: end}}
	}
	ssh := func(ttl time.Duration, port int, keys ...string) CommandRequest {
		return CommandRequest{Type: protocol.CommandSSHOpen,
			SSH: &protocol.SSHOpen{TTL: license.Seconds(ttl / time.Second), Port: port, PublicKeys: keys}}
	}
	tests := []struct {
		name string
		in   CommandRequest
		want string
	}{
		{"malformed version", upgrade("7.3.x.1", "rel07", now, now.Add(time.Hour)), "not a WMS version"},
		{"version with a date that is none", upgrade("7.03.20261399.1", "rel07", now, now.Add(time.Hour)), "not a calendar date"},
		{"repository", upgrade("7.03.20261120.1", "stable", now, now.Add(time.Hour)), "not a WMS repository name"},
		{"window over", upgrade("7.03.20261120.1", "rel07", now.Add(-2*time.Hour), now.Add(-time.Hour)), "maintenance window ended"},
		{"window backwards", upgrade("7.03.20261120.1", "rel07", now.Add(time.Hour), now), "end is after its start"},
		{"ssh ttl 25h", ssh(25*time.Hour, 0), "ttl_seconds 90000 is outside"},
		{"ssh privileged port", ssh(time.Hour, 22), "outside 1024-65535"},
		{"ssh key with options", ssh(time.Hour, 0, `command="/bin/sh" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl x`), "options"},
		{"close with parameters", CommandRequest{Type: protocol.CommandSSHClose, SSH: &protocol.SSHOpen{TTL: 60}}, "takes no parameters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.admin.QueueCommand(ctx, "acme.example", tt.in)
			var ae *AdminError
			if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest ||
				!strings.Contains(ae.Message, "refused before signing") || !strings.Contains(ae.Message, tt.want) {
				t.Errorf("got %v; want a 400 refused before signing, naming %q", err, tt.want)
			}
		})
	}
	if cmds, err := f.admin.Commands(ctx, "acme.example"); err != nil || len(cmds) != 0 {
		t.Fatalf("commands after the refusals: %+v, %v; want none queued", cmds, err)
	}

	ok := upgrade("7.03.20261120.1", "rel07", now, now.Add(2*time.Hour))
	if _, err := f.admin.QueueCommand(ctx, "acme.example", ok); err != nil {
		t.Errorf("a valid upgrade: %v", err)
	}
	unchecked := upgrade("7.3.x.1", "rel07", now, now.Add(time.Hour))
	unchecked.Unchecked = true
	c, err := f.admin.QueueCommand(ctx, "acme.example", unchecked)
	if err != nil {
		t.Fatalf("an unchecked upgrade: %v", err)
	}
	signed, err := f.portal.SignedCommand("acme.example", c.ID)
	if err != nil {
		t.Fatal(err)
	}
	got, err := protocol.VerifyCommand(signed, f.keyring(), f.show("acme.example").ID, now)
	if err != nil || got.WMS.Version != "7.3.x.1" {
		t.Errorf("the unchecked command as signed: %+v, %v", got, err)
	}
	// Unchecked still keeps the command format: a 25 h SSH stays refused.
	bad := ssh(25*time.Hour, 0)
	bad.Unchecked = true
	if _, err := f.admin.QueueCommand(ctx, "acme.example", bad); err == nil {
		t.Error("an unchecked ssh.open of 25 h was signed")
	}
}
