package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pbx-agent/pbx-agent/internal/portalsim"
	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// newCommandCmd is `command NAME VERB`: queue a signed command for a PBX,
// list its commands, or wait for one's result.
func newCommandCmd(e *env, client clientFunc) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "command",
		Short: "Queue signed commands for a PBX's appliance (ssh-open, ssh-close, upgrade) and follow them",
		Long: "Queue a signed command for a PBX. A waiting appliance is woken at once and\n" +
			"fetches it with a heartbeat; its result comes back with the next one. The new\n" +
			"command's id is printed on stdout; --wait prints its result instead, once reported.\n\n" +
			"The PBX and the verb may come in either order, with flags anywhere:\n" +
			"`command pbx1 ssh-open` is `command ssh-open pbx1`.\n\n" +
			"With --wait, the exit code says how the command ended: 0 done; 1 refused or\n" +
			"failed by the appliance, or expired before it was fetched (the reason on stderr,\n" +
			"the result on stdout); 2 not queued, or no result within the wait.",
		Args: cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return c.Help()
			}
			return fmt.Errorf("command %s: no verb: say what to do with the PBX, one of ssh-open, ssh-close, upgrade, list, show (e.g. command %s ssh-close)",
				strings.Join(args, " "), args[0])
		},
	}
	var ttl, wait time.Duration
	queue := func(cobraCmd *cobra.Command, ref string, in portalsim.CommandRequest) error {
		if ttl > 0 {
			d := portalsim.Duration(ttl)
			in.TTL = &d
		}
		c, err := client().QueueCommand(cobraCmd.Context(), ref, in)
		if err != nil {
			return err
		}
		if wait <= 0 {
			fmt.Fprintln(e.stdout, c.ID)
			return nil
		}
		c, err = client().Command(cobraCmd.Context(), ref, c.ID, wait)
		if err != nil {
			return err
		}
		if c.Result == nil && c.State != portalsim.CommandExpired {
			return fmt.Errorf("command %s: no result within %v (state %s)", c.ID, wait, c.State)
		}
		if err := printJSON(e, c); err != nil {
			return err
		}
		return commandOutcome(c)
	}
	common := func(c *cobra.Command) *cobra.Command {
		c.Flags().DurationVar(&ttl, "expires-in", 0, "how long the command may wait for the appliance (default 24h)")
		c.Flags().DurationVar(&wait, "wait", 0, "wait up to this long for the result and print it; exit 1 if refused, failed or expired")
		return c
	}

	var sshTTL time.Duration
	var port int
	var pubkeys []string
	var viaTunnel bool
	open := common(&cobra.Command{
		Use:   "ssh-open NAME",
		Short: "Open temporary support SSH (port 2222 by default, or --tunnel) for --ttl with the --pubkey keys",
		Long: "Open temporary support SSH for --ttl, letting in the keys of the --pubkey files and\n" +
			"no others. Without --pubkey the port opens but nobody can log in (a warning says so).\n\n" +
			"With --tunnel nothing opens inbound: the appliance's sshd listens on loopback and the\n" +
			"agent dials the portal, which relays support's sessions (pbx-portal-sim tunnel NAME).",
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			in := portalsim.CommandRequest{Type: protocol.CommandSSHOpen,
				SSH: &protocol.SSHOpen{Port: port, TTL: license.Seconds(sshTTL / time.Second), Tunnel: viaTunnel}}
			if viaTunnel && port != 0 {
				return fmt.Errorf("--tunnel with --port %d: a tunnel names no port (the appliance's sshd listens on loopback); drop --port", port)
			}
			if sshTTL%time.Second != 0 || sshTTL < time.Second {
				return fmt.Errorf("--ttl %v: give whole seconds, at least 1s", sshTTL)
			}
			for _, f := range pubkeys {
				b, err := os.ReadFile(f)
				if err != nil {
					return fmt.Errorf("--pubkey: %w", err)
				}
				for _, line := range strings.Split(string(b), "\n") {
					if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
						in.SSH.PublicKeys = append(in.SSH.PublicKeys, line)
					}
				}
			}
			if len(in.SSH.PublicKeys) == 0 {
				// Kept for tests of the listener alone; the agent accepts
				// only the keys a command pushes.
				fmt.Fprintln(e.stderr, "pbx-portal-sim: warning: no support key is pushed (give --pubkey FILE): the port opens, but nobody can log in")
			}
			return queue(c, args[0], in)
		},
	})
	open.Flags().DurationVar(&sshTTL, "ttl", portalsim.DefaultSSHTTL, "how long access stays open (at most 24h)")
	open.Flags().IntVar(&port, "port", 0, "the port (default: the appliance's, 2222)")
	open.Flags().StringArrayVar(&pubkeys, "pubkey", nil, "a file of support public keys in authorized_keys format (repeatable)")
	open.Flags().BoolVar(&viaTunnel, "tunnel", false, "relay access through the portal; nothing opens inbound on the appliance")

	closeCmd := common(&cobra.Command{
		Use:   "ssh-close NAME",
		Short: "Close temporary support SSH, ending its sessions",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return queue(c, args[0], portalsim.CommandRequest{Type: protocol.CommandSSHClose})
		},
	})

	var version, repo string
	var start, end string
	upgrade := common(&cobra.Command{
		Use:   "upgrade NAME --version V",
		Short: "Upgrade the PBX's management software (WMS) in a maintenance window",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			w := &protocol.WMSUpgrade{Version: version, Repository: repo}
			// "now" is the portal's, which the agent follows, not this machine's.
			clk, err := client().Clock(c.Context())
			if err != nil {
				return err
			}
			now := clk.Now.UTC().Truncate(time.Second)
			if w.WindowStart, err = parseWhen(start, now); err != nil {
				return fmt.Errorf("--window-start: %w", err)
			}
			if w.WindowEnd, err = parseWhen(end, now); err != nil {
				return fmt.Errorf("--window-end: %w", err)
			}
			return queue(c, args[0], portalsim.CommandRequest{Type: protocol.CommandWMSUpgrade, WMS: w})
		},
	})
	upgrade.Flags().StringVar(&version, "version", "", "target version, major.minor.YYYYMMDD.build")
	upgrade.Flags().StringVar(&repo, "repo", "rel01", "repository name, relNN")
	upgrade.Flags().StringVar(&start, "window-start", "now", "window start: RFC 3339 UTC, or now, or now+DURATION (the portal's clock)")
	upgrade.Flags().StringVar(&end, "window-end", "now+2h", "window end: RFC 3339 UTC, or now+DURATION (the portal's clock)")
	upgrade.MarkFlagRequired("version")

	var asJSON bool
	list := &cobra.Command{
		Use:   "list NAME",
		Short: "List a PBX's queued and recent commands with their results",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cmds, err := client().Commands(c.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(e, cmds)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tTYPE\tSTATE\tISSUED\tRESULT")
			for _, c := range cmds {
				res := "-"
				if r := c.Result; r != nil {
					res = strings.TrimSpace(r.Reason + " " + r.Message)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.ID, c.Type, c.State, c.IssuedAt.Format(time.RFC3339), res)
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print the admin API's JSON")

	var showWait time.Duration
	show := &cobra.Command{
		Use:   "show NAME ID",
		Short: "Show one command as JSON; --wait for its result",
		Args:  cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			v, err := client().Command(c.Context(), args[0], args[1], showWait)
			if err != nil {
				return err
			}
			if err := printJSON(e, v); err != nil || showWait <= 0 {
				return err
			}
			return commandOutcome(v)
		},
	}
	show.Flags().DurationVar(&showWait, "wait", 0, "wait up to this long for the result; exit 1 if refused, failed or expired")

	cmd.AddCommand(open, closeCmd, upgrade, list, show)
	return cmd
}

// parseWhen reads "now", "now+DURATION" or an RFC 3339 time.
func parseWhen(s string, now time.Time) (time.Time, error) {
	switch {
	case s == "now":
		return now, nil
	case strings.HasPrefix(s, "now+"):
		d, err := time.ParseDuration(strings.TrimPrefix(s, "now+"))
		if err != nil {
			return time.Time{}, err
		}
		return now.Add(d), nil
	}
	return time.Parse(time.RFC3339, s)
}

func printJSON(e *env, v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// commandOutcome is nil for a command done, or the exit-1 error that says
// how it ended otherwise.
func commandOutcome(c *portalsim.CommandView) error {
	if c.State == portalsim.CommandExpired && c.Result == nil {
		return &exitError{code: 1, err: fmt.Errorf("command %s expired at %s before its appliance fetched it",
			c.ID, c.ExpiresAt.UTC().Format(time.RFC3339))}
	}
	if c.Result == nil {
		return fmt.Errorf("command %s: no result yet (state %s)", c.ID, c.State)
	}
	r := c.Result
	switch r.State {
	case protocol.CommandDone:
		return nil
	case protocol.CommandRefused:
		return &exitError{code: 1, err: fmt.Errorf("command %s was refused by the appliance (%s): %s", c.ID, r.Reason, r.Message)}
	}
	return &exitError{code: 1, err: fmt.Errorf("command %s %s on the appliance: %s", c.ID, r.State, r.Message)}
}
