package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pbx-agent/pbx-agent/pkg/buildinfo"
)

func newVersionCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of this build",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			bi := buildinfo.Read()
			_, err := fmt.Fprintf(a.stdout, "pbx-agent %s (revision %s, %s)\n", bi.Version, bi.Revision, bi.GoVersion)
			return err
		},
	}
}
