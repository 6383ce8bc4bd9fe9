package main

import (
	"io"

	"github.com/spf13/cobra"

	"github.com/pbx-agent/pbx-agent/agent"
)

// app holds what every verb shares: the standard streams and the
// persistent flags.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer

	configPath string
	root       *cobra.Command
}

func newRootCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:           "pbx-agent",
		Short:         "Licence agent of a PBX",
		Long:          "pbx-agent activates a PBX with its portal, enforces its per-user licences and applies what the portal pushes.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	a.root = root
	pf := root.PersistentFlags()
	pf.StringVar(&a.configPath, "config", agent.DefaultConfigPath, "configuration `FILE`")
	pf.String("socket", "", "local API socket `PATH` (overrides listen.socket)")
	root.AddCommand(newRunCmd(a), newHelperCmd(a), newVersionCmd(a), newKeyCmd(a), newActivateCmd(a), newStatusCmd(a), newRefreshCmd(a))
	root.AddCommand(newAuditCmd(a))
	root.AddCommand(newReportCmd(a))
	root.AddCommand(newCheckCmd(a))
	root.AddCommand(newSSHCmd(a))
	root.AddCommand(newConfigCmd(a))
	root.AddCommand(docCommands(a)...)
	return root
}
