package main

import (
	"github.com/spf13/cobra"
)

// newHelperCmd holds the verbs that pbx-agent's root helper units run.
func newHelperCmd(a *app) *cobra.Command {
	helper := &cobra.Command{
		Use:   "helper",
		Short: "Root helpers that pbx-agent's systemd units run",
		Long:  "Root helpers that pbx-agent's systemd units run. They are not meant to be run by hand.",
	}
	helper.AddCommand(newWMSUpgradeCmd(a))
	helper.AddCommand(newTelephonyUnitsCmd(a))
	helper.AddCommand(newCopySerialCmd(a))
	return helper
}
