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

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

func newStatusCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show where the licence stands",
		Long: "Asks the running daemon for its status: a summary for people, or with --json the GET /v1/status document.\n" +
			"The exit status says the state, as systemctl is-active does: 0 only where the PBX may take new users.\n\n" +
			exitStatusHelp(),
		Args: cobra.NoArgs,
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
	var st apitype.Status
	if asJSON {
		// The daemon's document as it is, fields this CLI does not know
		// included; the state alone decides the exit code.
		var buf bytes.Buffer
		if err := json.Indent(&buf, bytes.TrimSpace(raw), "", "  "); err != nil {
			return fmt.Errorf("the status of pbx-agent is not JSON: %w", err)
		}
		buf.WriteByte('\n')
		if _, err := a.stdout.Write(buf.Bytes()); err != nil {
			return err
		}
		var state struct {
			State string `json:"state"`
		}
		if err := json.Unmarshal(raw, &state); err != nil {
			return fmt.Errorf("the status of pbx-agent: %w", err)
		}
		st.State = state.State
	} else {
		if err := json.Unmarshal(raw, &st); err != nil {
			return fmt.Errorf("the status of pbx-agent: %w", err)
		}
		printStatus(a.stdout, st, a.colour())
	}
	if code := stateExit(st.State); code != exitOK {
		return quietExit(code)
	}
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
	case "offline", "unactivated", "lapsed", "stopping":
		return "33"
	}
	return "31"
}

// Layout of the human status: labels in a column, lines wrapped to fit a
// terminal.
const (
	labelWidth  = 20
	statusWidth = 80
)

// wrap splits s into lines of at most width characters, at spaces.
func wrap(s string, width int) []string {
	var lines []string
	var cur strings.Builder
	for _, word := range strings.Fields(s) {
		if cur.Len() > 0 && cur.Len()+1+len(word) > width {
			lines = append(lines, cur.String())
			cur.Reset()
		}
		if cur.Len() > 0 {
			cur.WriteByte(' ')
		}
		cur.WriteString(word)
	}
	if cur.Len() > 0 {
		lines = append(lines, cur.String())
	}
	return lines
}

