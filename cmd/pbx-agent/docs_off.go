//go:build !docgen

package main

import "github.com/spf13/cobra"

// docCommands is empty in the daemon: the man page generator and what it
// links belong to the documentation build (docs.go, -tags docgen).
func docCommands(*app) []*cobra.Command { return nil }
