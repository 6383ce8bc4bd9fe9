package main

import (
	"fmt"
	"regexp"

	"github.com/spf13/cobra"
)

// wmsVersion is the form of a WMS version: major.minor.YYYYMMDD.build.
var wmsVersion = regexp.MustCompile(`^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{8}\.[0-9]{1,6}$`)

// newHelperCmd holds the verbs that pbx-agent's root helper units run.
func newHelperCmd(a *app) *cobra.Command {
	helper := &cobra.Command{
		Use:   "helper",
		Short: "Root helpers that pbx-agent's systemd units run",
		Long:  "Root helpers that pbx-agent's systemd units run. They are not meant to be run by hand.",
	}
	helper.AddCommand(&cobra.Command{
		Use:   "wms-upgrade VERSION",
		Short: "Upgrade the WMS to VERSION (run by pbx-agent-wms-upgrade@VERSION.service)",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if !wmsVersion.MatchString(args[0]) {
				return fmt.Errorf("WMS version %q: want major.minor.YYYYMMDD.build, e.g. 7.02.20250609.3", args[0])
			}
			return fmt.Errorf("WMS upgrade to %s: this build of pbx-agent does not perform WMS upgrades yet", args[0])
		},
	})
	helper.AddCommand(newTelephonyUnitsCmd(a))
	return helper
}
