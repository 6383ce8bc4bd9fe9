package main

import (
	"fmt"
	"strings"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// stateExits are the exit codes of `pbx-agent status`, in the habit of
// `systemctl is-active`: 0 only in the states where the PBX may take new
// users, and one code for each other state, so that a script or a
// monitoring check tells stopped from lapsed without parsing. They start
// at 10, clear of the codes the verbs give errors (2, 3, 4) and check's
// denial (1), so "could not ask the daemon" (2) never reads as a state.
var stateExits = []struct {
	state license.State
	code  int
	means string
}{
	{license.Active, 0, "licensed, in touch with the portal"},
	{license.Offline, 0, "licensed, within the offline grace"},
	{license.Unactivated, 10, "no PBX key activated yet"},
	{license.Lapsed, 11, "nothing new admitted: grace over or suspended"},
	{license.Stopping, 12, "nothing new admitted: every licence at zero"},
	{license.Stopped, 13, "telephony stopped"},
	{license.Deleted, 14, "the PBX is gone: a new key is needed"},
}

// exitUnknownState is the code of a state this CLI does not know (a newer
// daemon's): not known to be licensed, so not 0.
const exitUnknownState = 19

// stateExit is the exit code of status for state.
func stateExit(state string) int {
	for _, s := range stateExits {
		if string(s.state) == state {
			return s.code
		}
	}
	return exitUnknownState
}

// exitStatusHelp is the table of the codes, for the verb's help and its
// manual page.
func exitStatusHelp() string {
	var b strings.Builder
	b.WriteString("Exit status, the same with --json:\n")
	for _, s := range stateExits {
		fmt.Fprintf(&b, "    %2d  %-12s %s\n", s.code, s.state, s.means)
	}
	fmt.Fprintf(&b, "    %2d  %-12s %s\n", exitUnknownState, "(other)", "a state this CLI does not know")
	fmt.Fprintf(&b, "    %2d  %-12s %s\n", exitError, "", "the daemon could not be asked")
	return b.String()
}
