package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pbx-agent/pbx-agent/internal/portalsim"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// clientFunc gives the admin client for the --portal flag as parsed.
type clientFunc func() *portalsim.Client

func newPBXCmd(e *env, client clientFunc) *cobra.Command {
	pbx := &cobra.Command{Use: "pbx", Short: "Manage the simulator's PBXs (by name or id)"}
	pbx.AddCommand(newPBXCreateCmd(e, client), newPBXKeyCmd(e, client))
	pbx.AddCommand(newPBXOfflineCmds(e, client)...)

	var listJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List every PBX, deleted ones included",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pbxs, err := client().ListPBXs(cmd.Context())
			if err != nil {
				return err
			}
			if listJSON {
				if pbxs == nil {
					pbxs = []portalsim.PBX{}
				}
				return printJSON(e, portalsim.PBXList{PBXs: pbxs}) // command.go
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tID\tMODEL\tTERM\tREV\tSTATUS\tDEVICE\tLAST HEARTBEAT\tPROFILES")
			for _, p := range pbxs {
				dev, hb := "-", "-"
				if p.Device != nil {
					dev = p.Device.ID
				}
				if p.LastHeartbeat != nil {
					hb = p.LastHeartbeat.Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n",
					p.Name, p.ID, p.Model, p.Term, p.Revision, status(p), dev, hb, p.Profiles)
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&listJSON, "json", false, "print the admin API's JSON: {\"pbxs\": [...]}, as pbx show --json shows each")
	pbx.AddCommand(list)

	var asJSON bool
	show := &cobra.Command{
		Use:   "show NAME",
		Short: "Show a PBX: licence, binding, last heartbeat",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := client().PBX(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(e, p) // command.go
			}
			return printPBX(e.stdout, p)
		},
	}
	show.Flags().BoolVar(&asJSON, "json", false, "print the admin API's JSON")
	pbx.AddCommand(show)

	var terms licenceTermFlags
	licenses := &cobra.Command{
		Use:   "licenses NAME [PROFILE=COUNT...] [flags]",
		Short: "Change licence counts and terms; what is not named keeps its value",
		Long: "Change licence counts and terms. The change names only the profiles and terms it\n" +
			"changes; the others keep theirs. A real change makes a new licence revision, which\n" +
			"the PBX receives with its next heartbeat.\n\n" +
			"The portal's rules apply: no count may decrease on the last day of a month (the\n" +
			"whole change is refused); a change less than 2 days before the term ends is taken\n" +
			"with a warning (on stderr); every count at zero starts the countdown (stopped\n" +
			"after 5 calendar days, deleted after 14), and a licence added back clears it.\n\n" +
			"Terms: --higher-covers-lower lets a free licence of a higher profile hold a user of\n" +
			"a lower one; --soft-overage 1.1:72h admits up to 1.1 times each count for 72 hours\n" +
			"of the portal's clock (none withdraws it); --offline-grace, --heartbeat-tolerance\n" +
			"and --lapse-grace take a duration such as 10d or 5m, or default for the agent's own.",
		Example: "  pbx-portal-sim pbx licenses acme.example uc-premium=20\n" +
			"  pbx-portal-sim pbx licenses acme.example --higher-covers-lower --soft-overage 1.1:3d --offline-grace 2d",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			counts, err := parseUsers("", args[1:])
			if err != nil {
				return err
			}
			t, err := terms.terms(cmd)
			if err != nil {
				return err
			}
			if len(counts) == 0 && t == (portalsim.LicenceTerms{}) {
				return errors.New("name a change: PROFILE=COUNT pairs, or a term such as --soft-overage 1.1:72h (see --help)")
			}
			res, err := client().ChangeLicenses(cmd.Context(), args[0], portalsim.LicenseChange{Profiles: counts, LicenceTerms: t})
			if err != nil {
				return err
			}
			note := ""
			if !res.Changed {
				note = " (unchanged)"
			}
			for _, w := range res.Warnings {
				fmt.Fprintf(e.stderr, "pbx-portal-sim: warning: %s\n", w)
			}
			line := fmt.Sprintf("%s: revision %d%s: %s", res.PBX.Name, res.PBX.Revision, note, res.PBX.Profiles)
			if d := describeTerms(res.PBX); d != "" {
				line += "; " + d
			}
			if _, err := fmt.Fprintln(e.stdout, line); err != nil {
				return err
			}
			if res.PBX.StopAt != nil && res.Changed {
				_, err = fmt.Fprintf(e.stdout, "%s: every licence is at zero: stops at %s, deleted at %s unless a licence is added back\n",
					res.PBX.Name, res.PBX.StopAt.UTC().Format(time.RFC3339), res.PBX.DeleteAt.UTC().Format(time.RFC3339))
			}
			return err
		},
	}
	terms.register(licenses)
	pbx.AddCommand(licenses)

	for _, suspend := range []bool{true, false} {
		use, short, long := "suspend NAME", "Suspend a PBX's licence: its appliance lapses",
			"Suspend a PBX's licence in a new revision: its appliance admits no new users, and\n"+
				"stops its telephony once the licence's lapse grace (default 14 days) is over."
		if !suspend {
			use, short, long = "resume NAME", "Lift a suspension", "Lift a PBX's suspension in a new revision."
		}
		pbx.AddCommand(&cobra.Command{
			Use: use, Short: short, Long: long,
			Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				call := client().Resume
				if suspend {
					call = client().Suspend
				}
				res, err := call(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				state, note := "active", ""
				if res.PBX.Suspended {
					state = "suspended"
				}
				if !res.Changed {
					note = " (unchanged)"
				}
				_, err = fmt.Fprintf(e.stdout, "%s: revision %d%s: %s\n", res.PBX.Name, res.PBX.Revision, note, state)
				return err
			},
		})
	}

	pbx.AddCommand(&cobra.Command{
		Use:   "rebind NAME",
		Short: "Release a PBX from its appliance (hardware replacement); print its new key",
		Long: "Release a PBX from its appliance, as for a hardware replacement: the old appliance's\n" +
			"next heartbeat is told, in a signed answer, that the PBX was re-bound. A new PBX\n" +
			"key is printed alone on standard output (what happened goes to standard error);\n" +
			"the next activation with it, from any appliance, binds the PBX. The previous key\n" +
			"no longer activates anything.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := client().Rebind(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintln(e.stdout, res.Key); err != nil {
				return err
			}
			if res.UnboundDevice == "" {
				fmt.Fprintf(e.stderr, "%s: not bound to any appliance; the new key (on stdout) binds the next one\n", res.PBX.Name)
				return nil
			}
			fmt.Fprintf(e.stderr, "%s: released from appliance %s; the new key (on stdout) binds the next one\n", res.PBX.Name, res.UnboundDevice)
			return nil
		},
	})

	pbx.AddCommand(&cobra.Command{
		Use:   "resync NAME",
		Short: "Accept a PBX's appliance again after two copies of it were refused",
		Long: "When two copies of an appliance (a cloned VM, a copied state folder) both heartbeat,\n" +
			"the portal refuses them and the PBX lapses. Once only one copy is left, resync lets\n" +
			"the bound appliance in again: its next heartbeat starts the heartbeat chain afresh.\n" +
			"A re-bind (pbx rebind) with a fresh activation does the same for a new appliance.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := client().Resync(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(e.stdout, "%s: heartbeat chain resynced; the next heartbeat of its appliance starts it again\n", p.Name)
			return err
		},
	})

	pbx.AddCommand(&cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a PBX: its appliance is told it is gone",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := client().Delete(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(e.stdout, "%s (%s): deleted\n", p.Name, p.ID)
			return err
		},
	})
	return pbx
}

