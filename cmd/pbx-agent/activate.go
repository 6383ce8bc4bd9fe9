package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pbx-agent/pbx-agent/agent/localapi"
	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

func newActivateCmd(a *app) *cobra.Command {
	var keyFile string
	cmd := &cobra.Command{
		Use:   "activate",
		Short: "Activate this PBX with its key, through the running daemon",
		Long: "Reads the PBX key from standard input (or --key-file), never from the command line,\n" +
			"checks it against portal.keyring, then has the running daemon activate it with the portal.\n" +
			"Exits 2 for an invalid key (found here, or refused by the portal as expired, replaced or of a\n" +
			"deleted PBX), 3 when refused otherwise (the PBX is bound to another appliance, or this appliance\n" +
			"holds another PBX), 4 when the portal cannot be reached.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.activate(cmd.Context(), keyFile)
		},
	}
	cmd.Flags().StringVar(&keyFile, "key-file", "", "read the key from `FILE` instead of standard input")
	return cmd
}

func (a *app) activate(ctx context.Context, keyFile string) error {
	cfg, raw, v, err := a.pastedKey(keyFile)
	if err != nil {
		return err
	}
	// A key that cannot be valid is refused here, with the precise reason,
	// before the daemon and the portal hear of it.
	if _, err := v.parse(raw); err != nil {
		return &codedError{code: exitError, err: fmt.Errorf("%w: %w", apitype.ErrRefusedLocally, err)}
	}
	var st apitype.Status
	req := localapi.ActivateRequest{Key: license.NormalizeKey(raw)}
	if err := newAPIClient(cfg.Listen.Socket).do(ctx, "POST", "/v1/activate", req, &st); err != nil {
		return exitFor(err)
	}
	_, err = fmt.Fprintf(a.stdout, "Activated PBX %s: %s\n", pbxName(st.PBX), st.State)
	return err
}

// pbxName names a PBX for people: "acme.example (pbx-42)".
func pbxName(p *apitype.PBXStatus) string {
	switch {
	case p == nil:
		return "(none)"
	case p.Name == "":
		return p.ID
	}
	return fmt.Sprintf("%s (%s)", p.Name, p.ID)
}
