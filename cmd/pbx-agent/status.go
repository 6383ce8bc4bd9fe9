package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pbx-agent/pbx-agent/agent/localapi"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

func newStatusCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show where the licence stands",
		Long:  "Asks the running daemon for its status: a summary for people, or with --json the GET /v1/status document.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.status(cmd.Context(), asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON (the local API's document)")
	return cmd
}

func (a *app) status(ctx context.Context, asJSON bool) error {
	c, err := a.apiClient()
	if err != nil {
		return err
	}
	var raw []byte
	if err := c.do(ctx, "GET", "/v1/status", nil, &raw); err != nil {
		return exitFor(err)
	}
	if asJSON {
		// The daemon's document as it is, fields this CLI does not know
		// included.
		var buf bytes.Buffer
		if err := json.Indent(&buf, bytes.TrimSpace(raw), "", "  "); err != nil {
			return fmt.Errorf("the status of pbx-agent is not JSON: %w", err)
		}
		buf.WriteByte('\n')
		_, err := a.stdout.Write(buf.Bytes())
		return err
	}
	var st localapi.Status
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("the status of pbx-agent: %w", err)
	}
	printStatus(a.stdout, st, a.colour())
	return nil
}

// colour reports whether stdout is a terminal that wants colour.
func (a *app) colour() bool {
	f, ok := a.stdout.(*os.File)
	return ok && isTerminal(f) && os.Getenv("NO_COLOR") == "" && os.Getenv("TERM") != "dumb"
}

// stateColour is the ANSI colour of a state: green when all is well,
// yellow when it needs attention, red when the PBX is or will be stopped.
func stateColour(state string) string {
	switch state {
	case "active":
		return "32"
	case "offline", "unactivated", "stopping":
		return "33"
	}
	return "31"
}

func printStatus(w io.Writer, st localapi.Status, colour bool) {
	now := st.Clock.Now
	if now.IsZero() {
		now = time.Now()
	}
	line := func(label, format string, args ...any) {
		fmt.Fprintf(w, "%-20s"+format+"\n", append([]any{label}, args...)...)
	}
	at := func(t *time.Time) string {
		return t.UTC().Format(time.RFC3339) + " (" + license.Relative(*t, now) + ")"
	}

	state := st.State
	if colour {
		state = "\x1b[1;" + stateColour(st.State) + "m" + state + "\x1b[0m"
	}
	if st.Summary != "" {
		state += ": " + st.Summary
	}
	line("State", "%s", state)
	if st.PBX != nil {
		line("PBX", "%s, %s", pbxName(st.PBX), st.PBX.Model)
	}
	if l := st.License; l != nil {
		term := l.Term
		if l.TermEnd != nil {
			term += ", ends " + at(l.TermEnd)
		}
		line("Term", "%s", term)
		line("Licence revision", "%d", l.Revision)
		fmt.Fprintln(w)
		printProfiles(w, l)
		fmt.Fprintln(w)
	} else {
		line("Licence", "none")
	}

	hb := st.Heartbeat
	if hb.LastSuccess != nil {
		line("Last heartbeat", "%s", at(hb.LastSuccess))
	} else {
		line("Last heartbeat", "never")
	}
	if hb.Next != nil {
		line("Next heartbeat", "%s", at(hb.Next))
	}
	if hb.LastError != "" {
		line("Last error", "%s", hb.LastError)
	}
	if d := st.Deadlines.OfflineGraceEnd; d != nil {
		line("Offline grace ends", "%s", at(d))
	}
	if d := st.Deadlines.StopAt; d != nil {
		line("Stops at", "%s", at(d))
	}
	if d := st.Deadlines.DeleteAt; d != nil {
		line("Deleted at", "%s", at(d))
	}
	clock := now.UTC().Format(time.RFC3339)
	if st.Clock.LocalBehind != "" {
		clock += " (the local clock is " + st.Clock.LocalBehind + " behind: ignored)"
	}
	line("Licence clock", "%s", clock)
	if st.SSH.Open {
		ssh := fmt.Sprintf("open on port %d", st.SSH.Port)
		if st.SSH.Until != nil {
			ssh += " until " + at(st.SSH.Until)
		}
		line("Support SSH", "%s", ssh)
	}
	if st.WMS.Version != "" || st.WMS.Upgrade != "" {
		wms := st.WMS.Version
		if st.WMS.Upgrade != "" {
			wms += ", upgrade: " + st.WMS.Upgrade
		}
		line("WMS", "%s", strings.TrimPrefix(wms, ", "))
	}
	for _, c := range st.Commands {
		cmd := fmt.Sprintf("%s %s: %s", c.ID, c.Type, c.State)
		if c.Result != "" {
			cmd += " (" + c.Result + ")"
		}
		line("Command", "%s", cmd)
	}
}

// printProfiles prints the counts in catalogue order, then any profile this
// CLI does not know.
func printProfiles(w io.Writer, l *localapi.LicenseStatus) {
	var ids []string
	for _, p := range license.Profiles() {
		id := string(p.ID)
		_, held := l.Profiles[id]
		_, over := l.Overuse[id]
		if held || over {
			ids = append(ids, id)
		}
	}
	var unknown []string
	for id := range l.Profiles {
		if !license.Profile(id).Valid() {
			unknown = append(unknown, id)
		}
	}
	for id := range l.Overuse {
		if _, ok := l.Profiles[id]; !ok && !license.Profile(id).Valid() {
			unknown = append(unknown, id)
		}
	}
	slices.Sort(unknown)
	ids = append(ids, unknown...)
	if len(ids) == 0 {
		fmt.Fprintln(w, "  No profile licensed.")
		return
	}
	width := len("Profile")
	for _, id := range ids {
		width = max(width, len(license.Profile(id).Name()))
	}
	overuse := len(l.Overuse) > 0
	head := fmt.Sprintf("  %-*s  %8s  %6s  %8s", width, "Profile", "Licensed", "Used", "Reserved")
	if overuse {
		head += "  Over-use"
	}
	fmt.Fprintln(w, head)
	for _, id := range ids {
		p := l.Profiles[id]
		row := fmt.Sprintf("  %-*s  %8d  %6d  %8d", width, license.Profile(id).Name(), p.Licensed, p.Used, p.Reserved)
		if n := l.Overuse[id]; n > 0 {
			row += fmt.Sprintf("  %8d", n)
		}
		fmt.Fprintln(w, row)
	}
}