func newPBXCreateCmd(e *env, client clientFunc) *cobra.Command {
	var (
		name, model, term string
		users             []string
		keyTTL            time.Duration
	)
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a PBX and print its PBX key alone on standard output",
		Long: "Create a PBX on the running simulator and print its PBX key alone on standard\n" +
			"output. The key is a credential: redirect it to a file.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" {
				return errors.New("--name is required: the PBX's domain name")
			}
			m, err := license.ParseModel(model)
			if err != nil {
				return err
			}
			t, err := license.ParseTerm(term)
			if err != nil {
				return err
			}
			counts, err := parseUsers("--users ", users)
			if err != nil {
				return err
			}
			req := portalsim.CreatePBXRequest{Name: name, Model: string(m), Term: string(t), Profiles: counts}
			if keyTTL > 0 {
				d := portalsim.Duration(keyTTL)
				req.KeyTTL = &d
			}
			res, err := client().CreatePBX(cmd.Context(), req)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(e.stdout, res.Key)
			return err
		},
	}
	f := create.Flags()
	f.StringVar(&name, "name", "", "PBX domain `NAME`")
	f.StringVar(&model, "model", string(license.ModelVM), "`MODEL`: WPBX-HW or WPBX-VM")
	f.StringVar(&term, "term", string(license.Monthly), "billing `TERM`: monthly, yearly or lifetime")
	f.StringArrayVar(&users, "users", nil, "users of a profile, `PROFILE=COUNT` (repeatable, or comma-separated)")
	f.DurationVar(&keyTTL, "key-ttl", 0, "how long the key may be used to activate (default 720h)")
	return create
}

