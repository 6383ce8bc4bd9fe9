package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// newManpagesCmd writes the manual pages of every verb; `make deb` ships them.
func newManpagesCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:    "manpages DIR",
		Short:  "Write the manual pages into DIR",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return err
			}
			header := &doc.GenManHeader{Title: "PBX-AGENT", Section: "1", Source: "pbx-agent", Manual: "pbx-agent manual"}
			if err := doc.GenManTree(a.root, header, args[0]); err != nil {
				return fmt.Errorf("writing manual pages: %w", err)
			}
			return nil
		},
	}
}
