package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

func newKeysCmd(e *env, client clientFunc) *cobra.Command {
	keys := &cobra.Command{
		Use:   "keys",
		Short: "Manage the portal's signing keys",
		Args:  cobra.NoArgs,
	}
	keys.AddCommand(&cobra.Command{
		Use:   "rotate",
		Short: "Retire the signing key and revoke it in every live PBX's licence",
		Long: "Retire the portal's signing key, as after a leak: a new key signs from now on and\n" +
			"joins the exported keyring, and every live PBX gets a licence revision revoking the\n" +
			"retired key, so its appliance refuses whatever that key signs from then on.\n" +
			"Appliances must trust the new key (their portal.keyring) before they can take it.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := client().RotateKey(cmd.Context())
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(e.stdout, "retired %s (revoked in %d licences: %s); signing with %s\n",
				r.Retired, len(r.PBXs), strings.Join(r.PBXs, ", "), r.Current)
			return err
		},
	})
	return keys
}