// parseUsers reads PROFILE=COUNT pairs (each argument may hold several,
// comma-separated); a later pair for a profile wins. label prefixes errors.
func parseUsers(label string, pairs []string) (license.Counts, error) {
	counts := license.Counts{}
	for _, pair := range pairs {
		for _, item := range strings.Split(pair, ",") {
			id, n, ok := strings.Cut(item, "=")
			if !ok {
				return nil, fmt.Errorf("%s%q: want PROFILE=COUNT, e.g. uc-premium=10", label, item)
			}
			p, err := license.ParseProfile(id)
			if err != nil {
				return nil, fmt.Errorf("%s%q: %w", label, item, err)
			}
			count, err := strconv.Atoi(strings.TrimSpace(n))
			if err != nil || count < 0 {
				return nil, fmt.Errorf("%s%q: the count must be a whole number, 0 or more", label, item)
			}
			counts[p] = count
		}
	}
	return counts, nil
}

func status(p portalsim.PBX) string {
	switch {
	case p.Deleted:
		return "deleted"
	case p.Device != nil:
		return "bound"
	}
	return "unbound"
}

func printPBX(w io.Writer, p *portalsim.PBX) error {
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	row := func(k, format string, args ...any) {
		fmt.Fprintf(tw, "%s:\t"+format+"\n", append([]any{k}, args...)...)
	}
	ts := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	row("name", "%s", p.Name)
	row("id", "%s", p.ID)
	row("model", "%s", p.Model)
	if p.TermEnd != nil {
		row("term", "%s, ends %s", p.Term, ts(*p.TermEnd))
	} else {
		row("term", "%s", p.Term)
	}
	row("profiles", "%s", p.Profiles)
	if d := describeTerms(*p); d != "" {
		row("terms", "%s", d)
	}
	if p.ZeroSince != nil {
		row("countdown", "every licence at zero since %s: stops %s, deleted %s", ts(*p.ZeroSince), ts(*p.StopAt), ts(*p.DeleteAt))
	}
	if p.Suspended {
		row("suspended", "yes")
	}
	row("revision", "%d", p.Revision)
	row("status", "%s", status(*p))
	row("created", "%s", ts(p.CreatedAt))
	row("key", "%s, activate before %s", p.KeyID, ts(p.KeyExpiresAt))
	if d := p.Device; d != nil {
		row("device", "%s, %s, bound %s", d.ID, d.Model, ts(d.BoundAt))
		if len(d.Overrides) > 0 {
			row("overrides", "%s (serial %q)", strings.Join(d.Overrides, ", "), d.Serial)
		}
	}
	for _, d := range p.FormerDevices {
		unbound := "-"
		if d.UnboundAt != nil {
			unbound = ts(*d.UnboundAt)
		}
		row("former device", "%s, bound %s, released %s", d.ID, ts(d.BoundAt), unbound)
	}
	if p.LastHeartbeat != nil {
		row("last heartbeat", "%s, state %s, agent %s", ts(*p.LastHeartbeat), p.LastState, p.AgentVersion)
		row("usage", "%s", p.LastUsage)
		if len(p.LastOveruse) > 0 {
			row("over-use", "%s", p.LastOveruse)
		}
	}
	if p.DeletedAt != nil {
		row("deleted", "%s", ts(*p.DeletedAt))
	}
	return tw.Flush()
}