func printStatus(w io.Writer, st apitype.Status, colour bool) {
	now := st.Clock.Now
	if now.IsZero() {
		now = time.Now()
	}
	line := func(label, format string, args ...any) {
		fmt.Fprintf(w, "%-*s"+format+"\n", append([]any{labelWidth, label}, args...)...)
	}
	at := func(t *time.Time) string {
		return t.UTC().Format(time.RFC3339) + " (" + license.Relative(*t, now) + ")"
	}

	state := st.State
	if colour {
		state = "\x1b[1;" + stateColour(st.State) + "m" + state + "\x1b[0m"
	}
	// What happens next, as the daemon counted it down on the licence
	// clock; the summary below explains.
	if st.Next != "" {
		state += ": " + st.Next
	}
	if st.Users.Unknown && (st.State == "active" || st.State == "offline") {
		// Licensed or not, nobody new gets in until a count succeeds: the
		// headline says so, not only the counting line further down.
		state += "; users not counted, so no new users are admitted"
	}
	line("State", "%s", state)
	for _, l := range wrap(st.Summary, statusWidth-labelWidth) {
		line("", "%s", l)
	}
	if st.PBX != nil {
		line("PBX", "%s, %s", pbxName(st.PBX), st.PBX.Model)
	}
	printOffline(line, st, now) // status_offline.go
	printDeleted(line, st.Deleted, now)
	if l := st.License; l != nil {
		term := l.Term
		if l.TermEnd != nil {
			term += ", ends " + at(l.TermEnd)
		}
		line("Term", "%s", term)
		printCalendar(line, st.Calendar, now)
		line("Licence revision", "%d", l.Revision)
		if so := l.SoftOverage; so != nil {
			line("Soft overage", "up to %g× the counts until %s", so.Factor, at(&so.Until))
		}
		if l.HigherCoversLower {
			line("Cover", "free licences of a higher profile hold users of lower ones")
		}
		fmt.Fprintln(w)
		printProfiles(w, l)
		fmt.Fprintln(w)
	} else {
		line("Licence", "none")
	}
	if u := st.Users; u.Source != "" {
		counted := "never"
		if u.CountedAt != nil {
			counted = at(u.CountedAt)
		}
		line("Users counted", "%s, from %s", counted, u.Source)
		if u.Error != "" {
			line("Counting fails", "%s", u.Error)
			if u.FailingSince != nil {
				line("", "since %s, %d time(s) in a row", at(u.FailingSince), u.Failures)
			}
			if u.Unknown || u.CountedAt == nil {
				line("", "the users are not known: no new users are admitted until a count succeeds")
			} else {
				line("", "admissions go by the last good count for a few minutes more")
			}
		}
	}

	hb := st.Heartbeat
	if hb.LastSuccess != nil {
		line("Last heartbeat", "%s", at(hb.LastSuccess))
	} else if st.Mode != apitype.ModeAirGapped { // an air-gapped PBX says so above
		line("Last heartbeat", "never")
	}
	if hb.Next != nil {
		if hb.Failures > 0 {
			line("Next heartbeat", "%s, a retry: %d failed in a row", at(hb.Next), hb.Failures)
		} else {
			line("Next heartbeat", "%s", at(hb.Next))
		}
	}
	if hb.LastError != "" {
		line("Last error", "%s", hb.LastError)
	}
	deadline := func(future, past string, t *time.Time) {
		if t == nil {
			return
		}
		label := future
		if !t.After(now) {
			label = past
		}
		line(label, "%s", at(t))
	}
	dl := st.Deadlines
	deadline("Offline grace ends", "Offline grace ended", dl.OfflineGraceEnd)
	deadline("Lapse grace ends", "Lapse grace ended", dl.LapseGraceEnd)
	deadline("Telephony stops", "Telephony stopped", dl.StopAt)
	deadline("PBX deleted", "PBX deleted", dl.DeleteAt)
	clock := now.UTC().Format(time.RFC3339)
	if st.Clock.LocalBehind != "" {
		clock += " (the local clock is " + behindWords(st.Clock.LocalBehind) + " behind: ignored)"
	}
	line("Licence clock", "%s", clock)
	if st.Trust != nil {
		label := "Portal keys"
		for _, l := range wrap(trustLine(st.Trust), statusWidth-labelWidth) {
			line(label, "%s", l)
			label = ""
		}
	}
	if st.SSH.Open {
		ssh := fmt.Sprintf("open on port %d", st.SSH.Port)
		if st.SSH.Tunnel != nil {
			ssh = fmt.Sprintf("open through the portal's tunnel (sshd on 127.0.0.1:%d)", st.SSH.Port)
		}
		if st.SSH.Until != nil {
			ssh += " until " + at(st.SSH.Until)
		}
		line("Support SSH", "%s", ssh)
		if t := st.SSH.Tunnel; t != nil {
			line("Support tunnel", "%s", t.Summary())
		}
	}
	printAppliance(line, st)
	if c := st.Config; c != nil {
		if c.Error != "" {
			line("Config not reloaded", "%s", c.Error)
		}
		if len(c.RestartNeeded) > 0 {
			line("Restart to apply", "%s (changed in the file since the start)", strings.Join(c.RestartNeeded, ", "))
		}
	}
	if l := st.Listeners; l != nil && l.HTTP != nil && l.HTTP.Error != "" {
		line("HTTP listener", "%s %s", l.HTTP.Address, l.HTTP.Error)
	}
	for _, c := range st.Commands {
		cmd := fmt.Sprintf("%s %s: %s", c.ID, c.Type, c.State)
		if c.Result != "" {
			cmd += " (" + c.Result + ")"
		}
		cmd += commandTimes(c)
		line("Command", "%s", cmd)
	}
}

// printProfiles prints the counts in catalogue order, then any profile this
// CLI does not know.
func printProfiles(w io.Writer, l *apitype.LicenseStatus) {
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

// commandTimes is when a command arrived and ended, on the licence clock:
// ", received 2026-12-04 10:00 UTC, finished 10:01 UTC".
func commandTimes(c apitype.CommandStatus) string {
	if c.ReceivedAt.IsZero() {
		return "" // a daemon from before the times were shown
	}
	const day, clock = "2006-01-02 15:04 UTC", "15:04 UTC"
	out := ", received " + c.ReceivedAt.UTC().Format(day)
	if f := c.FinishedAt; f != nil {
		layout := day
		if f.UTC().Format("2006-01-02") == c.ReceivedAt.UTC().Format("2006-01-02") {
			layout = clock
		}
		out += ", finished " + f.UTC().Format(layout)
	}
	return out
}

// behindWords is the status's local_behind as an admin reads it: "6
// days", not "144h0m0s". A daemon that already sends words is shown as is.
func behindWords(s string) string {
	d, err := time.ParseDuration(s)
	if err != nil {
		return s
	}
	var t time.Time
	return strings.TrimPrefix(license.Relative(t.Add(d), t), "in ")
}
