package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/spf13/cobra"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// exitDenied is check's exit code for a denied admission.
const exitDenied = 1

func newCheckCmd(a *app) *cobra.Command {
	var count int
	var reserve, asJSON bool
	cmd := &cobra.Command{
		Use:   "check PROFILE",
		Short: "Ask whether users of a profile may be added",
		Long: `Asks the running daemon whether COUNT more users of PROFILE (an id such as
uc-premium, or a name such as UC-Premium) may be added: POST /v1/admission.

By default it is a dry run, which reserves nothing. With --reserve an
allowed answer holds the seats for admission.reservation_ttl (60 s by
default) or until a count of users shows them, so that a WMS adding the
users in that time cannot be overtaken by another request. A user other
than root holds at most admission.max_reservations_per_uid seats at once
(50 by default) unless its uid is in admission.unbounded_uids.

Exits 0 when allowed, 1 when denied (the reason on stderr), 2 on errors.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.check(cmd.Context(), args[0], count, reserve, asJSON)
		},
	}
	cmd.Flags().IntVarP(&count, "count", "n", 1, "how many users, `N`")
	cmd.Flags().BoolVar(&reserve, "reserve", false, "reserve the seats when allowed (not a dry run)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the answer as JSON (the local API's), allowed or not")
	return cmd
}

func (a *app) check(ctx context.Context, profile string, count int, reserve, asJSON bool) error {
	p, err := license.ParseProfile(profile)
	if err != nil {
		return err
	}
	if count < 1 || count > apitype.MaxAdmissionCount {
		return fmt.Errorf("--count %d: ask for 1 to %d users", count, apitype.MaxAdmissionCount)
	}
	c, err := a.apiClient()
	if err != nil {
		return err
	}
	req := apitype.AdmissionRequest{Profile: string(p), Count: &count, DryRun: !reserve}
	var ans apitype.AdmissionAnswer
	err = c.do(ctx, http.MethodPost, "/v1/admission", req, &ans)
	var de *daemonError
	if errors.As(err, &de) && de.status == http.StatusConflict {
		if jerr := json.Unmarshal(de.raw, &ans); jerr != nil || ans.Reason == "" {
			return exitFor(err)
		}
		err = nil
	}
	if err != nil {
		return exitFor(err)
	}
	if asJSON {
		b, err := json.MarshalIndent(ans, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "%s\n", b)
	}
	if !ans.Allowed {
		return &codedError{code: exitDenied, err: errors.New("denied: " + ans.Reason)}
	}
	if asJSON {
		return nil
	}
	remaining := 0
	if ans.Remaining != nil {
		remaining = *ans.Remaining
	}
	what := "allowed (a dry run: nothing reserved)"
	if reserve {
		what = "allowed and reserved"
	}
	_, err = fmt.Fprintf(a.stdout, "%s: %d %s %s; %d more could be added after %s\n",
		what, count, p.Name(), plural(count, "user", "users"), remaining, plural(count, "it", "them"))
	return err
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
