package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/pbx-agent/pbx-agent/agent"
	"github.com/pbx-agent/pbx-agent/pkg/actions"
	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// sshFor chooses how the daemon opens support SSH: under systemd, the
// pbx-agent-sshd@<ttl>.service unit over D-Bus (production); else ssh.sshd
// as a supervised child process. It returns the choice in words.
func sshFor(cfg agent.Config, log *slog.Logger, getenv func(string) string) (agent.SSHAccess, string) {
	log = log.With("component", "ssh")
	dir := filepath.Join(cfg.RuntimeDir, "ssh")
	if underSystemd(getenv) {
		return actions.NewSystemdSSH(actions.DialSSHUnits, dir, "/etc/ssh/ssh_host_*_key.pub", cfg.SSH.Policy(), log),
			"systemd: " + actions.SSHUnitPattern + ", " + actions.SSHTunnelUnitPattern
	}
	return actions.NewProcessSSH(cfg.SSH.Sshd, dir, cfg.SSH.Policy(), log), "child process " + cfg.SSH.Sshd
}

// newSSHCmd is `ssh status` and `ssh close`, for the local admin.
func newSSHCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "ssh", Short: "Temporary support SSH access opened by the portal"}
	var asJSON bool
	status := &cobra.Command{
		Use:   "status",
		Short: "Show whether support SSH is open, on which port, until when",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := a.daemonStatus(cmd.Context(), "GET", "/v1/status")
			if err != nil {
				return err
			}
			return printSSH(a.stdout, st, asJSON)
		},
	}
	status.Flags().BoolVar(&asJSON, "json", false, "print the status's ssh object as JSON")
	closeCmd := &cobra.Command{
		Use:   "close",
		Short: "Close support SSH now, ending every session (root or api.write_groups)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := a.daemonStatus(cmd.Context(), "POST", "/v1/ssh/close")
			if err != nil {
				return err
			}
			return printSSH(a.stdout, st, false)
		},
	}
	cmd.AddCommand(status, closeCmd)
	return cmd
}

func (a *app) daemonStatus(ctx context.Context, method, path string) (apitype.Status, error) {
	var st apitype.Status
	c, err := a.apiClient()
	if err != nil {
		return st, err
	}
	if err := c.do(ctx, method, path, nil, &st); err != nil {
		return st, exitFor(err)
	}
	return st, nil
}

// printSSH prints the access; the time left is counted on the licence
// clock the status states, like the end itself.
func printSSH(w io.Writer, st apitype.Status, asJSON bool) error {
	s := st.SSH
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	}
	if !s.Open {
		_, err := fmt.Fprintf(w, "SSH: closed (port %d when open)\n", s.Port)
		return err
	}
	until := "no end known"
	if s.Until != nil {
		now := st.Clock.Now
		if now.IsZero() {
			now = time.Now()
		}
		until = "until " + s.Until.UTC().Format(time.RFC3339) + " (" + license.Relative(*s.Until, now) + ")"
	}
	if t := s.Tunnel; t != nil {
		fmt.Fprintf(w, "SSH: open through the portal's tunnel (sshd on 127.0.0.1:%d), %s\n", s.Port, until)
		fmt.Fprintf(w, "  tunnel %s", t.Summary())
		if t.Since != nil {
			fmt.Fprintf(w, ", since %s", t.Since.UTC().Format(time.RFC3339))
		}
		fmt.Fprintln(w)
	} else {
		fmt.Fprintf(w, "SSH: open on port %d, %s\n", s.Port, until)
	}
	for _, k := range s.HostKeys {
		fmt.Fprintf(w, "  host key %s\n", k)
	}
	if s.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", s.Error)
	}
	return nil
}
