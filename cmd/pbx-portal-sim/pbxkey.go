package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func newPBXKeyCmd(e *env, client clientFunc) *cobra.Command {
	var keyTTL time.Duration
	key := &cobra.Command{
		Use:   "key NAME",
		Short: "Issue a new PBX key and print it alone on standard output",
		Long: "Issue a new PBX key for an existing PBX, at any time (the portal's Copy PBX key),\n" +
			"and print it alone on standard output. It replaces the PBX's current key: the\n" +
			"previous one no longer activates anything. It does not move the PBX: to activate\n" +
			"it on another appliance, re-bind it first (pbx rebind, which prints a new key\n" +
			"too). A deleted PBX gets no key. The key is a credential: redirect it to a file.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if keyTTL < 0 {
				return fmt.Errorf("--key-ttl %v: must be positive", keyTTL)
			}
			res, err := client().IssueKey(cmd.Context(), args[0], keyTTL)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(e.stdout, res.Key)
			return err
		},
	}
	key.Flags().DurationVar(&keyTTL, "key-ttl", 0, "how long the key may be used to activate (default 720h)")
	return key
}
